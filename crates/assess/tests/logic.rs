//! The pure decisions (health, exemptions, diffs, remediation,
//! notifications) and the queue's persistence rules.

use assess::notify::{self, IMAGE_NEW_FINDINGS, IMAGE_UNHEALTHY};
use assess::policy::{Exemption, Policy, PolicyRule, diff_keys, evaluate, finding_key};
use assess::remediation::{compare_versions, upgrade_plan};
use assess::store::Store;
use assess::{Finding, FindingStatus, Severity};
use inventory::Ecosystem;
use std::cmp::Ordering;
use std::collections::HashSet;
use time::{Duration, OffsetDateTime};

fn finding(id: &str, pkg: &str, sev: Severity, fixed: Option<&str>) -> Finding {
    Finding {
        id: id.into(),
        aliases: Vec::new().into(),
        related: Vec::new().into(),
        ecosystem: Ecosystem::Deb,
        distro: Some("debian:12".into()),
        package: pkg.into(),
        source_package: None,
        purl: "".into(),
        installed_version: "1.0-1".into(),
        fixed_version: fixed.map(Into::into),
        status: if fixed.is_some() {
            FindingStatus::Fixed
        } else {
            FindingStatus::Unfixed
        },
        status_note: None,
        severity: sev,
        severity_source: "none".into(),
        cvss: None,
        summary: "".into(),
        references: Vec::new().into(),
        informational: None,
        data_source: "test".into(),
    }
}

fn exemption(now: OffsetDateTime) -> Exemption {
    Exemption {
        id: "e1".into(),
        vulnerability: None,
        package: None,
        repository: None,
        severity: None,
        reason: "r".into(),
        author: "a".into(),
        created_at: now,
        expires_at: None,
    }
}

