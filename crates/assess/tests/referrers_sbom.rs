//! SBOMs attached as referrers (CycloneDX, SPDX where configured, an
//! index's of its own) over a real registry on loopback, and the order of
//! findings and attaching.

mod common;

use common::OCI_MANIFEST;
use common::referrers::{CDX, CVE, Latch, PURL, health, setup};
use oci::Digest;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// After a push the image's CycloneDX SBOM is a referrer of it, pullable,
/// annotated, unsupported to the assessor and not metered; an unchanged
/// re-assessment attaches nothing; a new catalog version replaces it.
#[tokio::test]
async fn sbom_is_attached_once_per_catalog_version() {
    let s = setup(|_| {}).await;
    let (digest, _) = s.push_image("team/app", "v1").await;
    let view = s.settled(&digest.to_string()).await;
    assert_eq!(view.status, "done");
    let refs = s.referrers("team/app", &digest, CDX).await;
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0]["artifactType"], CDX);
    let sbom = refs[0]["digest"].as_str().unwrap().to_string();
    let ann = &refs[0]["annotations"];
    assert!(ann["org.opencontainers.image.created"].is_string(), "{ann}");
    assert_eq!(ann[assess::CATALOG_VERSION_ANNOTATION], "1");
    // Pull it like any artifact.
    let (m, doc) = s.artifact("team/app", &sbom).await;
    assert_eq!(m["subject"]["digest"], digest.to_string());
    let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(doc["bomFormat"], "CycloneDX");
    assert_eq!(doc["specVersion"], "1.6");
    assert!(doc.to_string().contains(PURL), "{doc}");
    // The SBOM is an artifact: unsupported, never metered, no SBOM of its own.
    let v = s.settled(&sbom).await;
    assert_eq!(v.status, "unsupported");
    assert!(
        s.referrers("team/app", &Digest::parse(&sbom).unwrap(), CDX)
            .await
            .is_empty()
    );
    let usage = s.service.store().usage("2000-01", "2999-12").unwrap();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(usage[0].images, 1);

    // Listings show the image, not drydock's own SBOM beside it.
    let listed = s.service.list_images(Some("team/app")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, digest.to_string());

    // A rescan that changes nothing attaches nothing new.
    assert!(s.service.requeue(&digest.to_string()).unwrap());
    s.settled(&digest.to_string()).await;
    let refs = s.referrers("team/app", &digest, CDX).await;
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["digest"], sbom.as_str());

    // A new catalog version replaces it; the old one is gone.
    s.catalog.0.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await; // a later created time
    assert!(s.service.requeue(&digest.to_string()).unwrap());
    s.settled(&digest.to_string()).await;
    let refs = s.referrers("team/app", &digest, CDX).await;
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_ne!(refs[0]["digest"], sbom.as_str());
    assert_eq!(
        refs[0]["annotations"][assess::CATALOG_VERSION_ANNOTATION],
        "2"
    );
    let r = s
        .client
        .get(format!("{}/v2/team/app/manifests/{sbom}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// `sbom.rules` turn attaching off per repository.
#[tokio::test]
async fn sbom_rules_turn_it_off_per_repository() {
    let s = setup(|o| {
        o.sbom.rules = vec![assess::SbomRule {
            repository: "quiet/*".parse().unwrap(),
            enabled: false,
            spdx: None,
        }]
    })
    .await;
    let (digest, _) = s.push_image("quiet/app", "v1").await;
    s.settled(&digest.to_string()).await;
    assert!(s.referrers("quiet/app", &digest, CDX).await.is_empty());
}

const SPDX: &str = "application/spdx+json";

/// Where a rule asks for it, an SPDX 2.3 document is attached beside the
/// CycloneDX one, and replaced with it when the catalog version changes.
#[tokio::test]
async fn spdx_is_attached_beside_cyclonedx_where_configured() {
    let s = setup(|o| {
        o.sbom.rules = vec![assess::SbomRule {
            repository: "spdx/*".parse().unwrap(),
            enabled: true,
            spdx: Some(true),
        }]
    })
    .await;
    let (digest, _) = s.push_image("spdx/app", "v1").await;
    s.settled(&digest.to_string()).await;
    let refs = s.referrers("spdx/app", &digest, SPDX).await;
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_eq!(refs[0]["artifactType"], SPDX);
    assert_eq!(
        refs[0]["annotations"][assess::CATALOG_VERSION_ANNOTATION],
        "1"
    );
    let spdx = refs[0]["digest"].as_str().unwrap().to_string();
    let (m, bytes) = s.artifact("spdx/app", &spdx).await;
    assert_eq!(m["subject"]["digest"], digest.to_string());
    assert_eq!(m["layers"][0]["mediaType"], SPDX);
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert!(doc.to_string().contains(PURL), "{doc}");
    validate_spdx(&bytes);
    assert_eq!(s.referrers("spdx/app", &digest, CDX).await.len(), 1);
    // The SPDX artifact is an artifact too, hidden from listings.
    assert_eq!(s.settled(&spdx).await.status, "unsupported");
    assert_eq!(s.service.list_images(Some("spdx/app")).unwrap().len(), 1);

    // Other repositories get CycloneDX only (SPDX is off by default). A
    // different image: the same digest is assessed once, in its first
    // repository.
    let config = r#"{"architecture":"arm64","os":"linux"}"#;
    let dc = s.push_blob("team/app", config.as_bytes()).await;
    let dl = s.push_blob("team/app", b"layer").await;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{dl}","size":5}}]}}"#,
        config.len()
    );
    let other = s.push_manifest("team/app", "v1", &body).await;
    s.settled(&other.to_string()).await;
    assert!(s.referrers("team/app", &other, SPDX).await.is_empty());
    assert_eq!(s.referrers("team/app", &other, CDX).await.len(), 1);

    // A rescan that changes nothing keeps it; a new catalog version
    // replaces it and deletes the old one.
    assert!(s.service.requeue(&digest.to_string()).unwrap());
    s.settled(&digest.to_string()).await;
    assert_eq!(
        s.referrers("spdx/app", &digest, SPDX).await[0]["digest"],
        spdx.as_str()
    );
    s.catalog.0.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(s.service.requeue(&digest.to_string()).unwrap());
    s.settled(&digest.to_string()).await;
    let refs = s.referrers("spdx/app", &digest, SPDX).await;
    assert_eq!(refs.len(), 1, "{refs:?}");
    assert_ne!(refs[0]["digest"], spdx.as_str());
    let r = s
        .client
        .get(format!("{}/v2/spdx/app/manifests/{spdx}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// An index gets SBOMs of its own: a CycloneDX document listing its
/// platform images by digest and platform and, with SPDX on, an SPDX one
/// whose index package contains a package per platform image (valid to
/// the reference SPDX tools); each image keeps its own.
#[tokio::test]
async fn an_index_sbom_names_its_platform_images() {
    let s = setup(|o| o.sbom.spdx = true).await;
    let layer = s.push_blob("multi/app", b"layer").await;
    let mut images = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#);
        let dc = s.push_blob("multi/app", config.as_bytes()).await;
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":5}}]}}"#,
            config.len()
        );
        let d = Digest::sha256_of(body.as_bytes());
        s.push_manifest("multi/app", &d.to_string(), &body).await;
        images.push((d, body.len(), arch));
    }
    let entries: Vec<String> = images
        .iter()
        .map(|(d, size, arch)| {
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{size},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
            )
        })
        .collect();
    const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let index_body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    );
    let r = s
        .client
        .put(format!("{}/v2/multi/app/manifests/v1", s.base))
        .header("content-type", OCI_INDEX)
        .body(index_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let index = Digest::sha256_of(index_body.as_bytes());
    for (d, _, _) in &images {
        s.settled(&d.to_string()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let refs = loop {
        let refs = s.referrers("multi/app", &index, CDX).await;
        if !refs.is_empty() || Instant::now() > deadline {
            break refs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refs.len(), 1, "{refs:?}");
    let (m, doc) = s
        .artifact("multi/app", refs[0]["digest"].as_str().unwrap())
        .await;
    assert_eq!(m["subject"]["digest"], index.to_string());
    assert_eq!(m["subject"]["mediaType"], OCI_INDEX);
    let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(doc["specVersion"], "1.6");
    assert_eq!(doc["metadata"]["component"]["version"], index.to_string());
    let components = doc["components"].as_array().unwrap();
    assert_eq!(components.len(), 2, "{doc}");
    for (c, (d, _, arch)) in components.iter().zip(&images) {
        assert_eq!(c["type"], "container");
        assert_eq!(c["bom-ref"], d.to_string());
        let platform = c["properties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "drydock:platform")
            .unwrap();
        assert_eq!(platform["value"], format!("linux/{arch}"));
        // Each platform image has its own SBOM with its packages.
        assert_eq!(s.referrers("multi/app", d, CDX).await.len(), 1);
        assert_eq!(s.referrers("multi/app", d, SPDX).await.len(), 1);
    }

    // The index's SPDX document.
    s.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    let refs = s.referrers("multi/app", &index, SPDX).await;
    assert_eq!(refs.len(), 1, "{refs:?}");
    let (m, bytes) = s
        .artifact("multi/app", refs[0]["digest"].as_str().unwrap())
        .await;
    assert_eq!(m["subject"]["digest"], index.to_string());
    assert_eq!(m["subject"]["mediaType"], OCI_INDEX);
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    let packages = doc["packages"].as_array().unwrap();
    assert_eq!(packages[0]["SPDXID"], "SPDXRef-Image");
    assert_eq!(packages[0]["versionInfo"], index.to_string());
    let platform_images: Vec<&serde_json::Value> = packages
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Image")
        .collect();
    assert_eq!(platform_images.len(), 2, "{doc}");
    for (p, (d, _, arch)) in platform_images.iter().zip(&images) {
        assert_eq!(p["primaryPackagePurpose"], "CONTAINER");
        assert_eq!(p["versionInfo"], d.to_string());
        assert!(
            p["comment"]
                .as_str()
                .unwrap()
                .contains(&format!("linux/{arch}")),
            "{p}"
        );
        let id = p["SPDXID"].as_str().unwrap();
        assert!(
            doc["relationships"].as_array().unwrap().iter().any(|r| {
                r["spdxElementId"] == "SPDXRef-Image"
                    && r["relationshipType"] == "CONTAINS"
                    && r["relatedSpdxElement"] == id
            }),
            "{doc}"
        );
    }
    validate_spdx(&bytes);
}

/// Validate an SPDX document with the reference SPDX tools (.ci/venv).
fn validate_spdx(bytes: &[u8]) {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv/bin");
    if tools.join("pyspdxtools").exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.spdx.json");
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new(tools.join("pyspdxtools"))
            .arg("-i")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "SPDX validation: {text}"
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "pyspdxtools (.ci/venv) is needed in CI"
        );
        eprintln!("skipped: SPDX validation (no .ci/venv/bin/pyspdxtools)");
    }
}

/// An image's findings are stored, and told, before its SBOM is attached:
/// with the referrer push held back, the image is done and its findings
/// and webhook delivery are there; released, the SBOM follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_are_stored_before_the_sbom_is_attached() {
    let s = setup(|_| {}).await;
    s.latch.hold(true);
    // Released however the test ends: a failed assertion must not leave
    // the attaching thread blocked (the runtime waits for it).
    struct Release(Arc<Latch>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.hold(false);
        }
    }
    let _release = Release(s.latch.clone());
    let (digest, _) = s.push_image("team/app", "v1").await;
    let d = digest.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.latch.entered.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the SBOM was never attached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The attachment is blocked now.
    let v = s.view(&d).await.unwrap();
    assert_eq!(v.status, "done", "findings wait for the SBOM: {v:?}");
    assert_eq!(v.findings.len(), 1);
    assert_eq!(&*v.findings[0].finding.id, CVE);
    assert_eq!(health(&v), "unhealthy");
    assert_eq!(s.service.store().deliveries(None, 100).unwrap().len(), 1);
    assert!(s.referrers("team/app", &digest, CDX).await.is_empty());
    // Idle means the SBOM is attached too.
    assert!(
        s.service
            .wait_idle(Duration::from_millis(200))
            .await
            .is_err()
    );
    s.latch.hold(false);
    s.service.wait_idle(Duration::from_secs(60)).await.unwrap();
    assert_eq!(s.referrers("team/app", &digest, CDX).await.len(), 1);
}
