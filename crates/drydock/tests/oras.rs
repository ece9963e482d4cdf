//! ORAS (its Python SDK, `oras` from the Python package index) as a real
//! artifact client: it pushes files as an OCI artifact and pulls them
//! back byte for byte; the assessor marks the artifact as not an image.

mod cli_support;

use cli_support::*;
use std::process::Command;
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
import os, sys
import oras.client
host, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
c = oras.client.OrasClient(hostname=host, insecure=True)
os.chdir(src)
r = c.push(target=f"{host}/art/notes:v1", files=["notes.txt", "data.bin"])
assert r.status_code == 201, r.status_code
print(r.headers["Docker-Content-Digest"])
c.pull(target=f"{host}/art/notes:v1", outdir=out)
assert c.get_tags(f"{host}/art/notes") == ["v1"]
"#;

#[test]
fn oras_pushes_and_pulls_an_artifact() {
    let has_oras = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present_or_skip(has_oras, "the oras Python SDK", "CI") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let src = files.path().join("in");
    let out = files.path().join("out");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(src.join("notes.txt"), b"release notes\n").unwrap();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(src.join("data.bin"), &blob).unwrap();

    let server = Server::start(data.path());
    let result = Command::new("python3")
        .args(["-c", SCRIPT, &server.addr()])
        .arg(&src)
        .arg(&out)
        .output()
        .expect("run python3");
    assert!(
        result.status.success(),
        "oras script failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let digest = String::from_utf8_lossy(&result.stdout).trim().to_string();
    assert_eq!(
        manifest_digest(server.port, "art/notes", "v1").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), blob);
    assert_eq!(
        std::fs::read(out.join("notes.txt")).unwrap(),
        b"release notes\n"
    );

    // Not a container image: assessed as such, never cataloged.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = get_json(server.port, &format!("/api/v1/images/{digest}"));
        let finished = matches!(
            v["status"].as_str(),
            Some("done" | "failed" | "unsupported")
        );
        if status == 200 && finished {
            assert_eq!(v["status"], "unsupported", "{v}");
            assert_eq!(v["kind"], "artifact", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "artifact never looked at: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