/// Repository patterns mean what they mean in access bindings (docs/auth.md):
/// `*` within one segment, `**` across; package globs cross `/`.
#[test]
fn patterns_mean_what_bindings_mean() {
    let rule = |p: &str| PolicyRule {
        repository: p.parse().unwrap(),
        threshold: Severity::Critical,
        fixable_only: false,
    };
    let policy = Policy {
        rules: vec![rule("team/*"), rule("deep/**"), rule("*-prod")],
        ..Policy::default()
    };
    let which = |repo: &str| policy.rule_for(repo).repository.as_str().to_string();
    assert_eq!(which("team/app"), "team/*");
    assert_eq!(which("team/x/app"), "**", "`*` stays within one segment");
    assert_eq!(which("deep/x/app"), "deep/**");
    assert_eq!(which("api-prod"), "*-prod");
    assert_eq!(which("x/api-prod"), "**");
    // The default rule covers every repository.
    assert!(Policy::default().default.repository.is_match("a/b/c"));
    assert!(
        serde_json::from_str::<PolicyRule>(r#"{"repository": "team-[a", "threshold": "high"}"#)
            .is_err()
    );

    let now = OffsetDateTime::now_utc();
    let f = finding("CVE-1", "golang.org/x/net", Severity::High, None);
    let mut e = exemption(now);
    e.package = Some("golang.org/x/*".into());
    e.repository = Some("team/*".into());
    assert!(e.matches("team/app", &f));
    assert!(!e.matches("team/x/app", &f));
    e.repository = Some("team/**".into());
    assert!(e.matches("team/x/app", &f));
    // A pattern that does not compile exempts nothing.
    e.repository = Some("team-[a".into());
    assert!(!e.matches("team-[a", &f));
    assert!(e.validate().is_err());
}

#[test]
fn default_policy_needs_a_fixable_high_or_critical() {
    let now = OffsetDateTime::now_utc();
    let rule = Policy::default().default;
    let fs = vec![
        finding("CVE-1", "a", Severity::Critical, None),
        finding("CVE-2", "b", Severity::Medium, Some("2.0")),
    ];
    let e = evaluate(&fs, "r", &rule, &[], now);
    assert!(
        e.health.healthy,
        "unfixed critical and fixable medium are tolerated"
    );
    assert_eq!(e.health.status, "healthy");
    assert_eq!(e.summary.total, 2);
    assert_eq!(e.summary.fixable, 1);
    let fs = vec![finding("CVE-3", "c", Severity::High, Some("2.0"))];
    let e = evaluate(&fs, "r", &rule, &[], now);
    assert!(!e.health.healthy);
    assert_eq!(e.health.violations, 1);
    // Per-repository thresholds: the first matching rule wins.
    let policy = Policy {
        rules: vec![PolicyRule {
            repository: "lab/*".parse().unwrap(),
            threshold: Severity::Critical,
            fixable_only: true,
        }],
        ..Policy::default()
    };
    assert!(
        evaluate(&fs, "lab/x", policy.rule_for("lab/x"), &[], now)
            .health
            .healthy
    );
    assert!(
        !evaluate(&fs, "prod/x", policy.rule_for("prod/x"), &[], now)
            .health
            .healthy
    );
}

#[test]
fn exemptions_apply_until_they_expire() {
    let now = OffsetDateTime::now_utc();
    let rule = Policy::default().default;
    let mut f = finding("CVE-9", "openssl", Severity::Critical, Some("3.0.1"));
    f.aliases = vec!["GHSA-xxxx".to_string()].into();
    let fs = vec![f];
    let mut e = exemption(now);
    e.vulnerability = Some("ghsa-xxxx".into());
    e.expires_at = Some(now + Duration::hours(1));
    let ev = evaluate(&fs, "app", &rule, std::slice::from_ref(&e), now);
    assert!(ev.health.healthy);
    assert_eq!(ev.summary.exempt, 1);
    assert_eq!(ev.judged[0].exempted_by.as_deref(), Some("e1"));
    let later = now + Duration::hours(2);
    assert!(
        !evaluate(&fs, "app", &rule, std::slice::from_ref(&e), later)
            .health
            .healthy
    );
    // Criteria combine.
    e.expires_at = None;
    e.repository = Some("other/*".into());
    assert!(
        !evaluate(&fs, "app", &rule, std::slice::from_ref(&e), now)
            .health
            .healthy
    );
    let mut by_sev = exemption(now);
    by_sev.severity = Some(Severity::High);
    assert!(
        !evaluate(&fs, "app", &rule, &[by_sev.clone()], now)
            .health
            .healthy,
        "critical > high"
    );
    by_sev.severity = Some(Severity::Critical);
    assert!(evaluate(&fs, "app", &rule, &[by_sev], now).health.healthy);
}

#[test]
fn notifications_only_for_problems_and_never_twice() {
    let now = OffsetDateTime::now_utc();
    let rule = Policy::default().default;
    let healthy = vec![finding("CVE-1", "a", Severity::Low, Some("2"))];
    assert!(notify::decide(&evaluate(&healthy, "r", &rule, &[], now), &HashSet::new()).is_none());
    let bad = vec![finding("CVE-2", "b", Severity::High, Some("2"))];
    let d = notify::decide(&evaluate(&bad, "r", &rule, &[], now), &HashSet::new()).unwrap();
    assert_eq!(d.event, IMAGE_UNHEALTHY);
    let told: HashSet<String> = d.new_keys.into_iter().collect();
    assert!(notify::decide(&evaluate(&bad, "r", &rule, &[], now), &told).is_none());
    let mut worse = bad.clone();
    worse.push(finding("CVE-3", "c", Severity::Critical, Some("5")));
    worse.push(finding("CVE-4", "d", Severity::Medium, Some("5")));
    let d = notify::decide(&evaluate(&worse, "r", &rule, &[], now), &told).unwrap();
    assert_eq!(d.event, IMAGE_NEW_FINDINGS);
    assert_eq!(
        d.new_keys,
        vec![finding_key(&worse[1])],
        "below the threshold is not a problem"
    );
}

#[test]
fn signatures_and_backoff() {
    let sig = notify::sign("k", b"body");
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
    assert!(notify::verify("k", b"body", &sig));
    assert!(!notify::verify("k", b"bodx", &sig));
    let base = std::time::Duration::from_secs(2);
    assert_eq!(notify::backoff(base, 1), base);
    assert_eq!(notify::backoff(base, 3), base * 4);
    assert_eq!(
        notify::backoff(base, 40),
        std::time::Duration::from_secs(3600)
    );
}

#[test]
fn diffs_and_upgrade_plan() {
    let a = ["x".to_string(), "y".to_string()];
    let b = ["y".to_string(), "z".to_string()];
    let d = diff_keys(a.iter(), b.iter());
    assert_eq!(d.new, vec!["z"]);
    assert_eq!(d.resolved, vec!["x"]);

    let now = OffsetDateTime::now_utc();
    let rule = Policy::default().default;
    let fs = vec![
        finding("CVE-1", "libssl", Severity::High, Some("1.0-2")),
        finding("CVE-2", "libssl", Severity::Medium, Some("1.0-10")),
        finding("CVE-3", "zlib", Severity::Critical, Some("1.3")),
        finding("CVE-4", "bash", Severity::Low, None),
    ];
    let ev = evaluate(&fs, "r", &rule, &[], now);
    let (plan, cleared, without) = upgrade_plan(&ev.judged);
    assert_eq!(plan.len(), 2);
    assert_eq!(plan[0].package, "zlib", "most severe first");
    assert_eq!(
        plan[1].upgrade_to, "1.0-10",
        "highest fixed version clears both"
    );
    assert_eq!(plan[1].clears, vec!["CVE-1", "CVE-2"]);
    assert_eq!((cleared, without), (3, 1));
    assert_eq!(compare_versions("1.0-10", "1.0-2"), Ordering::Greater);
    assert_eq!(compare_versions("1:0.9", "2.0"), Ordering::Greater);
    assert_eq!(compare_versions("1.0~rc1", "1.0"), Ordering::Less);
}

#[test]
fn queue_dedups_persists_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assess.db");
    let d = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    {
        let s = Store::open(&path).unwrap();
        assert!(s.enqueue("r", d, "m", None, None, 1, true).unwrap());
        assert!(s.enqueue("r2", d, "m", None, None, 2, true).unwrap());
        assert_eq!(s.queue().unwrap().0.len(), 1, "one job per digest");
        assert_eq!(s.repos_of(d).unwrap(), vec!["r", "r2"]);
        let job = s.claim(3).unwrap().unwrap();
        assert_eq!(job.status, "cataloging");
        assert!(s.claim(3).unwrap().is_none());
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.requeue_interrupted().unwrap(), 1);
    let job = s.claim(4).unwrap().unwrap();
    s.set_status(&job.digest, "failed", Some("boom"), 5)
        .unwrap();
    assert_eq!(s.image(d).unwrap().unwrap().error.as_deref(), Some("boom"));
    assert!(
        s.enqueue("r", d, "m", None, None, 6, true).unwrap(),
        "a failed job is retried"
    );
    let job = s.claim(7).unwrap().unwrap();
    s.set_status(&job.digest, "done", None, 8).unwrap();
    assert!(
        !s.enqueue("r", d, "m", None, None, 9, true).unwrap(),
        "done stays done"
    );
    // Usage: once per digest.
    let t = OffsetDateTime::now_utc();
    assert!(s.count_usage(d, "r", t).unwrap());
    assert!(!s.count_usage(d, "r", t + Duration::days(40)).unwrap());
    let rows = s.usage("0000-01", "9999-12").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].images, 1);
}
