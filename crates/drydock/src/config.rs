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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".parse().expect("valid default address"),
            data: PathBuf::from("drydock-data"),
            log_format: "text".into(),
            upload_expiry_secs: 24 * 3600,
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
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("log_format must be \"text\" or \"json\", not {:?}", self.log_format);
        }
        Ok(())
    }
}

/// Install the global tracing subscriber. `RUST_LOG` filters (default `info`).
pub fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
}
