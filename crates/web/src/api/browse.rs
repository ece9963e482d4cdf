//! The browsing endpoints of the dashboard (and of any client): paged,
//! sorted and filtered on the server with opaque cursors, scoped to what
//! the caller may pull, answered with an `ETag` so a page polling for live
//! updates gets a bodyless 304 while nothing changed.
//!
//! - `GET /api/v1/overview`: counts, charts' data, the database card.
//! - `GET /api/v1/browse/images`, `/browse/repositories`, `/browse/tags`.
//! - `GET /api/v1/vulnerabilities`, `/vulnerabilities/{id}` (its `affected`
//!   repositories paged with `cursor` and `limit`, like the lists).
//! - `GET /api/v1/browse/queue`: pending, running, failed (with errors).
//! - `GET /api/v1/settings`: the effective configuration (administrators;
//!   secrets redacted).

use super::ApiError;
use super::handlers::{blocking, limit_param};
use super::params::{
    BrowseImagesQuery, NoParams, PageQuery, Params, RepositoriesQuery, TagsQuery,
    VulnerabilitiesQuery,
};
use super::scope::{Caller, Scope};
use crate::State;
use assess::browse::{
    BrowseError, ImageEntry, ImageQuery, Overview, Page, RepositoryEntry, Snapshot, TagEntry,
    VulnDetail, VulnEntry, VulnQuery,
};
use assess::{Service, Severity};
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;

type ApiResult<T> = Result<T, ApiError>;

/// Days after its build at which the database is called stale, unless
/// the configuration says otherwise ([`State::with_stale_days`]: the
/// binary's `vulndb.stale_days`, or `DRYDOCK_DB_STALE_DAYS`).
pub const DEFAULT_STALE_DAYS: i64 = 7;

/// How long a list cursor stays valid. Lists are read from snapshots that
/// change under it; a cursor kept longer than this would page through
/// data the client never saw the start of, so it is refused (400) and the
/// client starts again.
pub const CURSOR_TTL_SECONDS: i64 = 3600;

/// The cursor the client gets: the list's own cursor with the minute it
/// was issued (by the assessor's clock), so its age can be checked. Whole
/// minutes, so a page polled for live updates keeps its `ETag` (and is not
/// drawn again) for a minute at a time.
fn stamp_cursor(svc: &Service, inner: &str) -> String {
    format!("{:x}.{inner}", svc.clock().now().unix_timestamp() / 60)
}

/// The list's own cursor inside a cursor from [`stamp_cursor`], refused
/// when it is malformed or older than [`CURSOR_TTL_SECONDS`].
fn open_cursor(svc: &Service, cursor: Option<&str>) -> ApiResult<Option<String>> {
    let Some(c) = cursor else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request("cursor is not one this server gave");
    let (issued, inner) = c.split_once('.').ok_or_else(bad)?;
    let issued = i64::from_str_radix(issued, 16).map_err(|_| bad())?;
    let age = svc.clock().now().unix_timestamp() - issued.saturating_mul(60);
    if age > CURSOR_TTL_SECONDS {
        return Err(ApiError::bad_request(format!(
            "cursor expired: it is {} minutes old and cursors last {} minutes; start again from the first page",
            age / 60,
            CURSOR_TTL_SECONDS / 60
        )));
    }
    Ok(Some(inner.to_string()))
}

/// A page with its `next` cursor stamped.
fn stamped<T>(svc: &Service, mut page: assess::browse::Page<T>) -> assess::browse::Page<T> {
    page.next = page.next.map(|n| stamp_cursor(svc, &n));
    page
}

/// What every browse list and the vulnerability page do alike: read the
/// current snapshot (`read` is handed whether the caller may pull a
/// repository, the list's own cursor opened from the client's, and the
/// limit), and answer `answer`'s value as JSON with an `ETag`.
async fn snapshot_read<R, V: Serialize>(
    state: &State,
    caller: Caller,
    headers: HeaderMap,
    cursor: Option<String>,
    limit: usize,
    read: impl FnOnce(&Snapshot, &dyn Fn(&str) -> bool, Option<&str>, usize) -> Result<R, BrowseError>
    + Send
    + 'static,
    answer: impl FnOnce(&Service, &Caller, R) -> ApiResult<V> + Send + 'static,
) -> ApiResult<Response> {
    blocking(state, move |svc| {
        let scope = Scope::new(&caller.principal);
        let snap = svc.snapshot().map_err(browse_error)?;
        let cursor = open_cursor(svc, cursor.as_deref())?;
        let found =
            read(&snap, &|r| scope.repo(r), cursor.as_deref(), limit).map_err(browse_error)?;
        Ok(tagged_json(&headers, &answer(svc, &caller, found)?))
    })
    .await
}

