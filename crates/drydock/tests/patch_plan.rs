//! The patch plan (issue 15) covers every fixable finding of an image, not
//! only the first page the assessor's image view holds.

#[path = "../../patch/tests/support/mod.rs"]
mod archive_support;
mod cli_support;
mod patch_support;

use cli_support::*;
use patch_support::*;
use serde_json::Value;
use std::collections::BTreeSet;

/// Whether dpkg orders version `a` before `b`.
fn dpkg_older(a: &str, b: &str) -> bool {
    std::process::Command::new("dpkg")
        .args(["--compare-versions", a, "lt", b])
        .status()
        .unwrap()
        .success()
}

#[test]
fn the_plan_covers_every_fixable_finding_not_only_the_first_page() {
    transport::require_test_images!();
    if !present_or_skip(tool_present("skopeo"), "skopeo", "CI") {
        return;
    }
    let Some(arch_dir) = archive_support::archive() else {
        return;
    };
    let archive_root = arch_dir.path().join("archive");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(archive_support::serve(archive_root.clone()));
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let layout = work.path().join("layout");
    // Every package the archive holds recorded as very old: far more
    // findings than one page of the image's view (100), worst first, so
    // fixable ones of lower severity come after it.
    let packages =
        std::fs::read_to_string(archive_root.join("dists/bookworm/main/binary-amd64/Packages"))
            .unwrap();
    let older: Vec<(String, String)> = packages
        .split("\n\n")
        .filter_map(|st| st.lines().find_map(|l| l.strip_prefix("Package: ")))
        .map(|p| (p.to_string(), "0.1-1".to_string()))
        .collect();
    assert!(older.len() >= 20, "{older:?}");
    old_image_with(&layout, &older);
    import(&data, &[vulndata("")]);
    let cfg = patch_config(work.path(), &archive_root, &srv.url, "");
    let log = work.path().join("server.log");
    let server = Server::start_logged(&data, &["--config", &cfg], &[], &log);
    let url = format!("http://{}", server.addr());
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:v1", server.addr()),
    ]);
    let digest = manifest_digest(server.port, "team/app", "v1").unwrap();
    let view = assessed(server.port, &digest);
    let (code, page) = api(
        "GET",
        &format!("{url}/api/v1/images/{digest}/findings?fixable=true&limit=1000"),
        None,
        None,
    );
    assert_eq!(code, 200, "{page}");
    assert!(page["next_cursor"].is_null());
    let fixable: Vec<&Value> = page["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ecosystem"] == "deb" && f["exempt"] == false)
        .collect();
    let first_page: BTreeSet<(String, String)> = finding_ids(&view);
    let beyond = fixable
        .iter()
        .filter(|f| {
            !first_page.contains(&(
                f["package"].as_str().unwrap().to_string(),
                f["id"].as_str().unwrap().to_string(),
            ))
        })
        .count();
    assert!(
        beyond > 0,
        "every fixable finding is on the first page: the test shows nothing"
    );

    let (ok, out) = patch_cli(&data, &url, &["team/app:v1", "--dry-run", "--json"]);
    assert!(ok, "{out}");
    let job: Value = serde_json::from_str(&out).unwrap();
    let plan = &job["result"]["platforms"][0]["plan"];
    let mut missed = Vec::new();
    for f in &fixable {
        let (pkg, id) = (f["package"].as_str().unwrap(), f["id"].as_str().unwrap());
        let fixed = f["fixed_version"].as_str().unwrap();
        let up = plan["upgrades"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["package"] == pkg);
        let refused = plan["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["package"] == pkg);
        let covered = match up {
            Some(u) => {
                u["clears"].as_array().unwrap().iter().any(|c| c == id)
                    || dpkg_older(u["to"].as_str().unwrap(), fixed)
            }
            None => refused,
        };
        if !covered {
            missed.push(format!("{pkg} {id} (fixed in {fixed})"));
        }
    }
    assert!(
        missed.is_empty(),
        "{} of {} fixable findings left out of the plan: {missed:?}",
        missed.len(),
        fixable.len()
    );
    assert!(
        plan["upgrades"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["package"] == "mount"),
        "{plan:#}"
    );
    drop(rt);
}
