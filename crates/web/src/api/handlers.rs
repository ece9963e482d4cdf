//! Request handlers.

use super::ApiError;
use crate::State;
use assess::views::{
    FindingFilter, ImageBrief, ImageView, QueueView, Recommendations, UsageReport,
};
use assess::{Exemption, Service, Severity};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use time::OffsetDateTime;
use utoipa::ToSchema;

type ApiResult<T> = Result<T, ApiError>;

/// Run store work off the async threads.
async fn blocking<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&Service) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let svc = state.assess.clone();
    tokio::task::spawn_blocking(move || f(&svc))
        .await
        .map_err(ApiError::internal)?
}

/// Parse a query string into key → value, rejecting unknown keys.
fn query(raw: Option<String>, allowed: &[&str]) -> ApiResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    let raw = raw.unwrap_or_default();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k)?;
        let v = decode(v)?;
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {k:?}; allowed: {}",
                allowed.join(", ")
            )));
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn decode(s: &str) -> ApiResult<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::bad_request("bad percent-encoding in query"))?;
                out.push(h);
                i += 2;
            }
            b'%' => return Err(ApiError::bad_request("bad percent-encoding in query")),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("query is not UTF-8"))
}

fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be true or false, not {v:?}"
        ))),
    }
}

fn parse_digest(s: &str) -> ApiResult<String> {
    oci::Digest::parse(s)
        .map(|d| d.to_string())
        .map_err(|e| ApiError::bad_request(format!("invalid digest {s:?}: {e}")))
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    if body.is_empty() {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn month_of(name: &str, s: &str) -> ApiResult<String> {
    let bad = || {
        ApiError::bad_request(format!(
            "{name} must be a month YYYY-MM or a date YYYY-MM-DD, not {s:?}"
        ))
    };
    let parts: Vec<&str> = s.split('-').collect();
    if !(parts.len() == 2 || parts.len() == 3) {
        return Err(bad());
    }
    let y: u32 = parts[0].parse().map_err(|_| bad())?;
    let m: u32 = parts[1].parse().map_err(|_| bad())?;
    if parts[0].len() != 4 || parts[1].len() != 2 || !(1..=12).contains(&m) {
        return Err(bad());
    }
    if parts.len() == 3 {
        let d: u32 = parts[2].parse().map_err(|_| bad())?;
        if parts[2].len() != 2 || !(1..=31).contains(&d) {
            return Err(bad());
        }
    }
    Ok(format!("{y:04}-{m:02}"))
}

fn parse_time(name: &str, s: &str) -> ApiResult<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ApiError::bad_request(format!("{name} must be an RFC 3339 time: {e}")))
}

pub async fn openapi(AxState(state): AxState<State>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&*state.docs).unwrap_or_default(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such API endpoint; see /api/v1/openapi.json")
}

// ---- repositories ----

/// A repository with a health roll-up.
#[derive(Serialize, ToSchema)]
pub struct RepositoryView {
    pub name: String,
    pub tags: usize,
    pub images: usize,
    pub unhealthy: usize,
}

#[derive(Serialize, ToSchema)]
pub struct TagView {
    pub tag: String,
    pub digest: String,
    pub status: Option<String>,
    pub healthy: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct RepositoryDetail {
    pub name: String,
    pub tags: Vec<TagView>,
    pub images: Vec<ImageBrief>,
}

#[utoipa::path(get, path = "/api/v1/repositories", responses((status = 200, body = Vec<RepositoryView>)))]
pub async fn list_repositories(
    AxState(state): AxState<State>,
) -> ApiResult<Json<Vec<RepositoryView>>> {
    blocking(&state, |svc| {
        let mut out = Vec::new();
        for repo in svc.source().repositories()? {
            let tags = svc.source().tags(&repo)?.len();
            let images = svc.list_images(Some(repo.as_str()))?;
            let top: Vec<&ImageBrief> = images
                .iter()
                .filter(|i| i.kind != "image" || !is_child(svc, &i.digest))
                .collect();
            out.push(RepositoryView {
                name: repo.as_str().to_string(),
                tags,
                images: top.len(),
                unhealthy: top
                    .iter()
                    .filter(|i| i.health.as_ref().is_some_and(|h| !h.healthy))
                    .count(),
            });
        }
        Ok(Json(out))
    })
    .await
}

fn is_child(svc: &Service, digest: &str) -> bool {
    svc.store()
        .image(digest)
        .ok()
        .flatten()
        .is_some_and(|r| r.parent.is_some())
}

fn tag_views(svc: &Service, repo: &oci::Name) -> ApiResult<Vec<TagView>> {
    let mut out = Vec::new();
    for (tag, digest) in svc.source().tags(repo)? {
        let d = digest.to_string();
        let row = svc.store().image(&d)?;
        let healthy = match &row {
            Some(r) => svc.verdict(r)?.map(|(h, _)| h.healthy),
            None => None,
        };
        out.push(TagView {
            tag: tag.as_str().to_string(),
            digest: d,
            status: row.map(|r| r.status),
            healthy,
        });
    }
    out.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(out)
}

/// `GET /api/v1/repositories/{name}`, `.../{name}/tags`, `.../{name}/images`
/// (a repository name may contain slashes).
#[utoipa::path(get, path = "/api/v1/repositories/{name}", params(("name" = String, Path, description = "Repository name; append /tags or /images for those lists")),
    responses((status = 200, body = RepositoryDetail), (status = 404, body = super::ErrorBody)))]
