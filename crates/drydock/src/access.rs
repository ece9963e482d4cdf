//! The `[auth]` configuration table and opening the access-control state
//! of a data directory, shared by `serve` and the `user` / `robot`
//! commands.

use anyhow::{Context, Result, bail};
use auth::{AccessControl, Action, Binding, Subject};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// `[auth]`: who may do what.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// On or off. Unset: on when the server listens beyond loopback.
    /// Env: `DRYDOCK_AUTH`; flags `--auth` / `--no-auth`.
    pub enabled: Option<bool>,
    /// The token service name (the `service` of the token flow).
    pub service: String,
    /// The token realm URL; by default `<scheme>://<Host>/token`.
    pub realm: Option<String>,
    /// Lifetime of access tokens, in seconds.
    pub token_ttl_secs: u64,
    /// Lifetime of dashboard sessions, in seconds.
    pub session_ttl_secs: u64,
    /// The first administrator's password (else one is generated and
    /// printed once). Env: `DRYDOCK_ADMIN_PASSWORD`.
    pub admin_password: Option<Secret>,
    /// Failed logins allowed per identity and per address per window.
    pub max_failed_logins: u32,
    pub login_window_secs: u64,
    /// Audit records are kept this many days.
    pub audit_retention_days: u64,
    /// Upload requests served at once.
    pub max_concurrent_uploads: usize,
    /// `[[auth.bindings]]`: `subject` (`user:NAME`, `robot:NAME`,
    /// `group:NAME` or `anonymous`), `repository` (a glob), `actions`.
    pub bindings: Vec<BindingConfig>,
}

/// A secret from the configuration: its `Debug` form hides it, so no
/// dump of the configuration can leak it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// One static binding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    pub subject: String,
    pub repository: String,
    pub actions: Vec<String>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            enabled: None,
            service: "drydock".into(),
            realm: None,
            token_ttl_secs: 300,
            session_ttl_secs: 12 * 3600,
            admin_password: None,
            max_failed_logins: 10,
            login_window_secs: 300,
            audit_retention_days: 90,
            max_concurrent_uploads: 256,
            bindings: Vec::new(),
        }
    }
}

/// Parse `user:NAME`, `robot:NAME`, `group:NAME` or `anonymous`.
pub fn parse_subject(s: &str) -> Result<Subject> {
    if s == "anonymous" {
        return Ok(Subject::Anonymous);
    }
    let Some((kind, name)) = s.split_once(':') else {
        bail!("subject {s:?}: expected user:NAME, robot:NAME, group:NAME or anonymous");
    };
    Subject::from_parts(kind, name).map_err(|e| anyhow::anyhow!("subject {s:?}: {e}"))
}

/// Parse a permission `PATTERN:ACTION[,ACTION…]` (`team-a/*:pull,push`).
pub fn parse_permission(s: &str) -> Result<(String, Vec<Action>)> {
    let Some((pattern, actions)) = s.rsplit_once(':') else {
        bail!(
            "permission {s:?}: expected REPOSITORY-PATTERN:ACTION[,ACTION…], e.g. team-a/*:pull,push"
        );
    };
    let actions = actions
        .split(',')
        .map(|a| Action::parse(a.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("permission {s:?}: {e}"))?;
    auth::policy::compile(pattern).map_err(|e| anyhow::anyhow!("permission {s:?}: {e}"))?;
    Ok((pattern.to_string(), actions))
}

impl AuthSection {
    /// The access-control settings; a malformed binding is an error.
    pub fn settings(&self) -> Result<auth::Settings> {
        let mut bindings = Vec::new();
        for (i, b) in self.bindings.iter().enumerate() {
            let what = || format!("auth.bindings[{i}]");
            let binding = Binding {
                id: String::new(),
                subject: parse_subject(&b.subject).with_context(what)?,
                pattern: b.repository.clone(),
                actions: b
                    .actions
                    .iter()
                    .map(|a| Action::parse(a))
                    .collect::<Result<_, _>>()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", what()))?,
            };
            binding
                .validate()
                .map_err(|e| anyhow::anyhow!("{}: {e}", what()))?;
            bindings.push(binding);
        }
        if self.token_ttl_secs == 0 || self.token_ttl_secs > 3600 {
            bail!("auth.token_ttl_secs must be between 1 and 3600");
        }
        Ok(auth::Settings {
            service: self.service.clone(),
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            session_ttl: Duration::from_secs(self.session_ttl_secs.max(60)),
            bindings,
            max_failed_logins: self.max_failed_logins.max(1),
            login_window: Duration::from_secs(self.login_window_secs.max(1)),
            audit_retention: Duration::from_secs(self.audit_retention_days.max(1) * 24 * 3600),
            ..auth::Settings::default()
        })
    }

    /// Whether access control is on for a server listening on `listen`,
    /// given the `--auth` / `--no-auth` flags.
    pub fn enabled_for(&self, listen: SocketAddr, flag_on: bool, flag_off: bool) -> bool {
        if flag_on {
            return true;
        }
        if flag_off {
            return false;
        }
        self.enabled.unwrap_or(!listen.ip().is_loopback())
    }
}

/// Open the access-control state of `data` (its tables where `metadata`
/// says).
pub fn open(
    data: &Path,
    section: &AuthSection,
    metadata: &crate::config::MetadataSection,
) -> Result<AccessControl> {
    AccessControl::open_on(data, section.settings()?, &metadata.storage())
        .with_context(|| format!("cannot open the access-control state in {}", data.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_beyond_loopback_unless_told() {
        let s = AuthSection::default();
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert!(!s.enabled_for(lo, false, false));
        assert!(!s.enabled_for(v6, false, false));
        assert!(s.enabled_for(any, false, false));
        assert!(!s.enabled_for(any, false, true));
        assert!(s.enabled_for(lo, true, false));
        let on = AuthSection {
            enabled: Some(true),
            ..AuthSection::default()
        };
        assert!(on.enabled_for(lo, false, false));
    }

    #[test]
    fn bindings_and_permissions_parse_with_precise_errors() {
        let s: AuthSection = toml::from_str(
            r#"
            [[bindings]]
            subject = "group:devs"
            repository = "team-a/**"
            actions = ["pull", "push"]
            [[bindings]]
            subject = "anonymous"
            repository = "public/**"
            actions = ["pull"]
            "#,
        )
        .unwrap();
        assert_eq!(s.settings().unwrap().bindings.len(), 2);
        let bad: AuthSection = toml::from_str(
            "[[bindings]]\nsubject = \"anonymous\"\nrepository = \"**\"\nactions = [\"push\"]",
        )
        .unwrap();
        let e = format!("{:#}", bad.settings().unwrap_err());
        assert!(e.contains("auth.bindings[0]") && e.contains("pull"), "{e}");
        let e = format!("{:#}", parse_subject("team").unwrap_err());
        assert!(e.contains("user:NAME"), "{e}");
        assert_eq!(
            parse_permission("team-a/*:pull,push").unwrap(),
            ("team-a/*".to_string(), vec![Action::Pull, Action::Push])
        );
        assert!(parse_permission("team-a/*:fly").is_err());
        assert!(parse_permission("nocolon").is_err());
    }

    #[test]
    fn the_admin_password_never_shows_in_debug_output() {
        let s: AuthSection = toml::from_str("admin_password = \"hunter2-hunter2\"").unwrap();
        assert_eq!(s.admin_password.as_ref().unwrap().0, "hunter2-hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
