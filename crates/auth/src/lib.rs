//! Access control for drydock: identities, credentials, tokens, the
//! permission policy and the audit log. No HTTP here: the edge layer
//! turns headers into calls of [`AccessControl`] and puts the resulting
//! [`Principal`] into each request; every route then asks the principal
//! [`Principal::may`] do an [`Action`] on a repository.
//!
//! Model:
//! - Identities are users (argon2id passwords, groups), robot accounts
//!   (generated secret shown once, optional expiry, revocable; log in as
//!   `robot$NAME`) and API tokens (bearer secrets acting as their user).
//! - [`Binding`]s grant a subject (user, robot, group, anonymous) actions
//!   (`pull`, `push`, `delete`, `admin`) on repositories matching a glob.
//!   Static bindings come from the configuration, the rest from the store.
//! - Access tokens are short-lived ES256 JWTs in the Docker token format;
//!   a request carrying one may do what both the token's `access` claim
//!   and the identity's current bindings allow. A revoked or expired
//!   identity's tokens stop working at once: every token use looks the
//!   identity up in a snapshot that follows the store within a second.
//!
//! Invariants:
//! - No secret is stored in clear or written to a log or an error message.
//! - Failed logins are rate-limited per identity and per address.

mod audit;
mod challenge;
mod issue;
mod limiter;
mod login;
mod manage;
pub mod policy;
mod principal;
pub mod secret;
mod snapshot;
pub mod token;

pub use audit::{AuditEntry, AuditEvent};
pub use challenge::{CSRF_HEADER, Challenge, SESSION_COOKIE, Session};
pub use issue::IssuedToken;
pub use manage::{ApiTokenView, RobotView, UserView, validate_name, validate_password};
pub use policy::{Action, Binding, Identity, Policy, PolicyError, Subject};
pub use principal::{Method, Principal};
pub use storage::access::AuditQuery;
pub use token::{Claims, Scope, TokenKind};

use limiter::LoginLimiter;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use storage::AccessStore;
use storage::access::{ApiTokenRow, RobotRow, UserRow};
use time::OffsetDateTime;
use token::Keys;

/// Robot accounts log in with this prefix before their name.
pub const ROBOT_PREFIX: &str = "robot$";
/// API tokens start with this.
pub const API_TOKEN_PREFIX: &str = "ddk_";
/// Robot secrets start with this.
pub const ROBOT_SECRET_PREFIX: &str = "ddr_";

/// Access-control settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `service` of the token flow and the audience of tokens.
    pub service: String,
    /// Lifetime of access tokens (the token flow's `expires_in`).
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens (docker's stored identity token).
    pub refresh_ttl: Duration,
    /// Lifetime of a dashboard session.
    pub session_ttl: Duration,
    /// Bindings from the configuration file.
    pub bindings: Vec<Binding>,
    /// Failed logins allowed per identity and per address in `login_window`.
    pub max_failed_logins: u32,
    pub login_window: Duration,
    /// Audit records older than this are removed.
    pub audit_retention: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            service: "drydock".into(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            session_ttl: Duration::from_secs(12 * 3600),
            bindings: Vec::new(),
            max_failed_logins: 10,
            login_window: Duration::from_secs(300),
            audit_retention: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// Why a request was not authenticated or a change was refused. Messages
/// never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    BadCredentials,
    #[error("invalid or expired token")]
    BadToken,
    #[error("too many failed logins; retry in {} s", .0.as_secs())]
    RateLimited(Duration),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    Store(#[from] storage::MetaError),
    #[error("{0}")]
    Key(#[from] token::TokenError),
}

impl From<PolicyError> for AuthError {
    fn from(e: PolicyError) -> AuthError {
        AuthError::Invalid(e.0)
    }
}

/// Verified access tokens of one store generation.
#[derive(Default)]
struct TokenCache {
    generation: i64,
    claims: HashMap<[u8; 32], Arc<Claims>>,
}

/// Identities and bindings as of one store generation.
struct Snapshot {
    generation: i64,
    policy: Arc<Policy>,
    users: HashMap<String, UserRow>,
    robots: HashMap<String, RobotRow>,
    /// API tokens by secret hash.
    api_tokens: HashMap<String, ApiTokenRow>,
}

/// The access-control service. Cheap to clone.
#[derive(Clone)]
pub struct AccessControl {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    store: Arc<dyn AccessStore>,
    keys: Keys,
    snapshot: RwLock<Arc<Snapshot>>,
    /// When the store generation was last looked at (ms since `epoch`).
    checked_at: AtomicU64,
    epoch: Instant,
    limiter: LoginLimiter,
    /// Logins verified recently: sha256(name, password) → (generation,
    /// when), so argon2 runs once per client rather than per request.
    verified: Mutex<HashMap<[u8; 32], (i64, Instant)>>,
    /// Access tokens whose signature was checked: sha256(token) → claims,
    /// valid until `exp`, for the store generation they were checked at.
    /// ES256 verification costs more than serving a manifest; the
    /// identity's current rights are still checked on every use.
    verified_tokens: RwLock<TokenCache>,
    audit: Arc<audit::Recorder>,
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
