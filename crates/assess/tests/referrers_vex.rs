//! VEX documents (through the service's API and pushed as referrers,
//! from trusted and untrusted pushers) applied to an image's verdict, over
//! a real registry on loopback.

mod common;

use common::referrers::{CDX, CVE, client_as, health, setup, setup_with};
use std::time::{Duration, Instant};

fn openvex(id: &str, product: &str, status: &str, extra: &str) -> String {
    format!(
        r#"{{
  "@context": "https://openvex.dev/ns/v0.2.0",
  "@id": "{id}",
  "author": "Platform Security <security@example.com>",
  "timestamp": "2026-01-10T10:00:00Z",
  "version": 1,
  "statements": [{{
    "vulnerability": {{"name": "{CVE}"}},
    "products": [{{
      "@id": "{product}",
      "subcomponents": [{{"@id": "pkg:deb/debian/openssl@3.0.11-1?arch=amd64&distro=debian-12"}}]
    }}],
    "status": "{status}"{extra}
  }}]
}}"#
    )
}

/// A VEX document through the service's API takes the finding out of the
/// verdict (re-judged from the stored inventory); the webhook says
/// nothing new; `affected` puts it back; invalid documents name the path.
#[tokio::test]
async fn vex_via_the_api_flips_health_without_a_notification() {
    let s = setup(|_| {}).await;
    let (digest, _) = s.push_image("team/app", "v1").await;
    let d = digest.to_string();
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "unhealthy");
    let told = s.service.store().deliveries(None, 100).unwrap().len();
    assert_eq!(told, 1);

    let purl = format!(
        "pkg:oci/app@{}?repository_url=registry.local/team/app",
        d.replace(':', "%3A")
    );
    let doc = openvex(
        "https://example.com/vex/app-1",
        &purl,
        "not_affected",
        r#", "justification": "vulnerable_code_not_in_execute_path""#,
    );
    let added = s.service.add_vex(doc.as_bytes(), "alice").unwrap().unwrap();
    assert_eq!(added.rejudged, 1);
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "healthy", "{:?}", v.health);
    assert_eq!(v.summary.as_ref().unwrap().not_affected, 1);
    let f = &v.findings[0];
    assert!(!f.violates_policy);
    let note = f.not_affected_per_vex.as_ref().unwrap();
    assert_eq!(note.document, "https://example.com/vex/app-1");
    assert_eq!(note.author, "Platform Security <security@example.com>");
    assert_eq!(
        note.justification.as_deref(),
        Some("vulnerable_code_not_in_execute_path")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.service.store().deliveries(None, 100).unwrap().len(), told);

    // The same document id, now affected: counted again.
    let doc = openvex(
        "https://example.com/vex/app-1",
        &purl,
        "affected",
        r#", "action_statement": "upgrade openssl""#,
    );
    let added = s.service.add_vex(doc.as_bytes(), "alice").unwrap().unwrap();
    assert!(added.replaced);
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "unhealthy");
    assert!(v.findings[0].not_affected_per_vex.is_none());

    // A statement for another image changes nothing here.
    let other = format!("sha256:{}", "0".repeat(64));
    let doc = openvex("https://example.com/vex/other", &other, "fixed", "");
    let added = s.service.add_vex(doc.as_bytes(), "alice").unwrap().unwrap();
    assert_eq!(added.rejudged, 0);
    assert_eq!(health(&s.settled(&d).await), "unhealthy");

    // Invalid documents: the JSON path of the problem.
    let bad = openvex("x", &d, "not_affected", "");
    let e = s
        .service
        .add_vex(bad.as_bytes(), "alice")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.path, "$.statements[0].justification");
    let bad = openvex("x", &d, "not_affected", r#", "justification": "trust_me""#);
    let e = s
        .service
        .add_vex(bad.as_bytes(), "alice")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.path, "$.statements[0].justification");
    assert!(e.message.contains("trust_me"), "{e}");
    let bad = openvex("x", &d, "maybe", "");
    let e = s
        .service
        .add_vex(bad.as_bytes(), "alice")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "$.statements[0].status: \"maybe\" is not one of not_affected, affected, fixed, under_investigation"
    );
    let e = s
        .service
        .add_vex(b"{\"@context\":\"https://openvex.dev/ns/v0.2.0\"}", "a")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.path, "$.@id");
}

