//! `[storage]` and `[metadata]`: where blobs, and registry metadata and
//! access control, live.

use anyhow::Result;
use serde::Deserialize;

/// `[storage]`: blobs in the data directory unless `s3` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    pub s3: Option<S3Section>,
}

/// `[storage.s3]`: an S3-compatible bucket. Access key and secret left
/// unset come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Section {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: Option<String>,
    pub path_style: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub prefix: String,
    /// Answer blob downloads with a 307 to a presigned URL.
    pub redirect: bool,
    /// Multipart part size in MiB (at least 5; default 8).
    pub part_size_mib: Option<usize>,
}

impl std::fmt::Debug for S3Section {
    // Configs are printed in diagnostics; the secret never is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.blob_config(), f)
    }
}

impl S3Section {
    fn blob_config(&self) -> registry::S3Config {
        registry::S3Config {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            prefix: self.prefix.clone(),
            redirect: self.redirect,
            part_size: self.part_size_mib.unwrap_or(0) << 20,
        }
    }
}

impl StorageSection {
    /// The registry's blob storage.
    pub fn blobs(&self) -> registry::BlobStorage {
        match &self.s3 {
            Some(s3) => registry::BlobStorage::S3(s3.blob_config()),
            None => registry::BlobStorage::Filesystem,
        }
    }
}

/// `[metadata]`: registry metadata (repositories, manifests, tags, blob
/// links, pulls) and access control (users, robots, tokens, bindings,
/// audit log) in `<data>/meta.db` unless `url` names a PostgreSQL
/// database, which several nodes then share.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataSection {
    /// `postgres://user:password@host:port/database`. Env:
    /// `DRYDOCK_METADATA_URL`.
    pub url: Option<String>,
}

impl std::fmt::Debug for MetadataSection {
    // Configs are printed in diagnostics; the URL's password never is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.storage(), f)
    }
}

impl MetadataSection {
    /// Where the metadata lives. A malformed URL is refused when the
    /// configuration loads (see `Config::apply_env`), so this falls back
    /// to SQLite only for a configuration that never was validated.
    pub fn storage(&self) -> registry::MetadataStorage {
        self.parse().unwrap_or_default()
    }

    pub(super) fn parse(&self) -> Result<registry::MetadataStorage> {
        // The error names the key, never the URL (it holds a password).
        registry::MetadataStorage::from_url(self.url.as_deref().unwrap_or(""))
            .map_err(|e| anyhow::anyhow!("metadata.url (DRYDOCK_METADATA_URL): {e}"))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn storage_s3_section_maps_to_the_driver_and_hides_the_secret() {
        let c: Config = toml::from_str(
            "[storage.s3]\nendpoint = \"http://127.0.0.1:8333\"\nbucket = \"reg\"\n\
             path_style = true\nsecret_key = \"hunter2\"\nredirect = true\npart_size_mib = 16\n",
        )
        .unwrap();
        let registry::BlobStorage::S3(s3) = c.storage.blobs() else {
            panic!("not S3")
        };
        assert_eq!(s3.bucket, "reg");
        assert!(s3.path_style && s3.redirect);
        assert_eq!(s3.part_size, 16 << 20);
        assert_eq!(s3.secret_key.as_deref(), Some("hunter2"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(matches!(
            Config::default().storage.blobs(),
            registry::BlobStorage::Filesystem
        ));
    }

    #[test]
    fn metadata_url_selects_postgres_and_hides_the_password() {
        assert!(matches!(
            Config::default().metadata.storage(),
            registry::MetadataStorage::Sqlite
        ));
        let mut c: Config =
            toml::from_str("[metadata]\nurl = \"postgres://reg:hunter2@127.0.0.1:5432/reg\"\n")
                .unwrap();
        c.apply_env(|_| None).unwrap();
        let registry::MetadataStorage::Postgres(pg) = c.metadata.storage() else {
            panic!("not PostgreSQL")
        };
        assert_eq!(pg.describe(), "postgres://reg@127.0.0.1:5432/reg");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        // The variable beats the file; a malformed one is refused without
        // echoing it.
        let env = |v: &'static str| move |k: &str| (k == "DRYDOCK_METADATA_URL").then(|| v.into());
        let mut c = Config::default();
        c.apply_env(env("postgresql://u@db.internal/meta")).unwrap();
        assert!(matches!(
            c.metadata.storage(),
            registry::MetadataStorage::Postgres(_)
        ));
        let err = Config::default()
            .apply_env(env("mysql://u:hunter2@h/db"))
            .unwrap_err();
        assert!(err.to_string().contains("DRYDOCK_METADATA_URL"), "{err}");
        assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
        let err = Config::default()
            .apply_env(env("postgres://u:hunter2@[::1"))
            .unwrap_err();
        assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
    }
}
