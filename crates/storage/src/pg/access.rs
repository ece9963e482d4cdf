//! [`AccessStore`] on PostgreSQL.

use super::{Params, Pg, PgConfig, borrowed, col, params};
use crate::MetaError;
use crate::access::{
    AccessStore, ApiTokenRow, AuditQuery, AuditRow, BindingRow, RobotRow, UserRow,
};
use std::sync::Arc;
use tokio_postgres::Row;

/// The access-control tables in PostgreSQL, shared by every node.
#[derive(Clone)]
pub struct PgAccess {
    pg: Arc<Pg>,
}

impl PgAccess {
    /// Connect and migrate the schema.
    pub fn connect(cfg: &PgConfig) -> Result<PgAccess, MetaError> {
        Ok(PgAccess {
            pg: Arc::new(Pg::connect(cfg)?),
        })
    }
}

const BUMP: &str = "UPDATE auth_generation SET value = value + 1 WHERE id = 0";

fn robot_from(r: &Row) -> Result<RobotRow, MetaError> {
    Ok(RobotRow {
        name: col(r, 0)?,
        secret_hash: col(r, 1)?,
        description: col(r, 2)?,
        created_at: col(r, 3)?,
        expires_at: col(r, 4)?,
        revoked_at: col(r, 5)?,
    })
}

fn token_from(r: &Row) -> Result<ApiTokenRow, MetaError> {
    Ok(ApiTokenRow {
        id: col(r, 0)?,
        owner: col(r, 1)?,
        secret_hash: col(r, 2)?,
        description: col(r, 3)?,
        created_at: col(r, 4)?,
        expires_at: col(r, 5)?,
        revoked_at: col(r, 6)?,
    })
}

fn user_from(r: &Row) -> Result<UserRow, MetaError> {
    Ok(UserRow {
        name: col(r, 0)?,
        password_hash: col(r, 1)?,
        created_at: col(r, 2)?,
        generation: col(r, 3)?,
        groups: col(r, 4)?,
    })
}

const USER_COLUMNS: &str = "SELECT u.name, u.password_hash, u.created_at, u.generation,
        ARRAY(SELECT g.grp FROM auth_user_groups g WHERE g.\"user\" = u.name ORDER BY g.grp)
     FROM auth_users u";

impl PgAccess {
    /// Run one statement and bump the generation, in one transaction; the
    /// number of rows the statement changed.
    async fn change(&self, sql: &'static str, params: Params) -> Result<u64, MetaError> {
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    let n = t.execute(sql, &borrowed(&params)).await?;
                    t.execute(BUMP, &[]).await?;
                    Ok(n)
                })
            })
            .await
    }
}

#[async_trait::async_trait]
impl AccessStore for PgAccess {
    async fn generation(&self) -> Result<i64, MetaError> {
        let r = self
            .pg
            .query_one("SELECT value FROM auth_generation WHERE id = 0", params![])
            .await?;
        col(&r, 0)
    }

    async fn insert_user(
        &self,
        name: &str,
        password_hash: &str,
        at: i64,
    ) -> Result<bool, MetaError> {
        let n = self
            .change(
                "INSERT INTO auth_users(name, password_hash, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                params![name.to_string(), password_hash.to_string(), at],
            )
            .await?;
        Ok(n > 0)
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, MetaError> {
        let n = self
            .change(
                "UPDATE auth_users SET password_hash = $2, generation = generation + 1 WHERE name = $1",
                params![name.to_string(), password_hash.to_string()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_user(&self, name: &str) -> Result<bool, MetaError> {
        let name = name.to_string();
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    let n = t
                        .execute("DELETE FROM auth_users WHERE name = $1", &[&name])
                        .await?;
                    for sql in [
                        "DELETE FROM auth_user_groups WHERE \"user\" = $1",
                        "DELETE FROM auth_api_tokens WHERE owner = $1",
                        "DELETE FROM auth_bindings WHERE subject_kind = 'user' AND subject = $1",
                    ] {
                        t.execute(sql, &[&name]).await?;
                    }
                    t.execute(BUMP, &[]).await?;
                    Ok(n > 0)
                })
            })
            .await
    }

