//! Test support (feature `test-support`): the real test images, Debian's
//! `docker-registry` on loopback, and a minimal Distribution API server of
//! our own that can demand a bearer token and cut blob downloads midway.
//! Everything listens on 127.0.0.1 only.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// The tags every test-image caller may use.
pub const TEST_IMAGE_TAGS: [&str; 5] = [
    "bookworm-base",
    "python-app",
    "node-app",
    "rust-app",
    "multiarch",
];

/// The OCI layout holding the real test images (`bookworm-base`,
/// `python-app`, `node-app`, `rust-app`, `multiarch`), or `None` when they
/// cannot be had here. See [`test_images_dir`].
pub fn test_images() -> Option<PathBuf> {
    test_images_dir().map(|d| d.join("oci"))
}

/// The directory of the real test images (`oci/`, `rootfs/`, `stage/`):
/// `$DRYDOCK_TEST_IMAGES`, else `target/test-images`, built with
/// `scripts/test-images.sh` when an image is missing.
///
/// When the build needs a tool that is not on `PATH`, the caller is told
/// `skipped: ...` and gets `None`: a developer's machine need not carry
/// debootstrap and umoci. Under CI (`CI` set) that is a failure naming the
/// tool, so a missing install step cannot hide. A build that starts and
/// fails is always a failure.
pub fn test_images_dir() -> Option<PathBuf> {
    // One decision (and at most one build) per test binary.
    static DIR: std::sync::Mutex<Option<Result<PathBuf, MissingBuildTool>>> =
        std::sync::Mutex::new(None);
    let mut guard = DIR.lock().unwrap_or_else(|p| p.into_inner());
    let found = guard.get_or_insert_with(find_or_build_test_images).clone();
    drop(guard);
    match found {
        Ok(dir) => Some(dir),
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the test images cannot be built with CI set: {why} (.ci/run installs it)"
            );
            eprintln!("skipped: the test images are not built and {why}");
            None
        }
    }
}

/// The test images (`oci/` inside) or, when a tool to build them is
/// missing, which one; fails (panics) when a build is tried and fails.
fn find_or_build_test_images() -> Result<PathBuf, MissingBuildTool> {
    let base = std::env::var_os("DRYDOCK_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-images"));
    let tags = layout_tags(&base.join("oci"));
    let missing: Vec<&str> = TEST_IMAGE_TAGS
        .into_iter()
        .filter(|t| !tags.iter().any(|have| have == t))
        .collect();
    if missing.is_empty() {
        return Ok(base);
    }
    if let Some(why) = missing_build_tool(&base, &missing) {
        return Err(why);
    }
    let status = Command::new("bash")
        .arg(workspace_root().join("scripts/test-images.sh"))
        .args(&missing)
        .env("DRYDOCK_TEST_IMAGES", &base)
        .status()
        .expect("run scripts/test-images.sh");
    assert!(
        status.success(),
        "scripts/test-images.sh {} failed ({status}); its log: {}",
        missing.join(" "),
        base.join("build.log").display()
    );
    let tags = layout_tags(&base.join("oci"));
    for t in TEST_IMAGE_TAGS {
        assert!(
            tags.iter().any(|have| have == t),
            "test image {t} missing after the build"
        );
    }
    Ok(base)
}

/// The `ref.name` tags of the OCI layout at `oci` (none if unreadable).
fn layout_tags(oci: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(oci.join("index.json")) else {
        return Vec::new();
    };
    let Ok(index) = serde_json::from_slice::<oci::ImageIndex>(&bytes) else {
        return Vec::new();
    };
    index
        .manifests
        .into_iter()
        .filter_map(|d| d.annotations?.remove(oci::layout::REF_NAME))
        .collect()
}

/// Why the test images cannot be built here: a tool the build needs is
/// missing (the message is the skip's, or under CI the failure's, reason).
#[derive(Debug, Clone, thiserror::Error)]
enum MissingBuildTool {
    #[error("debootstrap (or mmdebstrap) is not on PATH (it builds the bookworm-base rootfs)")]
    Debootstrap,
    #[error("{tool} is not on PATH (it is needed for {what})")]
    NotOnPath {
        tool: &'static str,
        what: &'static str,
    },
    #[error("python3 has no pip module (`python3 -m pip` installs python-app's packages)")]
    Pip,
}

