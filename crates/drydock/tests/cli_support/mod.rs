//! Helpers shared by the `cli_*` end-to-end tests: run the real `drydock`
//! binary with a data directory, locate the vulnerability-data fixtures
//! and the test images, read OSV records, run `drydock serve` on a free port.
//!
//! Each test crate uses a different subset of these helpers.
//!
//! Every command that opens the server's stores (`serve`, `gc`, `usage`,
//! `user`, `robot`, `patch`) runs on the backend the environment picks
//! (`DRYDOCK_TEST_METADATA`, `DRYDOCK_TEST_BLOBS`: see [`backend`]), the
//! same one for every run on one data directory.
#![allow(dead_code)]

// The backend choice shared with the registry's, import's and web's
// tests: one definition of what the environment variables mean.
#[path = "../../../registry/tests/common/backend.rs"]
pub mod backend;
#[path = "../../../registry/tests/common/s3.rs"]
pub mod s3;

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Repository root.
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// Slices of real vulnerability data kept in the repository (see its
/// README for provenance); laid out like the larger offline set.
pub const VULNDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/vulndata");

pub fn vulndata(rel: &str) -> PathBuf {
    Path::new(VULNDATA).join(rel)
}

/// The subcommands that open the server's stores.
const STORE_COMMANDS: &[&str] = &["serve", "gc", "usage", "user", "robot", "patch"];

