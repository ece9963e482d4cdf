//! Test support: the loopback Debian archive (real `.deb` files, indexed
//! and signed with a throwaway key by `make-archive.sh`) and a tiny static
//! file server on 127.0.0.1 that can be told to serve altered bytes.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where `.ci/run` puts the packages (`apt-get download`).
pub fn debs_dir() -> PathBuf {
    std::env::var_os("DRYDOCK_PATCH_DEBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/patch-debs"))
}

/// The archive, built in a temporary directory; `None` (test skipped) on a
/// developer machine without the packages or tools; under CI a panic.
pub fn archive() -> Option<tempfile::TempDir> {
    let debs = debs_dir();
    let have_debs = std::fs::read_dir(&debs)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.path().extension().is_some_and(|x| x == "deb"))
        })
        .unwrap_or(false);
    let tools = ["dpkg-scanpackages", "gpg", "xz"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !have_debs || !tools {
        let why = format!(
            "patch tests need the packages in {} (.ci/run: apt-get download) and dpkg-scanpackages, gpg, xz",
            debs.display()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{why}");
        }
        eprintln!("skipped: {why}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        // Both the patch crate and the binary's tests use this module.
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../patch/tests/make-archive.sh"))
        .arg(&debs)
        .arg(dir.path().join("archive"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make-archive.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

/// Index `root/pool/main` of an archive [`archive`] built again and sign a
/// new `InRelease` with the same throwaway key (the archive gained or lost
/// packages, as a mirror does).
pub fn resign(root: &Path) {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../patch/tests/make-archive.sh"))
        .arg("--resign")
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make-archive.sh --resign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A static file server over `root`, on 127.0.0.1.
pub struct FileServer {
    pub url: String,
    /// Path (after the leading `/`) → bytes served instead of the file.
    pub overrides: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Paths never answered: the connection stays open, silent (a stalled
    /// mirror, to catch a patch job in the middle).
    pub stalled: Arc<Mutex<HashSet<String>>>,
}

pub async fn serve(root: PathBuf) -> FileServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let overrides: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let ov = overrides.clone();
    let stalled: Arc<Mutex<HashSet<String>>> = Arc::default();
    let st = stalled.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let root = root.clone();
            let ov = ov.clone();
            let st = st.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                if st.lock().unwrap().contains(&path) {
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                    return;
                }
                let body = if path.split('/').any(|c| c == "..") {
                    None
                } else if let Some(b) = ov.lock().unwrap().get(&path) {
                    Some(b.clone())
                } else {
                    std::fs::read(root.join(&path)).ok()
                };
                let resp = match body {
                    Some(b) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            b.len()
                        )
                        .into_bytes();
                        r.extend(b);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = sock.write_all(&resp).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    FileServer {
        url,
        overrides,
        stalled,
    }
}

/// The loopback egress policy the tests use.
pub fn loopback() -> egress::EgressPolicy {
    egress::EgressPolicy::parse_allow(&["127.0.0.0/8".to_string()]).unwrap()
}

/// The signed archive served on loopback, the key it is signed with and a
/// fetcher with a cache of its own: where each archive test starts.
pub struct FetchSetup {
    /// The archive's root (`dists/`, `pool/`, the keyrings).
    pub root: PathBuf,
    pub srv: FileServer,
    /// The archive's own key (`keyring.gpg`).
    pub keyring: patch::archive::Keyring,
    pub fetcher: patch::archive::Fetcher,
    /// The fetcher's data directory (its `patch-cache/`).
    pub data: tempfile::TempDir,
    /// The archive's directory, removed when dropped.
    _archive: tempfile::TempDir,
}

/// [`archive`] served by [`serve`], with a fetcher under [`loopback`];
/// `None` when the archive is skipped.
pub async fn fetch_setup() -> Option<FetchSetup> {
    let dir = archive()?;
    let root = dir.path().join("archive");
    let srv = serve(root.clone()).await;
    let keyring = patch::archive::Keyring::load(&root.join("keyring.gpg")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let fetcher = patch::archive::Fetcher::new(data.path(), loopback()).unwrap();
    Some(FetchSetup {
        root,
        srv,
        keyring,
        fetcher,
        data,
        _archive: dir,
    })
}
