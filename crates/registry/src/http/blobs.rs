//! Blob downloads: `Range` requests, streamed from the blob driver or
//! redirected to the object store.

use super::{Resp, header_str, hv};
use crate::{ErrorCode, Registry, RegistryError};
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use oci::{Digest, Name, Reference};

enum RangeSpec {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parse a single `bytes=` range against a blob of `size` bytes. Anything
/// we do not understand (several ranges, other units) serves the whole.
fn parse_range(h: Option<&str>, size: u64) -> RangeSpec {
    let Some(h) = h else { return RangeSpec::Full };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last b bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::Unsatisfiable;
        };
        if n == 0 || size == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Part(size.saturating_sub(n), size - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeSpec::Unsatisfiable;
    };
    let end = if b.is_empty() {
        size.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) => e.min(size.saturating_sub(1)),
            Err(_) => return RangeSpec::Unsatisfiable,
        }
    };
    if start >= size || (!b.is_empty() && b.parse::<u64>().unwrap_or(0) < start) {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Part(start, end)
}

pub(super) async fn get_blob(
    reg: &Registry,
    repo: &Name,
    d: &Digest,
    method: &Method,
    headers: &HeaderMap,
) -> Resp {
    // A manifest is content of its repository too: served here when no
    // blob of that digest is linked (as distribution does).
    let (size, manifest) = match reg.blob_size_async(repo, d).await? {
        Some(size) => (size, None),
        None => match reg.get_manifest_cached(repo, &Reference::Digest(d.clone()))? {
            Some(m) => (m.bytes.len() as u64, Some(m)),
            None => return Err(RegistryError::blob_unknown(d)),
        },
    };
    let mut h = HeaderMap::new();
    h.insert("Docker-Content-Digest", hv(d.to_string()));
    if manifest.is_none()
        && method == Method::GET
        && let Some(url) = reg.blob_redirect(d).await?
    {
        // The object store serves the bytes (a presigned URL, valid for
        // minutes); the client follows with its Range header, if any.
        h.insert(header::LOCATION, hv(url));
        return Ok((StatusCode::TEMPORARY_REDIRECT, h).into_response());
    }
    h.insert(header::ETAG, hv(format!("\"{d}\"")));
    h.insert(header::ACCEPT_RANGES, hv("bytes"));
    h.insert(header::CONTENT_TYPE, hv("application/octet-stream"));
    let (status, start, len) = match parse_range(header_str(headers, "range"), size) {
        RangeSpec::Full => (StatusCode::OK, 0, size),
        RangeSpec::Part(s, e) => {
            h.insert(header::CONTENT_RANGE, hv(format!("bytes {s}-{e}/{size}")));
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        RangeSpec::Unsatisfiable => {
            h.insert(header::CONTENT_RANGE, hv(format!("bytes */{size}")));
            let e = RegistryError::new(
                ErrorCode::BlobUnknown,
                format!("range not satisfiable for a blob of {size} bytes"),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE);
            let mut resp = e.into_response();
            resp.headers_mut().extend(h);
            return Ok(resp);
        }
    };
    h.insert(header::CONTENT_LENGTH, hv(len.to_string()));
    if method == Method::HEAD {
        return Ok((status, h, Body::empty()).into_response());
    }
    if let Some(m) = manifest {
        let part = m.bytes.slice(start as usize..(start + len) as usize);
        reg.inner.metrics.bytes_out.inc_by(len);
        return Ok((status, h, Body::from(part)).into_response());
    }
    let body = Body::from_stream(reg.read_blob(d, start, len).await?);
    Ok((status, h, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert!(matches!(
            parse_range(Some("bytes=0-9"), 100),
            RangeSpec::Part(0, 9)
        ));
        assert!(matches!(
            parse_range(Some("bytes=90-"), 100),
            RangeSpec::Part(90, 99)
        ));
        assert!(matches!(
            parse_range(Some("bytes=-10"), 100),
            RangeSpec::Part(90, 99)
        ));
        assert!(matches!(
            parse_range(Some("bytes=95-200"), 100),
            RangeSpec::Part(95, 99)
        ));
        assert!(matches!(
            parse_range(Some("bytes=100-"), 100),
            RangeSpec::Unsatisfiable
        ));
        assert!(matches!(
            parse_range(Some("bytes=9-3"), 100),
            RangeSpec::Unsatisfiable
        ));
        assert!(matches!(parse_range(None, 100), RangeSpec::Full));
    }
}