pub async fn get_repository(
    AxState(state): AxState<State>,
    Path(rest): Path<String>,
) -> ApiResult<axum::response::Response> {
    let (name, what) = if let Some(n) = rest.strip_suffix("/tags") {
        (n.to_string(), "tags")
    } else if let Some(n) = rest.strip_suffix("/images") {
        (n.to_string(), "images")
    } else {
        (rest.trim_end_matches('/').to_string(), "detail")
    };
    let repo = oci::Name::parse(&name)
        .map_err(|e| ApiError::bad_request(format!("invalid repository name {name:?}: {e}")))?;
    blocking(&state, move |svc| {
        if !svc.source().repositories()?.iter().any(|r| r == &repo) {
            return Err(ApiError::not_found(format!(
                "repository {name:?} not found"
            )));
        }
        Ok(match what {
            "tags" => Json(tag_views(svc, &repo)?).into_response(),
            "images" => Json(svc.list_images(Some(repo.as_str()))?).into_response(),
            _ => Json(RepositoryDetail {
                name: repo.as_str().to_string(),
                tags: tag_views(svc, &repo)?,
                images: svc.list_images(Some(repo.as_str()))?,
            })
            .into_response(),
        })
    })
    .await
}

// ---- images ----

#[utoipa::path(get, path = "/api/v1/images",
    params(("repository" = Option<String>, Query, description = "Only this repository"),
           ("health" = Option<String>, Query, description = "healthy or unhealthy")),
    responses((status = 200, body = Vec<ImageBrief>), (status = 400, body = super::ErrorBody)))]
pub async fn list_images(
    AxState(state): AxState<State>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<ImageBrief>>> {
    let q = query(raw, &["repository", "health"])?;
    let health = match q.get("health").map(String::as_str) {
        None => None,
        Some("healthy") => Some(true),
        Some("unhealthy") => Some(false),
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "health must be healthy or unhealthy, not {v:?}"
            )));
        }
    };
    let repo = q.get("repository").cloned();
    if let Some(r) = &repo {
        oci::Name::parse(r)
            .map_err(|e| ApiError::bad_request(format!("invalid repository name {r:?}: {e}")))?;
    }
    blocking(&state, move |svc| {
        let list = svc.list_images(repo.as_deref())?;
        Ok(Json(
            list.into_iter()
                .filter(|i| {
                    health.is_none_or(|want| i.health.as_ref().is_some_and(|h| h.healthy == want))
                })
                .collect(),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/images/{digest}",
    params(("digest" = String, Path, description = "Manifest digest (image or index)"),
           ("severity" = Option<String>, Query, description = "Comma-separated severities (critical,high,medium,low,unknown), or `high+` for at or above"),
           ("status" = Option<String>, Query, description = "fixed, unfixed or wont_fix"),
           ("fixable" = Option<bool>, Query, description = "Only findings with (true) or without (false) a fix"),
           ("exempt" = Option<bool>, Query, description = "Only exempt (true) or not exempt (false) findings"),
           ("inventory" = Option<bool>, Query, description = "Include the package inventory")),
    responses((status = 200, body = ImageView), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn get_image(
    AxState(state): AxState<State>,
    Path(digest): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<ImageView>> {
    let digest = parse_digest(&digest)?;
    let q = query(
        raw,
        &["severity", "status", "fixable", "exempt", "inventory"],
    )?;
    let mut filter = FindingFilter::default();
    if let Some(s) = q.get("severity") {
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(min) = part.strip_suffix('+') {
                let min = Severity::parse(min).ok_or_else(|| bad_severity(part))?;
                for v in [
                    Severity::Critical,
                    Severity::High,
                    Severity::Medium,
                    Severity::Low,
                    Severity::Unknown,
                ] {
                    if v >= min && !filter.severities.contains(&v) {
                        filter.severities.push(v);
                    }
                }
            } else {
                filter
                    .severities
                    .push(Severity::parse(part).ok_or_else(|| bad_severity(part))?);
            }
        }
    }
    if let Some(s) = q.get("status") {
        filter.status = Some(assess::vuln::parse_fix_status(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status must be fixed, unfixed or wont_fix, not {s:?}"
            ))
        })?);
    }
    if let Some(v) = q.get("fixable") {
        filter.fixable = Some(parse_bool("fixable", v)?);
    }
    if let Some(v) = q.get("exempt") {
        filter.exempt = Some(parse_bool("exempt", v)?);
    }
    let with_inventory = match q.get("inventory") {
        Some(v) => parse_bool("inventory", v)?,
        None => false,
    };
    blocking(&state, move |svc| {
        svc.image_view(&digest, &filter, with_inventory)?
            .map(Json)
            .ok_or_else(|| {
                ApiError::not_found(format!("image {digest} is not known to the assessor"))
            })
    })
    .await
}

fn bad_severity(s: &str) -> ApiError {
    ApiError::bad_request(format!(
        "severity must be critical, high, medium, low or unknown (optionally with + for at or above), not {s:?}"
    ))
}

#[utoipa::path(post, path = "/api/v1/images/{digest}/rescan", params(("digest" = String, Path)),
    responses((status = 202, description = "Queued again"), (status = 404, body = super::ErrorBody)))]
