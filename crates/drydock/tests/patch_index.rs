//! Patching an index (issue 15): each platform image is patched under one
//! new index; a platform the archive lacks is skipped with the reason while
//! the others are patched.

#[path = "../../patch/tests/support/mod.rs"]
mod archive_support;
mod cli_support;
mod patch_support;

use cli_support::*;
use patch_support::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

/// `old_image`'s image twice in one index, as `linux/amd64` and
/// `linux/amd64/v3` (a second config naming the variant, so a second
/// manifest): the test archive holds amd64 packages only, so both
/// platforms are amd64 ones.
fn old_index(out: &Path) {
    old_index_as(out, "amd64", Some("v3"));
}

/// `old_image`'s image twice in one index: as `linux/amd64`, and as the
/// platform `arch`/`variant` (its config saying so; the files stay amd64's).
fn old_index_as(out: &Path, arch: &str, variant: Option<&str>) {
    old_image(out);
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let m1_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m1 = std::fs::read(blob(out, &m1_digest)).unwrap();
    let mut m2: Value = serde_json::from_slice(&m1).unwrap();
    let mut c2: Value = serde_json::from_slice(
        &std::fs::read(blob(out, m2["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    c2["architecture"] = json!(arch);
    if let Some(v) = variant {
        c2["variant"] = json!(v);
    }
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(blob(out, &d), b).unwrap();
        d
    };
    let c2 = serde_json::to_vec(&c2).unwrap();
    m2["config"]["digest"] = json!(put(&c2));
    m2["config"]["size"] = json!(c2.len());
    let m2 = serde_json::to_vec(&m2).unwrap();
    let m2_digest = put(&m2);
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let mut second = json!({"os": "linux", "architecture": arch});
    if let Some(v) = variant {
        second["variant"] = json!(v);
    }
    let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"mediaType": mt, "digest": m1_digest, "size": m1.len(),
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": mt, "digest": m2_digest, "size": m2.len(), "platform": second},
    ]});
    let idx = serde_json::to_vec(&idx).unwrap();
    let idx_digest = put(&idx);
    let top = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx_digest, "size": idx.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(out.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
}

/// Copy the index at `layout`'s `v1` in as `team/multi:v1`; its digest,
/// body and platform images' digests.
fn copy_index_in(server: &Server, layout: &Path) -> (String, Value, Vec<String>) {
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/multi:v1", server.addr()),
    ]);
    let (original, index) = manifest_with_digest(server.port, "team/multi", "v1").unwrap();
    let children = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    (original, index, children)
}

