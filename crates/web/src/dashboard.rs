//! The dashboard: one static page (HTML, CSS, JavaScript embedded in the
//! binary) that reads the management API under `/api/v1` and shows registry
//! health, recommendations and each image's vulnerabilities.
//!
//! It has no server-side state of its own: everything it shows comes from
//! the same API that scripts use, so the two can never disagree. The page
//! and its assets hold no data and are served to anyone; with access
//! control on, the script signs in through `POST /api/v1/auth/login`
//! (an HttpOnly session cookie), keeps the session's CSRF token in memory
//! (read again from `GET /api/v1/auth/session` on load) and sends it as
//! `X-CSRF-Token` on every write. Administrators also get pages for
//! users, robots, bindings and the audit log.
//!
//! Pages (`pages.js`): overview with SVG charts, repositories and their
//! tags, images, vulnerabilities and one vulnerability, one image (health,
//! findings with filters, exemptions, upgrade plan, changes), scan queue,
//! exemptions, webhooks with their delivery log, usage, settings. Every
//! list is paged and filtered by the server (`/api/v1/browse/*`,
//! `/api/v1/vulnerabilities`, `/api/v1/overview`); the page on screen is
//! read again every few seconds (ETag revalidation) and drawn again only
//! when an answer changed. A Content-Security-Policy keeps every fetch on
//! this server.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const PAGES_JS: &str = include_str!("../assets/pages.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// Routes: `/` redirects to `/ui/`, which serves the page and its assets;
/// `/ui/login` is the same page, opening on the sign-in form.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        // The same page: its script shows the sign-in form there.
        .route(
            "/ui/login",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/pages.js",
            get(|| async { asset("text/javascript; charset=utf-8", PAGES_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

/// Everything the page loads comes from this server: no script, style,
/// font or request may reach anywhere else, and no other site may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}