/// Why `scripts/make-images.sh` cannot build the `missing` images here
/// (a tool it needs is not on `PATH`), or `None` when it can. Steps whose
/// output is already cached (`rootfs/bookworm.ok`, `stage/<image>.ok`)
/// need no tool.
fn missing_build_tool(base: &Path, missing: &[&str]) -> Option<MissingBuildTool> {
    let cached = |rel: &str| base.join(rel).exists();
    let mut needs: Vec<(&str, &str)> = vec![
        ("bash", "the build script"),
        ("umoci", "assembling every image"),
        ("skopeo", "checking the built layout"),
        ("python3", "the layout summary and the multiarch index"),
    ];
    // Every app image sits on bookworm-base, built from a debootstrap rootfs.
    if !cached("rootfs/bookworm.ok") {
        let debootstrap = on_path("debootstrap") || on_path("mmdebstrap");
        if !debootstrap {
            return Some(MissingBuildTool::Debootstrap);
        }
    }
    if missing.contains(&"node-app") && !cached("stage/node-app.ok") {
        needs.push(("npm", "node-app's packages"));
    }
    if missing.contains(&"rust-app") && !cached("stage/rust-app.ok") {
        needs.push(("cargo", "rust-app's lock file and binary"));
    }
    for (tool, what) in needs {
        if !on_path(tool) {
            return Some(MissingBuildTool::NotOnPath { tool, what });
        }
    }
    if missing.contains(&"python-app") && !cached("stage/python-app.ok") {
        let pip = Command::new("python3")
            .args(["-m", "pip", "--version"])
            .stdin(std::process::Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if !pip {
            return Some(MissingBuildTool::Pip);
        }
    }
    None
}

/// Whether an executable file named `program` is in a `PATH` directory.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The test-image layout for a test, or return from the test (after
/// `skipped: <why>`) when the images cannot be built here; under CI a
/// missing tool fails the test instead. `require_test_images!(dir)` gives
/// the directory holding `oci/`, `rootfs/` and `stage/`.
#[macro_export]
macro_rules! require_test_images {
    () => {
        match $crate::testing::test_images() {
            ::std::option::Option::Some(p) => p,
            ::std::option::Option::None => return,
        }
    };
    (dir) => {
        match $crate::testing::test_images_dir() {
            ::std::option::Option::Some(p) => p,
            ::std::option::Option::None => return,
        }
    };
}

/// A free TCP port on loopback (racy, but good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Debian's `docker-registry` (CNCF distribution) on 127.0.0.1, started with
/// `scripts/peer-registry.sh`; stopped when dropped.
pub struct PeerRegistry {
    pub port: u16,
    pid: u32,
    _dir: tempfile::TempDir,
}

impl PeerRegistry {
    /// Start one, or `None` (with a note) when the tool is not installed;
    /// under CI (`CI` set) its absence is a failure.
    pub fn start() -> Option<PeerRegistry> {
        let script = workspace_root().join("scripts/peer-registry.sh");
        if Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "docker-registry (Debian package docker-registry) is required when CI is set (see .ci/run)"
            );
            eprintln!("docker-registry not available; skipping");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        for _ in 0..5 {
            let port = free_port();
            let out = Command::new("bash")
                .arg(&script)
                .arg(port.to_string())
                .arg(&store)
                .arg(dir.path().join("registry.log"))
                .output()
                .expect("run peer-registry.sh");
            if out.status.success() {
                let pid = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .last()
                    .and_then(|l| l.trim().parse().ok())
                    .expect("peer-registry.sh prints a PID");
                return Some(PeerRegistry {
                    port,
                    pid,
                    _dir: dir,
                });
            }
        }
        panic!("could not start docker-registry");
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for PeerRegistry {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}

/// The manifest digest the test images' index gives `tag` (for a test
/// that has passed [`require_test_images!`]).
pub fn test_image_digest(tag: &str) -> oci::Digest {
    let layout = test_images().expect("test images (require_test_images!() first)");
    let index: oci::ImageIndex =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index
        .manifests
        .into_iter()
        .find(|d| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .is_some_and(|t| t == tag)
        })
        .unwrap_or_else(|| panic!("tag {tag} not in the test images"))
        .digest
}

/// A one-image OCI layout written into `dir`: one uncompressed layer
/// holding `layer`, a minimal config, and an index entry named `tag` (if
/// given). Returns the manifest's digest and text and the layer's digest,
/// so a test can corrupt either.
pub fn write_one_layer_layout(
    dir: &Path,
    layer: &[u8],
    tag: Option<&str>,
) -> (oci::Digest, String, oci::Digest) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| {
        let d = oci::Digest::sha256_of(bytes);
        std::fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        d
    };
    let layer_d = put(layer);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_d = put(config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{layer_d}","size":{}}}]}}"#,
        oci::OCI_MANIFEST,
        oci::OCI_CONFIG,
        config.len(),
        oci::OCI_LAYER_TAR,
        layer.len()
    );
    let manifest_d = put(manifest.as_bytes());
    let annotations = tag
        .map(|t| format!(r#","annotations":{{"org.opencontainers.image.ref.name":"{t}"}}"#))
        .unwrap_or_default();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{manifest_d}","size":{}{annotations}}}]}}"#,
            oci::OCI_MANIFEST,
            manifest.len()
        ),
    )
    .unwrap();
    (manifest_d, manifest, layer_d)
}

