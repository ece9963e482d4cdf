//! The pull gate: the registry asks, on every manifest read of an image,
//! whether the assessor's verdict allows serving it (opt-in, per
//! repository pattern, like a cloud registry's quarantine).
//!
//! Verdicts are answered from memory: each digest's verdict is computed
//! once from the store and cached with the store's
//! [generation](crate::store::Store::generation), which moves on with every
//! write (a new result, a status change, an exemption, …). A pull pays one
//! atomic load and one map lookup; a changed store recomputes the digests
//! pulled afterwards, once each. Entries are also recomputed after
//! [`MAX_AGE`], so an exemption that expires (time, not a write) is noticed.

use crate::policy::health_status;
use crate::service::Service;
use crate::store::status;
use oci::{Digest, Name};
use registry::PullRefusal;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a cached verdict is trusted when nothing was written.
pub const MAX_AGE: Duration = Duration::from_secs(10);

/// Cached verdicts beyond this many are dropped all at once (bounded
/// memory; they are recomputed on demand).
const MAX_ENTRIES: usize = 100_000;

/// One `[[assess.pull_gate]]` rule. The first rule whose `repository`
/// glob matches the pulled repository decides; no match, no gate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullGateRule {
    /// Repository pattern ([`oci::RepoPattern`]: `*` within one path
    /// segment, `**` across several).
    pub repository: String,
    /// Refuse images whose verdict is `unhealthy` (default true).
    #[serde(default = "yes")]
    pub unhealthy: bool,
    /// Refuse images whose verdict is `incomplete` (default true: such an
    /// image is never healthy).
    #[serde(default = "yes")]
    pub incomplete: bool,
    /// Refuse images without a verdict yet: queued, being assessed, or
    /// failed (default false: a fresh push would be refused until assessed).
    #[serde(default)]
    pub not_assessed: bool,
    /// Identities that pull anyway: `user:NAME`, `robot:NAME` (or
    /// `robot$NAME`, the name robots sign in with). Callers with
    /// `admin` on the repository always do.
    #[serde(default)]
    pub bypass: Vec<String>,
}

fn yes() -> bool {
    true
}

impl PullGateRule {
    /// A rule for `repository` with the defaults.
    pub fn new(repository: impl Into<String>) -> PullGateRule {
        PullGateRule {
            repository: repository.into(),
            unhealthy: true,
            incomplete: true,
            not_assessed: false,
            bypass: Vec::new(),
        }
    }

