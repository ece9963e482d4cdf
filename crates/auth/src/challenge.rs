//! What the edge layer needs to answer for the service: the bearer
//! challenge of a 401, and a dashboard session's CSRF token.

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
