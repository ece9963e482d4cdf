//! docker as a real client: the Docker engine pushes an image to drydock,
//! pulls it back, and pulls a multi-platform index that skopeo pushed.
//!
//! Needs a running Docker daemon. `.ci/run` installs and starts one and
//! sets `DRYDOCK_REQUIRE_DOCKER=1`, which turns a missing daemon into a
//! failure; elsewhere the test skips without one. The engine talks plain
//! HTTP to registries on 127.0.0.1 by default.

mod cli_support;

use cli_support::*;
use std::process::Command;

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn daemon_available() -> bool {
    let up = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !up {
        assert!(
            std::env::var_os("DRYDOCK_REQUIRE_DOCKER").is_none(),
            "DRYDOCK_REQUIRE_DOCKER is set but no Docker daemon answers"
        );
        eprintln!("no Docker daemon; skipping");
    }
    up
}

#[test]
fn docker_pushes_and_pulls() {
    if !daemon_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let addr = server.addr();
    let image = format!("{addr}/docker/app:v1");
    // Load a real image into the engine, then push it with docker.
    skopeo(&[
        "copy",
        "-q",
        &oci_target("python-app"),
        &format!("docker-daemon:{image}"),
    ]);
    let out = docker(&["push", &image]);
    let reported = out
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .expect("docker push reports a digest")
        .to_string();
    let served = manifest_digest(server.port, "docker/app", "v1").expect("pushed manifest");
    assert_eq!(
        reported, served,
        "docker pushed another digest than is served"
    );

    // Pull it back from scratch.
    docker(&["rmi", "-f", &image]);
    docker(&["pull", "-q", &image]);
    let repo_digest = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &image,
    ]);
    assert!(
        repo_digest.contains(&served),
        "{repo_digest} lacks {served}"
    );

    // A multi-platform index pushed by skopeo: docker picks its platform.
    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        &oci_target("multiarch"),
        &format!("docker://{addr}/docker/multi:v1"),
    ]);
    let multi = format!("{addr}/docker/multi:v1");
    docker(&["pull", "-q", &multi]);
    docker(&["rmi", "-f", &image, &multi]);
}
