//! Fakes and helpers the browse tests share: a cataloger that reads each
//! layer's text as one Debian package name, and a push of such an image
//! through the registry's HTTP API; and in [`referrers`], the registry
//! and assessor the referrer tests (SBOM, VEX) share.

// Each test file uses a part of these helpers.
#![allow(dead_code)]

use assess::{Cataloger, Finding, FindingStatus, Severity};
use inventory::{Ecosystem, Inventory, Package};
use oci::{BlobSource, Digest, ImageManifest};
use std::io::Read;

pub mod referrers;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A fixable finding `id` of `severity` in the Debian package `p`, fixed in
/// `fixed`: what the fake vulnerability databases of these tests return.
pub fn fixable(id: &str, p: &Package, fixed: &str, severity: Severity) -> Finding {
    Finding {
        id: id.into(),
        aliases: Vec::new().into(),
        related: Vec::new().into(),
        ecosystem: Ecosystem::Deb,
        distro: Some("debian:12".into()),
        package: p.name.as_str().into(),
        source_package: None,
        purl: p.purl.as_str().into(),
        installed_version: p.version.as_str().into(),
        fixed_version: Some(fixed.into()),
        status: FindingStatus::Fixed,
        status_note: None,
        severity,
        severity_source: "test".into(),
        cvss: None,
        summary: "".into(),
        references: Vec::new().into(),
        informational: None,
        data_source: "test".into(),
    }
}

/// Each layer's text is one Debian package's name.
pub struct TextCatalog;

impl Cataloger for TextCatalog {
    fn version(&self) -> u32 {
        1
    }
    fn catalog(
        &self,
        source: &dyn BlobSource,
        manifest: &ImageManifest,
        _: &dyn catalog::LayerCache,
    ) -> Result<Inventory, assess::CatalogFailure> {
        let mut inv = Inventory::default();
        for l in &manifest.layers {
            let mut name = String::new();
            source
                .open_blob(&l.digest)
                .and_then(|mut r| r.read_to_string(&mut name))
                .map_err(|e| e.to_string())?;
            inv.packages.push(Package {
                ecosystem: Ecosystem::Deb,
                purl: format!("pkg:deb/debian/{name}@1.0-1"),
                name,
                version: "1.0-1".into(),
                source_name: None,
                source_version: None,
                location: "var/lib/dpkg/status".into(),
                layer: l.digest.to_string(),
            });
        }
        Ok(inv)
    }
}

/// `data` uploaded to `repo` in one request (its digest given up front).
pub async fn put_blob(client: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let r = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    d
}

pub async fn push(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    pkg: &str,
) -> Digest {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"p\":\"{pkg}\"}}");
    let dc = put_blob(client, base, repo, config.as_bytes()).await;
    let dl = put_blob(client, base, repo, pkg.as_bytes()).await;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{dl}","size":{}}}]}}"#,
        config.len(),
        pkg.len()
    );
    let r = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", OCI_MANIFEST)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    Digest::sha256_of(body.as_bytes())
}
