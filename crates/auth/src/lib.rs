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
mod limiter;
mod manage;
pub mod policy;
pub mod secret;
pub mod token;

pub use audit::{AuditEntry, AuditEvent};
pub use manage::{ApiTokenView, RobotView, UserView, validate_name, validate_password};
pub use policy::{Action, Binding, Identity, Policy, PolicyError, Subject};
pub use storage::access::AuditQuery;
pub use token::{Claims, Scope, TokenKind};

use limiter::LoginLimiter;
use manage::binding_from_row;
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use storage::access::{ApiTokenRow, RobotRow, UserRow};
use storage::{AccessStore, block_on};
use time::OffsetDateTime;
use token::{AccessEntry, Keys};

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

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Access control is off.
    None,
    Anonymous,
    Basic,
    AccessToken,
    ApiToken,
    Session,
}

/// Who is making a request, and what they may do. Cheap to clone.
#[derive(Clone)]
pub struct Principal {
    inner: Arc<PrincipalInner>,
}

struct PrincipalInner {
    identity: Identity,
    method: Method,
    policy: Arc<Policy>,
    /// An access token's claims: the request may do only what they grant.
    token: Option<Arc<Claims>>,
    address: Option<IpAddr>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("identity", &self.inner.identity)
            .field("method", &self.inner.method)
            .finish()
    }
}

impl Principal {
    fn new(
        identity: Identity,
        method: Method,
        policy: Arc<Policy>,
        token: Option<Arc<Claims>>,
        address: Option<IpAddr>,
    ) -> Principal {
        Principal {
            inner: Arc::new(PrincipalInner {
                identity,
                method,
                policy,
                token,
                address,
            }),
        }
    }

    /// Everything allowed: access control is off, or a local operator.
    pub fn unrestricted() -> Principal {
        Principal::new(
            Identity::Unrestricted,
            Method::None,
            Arc::new(Policy::new([]).expect("empty policy")),
            None,
            None,
        )
    }

    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    pub fn method(&self) -> Method {
        self.inner.method
    }

    /// The name for logs and the audit log.
    pub fn name(&self) -> String {
        self.inner.identity.display_name()
    }

    pub fn is_anonymous(&self) -> bool {
        self.inner.identity == Identity::Anonymous
    }

    /// The client address, when known.
    pub fn address(&self) -> Option<IpAddr> {
        self.inner.address
    }

    /// May this request do `action` on `repo`: the identity's bindings
    /// allow it and, for an access token, so does the token.
    pub fn may(&self, repo: &str, action: Action) -> bool {
        self.identity_may(repo, action)
            && self
                .inner
                .token
                .as_ref()
                .is_none_or(|c| c.grants(repo, action))
    }

    /// May the identity do `action` on `repo`, whatever the token carries?
    /// (A request whose token lacks a scope the identity has gets a new
    /// challenge instead of a refusal.)
    pub fn identity_may(&self, repo: &str, action: Action) -> bool {
        self.inner.policy.allows(&self.inner.identity, repo, action)
    }

    /// Whether an access token limits this request.
    pub fn token_limited(&self) -> bool {
        self.inner.token.is_some()
    }

    /// May this request list the catalog (entries are then filtered by
    /// [`Principal::may`] pull)? Access tokens need `registry:catalog:*`.
    pub fn may_list_catalog(&self) -> bool {
        self.inner.token.as_ref().is_none_or(|c| c.grants_catalog())
    }

    /// An administrator of the whole server (`admin` on `**`).
    pub fn is_admin(&self) -> bool {
        self.inner.policy.is_admin(&self.inner.identity) && self.inner.method != Method::AccessToken
    }

    /// May this principal administer everything `pattern` matches
    /// (exemptions, webhooks scoped to it)?
    pub fn may_admin_pattern(&self, pattern: &str) -> bool {
        self.inner.method != Method::AccessToken
            && self
                .inner
                .policy
                .may_admin_pattern(&self.inner.identity, pattern)
    }
}

