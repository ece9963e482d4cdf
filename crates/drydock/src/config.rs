//! Configuration: embedded defaults, then a TOML file, then `DRYDOCK_*`
//! environment variables, then command-line flags (last one wins).
//!
//! Every key is documented in the README's configuration reference; keep the
//! two in step.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the server listens on. Env: `DRYDOCK_LISTEN`.
    pub listen: SocketAddr,
    /// Data directory. Env: `DRYDOCK_DATA`.
    pub data: PathBuf,
    /// Log format: `text` or `json`. Env: `DRYDOCK_LOG_FORMAT`.
    pub log_format: String,
    /// Seconds after which an upload with no activity is abandoned.
    /// Env: `DRYDOCK_UPLOAD_EXPIRY_SECS`.
    pub upload_expiry_secs: u64,
    /// `/readyz` is not ready below this much free space on the data
    /// directory's filesystem; unset: 1 GiB or 1%, whichever is smaller.
    pub min_free_bytes: Option<u64>,
    /// The assessment service (`[assess]` table).
    pub assess: AssessConfig,
    /// What one image may cost the catalog (`[catalog]` table), for
    /// `serve` and `scan` alike.
    pub catalog: CatalogSection,
    /// The vulnerability database (`[vulndb]` table).
    pub vulndb: VulndbConfig,
    /// Import jobs and pull-through mirrors (`[import]` table).
    pub import: ImportSection,
    /// Connections: TLS, deadlines, the connection cap (`[server]` table).
    pub server: ServerSection,
    /// Access control (`[auth]` table).
    pub auth: crate::access::AuthSection,
    /// Internal addresses the server's own requests (webhooks, imports,
    /// mirrors) may reach (`[outbound]` table: `allow`, a list of CIDRs).
    /// Env (comma-separated): `DRYDOCK_OUTBOUND_ALLOW`.
    pub outbound: egress::OutboundConfig,
    /// Where blobs live (`[storage]` table): the data directory, or
    /// `[storage.s3]`.
    pub storage: StorageSection,
    /// Where registry metadata and access control live (`[metadata]`
    /// table): the data directory's `meta.db`, or PostgreSQL.
    pub metadata: MetadataSection,
    /// Continuous patching of Debian images (`[patch]` table).
    pub patch: patch::PatchConfig,
}

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

    fn parse(&self) -> Result<registry::MetadataStorage> {
        // The error names the key, never the URL (it holds a password).
        registry::MetadataStorage::from_url(self.url.as_deref().unwrap_or(""))
            .map_err(|e| anyhow::anyhow!("metadata.url (DRYDOCK_METADATA_URL): {e}"))
    }
}

/// `[server]`: how `serve` treats connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// PEM certificate chain: serve HTTPS (with `tls_key`). Env:
    /// `DRYDOCK_TLS_CERT`; `--tls-cert` overrides.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. Env: `DRYDOCK_TLS_KEY`; `--tls-key`
    /// overrides.
    pub tls_key: Option<PathBuf>,
    /// Seconds a client has to send a request head (and finish the TLS
    /// handshake).
    pub header_read_timeout_secs: u64,
    /// Seconds a connection with no request in flight stays open.
    pub idle_timeout_secs: u64,
    /// Connections served at once; unset: derived from the open-file limit.
    pub max_connections: Option<usize>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            tls_cert: None,
            tls_key: None,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 75,
            max_connections: None,
        }
    }
}

impl ServerSection {
    /// The server's settings; `cert` and `key` (flags) beat the file, and
    /// `nofile` is the soft open-file limit the default cap comes from.
    pub fn httpd_config(
        &self,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        nofile: u64,
    ) -> Result<httpd::ServerConfig> {
        let tls = match (
            cert.or_else(|| self.tls_cert.clone()),
            key.or_else(|| self.tls_key.clone()),
        ) {
            (Some(cert), Some(key)) => Some(httpd::TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                bail!("TLS needs both a certificate and a key (server.tls_cert and server.tls_key)")
            }
        };
        if self.header_read_timeout_secs == 0 || self.idle_timeout_secs == 0 {
            bail!(
                "server.header_read_timeout_secs and server.idle_timeout_secs must be at least 1"
            );
        }
        if self.max_connections == Some(0) {
            bail!("server.max_connections must be at least 1");
        }
        Ok(httpd::ServerConfig {
            tls,
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            max_connections: self
                .max_connections
                .unwrap_or_else(|| httpd::connection_cap(nofile)),
            ..httpd::ServerConfig::default()
        })
    }
}

