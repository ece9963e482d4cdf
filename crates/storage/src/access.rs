//! The access-control store: users, groups, robot accounts, API tokens,
//! permission bindings and the audit log. [`AccessStore`] is the
//! contract; [`crate::SqliteAccess`] keeps the tables in `meta.db` (on
//! connections of their own) and [`crate::PgAccess`] in PostgreSQL.
//!
//! Rows only: secrets arrive here already hashed, and the meaning of a
//! binding (patterns, actions) belongs to the `auth` crate. No error
//! message carries a row's values.

use crate::MetaError;

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

/// The access-control tables. Every change to identities or bindings
/// bumps [`AccessStore::generation`], atomically with the change.
#[async_trait::async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// A counter bumped by every change to identities or bindings (by any
    /// process or node), so caches of them can tell they are stale.
    async fn generation(&self) -> Result<i64, MetaError>;

    /// Insert a user; `false` if the name is taken.
    async fn insert_user(
        &self,
        name: &str,
        password_hash: &str,
        at: i64,
    ) -> Result<bool, MetaError>;

    /// Replace a user's password hash and bump its generation; `false`
    /// if there is no such user.
    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, MetaError>;

    /// Delete a user with its groups, API tokens and bindings.
    async fn delete_user(&self, name: &str) -> Result<bool, MetaError>;

    /// Set a user's groups (replacing them).
    async fn set_groups(&self, user: &str, groups: &[String]) -> Result<(), MetaError>;

    /// One user, with its groups sorted.
    async fn user(&self, name: &str) -> Result<Option<UserRow>, MetaError>;

    /// Every user, by name.
    async fn users(&self) -> Result<Vec<UserRow>, MetaError>;

    /// Insert a robot; `false` if the name is taken.
    async fn insert_robot(&self, row: &RobotRow) -> Result<bool, MetaError>;

    /// Mark a robot revoked; `false` if there is none (or it already was).
    async fn revoke_robot(&self, name: &str, at: i64) -> Result<bool, MetaError>;

    /// Delete a robot and its bindings.
    async fn delete_robot(&self, name: &str) -> Result<bool, MetaError>;

    /// One robot.
    async fn robot(&self, name: &str) -> Result<Option<RobotRow>, MetaError>;

    /// Every robot, by name.
    async fn robots(&self) -> Result<Vec<RobotRow>, MetaError>;

    /// Insert an API token ([`MetaError::Conflict`] if its id or secret
    /// hash exists).
    async fn insert_api_token(&self, row: &ApiTokenRow) -> Result<(), MetaError>;

    /// The API token with this secret hash.
    async fn api_token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiTokenRow>, MetaError>;

    /// API tokens, of one owner or all, oldest first.
    async fn api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiTokenRow>, MetaError>;

    /// Revoke an API token; `false` if there is none (or it already was).
    async fn revoke_api_token(&self, id: &str, at: i64) -> Result<bool, MetaError>;

    /// Insert a binding ([`MetaError::Conflict`] if its id exists).
    async fn insert_binding(&self, row: &BindingRow) -> Result<(), MetaError>;

    /// Delete a binding; `false` if there is none.
    async fn delete_binding(&self, id: &str) -> Result<bool, MetaError>;

    /// Every binding, oldest first.
    async fn bindings(&self) -> Result<Vec<BindingRow>, MetaError>;

    /// Append audit records in one transaction. A record with a bucket
    /// that exists already adds its count to it and moves its time.
    async fn append_audit(&self, rows: &[AuditRow]) -> Result<(), MetaError>;

    /// Audit records matching `q`, newest first.
    async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, MetaError>;

    /// Delete audit records older than `before`; how many went.
    async fn prune_audit(&self, before: i64) -> Result<usize, MetaError>;
}