/// `skopeo copy` with TLS verification off on both sides (loopback only).
pub fn skopeo_copy(from: &str, to: &str, extra: &[&str]) {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .args(extra)
        .arg(from)
        .arg(to)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that cuts connections:
/// once a connection has carried `cut_after` bytes towards the client, it is
/// closed mid-stream, at most `max_cuts` times in all. In front of a real
/// registry it cuts blob downloads midway.
pub struct CuttingProxy {
    pub addr: SocketAddr,
    pub cuts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    pub async fn start(upstream: SocketAddr, cut_after: u64, max_cuts: usize) -> CuttingProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cuts = Arc::new(AtomicUsize::new(0));
        let counter = cuts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let cuts = counter.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                        let _ = sw.shutdown().await;
                    });
                    let mut sent = 0u64;
                    let mut buf = vec![0u8; 16 << 10];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let cut_here = sent + n as u64 > cut_after
                            && cuts
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                                    (c < max_cuts).then_some(c + 1)
                                })
                                .is_ok();
                        if cut_here {
                            let keep = (cut_after - sent) as usize;
                            let _ = cw.write_all(&buf[..keep]).await;
                            break;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent += n as u64;
                    }
                    up.abort();
                    // Dropping both halves closes the client's connection.
                });
            }
        });
        CuttingProxy { addr, cuts, task }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Options for [`MiniRegistry`].
#[derive(Clone, Default)]
pub struct MiniOptions {
    /// Demand a bearer token from our `/token` endpoint, which wants these
    /// Basic credentials (or none, if `None` inside).
    pub token_auth: Option<Option<(String, String)>>,
    /// Demand HTTP Basic with these credentials.
    pub basic_auth: Option<(String, String)>,
    /// Cut the first download of every blob larger than this after half
    /// its bytes.
    pub cut_blobs_over: Option<u64>,
    /// Answer the first request of every blob with a 503.
    pub flaky: bool,
    /// Wait this long before answering each blob request.
    pub blob_delay: Option<std::time::Duration>,
    /// Ignore `Range` headers (answer 200 with the whole blob).
    pub ignore_range: bool,
    /// Serve HTTPS with a certificate for 127.0.0.1 from a fresh test CA
    /// ([`MiniRegistry::ca_pem`]).
    pub tls: bool,
}

/// Counters a test can check.
#[derive(Default)]
pub struct MiniStats {
    pub cuts: AtomicUsize,
    pub range_requests: AtomicUsize,
    pub token_requests: AtomicUsize,
    pub blob_requests: AtomicUsize,
    pub unauthorized: AtomicUsize,
}

struct Mini {
    layout: PathBuf,
    opts: MiniOptions,
    stats: Arc<MiniStats>,
    addr: SocketAddr,
    seen: std::sync::Mutex<HashMap<String, usize>>,
}

const TOKEN: &str = "test-token-7f3a";

