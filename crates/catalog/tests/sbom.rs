//! SBOM documents: structure, and validity against the CycloneDX 1.6 and
//! SPDX 2.3 schemas using the reference Python validators when installed
//! (`pip install 'cyclonedx-python-lib[json-validation]' spdx-tools`).

mod common;

use catalog::MemoryCache;
use catalog::sbom::{SbomMeta, Vulnerability, cyclonedx, spdx};
use common::*;
use inventory::Ecosystem;
use std::process::Command;

fn vulns() -> Vec<Vulnerability> {
    vec![Vulnerability {
        id: "PYSEC-2018-28".into(),
        aliases: vec!["CVE-2018-18074".into()],
        ecosystem: Ecosystem::PyPI,
        package: "requests".into(),
        installed_version: "2.19.1".into(),
        fixed_version: Some("2.20.0".into()),
        status: "fixed".into(),
        severity: "high".into(),
        cvss: Some(7.5),
        summary: Some("sends an HTTP Authorization header to an http URI".into()),
    }]
}

fn python_ok(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn cyclonedx_and_spdx_documents() {
    transport::require_test_images!(dir);
    let inv = catalog_tag("python-app", &MemoryCache::new());
    let mut meta = SbomMeta::new("oci:test:python-app");
    meta.digest =
        Some("sha256:0000000000000000000000000000000000000000000000000000000000000000".into());
    let cdx = cyclonedx(&inv, &vulns(), &meta);
    assert_eq!(cdx["specVersion"], "1.6");
    let comps = cdx["components"].as_array().unwrap();
    assert_eq!(comps.len(), inv.packages.len() + 1, "packages plus the OS");
    assert_eq!(comps[0]["type"], "operating-system");
    let v = &cdx["vulnerabilities"][0];
    assert_eq!(v["affects"][0]["ref"], "pkg:pypi/requests@2.19.1");
    assert_eq!(v["ratings"][0]["severity"], "high");
    let doc = spdx(&inv, &meta);
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    let pkgs = doc["packages"].as_array().unwrap();
    assert_eq!(
        pkgs.len(),
        inv.packages.len() + 2,
        "packages plus image and OS"
    );
    assert!(
        pkgs.iter()
            .any(|p| p["externalRefs"][0]["referenceLocator"] == "pkg:pypi/requests@2.19.1")
    );

    let dir = tempfile::tempdir().unwrap();
    let cdx_path = dir.path().join("bom.cdx.json");
    let spdx_path = dir.path().join("bom.spdx.json");
    std::fs::write(&cdx_path, serde_json::to_vec(&cdx).unwrap()).unwrap();
    std::fs::write(&spdx_path, serde_json::to_vec(&doc).unwrap()).unwrap();
    if python_ok("cyclonedx.validation.json") {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\ne = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nprint(e or '')\nsys.exit(1 if e else 0)",
            ])
            .arg(&cdx_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "CycloneDX schema: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the SBOM validators are required in CI (see .ci/run)"
        );
        eprintln!("cyclonedx-python-lib not installed: CycloneDX schema check skipped");
    }
    if python_ok("spdx_tools") {
        let out = Command::new("pyspdxtools")
            .arg("-i")
            .arg(&spdx_path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.trim().is_empty(),
            "SPDX validation: {text}"
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the SBOM validators are required in CI (see .ci/run)"
        );
        eprintln!("spdx-tools not installed: SPDX validation skipped");
    }
}
