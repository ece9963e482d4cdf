//! Which backend the tests run on, decided in one place for every test
//! harness (registry, import, web, and the `drydock serve` the binary's
//! tests start; the other crates include this file by `#[path]`):
//!
//! - `DRYDOCK_TEST_METADATA=postgres`: metadata (and the assessor's
//!   state) in a fresh database of a PostgreSQL cluster started once per
//!   test process (`storage::testing`); outside CI a missing PostgreSQL
//!   is named and the run falls back to SQLite.
//! - `DRYDOCK_TEST_BLOBS=s3`: blobs under a fresh key prefix of the
//!   bucket at `DRYDOCK_TEST_S3_ENDPOINT` (or a SeaweedFS started once
//!   per test process).
//!
//! A data directory keeps its backend for the whole process: a server
//! reopened on the same directory (a restart, `drydock gc` beside it)
//! finds the same database and prefix, as it would find `meta.db`.
#![allow(dead_code)]

use super::s3;
use registry::{BlobStorage, MetadataStorage, S3Config};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The backend of one data directory.
#[derive(Clone)]
pub struct Backend {
    /// `metadata.url`, or `None` for SQLite in the data directory.
    pub metadata_url: Option<String>,
    /// `[storage.s3]`, or `None` for blobs in the data directory.
    pub s3: Option<S3Config>,
}

impl Backend {
    pub fn blobs(&self) -> BlobStorage {
        match &self.s3 {
            Some(c) => BlobStorage::S3(c.clone()),
            None => BlobStorage::Filesystem,
        }
    }

    pub fn metadata(&self) -> MetadataStorage {
        match &self.metadata_url {
            Some(url) => MetadataStorage::from_url(url).unwrap(),
            None => MetadataStorage::Sqlite,
        }
    }

    /// Whether this is the embedded backend (SQLite and files).
    pub fn is_embedded(&self) -> bool {
        self.metadata_url.is_none() && self.s3.is_none()
    }

    /// The `[storage.s3]` section of a `drydock` configuration file for
    /// this backend (empty on the filesystem). `metadata.url` goes in by
    /// `DRYDOCK_METADATA_URL`, which overrides any test's file.
    pub fn config_toml(&self) -> String {
        let Some(c) = &self.s3 else {
            return String::new();
        };
        format!(
            "\n[storage.s3]\nendpoint = {:?}\nbucket = {:?}\nregion = {:?}\npath_style = {}\n\
             access_key = {:?}\nsecret_key = {:?}\nprefix = {:?}\n",
            c.endpoint.as_deref().unwrap_or_default(),
            c.bucket,
            c.region.as_deref().unwrap_or("us-east-1"),
            c.path_style,
            c.access_key.as_deref().unwrap_or_default(),
            c.secret_key.as_deref().unwrap_or_default(),
            c.prefix,
        )
    }
}

/// Whether the environment asks for PostgreSQL metadata.
pub fn wants_postgres() -> bool {
    match std::env::var("DRYDOCK_TEST_METADATA").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("DRYDOCK_TEST_METADATA={other}: expected sqlite or postgres"),
    }
}

/// Whether the environment asks for blobs on S3.
pub fn wants_s3() -> bool {
    match std::env::var("DRYDOCK_TEST_BLOBS").as_deref() {
        Ok("s3") => true,
        Ok("fs") | Ok("") | Err(_) => false,
        Ok(other) => panic!("DRYDOCK_TEST_BLOBS={other}: expected fs or s3"),
    }
}

/// A backend of its own, as the environment asks (not remembered).
pub fn fresh() -> Backend {
    Backend {
        metadata_url: wants_postgres()
            .then(|| storage::testing::shared_cluster().map(|c| c.fresh_database()))
            .flatten(),
        s3: wants_s3().then(|| s3::config(s3::shared_endpoint())),
    }
}

/// The backend of the data directory `data`: made on first use, the same
/// afterwards in this process.
pub fn for_data(data: &Path) -> Backend {
    static BY_DIR: Mutex<Option<HashMap<PathBuf, Backend>>> = Mutex::new(None);
    if !wants_postgres() && !wants_s3() {
        return Backend {
            metadata_url: None,
            s3: None,
        };
    }
    let key = std::path::absolute(data).unwrap_or_else(|_| data.to_path_buf());
    let mut map = BY_DIR.lock().unwrap_or_else(|e| e.into_inner());
    map.get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(fresh)
        .clone()
}

/// Registry options for `data` on the environment's backend.
pub fn registry_options(data: &Path) -> registry::Options {
    let b = for_data(data);
    let mut opts = registry::Options::new(data);
    opts.blobs = b.blobs();
    opts.metadata = b.metadata();
    opts
}

/// Whether a test that only makes sense on the embedded backend (SQLite
/// and files in the data directory) runs here. It does unless the
/// environment picked another backend: then it says why it is left out
/// (`why`), so the second run's log names every test it did not cover.
/// Such a test returns at once when this is false.
pub fn embedded_only(why: &str) -> bool {
    if wants_postgres() || wants_s3() {
        eprintln!("embedded backend only ({why}): not run on this backend");
        return false;
    }
    true
}