    /// Refuse a bad pattern, or a bypass entry that could never name anyone.
    pub fn validate(&self) -> Result<(), PullGateError> {
        if self.repository.is_empty() {
            return Err(PullGateError::EmptyRepository);
        }
        oci::RepoPattern::new(&self.repository)?;
        for b in &self.bypass {
            let name = b
                .strip_prefix("user:")
                .or_else(|| b.strip_prefix("robot:"))
                .or_else(|| b.strip_prefix("robot$"));
            if name.is_none_or(str::is_empty) {
                return Err(PullGateError::Bypass {
                    repository: self.repository.clone(),
                    entry: b.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Why a `[[assess.pull_gate]]` rule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullGateError {
    #[error("pull_gate: repository must not be empty")]
    EmptyRepository,
    #[error("pull_gate: repository {0}")]
    Pattern(#[from] oci::PatternError),
    #[error("pull_gate for {repository}: bypass entry {entry:?} must be user:NAME or robot:NAME")]
    Bypass { repository: String, entry: String },
}

/// What the gate knows of a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Not an image (signature, SBOM, other artifact): never gated.
    NotAnImage,
    Healthy,
    Unhealthy {
        violations: usize,
    },
    Incomplete,
    /// Assessed while no vulnerability database was installed (of an
    /// index: some platform image was): nothing was matched, so there is no
    /// verdict until a database arrives. Gated like `NotAssessed`.
    WaitingForDatabase,
    /// No verdict yet: `queued`, `cataloging`, `matching`, `failed`, or
    /// unknown to the assessor (`None`).
    NotAssessed {
        status: Option<String>,
    },
}

struct Entry {
    generation: u64,
    at: Instant,
    verdict: GateVerdict,
}

/// The assessor's verdicts as the registry's [`registry::PullGate`].
pub struct VerdictGate {
    service: Service,
    rules: Vec<PullGateRule>,
    /// `rules[i].repository`, compiled once.
    patterns: Vec<oci::RepoPattern>,
    cache: RwLock<HashMap<Digest, Entry>>,
}

impl VerdictGate {
    /// A gate over `service`'s verdicts; rules are validated.
    pub fn new(service: Service, rules: Vec<PullGateRule>) -> Result<VerdictGate, PullGateError> {
        let mut patterns = Vec::with_capacity(rules.len());
        for r in &rules {
            r.validate()?;
            patterns.push(oci::RepoPattern::new(&r.repository)?);
        }
        Ok(VerdictGate {
            service,
            rules,
            patterns,
            cache: RwLock::new(HashMap::new()),
        })
    }

    fn rule_for(&self, repo: &str) -> Option<&PullGateRule> {
        let i = self.patterns.iter().position(|p| p.is_match(repo))?;
        self.rules.get(i)
    }

    /// The verdict of `digest`, from the cache when nothing changed.
    pub fn verdict(&self, digest: &Digest) -> GateVerdict {
        let generation = self.service.store().verdict_generation();
        if let Some(e) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            && e.generation == generation
            && e.at.elapsed() < MAX_AGE
        {
            return e.verdict.clone();
        }
        let verdict = match self.compute(digest) {
            Ok(v) => v,
            Err(e) => {
                // Not cached: the next pull asks again.
                tracing::warn!(%digest, error = %e, "pull gate: cannot read the verdict");
                return GateVerdict::NotAssessed { status: None };
            }
        };
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(
            digest.clone(),
            Entry {
                generation,
                at: Instant::now(),
                verdict: verdict.clone(),
            },
        );
        verdict
    }

    fn compute(&self, digest: &Digest) -> anyhow::Result<GateVerdict> {
        let Some(row) = self.service.store().image(&digest.to_string())? else {
            return Ok(GateVerdict::NotAssessed { status: None });
        };
        if row.status == status::UNSUPPORTED || row.kind == "artifact" {
            return Ok(GateVerdict::NotAnImage);
        }
        // A re-assessment in progress keeps the previous verdict.
        Ok(match self.service.verdict(&row)? {
            Some((h, _)) => match h.status.as_str() {
                health_status::HEALTHY => GateVerdict::Healthy,
                health_status::UNHEALTHY => GateVerdict::Unhealthy {
                    violations: h.violations,
                },
                _ => GateVerdict::Incomplete,
            },
            None if self.waits_for_database(&row)? => GateVerdict::WaitingForDatabase,
            None => GateVerdict::NotAssessed {
                status: Some(row.status),
            },
        })
    }

    /// Whether `row` (or, for an index, one of its platform images) has a
    /// result matched against no database.
    fn waits_for_database(&self, row: &crate::store::ImageRow) -> anyhow::Result<bool> {
        let store = self.service.store();
        if row.kind == "index" {
            for c in store.children(&row.digest)? {
                if self.waits_for_database(&c)? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        Ok(store
            .result(&row.digest)?
            .is_some_and(|r| r.db_version.is_none()))
    }
}

/// Where the findings of `digest` are shown.
fn see(digest: &Digest) -> String {
    format!("see /ui/#/image/{digest} or GET /api/v1/images/{digest}")
}

impl registry::PullGate for VerdictGate {
    fn check(&self, repo: &Name, digest: &Digest, _media_type: &str) -> Option<PullRefusal> {
        let rule = self.rule_for(repo.as_str())?;
        let (reason, why) = match self.verdict(digest) {
            GateVerdict::NotAnImage | GateVerdict::Healthy => return None,
            GateVerdict::Unhealthy { violations } if rule.unhealthy => {
                let s = if violations == 1 { "" } else { "s" };
                (
                    "unhealthy",
                    format!("is unhealthy ({violations} violation{s})"),
                )
            }
            GateVerdict::Incomplete if rule.incomplete => (
                "incomplete",
                "is incomplete (parts of it could not be read)".to_string(),
            ),
            GateVerdict::WaitingForDatabase if rule.not_assessed => (
                "waiting_for_database",
                "is not assessed yet (waiting for a vulnerability database: none was installed \
                 when it was read; it is matched as soon as one is)"
                    .to_string(),
            ),
            GateVerdict::NotAssessed { status } if rule.not_assessed => match status.as_deref() {
                Some(status::FAILED) => (
                    "failed",
                    "is not assessed (its assessment failed)".to_string(),
                ),
                Some(s) => ("not_assessed", format!("is not assessed yet ({s})")),
                None => ("not_assessed", "is not assessed yet".to_string()),
            },
            _ => return None,
        };
        Some(PullRefusal {
            reason: reason.to_string(),
            message: format!(
                "pull refused by the pull gate for {}: image {digest} {why}; {}",
                rule.repository,
                see(digest)
            ),
            bypass: rule.bypass.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_defaults_and_validate() {
        #[derive(Deserialize)]
        struct T {
            pull_gate: Vec<PullGateRule>,
        }
        let t: T = toml_like(
            r#"{"pull_gate":[{"repository":"team-a/*","bypass":["robot:scanner","user:alice"]},
                {"repository":"x","unhealthy":false,"not_assessed":true,"incomplete":false}]}"#,
        );
        let a = &t.pull_gate[0];
        assert!(a.unhealthy && a.incomplete && !a.not_assessed);
        assert!(a.validate().is_ok());
        let b = &t.pull_gate[1];
        assert!(!b.unhealthy && !b.incomplete && b.not_assessed);
        let mut bad = PullGateRule::new("x");
        bad.bypass = vec!["alice".into()];
        assert!(matches!(
            bad.validate(),
            Err(PullGateError::Bypass { ref entry, .. }) if entry.as_str() == "alice"
        ));
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("user:NAME")
        );
        bad.bypass = vec!["user:".into()];
        assert!(bad.validate().is_err());
        assert_eq!(
            PullGateRule::new("").validate(),
            Err(PullGateError::EmptyRepository)
        );
        assert!(matches!(
            PullGateRule::new("team-[a").validate(),
            Err(PullGateError::Pattern(_))
        ));
    }

    fn toml_like<T: for<'de> Deserialize<'de>>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }
}