/// `[import]`: what the server's import jobs may read, stored settings per
/// remote registry, and pull-through mirrors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportSection {
    /// Directories whose contents `oci:` and `docker-archive:` sources of
    /// the import API may name (paths on the server; administrators only).
    /// Empty, the default: no server-side paths. `drydock import` reads
    /// local sources on the client and needs none. Env (comma-separated):
    /// `DRYDOCK_IMPORT_LOCAL_DIRS`.
    pub local_dirs: Vec<PathBuf>,
    /// Replaced by `local_dirs`: still accepted so older files load, but it
    /// allows nothing by itself. Env: `DRYDOCK_IMPORT_ALLOW_LOCAL`.
    pub allow_local: Option<bool>,
    /// Import jobs that run at once.
    pub max_concurrent_jobs: usize,
    /// `[import.remotes."HOST[:PORT]"]`: `username`, `password`,
    /// `insecure`, `ca_file`.
    pub remotes: std::collections::HashMap<String, import::RemoteConfig>,
    /// `[[import.mirrors]]`: `prefix`, `upstream`, `insecure`, `platforms`.
    pub mirrors: Vec<import::mirror::MirrorRule>,
    /// Seconds a pull through a mirror waits for the upstream.
    pub mirror_timeout_secs: u64,
}

impl Default for ImportSection {
    fn default() -> Self {
        let defaults = import::ImportConfig::default();
        ImportSection {
            local_dirs: defaults.local_dirs,
            allow_local: None,
            max_concurrent_jobs: defaults.max_concurrent_jobs,
            remotes: Default::default(),
            mirrors: Vec::new(),
            mirror_timeout_secs: 600,
        }
    }
}

impl ImportSection {
    /// The importer's settings.
    pub fn importer_config(&self) -> import::ImportConfig {
        if self.allow_local == Some(true) && self.local_dirs.is_empty() {
            tracing::warn!(
                "import.allow_local no longer allows server-side paths; list the directories \
                 imports may read in import.local_dirs (DRYDOCK_IMPORT_LOCAL_DIRS)"
            );
        }
        import::ImportConfig {
            local_dirs: self.local_dirs.clone(),
            max_concurrent_jobs: self.max_concurrent_jobs,
            remotes: self.remotes.clone(),
            ..import::ImportConfig::default()
        }
    }
}

/// `[vulndb]`: where `drydock db update` downloads from, and how often the
/// server looks for a new database build.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VulndbConfig {
    /// Source URLs for `drydock db update`; empty means the built-in
    /// defaults. Env (comma-separated): `DRYDOCK_VULNDB_SOURCES`.
    pub sources: Vec<String>,
    /// Seconds between the server's checks for a new database build.
    pub poll_secs: u64,
    /// `drydock serve` runs `db update` when the database is this many
    /// hours old (and at start when there is none); 0 turns it off. Env:
    /// `DRYDOCK_VULNDB_UPDATE_HOURS`.
    pub update_hours: u64,
    /// Days after its build at which the dashboard calls the database
    /// stale (overview warning, settings). Env: `DRYDOCK_DB_STALE_DAYS`.
    pub stale_days: u32,
}

impl VulndbConfig {
    /// What `db update` downloads: the configured sources, else the
    /// built-in defaults.
    pub fn update_urls(&self) -> Vec<String> {
        if self.sources.is_empty() {
            vulndb::DEFAULT_SOURCES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            self.sources.clone()
        }
    }
}

impl Default for VulndbConfig {
    fn default() -> Self {
        VulndbConfig {
            sources: Vec::new(),
            poll_secs: 2,
            update_hours: 24,
            stale_days: 7,
        }
    }
}

/// `[catalog]`: caps on what one layer or image may contribute. Whatever
/// they stop is named, and the image is incomplete (never healthy).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSection {
    /// Largest package database, manifest or lockfile read (bytes).
    pub max_file_bytes: u64,
    /// Most packages one layer may declare.
    pub max_packages_per_layer: usize,
    /// Most packages in one image's inventory.
    pub max_packages_per_image: usize,
    /// Most package files, executables and archives read in one layer.
    pub max_files_per_layer: u64,
}

impl Default for CatalogSection {
    fn default() -> Self {
        let l = catalog::Limits::default();
        CatalogSection {
            max_file_bytes: l.max_file_bytes,
            max_packages_per_layer: l.max_packages_per_layer,
            max_packages_per_image: l.max_packages_per_image,
            max_files_per_layer: l.max_files_per_layer,
        }
    }
}