/// A token issued by the token flow.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
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

impl AccessControl {
    /// Open the access-control state of a data directory (tables in
    /// `meta.db`, the token key in `auth/token-key.p8`).
    pub fn open(data_dir: &Path, settings: Settings) -> Result<AccessControl, AuthError> {
        AccessControl::open_on(data_dir, settings, &storage::MetadataStorage::Sqlite)
    }

    /// [`AccessControl::open`] with the tables where `metadata` says
    /// (PostgreSQL for several nodes); the token key stays in the data
    /// directory.
    pub fn open_on(
        data_dir: &Path,
        settings: Settings,
        metadata: &storage::MetadataStorage,
    ) -> Result<AccessControl, AuthError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| AuthError::Invalid(format!("{}: {e}", data_dir.display())))?;
        let store = storage::open_access(data_dir, metadata)?;
        let keys = Keys::load_or_create(&data_dir.join("auth").join("token-key.p8"))?;
        // Fail at start on a malformed static binding, not at first use.
        Policy::new(settings.bindings.clone())?;
        let audit = audit::Recorder::start(store.clone(), settings.audit_retention);
        let inner = Inner {
            limiter: LoginLimiter::new(settings.max_failed_logins, settings.login_window),
            settings,
            snapshot: RwLock::new(Arc::new(Snapshot {
                generation: -1,
                policy: Arc::new(Policy::new([]).expect("empty policy")),
                users: HashMap::new(),
                robots: HashMap::new(),
                api_tokens: HashMap::new(),
            })),
            checked_at: AtomicU64::new(0),
            epoch: Instant::now(),
            store,
            keys,
            verified: Mutex::new(HashMap::new()),
            verified_tokens: RwLock::new(TokenCache::default()),
            audit,
        };
        let ac = AccessControl {
            inner: Arc::new(inner),
        };
        ac.reload()?;
        Ok(ac)
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    // --- snapshot ---

    fn reload(&self) -> Result<Arc<Snapshot>, AuthError> {
        let store = &self.inner.store;
        let generation = block_on(store.generation())?;
        let mut bindings = self.inner.settings.bindings.clone();
        for row in block_on(store.bindings())? {
            match binding_from_row(&row) {
                Ok(b) => bindings.push(b),
                Err(e) => {
                    tracing::warn!(id = %row.id, error = %e, "ignoring a malformed stored binding")
                }
            }
        }
        let policy = Arc::new(Policy::new(bindings)?);
        let snap = Arc::new(Snapshot {
            generation,
            policy,
            users: block_on(store.users())?
                .into_iter()
                .map(|u| (u.name.clone(), u))
                .collect(),
            robots: block_on(store.robots())?
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect(),
            api_tokens: block_on(store.api_tokens(None))?
                .into_iter()
                .map(|t| (t.secret_hash.clone(), t))
                .collect(),
        });
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner()) = snap.clone();
        self.inner
            .checked_at
            .store(self.millis(), Ordering::Relaxed);
        Ok(snap)
    }

    fn millis(&self) -> u64 {
        // Starts at 1 so that the first call after opening looks.
        self.inner.epoch.elapsed().as_millis() as u64 + 1000
    }

    /// The current snapshot; looks at the store's generation at most once
    /// a second, so a change made by another process (`drydock robot rm`)
    /// takes effect within a second.
    fn snapshot(&self) -> Arc<Snapshot> {
        let current = self
            .inner
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // One request a second looks; the rest go on with the snapshot
        // they have (no lock on this path).
        let now = self.millis();
        let last = self.inner.checked_at.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= 1000
            && self
                .inner
                .checked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if due {
            match block_on(self.inner.store.generation()) {
                Ok(g) if g != current.generation => match self.reload() {
                    Ok(s) => return s,
                    Err(e) => tracing::error!(error = %e, "cannot reload identities"),
                },
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot read the identity generation"),
            }
        }
        current
    }

    fn principal(
        &self,
        snap: &Snapshot,
        identity: Identity,
        method: Method,
        token: Option<Arc<Claims>>,
        address: Option<IpAddr>,
    ) -> Principal {
        Principal::new(identity, method, snap.policy.clone(), token, address)
    }

    /// The principal of a request without credentials.
    pub fn anonymous(&self, address: Option<IpAddr>) -> Principal {
        let snap = self.snapshot();
        self.principal(&snap, Identity::Anonymous, Method::Anonymous, None, address)
    }

    /// A principal acting as a named user (the local operator running a
    /// command); not for requests.
    pub fn as_user(&self, name: &str) -> Result<Principal, AuthError> {
        let snap = self.snapshot();
        let u = snap
            .users
            .get(name)
            .ok_or_else(|| AuthError::NotFound(format!("user {name}")))?;
        Ok(self.principal(
            &snap,
            Identity::User {
                name: u.name.clone(),
                groups: u.groups.clone(),
            },
            Method::None,
            None,
            None,
        ))
    }

    fn identity_of(&self, snap: &Snapshot, name: &str) -> Option<(Identity, i64)> {
        if let Some(robot) = name.strip_prefix(ROBOT_PREFIX) {
            let r = snap.robots.get(robot)?;
            if r.revoked_at.is_some() || r.expires_at.is_some_and(|e| e <= now()) {
                return None;
            }
            return Some((
                Identity::Robot {
                    name: r.name.clone(),
                },
                0,
            ));
        }
        let u = snap.users.get(name)?;
        Some((
            Identity::User {
                name: u.name.clone(),
                groups: u.groups.clone(),
            },
            u.generation,
        ))
    }

    // --- authentication ---

    /// Check a username and password (or `robot$NAME` and its secret).
    /// Rate-limited per identity and per address; failures are audited.
    pub fn login(
        &self,
        username: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let keys = limiter_keys(username, address);
        if let Err(wait) = self.inner.limiter.check(&keys) {
            self.record_login(username, address, "denied", "rate limited");
            return Err(AuthError::RateLimited(wait));
        }
        let snap = self.snapshot();
        let ok = self.check_password(&snap, username, password);
        match ok {
            Some(identity) => {
                self.inner.limiter.succeed(&keys[0]);
                Ok(self.principal(&snap, identity, Method::Basic, None, address))
            }
            None => {
                self.inner.limiter.fail(&keys);
                self.record_login(username, address, "failed", "bad credentials");
                Err(AuthError::BadCredentials)
            }
        }
    }

    fn check_password(&self, snap: &Snapshot, username: &str, password: &str) -> Option<Identity> {
        if let Some(known) = self.check_known(snap, username, password) {
            return Some(known);
        }
        if username.starts_with(ROBOT_PREFIX) {
            return None;
        }
        let u = snap.users.get(username)?;
        if !secret::verify_password(password, &u.password_hash) {
            return None;
        }
        let mut cache = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(
            login_key(username, password),
            (u.generation, Instant::now()),
        );
        Some(Identity::User {
            name: u.name.clone(),
            groups: u.groups.clone(),
        })
    }

    /// The cheap checks: a live robot's secret (SHA-256), or a user's
    /// login verified in the last five minutes under the same password
    /// generation. `None` means "not known good", not "wrong".
    fn check_known(&self, snap: &Snapshot, username: &str, password: &str) -> Option<Identity> {
        if let Some(robot) = username.strip_prefix(ROBOT_PREFIX) {
            let r = snap.robots.get(robot)?;
            let matches = secret::constant_time_eq(&secret::sha256_hex(password), &r.secret_hash);
            let live = r.revoked_at.is_none() && r.expires_at.is_none_or(|e| e > now());
            return (matches && live).then(|| Identity::Robot {
                name: r.name.clone(),
            });
        }
        let u = snap.users.get(username)?;
        let cache = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (generation, at) = cache.get(&login_key(username, password))?;
        (*generation == u.generation && at.elapsed() < Duration::from_secs(300)).then(|| {
            Identity::User {
                name: u.name.clone(),
                groups: u.groups.clone(),
            }
        })
    }

    /// A login that needs neither the slow password hash nor the limiter:
    /// a robot's valid secret, or a user's recently verified password.
    /// `None` sends the caller to [`AccessControl::login`], which also
    /// counts failures. Never blocks; for HTTP Basic on every request.
    pub fn login_known(
        &self,
        username: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Option<Principal> {
        let snap = self.snapshot();
        let identity = self.check_known(&snap, username, password)?;
        Some(self.principal(&snap, identity, Method::Basic, None, address))
    }

    fn record_login(&self, username: &str, address: Option<IpAddr>, outcome: &str, detail: &str) {
        self.audit(AuditEvent {
            identity: username.chars().take(128).collect(),
            address: address.map(|a| a.to_string()).unwrap_or_default(),
            action: "login".into(),
            target: String::new(),
            outcome: outcome.into(),
            detail: detail.into(),
        });
    }

    /// Authenticate a bearer credential: an access token from the token
    /// flow, or an API token.
    pub fn bearer(&self, token: &str, address: Option<IpAddr>) -> Result<Principal, AuthError> {
        let snap = self.snapshot();
        if token.starts_with(API_TOKEN_PREFIX) {
            let hash = secret::sha256_hex(token);
            let row = snap.api_tokens.get(&hash).ok_or(AuthError::BadToken)?;
            if row.revoked_at.is_some() || row.expires_at.is_some_and(|e| e <= now()) {
                return Err(AuthError::BadToken);
            }
            let (identity, _) = self
                .identity_of(&snap, &row.owner)
                .ok_or(AuthError::BadToken)?;
            return Ok(self.principal(&snap, identity, Method::ApiToken, None, address));
        }
        let claims = self.verify_access(&snap, token)?;
        let (identity, _) = self
            .identity_of(&snap, &claims.sub)
            .ok_or(AuthError::BadToken)?;
        Ok(self.principal(&snap, identity, Method::AccessToken, Some(claims), address))
    }

    /// The claims of a valid access token: from the cache while it is
    /// unexpired and the store generation unchanged, else verified (and
    /// then cached).
    fn verify_access(&self, snap: &Snapshot, token: &str) -> Result<Arc<Claims>, AuthError> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        {
            let cache = self
                .inner
                .verified_tokens
                .read()
                .unwrap_or_else(|p| p.into_inner());
            if cache.generation == snap.generation
                && let Some(c) = cache.claims.get(&key)
                && c.exp > now()
            {
                return Ok(c.clone());
            }
        }
        let claims = self
            .inner
            .keys
            .verify(token, &self.inner.settings.service, TokenKind::Access)
            .map_err(|e| {
                tracing::debug!(error = %e, "refused an access token");
                AuthError::BadToken
            })?;
        let mut cache = self
            .inner
            .verified_tokens
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // A changed generation may mean a removed identity or binding:
        // start over rather than keep anything checked before it.
        if cache.generation != snap.generation || cache.claims.len() >= 10_000 {
            cache.claims.clear();
            cache.generation = snap.generation;
        }
        let claims = Arc::new(claims);
        cache.claims.insert(key, claims.clone());
        Ok(claims)
    }

    /// Issue an access token for `scopes`, granting of each only what the
    /// principal may do; with `offline`, a refresh token too.
    pub fn issue(
        &self,
        who: &Principal,
        scopes: &[Scope],
        offline: bool,
    ) -> Result<IssuedToken, AuthError> {
        let mut access: Vec<AccessEntry> = Vec::new();
        for s in scopes {
            let granted: Vec<String> = match s.kind.as_str() {
                "repository" => {
                    let mut acts: Vec<String> = Vec::new();
                    for a in &s.actions {
                        let wanted: Vec<Action> = if a == "*" {
                            vec![Action::Pull, Action::Push, Action::Delete]
                        } else {
                            Action::parse(a).into_iter().collect()
                        };
                        for w in wanted {
                            if w != Action::Admin
                                && who.identity_may(&s.name, w)
                                && !acts.iter().any(|x| x == w.as_str())
                            {
                                acts.push(w.as_str().to_string());
                            }
                        }
                    }
                    acts
                }
                // The catalog lists only what the identity may pull, so
                // any authenticated identity may ask for it.
                "registry" if s.name == "catalog" && !who.is_anonymous() => vec!["*".into()],
                _ => Vec::new(),
            };
            if !granted.is_empty() {
                match access
                    .iter_mut()
                    .find(|e| e.kind == s.kind && e.name == s.name)
                {
                    Some(e) => {
                        for g in granted {
                            if !e.actions.contains(&g) {
                                e.actions.push(g);
                            }
                        }
                    }
                    None => access.push(AccessEntry {
                        kind: s.kind.clone(),
                        name: s.name.clone(),
                        actions: granted,
                    }),
                }
            }
        }
        let ttl = self.inner.settings.token_ttl;
        let t = now();
        let claims = self.claims(who, TokenKind::Access, ttl, access, None)?;
        let token = self.inner.keys.sign(&claims)?;
        let refresh_token = if offline && !who.is_anonymous() {
            Some(self.refresh_token(who)?)
        } else {
            None
        };
        Ok(IssuedToken {
            access_token: token.clone(),
            token,
            expires_in: ttl.as_secs(),
            issued_at: rfc3339(t),
            refresh_token,
        })
    }

    fn claims(
        &self,
        who: &Principal,
        typ: TokenKind,
        ttl: Duration,
        access: Vec<AccessEntry>,
        csrf: Option<String>,
    ) -> Result<Claims, AuthError> {
        let t = now();
        let snap = self.snapshot();
        let generation = match who.identity() {
            Identity::User { name, .. } => snap.users.get(name).map(|u| u.generation),
            _ => None,
        };
        let sub = match who.identity() {
            Identity::Anonymous => String::new(),
            Identity::Unrestricted => {
                return Err(AuthError::Invalid(
                    "access control is off; there are no tokens".into(),
                ));
            }
            _ => who.name(),
        };
        let mut id = [0u8; 16];
        secret::fill(&mut id);
        Ok(Claims {
            iss: token::ISSUER.into(),
            sub,
            aud: self.inner.settings.service.clone(),
            exp: t + ttl.as_secs() as i64,
            nbf: t - 1,
            iat: t,
            jti: hex::encode(id),
            typ,
            access,
            generation,
            csrf,
        })
    }

    fn refresh_token(&self, who: &Principal) -> Result<String, AuthError> {
        let claims = self.claims(
            who,
            TokenKind::Refresh,
            self.inner.settings.refresh_ttl,
            Vec::new(),
            None,
        )?;
        Ok(self.inner.keys.sign(&claims)?)
    }

    /// Authenticate a refresh token (OAuth2 `grant_type=refresh_token`).
    pub fn refresh(&self, token: &str, address: Option<IpAddr>) -> Result<Principal, AuthError> {
        self.long_lived(token, TokenKind::Refresh, Method::Basic, address)
            .map(|(p, _)| p)
    }

    fn long_lived(
        &self,
        token: &str,
        kind: TokenKind,
        method: Method,
        address: Option<IpAddr>,
    ) -> Result<(Principal, Claims), AuthError> {
        let claims = self
            .inner
            .keys
            .verify(token, &self.inner.settings.service, kind)
            .map_err(|_| AuthError::BadToken)?;
        let snap = self.snapshot();
        let (identity, generation) = self
            .identity_of(&snap, &claims.sub)
            .ok_or(AuthError::BadToken)?;
        if matches!(identity, Identity::User { .. }) && claims.generation != Some(generation) {
            return Err(AuthError::BadToken);
        }
        Ok((
            self.principal(&snap, identity, method, None, address),
            claims,
        ))
    }

    /// Start a dashboard session: the cookie value and its CSRF token.
    pub fn start_session(&self, who: &Principal) -> Result<(String, String), AuthError> {
        let csrf = secret::generate("");
        let claims = self.claims(
            who,
            TokenKind::Session,
            self.inner.settings.session_ttl,
            Vec::new(),
            Some(csrf.clone()),
        )?;
        Ok((self.inner.keys.sign(&claims)?, csrf))
    }

    /// Authenticate a session cookie: the principal and the session's
    /// CSRF token.
    pub fn session(
        &self,
        cookie: &str,
        address: Option<IpAddr>,
    ) -> Result<(Principal, String), AuthError> {
        let (p, claims) = self.long_lived(cookie, TokenKind::Session, Method::Session, address)?;
        Ok((p, claims.csrf.unwrap_or_default()))
    }

    // --- audit ---

    /// Record an audit event (buffered; written within a second).
    pub fn audit(&self, e: AuditEvent) {
        self.inner.audit.record(e);
    }

    /// Record that `who` pulled from `repo` (aggregated per hour).
    pub fn audit_pull(&self, who: &Principal, repo: &str) {
        self.inner
            .audit
            .pull(&who.inner.identity, who.address(), repo);
    }

    /// Record what `who` did.
    pub fn audit_by(
        &self,
        who: &Principal,
        action: &str,
        target: &str,
        outcome: &str,
        detail: &str,
    ) {
        self.audit(AuditEvent {
            identity: who.name(),
            address: who.address().map(|a| a.to_string()).unwrap_or_default(),
            action: action.into(),
            target: target.into(),
            outcome: outcome.into(),
            detail: detail.into(),
        });
    }

    /// Query the audit log, newest first.
    pub fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, AuthError> {
        Ok(self.inner.audit.query(q)?)
    }

    /// Write buffered audit records now.
    pub fn flush(&self) {
        self.inner.audit.flush();
    }
}

