//! What `several_nodes.rs` runs: a SeaweedFS started with the shared
//! tools' `s3-server.sh`, `drydock serve` processes, and a round-robin TCP
//! balancer on loopback that skips a node it cannot connect to (as a
//! balancer's health check would).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running S3 server; killed on drop (its data is a temporary directory).
pub struct S3Server {
    pub port: u16,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
    }
}

fn s3_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/s3-server.sh")
}

fn port_free(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// Start SeaweedFS on free ports, or `None` (after saying why) when the
/// shared tools are not beside the checkout; under CI that fails.
pub fn start_s3() -> Option<S3Server> {
    let script = s3_script();
    if !script.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: {} is missing",
            script.display()
        );
        eprintln!("skipped: no {}", script.display());
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let seed = std::process::id() as u16;
    for attempt in 0..20u16 {
        // It takes PORT..PORT+4 and the same +10000 for gRPC.
        let port = 21000 + (seed.wrapping_mul(13).wrapping_add(attempt * 577)) % 24000;
        if !(0..5).all(|i| port_free(port + i) && port_free(port + i + 10000)) {
            continue;
        }
        let out = Command::new("bash")
            .arg(&script)
            .args(["seaweedfs", &port.to_string()])
            .arg(dir.path().join(format!("weed{attempt}")))
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .output()
            .expect("run s3-server.sh");
        if !out.status.success() {
            eprintln!(
                "seaweedfs on {port}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        let pid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("s3-server.sh prints the PID");
        let server = S3Server {
            port,
            pid,
            _dir: dir,
        };
        wait_for_bucket(port);
        return Some(server);
    }
    panic!("could not start SeaweedFS");
}

/// SeaweedFS answers before its bucket exists (a node would refuse to
/// start): wait until a listing of the bucket succeeds.
fn wait_for_bucket(port: u16) {
    let d = storage::S3Blobs::new(storage::S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        bucket: "registry".into(),
        region: Some("us-east-1".into()),
        path_style: true,
        access_key: Some("testkey".into()),
        secret_key: Some("testsecret".into()),
        ..Default::default()
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match storage::block_on(storage::BlobDriver::ready(&d)) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("the bucket never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// One `drydock serve`.
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

impl Node {
    /// Start `drydock serve` on a free loopback port with `data` and the
    /// configuration file `config`, and wait until `/readyz` answers 200.
    pub async fn start(data: &Path, config: &Path, env: &[(&str, &str)]) -> Node {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension("log");
        for _ in 0..5 {
            let port = free_port();
            let err = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_drydock"))
                .arg("--data")
                .arg(data)
                .arg("--config")
                .arg(config)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .env("RUST_LOG", "warn")
                .env_remove("DRYDOCK_CONFIG")
                .env_remove("DRYDOCK_DATA")
                .env_remove("DRYDOCK_METADATA_URL")
                .env("DRYDOCK_VULNDB_UPDATE_HOURS", "0")
                .env_remove("AWS_CA_BUNDLE")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .expect("spawn drydock serve");
            let mut node = Node {
                child: Some(child),
                port,
                data: data.to_path_buf(),
                log: log.clone(),
            };
            if node.wait_ready().await {
                return node;
            }
            node.kill9();
        }
        panic!(
            "drydock serve did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    async fn wait_ready(&mut self) -> bool {
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if let Ok(r) = c.get(format!("{}/readyz", self.base())).send().await
                && r.status() == 200
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no flush, as a machine that dies.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A round-robin TCP balancer on 127.0.0.1: each new connection goes to
/// the next node; a node that refuses the connection is skipped.
pub struct Balancer {
    pub addr: SocketAddr,
    /// Connections each backend took, by index.
    pub served: Arc<Vec<AtomicUsize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Balancer {
    pub async fn start(backends: Vec<SocketAddr>) -> Balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let counts = served.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let (backends, next, counts) = (backends.clone(), next.clone(), counts.clone());
                tokio::spawn(async move {
                    let start = next.fetch_add(1, Ordering::Relaxed);
                    for k in 0..backends.len() {
                        let i = (start + k) % backends.len();
                        if let Ok(mut out) = tokio::net::TcpStream::connect(backends[i]).await {
                            counts[i].fetch_add(1, Ordering::Relaxed);
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { addr, served, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

/// `skopeo ARGS` with TLS verification off (loopback); its output.
pub async fn skopeo(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new("skopeo")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run skopeo")
    })
    .await
    .unwrap()
}
