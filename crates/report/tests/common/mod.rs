//! Shared test helpers: findings and packages as the matcher and the
//! catalog produce them, and the Python validators.
#![allow(dead_code)]

use inventory::{Ecosystem, Package};
use std::process::Command;
use std::sync::Arc;
use vulndb::{Cvss, Finding, FindingStatus, Severity};

pub fn package(eco: Ecosystem, name: &str, version: &str, purl: &str, location: &str) -> Package {
    Package {
        ecosystem: eco,
        name: name.into(),
        version: version.into(),
        source_name: None,
        source_version: None,
        purl: purl.into(),
        location: location.into(),
        layer: "sha256:aa".into(),
    }
}

/// A finding against `p`, rated by `vector` (`None`: no CVSS).
pub fn finding(
    p: &Package,
    id: &str,
    severity: Severity,
    vector: Option<(&str, &str, f64)>,
) -> Finding {
    Finding {
        id: id.into(),
        aliases: vec![format!("CVE-{}", id.len())].into(),
        related: Vec::new().into(),
        ecosystem: p.ecosystem,
        distro: None,
        package: p.name.as_str().into(),
        source_package: None,
        purl: p.purl.as_str().into(),
        installed_version: p.version.as_str().into(),
        fixed_version: Some("99.0".into()),
        status: FindingStatus::Fixed,
        status_note: None,
        severity,
        severity_source: "cvss:nvd".into(),
        cvss: vector.map(|(version, vector, score)| {
            Arc::new(Cvss {
                version: version.into(),
                vector: vector.into(),
                score,
                source: "nvd".into(),
            })
        }),
        summary: format!("{id} summary").into(),
        references: vec![format!("https://example.invalid/{id}")].into(),
        informational: None,
        data_source: "osv:test".into(),
    }
}

pub fn python_ok(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Skip (or, under CI, fail) when a Python validator is missing.
pub fn require_python(module: &str, install: &str) -> bool {
    if python_ok(module) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the report validators are required in CI (see .ci/run): {install}"
    );
    eprintln!("{module} not installed ({install}): schema check skipped");
    false
}
