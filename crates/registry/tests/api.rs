//! The Distribution API over HTTP beyond blob uploads (see uploads.rs):
//! health and metrics, manifests, tags, catalog, referrers, deletes, the
//! in-process API and GC, bad inputs included.

mod common;

use common::*;
use oci::{Digest, Name, Reference, Tag};
use registry::{Event, EventSink, GcOptions, Origin};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn base_health_metrics() {
    let s = start().await;
    let r = s.client.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(
        s.client
            .get(s.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        s.client
            .get(s.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let m = s.get("/metrics").await.text().await.unwrap();
    for name in [
        "drydock_http_requests_total",
        "drydock_http_request_duration_seconds",
        "drydock_uploads_in_progress",
        "drydock_storage_bytes",
        "drydock_http_received_bytes_total",
    ] {
        assert!(m.contains(name), "{name} missing from\n{m}");
    }
    assert!(m.contains("route=\"base\""));
}

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);
impl EventSink for Collect {
    fn on_event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

#[tokio::test]
async fn manifests_push_pull_validate_delete() {
    let s = start().await;
    let events = Arc::new(Collect::default());
    s.registry.add_sink(events.clone());
    let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    let layer = b"layer bytes";
    let cd = s.push_blob("app", config).await;
    let ld = s.push_blob("app", layer).await;
    let body = image_manifest(&cd, config.len(), &ld, layer.len());
    let md = Digest::sha256_of(body.as_bytes());

    let r = s.put_manifest("app", "v1", OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/app/manifests/{md}").as_str()
    );
    assert_eq!(
        r.headers()["docker-content-digest"],
        md.to_string().as_str()
    );

    for reference in ["v1".to_string(), md.to_string()] {
        let r = s
            .client
            .get(s.url(&format!("/v2/app/manifests/{reference}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(
            r.headers()["docker-content-digest"],
            md.to_string().as_str()
        );
        assert_eq!(r.headers()["etag"], format!("\"{md}\"").as_str());
        assert_eq!(r.text().await.unwrap(), body);
        let r = s.head(&format!("/v2/app/manifests/{reference}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-length"],
            body.len().to_string().as_str()
        );
    }
    // Accept that excludes the type.
    let r = s
        .client
        .get(s.url("/v2/app/manifests/v1"))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "MANIFEST_UNKNOWN").await;

    // Pull record and events.
    s.registry.flush();
    let pulls = s
        .registry
        .recent_pulls(time::OffsetDateTime::now_utc() - Duration::from_secs(60))
        .unwrap();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].1, md);
    {
        let events = events.0.lock().unwrap();
        // Each new blob as it was committed, then the manifest.
        assert!(
            matches!(&events[0], Event::BlobPushed { digest, size, .. } if *digest == cd && *size == config.len() as u64)
        );
        assert!(matches!(&events[1], Event::BlobPushed { digest, .. } if *digest == ld));
        assert!(
            matches!(&events[2], Event::ManifestPushed { tags, origin: Origin::Push, .. } if tags.len() == 1 && tags[0].as_str() == "v1")
        );
    }
    // The same content pushed again (here, to another repository) is not
    // new to the store: no event.
    s.push_blob("other", layer).await;
    assert!(
        !events.0.lock().unwrap()[3..]
            .iter()
            .any(|e| matches!(e, Event::BlobPushed { .. }))
    );

    // Unknown blob: refused, tag unchanged.
    let missing = Digest::sha256_of(b"missing");
    let bad = image_manifest(&cd, config.len(), &missing, 7);
    let r = s.put_manifest("app", "v1", OCI_MANIFEST, &bad).await;
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN").await;
    // Wrong size.
    let bad = image_manifest(&cd, config.len(), &ld, 999);
    let r = s.put_manifest("app", "v1", OCI_MANIFEST, &bad).await;
    assert_error(r, 400, "MANIFEST_INVALID").await;
    // Not JSON, schema 1, mismatched content type.
    let r = s.put_manifest("app", "v1", OCI_MANIFEST, "not json").await;
    assert_error(r, 400, "MANIFEST_INVALID").await;
    let r = s
        .put_manifest(
            "app",
            "v1",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            r#"{"schemaVersion":1}"#,
        )
        .await;
    assert_error(r, 400, "MANIFEST_INVALID").await;
    // Digest reference that does not match.
    let r = s
        .put_manifest(
            "app",
            &Digest::sha256_of(b"x").to_string(),
            OCI_MANIFEST,
            &body,
        )
        .await;
    assert_error(r, 400, "DIGEST_INVALID").await;
    // Oversized.
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(5 << 20));
    let r = s.put_manifest("app", "v1", OCI_MANIFEST, &huge).await;
    assert_eq!(r.status(), 413);
    // Bad tag, bad name.
    let r = s.put_manifest("app", "-bad", OCI_MANIFEST, &body).await;
    assert_eq!(r.status(), 400);
    // Nothing can be stored under an invalid tag: reading or deleting one
    // finds nothing.
    for method in [
        reqwest::Method::GET,
        reqwest::Method::HEAD,
        reqwest::Method::DELETE,
    ] {
        let r = s
            .client
            .request(method.clone(), s.url("/v2/app/manifests/.INVALID_TAG"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method}");
        if method != reqwest::Method::HEAD {
            assert_error(r, 404, "MANIFEST_UNKNOWN").await;
        }
    }
    let r = s.put_manifest("App", "v1", OCI_MANIFEST, &body).await;
    assert_error(r, 400, "NAME_INVALID").await;
    let got = s.get("/v2/app/manifests/v1").await;
    assert_eq!(got.text().await.unwrap(), body);
    assert_eq!(
        s.registry.tags(&Name::parse("app").unwrap()).unwrap().len(),
        1
    );

    // Index: missing child refused, present child accepted.
    let index = |child: &Digest, size: usize| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child}","size":{size},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        )
    };
    let r = s
        .put_manifest("app", "multi", OCI_INDEX, &index(&missing, 10))
        .await;
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN").await;
    let r = s
        .put_manifest("app", "multi", OCI_INDEX, &index(&md, body.len() + 1))
        .await;
    assert_error(r, 400, "MANIFEST_INVALID").await;
    let r = s
        .put_manifest("app", "multi", OCI_INDEX, &index(&md, body.len()))
        .await;
    assert_eq!(r.status(), 201);

    // In-process API sees the same.
    let repo = Name::parse("app").unwrap();
    let m = s
        .registry
        .get_manifest(&repo, &Reference::Tag(Tag::parse("multi").unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.media_type, OCI_INDEX);
    assert_eq!(s.registry.manifests(&repo).unwrap().len(), 2);

    // Delete a tag, then a manifest.
    let r = s.delete("/v2/app/manifests/multi").await;
    assert_eq!(r.status(), 202);
    let r = s.get("/v2/app/manifests/multi").await;
    assert_error(r, 404, "MANIFEST_UNKNOWN").await;
    let r = s.delete(&format!("/v2/app/manifests/{md}")).await;
    assert_eq!(r.status(), 202);
    let r = s.get("/v2/app/manifests/v1").await;
    assert_error(r, 404, "MANIFEST_UNKNOWN").await;
    let r = s.delete(&format!("/v2/app/manifests/{md}")).await;
    assert_error(r, 404, "MANIFEST_UNKNOWN").await;
    let ev = events.0.lock().unwrap();
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::TagDeleted { tag, .. } if tag.as_str() == "multi"))
    );
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::ManifestDeleted { digest, .. } if *digest == md))
    );
}

