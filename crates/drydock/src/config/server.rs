//! `[server]`: TLS files, request deadlines and the connection cap.

use anyhow::{Result, bail};
use serde::Deserialize;
use std::path::PathBuf;

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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::PathBuf;

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
}
