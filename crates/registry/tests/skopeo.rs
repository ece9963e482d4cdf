//! Real-client test: skopeo copies real images (a multi-arch index
//! included) from an OCI layout into the registry and back out; manifests
//! and blobs must come back byte for byte.
//!
//! Images: transport's test support (`$DRYDOCK_TEST_IMAGES/oci`, else
//! `target/test-images/oci`, built with `scripts/test-images.sh` when
//! missing). Without skopeo or a tool the build needs, the test says which
//! and skips; under CI that is a failure.

mod common;

use std::path::Path;
use std::process::Command;

const TAGS: [&str; 5] = transport::testing::TEST_IMAGE_TAGS;

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
        assert!(
            std::env::var_os("CI").is_none(),
            "skopeo is required when CI is set (.ci/run installs it)"
        );
        eprintln!("skipped: skopeo is not installed (it is the client under test)");
        return;
    }
    // Nothing runs on this runtime yet, so a build blocking it here is harmless.
    let layout = transport::require_test_images!();
    // skopeo cleans paths lexically; hand it a canonical one.
    let layout = std::fs::canonicalize(&layout).expect("canonical test-image layout");
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
