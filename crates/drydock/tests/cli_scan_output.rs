//! End-to-end tests of what `drydock scan` writes and how it exits on the
//! real test images (`scripts/test-images.sh`): the SBOM and SARIF formats,
//! the severity gate's exit codes, precise messages for bad targets, a
//! registry target against the same image's OCI layout, and an image
//! reported incomplete with its reasons.

mod cli_scan_support;
mod cli_support;

use cli_scan_support::{full_db, pypi_db, scan_json};
use cli_support::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[test]
fn sbom_and_sarif_formats() {
    transport::require_test_images!(dir);
    let db = full_db();
    let target = oci_target("python-app");
    let r = scan_json(db, &target, &[]);
    let vulns = r["vulnerabilities"].as_array().unwrap();
    let ids: BTreeSet<&str> = vulns.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert!(!ids.is_empty());
    let purls: BTreeSet<&str> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["purl"].as_str().unwrap())
        .collect();

    let out_dir = tempfile::tempdir().unwrap();
    let read = |format: &str| -> Value {
        let file = out_dir.path().join(format);
        let stdout = run_ok(
            db,
            &[
                "scan",
                &target,
                "--format",
                format,
                "-o",
                file.to_str().unwrap(),
            ],
        );
        assert!(stdout.is_empty(), "-o writes nothing to stdout: {stdout}");
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
    };

    let cdx = read("cyclonedx");
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    assert_eq!(cdx["specVersion"], "1.6");
    let comp_purls: BTreeSet<&str> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert_eq!(comp_purls, purls);
    let cdx_ids: BTreeSet<&str> = cdx["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(cdx_ids, ids);

    let spdx = read("spdx");
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    assert_eq!(spdx["SPDXID"], "SPDXRef-DOCUMENT");
    let spdx_purls: BTreeSet<String> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["referenceType"] == "purl")
        .map(|e| e["referenceLocator"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        spdx_purls,
        purls.iter().map(|p| p.to_string()).collect::<BTreeSet<_>>()
    );

    let sarif = read("sarif");
    assert_eq!(sarif["version"], "2.1.0");
    let run0 = &sarif["runs"][0];
    assert_eq!(run0["tool"]["driver"]["name"], "drydock");
    let results = run0["results"].as_array().unwrap();
    assert_eq!(results.len(), vulns.len());
    let rule_ids: BTreeSet<&str> = run0["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(rule_ids, ids);
    let mut want_levels: BTreeMap<&str, usize> = BTreeMap::new();
    for v in vulns {
        let level = match v["severity"].as_str().unwrap() {
            "critical" | "high" => "error",
            "medium" => "warning",
            _ => "note",
        };
        *want_levels.entry(level).or_default() += 1;
    }
    let mut levels: BTreeMap<&str, usize> = BTreeMap::new();
    for res in results {
        *levels.entry(res["level"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(levels, want_levels);
}

#[test]
fn severity_gate_exit_codes() {
    transport::require_test_images!(dir);
    let target = oci_target("python-app");
    let code = |db: &Path, sev: &str| {
        let out = run(
            db,
            &["scan", &target, "--severity", sev, "--exit-code", "3"],
        );
        out.status
            .code()
            .unwrap_or_else(|| panic!("killed: {}", stderr(&out)))
    };

    // Debian + PyPI: the findings include critical or high ones.
    let full = full_db();
    let r = scan_json(full, &target, &[]);
    let severities: BTreeSet<String> = r["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["severity"].as_str().unwrap().to_string())
        .collect();
    assert!(
        severities.contains("critical") || severities.contains("high"),
        "{severities:?}"
    );
    assert_eq!(code(full, "critical,high"), 3);
    // Without --exit-code the gate does not fire.
    let out = run(full, &["scan", &target, "--severity", "critical,high"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // PyPI only: some levels have no finding. Each level alone gives 3
    // exactly when the report has a finding of that level.
    let pypi = pypi_db();
    let r = scan_json(pypi, &target, &[]);
    let present: BTreeSet<String> = r["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["severity"].as_str().unwrap().to_string())
        .collect();
    let levels = ["critical", "high", "medium", "low", "unknown"];
    assert!(levels.iter().any(|l| present.contains(*l)), "{present:?}");
    assert!(levels.iter().any(|l| !present.contains(*l)), "{present:?}");
    for l in levels {
        let want = if present.contains(l) { 3 } else { 0 };
        assert_eq!(code(pypi, l), want, "--severity {l} (present: {present:?})");
        // The filter also filters the report.
        let r = scan_json(pypi, &target, &["--severity", l]);
        assert!(
            r["vulnerabilities"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["severity"] == l)
        );
    }

    let out = run(pypi, &["scan", &target, "--severity", "severe"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"severe\""), "{}", stderr(&out));
}
#[test]
fn bad_targets_fail_with_a_precise_message() {
    transport::require_test_images!(dir);
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-such-layout");
    let layout = oci_dir();
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "nonsense:x".into(),
            vec!["\"nonsense:x\"".into(), "oci:DIR".into()],
        ),
        (
            format!("oci:{}:latest", missing.display()),
            vec![
                missing.display().to_string(),
                "not an OCI image layout".into(),
            ],
        ),
        (
            format!("oci:{}:no-such-tag", layout.display()),
            vec!["\"no-such-tag\"".into(), "bookworm-base".into()],
        ),
        (
            format!("docker-archive:{}", missing.join("x.tar").display()),
            vec![missing.join("x.tar").display().to_string()],
        ),
    ];
    for (target, needles) in cases {
        let out = run(data.path(), &["scan", &target, "--format", "json"]);
        assert!(!out.status.success(), "{target} succeeded");
        assert!(out.stdout.is_empty(), "{target}: no report on failure");
        let err = stderr(&out);
        assert!(err.starts_with("drydock: "), "{target}: {err}");
        for n in needles {
            assert!(err.contains(&n), "{target}: {n:?} not in {err}");
        }
    }
}

#[test]
fn registry_target_matches_the_oci_scan() {
    transport::require_test_images!(dir);
    if !present_or_skip(tool_present("skopeo"), "skopeo", "CI") {
        return;
    }
    let registry_data = tempfile::tempdir().unwrap();
    let server = Server::start(registry_data.path());
    let addr = server.addr();
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:python-app", oci_dir().display()),
        &format!("docker://{addr}/app:v1"),
    ]);
    let db = full_db();
    let from_oci = scan_json(db, &oci_target("python-app"), &[]);
    let target = format!("docker://{addr}/app:v1");
    let from_reg = scan_json(db, &target, &["--insecure", "--no-cache"]);
    assert_eq!(from_reg["target"], target.as_str());
    assert_eq!(package_set(&from_reg, None), package_set(&from_oci, None));
    let findings = |r: &Value| -> BTreeSet<(String, String, String)> {
        r["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["package"].as_str().unwrap().to_string(),
                    v["fixed_version"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect()
    };
    assert_eq!(findings(&from_reg), findings(&from_oci));

    // By digest too.
    let digest = from_reg["images"][0]["manifest"].as_str().unwrap();
    let by_digest = scan_json(
        db,
        &format!("docker://{addr}/app@{digest}"),
        &["--insecure"],
    );
    assert_eq!(package_set(&by_digest, None), package_set(&from_oci, None));

    // Unknown tag: an error naming it, no panic.
    let out = run(
        db,
        &["scan", &format!("docker://{addr}/app:nope"), "--insecure"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    drop(server);
}
/// Write an OCI layout of one image with uncompressed tar `layers`.
fn write_layout(dir: &Path, layers: &[Vec<u8>]) {
    use oci::Digest;
    let blob = |data: &[u8]| -> (String, usize) {
        let d = Digest::sha256_of(data);
        let path = dir.join("blobs/sha256").join(d.hex());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
        (d.to_string(), data.len())
    };
    let descs: Vec<Value> = layers
        .iter()
        .map(|l| {
            let (d, size) = blob(l);
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size})
        })
        .collect();
    let (config, config_size) = blob(br#"{"os":"linux","architecture":"amd64"}"#);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": descs,
    }))
    .unwrap();
    let (m, m_size) = blob(&manifest);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m,
            "size": m_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// An image with a hostile entry (`..` out of the root, with control
/// characters) beside a dpkg database: the packages are listed, the image
/// is reported incomplete in the table, the JSON and on standard error
/// (escaped), and the exit code is what it would be otherwise.
#[test]
fn incomplete_image_is_reported_with_its_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let status = b"Package: aaa\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(status.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "var/lib/dpkg/status", &status[..])
        .unwrap();
    let name = b"../../etc/\x1b[2Jpasswd";
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(4);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, &b"root"[..]).unwrap();
    let layout = tmp.path().join("oci");
    write_layout(&layout, &[b.into_inner().unwrap()]);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let target = format!("oci:{}:latest", layout.display());

    let out = run(&data, &["scan", &target, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = &report["images"][0];
    assert_eq!(image["complete"], false);
    let reason = image["incomplete_reasons"][0].as_str().unwrap();
    assert!(reason.contains("../../etc/\\x1b[2Jpasswd"), "{reason}");
    assert_eq!(report["packages"][0]["name"], "aaa");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("INCOMPLETE: {target}: ../../etc/\\x1b[2Jpasswd")),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "no terminal escape reaches stderr");

    let out = run(&data, &["scan", &target]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("INCOMPLETE: 1 part of the image could not be read")
            && table.contains("../../etc/\\x1b[2Jpasswd"),
        "{table}"
    );
}