impl CatalogSection {
    /// The catalog's limits: these keys over the catalog's defaults.
    pub fn limits(&self) -> catalog::Limits {
        catalog::Limits {
            max_file_bytes: self.max_file_bytes,
            max_packages_per_layer: self.max_packages_per_layer,
            max_packages_per_image: self.max_packages_per_image,
            max_files_per_layer: self.max_files_per_layer,
            ..catalog::Limits::default()
        }
    }
}

/// `[assess]`: how images are assessed and judged.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssessConfig {
    /// Concurrent assessments. Env: `DRYDOCK_ASSESS_WORKERS`.
    pub workers: usize,
    /// Images pulled or pushed within this many days are re-assessed when
    /// the vulnerability database changes. Env: `DRYDOCK_RESCAN_WINDOW_DAYS`.
    pub rescan_window_days: u32,
    /// Longest time between re-assessments of an image in the window.
    pub rescan_interval_hours: u32,
    /// Catalog each new layer as soon as its upload completes, before the
    /// manifest arrives. Env: `DRYDOCK_ASSESS_CATALOG_ON_UPLOAD`.
    pub catalog_on_upload: bool,
    /// With `catalog_on_upload`: catalog each layer from its upload stream
    /// while it arrives (default true) rather than reading it back after
    /// its commit. Env: `DRYDOCK_ASSESS_CATALOG_WHILE_UPLOADING`.
    pub catalog_while_uploading: bool,
    /// Default health rule: unhealthy at or above this severity…
    pub threshold: assess::Severity,
    /// …counting only findings that have a fix.
    pub fixable_only: bool,
    /// Per-repository rules (`[[assess.policy]]`, first match wins):
    /// `repository` glob, `threshold`, `fixable_only`.
    pub policy: Vec<assess::PolicyRule>,
    /// Webhooks (`[[assess.webhooks]]`): `url`, `secret`, optional
    /// `repository` glob and `min_severity`.
    pub webhooks: Vec<assess::WebhookConfig>,
    /// Pull gate (`[[assess.pull_gate]]`, first match wins, opt-in):
    /// `repository` glob, `unhealthy` (default true), `incomplete`
    /// (default true), `not_assessed` (default false), `bypass` identities
    /// (`user:NAME`, `robot:NAME`). Manifest reads of such images are
    /// refused with 403 `DENIED`.
    pub pull_gate: Vec<assess::PullGateRule>,
    /// Attach each assessed image's CycloneDX SBOM as an OCI referrer
    /// (default true).
    pub sbom: bool,
    /// Per-repository SBOM rules (`[[assess.sbom_rules]]`, first match
    /// wins): `repository` glob, `enabled`, optional `spdx`.
    pub sbom_rules: Vec<assess::SbomRule>,
    /// Attach an SPDX 2.3 SBOM too, beside the CycloneDX one (default
    /// false; `spdx` in a rule decides for its repositories).
    pub sbom_spdx: bool,
    /// Keep an SBOM replaced by a newer catalog version's (default false:
    /// it is deleted).
    pub sbom_keep_replaced: bool,
    /// Whose VEX referrers are applied (`[assess.vex]`, `trusted =
    /// ["group:security", "robot:release-*"]`; absent: anyone with push on
    /// the repository).
    pub vex: assess::vex::VexOptions,
    /// A job started this many times without finishing (the process
    /// stopped while assessing) is marked failed.
    pub max_attempts: u32,
    /// How long rows of tables that would otherwise grow for ever are
    /// kept (`[assess.retention]`).
    pub retention: RetentionSection,
}

/// `[assess.retention]`: pruned by the assessor's scheduler every hour.
/// The audit log has its own setting (`auth.audit_retention_days`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSection {
    /// Finished webhook deliveries (delivered or given up), with their
    /// payloads. Pending ones stay.
    pub deliveries_days: u32,
    /// Records of problems already notified; after this a problem still
    /// present may be notified again. Those of forgotten images go at once.
    pub notified_days: u32,
    /// Tag moves (for "since the previous digest of this tag" diffs); the
    /// two newest of each tag always stay.
    pub tag_history_days: u32,
    /// Cached layer results that no assessed image names (layers of
    /// deleted images, uploads never referenced) go after this.
    pub layer_cache_grace_hours: u32,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            deliveries_days: 30,
            notified_days: 365,
            tag_history_days: 180,
            layer_cache_grace_hours: 24,
        }
    }
}

impl RetentionSection {
    fn options(&self) -> assess::Retention {
        let days = |d: u32| time::Duration::days(i64::from(d.max(1)));
        assess::Retention {
            deliveries: days(self.deliveries_days),
            notified: days(self.notified_days),
            tag_history: days(self.tag_history_days),
            layer_cache_grace: time::Duration::hours(i64::from(
                self.layer_cache_grace_hours.max(1),
            )),
            ..assess::Retention::default()
        }
    }
}