#[test]
fn an_index_is_patched_per_platform_under_one_new_index() {
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
    old_index(&layout);
    import(&data, &[vulndata("")]);
    let cfg = patch_config(work.path(), &archive_root, &srv.url, "");
    let log = work.path().join("server.log");
    let server = Server::start_logged(&data, &["--config", &cfg], &[], &log);
    let url = format!("http://{}", server.addr());
    let (original, index, children) = copy_index_in(&server, &layout);
    assert_eq!(children.len(), 2, "{index}");
    assert_ne!(children[0], children[1]);
    let before: Vec<Value> = children.iter().map(|d| assessed(server.port, d)).collect();

    let (ok, out) = patch_cli(&data, &url, &["team/multi:v1", "--json"]);
    assert!(ok, "{out}");
    let job: Value = serde_json::from_str(&out).unwrap();
    let r = &job["result"];
    assert_eq!(r["patched_tag"], "v1-1", "{job:#}");
    let platforms = r["platforms"].as_array().unwrap();
    assert_eq!(
        platforms
            .iter()
            .map(|p| p["platform"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["linux/amd64", "linux/amd64/v3"]
    );
    let new_index = manifest_json(server.port, "team/multi", "v1-1");
    assert_eq!(
        new_index["annotations"]["org.drydock.patch.original"],
        original.as_str()
    );
    let new_children = new_index["manifests"].as_array().unwrap();
    assert_eq!(new_children.len(), 2);
    for (i, p) in platforms.iter().enumerate() {
        let pd = p["patched_digest"].as_str().expect("each platform patched");
        assert_eq!(p["digest"], children[i].as_str());
        assert_eq!(new_children[i]["digest"], pd);
        assert_ne!(pd, children[i]);
        assert_eq!(
            new_children[i]["platform"],
            index["manifests"][i]["platform"]
        );
        let upgraded: BTreeSet<&str> = p["plan"]["upgrades"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["package"].as_str().unwrap())
            .collect();
        assert_eq!(
            upgraded,
            BTreeSet::from([
                "libgnutls30",
                "libp11-kit0",
                "libsystemd0",
                "libtasn1-6",
                "libudev1"
            ])
        );
        let m = manifest_json(server.port, "team/multi", pd);
        assert_eq!(m["layers"].as_array().unwrap().len(), 3, "{m}");
        // Each patched platform image is assessed on its own: what its
        // plan cleared is gone there.
        let after = assessed(server.port, pd);
        let cleared: BTreeSet<String> = p["plan"]["upgrades"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|u| u["clears"].as_array().unwrap().iter())
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert!(!cleared.is_empty());
        for (pkg, id) in finding_ids(&after) {
            assert!(
                !(upgraded.contains(pkg.as_str()) && cleared.contains(&id)),
                "{pkg} {id} still found"
            );
        }
        assert!(finding_ids(&after).len() < finding_ids(&before[i]).len());
    }
    assert_eq!(
        manifest_with_digest(server.port, "team/multi", "v1")
            .unwrap()
            .0,
        original,
        "original untouched"
    );
    drop(rt);
}

#[test]
fn an_index_platform_the_archive_lacks_is_skipped_and_the_others_patched() {
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
    // The test archive holds amd64 packages only.
    old_index_as(&layout, "arm64", None);
    import(&data, &[vulndata("")]);
    let cfg = patch_config(work.path(), &archive_root, &srv.url, "");
    let log = work.path().join("server.log");
    let server = Server::start_logged(&data, &["--config", &cfg], &[], &log);
    let url = format!("http://{}", server.addr());
    let (original, index, children) = copy_index_in(&server, &layout);
    assert_eq!(children.len(), 2, "{index}");
    for d in &children {
        assessed(server.port, d);
    }
    let why = "has no packages for architecture arm64: its signed Release lists no \
               main/binary-arm64/Packages";

    // The plan names the skipped platform and why.
    let (ok, text) = patch_cli(&data, &url, &["team/multi:v1", "--dry-run"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("skipped: the archive {}", srv.url)),
        "{text}"
    );
    assert!(text.contains(why), "{text}");
    assert!(text.contains("upgrade libtasn1-6 4.19.0-2 -> "), "{text}");

    // The patch: amd64 patched, arm64 left as it is, one new index.
    let (ok, out) = patch_cli(&data, &url, &["team/multi:v1", "--json"]);
    assert!(ok, "{out}");
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["state"], "done", "{job:#}");
    let r = &job["result"];
    assert_eq!(r["patched_tag"], "v1-1", "{job:#}");
    let platforms = r["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2, "{job:#}");
    let (amd, arm) = (&platforms[0], &platforms[1]);
    assert_eq!(amd["platform"], "linux/amd64");
    assert!(amd["plan"]["skipped"].is_null(), "{amd:#}");
    assert_eq!(
        amd["plan"]["upgrades"].as_array().unwrap().len(),
        5,
        "{amd:#}"
    );
    let amd_patched = amd["patched_digest"].as_str().unwrap();
    // The plan saw every fixable finding, not only the first page of the
    // image's view: each package with one is upgraded (clearing each it
    // can) or refused.
    let (code, page) = api(
        "GET",
        &format!(
            "{url}/api/v1/images/{}/findings?fixable=true&limit=1000",
            children[0]
        ),
        None,
        None,
    );
    assert_eq!(code, 200, "{page}");
    let fixable: Vec<&Value> = page["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ecosystem"] == "deb" && f["exempt"] == false)
        .collect();
    assert!(page["next_cursor"].is_null());
    assert!(
        page["total"].as_u64().unwrap() > 0 && !fixable.is_empty(),
        "{page}"
    );
    let plan = &amd["plan"];
    for f in &fixable {
        let (pkg, id) = (f["package"].as_str().unwrap(), f["id"].as_str().unwrap());
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
        match up {
            Some(u) => assert!(
                u["clears"].as_array().unwrap().iter().any(|c| c == id),
                "{pkg} {id} not in {u}"
            ),
            None => assert!(
                refused,
                "{pkg} {id}: neither upgraded nor refused: {plan:#}"
            ),
        }
    }
    assert_eq!(arm["platform"], "linux/arm64");
    assert_eq!(arm["digest"], children[1].as_str());
    assert!(
        arm["plan"]["skipped"].as_str().unwrap().contains(why),
        "{arm:#}"
    );
    assert!(arm["plan"]["upgrades"].as_array().unwrap().is_empty());
    assert!(arm["patched_digest"].is_null(), "{arm:#}");
    let new_index = manifest_json(server.port, "team/multi", "v1-1");
    let new_children = new_index["manifests"].as_array().unwrap();
    assert_eq!(new_children[0]["digest"], amd_patched);
    assert_ne!(amd_patched, children[0]);
    assert_eq!(new_children[1]["digest"], children[1].as_str());
    assert_eq!(new_children[1]["platform"]["architecture"], "arm64");
    assert_eq!(
        manifest_with_digest(server.port, "team/multi", "v1")
            .unwrap()
            .0,
        original
    );
    drop(rt);
}
