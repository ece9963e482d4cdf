//! Pull-through mirroring: repositories under a local prefix that fetch
//! from an upstream registry on a miss.
//!
//! A `GET`/`HEAD` of `/v2/<prefix>/<rest>/manifests/<ref>` that the registry
//! cannot answer runs an import of `docker://<upstream>/<rest>:<ref>` (or
//! `@<digest>`) into `<prefix>/<rest>` first, then lets the registry answer.
//! Everything the import guarantees holds (verified, deduplicated, tag last,
//! assessed on arrival). Concurrent misses of the same reference share one
//! import. A tag, once mirrored, is served from the local copy: it is not
//! refreshed when the upstream tag moves (import it again to refresh).

use crate::{ImportRequest, Importer, JobState};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use oci::{Name, Reference};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One mirrored namespace.
#[derive(Debug, Clone, Deserialize)]
pub struct MirrorRule {
    /// Local repository prefix: `hub` mirrors `hub/…` (a whole path
    /// component; `hub` itself is not a mirrored repository).
    pub prefix: String,
    /// Upstream `HOST[:PORT][/NAMESPACE]`: `hub/team/app` fetches
    /// `HOST/NAMESPACE/team/app`. Credentials come from the importer's
    /// stored remotes for `HOST[:PORT]`.
    pub upstream: String,
    /// Plain HTTP to the upstream.
    #[serde(default)]
    pub insecure: bool,
    /// Platforms to keep from upstream indexes (empty: all).
    #[serde(default)]
    pub platforms: Vec<String>,
}

struct Mirror {
    importer: Importer,
    rules: Vec<MirrorRule>,
    timeout: Duration,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Wrap the registry's router so the rules' repositories fetch on a miss.
/// Misses wait for the import up to `timeout`, then fall through to the
/// registry (which answers 404 when nothing arrived).
pub fn apply(
    router: Router,
    importer: Importer,
    rules: Vec<MirrorRule>,
    timeout: Duration,
) -> Router {
    if rules.is_empty() {
        return router;
    }
    let m = Arc::new(Mirror {
        importer,
        rules,
        timeout,
        inflight: Mutex::new(HashMap::new()),
    });
    router.layer(axum::middleware::from_fn_with_state(m, intercept))
}

/// `(name, reference)` of a manifest request path.
fn manifest_path(path: &str) -> Option<(Name, Reference)> {
    let rest = path.strip_prefix("/v2/")?;
    let (name, reference) = rest.rsplit_once("/manifests/")?;
    Some((Name::parse(name).ok()?, Reference::parse(reference).ok()?))
}

impl Mirror {
    fn rule_for(&self, name: &Name) -> Option<(&MirrorRule, String)> {
        self.rules.iter().find_map(|r| {
            let prefix = r.prefix.trim_end_matches('/');
            name.as_str()
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .map(|rest| (r, rest.to_string()))
        })
    }

    async fn present(&self, name: &Name, reference: &Reference) -> bool {
        matches!(
            self.importer.registry().get_manifest(name, reference).await,
            Ok(Some(_))
        )
    }

    async fn fetch(&self, rule: &MirrorRule, rest: &str, name: &Name, reference: &Reference) {
        let key = format!("{name}|{reference}");
        let lock = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if !self.present(name, reference).await {
            let upstream = rule.upstream.trim_end_matches('/');
            let (source, target) = match reference {
                Reference::Tag(t) => (
                    format!("docker://{upstream}/{rest}:{t}"),
                    format!("{name}:{t}"),
                ),
                Reference::Digest(d) => {
                    (format!("docker://{upstream}/{rest}@{d}"), name.to_string())
                }
            };
            let req = ImportRequest {
                source,
                target,
                platforms: rule.platforms.clone(),
                insecure: rule.insecure,
                ..Default::default()
            };
            match tokio::time::timeout(self.timeout, self.importer.run(req)).await {
                Ok(Ok(s)) if s.state == JobState::Succeeded => {
                    tracing::info!(repo = %name, %reference, "mirrored from upstream");
                }
                Ok(Ok(s)) => {
                    tracing::info!(repo = %name, %reference, error = ?s.error, "mirror fetch failed");
                }
                Ok(Err(e)) => {
                    tracing::warn!(repo = %name, %reference, error = %e, "mirror rule is misconfigured")
                }
                Err(_) => {
                    tracing::warn!(repo = %name, %reference, "mirror fetch still running; answering from what is present")
                }
            }
        }
        drop(_guard);
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&lock) <= 2 {
            map.remove(&key);
        }
    }
}

async fn intercept(State(m): State<Arc<Mirror>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD)
        && let Some((name, reference)) = manifest_path(req.uri().path())
        && let Some((rule, rest)) = m.rule_for(&name)
        && !m.present(&name, &reference).await
    {
        m.fetch(rule, &rest, &name, &reference).await;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_manifest_paths() {
        let (n, r) = manifest_path("/v2/hub/library/app/manifests/v1").unwrap();
        assert_eq!(
            (n.as_str(), r.to_string().as_str()),
            ("hub/library/app", "v1")
        );
        assert!(manifest_path("/v2/hub/app/blobs/sha256:00").is_none());
        assert!(manifest_path("/v2/hub/app/manifests/bad:ref").is_none());
    }
}