impl Default for AssessConfig {
    fn default() -> Self {
        AssessConfig {
            workers: 2,
            rescan_window_days: 30,
            rescan_interval_hours: 24,
            catalog_on_upload: true,
            catalog_while_uploading: true,
            threshold: assess::Severity::High,
            fixable_only: true,
            policy: Vec::new(),
            webhooks: Vec::new(),
            pull_gate: Vec::new(),
            sbom: true,
            sbom_rules: Vec::new(),
            sbom_spdx: false,
            sbom_keep_replaced: false,
            vex: Default::default(),
            max_attempts: 3,
            retention: RetentionSection::default(),
        }
    }
}

impl AssessConfig {
    /// Repository patterns of the policy, pull-gate and SBOM rules whose
    /// `*` would have crossed `/` before `*` came to mean one path segment
    /// everywhere (as in access bindings). A gate rule `*` no longer gates
    /// `team/app`: say so at start rather than let it narrow silently.
    pub fn narrowed_patterns(&self) -> Vec<String> {
        let patterns = self
            .policy
            .iter()
            .map(|r| r.repository.as_str())
            .chain(self.pull_gate.iter().map(|r| r.repository.as_str()))
            .chain(self.sbom_rules.iter().map(|r| r.repository.as_str()));
        patterns
            .filter(|p| p.replace("**", "").contains('*'))
            .map(str::to_string)
            .collect()
    }

    /// The assessment service's options for data directory `data`.
    pub fn options(&self, data: &Path) -> assess::Options {
        for p in self.narrowed_patterns() {
            tracing::warn!(
                pattern = %p,
                "in repository patterns `*` stays within one path segment; \
                 write `**` where nested repositories are meant (e.g. `team/**`)"
            );
        }
        let mut opts = assess::Options::new(data);
        opts.workers = self.workers;
        opts.rescan_window_days = self.rescan_window_days;
        opts.catalog_on_upload = self.catalog_on_upload;
        opts.catalog_while_uploading = self.catalog_while_uploading;
        opts.rescan_interval = time::Duration::hours(i64::from(self.rescan_interval_hours));
        opts.policy.rules = self.policy.clone();
        opts.policy.default.threshold = self.threshold;
        opts.policy.default.fixable_only = self.fixable_only;
        opts.webhooks = self.webhooks.clone();
        opts.max_attempts = self.max_attempts.max(1);
        opts.retention = self.retention.options();
        opts.sbom = assess::SbomOptions {
            enabled: self.sbom,
            rules: self.sbom_rules.clone(),
            keep_replaced: self.sbom_keep_replaced,
            spdx: self.sbom_spdx,
        };
        opts.vex = self.vex.clone();
        opts
    }
}

/// A boolean environment variable's value.
fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => bail!("{key}: expected true or false, not {v:?}"),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".parse().expect("valid default address"),
            data: PathBuf::from("drydock-data"),
            log_format: "text".into(),
            upload_expiry_secs: 24 * 3600,
            min_free_bytes: None,
            assess: AssessConfig::default(),
            catalog: CatalogSection::default(),
            vulndb: VulndbConfig::default(),
            import: ImportSection::default(),
            server: ServerSection::default(),
            auth: crate::access::AuthSection::default(),
            outbound: egress::OutboundConfig::default(),
            storage: StorageSection::default(),
            metadata: MetadataSection::default(),
            patch: patch::PatchConfig::default(),
        }
    }
}

