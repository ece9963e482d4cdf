//! Who is asking, and what of the assessor's data they may see.
//!
//! The edge layer puts an [`auth::Principal`] (and an [`auth::Challenge`],
//! and for a dashboard session an [`auth::Session`]) into every request.
//! Without it (the router used on its own, as tests and in-process
//! embedders do) nothing is authenticated, so the caller is unrestricted,
//! as when access control is off.

use super::ApiError;
use auth::{Action, Challenge, Principal, Session};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header;
use axum::http::request::Parts;
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The caller of a request.
#[derive(Clone)]
pub struct Caller {
    pub principal: Principal,
    pub challenge: Option<Challenge>,
    /// Set when the request was authenticated by the session cookie.
    pub session: Option<Session>,
    /// The peer address of the connection, when the server records it.
    pub peer: Option<IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, Infallible> {
        let ext = &parts.extensions;
        Ok(Caller {
            principal: ext
                .get::<Principal>()
                .cloned()
                .unwrap_or_else(Principal::unrestricted),
            challenge: ext.get::<Challenge>().cloned(),
            session: ext.get::<Session>().cloned(),
            peer: ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
        })
    }
}

impl Caller {
    /// Whether the request came over TLS (the edge's realm follows the
    /// request's scheme).
    pub fn tls(&self) -> bool {
        self.challenge
            .as_ref()
            .is_some_and(|c| c.realm.starts_with("https://"))
    }

    /// 401 with the bearer challenge, so a script learns to authenticate.
    pub fn unauthorized(&self, message: impl Into<String>) -> ApiError {
        let e = ApiError::unauthorized(message);
        match &self.challenge {
            Some(c) => e.with_header(header::WWW_AUTHENTICATE, c.bearer(None, false)),
            None => e,
        }
    }

    /// Something this caller may not see: 401 for an anonymous caller
    /// (credentials might show it), else 404 (its existence is not
    /// revealed).
    pub fn hidden(&self, message: impl Into<String>) -> ApiError {
        if self.principal.is_anonymous() {
            self.unauthorized("authentication required")
        } else {
            ApiError::not_found(message)
        }
    }

    /// Something this caller may see but not do: 401 when anonymous,
    /// else 403.
    pub fn forbidden(&self, message: impl Into<String>) -> ApiError {
        if self.principal.is_anonymous() {
            self.unauthorized("authentication required")
        } else {
            ApiError::forbidden(message)
        }
    }

    /// Server administrators only.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.principal.is_admin() {
            Ok(())
        } else {
            Err(self.forbidden("this needs administrator rights"))
        }
    }

    /// May this caller administer what an assessor repository glob
    /// (exemption, webhook) covers? `None` covers every repository.
    pub fn may_admin_glob(&self, glob: Option<&str>) -> bool {
        match glob {
            None => self.principal.is_admin(),
            Some(g) => self.principal.may_admin_pattern(&covering_pattern(g)),
        }
    }
}

/// An access-policy pattern that matches every repository an assessor
/// glob matches. Both now share `oci::RepoPattern`'s meaning, so the glob
/// itself would do; the widening is kept (a superset, so stricter for the
/// caller): a glob becomes `PREFIX/**` at the last `/` before its first
/// wildcard (`team-a/app-*` → `team-a/**`), or `**` when the wildcard
/// comes before any `/`. A glob without wildcards is a repository name.
pub fn covering_pattern(glob: &str) -> String {
    let Some(first) = glob.find(['*', '?']) else {
        return glob.to_string();
    };
    match glob[..first].rfind('/') {
        Some(slash) if slash > 0 => format!("{}/**", &glob[..slash]),
        _ => "**".to_string(),
    }
}

/// Which repositories (and so which images) a principal may read.
/// Answers are cached per repository for one request.
pub struct Scope {
    principal: Principal,
    /// Pull on everything: the answers need no checks.
    all: bool,
    cache: RefCell<HashMap<String, bool>>,
}

impl Scope {
    pub fn new(principal: &Principal) -> Scope {
        Scope {
            all: principal.is_admin(),
            principal: principal.clone(),
            cache: RefCell::default(),
        }
    }

    /// Whether nothing is hidden from this caller.
    pub fn all(&self) -> bool {
        self.all
    }

    pub fn repo(&self, repo: &str) -> bool {
        if self.all {
            return true;
        }
        *self
            .cache
            .borrow_mut()
            .entry(repo.to_string())
            .or_insert_with(|| self.principal.may(repo, Action::Pull))
    }

    /// A `repo:tag` string is visible when its repository is.
    pub fn tag(&self, tag: &str) -> bool {
        self.repo(tag.rsplit_once(':').map_or(tag, |(r, _)| r))
    }

    /// The repositories an image is in: its own, else its index's, else
    /// the one it was first pushed to.
    pub fn repos_of(svc: &assess::Service, digest: &str) -> anyhow::Result<Vec<String>> {
        let mut repos = svc.store().repos_of(digest)?;
        if repos.is_empty()
            && let Some(row) = svc.store().image(digest)?
        {
            if let Some(parent) = &row.parent {
                repos = svc.store().repos_of(parent)?;
            }
            if repos.is_empty() {
                repos.push(row.repo);
            }
        }
        Ok(repos)
    }

    /// The first repository of `digest` this caller may read, or `None`
    /// when the image is hidden from it. `preferred` is returned when
    /// visible, so views keep the repository they named.
    pub fn image(
        &self,
        svc: &assess::Service,
        digest: &str,
        preferred: &str,
    ) -> anyhow::Result<Option<String>> {
        if self.all || self.repo(preferred) {
            return Ok(Some(preferred.to_string()));
        }
        Ok(Scope::repos_of(svc, digest)?
            .into_iter()
            .find(|r| self.repo(r)))
    }
}

/// A request body, at most [`BODY_LIMIT`] bytes; too large a body gets a
/// JSON 413 like every other API error.
pub struct Body(pub axum::body::Bytes);

/// The largest JSON body the API reads.
pub const BODY_LIMIT: usize = 1 << 20;

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Body, ApiError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the request body is larger than {BODY_LIMIT} bytes"),
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "cannot read the request body: {}",
                e.body_text()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::covering_pattern;

    #[test]
    fn assessor_globs_widen_to_covering_policy_patterns() {
        assert_eq!(covering_pattern("team-a/app"), "team-a/app");
        assert_eq!(covering_pattern("team-a/*"), "team-a/**");
        assert_eq!(covering_pattern("team-a/app-*"), "team-a/**");
        assert_eq!(covering_pattern("team-a/x/y?"), "team-a/x/**");
        assert_eq!(covering_pattern("team-*/app"), "**");
        assert_eq!(covering_pattern("*"), "**");
        assert_eq!(covering_pattern("/*"), "**");
    }
}
