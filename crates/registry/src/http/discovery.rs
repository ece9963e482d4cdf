//! Discovery: tag lists, the catalog and referrers.

use super::{Resp, hv, query, query_pairs};
use crate::{ErrorCode, Registry, RegistryError};
use auth::{Action, Principal};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use oci::{Digest, Name};
use storage::block_on;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `n` and `last` from the query; `n` absent means no limit.
fn paging(q: &[(String, String)]) -> Result<(Option<usize>, Option<String>), RegistryError> {
    let n = match query(q, "n") {
        Some(v) if !v.is_empty() => Some(v.parse::<usize>().map_err(|_| {
            RegistryError::new(ErrorCode::Unsupported, format!("n={v:?} is not a number"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
        _ => None,
    };
    Ok((n, query(q, "last").map(str::to_string)))
}

fn link_next(base: &str, n: usize, last: &str) -> HeaderValue {
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    hv(format!("<{base}?n={n}&last={last}>; rel=\"next\""))
}

pub(super) fn tags_list(reg: &Registry, repo: &Name, req: &Request) -> Resp {
    let q = query_pairs(req);
    let (n, last) = paging(&q)?;
    let meta = &reg.inner.store.meta;
    if !block_on(meta.repo_exists(repo.as_str()))? {
        return Err(RegistryError::new(
            ErrorCode::NameUnknown,
            format!("repository {repo} is unknown"),
        ));
    }
    let mut tags: Vec<String> = if n == Some(0) {
        Vec::new()
    } else {
        block_on(meta.tags(repo.as_str(), last.as_deref(), n.map(|n| n + 1)))?
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    };
    let mut resp_headers = HeaderMap::new();
    if let Some(n) = n
        && tags.len() > n
    {
        tags.truncate(n);
        let base = format!("/v2/{repo}/tags/list");
        resp_headers.insert(header::LINK, link_next(&base, n, tags.last().unwrap()));
    }
    let body = serde_json::json!({ "name": repo.as_str(), "tags": tags }).to_string();
    resp_headers.insert(header::CONTENT_TYPE, hv("application/json"));
    Ok((resp_headers, body).into_response())
}

/// Repositories read per database query while filtering the catalog.
const CATALOG_BATCH: usize = 500;

/// Repositories after `last` that `p`'s identity may pull, at most `want`.
/// Paging runs over this filtered list: `last` is a name the caller saw.
fn visible_repositories(
    reg: &Registry,
    p: &Principal,
    last: Option<String>,
    want: Option<usize>,
) -> Result<Vec<String>, RegistryError> {
    let mut out = Vec::new();
    let mut cursor = last;
    loop {
        let batch = block_on(
            reg.inner
                .store
                .meta
                .repositories(cursor.as_deref(), Some(CATALOG_BATCH)),
        )?;
        let exhausted = batch.len() < CATALOG_BATCH;
        cursor = batch.last().cloned();
        for r in batch {
            if want.is_some_and(|w| out.len() >= w) {
                return Ok(out);
            }
            if p.identity_may(&r, Action::Pull) {
                out.push(r);
            }
        }
        if exhausted || want.is_some_and(|w| out.len() >= w) {
            return Ok(out);
        }
    }
}

/// The catalog lists only repositories the caller's identity may pull (an
/// access token needs `registry:catalog:*`, checked by the caller).
pub(super) fn catalog(reg: &Registry, req: &Request, p: &Principal) -> Resp {
    let q = query_pairs(req);
    let (n, last) = paging(&q)?;
    let mut repos = if n == Some(0) {
        Vec::new()
    } else {
        visible_repositories(reg, p, last, n.map(|n| n + 1))?
    };
    let mut resp_headers = HeaderMap::new();
    if let Some(n) = n
        && repos.len() > n
    {
        repos.truncate(n);
        resp_headers.insert(
            header::LINK,
            link_next("/v2/_catalog", n, repos.last().unwrap()),
        );
    }
    resp_headers.insert(header::CONTENT_TYPE, hv("application/json"));
    let body = serde_json::json!({ "repositories": repos }).to_string();
    Ok((resp_headers, body).into_response())
}

pub(super) fn referrers(reg: &Registry, repo: &Name, subject: &Digest, req: &Request) -> Resp {
    let q = query_pairs(req);
    let filter = query(&q, "artifactType").filter(|f| !f.is_empty());
    let list = block_on(reg.inner.store.meta.referrers(repo.as_str(), subject))?;
    let manifests: Vec<serde_json::Value> = list
        .into_iter()
        .filter(|r| filter.is_none() || r.artifact_type.as_deref() == filter)
        .map(|r| {
            let mut d = serde_json::json!({
                "mediaType": r.media_type,
                "digest": r.digest.to_string(),
                "size": r.size,
            });
            if let Some(a) = r.artifact_type {
                d["artifactType"] = a.into();
            }
            if let Some(a) = r
                .annotations
                .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    })
    .to_string();
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, hv(OCI_INDEX));
    if filter.is_some() {
        h.insert("OCI-Filters-Applied", hv("artifactType"));
    }
    Ok((h, body).into_response())
}
