//! podman as a real client: it pulls an image pushed by skopeo and pushes
//! it back under another name (re-compressing the layers on its side).

mod cli_support;

use cli_support::*;
use std::process::Command;

fn podman(args: &[&str]) -> String {
    client("podman", args)
}

#[test]
fn podman_pulls_and_pushes() {
    transport::require_test_images!(dir);
    let installed = Command::new("podman").arg("--version").output().is_ok();
    if !present_or_skip(installed, "podman", "CI") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let addr = server.addr();
    push_test_image(&addr, "bookworm-base", "base/debian:12");
    let served = manifest_digest(server.port, "base/debian", "12").expect("manifest served");

    let src = format!("{addr}/base/debian:12");
    podman(&["pull", "-q", "--tls-verify=false", &src]);
    let pulled = podman(&["image", "inspect", "--format", "{{.Digest}}", &src]);
    assert_eq!(
        pulled, served,
        "podman saw another digest than the registry serves"
    );

    let dst = format!("{addr}/copy/debian:podman");
    podman(&["tag", &src, &dst]);
    podman(&["push", "-q", "--tls-verify=false", &dst]);
    let pushed = manifest_digest(server.port, "copy/debian", "podman").expect("pushed manifest");
    // podman reports the digest it pushed; the registry serves the same one.
    let reported = podman(&[
        "push",
        "-q",
        "--tls-verify=false",
        "--digestfile",
        "/dev/stdout",
        &dst,
    ]);
    assert_eq!(reported, pushed);

    // And podman can pull what it pushed.
    podman(&["rmi", "-f", &src, &dst]);
    podman(&["pull", "-q", "--tls-verify=false", &dst]);
    podman(&["rmi", "-f", &dst]);
}
