//! Handlers of `/api/v1`. Query strings and bodies are parsed here by hand
//! so every mistake gets a precise message.

mod error;
mod handlers;

pub use error::{ApiError, ErrorBody};

use crate::State;
use axum::Router;
use axum::routing::{delete, get, post};
use utoipa::OpenApi;

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "drydock management API",
        version = "1",
        description = "Repositories, image assessments, recommendations, exemptions, webhooks, usage."
    ),
    paths(
        handlers::list_repositories,
        handlers::get_repository,
        handlers::list_images,
        handlers::get_image,
        handlers::rescan_image,
        handlers::recommendations,
        handlers::list_exemptions,
        handlers::create_exemption,
        handlers::delete_exemption,
        handlers::list_webhooks,
        handlers::create_webhook,
        handlers::delete_webhook,
        handlers::webhook_deliveries,
        handlers::usage,
        handlers::vulndb_status,
        handlers::queue,
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
        assess::views::ImageView,
        assess::views::ImageBrief,
        assess::views::FindingView,
        assess::views::Recommendations,
        assess::views::UsageReport,
        assess::views::QueueView,
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
            "/api/v1/images/{digest}/rescan",
            post(handlers::rescan_image),
        )
        .route("/api/v1/recommendations", get(handlers::recommendations))
        .route(
            "/api/v1/exemptions",
            get(handlers::list_exemptions).post(handlers::create_exemption),
        )
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
        .route("/api/v1/usage", get(handlers::usage))
        .route("/api/v1/vulndb", get(handlers::vulndb_status))
        .route("/api/v1/queue", get(handlers::queue))
        .route("/api/v1", get(handlers::not_found))
        .route(
            "/api/v1/{*rest}",
            get(handlers::not_found)
                .post(handlers::not_found)
                .delete(handlers::not_found),
        )
        .with_state(state)
}
