//! The dashboard's access-control flows in a real browser: `drydock serve
//! --auth` on loopback, a pull-only user made with the CLI, optionally a
//! test image pushed, then the browser tests in `ui-tests/` (Node's test
//! runner driving Debian's headless Chromium through playwright-core, with
//! axe-core for accessibility) against it. Afterwards no password or
//! robot secret may appear in the server's log.
//!
//! The registry's pages are tried too (ui-tests/registry.test.mjs): an
//! image waiting for a vulnerability database until one is imported,
//! filters, an exemption, a webhook's delivery, the patch section's plan
//! button against a loopback Debian archive (the patch tests' signed one;
//! without its packages, that patching is not configured), the layers'
//! and a vulnerability's affected repositories' next pages, every page at
//! 390 px and under axe, with a screenshot of each in target/ui-screenshots/.
//!
//! Without node, Chromium or `ui-tests/node_modules` (`npm ci --prefix
//! ui-tests`) the test says why and skips; with `CI` set it fails instead.

#[path = "../../patch/tests/support/mod.rs"]
mod archive_support;
mod cli_support;

use cli_support::*;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh random password: a leak check cannot match by accident.
fn random(prefix: &str) -> String {
    let a = RandomState::new().hash_one(Instant::now());
    let b = RandomState::new().hash_one(std::process::id());
    format!("{prefix}-{a:016x}{b:016x}")
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The browser the tests drive: `DRYDOCK_UI_CHROMIUM` or Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("DRYDOCK_UI_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The test images' OCI layout when it holds `tag`: built on demand by
/// transport's one helper, which says `skipped: …` naming the missing tool
/// (a failure under CI). Without them the scenarios that need an image
/// are skipped by the browser tests and said so here.
fn built_test_image(tag: &str) -> Option<PathBuf> {
    let dir = transport::testing::test_images()?;
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).ok()?).ok()?;
    index["manifests"]
        .as_array()?
        .iter()
        .any(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .then_some(dir)
}

#[test]
fn dashboard_access_control_in_a_browser() {
    let ui = Path::new(ROOT).join("ui-tests");
    if !present_or_skip(runs("node", "--version"), "node", "CI")
        || !present_or_skip(
            runs(chromium().to_str().unwrap_or("chromium"), "--version"),
            "Chromium (apt-get install chromium)",
            "CI",
        )
        || !present_or_skip(
            ui.join("node_modules/playwright-core").is_dir()
                && ui.join("node_modules/axe-core").is_dir(),
            "ui-tests/node_modules (npm ci --prefix ui-tests)",
            "CI",
        )
    {
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let log = dir.path().join("server.log");
    let admin_password = random("adminpw");
    let reader_password = random("readerpw");
    // Patching configured with the patch tests' loopback archive (signed
    // with a throwaway key) when its packages are there; else the page
    // says patching is not configured, and that is tried instead.
    // The archive's file server runs on `rt` until the test ends.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let archive = archive_support::archive();
    let mut args = vec!["--auth".to_string()];
    if let Some(archive) = &archive {
        let root = archive.path().join("archive");
        let srv = rt.block_on(archive_support::serve(root.clone()));
        let config = dir.path().join("drydock.toml");
        std::fs::write(
            &config,
            format!(
                "[outbound]\nallow = [\"127.0.0.0/8\"]\n\n[patch.debian]\nkeyring = \"{}\"\narchives = [{{ url = \"{}\", suite = \"bookworm\" }}]\n",
                root.join("keyring.gpg").display(),
                srv.url
            ),
        )
        .unwrap();
        args.extend(["--config".to_string(), config.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_logged(
        &data,
        &args,
        &[
            ("DRYDOCK_ADMIN_PASSWORD", &admin_password),
            ("RUST_LOG", "info"),
        ],
        &log,
    );

    // A user who may pull team-a/* and nothing else, made with the CLI.
    let mut add = drydock(
        &data,
        &[
            "user",
            "add",
            "reader",
            "--password-stdin",
            "--permission",
            "team-a/*:pull",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{reader_password}\n").as_bytes())
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "drydock user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An image the reader may see, when the test images are built.
    let mut image = "";
    match built_test_image("bookworm-base") {
        Some(layout) if runs("skopeo", "--version") => {
            let creds = format!("admin:{admin_password}");
            let st = Command::new("skopeo")
                .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
                .args(["--dest-creds", &creds])
                .arg(format!("oci:{}:bookworm-base", layout.display()))
                .arg(format!("docker://{}/team-a/app:v1", server.addr()))
                .stdin(Stdio::null())
                .status()
                .expect("run skopeo");
            assert!(st.success(), "skopeo copy into team-a/app:v1: {st}");
            image = "team-a/app";
            // A Python image too: its findings come from another source.
            if built_test_image("python-app").is_some() {
                let st = Command::new("skopeo")
                    .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
                    .args(["--dest-creds", &creds])
                    .arg(format!("oci:{}:python-app", layout.display()))
                    .arg(format!("docker://{}/team-a/py:1", server.addr()))
                    .stdin(Stdio::null())
                    .status()
                    .expect("run skopeo");
                assert!(st.success(), "skopeo copy into team-a/py:1: {st}");
            }
        }
        _ => eprintln!("test images or skopeo not available: the reader's image list stays empty"),
    }

    // The browser tests, one after another (each starts its own Chromium).
    let stdout = dir.path().join("node.out");
    let stderr = dir.path().join("node.err");
    let mut node = Command::new("node")
        .args(["--test", "--test-concurrency=1", "ui-tests/"])
        .current_dir(ROOT)
        .env("DRYDOCK_UI_URL", format!("http://{}", server.addr()))
        .env("DRYDOCK_UI_ADMIN_USER", "admin")
        .env("DRYDOCK_UI_ADMIN_PASSWORD", &admin_password)
        .env("DRYDOCK_UI_READER_USER", "reader")
        .env("DRYDOCK_UI_READER_PASSWORD", &reader_password)
        .env("DRYDOCK_UI_IMAGE", image)
        .env(
            "DRYDOCK_UI_PATCH",
            if archive.is_some() { "archive" } else { "" },
        )
        // The registry tests load a vulnerability database while the page
        // is open (`drydock db import`), push with skopeo, and save
        // screenshots of every page.
        .env("DRYDOCK_UI_BIN", env!("CARGO_BIN_EXE_drydock"))
        .env("DRYDOCK_UI_DATA", &data)
        .env(
            "DRYDOCK_UI_VULNDATA",
            format!(
                "{},{}",
                vulndata("osv/Debian/all.zip").display(),
                vulndata("osv/PyPI/all.zip").display()
            ),
        )
        .env(
            "DRYDOCK_UI_LAYOUT",
            built_test_image("bookworm-base").unwrap_or_default(),
        )
        .env(
            "DRYDOCK_UI_SCREENSHOTS",
            Path::new(ROOT).join("target/ui-screenshots"),
        )
        .env("DRYDOCK_UI_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("run node --test");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(st) = node.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = node.kill();
            let _ = node.wait();
            panic!("the browser tests took more than 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = std::fs::read_to_string(&stdout).unwrap_or_default();
    let errors = std::fs::read_to_string(&stderr).unwrap_or_default();
    eprintln!("{report}{errors}");
    assert!(status.success(), "node --test ui-tests/ failed: {status}");
    // Every scenario ran: none was skipped or left out.
    assert!(report.contains("\n# fail 0"), "a browser test failed");
    // Every scenario ran, except (outside CI, where the helper above fails
    // instead) those that need the test images when they cannot be built.
    let images = built_test_image("bookworm-base").is_some();
    if images {
        assert!(report.contains("\n# skipped 0"), "a browser test skipped");
    } else {
        let skipped = report
            .lines()
            .find_map(|l| l.strip_prefix("# skipped "))
            .unwrap_or("?");
        eprintln!("skipped: {skipped} browser tests need the test images (see above)");
    }
    let ran: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        ran >= if images { 20 } else { 12 },
        "only {ran} browser tests passed"
    );

    // Passwords typed into the page never reach the server's log, nor
    // the tests' own output.
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    for (what, secret) in [("admin", &admin_password), ("reader", &reader_password)] {
        assert!(
            !logged.contains(secret.as_str()),
            "the {what} password is in the server log"
        );
        assert!(
            !report.contains(secret.as_str()) && !errors.contains(secret.as_str()),
            "the {what} password is in the browser tests' output"
        );
    }
    assert!(
        !logged.contains("ddr_"),
        "a robot secret is in the server log"
    );
}
