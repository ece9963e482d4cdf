//! The access-control store: users, groups, robot accounts, API tokens,
//! permission bindings and the audit log, in their own tables of the
//! metadata database (`meta.db`) on a connection of their own.
//!
//! Rows only: secrets arrive here already hashed, and the meaning of a
//! binding (patterns, actions) belongs to the `auth` crate.

use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::MetaError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS auth_users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_user_groups (
    user TEXT NOT NULL,
    grp TEXT NOT NULL,
    PRIMARY KEY (user, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_robots (
    name TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_api_tokens (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_bindings (
    id TEXT PRIMARY KEY,
    subject_kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    pattern TEXT NOT NULL,
    actions TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    identity TEXT NOT NULL,
    address TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    count INTEGER NOT NULL DEFAULT 1,
    bucket TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS auth_audit_at ON auth_audit(at);
CREATE TABLE IF NOT EXISTS auth_generation (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO auth_generation(id, value) VALUES (0, 0);
"#;

/// A user row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    pub password_hash: String,
    pub created_at: i64,
    /// Bumped on every password change: refresh tokens and cached logins
    /// of an older generation stop working.
    pub generation: i64,
    pub groups: Vec<String>,
}

/// A robot account row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RobotRow {
    pub name: String,
    pub secret_hash: String,
    pub description: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// An API token row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: String,
    pub owner: String,
    pub secret_hash: String,
    pub description: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A permission binding row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRow {
    pub id: String,
    pub subject_kind: String,
    pub subject: String,
    pub pattern: String,
    /// Comma-separated.
    pub actions: String,
    pub created_at: i64,
}

/// An audit record. Records with a `bucket` are aggregates: recording the
/// same bucket again adds to `count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub identity: String,
    pub address: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
    pub count: i64,
    pub bucket: Option<String>,
}

/// Filters of an audit query; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub identity: Option<String>,
    pub action: Option<String>,
    pub target_prefix: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Return records with an id below this (paging backwards in time).
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// The access-control tables.
pub struct AccessStore {
    conn: Mutex<Connection>,
}

impl AccessStore {
    /// Open (creating the tables) on the database at `path`.
    pub fn open(path: &Path) -> Result<AccessStore, MetaError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(AccessStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A counter bumped by every change to identities or bindings (by any
    /// process), so caches of them can tell they are stale.
    pub fn generation(&self) -> Result<i64, MetaError> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM auth_generation WHERE id = 0", [], |r| {
                r.get(0)
            })?)
    }

    fn bump(conn: &Connection) -> rusqlite::Result<()> {
        conn.execute(
            "UPDATE auth_generation SET value = value + 1 WHERE id = 0",
            [],
        )?;
        Ok(())
    }

    // --- users ---

    /// Insert a user; `false` if the name is taken.
    pub fn insert_user(&self, name: &str, password_hash: &str, at: i64) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT OR IGNORE INTO auth_users(name, password_hash, created_at) VALUES (?1, ?2, ?3)",
            params![name, password_hash, at],
        )?;
        Self::bump(&conn)?;
        Ok(n > 0)
    }

    /// Replace a user's password hash and bump its generation; `false`
    /// if there is no such user.
    pub fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE auth_users SET password_hash = ?2, generation = generation + 1 WHERE name = ?1",
            params![name, password_hash],
        )?;
        Self::bump(&conn)?;
        Ok(n > 0)
    }

    /// Delete a user with its groups, API tokens and bindings.
    pub fn delete_user(&self, name: &str) -> Result<bool, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM auth_users WHERE name = ?1", params![name])?;
        tx.execute(
            "DELETE FROM auth_user_groups WHERE user = ?1",
            params![name],
        )?;
        tx.execute(
            "DELETE FROM auth_api_tokens WHERE owner = ?1",
            params![name],
        )?;
        tx.execute(
            "DELETE FROM auth_bindings WHERE subject_kind = 'user' AND subject = ?1",
            params![name],
        )?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Set a user's groups (replacing them).
    pub fn set_groups(&self, user: &str, groups: &[String]) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM auth_user_groups WHERE user = ?1",
            params![user],
        )?;
        for g in groups {
            tx.execute(
                "INSERT OR IGNORE INTO auth_user_groups(user, grp) VALUES (?1, ?2)",
                params![user, g],
            )?;
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// One user.
    pub fn user(&self, name: &str) -> Result<Option<UserRow>, MetaError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT name, password_hash, created_at, generation FROM auth_users WHERE name = ?1",
                params![name],
                |r| {
                    Ok(UserRow {
                        name: r.get(0)?,
                        password_hash: r.get(1)?,
                        created_at: r.get(2)?,
                        generation: r.get(3)?,
                        groups: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut row) = row else { return Ok(None) };
        let mut st =
            conn.prepare("SELECT grp FROM auth_user_groups WHERE user = ?1 ORDER BY grp")?;
        row.groups = st
            .query_map(params![name], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(Some(row))
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserRow>, MetaError> {
        let names: Vec<String> = {
            let conn = self.conn();
            let mut st = conn.prepare("SELECT name FROM auth_users ORDER BY name")?;
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(u) = self.user(&n)? {
                out.push(u);
            }
        }
        Ok(out)
    }

    // --- robots ---

    /// Insert a robot; `false` if the name is taken.
    pub fn insert_robot(&self, row: &RobotRow) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT OR IGNORE INTO auth_robots(name, secret_hash, description, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                row.name,
                row.secret_hash,
                row.description,
                row.created_at,
                row.expires_at
            ],
        )?;
        Self::bump(&conn)?;
        Ok(n > 0)
    }

    /// Mark a robot revoked; `false` if there is none (or it already was).
    pub fn revoke_robot(&self, name: &str, at: i64) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE auth_robots SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, at],
        )?;
        Self::bump(&conn)?;
        Ok(n > 0)
    }

    /// Delete a robot and its bindings.
    pub fn delete_robot(&self, name: &str) -> Result<bool, MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM auth_robots WHERE name = ?1", params![name])?;
        tx.execute(
            "DELETE FROM auth_bindings WHERE subject_kind = 'robot' AND subject = ?1",
            params![name],
        )?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn robot_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<RobotRow> {
        Ok(RobotRow {
            name: r.get(0)?,
            secret_hash: r.get(1)?,
            description: r.get(2)?,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            revoked_at: r.get(5)?,
        })
    }

    /// One robot.
    pub fn robot(&self, name: &str) -> Result<Option<RobotRow>, MetaError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, secret_hash, description, created_at, expires_at, revoked_at
                 FROM auth_robots WHERE name = ?1",
                params![name],
                Self::robot_from,
            )
            .optional()?)
    }

    /// Every robot, by name.
    pub fn robots(&self) -> Result<Vec<RobotRow>, MetaError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT name, secret_hash, description, created_at, expires_at, revoked_at
             FROM auth_robots ORDER BY name",
        )?;
        Ok(st
            .query_map([], Self::robot_from)?
            .collect::<Result<_, _>>()?)
    }

    // --- API tokens ---

    /// Insert an API token.
    pub fn insert_api_token(&self, row: &ApiTokenRow) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO auth_api_tokens(id, owner, secret_hash, description, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.id,
                row.owner,
                row.secret_hash,
                row.description,
                row.created_at,
                row.expires_at
            ],
        )?;
        Self::bump(&conn)?;
        Ok(())
    }

    fn token_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiTokenRow> {
        Ok(ApiTokenRow {
            id: r.get(0)?,
            owner: r.get(1)?,
            secret_hash: r.get(2)?,
            description: r.get(3)?,
            created_at: r.get(4)?,
            expires_at: r.get(5)?,
            revoked_at: r.get(6)?,
        })
    }

    /// The API token with this secret hash.
    pub fn api_token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiTokenRow>, MetaError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, owner, secret_hash, description, created_at, expires_at, revoked_at
                 FROM auth_api_tokens WHERE secret_hash = ?1",
                params![secret_hash],
                Self::token_from,
            )
            .optional()?)
    }

    /// API tokens, of one owner or all.
    pub fn api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiTokenRow>, MetaError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, owner, secret_hash, description, created_at, expires_at, revoked_at
             FROM auth_api_tokens WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at",
        )?;
        Ok(st
            .query_map(params![owner], Self::token_from)?
            .collect::<Result<_, _>>()?)
    }

    /// Revoke an API token; `false` if there is none (or it already was).
    pub fn revoke_api_token(&self, id: &str, at: i64) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE auth_api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, at],
        )?;
        Self::bump(&conn)?;
        Ok(n > 0)
    }

    // --- bindings ---

    /// Insert a binding.
    pub fn insert_binding(&self, row: &BindingRow) -> Result<(), MetaError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO auth_bindings(id, subject_kind, subject, pattern, actions, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.id,
                row.subject_kind,
                row.subject,
                row.pattern,
                row.actions,
                row.created_at
            ],
        )?;
        Self::bump(&conn)?;
        Ok(())
    }

    /// Delete a binding; `false` if there is none.
    pub fn delete_binding(&self, id: &str) -> Result<bool, MetaError> {
        let conn = self.conn();
        let n = conn.execute("DELETE FROM auth_bindings WHERE id = ?1", params![id])?;
        Self::bump(&conn)?;
        Ok(n > 0)
    }

    /// Every binding, oldest first.
    pub fn bindings(&self) -> Result<Vec<BindingRow>, MetaError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, subject_kind, subject, pattern, actions, created_at
             FROM auth_bindings ORDER BY created_at, id",
        )?;
        Ok(st
            .query_map([], |r| {
                Ok(BindingRow {
                    id: r.get(0)?,
                    subject_kind: r.get(1)?,
                    subject: r.get(2)?,
                    pattern: r.get(3)?,
                    actions: r.get(4)?,
                    created_at: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    // --- audit ---

    /// Append audit records in one transaction. A record with a bucket
    /// that exists already adds its count to it and moves its time.
    pub fn append_audit(&self, rows: &[AuditRow]) -> Result<(), MetaError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO auth_audit(at, identity, address, action, target, outcome, detail, count, bucket)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(bucket) DO UPDATE SET count = count + excluded.count, at = excluded.at",
            )?;
            for r in rows {
                st.execute(params![
                    r.at, r.identity, r.address, r.action, r.target, r.outcome, r.detail, r.count,
                    r.bucket
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Audit records matching `q`, newest first.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, MetaError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT id, at, identity, address, action, target, outcome, detail, count, bucket
             FROM auth_audit
             WHERE (?1 IS NULL OR identity = ?1)
               AND (?2 IS NULL OR action = ?2)
               AND (?3 IS NULL OR substr(target, 1, length(?3)) = ?3)
               AND (?4 IS NULL OR outcome = ?4)
               AND (?5 IS NULL OR at >= ?5)
               AND (?6 IS NULL OR at < ?6)
               AND (?7 IS NULL OR id < ?7)
             ORDER BY id DESC LIMIT ?8",
        )?;
        Ok(st
            .query_map(
                params![
                    q.identity,
                    q.action,
                    q.target_prefix,
                    q.outcome,
                    q.since,
                    q.until,
                    q.before_id,
                    q.limit.max(1) as i64
                ],
                |r| {
                    Ok(AuditRow {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        identity: r.get(2)?,
                        address: r.get(3)?,
                        action: r.get(4)?,
                        target: r.get(5)?,
                        outcome: r.get(6)?,
                        detail: r.get(7)?,
                        count: r.get(8)?,
                        bucket: r.get(9)?,
                    })
                },
            )?
            .collect::<Result<_, _>>()?)
    }

    /// Delete audit records older than `before`; how many went.
    pub fn prune_audit(&self, before: i64) -> Result<usize, MetaError> {
        Ok(self
            .conn()
            .execute("DELETE FROM auth_audit WHERE at < ?1", params![before])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_robots_bindings_and_audit_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = AccessStore::open(&dir.path().join("meta.db")).unwrap();
        let g0 = s.generation().unwrap();
        assert!(s.insert_user("alice", "h1", 1).unwrap());
        assert!(!s.insert_user("alice", "h2", 2).unwrap());
        s.set_groups("alice", &["devs".into()]).unwrap();
        assert!(s.set_password("alice", "h3").unwrap());
        let u = s.user("alice").unwrap().unwrap();
        assert_eq!((u.password_hash.as_str(), u.generation), ("h3", 2));
        assert_eq!(u.groups, vec!["devs".to_string()]);
        assert!(s.generation().unwrap() > g0);

        let robot = RobotRow {
            name: "ci".into(),
            secret_hash: "x".into(),
            description: String::new(),
            created_at: 1,
            expires_at: None,
            revoked_at: None,
        };
        assert!(s.insert_robot(&robot).unwrap());
        assert!(s.revoke_robot("ci", 5).unwrap());
        assert!(!s.revoke_robot("ci", 6).unwrap());
        assert_eq!(s.robot("ci").unwrap().unwrap().revoked_at, Some(5));

        let row = |bucket: Option<&str>| AuditRow {
            id: 0,
            at: 10,
            identity: "alice".into(),
            address: "127.0.0.1".into(),
            action: "pull".into(),
            target: "team/app".into(),
            outcome: "ok".into(),
            detail: String::new(),
            count: 2,
            bucket: bucket.map(str::to_string),
        };
        s.append_audit(&[row(Some("b1")), row(Some("b1")), row(None)])
            .unwrap();
        let all = s
            .audit(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all.iter().map(|r| r.count).sum::<i64>(), 6);
        assert!(s.delete_user("alice").unwrap());
        assert!(s.user("alice").unwrap().is_none());
    }
}
