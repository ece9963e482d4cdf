//! Real-client test: skopeo copies real images (a multi-arch index
//! included) from an OCI layout into the registry and back out; manifests
//! and blobs must come back byte for byte.
//!
//! Images: `$DRYDOCK_TEST_IMAGES/oci`, else `target/test-images/oci`, else
//! built with `scripts/test-images.sh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const TAGS: &[&str] = &[
    "bookworm-base",
    "python-app",
    "node-app",
    "rust-app",
    "multiarch",
];

fn images() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::env::var_os("DRYDOCK_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/test-images"));
    let layout = out.join("oci");
    let has_all = |p: &Path| {
        std::fs::read_to_string(p.join("index.json"))
            .map(|s| TAGS.iter().all(|t| s.contains(&format!("\"{t}\""))))
            .unwrap_or(false)
    };
    if !has_all(&layout) {
        let status = Command::new("bash")
            .arg(root.join("scripts/test-images.sh"))
            .env("DRYDOCK_TEST_IMAGES", &out)
            .status();
        if !matches!(status, Ok(s) if s.success()) || !has_all(&layout) {
            return None;
        }
    }
    // skopeo cleans paths lexically; hand it a canonical one.
    std::fs::canonicalize(layout).ok()
}

fn skopeo(args: &[&str]) -> (bool, String) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn sha256_file(p: &Path) -> String {
    oci::Digest::sha256_of(&std::fs::read(p).unwrap()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trip() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "skopeo is required in CI");
        eprintln!("skopeo not installed; skipping");
        return;
    }
    let Some(layout) = tokio::task::spawn_blocking(images).await.unwrap() else {
        assert!(std::env::var_os("CI").is_none(), "test images unavailable");
        eprintln!("test images unavailable; skipping");
        return;
    };
    let s = common::start().await;
    let host = format!("127.0.0.1:{}", s.addr.port());
    let out = tempfile::tempdir().unwrap();
    let out_layout = out.path().join("oci");
    let layout2 = layout.clone();
    let host2 = host.clone();
    let out2 = out_layout.clone();
    tokio::task::spawn_blocking(move || {
        for tag in TAGS {
            let src = format!("oci:{}:{tag}", layout2.display());
            let dst = format!("docker://{host2}/test/{tag}:v1");
            let (ok, log) = skopeo(&[
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
                &src,
                &dst,
            ]);
            assert!(ok, "push {tag}: {log}");
            let back = format!("oci:{}:{tag}", out2.display());
            let (ok, log) = skopeo(&[
                "copy",
                "--all",
                "--preserve-digests",
                "--src-tls-verify=false",
                &dst,
                &back,
            ]);
            assert!(ok, "pull {tag}: {log}");
            // The top manifest served is the one pushed, byte for byte.
            let (ok, raw) = skopeo(&[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{host2}/test/{tag}:v1"),
            ]);
            assert!(ok, "{raw}");
            let want = std::fs::read_to_string(layout2.join("index.json")).unwrap();
            let digest = oci::Digest::sha256_of(raw.as_bytes()).to_string();
            assert!(
                want.contains(&digest),
                "{tag}: served manifest {digest} not in source index"
            );
        }
    })
    .await
    .unwrap();

    // Every blob that came back is byte-identical to the source's.
    let mut compared = 0;
    for entry in std::fs::read_dir(out_layout.join("blobs/sha256")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let src = layout.join("blobs/sha256").join(&name);
        assert!(src.exists(), "unexpected blob {name}");
        assert_eq!(sha256_file(&p), format!("sha256:{name}"));
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            std::fs::metadata(&src).unwrap().len()
        );
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} blobs came back");
    // The registry's view matches.
    let repo = oci::Name::parse("test/multiarch").unwrap();
    let m = s.registry.manifests(&repo).unwrap();
    assert_eq!(m.len(), 3, "index and two platform manifests");
}
