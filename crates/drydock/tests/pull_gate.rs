//! The pull gate end to end: `drydock serve` with `[[assess.pull_gate]]`
//! for `gated/*`, the in-repo advisory fixtures imported, and the local
//! `bookworm-base` test image pushed with skopeo into `gated/` and
//! `open/` (both under a policy that makes any finding a violation).
//! Once assessed, `skopeo copy` out of `gated/` fails and its error
//! carries the gate's message; the same image out of `open/` copies.

mod cli_support;

use cli_support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[assess.policy]]
repository = "**"
threshold = "low"
fixable_only = false

[[assess.pull_gate]]
repository = "gated/*"
bypass = ["robot:scanner"]
"#;

#[test]
fn skopeo_cannot_copy_an_unhealthy_image_out_of_a_gated_repository() {
    transport::require_test_images!(dir);
    if !present_or_skip(tool_present("skopeo"), "skopeo", "CI") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let config = d.join("drydock.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let fixtures = format!("{ROOT}/tests/fixtures/vulndata");
    run_ok(d, &["db", "import", &fixtures]);
    let server = Server::start_with_env(d, &[("DRYDOCK_CONFIG", config.to_str().unwrap())]);
    let addr = server.addr();
    for repo in ["gated/debian", "open/debian"] {
        skopeo(&[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &oci_target("bookworm-base"),
            &format!("docker://{addr}/{repo}:bookworm"),
        ]);
    }

    // Wait for the verdict.
    let deadline = Instant::now() + Duration::from_secs(120);
    let digest = loop {
        let (code, v) = get_json(server.port, "/api/v1/images?repository=gated/debian");
        assert_eq!(code, 200, "{v}");
        // The image, not the artifacts attached to it (its SBOM).
        let image = v
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["kind"] == "image");
        if let Some(i) = image
            && i["health"]["status"] == "unhealthy"
        {
            break i["digest"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "never judged unhealthy: {v}");
        std::thread::sleep(Duration::from_millis(250));
    };

    let out_dir = tempfile::tempdir().unwrap();
    let copy = |repo: &str| {
        Command::new("skopeo")
            .args([
                "copy",
                "-q",
                "--src-tls-verify=false",
                &format!("docker://{addr}/{repo}:bookworm"),
                &format!(
                    "oci:{}:{}",
                    out_dir.path().display(),
                    repo.replace('/', "-")
                ),
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run skopeo")
    };
    let refused = copy("gated/debian");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "copy out of gated/ succeeded");
    assert!(
        stderr.contains(&format!(
            "pull refused by the pull gate for gated/*: image {digest} is unhealthy ("
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "see /ui/#/image/{digest} or GET /api/v1/images/{digest}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("denied"), "{stderr}");

    let served = copy("open/debian");
    assert!(
        served.status.success(),
        "{}",
        String::from_utf8_lossy(&served.stderr)
    );
}