/// One page of a browse list, its `next` cursor stamped.
async fn list_page<T: Serialize + 'static>(
    state: &State,
    caller: Caller,
    headers: HeaderMap,
    cursor: Option<String>,
    limit: usize,
    read: impl FnOnce(
        &Snapshot,
        &dyn Fn(&str) -> bool,
        Option<&str>,
        usize,
    ) -> Result<Page<T>, BrowseError>
    + Send
    + 'static,
) -> ApiResult<Response> {
    snapshot_read(
        state,
        caller,
        headers,
        cursor,
        limit,
        read,
        |svc, _, page| Ok(stamped(svc, page)),
    )
    .await
}

/// JSON with a strong `ETag` of its bytes; `If-None-Match` → 304.
fn tagged_json<T: Serialize>(headers: &HeaderMap, value: &T) -> Response {
    let body = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..12]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every time: the data changes under the same URL.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (h, body).into_response()
}

fn limit(v: Option<&str>) -> ApiResult<usize> {
    limit_param(v, 50, 500)
}

fn order(v: Option<&str>, default_desc: bool) -> ApiResult<bool> {
    match v {
        None => Ok(default_desc),
        Some("asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(v) => Err(ApiError::bad_request(format!(
            "order must be asc or desc, not {v:?}"
        ))),
    }
}

fn one_of(v: Option<&str>, key: &str, allowed: &[&str]) -> ApiResult<String> {
    match v {
        None => Ok(allowed[0].to_string()),
        Some(v) if allowed.contains(&v) => Ok(v.to_string()),
        Some(v) => Err(ApiError::bad_request(format!(
            "{key} must be one of {}, not {v:?}",
            allowed.join(", ")
        ))),
    }
}

fn boolean(v: Option<&str>, key: &str) -> ApiResult<Option<bool>> {
    match v {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(ApiError::bad_request(format!(
            "{key} must be true or false, not {v:?}"
        ))),
    }
}

/// A list's failure: the caller's cursor or filter is a 400 with its
/// message, the store's failure a 500.
fn browse_error(e: BrowseError) -> ApiError {
    match e {
        BrowseError::BadCursor | BrowseError::BadFilter(_) => ApiError::bad_request(e.to_string()),
        BrowseError::Store(_) => ApiError::internal(e),
    }
}

/// The states an image can be in, as `state=` accepts them.
const STATES: &[&str] = assess::browse::state::ALL;

/// The vulnerability database card.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DbCard {
    pub available: bool,
    pub version: Option<String>,
    pub built_at: Option<String>,
    /// Whole days since the build.
    pub age_days: Option<i64>,
    /// Older than `stale_after_days`.
    pub stale: bool,
    pub stale_after_days: i64,
    /// Per source: name, records, snapshot date.
    #[schema(value_type = Vec<Object>)]
    pub sources: Vec<serde_json::Value>,
}

/// The overview page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OverviewView {
    #[serde(flatten)]
    pub overview: Overview,
    pub database: DbCard,
}

fn db_card(svc: &Service, stale_after_days: i64) -> DbCard {
    let db = svc.database();
    let status = db.as_ref().map(|d| d.status());
    let built_at = status
        .as_ref()
        .and_then(|s| s["built_at"].as_str())
        .map(String::from);
    let age_days = built_at.as_deref().and_then(|b| {
        let t =
            time::OffsetDateTime::parse(b, &time::format_description::well_known::Rfc3339).ok()?;
        Some((svc.clock().now() - t).whole_days())
    });
    DbCard {
        available: db.is_some(),
        version: db.as_ref().map(|d| d.version()),
        built_at,
        age_days,
        stale: age_days.is_some_and(|a| a > stale_after_days),
        stale_after_days,
        sources: status
            .as_ref()
            .and_then(|s| s["sources"].as_array().cloned())
            .unwrap_or_default(),
    }
}