/// `drydock --data DATA ARGS...`, with quiet logs; a command that opens
/// the stores runs on the environment's backend for `data` (its
/// `metadata.url` by `DRYDOCK_METADATA_URL`, its `[storage.s3]` added to
/// the test's `--config`, or a file of its own).
pub fn drydock(data: &Path, args: &[&str]) -> Command {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut metadata_url = None;
    if args
        .first()
        .is_some_and(|c| STORE_COMMANDS.contains(&c.as_str()))
    {
        let b = backend::for_data(data);
        metadata_url = b.metadata_url.clone();
        if b.s3.is_some() {
            let at = args.iter().position(|a| a == "--config");
            let theirs = at
                .and_then(|i| args.get(i + 1))
                .map(|p| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}")))
                .unwrap_or_default();
            let ours = backend_config_file(&format!("{theirs}\n{}", b.config_toml()));
            match at {
                Some(i) if i + 1 < args.len() => args[i + 1] = ours,
                _ => args.extend(["--config".to_string(), ours]),
            }
        }
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_drydock"));
    c.arg("--data")
        .arg(data)
        .args(&args)
        .env("RUST_LOG", "warn")
        .env_remove("DRYDOCK_CONFIG")
        .env_remove("DRYDOCK_DATA")
        .env_remove("DRYDOCK_SCAN_CREDS")
        .env_remove("DRYDOCK_VULNDB_SOURCES")
        // Tests speak only to loopback: no scheduled database downloads.
        .env("DRYDOCK_VULNDB_UPDATE_HOURS", "0")
        .stdin(Stdio::null());
    if let Some(url) = metadata_url {
        c.env("DRYDOCK_METADATA_URL", url);
    }
    c
}

/// A configuration file with `text`, in a directory of this process's
/// removed when the test binary exits; its path.
fn backend_config_file(text: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    unsafe extern "C" {
        fn atexit(hook: extern "C" fn()) -> std::ffi::c_int;
    }
    extern "C" fn remove_dir() {
        if let Some(d) = DIR.get() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    let dir = DIR.get_or_init(|| {
        let d = tempfile::Builder::new()
            .prefix("drydock-test-backend-")
            .tempdir()
            .unwrap()
            .keep();
        // SAFETY: registers a plain function with the C runtime; it only
        // removes a directory after `main` has returned.
        unsafe { atexit(remove_dir) };
        d
    });
    let path = dir.join(format!("{}.toml", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Run and return the output; fails the test if the binary panicked.
pub fn run(data: &Path, args: &[&str]) -> Output {
    let out = drydock(data, args).output().expect("run drydock");
    assert_no_panic(&out, args);
    out
}

pub fn assert_no_panic(out: &Output, args: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "drydock {args:?} panicked:\n{stderr}"
    );
    // 101 is the exit status of a Rust panic.
    assert_ne!(out.status.code(), Some(101), "drydock {args:?}: {stderr}");
}

/// Run, require success, return standard output.
pub fn run_ok(data: &Path, args: &[&str]) -> String {
    let out = run(data, args);
    assert!(
        out.status.success(),
        "drydock {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Run, require success, parse standard output as JSON.
pub fn json_ok(data: &Path, args: &[&str]) -> Value {
    let s = run_ok(data, args);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("drydock {args:?}: not JSON ({e}):\n{s}"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `drydock db import PATHS...` into `data`; returns the JSON report.
pub fn import(data: &Path, paths: &[PathBuf]) -> Value {
    let mut args: Vec<String> = vec!["db".into(), "import".into(), "--json".into()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    json_ok(data, &args)
}

/// Every JSON record of an OSV export zip.
pub fn osv_records(zip_path: &Path) -> Vec<Value> {
    let f = std::fs::File::open(zip_path).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let mut out = Vec::with_capacity(z.len());
    for i in 0..z.len() {
        let mut m = z.by_index(i).unwrap();
        if !m.name().ends_with(".json") {
            continue;
        }
        let mut s = String::new();
        m.read_to_string(&mut s).unwrap();
        out.push(serde_json::from_str(&s).unwrap());
    }
    out
}

/// One record (`<id>.json`) of an OSV export zip.
pub fn osv_record(zip_path: &Path, id: &str) -> Value {
    let f = std::fs::File::open(zip_path).unwrap();
    let mut z = zip::ZipArchive::new(f).unwrap();
    let mut m = z
        .by_name(&format!("{id}.json"))
        .unwrap_or_else(|e| panic!("{id} in {}: {e}", zip_path.display()));
    let mut s = String::new();
    m.read_to_string(&mut s).unwrap();
    serde_json::from_str(&s).unwrap()
}

/// The `fixed` events of the `ECOSYSTEM` ranges of `affected`.
pub fn fixed_events(affected: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for r in affected["ranges"].as_array().into_iter().flatten() {
        if r["type"] != "ECOSYSTEM" && r["type"] != "SEMVER" {
            continue;
        }
        for e in r["events"].as_array().into_iter().flatten() {
            if let Some(v) = e["fixed"].as_str() {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// The test images directory (holds `oci/`, `rootfs/`, `stage/`), for a
/// test that has passed `transport::require_test_images!(dir)` (which
/// skips, or under CI fails, when they cannot be built here).
pub fn test_images() -> PathBuf {
    transport::testing::test_images_dir().expect("require_test_images!() first")
}

/// The OCI layout of the test images.
pub fn oci_dir() -> PathBuf {
    test_images().join("oci")
}

/// `oci:<layout>:<tag>`.
pub fn oci_target(tag: &str) -> String {
    format!("oci:{}:{tag}", oci_dir().display())
}

/// Run an outside client (`program ARGS...`), require success, and return
/// its standard output, trimmed.
pub fn client(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run `skopeo ARGS...` and require success.
pub fn skopeo(args: &[&str]) {
    client("skopeo", args);
}

/// Copy a test image (every platform) into the registry at `addr` as
/// `dest` (`REPO:TAG`) with skopeo.
pub fn push_test_image(addr: &str, tag: &str, dest: &str) {
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        &oci_target(tag),
        &format!("docker://{addr}/{dest}"),
    ]);
}

/// Whether an outside tool a test needs is `present`. Without it the test
/// skips (and says so), unless the environment variable `required_by` is
/// set (`CI`, or a variable `.ci/run` sets once it has started the tool):
/// then its absence is a failure.
pub fn present_or_skip(present: bool, what: &str, required_by: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os(required_by).is_none(),
            "{what} is required when {required_by} is set (see .ci/run)"
        );
        eprintln!("{what} not available; skipping");
    }
    present
}

/// Whether `program --version` runs: for [`present_or_skip`].
pub fn tool_present(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `drydock serve` on 127.0.0.1, killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Server::start_with_env(data, &[])
    }

    /// Start with extra environment variables.
    pub fn start_with_env(data: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_opts(data, &[], env, None)
    }

    /// Start with extra `serve` arguments and environment variables,
    /// appending standard error (the server's log) to the file `log`, so
    /// a test can read everything the server logged.
    pub fn start_logged(data: &Path, args: &[&str], env: &[(&str, &str)], log: &Path) -> Server {
        Server::start_opts(data, args, env, Some(log))
    }

    fn start_opts(data: &Path, args: &[&str], env: &[(&str, &str)], log: Option<&Path>) -> Server {
        // Another process may take the port between our probe and the
        // server's bind: retry with a new one.
        for _ in 0..5 {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let mut all = vec!["serve", "--listen", &listen];
            all.extend_from_slice(args);
            // A test's own DRYDOCK_CONFIG goes in as `--config` (the same
            // to the binary), so the backend's section can be added to it.
            if let Some((_, cfg)) = env.iter().find(|(k, _)| *k == "DRYDOCK_CONFIG") {
                all.extend(["--config", cfg]);
            }
            let env: Vec<(&str, &str)> = env
                .iter()
                .copied()
                .filter(|(k, _)| *k != "DRYDOCK_CONFIG")
                .collect();
            let stderr = match log {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
                ),
                None => Stdio::piped(),
            };
            let child = drydock(data, &all)
                // The tests' webhooks, import sources and mirrors are on
                // loopback, which the server refuses by default; a test's
                // own `env` may set this again.
                .env("DRYDOCK_OUTBOUND_ALLOW", "127.0.0.0/8,::1/128")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn drydock serve");
            let mut s = Server { child, port };
            if s.wait_ready(Duration::from_secs(60)) {
                return s;
            }
        }
        panic!("drydock serve did not start");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                eprintln!("drydock serve exited ({status}): {err}");
                return false;
            }
            if http_status(self.port, "/readyz") == Some(200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status code of a plain `GET PATH` to 127.0.0.1:PORT.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split(' ').nth(1)?.parse().ok()
}

/// `(ecosystem, name, version)` of each entry of a scan's `packages[]`,
/// optionally only those of one platform.
pub fn package_set(report: &Value, platform: Option<&str>) -> BTreeSet<(String, String, String)> {
    report["packages"]
        .as_array()
        .expect("packages[]")
        .iter()
        .filter(|p| platform.is_none_or(|want| p["platform"] == want))
        .map(|p| {
            (
                p["ecosystem"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `Docker-Content-Digest` of a manifest HEAD on 127.0.0.1:PORT.
pub fn manifest_digest(port: u16, name: &str, reference: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "HEAD /v2/{name}/manifests/{reference} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json\r\n\
         Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = String::new();
    s.read_to_string(&mut head).ok()?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    head.lines()
        .find_map(|l| l.strip_prefix("docker-content-digest: "))
        .map(|d| d.trim().to_string())
}

/// `GET PATH` on 127.0.0.1:PORT, body parsed as JSON.
pub fn get_json(port: u16, path: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
