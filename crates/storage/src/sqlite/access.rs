//! [`AccessStore`] on SQLite (tables in `meta.db`).

use super::Db;
use crate::MetaError;
use crate::access::{
    AccessStore, ApiTokenRow, AuditQuery, AuditRow, BindingRow, RobotRow, UserRow,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;

/// The access-control tables in a SQLite file.
#[derive(Clone)]
pub struct SqliteAccess {
    db: Arc<Db>,
}

impl SqliteAccess {
    /// Open (creating and migrating) the tables on the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteAccess, MetaError> {
        Ok(SqliteAccess {
            db: Db::open(path)?,
        })
    }
}

fn bump(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE auth_generation SET value = value + 1 WHERE id = 0",
        [],
    )?;
    Ok(())
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

fn user_from(c: &Connection, name: &str) -> rusqlite::Result<Option<UserRow>> {
    let row = c
        .prepare_cached(
            "SELECT name, password_hash, created_at, generation FROM auth_users WHERE name = ?1",
        )?
        .query_row(params![name], |r| {
            Ok(UserRow {
                name: r.get(0)?,
                password_hash: r.get(1)?,
                created_at: r.get(2)?,
                generation: r.get(3)?,
                groups: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut row) = row else { return Ok(None) };
    row.groups = c
        .prepare_cached("SELECT grp FROM auth_user_groups WHERE user = ?1 ORDER BY grp")?
        .query_map(params![name], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Some(row))
}

#[async_trait::async_trait]
impl AccessStore for SqliteAccess {
    async fn generation(&self) -> Result<i64, MetaError> {
        self.db
            .read(|c| {
                c.query_row("SELECT value FROM auth_generation WHERE id = 0", [], |r| {
                    r.get(0)
                })
            })
            .await
    }

    async fn insert_user(
        &self,
        name: &str,
        password_hash: &str,
        at: i64,
    ) -> Result<bool, MetaError> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.db
            .write(move |tx| {
                let n = tx.execute(
                    "INSERT OR IGNORE INTO auth_users(name, password_hash, created_at) VALUES (?1, ?2, ?3)",
                    params![name, hash, at],
                )?;
                bump(tx)?;
                Ok(n > 0)
            })
            .await
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, MetaError> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.db
            .write(move |tx| {
                let n = tx.execute(
                    "UPDATE auth_users SET password_hash = ?2, generation = generation + 1 WHERE name = ?1",
                    params![name, hash],
                )?;
                bump(tx)?;
                Ok(n > 0)
            })
            .await
    }

    async fn delete_user(&self, name: &str) -> Result<bool, MetaError> {
        let name = name.to_string();
        self.db
            .write(move |tx| {
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
                bump(tx)?;
                Ok(n > 0)
            })
            .await
    }

    async fn set_groups(&self, user: &str, groups: &[String]) -> Result<(), MetaError> {
        let (user, groups) = (user.to_string(), groups.to_vec());
        self.db
            .write(move |tx| {
                tx.execute(
                    "DELETE FROM auth_user_groups WHERE user = ?1",
                    params![user],
                )?;
                for g in &groups {
                    tx.execute(
                        "INSERT OR IGNORE INTO auth_user_groups(user, grp) VALUES (?1, ?2)",
                        params![user, g],
                    )?;
                }
                bump(tx)
            })
            .await
    }

    async fn user(&self, name: &str) -> Result<Option<UserRow>, MetaError> {
        let name = name.to_string();
        self.db.read(move |c| user_from(c, &name)).await
    }

    async fn users(&self) -> Result<Vec<UserRow>, MetaError> {
        self.db
            .read(|c| {
                let names: Vec<String> = c
                    .prepare("SELECT name FROM auth_users ORDER BY name")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut out = Vec::with_capacity(names.len());
                for n in names {
                    out.extend(user_from(c, &n)?);
                }
                Ok(out)
            })
            .await
    }

    async fn insert_robot(&self, row: &RobotRow) -> Result<bool, MetaError> {
        let row = row.clone();
        self.db
            .write(move |tx| {
                let n = tx.execute(
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
                bump(tx)?;
                Ok(n > 0)
            })
            .await
    }

    async fn revoke_robot(&self, name: &str, at: i64) -> Result<bool, MetaError> {
        let name = name.to_string();
        self.db
            .write(move |tx| {
                let n = tx.execute(
                    "UPDATE auth_robots SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                    params![name, at],
                )?;
                bump(tx)?;
                Ok(n > 0)
            })
            .await
    }

    async fn delete_robot(&self, name: &str) -> Result<bool, MetaError> {
        let name = name.to_string();
        self.db
            .write(move |tx| {
                let n = tx.execute("DELETE FROM auth_robots WHERE name = ?1", params![name])?;
                tx.execute(
                    "DELETE FROM auth_bindings WHERE subject_kind = 'robot' AND subject = ?1",
                    params![name],
                )?;
                bump(tx)?;
                Ok(n > 0)
            })
            .await
    }

    async fn robot(&self, name: &str) -> Result<Option<RobotRow>, MetaError> {
        let name = name.to_string();
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT name, secret_hash, description, created_at, expires_at, revoked_at
                     FROM auth_robots WHERE name = ?1",
                )?
                .query_row(params![name], robot_from)
                .optional()
            })
            .await
    }

    async fn robots(&self) -> Result<Vec<RobotRow>, MetaError> {
        self.db
            .read(|c| {
                c.prepare_cached(
                    "SELECT name, secret_hash, description, created_at, expires_at, revoked_at
                     FROM auth_robots ORDER BY name",
                )?
                .query_map([], robot_from)?
                .collect()
            })
            .await
    }

    async fn insert_api_token(&self, row: &ApiTokenRow) -> Result<(), MetaError> {
        let row = row.clone();
        self.db
            .write(move |tx| {
                tx.execute(
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
                bump(tx)
            })
            .await
    }

    async fn api_token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiTokenRow>, MetaError> {
        let hash = secret_hash.to_string();
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, owner, secret_hash, description, created_at, expires_at, revoked_at
                     FROM auth_api_tokens WHERE secret_hash = ?1",
                )?
                .query_row(params![hash], token_from)
                .optional()
            })
            .await
    }

    async fn api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiTokenRow>, MetaError> {
        let owner = owner.map(str::to_string);
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, owner, secret_hash, description, created_at, expires_at, revoked_at
                     FROM auth_api_tokens WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id",
                )?
                .query_map(params![owner], token_from)?
                .collect()
            })
            .await
    }

    async fn revoke_api_token(&self, id: &str, at: i64) -> Result<bool, MetaError> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                let n = tx.execute(
                    "UPDATE auth_api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    params![id, at],
                )?;
                bump(tx)?;
                Ok(n > 0)
            })
            .await
    }

    async fn insert_binding(&self, row: &BindingRow) -> Result<(), MetaError> {
        let row = row.clone();
        self.db
            .write(move |tx| {
                tx.execute(
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
                bump(tx)
            })
            .await
    }

    async fn delete_binding(&self, id: &str) -> Result<bool, MetaError> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                let n = tx.execute("DELETE FROM auth_bindings WHERE id = ?1", params![id])?;
                bump(tx)?;
                Ok(n > 0)
            })
            .await
    }

    async fn bindings(&self) -> Result<Vec<BindingRow>, MetaError> {
        self.db
            .read(|c| {
                c.prepare_cached(
                    "SELECT id, subject_kind, subject, pattern, actions, created_at
                     FROM auth_bindings ORDER BY created_at, id",
                )?
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
                .collect()
            })
            .await
    }

    async fn append_audit(&self, rows: &[AuditRow]) -> Result<(), MetaError> {
        let rows = rows.to_vec();
        self.db
            .write(move |tx| {
                let mut st = tx.prepare_cached(
                    "INSERT INTO auth_audit(at, identity, address, action, target, outcome, detail, count, bucket)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT(bucket) DO UPDATE SET count = count + excluded.count, at = excluded.at",
                )?;
                for r in &rows {
                    st.execute(params![
                        r.at, r.identity, r.address, r.action, r.target, r.outcome, r.detail,
                        r.count, r.bucket
                    ])?;
                }
                Ok(())
            })
            .await
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, MetaError> {
        let q = q.clone();
        self.db
            .read(move |c| {
                c.prepare_cached(
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
                )?
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
                .collect()
            })
            .await
    }

    async fn prune_audit(&self, before: i64) -> Result<usize, MetaError> {
        self.db
            .write(move |tx| tx.execute("DELETE FROM auth_audit WHERE at < ?1", params![before]))
            .await
    }
}