pub async fn rescan_image(
    AxState(state): AxState<State>,
    Path(digest): Path<String>,
) -> ApiResult<StatusCode> {
    let digest = parse_digest(&digest)?;
    blocking(&state, move |svc| {
        if svc.requeue(&digest)? {
            Ok(StatusCode::ACCEPTED)
        } else {
            Err(ApiError::not_found(format!(
                "image {digest} is not known to the assessor"
            )))
        }
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/recommendations",
    params(("limit" = Option<usize>, Query, description = "Most entries per list (default 100, at most 1000)")),
    responses((status = 200, body = Recommendations)))]
pub async fn recommendations(
    AxState(state): AxState<State>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Recommendations>> {
    let q = query(raw, &["limit"])?;
    let limit = match q.get("limit") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit must be 1 to 1000, not {v:?}")))?,
        None => 100,
    };
    blocking(&state, move |svc| Ok(Json(svc.recommendations(limit)?))).await
}

// ---- exemptions ----

/// A new exemption. At least one of `vulnerability`, `package`, `severity`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExemption {
    pub vulnerability: Option<String>,
    pub package: Option<String>,
    /// Repository glob (`*` any characters).
    pub repository: Option<String>,
    /// Exempt findings at or below this severity.
    pub severity: Option<String>,
    pub reason: String,
    pub author: String,
    /// RFC 3339; absent for no expiry.
    pub expires_at: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/exemptions", responses((status = 200, body = Vec<Exemption>)))]
pub async fn list_exemptions(
    AxState(state): AxState<State>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    blocking(&state, |svc| {
        let now = svc.clock().now();
        Ok(Json(
            svc.store()
                .exemptions()?
                .into_iter()
                .map(|e| {
                    let active = e.is_active(now);
                    let mut v = serde_json::to_value(e).unwrap_or_default();
                    v["active"] = serde_json::Value::Bool(active);
                    v
                })
                .collect(),
        ))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/exemptions", request_body = NewExemption,
    responses((status = 201, body = Exemption), (status = 400, body = super::ErrorBody)))]
pub async fn create_exemption(
    AxState(state): AxState<State>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Exemption>)> {
    let n: NewExemption = parse_json(&body)?;
    let severity = match &n.severity {
        Some(s) => Some(Severity::parse(s).ok_or_else(|| bad_severity(s))?),
        None => None,
    };
    let expires_at = match &n.expires_at {
        Some(s) => Some(parse_time("expires_at", s)?),
        None => None,
    };
    let nonempty = |name: &str, v: Option<String>| -> ApiResult<Option<String>> {
        match v {
            Some(s) if s.trim().is_empty() => {
                Err(ApiError::bad_request(format!("{name} must not be empty")))
            }
            other => Ok(other),
        }
    };
    let vulnerability = nonempty("vulnerability", n.vulnerability)?;
    let package = nonempty("package", n.package)?;
    let repository = nonempty("repository", n.repository)?;
    blocking(&state, move |svc| {
        svc.add_exemption(
            vulnerability,
            package,
            repository,
            severity,
            n.reason,
            n.author,
            expires_at,
        )
        .map(|e| (StatusCode::CREATED, Json(e)))
        .map_err(ApiError::bad_request)
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/exemptions/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub async fn delete_exemption(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(&state, move |svc| {
        if svc.store().delete_exemption(&id)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::not_found(format!("no exemption {id:?}")))
        }
    })
    .await
}

// ---- webhooks ----

/// A new webhook.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http://` or `https://` URL receiving POSTs.
    pub url: String,
    /// HMAC-SHA256 key for the `X-Drydock-Signature` header (at least 16 characters).
    pub secret: String,
    /// Repository glob; absent for the whole registry.
    pub repository: Option<String>,
    /// Only tell about findings at or above this severity.
    pub min_severity: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: assess::store::Webhook,
}

#[utoipa::path(get, path = "/api/v1/webhooks", responses((status = 200, body = Vec<assess::store::Webhook>)))]
pub async fn list_webhooks(
    AxState(state): AxState<State>,
) -> ApiResult<Json<Vec<assess::store::Webhook>>> {
    blocking(&state, |svc| Ok(Json(svc.store().webhooks()?))).await
}

#[utoipa::path(post, path = "/api/v1/webhooks", request_body = NewWebhook,
    responses((status = 201, body = assess::store::Webhook), (status = 400, body = super::ErrorBody)))]
