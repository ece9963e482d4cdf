//! `[assess]`: how images are assessed and judged (workers, re-scans,
//! health policy, webhooks, pull gate, SBOMs, VEX trust, retention).

use serde::Deserialize;
use std::path::Path;

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
    /// A job started this many times (starts that never finished, and
    /// retries after a transient failure) is marked failed.
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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

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
}
