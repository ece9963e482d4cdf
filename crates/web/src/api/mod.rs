//! Handlers of `/api/v1`. Query strings are decoded by axum's `Query` into
//! a struct per endpoint (`params.rs`) and bodies by serde; values are
//! checked here so every mistake gets a precise message.

mod access;
mod browse;
mod error;
mod handlers;
mod params;
pub mod patches;
mod scope;

pub use browse::{CURSOR_TTL_SECONDS, DEFAULT_STALE_DAYS};
pub use error::{ApiError, ErrorBody};
pub use scope::{BODY_LIMIT, Caller, covering_pattern};

use crate::State;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use utoipa::OpenApi;

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "drydock management API",
        version = "1",
        description = "Repositories, image assessments, recommendations, exemptions, webhooks, usage; \
            with access control on, users, robots, bindings, API tokens and the audit log. \
            Callers authenticate with HTTP Basic, `Authorization: Bearer` (an API token or a \
            registry access token) or the dashboard's session cookie (then every POST, PUT, \
            PATCH and DELETE needs `X-CSRF-Token`). What a caller sees is limited to the \
            repositories it may pull. Request bodies are at most 1 MiB."
    ),
    paths(
        handlers::list_repositories,
        handlers::get_repository,
        handlers::list_images,
        handlers::get_image,
        handlers::image_findings,
        handlers::image_packages,
        handlers::image_layers,
        handlers::image_sbom,
        handlers::rescan_image,
        handlers::recommendations,
        handlers::list_exemptions,
        handlers::create_exemption,
        handlers::delete_exemption,
        handlers::create_vex,
        handlers::list_vex,
        handlers::delete_vex,
        handlers::list_webhooks,
        handlers::create_webhook,
        handlers::delete_webhook,
        handlers::webhook_deliveries,
        handlers::test_webhook,
        handlers::usage,
        handlers::vulndb_status,
        handlers::queue,
        browse::overview,
        browse::images,
        browse::repositories,
        browse::tags,
        browse::vulnerabilities,
        browse::vulnerability,
        browse::queue,
        browse::settings,
        patches::info,
        patches::create,
        patches::status,
        access::session,
        access::login,
        access::logout,
        access::list_users,
        access::create_user,
        access::delete_user,
        access::set_password,
        access::set_groups,
        access::list_robots,
        access::create_robot,
        access::revoke_robot,
        access::delete_robot,
        access::list_bindings,
        access::create_binding,
        access::delete_binding,
        access::audit,
        access::list_tokens,
        access::create_token,
        access::delete_token,
    ),
    components(schemas(
        ErrorBody,
        handlers::RepositoryView,
        handlers::TagView,
        handlers::RepositoryDetail,
        handlers::NewExemption,
        handlers::NewWebhook,
        handlers::CreatedWebhook,
        handlers::DbStatus,
        handlers::ImageDetail,
        browse::OverviewView,
        browse::DbCard,
        browse::QueueBoard,
        browse::QueueItem,
        browse::Settings,
        patches::PatchInfo,
        assess::browse::ImageEntry,
        assess::browse::PlatformEntry,
        assess::browse::VulnEntry,
        assess::browse::VulnDetail,
        assess::browse::AffectedTag,
        assess::browse::RepositoryEntry,
        assess::browse::TagEntry,
        assess::browse::TrendPoint,
        assess::browse::DayCount,
        access::SessionInfo,
        access::LoginRequest,
        access::LoggedIn,
        access::User,
        access::NewUser,
        access::NewPassword,
        access::Groups,
        access::Permission,
        access::Robot,
        access::NewRobot,
        access::CreatedRobot,
        access::SubjectRef,
        access::BindingView,
        access::NewBinding,
        access::AuditRecord,
        access::ApiToken,
        access::NewToken,
        access::CreatedToken,
        assess::views::ImageView,
        assess::views::ImageBrief,
        assess::views::FindingView,
        assess::views::Recommendations,
        assess::views::UsageReport,
        assess::views::QueueView,
        assess::views::LayersPage,
        assess::views::LayerView,
        assess::views::LayerPackage,
        assess::Exemption,
        assess::store::Webhook,
        assess::store::Delivery,
    ))
)]
pub struct ApiDoc;

