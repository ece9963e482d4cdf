//! Continuous patching (issue 15): a newly fixable finding (the database
//! changed) or a fix new in the archive (its signed `Packages` changed)
//! gives exactly one new patch, announced by webhook; unchanged polls give
//! none; a floating tag moves to the newest patch.

#[path = "../../patch/tests/support/mod.rs"]
mod archive_support;
mod cli_support;
mod patch_support;

use cli_support::*;
use patch_support::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// What a loopback webhook receiver got: (event header, JSON body).
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

fn webhook_receiver() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Default::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let (head, body) = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..p]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = buf[p + 4..].to_vec();
                    while body.len() < len {
                        let n = s.read(&mut chunk).unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..n]);
                    }
                    break (head, body);
                }
            };
            let event = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("x-drydock-event")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            if let Ok(v) = serde_json::from_slice(&body) {
                g.lock().unwrap().push((event, v));
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// A copy of the fixture's Debian OSV records in `dir/osv/Debian/all.zip`,
/// without those on `drop_package` when given.
fn debian_records(dir: &Path, drop_package: Option<&str>) -> std::path::PathBuf {
    let src = vulndata("osv/Debian/all.zip");
    let out = dir.join("osv/Debian");
    std::fs::create_dir_all(&out).unwrap();
    let mut w = zip::ZipWriter::new(std::fs::File::create(out.join("all.zip")).unwrap());
    let mut kept = 0;
    for r in osv_records(&src) {
        let on_dropped = drop_package.is_some_and(|p| {
            r["affected"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["package"]["name"] == p)
        });
        if on_dropped {
            continue;
        }
        w.start_file(
            format!("{}.json", r["id"].as_str().unwrap()),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        w.write_all(r.to_string().as_bytes()).unwrap();
        kept += 1;
    }
    w.finish().unwrap();
    assert!(kept > 100);
    dir.to_path_buf()
}

/// How many continuous evaluations the server logged.
fn evaluations(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("continuous patching evaluated")
        .count()
}

/// Wait until `f` holds; on a timeout, fail showing the server's `log`.
fn wait_for(what: &str, timeout: Duration, log: &Path, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}; server log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn continuous_mode_patches_once_per_newly_fixable_finding_and_announces_it() {
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
    old_image(&layout);
    // Database A knows nothing of libtasn1-6; B (the whole slice) adds
    // its fixable CVE-2024-12133 / DSA-5863-1.
    let db_a = debian_records(&work.path().join("db-a"), Some("libtasn1-6"));
    let db_b = debian_records(&work.path().join("db-b"), None);
    let (hook, got) = webhook_receiver();
    let cfg = patch_config(
        work.path(),
        &archive_root,
        &srv.url,
        &format!(
            r#"
[[assess.webhooks]]
url = "{hook}"
secret = "a-webhook-secret-of-length"

[patch]
enabled = true
repositories = [{{ name = "team/*", tags = ["v*"] }}]
interval_seconds = 1
"#
        ),
    );
    let log = work.path().join("server.log");
    let env = [("RUST_LOG", "warn,patch=info")];
    let server = Server::start_logged(&data, &["--config", &cfg], &env, &log);
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:v1", server.addr()),
    ]);
    // Not watched: another tag pattern.
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:latest", server.addr()),
    ]);
    let original = manifest_digest(server.port, "team/app", "v1").unwrap();
    let patched = |port: u16, t: &str| manifest_digest(port, "team/app", t);

    // Database A: a patch clearing gnutls/systemd findings, not libtasn1-6's.
    import(&data, std::slice::from_ref(&db_a));
    wait_for("v1-1", Duration::from_secs(240), &log, || {
        patched(server.port, "v1-1").is_some()
    });
    let m1 = manifest_json(server.port, "team/app", "v1-1");
    let cleared1 = m1["annotations"]["org.drydock.patch.cleared"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!cleared1.is_empty());
    assert!(!cleared1.contains("CVE-2024-12133"), "{cleared1}");
    assert!(
        !m1["annotations"]["org.drydock.patch.upgrades"]
            .as_str()
            .unwrap()
            .contains("libtasn1-6"),
        "{m1}"
    );
    assert!(
        patched(server.port, "latest-1").is_none(),
        "latest is not watched"
    );

    // Database B adds a fixable finding: one more patch, clearing it.
    import(&data, std::slice::from_ref(&db_b));
    wait_for("v1-2", Duration::from_secs(240), &log, || {
        patched(server.port, "v1-2").is_some()
    });
    let m2 = manifest_json(server.port, "team/app", "v1-2");
    let cleared2 = m2["annotations"]["org.drydock.patch.cleared"]
        .as_str()
        .unwrap();
    assert!(cleared2.contains("CVE-2024-12133"), "{cleared2}");
    assert_eq!(
        m2["annotations"]["org.drydock.patch.original"],
        original.as_str()
    );

    // The same data again, and a restart (which evaluates once): nothing new.
    let n = evaluations(&log);
    import(&data, &[db_b]);
    wait_for("an evaluation", Duration::from_secs(120), &log, || {
        evaluations(&log) > n
    });
    drop(server);
    let n = evaluations(&log);
    let server = Server::start_logged(&data, &["--config", &cfg], &env, &log);
    wait_for(
        "an evaluation after restart",
        Duration::from_secs(120),
        &log,
        || evaluations(&log) > n,
    );
    std::thread::sleep(Duration::from_secs(3));
    let tags = get_json(server.port, "/v2/team/app/tags/list").1;
    let mut tags: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["latest", "v1", "v1-1", "v1-2"]);

    // Webhooks announced each patched image, once.
    wait_for(
        "two image.patched deliveries",
        Duration::from_secs(30),
        &log,
        || {
            got.lock()
                .unwrap()
                .iter()
                .filter(|(e, _)| e == "image.patched")
                .count()
                >= 2
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let events: Vec<Value> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|(e, _)| e == "image.patched")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    for (e, (tag, digest)) in events.iter().zip([
        ("v1-1", patched(server.port, "v1-1").unwrap()),
        ("v1-2", patched(server.port, "v1-2").unwrap()),
    ]) {
        assert_eq!(e["event"], "image.patched");
        assert_eq!(e["repository"], "team/app");
        assert_eq!(e["tag"], tag);
        assert_eq!(e["source_tag"], "v1");
        assert_eq!(e["original_digest"], original.as_str());
        assert_eq!(e["patched_digest"], digest.as_str());
        let ups = e["upgrades"].as_array().unwrap();
        assert!(!ups.is_empty());
        assert!(
            ups.iter()
                .all(|u| u["from"].is_string() || u["from"].is_null())
        );
        assert!(ups.iter().any(|u| u["package"] == "libgnutls30"));
    }
    assert!(
        events[1]["upgrades"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["package"] == "libtasn1-6")
    );
    drop(rt);
}