#[tokio::test]
async fn tags_and_catalog_pagination() {
    let s = start().await;
    let cd = s.push_blob("p/q", b"{}").await;
    let ld = s.push_blob("p/q", b"l").await;
    let body = image_manifest(&cd, 2, &ld, 1);
    for t in ["c", "a", "b", "d"] {
        assert_eq!(
            s.put_manifest("p/q", t, OCI_MANIFEST, &body).await.status(),
            201
        );
    }
    let r = s.get("/v2/p/q/tags/list").await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["name"], "p/q");
    assert_eq!(v["tags"], serde_json::json!(["a", "b", "c", "d"]));
    let r = s.get("/v2/p/q/tags/list?n=2").await;
    assert_eq!(
        r.headers()["link"],
        "</v2/p/q/tags/list?n=2&last=b>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["a", "b"]));
    let r = s.get("/v2/p/q/tags/list?n=2&last=b").await;
    assert!(!r.headers().contains_key("link"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["c", "d"]));
    let r = s.get("/v2/p/q/tags/list?n=0").await;
    assert!(!r.headers().contains_key("link"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!([]));
    let r = s.get("/v2/nope/tags/list").await;
    assert_error(r, 404, "NAME_UNKNOWN").await;

    s.push_blob("a", b"x").await;
    s.push_blob("z/y", b"x").await;
    let v: serde_json::Value = s.get("/v2/_catalog").await.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["a", "p/q", "z/y"]));
    let r = s.get("/v2/_catalog?n=1&last=a").await;
    assert_eq!(
        r.headers()["link"],
        "</v2/_catalog?n=1&last=p%2Fq>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["p/q"]));
}