/// A read-only Distribution API server over an OCI layout: any repository
/// name serves the layout; tags are its `ref.name` annotations.
pub struct MiniRegistry {
    pub addr: SocketAddr,
    pub stats: Arc<MiniStats>,
    /// The test CA's certificate (PEM) when serving TLS.
    pub ca_pem: Option<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl MiniRegistry {
    pub async fn start(layout: PathBuf, opts: MiniOptions) -> MiniRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(MiniStats::default());
        let tls = opts.tls;
        let state = Arc::new(Mini {
            layout,
            opts,
            stats: stats.clone(),
            addr,
            seen: Default::default(),
        });
        let app = Router::new()
            .route("/token", get(token))
            .route("/v2/", get(ping))
            .route("/v2/{*rest}", get(v2))
            .with_state(state);
        let (task, ca_pem) = if tls {
            let (acceptor, ca) = test_tls();
            let listener = TlsListener {
                tcp: listener,
                acceptor,
            };
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.expect("serve");
            });
            (task, Some(ca))
        } else {
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.expect("serve");
            });
            (task, None)
        };
        MiniRegistry {
            addr,
            stats,
            ca_pem,
            task,
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for MiniRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unauthorized(m: &Mini, name: &str) -> Response {
    m.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
    let challenge = if m.opts.token_auth.is_some() {
        format!(
            "Bearer realm=\"{}://{}/token\",service=\"mini\",scope=\"repository:{name}:pull\"",
            if m.opts.tls { "https" } else { "http" },
            m.addr
        )
    } else {
        "Basic realm=\"mini\"".to_string()
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
        .into_response()
}

fn basic_ok(headers: &HeaderMap, want: &(String, String)) -> bool {
    use base64_lite::encode;
    let expect = format!(
        "Basic {}",
        encode(format!("{}:{}", want.0, want.1).as_bytes())
    );
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expect)
}

fn authorised(m: &Mini, headers: &HeaderMap) -> bool {
    if m.opts.token_auth.is_some() {
        return headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    }
    match &m.opts.basic_auth {
        Some(c) => basic_ok(headers, c),
        None => true,
    }
}

async fn ping(State(m): State<Arc<Mini>>, headers: HeaderMap) -> Response {
    if !authorised(&m, &headers) {
        return unauthorized(&m, "");
    }
    (StatusCode::OK, "{}").into_response()
}

async fn token(
    State(m): State<Arc<Mini>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    m.stats.token_requests.fetch_add(1, Ordering::Relaxed);
    let Some(want) = &m.opts.token_auth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if q.get("service").map(String::as_str) != Some("mini") || !q.contains_key("scope") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    if let Some(c) = want
        && !basic_ok(&headers, c)
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // Alternate the field name so both spellings get exercised.
    let n = m.stats.token_requests.load(Ordering::Relaxed);
    let field = if n % 2 == 1 { "token" } else { "access_token" };
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"{field}":"{TOKEN}","expires_in":300}}"#),
    )
        .into_response()
}