pub async fn create_webhook(
    AxState(state): AxState<State>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<assess::store::Webhook>)> {
    let n: NewWebhook = parse_json(&body)?;
    let url = n.url.trim().to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(ApiError::bad_request(format!(
            "url must be an http:// or https:// URL, not {url:?}"
        )));
    }
    if let Err(refused) = state.assess.check_webhook_url(&url) {
        return Err(ApiError::bad_request(refused));
    }
    if n.secret.len() < 16 {
        return Err(ApiError::bad_request(
            "secret must be at least 16 characters",
        ));
    }
    if let Some(s) = &n.min_severity
        && Severity::parse(s).is_none()
    {
        return Err(bad_severity(s));
    }
    blocking(&state, move |svc| {
        let w = svc.add_webhook(&url, &n.secret, n.repository, n.min_severity)?;
        Ok((StatusCode::CREATED, Json(w)))
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = super::ErrorBody)))]
pub async fn delete_webhook(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(&state, move |svc| {
        if svc.store().delete_webhook(&id)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::not_found(format!("no webhook {id:?}")))
        }
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", params(("id" = String, Path)),
    responses((status = 200, body = Vec<assess::store::Delivery>), (status = 404, body = super::ErrorBody)))]
pub async fn webhook_deliveries(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<assess::store::Delivery>>> {
    blocking(&state, move |svc| {
        if !svc.store().webhooks()?.iter().any(|w| w.id == id) {
            return Err(ApiError::not_found(format!("no webhook {id:?}")));
        }
        Ok(Json(svc.store().deliveries(Some(&id), 500)?))
    })
    .await
}

// ---- usage, database, queue ----

#[utoipa::path(get, path = "/api/v1/usage",
    params(("from" = Option<String>, Query, description = "First month, YYYY-MM (or a date)"),
           ("to" = Option<String>, Query, description = "Last month, YYYY-MM (or a date)")),
    responses((status = 200, body = UsageReport), (status = 400, body = super::ErrorBody)))]
pub async fn usage(
    AxState(state): AxState<State>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<UsageReport>> {
    let q = query(raw, &["from", "to"])?;
    let from = match q.get("from") {
        Some(v) => month_of("from", v)?,
        None => "0000-01".into(),
    };
    let to = match q.get("to") {
        Some(v) => month_of("to", v)?,
        None => "9999-12".into(),
    };
    if from > to {
        return Err(ApiError::bad_request(format!(
            "from ({from}) is after to ({to})"
        )));
    }
    blocking(&state, move |svc| Ok(Json(svc.usage(&from, &to)?))).await
}

/// Vulnerability database status.
#[derive(Serialize, ToSchema)]
pub struct DbStatus {
    pub available: bool,
    pub version: Option<String>,
    /// Sources, record counts, build time.
    #[schema(value_type = Object)]
    pub status: Option<serde_json::Value>,
    /// Re-scan window (days) and interval (hours).
    pub rescan_window_days: u32,
    pub rescan_interval_hours: i64,
}

#[utoipa::path(get, path = "/api/v1/vulndb", responses((status = 200, body = DbStatus)))]
pub async fn vulndb_status(AxState(state): AxState<State>) -> ApiResult<Json<DbStatus>> {
    blocking(&state, |svc| {
        let db = svc.database();
        Ok(Json(DbStatus {
            available: db.is_some(),
            version: db.as_ref().map(|d| d.version()),
            status: db.as_ref().map(|d| d.status()),
            rescan_window_days: svc.options().rescan_window_days,
            rescan_interval_hours: svc.options().rescan_interval.whole_hours(),
        }))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/queue", responses((status = 200, body = QueueView)))]
pub async fn queue(AxState(state): AxState<State>) -> ApiResult<Json<QueueView>> {
    blocking(&state, |svc| Ok(Json(svc.queue_view()?))).await
}