/// The key of a verified login: SHA-256 over name and password, so the
/// cache never holds a password.
fn login_key(username: &str, password: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(username.as_bytes());
    h.update([0]);
    h.update(password.as_bytes());
    h.finalize().into()
}

fn limiter_keys(username: &str, address: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![format!("id:{username}")];
    if let Some(a) = address {
        keys.push(format!("ip:{a}"));
    }
    keys
}

/// Where a client that was refused for lack of credentials gets a token.
/// The edge layer puts one into every request (its realm follows the
/// request's scheme and host); a route that answers 401 turns it into a
/// `WWW-Authenticate` value with [`Challenge::bearer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The token endpoint, e.g. `https://registry.example/token`.
    pub realm: String,
    pub service: String,
}

impl Challenge {
    /// `Bearer realm="…",service="…"[,scope="…"][,error="insufficient_scope"]`.
    /// `scope` is e.g. `repository:team/app:pull,push`.
    pub fn bearer(&self, scope: Option<&str>, insufficient_scope: bool) -> String {
        let q = |s: &str| s.replace(['"', '\\'], "");
        let mut v = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            q(&self.realm),
            q(&self.service)
        );
        if let Some(s) = scope {
            v.push_str(&format!(",scope=\"{}\"", q(s)));
        }
        if insufficient_scope {
            v.push_str(",error=\"insufficient_scope\"");
        }
        v
    }
}

/// Put into a request's extensions by the edge layer when the request was
/// authenticated by a dashboard session cookie: the session's CSRF token,
/// which the dashboard must send back in `X-CSRF-Token` on every
/// state-changing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub csrf: String,
}

/// The dashboard session cookie's name.
pub const SESSION_COOKIE: &str = "drydock_session";
/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
