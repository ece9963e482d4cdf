//! SBOM documents: structure, and validity against the CycloneDX 1.6 and
//! SPDX 2.3 schemas using the reference Python validators
//! (`pip install 'cyclonedx-python-lib[json-validation]' spdx-tools`).

mod common;

use catalog::{Limits, MemoryCache};
use common::*;
use inventory::{Ecosystem, Inventory};
use oci::layout::OciLayout;
use report::SbomMeta;
use std::path::Path;
use std::process::Command;
use vulndb::Severity;

fn python_app() -> Option<Inventory> {
    let dir = transport::testing::test_images_dir()?;
    let layout = OciLayout::open(dir.join("oci")).expect("test image layout");
    let desc = layout.resolve(Some("python-app")).expect("tag");
    let oci::Manifest::Image { manifest, .. } = layout.manifest(&desc).expect("manifest") else {
        panic!("python-app is an index");
    };
    let image = catalog::catalog_image(&layout, &manifest, &MemoryCache::new(), &Limits::default())
        .expect("catalog");
    assert!(image.is_complete(), "{:?}", image.incomplete);
    Some(image.inventory)
}

fn validate_cyclonedx(path: &Path) {
    if !require_python(
        "cyclonedx.validation.json",
        "cyclonedx-python-lib[json-validation]",
    ) {
        return;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\ne = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nprint(e or '')\nsys.exit(1 if e else 0)",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "CycloneDX schema: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cyclonedx_and_spdx_documents() {
    transport::require_test_images!(dir);
    let inv = python_app().unwrap();
    let requests = inv
        .packages
        .iter()
        .find(|p| p.purl == "pkg:pypi/requests@2.19.1")
        .expect("requests in python-app")
        .clone();
    let findings = vec![finding(
        &requests,
        "PYSEC-2018-28",
        Severity::High,
        Some(("3.1", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5)),
    )];
    let mut meta = SbomMeta::new("oci:test:python-app");
    meta.digest =
        Some("sha256:0000000000000000000000000000000000000000000000000000000000000000".into());
    let cdx = serde_json::to_value(report::cyclonedx::bom(&inv, &findings, &meta)).unwrap();
    assert_eq!(cdx["specVersion"], "1.6");
    let comps = cdx["components"].as_array().unwrap();
    assert_eq!(comps.len(), inv.packages.len() + 1, "packages plus the OS");
    assert_eq!(comps[0]["type"], "operating-system");
    let v = &cdx["vulnerabilities"][0];
    assert_eq!(v["affects"][0]["ref"], "pkg:pypi/requests@2.19.1");
    assert_eq!(v["ratings"][0]["severity"], "high");
    assert_eq!(v["ratings"][0]["method"], "CVSSv31");
    let doc = serde_json::to_value(report::spdx::document(&inv, &meta)).unwrap();
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
    validate_cyclonedx(&cdx_path);
    if require_python("spdx_tools", "spdx-tools") {
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
    }
}

/// Each CVSS score is labelled by its vector's version. Before: every
/// rating said `CVSSv31`, a v4.0 and a v2 score included.
#[test]
fn cvss_ratings_name_their_version() {
    let p = package(
        Ecosystem::Npm,
        "lodash",
        "4.17.4",
        "pkg:npm/lodash@4.17.4",
        "/app/package-lock.json",
    );
    let rated = [
        (
            "ID-V2",
            ("2.0", "AV:N/AC:L/Au:N/C:P/I:P/A:P", 7.5),
            "CVSSv2",
        ),
        (
            "ID-V30",
            ("3.0", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            "CVSSv3",
        ),
        (
            "ID-V31",
            ("3.1", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5),
            "CVSSv31",
        ),
        (
            "ID-V40",
            (
                "4.0",
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                9.3,
            ),
            "CVSSv4",
        ),
    ];
    let mut findings: Vec<_> = rated
        .iter()
        .map(|(id, cvss, _)| finding(&p, id, Severity::Critical, Some(*cvss)))
        .collect();
    findings.push(finding(&p, "ID-NONE", Severity::Low, None));
    let inv = Inventory {
        distro: None,
        packages: vec![p],
    };
    let bom = serde_json::to_value(report::cyclonedx::bom(
        &inv,
        &findings,
        &SbomMeta::new("dir:x"),
    ))
    .unwrap();
    let vulns = bom["vulnerabilities"].as_array().unwrap();
    for (id, (_, vector, score), method) in rated {
        let v = vulns.iter().find(|v| v["id"] == id).unwrap();
        assert_eq!(v["ratings"][0]["method"], method, "{id}");
        assert_eq!(v["ratings"][0]["vector"], vector, "{id}");
        assert_eq!(v["ratings"][0]["score"], score, "{id}");
    }
    let none = vulns.iter().find(|v| v["id"] == "ID-NONE").unwrap();
    assert!(none["ratings"][0].get("method").is_none(), "{none}");
    assert_eq!(none["ratings"][0]["severity"], "low");
    assert_eq!(
        vulns[0]["affects"],
        serde_json::json!([{"ref": "pkg:npm/lodash@4.17.4"}])
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bom.json");
    std::fs::write(&path, serde_json::to_vec(&bom).unwrap()).unwrap();
    validate_cyclonedx(&path);
}