async fn v2(
    State(m): State<Arc<Mini>>,
    UrlPath(rest): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let (name, kind, reference) = if let Some((n, r)) = rest.rsplit_once("/manifests/") {
        (n, "manifests", r)
    } else if let Some((n, r)) = rest.rsplit_once("/blobs/") {
        (n, "blobs", r)
    } else if let Some(n) = rest.strip_suffix("/tags/list") {
        (n, "tags", "")
    } else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !authorised(&m, &headers) {
        return unauthorized(&m, name);
    }
    let index: oci::ImageIndex = match std::fs::read(m.layout.join("index.json")) {
        Ok(b) => serde_json::from_slice(&b).expect("index.json"),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let ref_name = |d: &oci::Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(oci::layout::REF_NAME).cloned())
    };
    let not_found = |code: &str| {
        (
            StatusCode::NOT_FOUND,
            format!(r#"{{"errors":[{{"code":"{code}","message":"not found"}}]}}"#),
        )
            .into_response()
    };
    match kind {
        "tags" => {
            let tags: Vec<String> = index.manifests.iter().filter_map(ref_name).collect();
            axum::Json(serde_json::json!({"name": name, "tags": tags})).into_response()
        }
        "manifests" => {
            let desc = index
                .manifests
                .iter()
                .find(|d| ref_name(d).as_deref() == Some(reference))
                .cloned();
            let (digest, media_type) = match (desc, oci::Digest::parse(reference)) {
                (Some(d), _) => (d.digest, Some(d.media_type)),
                (None, Ok(d)) => (d, None),
                _ => return not_found("MANIFEST_UNKNOWN"),
            };
            let path = m.layout.join("blobs/sha256").join(digest.hex());
            let Ok(bytes) = std::fs::read(path) else {
                return not_found("MANIFEST_UNKNOWN");
            };
            let media_type = match media_type {
                Some(t) => t,
                None => oci::Manifest::parse(&bytes, None)
                    .map(|p| p.media_type().to_string())
                    .unwrap_or_default(),
            };
            (
                [
                    (header::CONTENT_TYPE, media_type),
                    (
                        header::HeaderName::from_static("docker-content-digest"),
                        digest.to_string(),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        _ => {
            m.stats.blob_requests.fetch_add(1, Ordering::Relaxed);
            if let Some(d) = m.opts.blob_delay {
                tokio::time::sleep(d).await;
            }
            let Ok(digest) = oci::Digest::parse(reference) else {
                return not_found("DIGEST_INVALID");
            };
            let path = m.layout.join("blobs/sha256").join(digest.hex());
            let Ok(mut file) = tokio::fs::File::open(&path).await else {
                return not_found("BLOB_UNKNOWN");
            };
            let len = file.metadata().await.expect("metadata").len();
            let attempt = {
                let mut seen = m.seen.lock().expect("seen");
                let n = seen.entry(digest.to_string()).or_default();
                *n += 1;
                *n
            };
            if m.opts.flaky && attempt == 1 {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let start = headers
                .get(header::RANGE)
                .filter(|_| !m.opts.ignore_range)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes="))
                .and_then(|v| v.strip_suffix('-'))
                .and_then(|v| v.parse::<u64>().ok());
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            let mut status = StatusCode::OK;
            let mut extra = Vec::new();
            if let Some(s) = start {
                m.stats.range_requests.fetch_add(1, Ordering::Relaxed);
                if s >= len {
                    return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                }
                file.seek(std::io::SeekFrom::Start(s)).await.expect("seek");
                status = StatusCode::PARTIAL_CONTENT;
                extra.push((
                    header::CONTENT_RANGE,
                    format!("bytes {s}-{}/{len}", len - 1),
                ));
            }
            let from = start.unwrap_or(0);
            let remaining = len - from;
            let cut =
                start.is_none() && m.opts.cut_blobs_over.is_some_and(|n| len > n) && attempt <= 2;
            let body = if cut {
                m.stats.cuts.fetch_add(1, Ordering::Relaxed);
                let half = tokio_util::io::ReaderStream::new(file.take(remaining / 2));
                let fail = futures::stream::once(async {
                    Err::<bytes::Bytes, _>(std::io::Error::other("cut on purpose"))
                });
                Body::from_stream(half.chain(fail))
            } else {
                Body::from_stream(tokio_util::io::ReaderStream::new(file.take(remaining)))
            };
            let mut resp = Response::new(body);
            *resp.status_mut() = status;
            let h = resp.headers_mut();
            h.insert(header::CONTENT_LENGTH, remaining.into());
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(
                header::HeaderName::from_static("docker-content-digest"),
                digest.to_string().parse().expect("header"),
            );
            for (k, v) in extra {
                h.insert(k, v.parse().expect("header"));
            }
            resp
        }
    }
}

/// A fresh CA and a certificate for 127.0.0.1 signed by it: the acceptor
/// and the CA's PEM (to trust in the client).
fn test_tls() -> (tokio_rustls::TlsAcceptor, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use tokio_rustls::rustls;
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "drydock test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .expect("server config");
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca.pem().into_bytes(),
    )
}

struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // Handshakes that fail (a plain-HTTP client) are dropped.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Just enough base64 for Basic credentials in tests.
mod base64_lite {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pub fn encode(input: &[u8]) -> String {
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
    #[test]
    fn encodes() {
        assert_eq!(encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(encode(b"ab"), "YWI=");
        assert_eq!(encode(b"a"), "YQ==");
    }
}