#[utoipa::path(get, path = "/api/v1/overview",
    responses((status = 200, body = OverviewView), (status = 304, description = "unchanged (If-None-Match)")))]
pub async fn overview(
    AxState(state): AxState<State>,
    caller: Caller,
    headers: HeaderMap,
    _: Params<NoParams>,
) -> ApiResult<Response> {
    let stale_after_days = state.stale_days;
    blocking(&state, move |svc| {
        let scope = Scope::new(&caller.principal);
        let overview = svc
            .overview(&|r| scope.repo(r))
            .map_err(ApiError::internal)?;
        Ok(tagged_json(
            &headers,
            &OverviewView {
                overview,
                database: db_card(svc, stale_after_days),
            },
        ))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/browse/images",
    params(("q" = Option<String>, Query, description = "Text in the repository, a tag or the digest"),
           ("repository" = Option<String>, Query, description = "Only this repository"),
           ("state" = Option<String>, Query, description = "Comma-separated states: not_assessed, waiting_for_database, assessing, failed, unsupported, healthy, unhealthy, incomplete"),
           ("untagged" = Option<bool>, Query, description = "true: only untagged (superseded) digests; default: only tagged images"),
           ("sort" = Option<String>, Query, description = "name, pushed, findings, severity, size"),
           ("order" = Option<String>, Query, description = "asc or desc"),
           ("cursor" = Option<String>, Query, description = "`next` of the previous page"),
           ("limit" = Option<usize>, Query, description = "1 to 500, default 50")),
    responses((status = 200, body = Page<ImageEntry>), (status = 400, body = super::ErrorBody)))]
pub async fn images(
    AxState(state): AxState<State>,
    caller: Caller,
    headers: HeaderMap,
    Params(q): Params<BrowseImagesQuery>,
) -> ApiResult<Response> {
    let sort = one_of(
        q.sort.as_deref(),
        "sort",
        &["name", "pushed", "findings", "severity", "size"],
    )?;
    let states: Vec<String> = q
        .state
        .as_deref()
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if let Some(s) = states.iter().find(|s| !STATES.contains(&s.as_str())) {
        return Err(ApiError::bad_request(format!(
            "state must be among {}, not {s:?}",
            STATES.join(", ")
        )));
    }
    let iq = ImageQuery {
        q: q.q,
        repository: q.repository,
        states,
        untagged: boolean(q.untagged.as_deref(), "untagged")?,
        descending: order(q.order.as_deref(), sort != "name")?,
        sort,
    };
    let (cursor, limit) = (q.cursor, limit(q.limit.as_deref())?);
    list_page(
        &state,
        caller,
        headers,
        cursor,
        limit,
        move |snap, visible, cursor, limit| snap.images(&iq, visible, cursor, limit),
    )
    .await
}

#[utoipa::path(get, path = "/api/v1/browse/repositories",
    params(("q" = Option<String>, Query, description = "Text in the name"),
           ("cursor" = Option<String>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = Page<RepositoryEntry>), (status = 400, body = super::ErrorBody)))]
pub async fn repositories(
    AxState(state): AxState<State>,
    caller: Caller,
    headers: HeaderMap,
    Params(q): Params<RepositoriesQuery>,
) -> ApiResult<Response> {
    let (cursor, limit) = (q.cursor.clone(), limit(q.limit.as_deref())?);
    list_page(
        &state,
        caller,
        headers,
        cursor,
        limit,
        move |snap, visible, cursor, limit| {
            snap.repositories(q.q.as_deref(), visible, cursor, limit)
        },
    )
    .await
}

