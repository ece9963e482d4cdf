//! The CVSS calculator against the base scores stated in the NVD and CVE 5
//! records of tests/fixtures/vulndata.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Slices of real vulnerability data kept in the repository
/// (`tests/fixtures/vulndata/README.md` says which records and from where).
fn vulndata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vulndata")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

/// (vector, stated score) pairs found anywhere under `v` in objects that
/// carry both `vectorString` and `baseScore`.
fn collect(v: &Value, out: &mut Vec<(String, f64)>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(vec)), Some(score)) = (
                m.get("vectorString"),
                m.get("baseScore").and_then(Value::as_f64),
            ) {
                out.push((vec.clone(), score));
            }
            m.values().for_each(|x| collect(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        _ => {}
    }
}

fn check(pairs: &[(String, f64)]) -> ([usize; 3], Vec<String>) {
    let mut checked = [0usize; 3]; // 3.0, 3.1, 4.0
    let mut mismatches = Vec::new();
    for (vector, stated) in pairs {
        let slot = match vulndb::cvss::vector_version(vector) {
            Some("3.0") => 0,
            Some("3.1") => 1,
            Some("4.0") => 2,
            _ => continue, // v2 is not used for ratings
        };
        checked[slot] += 1;
        match vulndb::cvss::base_score(vector) {
            Some(s) if (s - stated).abs() < 0.05 => {}
            other => mismatches.push(format!("{vector}: stated {stated}, computed {other:?}")),
        }
    }
    (checked, mismatches)
}

/// Scores computed by NVD (1.1 feed, API 2.0) and by CISA's ADP container
/// must all be reproduced exactly.
#[test]
fn computed_scores_equal_nvd_and_adp_scores() {
    let mut files = Vec::new();
    walk(&vulndata().join("nvd"), &mut files);
    let mut pairs = Vec::new();
    for f in &files {
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        if let Some(adp) = v.pointer("/containers/adp") {
            collect(adp, &mut pairs);
        } else if v.get("cveMetadata").is_none() {
            collect(&v, &mut pairs);
        }
    }
    let (checked, mismatches) = check(&pairs);
    assert!(checked[1] > 150, "{checked:?}");
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// CNA containers are typed in by the CNAs; a few state a score that does
/// not belong to the vector (10 scope-changed vectors off by 0.1, one
/// temporal score given as base). At least 98% must agree, every CVSS 4.0
/// score among them, and each disagreement must be one of those two kinds.
#[test]
fn computed_scores_agree_with_cna_scores() {
    let mut files = Vec::new();
    walk(&vulndata().join("nvd/cve5-vulnrichment"), &mut files);
    let mut pairs = Vec::new();
    for f in &files {
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        if let Some(cna) = v.pointer("/containers/cna/metrics") {
            collect(cna, &mut pairs);
        }
    }
    let (checked, mismatches) = check(&pairs);
    let total: usize = checked.iter().sum();
    assert!(checked[2] >= 20, "{checked:?}");
    assert!(
        !mismatches.iter().any(|m| m.starts_with("CVSS:4.0")),
        "{mismatches:?}"
    );
    assert!(
        mismatches.len() * 50 <= total,
        "{} of {total}: {mismatches:#?}",
        mismatches.len()
    );
    for m in &mismatches {
        assert!(m.contains("/S:C/") || m.contains("/E:"), "{m}");
    }
}