/// How often the server's log has `needle`.
fn logged(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

fn sorted_tags(port: u16, repo: &str) -> Vec<String> {
    let (_, v) = get_json(port, &format!("/v2/{repo}/tags/list"));
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    tags
}

#[test]
fn continuous_mode_patches_once_when_the_archive_gains_a_fix() {
    transport::require_test_images!();
    if !present_or_skip(tool_present("skopeo"), "skopeo", "CI") {
        return;
    }
    let Some(arch_dir) = archive_support::archive() else {
        return;
    };
    let archive_root = arch_dir.path().join("archive");
    // The archive as it was before libtasn1-6's security update: the
    // package out of the pool, the index signed again without it.
    let tasn = std::fs::read_dir(archive_root.join("pool/main"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libtasn1-6_")
        })
        .expect("libtasn1-6 in the archive");
    let aside = arch_dir.path().join(tasn.file_name().unwrap());
    std::fs::rename(&tasn, &aside).unwrap();
    archive_support::resign(&archive_root);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(archive_support::serve(archive_root.clone()));
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let layout = work.path().join("layout");
    old_image(&layout);
    let cfg = patch_config(
        work.path(),
        &archive_root,
        &srv.url,
        r#"
[patch]
enabled = true
repositories = [{ name = "team/*", tags = ["v1"] }]
interval_seconds = 1
"#,
    );
    let log = work.path().join("server.log");
    let env = [("RUST_LOG", "warn,patch=info")];
    let server = Server::start_logged(&data, &["--config", &cfg], &env, &log);
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:v1", server.addr()),
    ]);
    let original = manifest_digest(server.port, "team/app", "v1").unwrap();
    // The database comes after the push, so that the first evaluation
    // sees the image (an image pushed later waits for the next trigger).
    import(&data, &[vulndata("")]);

    // Without the fix in the archive: a patch of the rest.
    wait_for("v1-1", Duration::from_secs(240), &log, || {
        manifest_digest(server.port, "team/app", "v1-1").is_some()
    });
    let m1 = manifest_json(server.port, "team/app", "v1-1");
    let ann = |m: &Value, k: &str| m["annotations"][k].as_str().unwrap().to_string();
    assert!(
        !ann(&m1, "org.drydock.patch.upgrades").contains("libtasn1-6"),
        "{m1}"
    );
    assert!(
        ann(&m1, "org.drydock.patch.upgrades").contains("libgnutls30"),
        "{m1}"
    );
    assert!(!ann(&m1, "org.drydock.patch.cleared").contains("CVE-2024-12133"));
    assert_eq!(logged(&log, "the archive changed"), 0);

    // The archive gains the fix (a new signed index): one more patch.
    std::fs::rename(&aside, &tasn).unwrap();
    archive_support::resign(&archive_root);
    wait_for("v1-2", Duration::from_secs(120), &log, || {
        manifest_digest(server.port, "team/app", "v1-2").is_some()
    });
    let m2 = manifest_json(server.port, "team/app", "v1-2");
    assert!(
        ann(&m2, "org.drydock.patch.upgrades").contains("libtasn1-6 4.19.0-2 -> "),
        "{m2}"
    );
    assert!(
        ann(&m2, "org.drydock.patch.cleared").contains("CVE-2024-12133"),
        "{m2}"
    );
    assert_eq!(ann(&m2, "org.drydock.patch.original"), original);
    assert_eq!(logged(&log, "the archive changed"), 1);

    // Polls that find the archive unchanged make nothing.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(logged(&log, "the archive changed"), 1);
    assert_eq!(logged(&log, "patched image pushed"), 2);
    assert_eq!(sorted_tags(server.port, "team/app"), ["v1", "v1-1", "v1-2"]);
    assert_eq!(
        manifest_digest(server.port, "team/app", "v1").unwrap(),
        original
    );
    drop(rt);
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The image config a manifest names, from the registry.
fn config_of(url: &str, repo: &str, manifest: &Value) -> Value {
    let d = manifest["config"]["digest"].as_str().unwrap();
    let (code, v) = api("GET", &format!("{url}/v2/{repo}/blobs/{d}"), None, None);
    assert_eq!(code, 200, "{d}");
    v
}

