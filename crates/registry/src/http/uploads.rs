//! Upload handlers: start, chunked `PATCH` and the final `PUT`.

use super::{Resp, content_length, digest, header_str, hv, query, query_pairs};
use crate::upload::{SessionKey, range_error};
use crate::{ErrorCode, Registry, RegistryError};
use auth::{Action, Principal};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use oci::{Digest, Name};

pub(super) fn upload_response(status: StatusCode, repo: &Name, id: &str, len: u64) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        header::LOCATION,
        hv(format!("/v2/{repo}/blobs/uploads/{id}")),
    );
    h.insert(header::RANGE, hv(format!("0-{}", len.saturating_sub(1))));
    h.insert("Docker-Upload-UUID", hv(id));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    (status, h).into_response()
}

fn created_blob(repo: &Name, d: &Digest) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, hv(format!("/v2/{repo}/blobs/{d}")));
    h.insert("Docker-Content-Digest", hv(d.to_string()));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    (StatusCode::CREATED, h).into_response()
}

/// `Content-Range: <first>-<last>` (inclusive; a `bytes ` prefix is
/// tolerated). Malformed is 416.
fn content_range(h: &HeaderMap) -> Result<Option<(u64, u64)>, RegistryError> {
    let Some(v) = header_str(h, "content-range") else {
        return Ok(None);
    };
    let s = v.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or("");
    let parsed = s
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    match parsed {
        Some(r) => Ok(Some(r)),
        None => Err(range_error(format!("malformed Content-Range {v:?}"))),
    }
}

fn body_stream(req: Request) -> impl futures::Stream<Item = Result<Bytes, axum::Error>> + Unpin {
    req.into_body()
        .into_data_stream()
        .map(|r: Result<Bytes, axum::Error>| r)
}

/// Whether the blob can be mounted into another repository for `p`: it is
/// linked to `from`, which `p` may pull, or (without `from`) to some
/// repository `p`'s identity may pull. Never a way to reach a blob the
/// caller could not download itself.
fn mount_source(
    reg: &Registry,
    p: &Principal,
    d: &Digest,
    from: Option<&str>,
) -> Result<bool, RegistryError> {
    match from {
        Some(from) => match Name::parse(from) {
            Ok(from) => {
                Ok(p.may(from.as_str(), Action::Pull) && reg.blob_size(&from, d)?.is_some())
            }
            Err(_) => Ok(false),
        },
        // No `from` (automatic cross-mount): any repository holding the
        // blob that the identity may pull. Its token need not name it:
        // clients ask only for the repositories they know.
        None => Ok(storage::block_on(reg.inner.store.meta.blob_repos(d))?
            .iter()
            .any(|r| p.identity_may(r, Action::Pull))),
    }
}

pub(super) async fn start_upload(reg: &Registry, repo: &Name, p: &Principal, req: Request) -> Resp {
    let q = query_pairs(&req);
    if let Some(m) = query(&q, "mount") {
        if let Ok(d) = Digest::parse(m)
            && mount_source(reg, p, &d, query(&q, "from"))?
            && reg.link_blob(repo, &d).is_ok()
        {
            return Ok(created_blob(repo, &d));
        }
        // Fall back to an ordinary upload session.
    } else if let Some(ds) = query(&q, "digest") {
        let d = digest(ds)?;
        let cl = content_length(req.headers());
        reg.ingest_blob(repo, &d, body_stream(req), cl).await?;
        return Ok(created_blob(repo, &d));
    }
    let id = reg.start_upload(repo, &p.name()).await?.to_string();
    Ok(upload_response(StatusCode::ACCEPTED, repo, &id, 0))
}

pub(super) async fn patch_upload(reg: &Registry, key: &SessionKey<'_>, req: Request) -> Resp {
    let range = content_range(req.headers())?;
    let cl = content_length(req.headers());
    let len = reg.patch_upload(key, range, cl, body_stream(req)).await?;
    Ok(upload_response(StatusCode::ACCEPTED, key.repo, key.id, len))
}

pub(super) async fn put_upload(reg: &Registry, key: &SessionKey<'_>, req: Request) -> Resp {
    let q = query_pairs(&req);
    let Some(ds) = query(&q, "digest") else {
        // Check the session exists first: an unknown one is 404.
        reg.upload_info(key).await?;
        return Err(RegistryError::new(
            ErrorCode::DigestInvalid,
            "the closing PUT needs ?digest=",
        ));
    };
    let d = digest(ds)?;
    let range = content_range(req.headers())?;
    let cl = content_length(req.headers());
    reg.finish_upload(key, &d, range, cl, body_stream(req))
        .await?;
    Ok(created_blob(key.repo, &d))
}
