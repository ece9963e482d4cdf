//! What the web crate's HTTP tests share: a registry, the real assessor
//! on the fixture vulnerability data (tests/fixtures/vulndata) and the
//! API router on 127.0.0.1, and images pushed through the registry's
//! in-process API.

#![allow(dead_code)] // each test binary uses its own part

// The backend the environment picks (DRYDOCK_TEST_METADATA,
// DRYDOCK_TEST_BLOBS), defined once beside the registry's tests.
#[path = "../../../registry/tests/common/backend.rs"]
pub mod backend;
#[path = "../../../registry/tests/common/s3.rs"]
pub mod s3;

use assess::Options;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The registry's options for `data` on the environment's backend.
pub fn registry_options(data: &std::path::Path) -> registry::Options {
    backend::registry_options(data)
}

/// The assessor's options for `data`, its state on the same backend as
/// the registry's metadata.
pub fn assess_options(data: &std::path::Path) -> Options {
    let mut opts = Options::new(data);
    opts.metadata = backend::for_data(data).metadata();
    opts
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/vulndata")
        .join(rel)
}

/// A gzip tar layer of `files`.
pub fn gzip_layer(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, &data[..]).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

pub struct Env {
    pub base: String,
    pub http: reqwest::Client,
    pub registry: registry::Registry,
    pub service: assess::Service,
    _dir: tempfile::TempDir,
}

impl Env {
    /// Everything started on the PyPI fixture data.
    pub async fn start() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        vulndb::import(data, &[fixture("osv/PyPI/all.zip")], &mut |_| {}).unwrap();
        let registry = registry::Registry::open(registry_options(data)).unwrap();
        let handle = vulndb::Handle::open_with_interval(data, Duration::from_millis(100));
        let mut opts = assess_options(data);
        opts.workers = 1;
        opts.tick = Duration::from_millis(200);
        let service = assess::start_with_registry(
            opts,
            registry.clone(),
            handle,
            catalog::Limits::default(),
            Arc::new(assess::ManualClock::new()),
        )
        .await
        .unwrap();
        let app = web::router(web::State::new(service.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Env {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            registry,
            service,
            _dir: dir,
        }
    }

    /// Status and JSON body (null when there is none) of a GET.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    /// The gzip `layer` under a config naming `repo` (so each repository's
    /// image has its own digest), tagged `tags` there; its digest.
    pub async fn push(&self, repo: &str, layer: &[u8], tags: &[&str]) -> String {
        let name = oci::Name::parse(repo).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(layer), &mut raw).unwrap();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"repo": repo}},
            "rootfs": {"type": "layers", "diff_ids": [sha256(&raw)]},
        }))
        .unwrap();
        for blob in [layer, &config[..]] {
            self.registry
                .put_blob(&name, &oci::Digest::parse(&sha256(blob)).unwrap(), blob)
                .await
                .unwrap();
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_MANIFEST,
            "config": {"mediaType": oci::OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": oci::OCI_LAYER_GZIP, "digest": sha256(layer), "size": layer.len()}],
        }))
        .unwrap();
        for tag in tags {
            self.registry
                .put_manifest(
                    &name,
                    &oci::Reference::Tag(oci::Tag::parse(tag).unwrap()),
                    manifest.clone().into(),
                    Some(oci::OCI_MANIFEST),
                    registry::Origin::Push,
                )
                .await
                .unwrap();
        }
        sha256(&manifest)
    }
}
