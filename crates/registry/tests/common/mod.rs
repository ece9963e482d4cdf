#![allow(dead_code)]

pub mod backend;
pub mod s3;

use oci::Digest;
use registry::{BlobStorage, MetadataStorage, Options, Registry};
use reqwest::{Client, Response, StatusCode};
use std::net::SocketAddr;

pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    pub registry: Registry,
    pub dir: tempfile::TempDir,
    pub client: Client,
    /// Where the server's blobs are (for `registry::gc_stores`).
    pub blobs: BlobStorage,
    /// Where the server's metadata is (for `registry::gc_stores`).
    pub metadata: MetadataStorage,
}

pub async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir).await
}

pub async fn start_in(dir: tempfile::TempDir) -> Server {
    let mut opts = Options::new(dir.path());
    opts.blobs = test_blobs();
    opts.metadata = test_metadata();
    let blobs = opts.blobs.clone();
    let metadata = opts.metadata.clone();
    let (addr, registry) = serve(opts).await;
    // On PostgreSQL nothing of the metadata is in the data directory.
    assert_eq!(
        dir.path().join("meta.db").exists(),
        matches!(metadata, MetadataStorage::Sqlite)
    );
    Server {
        base: format!("http://{addr}"),
        addr,
        registry,
        dir,
        client: Client::builder().no_proxy().build().unwrap(),
        blobs,
        metadata,
    }
}

/// Open a registry with `opts` and serve its router on loopback.
pub async fn serve(opts: Options) -> (SocketAddr, Registry) {
    let registry = Registry::open(opts).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = registry.router();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, registry)
}

/// The blob storage the tests run on: the data directory, or with
/// `DRYDOCK_TEST_BLOBS=s3` a fresh prefix in an S3 bucket (see `backend`).
pub fn test_blobs() -> BlobStorage {
    if backend::wants_s3() {
        BlobStorage::S3(s3::config(s3::shared_endpoint()))
    } else {
        BlobStorage::Filesystem
    }
}

/// Where the tests keep metadata: the data directory's SQLite file, or
/// with `DRYDOCK_TEST_METADATA=postgres` a fresh database (see `backend`).
pub fn test_metadata() -> MetadataStorage {
    match backend::wants_postgres() {
        true => match storage::testing::shared_cluster() {
            Some(cluster) => MetadataStorage::from_url(&cluster.fresh_database()).unwrap(),
            None => MetadataStorage::Sqlite,
        },
        false => MetadataStorage::Sqlite,
    }
}

/// Whether the tests run on S3.
pub fn on_s3() -> bool {
    backend::wants_s3()
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET path`, no extra headers.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// `HEAD path`, no extra headers.
    pub async fn head(&self, path: &str) -> Response {
        self.client.head(self.url(path)).send().await.unwrap()
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Response {
        self.client.delete(self.url(path)).send().await.unwrap()
    }

    /// Push a blob monolithically; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        d
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &str,
    ) -> Response {
        self.client
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }
}

/// Assert a spec error: status and code.
pub async fn assert_error(r: Response, status: u16, code: &str) {
    assert_eq!(r.status().as_u16(), status);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], code, "{body}");
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn image_manifest(
    config: &Digest,
    config_len: usize,
    layer: &Digest,
    layer_len: usize,
) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{config}","size":{config_len}}},"layers":[{{"mediaType":"{LAYER}","digest":"{layer}","size":{layer_len}}}]}}"#
    )
}