/// A VEX document pushed as a referrer of the image (OpenVEX, then
/// CycloneDX VEX) is applied to that image; deleting it takes it back.
#[tokio::test]
async fn vex_pushed_as_a_referrer_is_applied() {
    let s = setup(|_| {}).await;
    let (digest, size) = s.push_image("team/app", "v1").await;
    let d = digest.to_string();
    assert_eq!(health(&s.settled(&d).await), "unhealthy");
    // Product by digest; the fix shipped in a patched build of the library.
    let doc = openvex("https://example.com/vex/r1", &d, "fixed", "");
    let vd = s
        .push_referrer(
            "team/app",
            &digest,
            size,
            "application/vnd.openvex+json",
            &doc,
        )
        .await;
    let av = s.settled(&vd.to_string()).await;
    assert_eq!(av.status, "unsupported");
    assert!(
        av.error
            .as_deref()
            .unwrap_or("")
            .contains("VEX document https://example.com/vex/r1 applied"),
        "{:?}",
        av.error
    );
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "healthy");
    assert_eq!(
        v.findings[0]
            .not_affected_per_vex
            .as_ref()
            .unwrap()
            .status
            .as_str(),
        "fixed"
    );

    // Deleting the referrer takes its statements back.
    let r = s
        .client
        .delete(format!("{}/v2/team/app/manifests/{vd}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    while health(&s.settled(&d).await) != "unhealthy" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // CycloneDX VEX, the product the image's OCI purl, the component by bom-ref.
    let cdx = format!(
        r#"{{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,
  "serialNumber":"urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
  "metadata":{{"timestamp":"2026-01-11T00:00:00Z","authors":[{{"name":"App Team"}}],
    "component":{{"type":"container","name":"app","bom-ref":"app","purl":"pkg:oci/app@{}"}}}},
  "components":[{{"type":"library","name":"openssl","bom-ref":"openssl","purl":"pkg:deb/debian/openssl@3.0.11-1?distro=debian-12"}}],
  "vulnerabilities":[{{"id":"{CVE}","analysis":{{"state":"not_affected","justification":"code_not_reachable","detail":"the TLS code path is unused"}},"affects":[{{"ref":"openssl"}}]}}]}}"#,
        d.replace(':', "%3A")
    );
    let cd = s.push_referrer("team/app", &digest, size, CDX, &cdx).await;
    s.settled(&cd.to_string()).await;
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "healthy", "{:?}", v.findings);
    let note = v.findings[0].not_affected_per_vex.as_ref().unwrap();
    assert_eq!(note.author, "App Team");
    assert_eq!(note.justification.as_deref(), Some("code_not_reachable"));
}

/// With `assess.vex.trusted` set, a VEX referrer pushed by an identity it
/// does not name is stored (listed with who pushed it and why) but not
/// applied; one pushed by a trusted identity is applied, and the finding
/// shows the authenticated pusher beside the document's own author.
#[tokio::test]
async fn vex_referrers_from_untrusted_pushers_are_stored_not_applied() {
    let mut s = setup_with(
        |o| o.vex.trusted = Some(vec!["group:security".into()]),
        Some(()),
    )
    .await;
    let (digest, size) = s.push_image("team/app", "v1").await;
    let d = digest.to_string();
    assert_eq!(health(&s.settled(&d).await), "unhealthy");
    let doc = |id: &str| {
        openvex(
            id,
            &d,
            "not_affected",
            r#", "justification": "vulnerable_code_not_present""#,
        )
    };

    // dev may push to team/app, but is not trusted for VEX.
    s.client = client_as("dev");
    let untrusted = s
        .push_referrer(
            "team/app",
            &digest,
            size,
            "application/vnd.openvex+json",
            &doc("https://example.com/vex/by-dev"),
        )
        .await;
    let av = s.settled(&untrusted.to_string()).await;
    assert_eq!(av.status, "unsupported");
    let note = av.error.as_deref().unwrap_or("");
    assert!(
        note.contains("VEX document https://example.com/vex/by-dev stored, not applied")
            && note.contains("pushed by dev, who is not trusted for VEX (assess.vex.trusted)"),
        "{note}"
    );
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "unhealthy");
    assert!(v.findings[0].not_affected_per_vex.is_none());
    let listed = s.service.vex_documents().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, format!("referrer:{untrusted}"));
    assert_eq!(listed[0].recorded_by.as_deref(), Some("dev"));
    assert!(
        listed[0]
            .not_applied
            .as_deref()
            .is_some_and(|w| w.contains("pushed by dev")),
        "{listed:?}"
    );

    // sec is in the security group: applied, and recorded as its pusher.
    s.client = client_as("sec");
    let trusted = s
        .push_referrer(
            "team/app",
            &digest,
            size,
            "application/vnd.openvex+json",
            &doc("https://example.com/vex/by-sec"),
        )
        .await;
    let av = s.settled(&trusted.to_string()).await;
    assert!(
        av.error
            .as_deref()
            .unwrap_or("")
            .contains("VEX document https://example.com/vex/by-sec applied"),
        "{:?}",
        av.error
    );
    let v = s.settled(&d).await;
    assert_eq!(health(&v), "healthy", "{:?}", v.findings);
    let note = v.findings[0].not_affected_per_vex.as_ref().unwrap();
    assert_eq!(note.document, "https://example.com/vex/by-sec");
    assert_eq!(note.author, "Platform Security <security@example.com>");
    assert_eq!(note.recorded_by.as_deref(), Some("sec"));
    let listed = s.service.vex_documents().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|r| r.recorded_by.as_deref() == Some("sec") && r.not_applied.is_none())
    );

    // Deleting the untrusted one's referrer (as an operator) removes its
    // row too.
    s.client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = s
        .client
        .delete(format!("{}/v2/team/app/manifests/{untrusted}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.service.vex_documents().unwrap().len() != 1 {
        assert!(Instant::now() < deadline, "the untrusted document stayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health(&s.settled(&d).await), "healthy");
}
