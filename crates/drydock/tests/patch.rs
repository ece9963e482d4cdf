//! Continuous patching end to end (issue 15): a Debian image whose dpkg
//! database records older versions of real packages than a loopback,
//! signed archive holds is assessed with the fixture vulnerability data,
//! planned (`drydock patch --dry-run`), patched (`drydock patch`), pulled
//! and run by podman, and assessed again; the original stays as it was; a
//! bad archive signature stops the patch.
//!
//! The service around the patch: `patch_api.rs` (API access, jobs across a
//! restart), `patch_index.rs` (an index patched per platform),
//! `patch_continuous.rs` (continuous mode, its webhooks, floating tags),
//! `patch_plan.rs` (the plan's coverage); what they share is in
//! `patch_support/`. All need the loopback archive's packages and tools
//! (`crates/patch/tests/support`: `.ci/run` fetches them) and the test
//! images (`scripts/test-images.sh`).

#[path = "../../patch/tests/support/mod.rs"]
mod archive_support;
mod cli_support;
mod patch_support;

use cli_support::*;
use patch_support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

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