#[utoipa::path(get, path = "/api/v1/browse/tags",
    params(("repository" = String, Query, description = "The repository"),
           ("q" = Option<String>, Query, description = "Text in the tag"),
           ("sort" = Option<String>, Query, description = "name or pushed (newest first)"),
           ("cursor" = Option<String>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = Page<TagEntry>), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn tags(
    AxState(state): AxState<State>,
    caller: Caller,
    headers: HeaderMap,
    Params(q): Params<TagsQuery>,
) -> ApiResult<Response> {
    let Some(repo) = q.repository.clone() else {
        return Err(ApiError::bad_request("repository is required"));
    };
    oci::Name::parse(&repo).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let sort = one_of(q.sort.as_deref(), "sort", &["name", "pushed"])?;
    let (cursor, limit) = (q.cursor.clone(), limit(q.limit.as_deref())?);
    if !Scope::new(&caller.principal).repo(&repo) {
        return Err(caller.hidden(format!("repository {repo:?} not found")));
    }
    list_page(
        &state,
        caller,
        headers,
        cursor,
        limit,
        move |snap, _, cursor, limit| {
            snap.tags(&repo, q.q.as_deref(), sort == "pushed", cursor, limit)
        },
    )
    .await
}

#[utoipa::path(get, path = "/api/v1/vulnerabilities",
    params(("q" = Option<String>, Query, description = "Text in the id, an alias, the summary or a package"),
           ("severity" = Option<String>, Query, description = "Comma-separated severities, or `high+` for high and above"),
           ("fixable" = Option<bool>, Query),
           ("sort" = Option<String>, Query, description = "severity (then images), images, id"),
           ("order" = Option<String>, Query, description = "asc or desc"),
           ("cursor" = Option<String>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = Page<VulnEntry>), (status = 400, body = super::ErrorBody)))]
pub async fn vulnerabilities(
    AxState(state): AxState<State>,
    caller: Caller,
    headers: HeaderMap,
    Params(q): Params<VulnerabilitiesQuery>,
) -> ApiResult<Response> {
    let sort = one_of(q.sort.as_deref(), "sort", &["severity", "images", "id"])?;
    let mut vq = VulnQuery {
        q: q.q.clone(),
        fixable: boolean(q.fixable.as_deref(), "fixable")?,
        descending: order(q.order.as_deref(), sort != "id")?,
        sort,
        ..VulnQuery::default()
    };
    for s in q
        .severity
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        // `high+` (or `high and above`): at or above a severity.
        let (name, at_least) = match s.strip_suffix('+') {
            Some(n) => (n, true),
            None => (s, false),
        };
        let Some(sev) = Severity::parse(name) else {
            return Err(ApiError::bad_request(format!(
                "severity must be critical, high, medium, low or unknown (with + for \"and above\"), not {s:?}"
            )));
        };
        if at_least {
            vq.min_severity = Some(sev);
        } else {
            vq.severities.push(sev);
        }
    }
    let (cursor, limit) = (q.cursor.clone(), limit(q.limit.as_deref())?);
    list_page(
        &state,
        caller,
        headers,
        cursor,
        limit,
        move |snap, visible, cursor, limit| snap.vulnerabilities(&vq, visible, cursor, limit),
    )
    .await
}

#[utoipa::path(get, path = "/api/v1/vulnerabilities/{id}",
    params(("id" = String, Path, description = "Vulnerability id or alias"),
           ("cursor" = Option<String>, Query, description = "`affected_next` of the previous answer: the next repositories of `affected`"),
           ("limit" = Option<usize>, Query, description = "Repositories of `affected` per page (default 50, at most 500)")),
    responses((status = 200, body = VulnDetail), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn vulnerability(
    AxState(state): AxState<State>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Params(q): Params<PageQuery>,
) -> ApiResult<Response> {
    // Paged: a vulnerability in thousands of images listed every
    // repository with all its tags and digests (826 kB at 8,200 images).
    let (cursor, limit) = (q.cursor, limit(q.limit.as_deref())?);
    let id2 = id.clone();
    snapshot_read(
        &state,
        caller,
        headers,
        cursor,
        limit,
        move |snap, visible, cursor, limit| snap.vulnerability(&id2, visible, cursor, limit),
        move |svc, caller, found| match found {
            Some(mut v) => {
                v.affected_next = v.affected_next.map(|n| stamp_cursor(svc, &n));
                Ok(v)
            }
            None => Err(caller.hidden(format!(
                "vulnerability {id:?} affects no image in this registry"
            ))),
        },
    )
    .await
}

/// One entry of the scan queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueItem {
    pub digest: String,
    pub repository: String,
    pub platform: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub queued_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

/// The scan queue: what waits, what runs, what failed and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueBoard {
    pub counts: std::collections::BTreeMap<String, usize>,
    pub pending: Vec<QueueItem>,
    pub running: Vec<QueueItem>,
    pub failed: Vec<QueueItem>,
}

