//! The scan report's renderings: the JSON fields the docs promise, the
//! terminal table, incomplete images, and SARIF valid against the SARIF
//! 2.1.0 schema (Python `jsonschema`, with the schema file that ships in
//! the `serde-sarif` crate this crate builds its types from).

mod common;

use common::*;
use inventory::{Ecosystem, Inventory};
use report::{DatabaseInfo, ImageScan, ScanReport};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use vulndb::Severity;

fn image() -> ImageScan {
    let pkg = package(
        Ecosystem::PyPI,
        "requests",
        "2.19.1",
        "pkg:pypi/requests@2.19.1",
        "/usr/lib/python3/site-packages/requests-2.19.1.dist-info/METADATA",
    );
    let f = finding(
        &pkg,
        "PYSEC-2018-28",
        Severity::High,
        Some(("3.1", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5)),
    );
    ImageScan {
        platform: None,
        manifest: "sha256:bb".into(),
        inventory: Inventory {
            distro: None,
            packages: vec![pkg],
        },
        incomplete: Vec::new(),
        findings: vec![f],
    }
}

fn report(images: Vec<ImageScan>, db: bool) -> ScanReport {
    ScanReport {
        target: "oci:x".into(),
        database: db.then(|| DatabaseInfo {
            version: "1".into(),
            built_at: "2026-01-01T00:00:00Z".into(),
        }),
        images,
    }
}

#[test]
fn json_report_has_the_documented_fields() {
    let r = serde_json::to_value(report(vec![image()], true).json()).unwrap();
    let p = &r["packages"][0];
    for k in ["ecosystem", "name", "version", "purl", "location", "layer"] {
        assert!(p.get(k).is_some(), "packages[].{k}: {p}");
    }
    let v = &r["vulnerabilities"][0];
    for k in [
        "id",
        "aliases",
        "ecosystem",
        "package",
        "purl",
        "installed_version",
        "fixed_version",
        "status",
        "severity",
        "cvss",
        "summary",
        "references",
    ] {
        assert!(v.get(k).is_some(), "vulnerabilities[].{k}: {v}");
    }
    assert_eq!(v["severity"], "high");
    assert_eq!(v["cvss"]["score"], 7.5);
    assert_eq!(v["cvss"]["version"], "3.1");
    assert_eq!(r["database"]["version"], "1");
    assert!(p.get("platform").is_none(), "single image: no platform");

    // Several platforms: each package and finding says which.
    let mut arm = image();
    arm.platform = Some("linux/arm64/v8".into());
    let mut amd = image();
    amd.platform = Some("linux/amd64".into());
    let r = serde_json::to_value(report(vec![amd, arm], false).json()).unwrap();
    assert_eq!(r["database"], Value::Null);
    assert_eq!(r["packages"][1]["platform"], "linux/arm64/v8");
    assert_eq!(r["vulnerabilities"][0]["platform"], "linux/amd64");
    assert_eq!(r["images"][1]["platform"], "linux/arm64/v8");
}

#[test]
fn table_lists_findings_or_packages() {
    let t = report(vec![image()], true).table();
    assert!(
        t.contains("PYSEC-2018-28") && t.contains("HIGH") && t.contains("99.0"),
        "{t}"
    );
    let header = t.lines().find(|l| l.starts_with("PACKAGE")).unwrap();
    let row = t.lines().find(|l| l.starts_with("requests")).unwrap();
    assert_eq!(
        header.find("VULNERABILITY"),
        row.find("PYSEC-2018-28"),
        "columns align:\n{t}"
    );
    assert!(
        t.contains("Total: 1 vulnerabilities in 1 packages (critical: 0, high: 1"),
        "{t}"
    );
    assert!(!t.contains("INCOMPLETE"), "{t}");
    let t = report(vec![image()], false).table();
    assert!(
        t.lines().any(|l| l.starts_with("ECOSYSTEM  PACKAGE")),
        "{t}"
    );
    assert!(!t.contains("PYSEC"), "{t}");
}

