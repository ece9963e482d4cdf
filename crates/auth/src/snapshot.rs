//! Opening the service, and the snapshot of identities and bindings that
//! every check reads: reloaded when the store's generation moves, which
//! is looked at once a second at most.

use crate::limiter::LoginLimiter;
use crate::manage::binding_from_row;
use crate::token::Keys;
use crate::{
    AccessControl, AuthError, Claims, Identity, Inner, Method, Policy, Principal, ROBOT_PREFIX,
    Settings, Snapshot, TokenCache, audit, now,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use storage::block_on;

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

    pub(crate) fn reload(&self) -> Result<Arc<Snapshot>, AuthError> {
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
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
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

    pub(crate) fn principal(
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

    pub(crate) fn identity_of(&self, snap: &Snapshot, name: &str) -> Option<(Identity, i64)> {
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
}
