//! Configuration: embedded defaults, then a TOML file, then `DRYDOCK_*`
//! environment variables, then command-line flags (last one wins).
//!
//! Every key is documented in the README's configuration reference; keep the
//! two in step.

mod assess;
mod catalog;
mod import;
mod server;
mod storage;

pub use self::assess::AssessConfig;
pub use self::catalog::{CatalogSection, VulndbConfig};
pub use self::import::ImportSection;
pub use self::server::ServerSection;
pub use self::storage::{MetadataSection, StorageSection};

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
    /// Collect garbage this often in `serve` (0: never; run `drydock gc`
    /// instead). With several nodes only the GC leader does.
    /// Env: `DRYDOCK_GC_INTERVAL_SECS`.
    pub gc_interval_secs: u64,
    /// Scheduled GC never removes content younger than this.
    /// Env: `DRYDOCK_GC_GRACE_SECS`.
    pub gc_grace_secs: u64,
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
            gc_interval_secs: 0,
            gc_grace_secs: 3600,
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
        if let Some(v) = get("DRYDOCK_GC_INTERVAL_SECS") {
            self.gc_interval_secs = v
                .parse()
                .with_context(|| format!("DRYDOCK_GC_INTERVAL_SECS: not a number: {v:?}"))?;
        }
        if let Some(v) = get("DRYDOCK_GC_GRACE_SECS") {
            self.gc_grace_secs = v
                .parse()
                .with_context(|| format!("DRYDOCK_GC_GRACE_SECS: not a number: {v:?}"))?;
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
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.data, PathBuf::from("drydock-data"));
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
}