pub fn router(state: State) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(handlers::openapi))
        .route("/api/v1/repositories", get(handlers::list_repositories))
        .route(
            "/api/v1/repositories/{*rest}",
            get(handlers::get_repository),
        )
        .route("/api/v1/images", get(handlers::list_images))
        .route("/api/v1/images/{digest}", get(handlers::get_image))
        .route(
            "/api/v1/images/{digest}/findings",
            get(handlers::image_findings),
        )
        .route(
            "/api/v1/images/{digest}/packages",
            get(handlers::image_packages),
        )
        .route(
            "/api/v1/images/{digest}/layers",
            get(handlers::image_layers),
        )
        .route("/api/v1/images/{digest}/sbom", get(handlers::image_sbom))
        .route(
            "/api/v1/images/{digest}/rescan",
            post(handlers::rescan_image),
        )
        .route("/api/v1/recommendations", get(handlers::recommendations))
        .route(
            "/api/v1/exemptions",
            get(handlers::list_exemptions).post(handlers::create_exemption),
        )
        .route(
            "/api/v1/vex",
            get(handlers::list_vex).post(handlers::create_vex),
        )
        .route("/api/v1/vex/{*key}", delete(handlers::delete_vex))
        .route(
            "/api/v1/exemptions/{id}",
            delete(handlers::delete_exemption),
        )
        .route(
            "/api/v1/webhooks",
            get(handlers::list_webhooks).post(handlers::create_webhook),
        )
        .route("/api/v1/webhooks/{id}", delete(handlers::delete_webhook))
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(handlers::webhook_deliveries),
        )
        .route("/api/v1/webhooks/{id}/test", post(handlers::test_webhook))
        .route("/api/v1/usage", get(handlers::usage))
        .route("/api/v1/vulndb", get(handlers::vulndb_status))
        .route("/api/v1/queue", get(handlers::queue))
        .route("/api/v1/overview", get(browse::overview))
        .route("/api/v1/browse/images", get(browse::images))
        .route("/api/v1/browse/repositories", get(browse::repositories))
        .route("/api/v1/browse/tags", get(browse::tags))
        .route("/api/v1/browse/queue", get(browse::queue))
        .route("/api/v1/vulnerabilities", get(browse::vulnerabilities))
        .route("/api/v1/vulnerabilities/{id}", get(browse::vulnerability))
        .route("/api/v1/settings", get(browse::settings))
        .route("/api/v1/auth/session", get(access::session))
        .route("/api/v1/auth/login", post(access::login))
        .route("/api/v1/auth/logout", post(access::logout))
        .route(
            "/api/v1/users",
            get(access::list_users).post(access::create_user),
        )
        .route("/api/v1/users/{name}", delete(access::delete_user))
        .route("/api/v1/users/{name}/password", put(access::set_password))
        .route("/api/v1/users/{name}/groups", put(access::set_groups))
        .route(
            "/api/v1/robots",
            get(access::list_robots).post(access::create_robot),
        )
        .route("/api/v1/robots/{name}", delete(access::delete_robot))
        .route("/api/v1/robots/{name}/revoke", post(access::revoke_robot))
        .route(
            "/api/v1/bindings",
            get(access::list_bindings).post(access::create_binding),
        )
        .route("/api/v1/bindings/{id}", delete(access::delete_binding))
        .route("/api/v1/audit", get(access::audit))
        .route(
            "/api/v1/tokens",
            get(access::list_tokens).post(access::create_token),
        )
        .route("/api/v1/tokens/{id}", delete(access::delete_token))
        .route("/api/v1", get(handlers::not_found))
        .route(
            "/api/v1/{*rest}",
            get(handlers::not_found)
                .post(handlers::not_found)
                .put(handlers::not_found)
                .patch(handlers::not_found)
                .delete(handlers::not_found),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
