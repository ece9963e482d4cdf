//! The [`Principal`] every request carries: who it is, how it proved it,
//! and what it may do.

use crate::{Action, Claims, Identity, Policy};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;

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
    pub(crate) fn new(
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
