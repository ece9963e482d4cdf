//! Tokens issued by the service: access tokens for the token flow (of
//! each scope asked for, only what the principal may do), refresh tokens
//! and dashboard sessions; and the long-lived ones taken back.

use crate::token::AccessEntry;
use crate::{
    AccessControl, Action, AuthError, Claims, Identity, Method, Principal, Scope, TokenKind, now,
    rfc3339, secret, token,
};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Duration;

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

impl AccessControl {
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
}
