//! Continuous patching end to end (issue 15): a Debian image whose dpkg
//! database records older versions of real packages than a loopback,
//! signed archive holds is assessed with the fixture vulnerability data,
//! planned (`drydock patch --dry-run`), patched (`drydock patch`), pulled
//! and run by podman, and assessed again; the original stays as it was; a
//! bad archive signature stops the patch.

#[path = "../../patch/tests/support/mod.rs"]
mod archive_support;
mod cli_support;

use cli_support::*;
use flate2::read::GzDecoder;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Installed version → the older one the test image claims.
const OLDER: &[(&str, &str)] = &[
    ("libtasn1-6", "4.19.0-2"),
    ("libgnutls30", "3.7.9-2"),
    ("libsystemd0", "252.19-1~deb12u1"),
    ("libudev1", "252.19-1~deb12u1"),
    ("libp11-kit0", "0.23.2-5"),
    ("tar", "1.34+dfsg-1.2"),
];

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// An OCI layout with `bookworm-base` plus one layer whose dpkg status
/// records the OLDER versions (as if built before their security updates).
fn old_image(out: &Path) {
    let older: Vec<(String, String)> = OLDER
        .iter()
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect();
    old_image_with(out, &older);
}

/// [`old_image`] with the dpkg database recording `older` (package,
/// version); a package's `Source:` version, where it has one, goes (the
/// assessor would match that instead).
fn old_image_with(out: &Path, older: &[(String, String)]) {
    let src = oci_dir();
    let index: Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "bookworm-base")
        .expect("bookworm-base in the test images")
        .clone();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blob(&src, desc["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let config: Value = serde_json::from_slice(
        &std::fs::read(blob(&src, manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut status = String::new();
    let mut tar = tar::Archive::new(GzDecoder::new(
        std::fs::File::open(blob(&src, &layer)).unwrap(),
    ));
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if p == "var/lib/dpkg/status" {
            e.read_to_string(&mut status).unwrap();
        }
    }
    assert!(!status.is_empty());
    let stanzas: Vec<String> = status
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let pkg = s.lines().next().unwrap().trim_start_matches("Package: ");
            match older.iter().find(|(p, _)| p == pkg) {
                Some((_, v)) => s
                    .lines()
                    .map(|l| {
                        if l.starts_with("Version: ") {
                            format!("Version: {v}")
                        } else if let Some(src) = l.strip_prefix("Source: ") {
                            format!("Source: {}", src.split(' ').next().unwrap())
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                None => s.to_string(),
            }
        })
        .collect();
    let status = stanzas.join("\n\n") + "\n";
    for (p, v) in older {
        assert!(status.contains(&format!("Package: {p}\n")), "{p} installed");
        assert!(status.contains(&format!("Version: {v}\n")));
    }
    // The new layer: the status file alone.
    let mut raw = Vec::new();
    {
        let mut b = tar::Builder::new(&mut raw);
        let mut h = tar::Header::new_gnu();
        h.set_size(status.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, "var/lib/dpkg/status", status.as_bytes())
            .unwrap();
        b.finish().unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let gz = gz.finish().unwrap();
    std::fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    std::fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(blob(out, &d), b).unwrap();
        d
    };
    let layer_new = put(&gz);
    if std::fs::hard_link(blob(&src, &layer), blob(out, &layer)).is_err() {
        std::fs::copy(blob(&src, &layer), blob(out, &layer)).unwrap();
    }
    let mut config = config;
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(sha(&raw)));
    let config = serde_json::to_vec(&config).unwrap();
    let config_d = put(&config);
    let mut m = manifest.clone();
    m["config"]["digest"] = json!(config_d);
    m["config"]["size"] = json!(config.len());
    m["layers"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_new, "size": gz.len()
    }));
    let m = serde_json::to_vec(&m).unwrap();
    let md = put(&m);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Wait until the assessor has a result for `digest`; its view.
fn assessed(port: u16, digest: &str) -> Value {
    let start = Instant::now();
    loop {
        let (code, v) = get_json(port, &format!("/api/v1/images/{digest}"));
        if code == 200 && v["status"] == "done" {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "not assessed: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn finding_ids(view: &Value) -> BTreeSet<(String, String)> {
    view["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["package"].as_str().unwrap().to_string(),
                f["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Runs commands in a pulled image: `podman run`, or where this machine's
/// sandbox forbids the container runtime to set resource limits (crun and
/// runc both fail with "setrlimit ... Operation not permitted"), in a
/// chroot of the filesystem podman exports from a container of the image.
struct Runner {
    image: String,
    chroot: Option<std::path::PathBuf>,
}

impl Runner {
    fn new(image: &str, dir: &Path) -> Runner {
        let probe = std::process::Command::new("podman")
            .args(["run", "--rm", "--network=none", image, "true"])
            .output()
            .unwrap();
        if probe.status.success() {
            return Runner {
                image: image.into(),
                chroot: None,
            };
        }
        let err = String::from_utf8_lossy(&probe.stderr);
        assert!(
            err.contains("setrlimit") || err.contains("rlimit"),
            "podman run: {err}"
        );
        eprintln!(
            "podman run is not permitted here ({}); running in a chroot of `podman export`",
            err.trim()
        );
        let id = client("podman", &["create", image, "true"]);
        std::fs::create_dir_all(dir).unwrap();
        let sh = format!("podman export {id} | tar -x -C '{}'", dir.display());
        let out = std::process::Command::new("sh")
            .args(["-c", &sh])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        client("podman", &["rm", &id]);
        Runner {
            image: image.into(),
            chroot: Some(dir.to_path_buf()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        match &self.chroot {
            None => {
                let mut all = vec!["run", "--rm", "--network=none", self.image.as_str()];
                all.extend_from_slice(args);
                client("podman", &all)
            }
            Some(dir) => {
                let mut all = vec![dir.to_str().unwrap()];
                all.extend_from_slice(args);
                client("chroot", &all)
            }
        }
    }
}

fn patch_cli(data: &Path, server: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["patch", "--server", server];
    all.extend_from_slice(args);
    let out = run(data, &all);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn debian_image_is_patched_runs_and_clears_its_findings() {
    transport::require_test_images!();
    let podman_ok = tool_present("podman") && tool_present("skopeo");
    if !present_or_skip(podman_ok, "podman and skopeo", "CI") {
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
    import(&data, &[vulndata("")]);

    let config = work.path().join("drydock.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[outbound]
allow = ["127.0.0.0/8"]

[patch]
[patch.debian]
keyring = "{}"
archives = [{{ url = "{}", suite = "bookworm" }}]
"#,
            archive_root.join("keyring.gpg").display(),
            srv.url
        ),
    )
    .unwrap();
    let log = work.path().join("server.log");
    let cfg = config.to_string_lossy().to_string();
    let server = Server::start_logged(&data, &["--config", &cfg], &[], &log);
    let addr = server.addr();
    let url = format!("http://{addr}");
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{addr}/team/app:v1"),
    ]);
    let original = manifest_digest(server.port, "team/app", "v1").unwrap();
    let before = assessed(server.port, &original);
    let ids_before = finding_ids(&before);
    for p in ["libtasn1-6", "libgnutls30", "libsystemd0", "tar"] {
        assert!(
            before["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["package"] == p && f["fixable"] == true),
            "the fixture data gives {p} a fixable finding"
        );
    }

    // The plan.
    let (ok, out) = patch_cli(&data, &url, &["team/app:v1", "--dry-run", "--json"]);
    assert!(ok, "{out}");
    let job: Value = serde_json::from_str(&out).unwrap();
    let plan = &job["result"]["platforms"][0]["plan"];
    let upgraded: BTreeSet<(String, String)> = plan["upgrades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["package"].as_str().unwrap().to_string(),
                u["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // The versions the archive holds (whatever `apt-get download` fetched).
    let packages =
        std::fs::read_to_string(archive_root.join("dists/bookworm/main/binary-amd64/Packages"))
            .unwrap();
    let held: std::collections::BTreeMap<String, String> = packages
        .split("\n\n")
        .filter_map(|st| {
            let field = |f: &str| {
                st.lines()
                    .find_map(|l| l.strip_prefix(f))
                    .map(str::to_string)
            };
            Some((field("Package: ")?, field("Version: ")?))
        })
        .collect();
    let expect: BTreeSet<(String, String)> = [
        "libgnutls30",
        "libp11-kit0",
        "libsystemd0",
        "libtasn1-6",
        "libudev1",
    ]
    .iter()
    .map(|p| (p.to_string(), held[*p].clone()))
    .collect();
    assert_eq!(upgraded, expect, "{plan:#}");
    let refusals = plan["refusals"].as_array().unwrap();
    assert_eq!(refusals.len(), 1, "{plan:#}");
    assert_eq!(refusals[0]["package"], "tar");
    assert!(
        refusals[0]["reason"]
            .as_str()
            .unwrap()
            .contains("maintainer scripts"),
        "{plan:#}"
    );
    assert!(job["result"]["patched_digest"].is_null());
    // The human form names upgrades, what they clear and the refusal.
    let (ok, text) = patch_cli(&data, &url, &["team/app:v1", "--dry-run"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "upgrade libtasn1-6 4.19.0-2 -> {}",
            held["libtasn1-6"]
        )),
        "{text}"
    );
    assert!(
        text.contains("refused tar 1.34+dfsg-1.2: needs maintainer scripts"),
        "{text}"
    );
    assert_eq!(manifest_digest(server.port, "team/app", "v1-1"), None);

    // The patch.
    let (ok, out) = patch_cli(&data, &url, &["team/app:v1", "--json"]);
    assert!(ok, "{out}");
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["result"]["patched_tag"], "v1-1", "{job:#}");
    let patched = manifest_digest(server.port, "team/app", "v1-1").unwrap();
    assert_eq!(job["result"]["patched_digest"], patched.as_str());
    assert_eq!(
        manifest_digest(server.port, "team/app", "v1").unwrap(),
        original,
        "original untouched"
    );

    // The manifest says where it came from and what changed.
    let (_, m) = get_json(server.port, &format!("/v2/team/app/manifests/{patched}"));
    assert_eq!(
        m["annotations"]["org.drydock.patch.original"],
        original.as_str()
    );
    assert!(
        m["annotations"]["org.drydock.patch.upgrades"]
            .as_str()
            .unwrap()
            .contains(&format!("libtasn1-6 4.19.0-2 -> {}", held["libtasn1-6"]))
    );
    assert_eq!(m["layers"].as_array().unwrap().len(), 3);

    // podman pulls it from drydock and runs it.
    let image = format!("{addr}/team/app:v1-1");
    client("podman", &["pull", "-q", "--tls-verify=false", &image]);
    let runner = Runner::new(&image, &work.path().join("rootfs"));
    let q = runner.run(&[
        "dpkg-query",
        "-W",
        "-f",
        "${Package} ${Version}\\n",
        "libtasn1-6",
        "libgnutls30",
        "libsystemd0",
        "libudev1",
        "libp11-kit0",
        "tar",
    ]);
    for (p, v) in expect
        .iter()
        .chain([("tar".to_string(), "1.34+dfsg-1.2".to_string())].iter())
    {
        let line = format!("{p} {v}");
        assert!(q.lines().any(|l| l == line), "{line} in {q}");
    }
    // Files on disk are the new packages' (dpkg's own md5 check), and a
    // program linking the patched libraries (libsystemd0, libudev1) runs.
    let verify = runner.run(&[
        "dpkg",
        "--verify",
        "libtasn1-6",
        "libgnutls30",
        "libsystemd0",
        "libudev1",
        "libp11-kit0",
    ]);
    assert_eq!(verify, "", "dpkg --verify");
    let apt = runner.run(&["apt-get", "--version"]);
    assert!(apt.starts_with("apt "), "{apt}");
    client("podman", &["rmi", "-f", &image]);

    // Assessed again: what the plan cleared is gone, nothing is new.
    let after = assessed(server.port, &patched);
    let ids_after = finding_ids(&after);
    let cleared: BTreeSet<String> = plan["upgrades"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| {
            u["clears"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
        })
        .collect();
    assert!(!cleared.is_empty());
    for (p, id) in &ids_after {
        assert!(
            ids_before.contains(&(p.clone(), id.clone())),
            "new finding {p} {id}"
        );
        let upgraded_pkg = upgraded.iter().any(|(u, _)| u == p);
        assert!(
            !(upgraded_pkg && cleared.contains(id)),
            "{p} {id} should be cleared"
        );
    }
    assert!(ids_after.len() < ids_before.len());
    assert!(
        ids_after.iter().any(|(p, _)| p == "tar"),
        "the refused tar keeps its finding"
    );

    // A second patch of the same tag numbers on.
    let (ok, out) = patch_cli(&data, &url, &["team/app:v1", "--json"]);
    assert!(ok, "{out}");
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["result"]["patched_tag"], "v1-2", "{job:#}");

    // An archive signed by another key stops the patch, naming why.
    let inrelease = archive_root.join("dists/bookworm/InRelease");
    let signed = std::fs::read_to_string(&inrelease).unwrap();
    srv.overrides.lock().unwrap().insert(
        "dists/bookworm/InRelease".into(),
        signed
            .replace("Suite: bookworm", "Suite: bookwork")
            .into_bytes(),
    );
    let (ok, out) = patch_cli(&data, &url, &["team/app:v1"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("does not verify against the configured keyring"),
        "{out}"
    );
    assert_eq!(manifest_digest(server.port, "team/app", "v1-3"), None);
    drop(rt);
}

// ---- the service around the patch: API access, jobs across a restart,
// an index patched per platform, continuous mode and its webhooks ----

/// One request to the server's API, with HTTP Basic credentials if given.
fn api(method: &str, url: &str, creds: Option<(&str, &str)>, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let mut r = c.request(method.parse().unwrap(), url);
        if let Some((u, p)) = creds {
            r = r.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    })
}

/// A patch job's view once it is no longer running.
fn finished(url: &str, id: &str, creds: Option<(&str, &str)>) -> Value {
    let start = Instant::now();
    loop {
        let (code, j) = api("GET", &format!("{url}/api/v1/patches/{id}"), creds, None);
        assert_eq!(code, 200, "{j}");
        if j["state"] != "running" {
            return j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "still running: {j}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The server configuration of these tests: the loopback archive, and
/// whatever `extra` TOML adds.
fn patch_config(dir: &Path, archive_root: &Path, archive_url: &str, extra: &str) -> String {
    let config = dir.join("drydock.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[outbound]
allow = ["127.0.0.0/8"]
{extra}
[patch.debian]
keyring = "{}"
archives = [{{ url = "{archive_url}", suite = "bookworm" }}]
"#,
            archive_root.join("keyring.gpg").display(),
        ),
    )
    .unwrap();
    config.to_string_lossy().to_string()
}

fn add_user(data: &Path, name: &str, password: &str, permission: &str) {
    let args = [
        "user",
        "add",
        name,
        "--password-stdin",
        "--permission",
        permission,
    ];
    let mut child = drydock(data, &args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn patch_api_needs_push_to_start_and_pull_to_read_and_jobs_survive_a_restart() {
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
    import(&data, &[vulndata("")]);
    let cfg = patch_config(work.path(), &archive_root, &srv.url, "");
    let admin_pw = "patch-admin-password";
    let env = [("DRYDOCK_ADMIN_PASSWORD", admin_pw)];
    let log = work.path().join("server.log");
    let server = Server::start_logged(&data, &["--config", &cfg, "--auth"], &env, &log);
    let url = format!("http://{}", server.addr());
    add_user(&data, "pusher", "pusher-password", "team/*:pull,push");
    add_user(&data, "reader", "reader-password", "team/*:pull");
    add_user(
        &data,
        "stranger",
        "stranger-password",
        "elsewhere/*:pull,push",
    );
    let admin = Some(("admin", admin_pw));
    let pusher = Some(("pusher", "pusher-password"));
    let reader = Some(("reader", "reader-password"));
    let stranger = Some(("stranger", "stranger-password"));
    // The server reads users again within a second.
    std::thread::sleep(Duration::from_millis(1500));
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("--dest-creds=admin:{admin_pw}"),
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:v1", server.addr()),
    ]);
    let original = {
        let start = Instant::now();
        loop {
            let (_, tags) = api(
                "GET",
                &format!("{url}/api/v1/repositories/team/app/tags"),
                admin,
                None,
            );
            let d = tags
                .as_array()
                .and_then(|a| a.iter().find(|t| t["tag"] == "v1"))
                .and_then(|t| t["digest"].as_str())
                .map(str::to_string);
            if let Some(d) = d {
                let (code, v) = api("GET", &format!("{url}/api/v1/images/{d}"), admin, None);
                if code == 200 && v["status"] == "done" {
                    break d;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "not assessed: {tags}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };

    let req = json!({"repository": "team/app", "tag": "v1", "dry_run": true});
    let post = |creds| {
        api(
            "POST",
            &format!("{url}/api/v1/patches"),
            creds,
            Some(req.clone()),
        )
    };
    assert_eq!(post(None).0, 401, "anonymous");
    let (code, body) = post(reader);
    assert_eq!(code, 403, "pull without push: {body}");
    assert!(body.to_string().contains("needs push"), "{body}");
    assert_eq!(
        post(stranger).0,
        404,
        "no access: the repository stays hidden"
    );
    let (code, started) = post(pusher);
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let done = finished(&url, &id, pusher);
    assert_eq!(done["state"], "done", "{done:#}");
    assert_eq!(done["result"]["original_digest"], original.as_str());
    assert!(
        done["created_at"].is_string() && done["finished_at"].is_string(),
        "{done}"
    );
    // Reading a job needs pull on its repository.
    let job_url = format!("{url}/api/v1/patches/{id}");
    assert_eq!(api("GET", &job_url, reader, None).0, 200);
    assert_eq!(api("GET", &job_url, None, None).0, 401);
    assert_eq!(api("GET", &job_url, stranger, None).0, 404);
    assert_eq!(
        api(
            "GET",
            &format!("{url}/api/v1/patches/no-such-job"),
            admin,
            None
        )
        .0,
        404
    );

    // The API document describes the endpoints.
    let (code, doc) = api("GET", &format!("{url}/api/v1/openapi.json"), admin, None);
    assert_eq!(code, 200);
    assert!(
        doc["paths"]["/api/v1/patches"]["post"].is_object(),
        "{:#}",
        doc["paths"]
    );
    assert!(doc["paths"]["/api/v1/patches/{id}"]["get"].is_object());
    assert!(doc["components"]["schemas"]["JobView"].is_object());

    // A job caught mid-way (the archive stalls) when the server dies is
    // failed on restart; the finished one is still there.
    srv.stalled
        .lock()
        .unwrap()
        .insert("dists/bookworm/InRelease".into());
    let real = json!({"repository": "team/app", "tag": "v1"});
    let (code, started) = api("POST", &format!("{url}/api/v1/patches"), pusher, Some(real));
    assert_eq!(code, 202, "{started}");
    let stuck = started["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1000));
    let (_, j) = api(
        "GET",
        &format!("{url}/api/v1/patches/{stuck}"),
        pusher,
        None,
    );
    assert_eq!(j["state"], "running", "{j}");
    drop(server); // SIGKILL
    let server = Server::start_logged(&data, &["--config", &cfg, "--auth"], &env, &log);
    let url = format!("http://{}", server.addr());
    let (code, j) = api(
        "GET",
        &format!("{url}/api/v1/patches/{stuck}"),
        pusher,
        None,
    );
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["state"], "failed", "{j}");
    assert_eq!(j["error"], "interrupted by restart");
    assert!(j["finished_at"].is_string());
    let (code, j) = api("GET", &format!("{url}/api/v1/patches/{id}"), reader, None);
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["state"], "done");
    assert_eq!(j["result"], done["result"]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(admin_pw) && !text.contains("pusher-password"));
    drop(rt);
}

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

/// A manifest or index as stored, and its digest (`Accept` names every
/// type, so an index is answered as itself).
fn manifest_with_digest(port: u16, repo: &str, reference: &str) -> Option<(String, Value)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v2/{repo}/manifests/{reference} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
         application/vnd.docker.distribution.manifest.list.v2+json, \
         application/vnd.docker.distribution.manifest.v2+json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let digest = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })
        .unwrap();
    assert_eq!(digest, sha(body.as_bytes()));
    Some((digest, serde_json::from_str(body).unwrap()))
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

fn manifest_json(port: u16, repo: &str, reference: &str) -> Value {
    manifest_with_digest(port, repo, reference)
        .unwrap_or_else(|| panic!("{repo}@{reference} missing"))
        .1
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