#[tokio::test]
async fn referrers_and_subject() {
    let s = start().await;
    let cd = s.push_blob("r", b"{}").await;
    let ld = s.push_blob("r", b"l").await;
    let body = image_manifest(&cd, 2, &ld, 1);
    let md = Digest::sha256_of(body.as_bytes());
    assert_eq!(
        s.put_manifest("r", "v1", OCI_MANIFEST, &body)
            .await
            .status(),
        201
    );
    let empty = s.push_blob("r", b"{}").await;
    let sig = s.push_blob("r", b"signature").await;
    let artifact = |t: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{t}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{sig}","size":9}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{md}","size":{}}},"annotations":{{"k":"v"}}}}"#,
            body.len()
        )
    };
    let a1 = artifact("application/vnd.example.sig");
    let a1d = Digest::sha256_of(a1.as_bytes());
    let r = s
        .put_manifest("r", &a1d.to_string(), OCI_MANIFEST, &a1)
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["oci-subject"], md.to_string().as_str());
    let a2 = artifact("application/vnd.example.sbom");
    let a2d = Digest::sha256_of(a2.as_bytes());
    assert_eq!(
        s.put_manifest("r", &a2d.to_string(), OCI_MANIFEST, &a2)
            .await
            .status(),
        201
    );

    let r = s.get(&format!("/v2/r/referrers/{md}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    assert!(!r.headers().contains_key("oci-filters-applied"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(v["manifests"][0]["annotations"]["k"], "v");

    let r = s
        .client
        .get(s.url(&format!(
            "/v2/r/referrers/{md}?artifactType=application/vnd.example.sbom"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], a2d.to_string());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );

    // Unknown subject: an empty list. Bad digest: 400.
    let r = s
        .get(&format!("/v2/r/referrers/{}", Digest::sha256_of(b"q")))
        .await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
    let r = s.get("/v2/r/referrers/sha256:zz").await;
    assert_error(r, 400, "DIGEST_INVALID").await;

    // Push by digest with ?tag=.
    let r = s
        .client
        .put(s.url(&format!("/v2/r/manifests/{md}?tag=x1&tag=x2")))
        .header("content-type", OCI_MANIFEST)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let tags: Vec<_> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(tags, ["x1", "x2"]);
    assert_eq!(
        s.registry.tags(&Name::parse("r").unwrap()).unwrap().len(),
        3
    );
}

#[tokio::test]
async fn in_process_api_and_gc() {
    let s = start().await;
    let repo = Name::parse("inproc").unwrap();
    let data = vec![7u8; 3 << 20];
    let d = Digest::sha256_of(&data);
    let n = s.registry.put_blob(&repo, &d, &data[..]).await.unwrap();
    assert_eq!(n, data.len() as u64);
    let err = s
        .registry
        .put_blob(&repo, &Digest::sha256_of(b"no"), &data[..])
        .await
        .unwrap_err();
    assert_eq!(err.code, registry::ErrorCode::DigestInvalid);
    let cfg = s
        .registry
        .put_blob(&repo, &Digest::sha256_of(b"{}"), &b"{}"[..])
        .await;
    assert!(cfg.is_ok());
    let body = image_manifest(&Digest::sha256_of(b"{}"), 2, &d, data.len());
    let md = s
        .registry
        .put_manifest(
            &repo,
            &Reference::Tag(Tag::parse("t").unwrap()),
            body.into(),
            None,
            Origin::Import,
        )
        .await
        .unwrap();
    let mut r = s.registry.blob_source().open_blob(&d).unwrap();
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut back).unwrap();
    assert_eq!(back, data);
    let other = Name::parse("other").unwrap();
    s.registry.link_blob(&other, &d).unwrap();
    assert!(s.registry.has_blob(Some(&other), &d));
    assert_eq!(s.registry.repositories().unwrap().len(), 2);
    assert_eq!(
        s.registry
            .recent_pushes(time::OffsetDateTime::now_utc() - Duration::from_secs(60))
            .unwrap()[0]
            .1,
        md
    );

    // An unreferenced blob, and an untagged manifest.
    let orphan = s.push_blob("inproc", b"orphan").await;
    s.client
        .delete(s.url("/v2/inproc/manifests/t"))
        .send()
        .await
        .unwrap();
    // Within the grace period nothing goes.
    let rep = registry::gc_stores(
        s.dir.path(),
        &s.blobs,
        &s.metadata,
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
        },
    )
    .await
    .unwrap();
    assert_eq!(rep.blobs_removed, 0);
    assert_eq!(rep.manifests_removed, 0);
    let rep = registry::gc_stores(
        s.dir.path(),
        &s.blobs,
        &s.metadata,
        GcOptions {
            dry_run: true,
            grace: Duration::ZERO,
        },
    )
    .await
    .unwrap();
    assert_eq!(rep.manifests_removed, 1);
    assert!(s.registry.has_blob(None, &orphan));
    // Keep the big blob alive through a tag on another manifest.
    let body2 = image_manifest(&Digest::sha256_of(b"{}"), 2, &d, data.len())
        .replace("\"layers\"", "\"annotations\":{\"a\":\"b\"},\"layers\"");
    s.registry
        .put_manifest(
            &repo,
            &Reference::Tag(Tag::parse("keep").unwrap()),
            body2.into(),
            None,
            Origin::Push,
        )
        .await
        .unwrap();
    let rep = registry::gc_stores(
        s.dir.path(),
        &s.blobs,
        &s.metadata,
        GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        },
    )
    .await
    .unwrap();
    assert_eq!(rep.manifests_removed, 1, "{rep:?}");
    assert!(rep.blobs_removed >= 1, "{rep:?}");
    assert!(!s.registry.has_blob(None, &orphan));
    assert!(s.registry.has_blob(Some(&repo), &d));
    // The registry drops its manifest cache when it notices GC's journal
    // (checked about once a second on its housekeeping thread): wait for
    // that, with room for a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.get(&format!("/v2/inproc/manifests/{md}")).await;
        if r.status() == 404 {
            break;
        }
        assert_eq!(r.status(), 200);
        assert!(
            std::time::Instant::now() < deadline,
            "a collected manifest is still served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = s.get("/v2/inproc/manifests/keep").await;
    assert_eq!(r.status(), 200);
}

/// A component restarted on a running registry (the assessor after a
/// shutdown) registers its metrics again: the new collector replaces the
/// old one in `/metrics` (it was refused as a duplicate, and the restarted
/// assessor failed to start).
#[tokio::test]
async fn registering_metrics_again_replaces_the_earlier_collector() {
    let s = start().await;
    let counter = |value: u64| {
        let c = prometheus::IntCounter::new("drydock_test_restarts_total", "restarts").unwrap();
        c.inc_by(value);
        vec![Box::new(c) as Box<dyn prometheus::core::Collector>]
    };
    s.registry.register_metrics(counter(1)).unwrap();
    s.registry.register_metrics(counter(7)).unwrap();
    let m = s.get("/metrics").await.text().await.unwrap();
    let lines: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("drydock_test_restarts_total"))
        .collect();
    assert_eq!(lines, ["drydock_test_restarts_total 7"], "{m}");
}
