//! docker and containerd as real clients: the Docker engine pushes an image
//! to drydock, pulls it back, and pulls a multi-platform index that skopeo
//! pushed; containerd copies an index between repositories.
//!
//! Needs a running Docker daemon. `.ci/run` installs and starts one and
//! sets `DRYDOCK_REQUIRE_DOCKER=1`, which turns a missing daemon into a
//! failure; elsewhere the test skips without one. The engine talks plain
//! HTTP to registries on 127.0.0.1 by default.

mod cli_support;

use cli_support::*;
use std::process::Command;

fn docker(args: &[&str]) -> String {
    client("docker", args)
}

fn daemon_available() -> bool {
    let up = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    present_or_skip(up, "a Docker daemon", "DRYDOCK_REQUIRE_DOCKER")
}

#[test]
fn docker_pushes_and_pulls() {
    transport::require_test_images!(dir);
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
    push_test_image(&addr, "multiarch", "docker/multi:v1");
    let multi = format!("{addr}/docker/multi:v1");
    docker(&["pull", "-q", &multi]);
    docker(&["rmi", "-f", &image, &multi]);
}

/// containerd's socket: the engine's own, or a standalone daemon's.
fn containerd_socket() -> Option<&'static str> {
    [
        "/var/run/docker/containerd/containerd.sock",
        "/run/containerd/containerd.sock",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

fn ctr(socket: &str, args: &[&str]) -> String {
    let mut all = vec!["-a", socket, "-n", "drydock-test"];
    all.extend_from_slice(args);
    client("ctr", &all)
}

/// containerd (through `ctr`, the engine's containerd) pulls every
/// platform of an index and pushes it to another repository: the same
/// index digest arrives.
#[test]
fn containerd_pulls_and_pushes_an_index() {
    transport::require_test_images!(dir);
    if !daemon_available() {
        return;
    }
    let socket = containerd_socket();
    if !present_or_skip(
        socket.is_some(),
        "containerd's socket",
        "DRYDOCK_REQUIRE_DOCKER",
    ) {
        return;
    }
    let socket = socket.expect("present");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let addr = server.addr();
    push_test_image(&addr, "multiarch", "ctr/src:v1");
    let src = format!("{addr}/ctr/src:v1");
    let dst = format!("{addr}/ctr/dst:v1");
    ctr(
        socket,
        &["images", "pull", "--all-platforms", "--plain-http", &src],
    );
    ctr(socket, &["images", "tag", "--force", &src, &dst]);
    ctr(socket, &["images", "push", "--plain-http", &dst]);
    // The index digest is the one skopeo pushed, in both repositories.
    let index_digest = |name: &str| {
        let out = Command::new("curl")
            .args([
                "-sfI",
                "-H",
                "Accept: application/vnd.oci.image.index.v1+json",
                &format!("http://{addr}/v2/{name}/manifests/v1"),
            ])
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("docker-content-digest: "))
            .map(|d| d.trim().to_string())
            .unwrap_or_else(|| panic!("no index at {name}"))
    };
    assert_eq!(index_digest("ctr/src"), index_digest("ctr/dst"));
    ctr(socket, &["images", "rm", &src, &dst]);
}