#[utoipa::path(get, path = "/api/v1/browse/queue",
    responses((status = 200, body = QueueBoard)))]
pub async fn queue(
    AxState(state): AxState<State>,
    caller: Caller,
    headers: HeaderMap,
    _: Params<NoParams>,
) -> ApiResult<Response> {
    blocking(&state, move |svc| {
        use assess::store::status;
        let scope = Scope::new(&caller.principal);
        let t = |ms: i64| assess::clock::rfc3339(assess::clock::from_ms(ms));
        let mut board = QueueBoard {
            counts: Default::default(),
            pending: Vec::new(),
            running: Vec::new(),
            failed: Vec::new(),
        };
        let rows = svc.store().all_images().map_err(ApiError::internal)?;
        for r in rows {
            if !scope.repo(&r.repo) {
                continue;
            }
            *board.counts.entry(r.status.clone()).or_default() += 1;
            let list = match r.status.as_str() {
                status::QUEUED => &mut board.pending,
                status::CATALOGING | status::MATCHING => &mut board.running,
                status::FAILED => &mut board.failed,
                _ => continue,
            };
            // Keep each list small: the page shows the first 200 of each.
            if list.len() >= 200 {
                continue;
            }
            list.push(QueueItem {
                digest: r.digest,
                repository: r.repo,
                platform: r.platform,
                status: r.status,
                attempts: r.attempts,
                queued_at: t(r.queued_at),
                started_at: r.started_at.map(t),
                finished_at: r.finished_at.map(t),
                error: r.error,
            });
        }
        Ok(tagged_json(&headers, &board))
    })
    .await
}

/// The effective configuration the assessor runs with. Webhook secrets
/// are never included; webhook URLs lose any user information.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Settings {
    pub workers: usize,
    pub max_attempts: u32,
    pub rescan_window_days: u32,
    pub rescan_interval_hours: i64,
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
    pub webhook_attempts: u32,
    pub webhook_timeout_seconds: u64,
    /// Webhooks from the configuration file, secrets redacted.
    #[schema(value_type = Vec<Object>)]
    pub configured_webhooks: Vec<serde_json::Value>,
    pub catalog_on_upload: bool,
    pub database_stale_after_days: i64,
    pub access_control: bool,
}

/// A URL without its user information (`https://user:pw@host/` → `https://host/`).
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

#[utoipa::path(get, path = "/api/v1/settings",
    responses((status = 200, body = Settings), (status = 403, body = super::ErrorBody)))]
pub async fn settings(AxState(state): AxState<State>, caller: Caller) -> ApiResult<Response> {
    caller.require_admin()?;
    let access_control = state.access.is_some();
    let stale_after_days = state.stale_days;
    blocking(&state, move |svc| {
        let o = svc.options();
        let s = Settings {
            workers: o.workers,
            max_attempts: o.max_attempts,
            rescan_window_days: o.rescan_window_days,
            rescan_interval_hours: o.rescan_interval.whole_hours(),
            policy: serde_json::to_value(&o.policy).unwrap_or_default(),
            webhook_attempts: o.webhook_attempts,
            webhook_timeout_seconds: o.webhook_timeout.as_secs(),
            configured_webhooks: o
                .webhooks
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "url": redact_url(&w.url),
                        "repository": w.repository,
                        "min_severity": w.min_severity,
                        "secret": "(redacted)",
                    })
                })
                .collect(),
            catalog_on_upload: o.catalog_on_upload,
            database_stale_after_days: stale_after_days,
            access_control,
        };
        Ok(axum::Json(s).into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn user_information_leaves_urls() {
        assert_eq!(
            redact_url("https://u:secret@hooks.example/x?y=1"),
            "https://hooks.example/x?y=1"
        );
        assert_eq!(redact_url("http://127.0.0.1:9/h"), "http://127.0.0.1:9/h");
    }
}