    async fn set_groups(&self, user: &str, groups: &[String]) -> Result<(), MetaError> {
        let (user, groups) = (user.to_string(), groups.to_vec());
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    t.execute("DELETE FROM auth_user_groups WHERE \"user\" = $1", &[&user])
                        .await?;
                    for g in &groups {
                        t.execute(
                            "INSERT INTO auth_user_groups(\"user\", grp) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            &[&user, g],
                        )
                        .await?;
                    }
                    t.execute(BUMP, &[]).await?;
                    Ok(())
                })
            })
            .await
    }

    async fn user(&self, name: &str) -> Result<Option<UserRow>, MetaError> {
        self.pg
            .query_opt(
                format!("{USER_COLUMNS} WHERE u.name = $1"),
                params![name.to_string()],
            )
            .await?
            .map(|r| user_from(&r))
            .transpose()
    }

    async fn users(&self) -> Result<Vec<UserRow>, MetaError> {
        self.pg
            .query(format!("{USER_COLUMNS} ORDER BY u.name"), params![])
            .await?
            .iter()
            .map(user_from)
            .collect()
    }

    async fn insert_robot(&self, row: &RobotRow) -> Result<bool, MetaError> {
        let row = row.clone();
        let n = self
            .change(
                "INSERT INTO auth_robots(name, secret_hash, description, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                params![
                    row.name,
                    row.secret_hash,
                    row.description,
                    row.created_at,
                    row.expires_at
                ],
            )
            .await?;
        Ok(n > 0)
    }

    async fn revoke_robot(&self, name: &str, at: i64) -> Result<bool, MetaError> {
        let n = self
            .change(
                "UPDATE auth_robots SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
                params![name.to_string(), at],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_robot(&self, name: &str) -> Result<bool, MetaError> {
        let name = name.to_string();
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    let n = t
                        .execute("DELETE FROM auth_robots WHERE name = $1", &[&name])
                        .await?;
                    t.execute(
                        "DELETE FROM auth_bindings WHERE subject_kind = 'robot' AND subject = $1",
                        &[&name],
                    )
                    .await?;
                    t.execute(BUMP, &[]).await?;
                    Ok(n > 0)
                })
            })
            .await
    }

    async fn robot(&self, name: &str) -> Result<Option<RobotRow>, MetaError> {
        self.pg
            .query_opt(
                "SELECT name, secret_hash, description, created_at, expires_at, revoked_at
                 FROM auth_robots WHERE name = $1",
                params![name.to_string()],
            )
            .await?
            .map(|r| robot_from(&r))
            .transpose()
    }

    async fn robots(&self) -> Result<Vec<RobotRow>, MetaError> {
        self.pg
            .query(
                "SELECT name, secret_hash, description, created_at, expires_at, revoked_at
                 FROM auth_robots ORDER BY name",
                params![],
            )
            .await?
            .iter()
            .map(robot_from)
            .collect()
    }

    async fn insert_api_token(&self, row: &ApiTokenRow) -> Result<(), MetaError> {
        let row = row.clone();
        self.change(
            "INSERT INTO auth_api_tokens(id, owner, secret_hash, description, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            params![
                row.id,
                row.owner,
                row.secret_hash,
                row.description,
                row.created_at,
                row.expires_at
            ],
        )
        .await?;
        Ok(())
    }

    async fn api_token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiTokenRow>, MetaError> {
        self.pg
            .query_opt(
                "SELECT id, owner, secret_hash, description, created_at, expires_at, revoked_at
                 FROM auth_api_tokens WHERE secret_hash = $1",
                params![secret_hash.to_string()],
            )
            .await?
            .map(|r| token_from(&r))
            .transpose()
    }

    async fn api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiTokenRow>, MetaError> {
        self.pg
            .query(
                "SELECT id, owner, secret_hash, description, created_at, expires_at, revoked_at
                 FROM auth_api_tokens WHERE $1::text IS NULL OR owner = $1 ORDER BY created_at, id",
                params![owner.map(str::to_string)],
            )
            .await?
            .iter()
            .map(token_from)
            .collect()
    }

    async fn revoke_api_token(&self, id: &str, at: i64) -> Result<bool, MetaError> {
        let n = self
            .change(
                "UPDATE auth_api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                params![id.to_string(), at],
            )
            .await?;
        Ok(n > 0)
    }

    async fn insert_binding(&self, row: &BindingRow) -> Result<(), MetaError> {
        let row = row.clone();
        self.change(
            "INSERT INTO auth_bindings(id, subject_kind, subject, pattern, actions, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            params![
                row.id,
                row.subject_kind,
                row.subject,
                row.pattern,
                row.actions,
                row.created_at
            ],
        )
        .await?;
        Ok(())
    }

    async fn delete_binding(&self, id: &str) -> Result<bool, MetaError> {
        let n = self
            .change(
                "DELETE FROM auth_bindings WHERE id = $1",
                params![id.to_string()],
            )
            .await?;
        Ok(n > 0)
    }

    async fn bindings(&self) -> Result<Vec<BindingRow>, MetaError> {
        self.pg
            .query(
                "SELECT id, subject_kind, subject, pattern, actions, created_at
                 FROM auth_bindings ORDER BY created_at, id",
                params![],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(BindingRow {
                    id: col(r, 0)?,
                    subject_kind: col(r, 1)?,
                    subject: col(r, 2)?,
                    pattern: col(r, 3)?,
                    actions: col(r, 4)?,
                    created_at: col(r, 5)?,
                })
            })
            .collect()
    }

    async fn append_audit(&self, rows: &[AuditRow]) -> Result<(), MetaError> {
        let rows = rows.to_vec();
        self.pg
            .tx(move |t| {
                Box::pin(async move {
                    for r in &rows {
                        t.execute(
                            "INSERT INTO auth_audit(at, identity, address, action, target, outcome, detail, count, bucket)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                             ON CONFLICT(bucket) DO UPDATE SET count = auth_audit.count + excluded.count, at = excluded.at",
                            &[
                                &r.at, &r.identity, &r.address, &r.action, &r.target, &r.outcome,
                                &r.detail, &r.count, &r.bucket,
                            ],
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, MetaError> {
        let q = q.clone();
        let limit = q.limit.max(1) as i64;
        self.pg
            .query(
                "SELECT id, at, identity, address, action, target, outcome, detail, count, bucket
                 FROM auth_audit
                 WHERE ($1::text IS NULL OR identity = $1)
                   AND ($2::text IS NULL OR action = $2)
                   AND ($3::text IS NULL OR left(target, length($3)) = $3)
                   AND ($4::text IS NULL OR outcome = $4)
                   AND ($5::bigint IS NULL OR at >= $5)
                   AND ($6::bigint IS NULL OR at < $6)
                   AND ($7::bigint IS NULL OR id < $7)
                 ORDER BY id DESC LIMIT $8",
                params![
                    q.identity,
                    q.action,
                    q.target_prefix,
                    q.outcome,
                    q.since,
                    q.until,
                    q.before_id,
                    limit
                ],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(AuditRow {
                    id: col(r, 0)?,
                    at: col(r, 1)?,
                    identity: col(r, 2)?,
                    address: col(r, 3)?,
                    action: col(r, 4)?,
                    target: col(r, 5)?,
                    outcome: col(r, 6)?,
                    detail: col(r, 7)?,
                    count: col(r, 8)?,
                    bucket: col(r, 9)?,
                })
            })
            .collect()
    }

    async fn prune_audit(&self, before: i64) -> Result<usize, MetaError> {
        let n = self
            .pg
            .execute("DELETE FROM auth_audit WHERE at < $1", params![before])
            .await?;
        Ok(n as usize)
    }
}
