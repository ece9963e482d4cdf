//! Authentication: passwords (argon2id, verified logins cached), robot
//! secrets, API tokens and access tokens, with failed logins limited and
//! audited.

use crate::{
    API_TOKEN_PREFIX, AccessControl, AuditEvent, AuthError, Claims, Identity, Method, Principal,
    ROBOT_PREFIX, Snapshot, TokenKind, now, secret,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl AccessControl {
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