#[test]
fn incomplete_images_say_so_in_the_table_and_json() {
    let mut s = image();
    s.incomplete = vec![
        "/var/lib/dpkg/status: 40000000 bytes, over the limit of 33554432 bytes (max_file_bytes); not read (layer sha256:0123456789ab)".into(),
    ];
    let r = report(vec![s], true);
    let t = r.table();
    assert!(
        t.contains("INCOMPLETE: 1 part of the image could not be read")
            && t.contains("  - /var/lib/dpkg/status: 40000000 bytes"),
        "{t}"
    );
    let j = serde_json::to_value(r.json()).unwrap();
    assert_eq!(j["images"][0]["complete"], false);
    assert!(
        j["images"][0]["incomplete_reasons"][0]
            .as_str()
            .unwrap()
            .contains("max_file_bytes")
    );
    let j = serde_json::to_value(report(vec![image()], true).json()).unwrap();
    assert_eq!(j["images"][0]["complete"], true);
    assert_eq!(j["images"][0]["incomplete_reasons"], json!([]));
}

/// The SARIF 2.1.0 schema as shipped inside the `serde-sarif` package the
/// build resolved (its types are generated from it).
fn sarif_schema() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "serde-sarif")
        .expect("serde-sarif in the dependency graph")["manifest_path"]
        .as_str()
        .unwrap()
        .to_string();
    let schema = PathBuf::from(manifest).with_file_name("src/schema.json");
    let text = std::fs::read_to_string(&schema).unwrap();
    assert!(
        text.contains("SARIF) Version 2.1.0 JSON Schema"),
        "{}",
        schema.display()
    );
    schema
}

#[test]
fn sarif_is_valid_against_the_2_1_0_schema() {
    let mut second = image();
    second.platform = Some("linux/arm64".into());
    second.findings[0].cvss = None;
    second.findings[0].references = Vec::new().into();
    second.findings[0].severity = Severity::Medium;
    let mut empty = image();
    empty.findings.clear();
    let r = report(vec![image(), second, empty], true);
    let log = serde_json::to_value(r.sarif()).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "drydock");
    assert_eq!(run["results"][0]["level"], "error");
    assert_eq!(run["results"][1]["level"], "warning");
    assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), 1);
    assert_eq!(
        run["tool"]["driver"]["rules"][0]["properties"]["security-severity"],
        "7.5"
    );
    assert_eq!(
        run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "usr/lib/python3/site-packages/requests-2.19.1.dist-info/METADATA"
    );
    assert!(
        run["results"][1]["message"]["text"]
            .as_str()
            .unwrap()
            .ends_with("[linux/arm64]")
    );

    if !require_python("jsonschema", "jsonschema") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan.sarif");
    std::fs::write(&path, serde_json::to_vec(&log).unwrap()).unwrap();
    let check = |doc: &std::path::Path| {
        Command::new("python3")
            .args([
                "-c",
                "import json, sys, jsonschema\nschema = json.load(open(sys.argv[1]))\ncls = jsonschema.validators.validator_for(schema)\ncls.check_schema(schema)\nerrors = [f'{list(e.absolute_path)}: {e.message}' for e in cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(json.load(open(sys.argv[2])))]\nprint('\\n'.join(errors))\nsys.exit(1 if errors else 0)",
            ])
            .arg(sarif_schema())
            .arg(doc)
            .output()
            .unwrap()
    };
    let out = check(&path);
    assert!(
        out.status.success(),
        "SARIF schema: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator does reject: a result without its message.
    let mut bad = log.clone();
    bad["runs"][0]["results"][0]
        .as_object_mut()
        .unwrap()
        .remove("message");
    std::fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
    let out = check(&path);
    assert!(!out.status.success(), "an invalid log passed the check");
    assert!(String::from_utf8_lossy(&out.stdout).contains("message"));
}
