//! Manifest handlers: content negotiation, reads and pushes.

use super::{Resp, content_length, header_str, hv, query_pairs};
use crate::{ErrorCode, Origin, PullRefusal, Registry, RegistryError, StoredManifest};
use auth::{Action, Identity, Principal};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use oci::{Name, Reference, Tag};

/// Whether the client's `Accept` admits `media_type`. No `Accept`, or a
/// wildcard, admits everything.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut any_listed = false;
    for v in headers.get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { return true };
        for item in v.split(',') {
            let t = item.split(';').next().unwrap_or("").trim();
            if t.is_empty() {
                continue;
            }
            any_listed = true;
            if t == media_type || t == "*/*" || t == "application/*" {
                return true;
            }
        }
    }
    !any_listed
}

pub(super) fn get_manifest(reg: &Registry, repo: &Name, r: &Reference, req: &Request) -> Resp {
    let m = reg
        .get_manifest_cached(repo, r)?
        .ok_or_else(|| RegistryError::manifest_unknown(r))?;
    if let Some(refused) = gate(reg, repo, &m, req) {
        return Err(refused);
    }
    if !accepts(req.headers(), &m.media_type) {
        return Err(RegistryError::manifest_unknown(r).with_message(format!(
            "manifest {r} is a {}, which the request's Accept header does not allow",
            m.media_type
        )));
    }
    let etag = format!("\"{}\"", m.digest);
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, hv(&m.media_type));
    h.insert("Docker-Content-Digest", hv(m.digest.to_string()));
    h.insert(header::ETAG, hv(&etag));
    if let Some(s) = &m.subject {
        h.insert("OCI-Subject", hv(s.to_string()));
    }
    if header_str(req.headers(), "if-none-match") == Some(etag.as_str()) {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    h.insert(header::CONTENT_LENGTH, hv(m.bytes.len().to_string()));
    if req.method() == Method::HEAD {
        return Ok((h, Body::empty()).into_response());
    }
    reg.record_pull(repo, &m.digest);
    reg.inner.metrics.bytes_out.inc_by(m.bytes.len() as u64);
    Ok((h, Body::from(m.bytes.clone())).into_response())
}

/// The pull gate's refusal of `m`, unless it is not an image (artifacts,
/// referrers: SBOMs and signatures stay pullable), or the caller is exempt.
fn gate(reg: &Registry, repo: &Name, m: &StoredManifest, req: &Request) -> Option<RegistryError> {
    let gate = reg.pull_gate()?;
    if m.subject.is_some() || !is_image(&m.media_type) {
        return None;
    }
    // Exemptions are looked at only once refused: the healthy path pays
    // for one cache lookup.
    let refusal = gate.check(repo, &m.digest, &m.media_type)?;
    if let Some(p) = req.extensions().get::<Principal>()
        && bypasses(p, repo, &refusal)
    {
        return None;
    }
    reg.inner
        .metrics
        .pull_gate_refusals
        .with_label_values(&[refusal.reason.as_str()])
        .inc();
    Some(RegistryError::new(ErrorCode::Denied, refusal.message))
}

fn is_image(media_type: &str) -> bool {
    [
        oci::OCI_MANIFEST,
        oci::OCI_INDEX,
        oci::DOCKER_MANIFEST,
        oci::DOCKER_MANIFEST_LIST,
    ]
    .contains(&media_type)
}

/// Administrators of the repository and the rule's named identities pull
/// refused images. Without access control everyone is unrestricted, and
/// that is no exemption (the gate would never refuse anything).
fn bypasses(p: &Principal, repo: &Name, refusal: &PullRefusal) -> bool {
    if matches!(p.identity(), Identity::Unrestricted) {
        return false;
    }
    refusal.bypass.iter().any(|b| listed(b, p.identity())) || p.may(repo.as_str(), Action::Admin)
}

/// Whether bypass entry `entry` (`user:NAME`, `robot:NAME` or `robot$NAME`,
/// the name robots sign in with) names `identity`.
fn listed(entry: &str, identity: &Identity) -> bool {
    match identity {
        Identity::User { name, .. } => entry.strip_prefix("user:") == Some(name.as_str()),
        Identity::Robot { name } => {
            entry
                .strip_prefix("robot:")
                .or_else(|| entry.strip_prefix(auth::ROBOT_PREFIX))
                == Some(name.as_str())
        }
        _ => false,
    }
}

pub(super) async fn put_manifest(reg: &Registry, repo: &Name, r: &Reference, req: Request) -> Resp {
    let max = reg.inner.opts.max_manifest_size;
    let too_large = || {
        RegistryError::new(
            ErrorCode::SizeInvalid,
            format!("manifest larger than the {max} bytes allowed"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if content_length(req.headers()).is_some_and(|l| l > max as u64) {
        return Err(too_large());
    }
    let q = query_pairs(&req);
    let mut extra = Vec::new();
    for (k, v) in &q {
        if k == "tag" {
            extra.push(
                Tag::parse(v)
                    .map_err(|e| RegistryError::new(ErrorCode::ManifestInvalid, e.to_string()))?,
            );
        }
    }
    let content_type = header_str(req.headers(), "content-type").map(str::to_string);
    // No principal: served without the edge, as everywhere else unrestricted.
    let pusher = Some(
        req.extensions()
            .get::<Principal>()
            .map_or(Identity::Unrestricted, |p| p.identity().clone()),
    );
    let body = http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                RegistryError::new(ErrorCode::ManifestInvalid, format!("reading body: {e}"))
            }
        })?
        .to_bytes();
    let (d, subject) = reg
        .put_manifest_tags(
            repo,
            r,
            &extra,
            body,
            content_type.as_deref(),
            Origin::Push,
            pusher,
        )
        .await?;
    let mut h = HeaderMap::new();
    h.insert(header::LOCATION, hv(format!("/v2/{repo}/manifests/{d}")));
    h.insert("Docker-Content-Digest", hv(d.to_string()));
    h.insert(header::CONTENT_LENGTH, hv("0"));
    if let Some(s) = subject {
        h.insert("OCI-Subject", hv(s.to_string()));
    }
    for t in &extra {
        h.append("OCI-Tag", hv(t.as_str()));
    }
    Ok((StatusCode::CREATED, h).into_response())
}

impl RegistryError {
    fn with_message(mut self, m: String) -> RegistryError {
        self.message = m;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        assert!(accepts(&h, "x/y"));
        h.insert(header::ACCEPT, hv("a/b, x/y;q=0.5"));
        assert!(accepts(&h, "x/y"));
        assert!(!accepts(&h, "x/z"));
        h.insert(header::ACCEPT, hv("*/*"));
        assert!(accepts(&h, "x/z"));
    }

    #[test]
    fn bypass_entries_name_identities() {
        let alice = Identity::User {
            name: "alice".into(),
            groups: vec![],
        };
        let scanner = Identity::Robot {
            name: "scanner".into(),
        };
        assert!(listed("user:alice", &alice));
        assert!(!listed("robot:alice", &alice));
        assert!(!listed("user:alic", &alice));
        assert!(listed("robot:scanner", &scanner));
        assert!(listed("robot$scanner", &scanner));
        assert!(!listed("user:scanner", &scanner));
        assert!(!listed("anonymous", &Identity::Anonymous));
        assert!(!listed("-", &Identity::Unrestricted));
    }
}
