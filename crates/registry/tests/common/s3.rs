//! SeaweedFS on loopback for the S3 blob driver's tests, started with the
//! shared tools' `s3-server.sh` (which fetches the `weed` binary once).

use registry::S3Config;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// A running S3 server; stopped on drop.
pub struct S3Server {
    pub endpoint: String,
    pid: Option<u32>,
    _dir: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // SIGKILL: weed takes long over SIGTERM, and its data is a
            // temporary directory anyway.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/s3-server.sh")
}

/// Whether SeaweedFS can be started here; outside CI a missing
/// `../shared` skips, in CI it fails.
pub fn available() -> bool {
    if std::env::var("DRYDOCK_TEST_S3_ENDPOINT").is_ok() || script().exists() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI: {} is missing (the shared tools must sit beside the clone)",
        script().display()
    );
    eprintln!("no {}: S3 tests skipped", script().display());
    false
}

fn port_free(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// Start SeaweedFS on a free port (it takes PORT..PORT+4 and the same
/// +10000 for gRPC).
pub fn start() -> S3Server {
    if let Ok(e) = std::env::var("DRYDOCK_TEST_S3_ENDPOINT") {
        wait_for_bucket(&e);
        return S3Server {
            endpoint: e,
            pid: None,
            _dir: tempfile::tempdir().unwrap(),
        };
    }
    let dir = tempfile::tempdir().unwrap();
    let seed = std::process::id() as u16;
    for attempt in 0..20u16 {
        let port = 20000 + (seed.wrapping_mul(7).wrapping_add(attempt * 331)) % 25000;
        if !(0..5).all(|i| port_free(port + i) && port_free(port + i + 10000)) {
            continue;
        }
        let out = Command::new("bash")
            .arg(script())
            .args(["seaweedfs", &port.to_string()])
            .arg(dir.path().join(format!("weed{attempt}")))
            // Some S3 clients trip over a CA bundle meant for other hosts.
            .env_remove("AWS_CA_BUNDLE")
            .output()
            .expect("run s3-server.sh");
        if !out.status.success() {
            eprintln!(
                "seaweedfs on {port}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("s3-server.sh prints the PID");
        let server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            pid: Some(pid),
            _dir: dir,
        };
        wait_for_bucket(&server.endpoint);
        return server;
    }
    panic!("could not start SeaweedFS");
}

/// SeaweedFS answers before its bucket exists: wait for the bucket.
fn wait_for_bucket(endpoint: &str) {
    let d = storage::S3Blobs::new(config(endpoint.to_string())).unwrap();
    let mut last = None;
    for _ in 0..150 {
        match storage::block_on(storage::BlobDriver::ready(&d)) {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the bucket at {endpoint} never answered: {last:?}");
}

/// One server for the whole test process (`DRYDOCK_TEST_BLOBS=s3`, and
/// the multi-node tests when CI gave no endpoint). Statics are not
/// dropped, so it is stopped by an `atexit` hook when the test binary
/// exits: each run of such a binary left a SeaweedFS behind before.
pub fn shared_endpoint() -> String {
    static SERVER: Mutex<Option<S3Server>> = Mutex::new(None);
    unsafe extern "C" {
        fn atexit(hook: extern "C" fn()) -> std::ffi::c_int;
    }
    extern "C" fn stop_shared() {
        if let Ok(mut server) = SERVER.lock() {
            drop(server.take());
        }
    }
    assert!(available(), "DRYDOCK_TEST_BLOBS=s3 needs an S3 server");
    let mut server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    if server.is_none() {
        *server = Some(start());
        // SAFETY: registers a plain function with the C runtime; it only
        // takes the lock and drops the server (a `kill` and a directory
        // removal) after `main` has returned.
        unsafe { atexit(stop_shared) };
    }
    server.as_ref().unwrap().endpoint.clone()
}

/// The driver's configuration for `endpoint`: the scripts' bucket and
/// keys, and a prefix of its own so tests never see each other's blobs.
pub fn config(endpoint: String) -> S3Config {
    S3Config {
        endpoint: Some(endpoint),
        bucket: "registry".into(),
        region: Some("us-east-1".into()),
        path_style: true,
        access_key: Some("testkey".into()),
        secret_key: Some("testsecret".into()),
        prefix: unique_prefix(),
        redirect: false,
        part_size: 0,
    }
}

/// A key prefix no other test (in this process or another) uses: the
/// process id, a counter and the time (no uuid: the crates that include
/// this file do not all depend on it).
fn unique_prefix() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("t-{}-{n}-{nanos}/", std::process::id())
}