#[test]
fn floating_tag_moves_to_the_newest_patch_of_a_docker_schema_2_image() {
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
    old_image(&layout);
    // Database A knows nothing of libtasn1-6; B adds its fixable finding.
    let db_a = debian_records(&work.path().join("db-a"), Some("libtasn1-6"));
    let db_b = debian_records(&work.path().join("db-b"), None);
    let cfg = patch_config(
        work.path(),
        &archive_root,
        &srv.url,
        r#"
[patch]
enabled = true
tag_style = "floating"
repositories = [{ name = "team/*", tags = ["v1"] }]
interval_seconds = 3600
"#,
    );
    let log = work.path().join("server.log");
    let env = [("RUST_LOG", "warn,patch=info")];
    let server = Server::start_logged(&data, &["--config", &cfg], &env, &log);
    let url = format!("http://{}", server.addr());
    // Docker schema 2: no annotations, so the patch's record is the
    // config history, which is also what continuous mode reads back.
    skopeo(&[
        "copy",
        "-q",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:v1", server.addr()),
    ]);
    let (original, m0) = manifest_with_digest(server.port, "team/app", "v1").unwrap();
    assert_eq!(m0["mediaType"], DOCKER_MANIFEST);

    import(&data, std::slice::from_ref(&db_a));
    wait_for("v1-patched", Duration::from_secs(240), &log, || {
        manifest_digest(server.port, "team/app", "v1-patched").is_some()
    });
    let (p1, m1) = manifest_with_digest(server.port, "team/app", "v1-patched").unwrap();
    assert_eq!(m1["mediaType"], DOCKER_MANIFEST);
    assert!(m1["annotations"].is_null(), "{m1}");
    let layers = m1["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(
        layers[2]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let c1 = config_of(&url, "team/app", &m1);
    assert_eq!(c1["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    let last = c1["history"].as_array().unwrap().last().unwrap().clone();
    let created_by = last["created_by"].as_str().unwrap();
    assert!(created_by.starts_with("drydock patch: "), "{last}");
    assert!(created_by.contains("libgnutls30 3.7.9-2 -> "), "{last}");
    assert!(!created_by.contains("libtasn1-6"), "{last}");
    let comment = last["comment"].as_str().unwrap();
    assert!(comment.starts_with("clears "), "{last}");
    assert!(!comment.contains("CVE-2024-12133"), "{last}");

    // A new fixable finding: the floating tag moves to a new patch.
    import(&data, std::slice::from_ref(&db_b));
    wait_for("v1-patched to move", Duration::from_secs(240), &log, || {
        manifest_digest(server.port, "team/app", "v1-patched").is_some_and(|d| d != p1)
    });
    let (p2, m2) = manifest_with_digest(server.port, "team/app", "v1-patched").unwrap();
    assert_eq!(m2["mediaType"], DOCKER_MANIFEST);
    let c2 = config_of(&url, "team/app", &m2);
    let last = c2["history"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["created_by"]
            .as_str()
            .unwrap()
            .contains("libtasn1-6 4.19.0-2 -> "),
        "{last}"
    );
    assert!(
        last["comment"].as_str().unwrap().contains("CVE-2024-12133"),
        "{last}"
    );
    // The original stays, tagged as it was; the first patch is still
    // there by digest; no other tag appeared.
    assert_eq!(
        manifest_digest(server.port, "team/app", "v1").unwrap(),
        original
    );
    assert!(manifest_with_digest(server.port, "team/app", &p1).is_some());
    assert_eq!(sorted_tags(server.port, "team/app"), ["v1", "v1-patched"]);

    // The same data again: the history of the newest patch says all is
    // cleared, so the tag stays where it is.
    let n = evaluations(&log);
    import(&data, &[db_b]);
    wait_for("an evaluation", Duration::from_secs(120), &log, || {
        evaluations(&log) > n
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        manifest_digest(server.port, "team/app", "v1-patched").unwrap(),
        p2
    );
    assert_eq!(logged(&log, "patched image pushed"), 2);
    drop(rt);
}