impl Config {
    /// Load the configuration in precedence order. `data_flag` is the
    /// global `--data` flag, which beats everything else.
    pub fn load(file: Option<&Path>, data_flag: Option<PathBuf>) -> Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        if let Some(d) = data_flag {
            config.data = d;
        }
        Ok(config)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = get("DRYDOCK_LISTEN") {
            self.listen = v
                .parse()
                .with_context(|| format!("DRYDOCK_LISTEN: not a socket address: {v:?}"))?;
        }
        if let Some(v) = get("DRYDOCK_DATA") {
            self.data = PathBuf::from(v);
        }
        if let Some(v) = get("DRYDOCK_LOG_FORMAT") {
            self.log_format = v;
        }
        if let Some(v) = get("DRYDOCK_UPLOAD_EXPIRY_SECS") {
            self.upload_expiry_secs = v
                .parse()
                .with_context(|| format!("DRYDOCK_UPLOAD_EXPIRY_SECS: not a number: {v:?}"))?;
        }
        if let Some(v) = get("DRYDOCK_ASSESS_WORKERS") {
            self.assess.workers = v
                .parse()
                .with_context(|| format!("DRYDOCK_ASSESS_WORKERS: not a number: {v:?}"))?;
        }
        if let Some(v) = get("DRYDOCK_RESCAN_WINDOW_DAYS") {
            self.assess.rescan_window_days = v
                .parse()
                .with_context(|| format!("DRYDOCK_RESCAN_WINDOW_DAYS: not a number: {v:?}"))?;
        }
        if let Some(v) = get("DRYDOCK_VULNDB_SOURCES") {
            self.vulndb.sources = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(v) = get("DRYDOCK_VULNDB_UPDATE_HOURS") {
            self.vulndb.update_hours = v
                .parse()
                .with_context(|| format!("DRYDOCK_VULNDB_UPDATE_HOURS: not a number: {v:?}"))?;
        }
        if let Some(v) = get("DRYDOCK_DB_STALE_DAYS") {
            self.vulndb.stale_days = v
                .parse()
                .with_context(|| format!("DRYDOCK_DB_STALE_DAYS: not a number: {v:?}"))?;
        }
        if let Some(v) = get("DRYDOCK_ASSESS_CATALOG_ON_UPLOAD") {
            self.assess.catalog_on_upload = parse_bool("DRYDOCK_ASSESS_CATALOG_ON_UPLOAD", &v)?;
        }
        if let Some(v) = get("DRYDOCK_ASSESS_CATALOG_WHILE_UPLOADING") {
            self.assess.catalog_while_uploading =
                parse_bool("DRYDOCK_ASSESS_CATALOG_WHILE_UPLOADING", &v)?;
        }
        if let Some(v) = get("DRYDOCK_IMPORT_ALLOW_LOCAL") {
            self.import.allow_local = Some(parse_bool("DRYDOCK_IMPORT_ALLOW_LOCAL", &v)?);
        }
        if let Some(v) = get("DRYDOCK_IMPORT_LOCAL_DIRS") {
            self.import.local_dirs = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        if let Some(v) = get("DRYDOCK_AUTH") {
            self.auth.enabled = Some(parse_bool("DRYDOCK_AUTH", &v)?);
        }
        if let Some(v) = get("DRYDOCK_ADMIN_PASSWORD") {
            self.auth.admin_password = Some(crate::access::Secret(v));
        }
        self.auth.settings()?;
        if let Some(v) = get("DRYDOCK_OUTBOUND_ALLOW") {
            self.outbound.allow = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        self.outbound.policy()?;
        if let Some(v) = get("DRYDOCK_METADATA_URL") {
            self.metadata.url = Some(v);
        }
        self.metadata.parse()?;
        if let Some(v) = get("DRYDOCK_TLS_CERT") {
            self.server.tls_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = get("DRYDOCK_TLS_KEY") {
            self.server.tls_key = Some(PathBuf::from(v));
        }
        if self.assess.workers == 0 {
            bail!("assess.workers must be at least 1");
        }
        self.assess.vex.validate().map_err(anyhow::Error::msg)?;
        if self.vulndb.stale_days == 0 {
            bail!("vulndb.stale_days must be at least 1");
        }
        for rule in &self.assess.pull_gate {
            rule.validate().map_err(|e| anyhow::anyhow!("assess.{e}"))?;
        }
        let c = &self.catalog;
        if c.max_file_bytes == 0
            || c.max_packages_per_layer == 0
            || c.max_packages_per_image == 0
            || c.max_files_per_layer == 0
        {
            bail!("the [catalog] limits must be at least 1");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!(
                "log_format must be \"text\" or \"json\", not {:?}",
                self.log_format
            );
        }
        Ok(())
    }
}

/// Install the global tracing subscriber. `RUST_LOG` filters (default `info`).
/// For commands that read a server's state: the data directory must exist
/// (a mistyped `--data` is an error, not an empty registry).
pub fn require_data_dir(config: &Config) -> anyhow::Result<()> {
    if !config.data.is_dir() {
        anyhow::bail!(
            "no data directory at {}: give the server's with --data (or DRYDOCK_DATA)",
            config.data.display()
        );
    }
    Ok(())
}

/// Logging to standard error. `default_level` applies when `RUST_LOG` is
/// unset: `info` for the server, `warn` for one-shot commands, whose
/// result is their output (a log line beside it only repeats it).
pub fn init_tracing(config: &Config, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colour only on a terminal: a log file or pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn env_overrides_file_values() {
        let mut c: Config = toml::from_str("listen = \"127.0.0.1:6000\"\ndata = \"/x\"").unwrap();
        let env: HashMap<&str, &str> = [("DRYDOCK_LISTEN", "127.0.0.1:7000")].into();
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.data, PathBuf::from("/x"));
    }

    #[test]
    fn bad_values_are_reported() {
        let mut c = Config::default();
        let err = c
            .apply_env(|k| (k == "DRYDOCK_LISTEN").then(|| "nope".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("DRYDOCK_LISTEN"));
        assert!(toml::from_str::<Config>("unknown_key = 1").is_err());
    }

    #[test]
    fn database_stale_days_from_the_file_and_the_environment() {
        assert_eq!(Config::default().vulndb.stale_days, 7);
        let mut c: Config = toml::from_str("[vulndb]\nstale_days = 30\n").unwrap();
        c.apply_env(|_| None).unwrap();
        assert_eq!(c.vulndb.stale_days, 30);
        // The variable overrides the file.
        c.apply_env(|k| (k == "DRYDOCK_DB_STALE_DAYS").then(|| "3".into()))
            .unwrap();
        assert_eq!(c.vulndb.stale_days, 3);
        for bad in ["0", "soon"] {
            let mut c = Config::default();
            let err = c
                .apply_env(|k| (k == "DRYDOCK_DB_STALE_DAYS").then(|| bad.into()))
                .unwrap_err();
            assert!(
                format!("{err:#}").contains("stale_days")
                    || format!("{err:#}").contains("STALE_DAYS"),
                "{err:#}"
            );
        }
        assert!(toml::from_str::<Config>("[vulndb]\nstale_days = -1\n").is_err());
    }

    #[test]
    fn catalog_section_sets_the_limits() {
        let c: Config = toml::from_str(
            r#"
            [catalog]
            max_file_bytes = 1000
            max_packages_per_image = 7
            "#,
        )
        .unwrap();
        let l = c.catalog.limits();
        assert_eq!((l.max_file_bytes, l.max_packages_per_image), (1000, 7));
        let d = catalog::Limits::default();
        assert_eq!(l.max_packages_per_layer, d.max_packages_per_layer);
        assert_eq!(l.max_files_per_layer, d.max_files_per_layer);
        assert!(
            toml::from_str::<Config>(
                "[catalog]
max_packages = 1
"
            )
            .is_err()
        );
    }

    #[test]
    fn single_star_patterns_are_named_at_start() {
        let c: Config = toml::from_str(
            r#"
            [[assess.pull_gate]]
            repository = "*"
            [[assess.pull_gate]]
            repository = "prod/**"
            [[assess.sbom_rules]]
            repository = "team/*"
            enabled = true
            "#,
        )
        .unwrap();
        assert_eq!(c.assess.narrowed_patterns(), vec!["*", "team/*"]);
    }

    #[test]
    fn pull_gate_rules_parse_and_validate() {
        let mut c: Config = toml::from_str(
            r#"
            [[assess.pull_gate]]
            repository = "team-a/*"
            not_assessed = true
            bypass = ["robot:scanner", "user:alice"]
            [[assess.pull_gate]]
            repository = "prod/**"
            incomplete = false
            "#,
        )
        .unwrap();
        let g = &c.assess.pull_gate;
        assert_eq!(g.len(), 2);
        assert!(g[0].unhealthy && g[0].incomplete && g[0].not_assessed);
        assert_eq!(g[0].bypass, ["robot:scanner", "user:alice"]);
        assert!(g[1].unhealthy && !g[1].incomplete && !g[1].not_assessed);
        assert!(c.apply_env(|_| None).is_ok());
        c.assess.pull_gate[1].bypass = vec!["alice".into()];
        let e = c.apply_env(|_| None).unwrap_err().to_string();
        assert!(e.contains("assess.pull_gate for prod/**"), "{e}");
        assert!(
            toml::from_str::<Config>(
                "[[assess.pull_gate]]\nrepository = \"x\"\nunheathly = true\n"
            )
            .is_err()
        );
    }

    #[test]
    fn assess_section_maps_to_options() {
        let c: Config = toml::from_str(
            r#"
            min_free_bytes = 5000000
            [assess]
            workers = 4
            rescan_window_days = 7
            threshold = "critical"
            max_attempts = 5
            [assess.retention]
            deliveries_days = 7
            layer_cache_grace_hours = 2
            [[assess.policy]]
            repository = "prod/*"
            threshold = "medium"
            fixable_only = false
            "#,
        )
        .unwrap();
        let o = c.assess.options(Path::new("/d"));
        assert_eq!(o.workers, 4);
        assert_eq!(o.max_attempts, 5);
        assert_eq!(o.retention.deliveries, time::Duration::days(7));
        assert_eq!(o.retention.layer_cache_grace, time::Duration::hours(2));
        // Unset keys keep their defaults.
        assert_eq!(o.retention.notified, time::Duration::days(365));
        assert_eq!(o.retention.tag_history, time::Duration::days(180));
        assert!(
            toml::from_str::<Config>("[assess.retention]\ndelivery_days = 3\n").is_err(),
            "a misspelt key is refused"
        );
        assert_eq!(
            crate::cmd_serve::registry_options(&c).min_free_bytes,
            Some(5_000_000)
        );
        assert_eq!(o.rescan_window_days, 7);
        assert_eq!(o.policy.default.threshold, assess::Severity::Critical);
        assert_eq!(
            o.policy.rule_for("prod/api").threshold,
            assess::Severity::Medium
        );
        assert_eq!(
            o.policy.rule_for("dev/api").threshold,
            assess::Severity::Critical
        );
        let mut zero = Config::default();
        assert!(
            zero.apply_env(|k| (k == "DRYDOCK_ASSESS_WORKERS").then(|| "0".into()))
                .is_err()
        );
    }

    #[test]
    fn import_section_maps_to_importer_config() {
        let c: Config = toml::from_str(
            r#"
            [import]
            local_dirs = ["/srv/drydock-import"]
            allow_local = false
            [import.remotes."127.0.0.1:5001"]
            username = "u"
            password = "p"
            insecure = true
            [[import.mirrors]]
            prefix = "hub"
            upstream = "127.0.0.1:5001/library"
            insecure = true
            "#,
        )
        .unwrap();
        let ic = c.import.importer_config();
        assert_eq!(ic.local_dirs, [PathBuf::from("/srv/drydock-import")]);
        assert!(ic.remotes["127.0.0.1:5001"].insecure);
        assert_eq!(c.import.mirrors[0].prefix, "hub");
        let mut d = Config::default();
        assert!(d.import.importer_config().local_dirs.is_empty());
        d.apply_env(|k| match k {
            "DRYDOCK_IMPORT_ALLOW_LOCAL" => Some("yes".into()),
            "DRYDOCK_IMPORT_LOCAL_DIRS" => Some("/a, /b/c,".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(d.import.allow_local, Some(true));
        assert_eq!(
            d.import.importer_config().local_dirs,
            [PathBuf::from("/a"), PathBuf::from("/b/c")]
        );
        assert!(d.assess.catalog_on_upload);
        d.apply_env(|k| (k == "DRYDOCK_ASSESS_CATALOG_ON_UPLOAD").then(|| "false".into()))
            .unwrap();
        assert!(!d.assess.options(Path::new("d")).catalog_on_upload);
        assert!(
            d.apply_env(|k| (k == "DRYDOCK_ASSESS_CATALOG_ON_UPLOAD").then(|| "maybe".into()))
                .is_err()
        );
        assert_eq!(d.vulndb.update_hours, 24);
        assert_eq!(d.vulndb.update_urls().len(), vulndb::DEFAULT_SOURCES.len());
        d.apply_env(|k| match k {
            "DRYDOCK_VULNDB_UPDATE_HOURS" => Some("0".into()),
            "DRYDOCK_VULNDB_SOURCES" => {
                Some("http://127.0.0.1:1/a.zip, http://127.0.0.1:1/b.zip".into())
            }
            _ => None,
        })
        .unwrap();
        assert_eq!(d.vulndb.update_hours, 0);
        assert_eq!(
            d.vulndb.update_urls(),
            ["http://127.0.0.1:1/a.zip", "http://127.0.0.1:1/b.zip"]
        );
    }

    #[test]
    fn outbound_allow_list_from_file_and_env() {
        let mut c: Config = toml::from_str("[outbound]\nallow = [\"127.0.0.0/8\"]").unwrap();
        c.apply_env(|_| None).unwrap();
        let p = c.outbound.policy().unwrap();
        assert!(p.check_ip("127.0.0.2".parse().unwrap()).is_ok());
        assert!(p.check_ip("::1".parse().unwrap()).is_err());
        c.apply_env(|k| (k == "DRYDOCK_OUTBOUND_ALLOW").then(|| "::1/128, 10.0.0.0/8".into()))
            .unwrap();
        let p = c.outbound.policy().unwrap();
        assert!(p.check_ip("::1".parse().unwrap()).is_ok());
        assert!(p.check_ip("10.1.2.3".parse().unwrap()).is_ok());
        assert!(p.check_ip("127.0.0.1".parse().unwrap()).is_err());
        // The default refuses internal addresses.
        let d = Config::default().outbound.policy().unwrap();
        assert!(d.check_ip("127.0.0.1".parse().unwrap()).is_err());
        let err = Config::default()
            .apply_env(|k| (k == "DRYDOCK_OUTBOUND_ALLOW").then(|| "10.0.0.0/99".into()))
            .unwrap_err();
        assert!(err.to_string().contains("outbound.allow"), "{err}");
        assert!(toml::from_str::<Config>("[outbound]\nallow = 1").is_err());
    }

    #[test]
    fn server_section_maps_to_the_server_config() {
        let c: Config = toml::from_str(
            "[server]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\nidle_timeout_secs = 5\nmax_connections = 7",
        )
        .unwrap();
        let s = c.server.httpd_config(None, None, 1024).unwrap();
        assert_eq!(s.tls.unwrap().cert, PathBuf::from("/c.pem"));
        assert_eq!(s.idle_timeout.as_secs(), 5);
        assert_eq!(s.header_read_timeout.as_secs(), 10);
        assert_eq!(s.max_connections, 7);
        // Flags beat the file; no cap set: derived from the file limit.
        let d = Config::default();
        let s = d
            .server
            .httpd_config(Some("/f.pem".into()), Some("/g.pem".into()), 1024)
            .unwrap();
        assert_eq!(s.tls.unwrap().key, PathBuf::from("/g.pem"));
        assert_eq!(s.max_connections, 768);
        assert!(
            d.server
                .httpd_config(None, None, 1024)
                .unwrap()
                .tls
                .is_none()
        );
        let mut e = Config::default();
        e.apply_env(|k| (k == "DRYDOCK_TLS_CERT").then(|| "/e.pem".into()))
            .unwrap();
        let err = e.server.httpd_config(None, None, 1024).unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.data, PathBuf::from("drydock-data"));
    }

    #[test]
    fn vex_trust_reaches_the_assessor() {
        let d = Config::default().assess.options(Path::new("d"));
        assert_eq!(d.vex.trusted, None);
        let mut c: Config =
            toml::from_str("[assess.vex]\ntrusted = [\"group:security\", \"robot:release-*\"]\n")
                .unwrap();
        c.apply_env(|_| None).unwrap();
        let o = c.assess.options(Path::new("d"));
        assert_eq!(
            o.vex.trusted.as_deref(),
            Some(&["group:security".to_string(), "robot:release-*".to_string()][..])
        );
        let mut c: Config = toml::from_str("[assess.vex]\ntrusted = [\"security\"]\n").unwrap();
        let e = c.apply_env(|_| None).unwrap_err().to_string();
        assert!(e.starts_with("assess.vex.trusted: \"security\""), "{e}");
        assert!(toml::from_str::<Config>("[assess.vex]\ntrust = []\n").is_err());
    }

    #[test]
    fn sbom_settings_reach_the_assessor() {
        let d = Config::default().assess.options(Path::new("d"));
        assert!(d.sbom.enabled && d.sbom.rules.is_empty() && !d.sbom.keep_replaced);
        let c: Config = toml::from_str(
            r#"
            [assess]
            sbom = false
            sbom_keep_replaced = true
            [[assess.sbom_rules]]
            repository = "prod/*"
            enabled = true
            "#,
        )
        .unwrap();
        let o = c.assess.options(Path::new("d"));
        assert!(!o.sbom.applies("dev/app"));
        assert!(o.sbom.applies("prod/app"));
        assert!(o.sbom.keep_replaced);
        assert!(!d.sbom.spdx_applies("prod/app") && !o.sbom.spdx_applies("prod/app"));
        let c: Config = toml::from_str(
            r#"
            [assess]
            sbom_spdx = true
            catalog_while_uploading = false
            [[assess.sbom_rules]]
            repository = "quiet/*"
            enabled = true
            spdx = false
            "#,
        )
        .unwrap();
        let o = c.assess.options(Path::new("d"));
        assert!(o.sbom.spdx_applies("prod/app"));
        assert!(!o.sbom.spdx_applies("quiet/app") && o.sbom.applies("quiet/app"));
        assert!(!o.catalog_while_uploading && d.catalog_while_uploading);
        assert!(
            toml::from_str::<Config>("[[assess.sbom_rules]]\nrepository = \"x\"\nenable = true")
                .is_err()
        );
    }

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
