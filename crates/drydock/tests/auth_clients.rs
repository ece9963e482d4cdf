//! Real clients against `drydock serve --auth`: docker, containerd's `ctr`,
//! podman, skopeo and ORAS's Python SDK log in (users and robots made with
//! the CLI), push and pull what their grants allow and are refused the
//! rest; `drydock import` copies from another drydock that demands
//! credentials. Every test ends by checking that no password, robot
//! secret or token it used appears in any server's log or in the output
//! of the commands it ran.
//!
//! A missing tool skips its test outside CI and fails it under CI (docker
//! and `ctr` follow `DRYDOCK_REQUIRE_DOCKER`, as in docker.rs).

mod auth_clients_support;
mod cli_support;

use auth_clients_support::*;
use cli_support::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn docker_logs_in_pushes_pulls_and_is_refused_elsewhere() {
    transport::require_test_images!(dir);
    if !daemon_available() {
        return;
    }
    let Setup { mut w, alice, .. } = setup();
    let port = w.port(0);
    let addr = w.addr(0);
    let config = w.path("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let docker = |args: &[&str]| {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", &config).args(args);
        c
    };

    // A login without a password, and with a wrong one, fail.
    w.run(
        "docker login (no password)",
        docker(&["login", &addr, "-u", "alice", "--password-stdin"]),
        "",
    )
    .expect_fail("login");
    let wrong = random("wrongpw");
    w.secret("a wrong password", &wrong);
    w.run(
        "docker login (wrong password)",
        docker(&["login", &addr, "-u", "alice", "--password-stdin"]),
        &wrong,
    )
    .expect_fail("unauthorized");

    w.run(
        "docker login",
        docker(&["login", &addr, "-u", "alice", "--password-stdin"]),
        &alice,
    )
    .expect_ok();
    // docker keeps the refresh token the token flow gave as its identity
    // token: another secret that must stay out of the logs.
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(config.join("config.json")).unwrap())
            .unwrap();
    let entry = &stored["auths"][&addr];
    assert!(
        entry.is_object(),
        "docker stored no login for {addr}: {stored}"
    );
    if let Some(t) = entry["identitytoken"].as_str() {
        w.secret("docker's identity token", t);
    }

    let image = format!("{addr}/team-a/app:v1");
    let load = {
        let mut c = Command::new("skopeo");
        c.args([
            "copy",
            "-q",
            &oci_target("python-app"),
            &format!("docker-daemon:{image}"),
        ]);
        c
    };
    w.run("skopeo copy to the engine", load, "").expect_ok();
    let pushed = w
        .run("docker push", docker(&["push", &image]), "")
        .expect_ok()
        .stdout();
    let reported = pushed
        .split_whitespace()
        .skip_while(|x| *x != "digest:")
        .nth(1)
        .expect("docker push reports a digest")
        .to_string();
    assert_eq!(
        digest_as(port, ("alice", &alice), "team-a/app", "v1").as_deref(),
        Some(reported.as_str())
    );

    // Outside the grant: refused, nothing stored.
    let outside = format!("{addr}/team-b/app:v1");
    w.run("docker tag", docker(&["tag", &image, &outside]), "")
        .expect_ok();
    w.run(
        "docker push (outside the grant)",
        docker(&["push", &outside]),
        "",
    )
    .expect_fail("denied");
    let admin = w.admin.clone();
    assert_eq!(digest_as(port, ("admin", &admin), "team-b/app", "v1"), None);

    // Pull it back from scratch.
    w.run("docker rmi", docker(&["rmi", "-f", &image, &outside]), "")
        .expect_ok();
    w.run("docker pull", docker(&["pull", "-q", &image]), "")
        .expect_ok();
    let digests = w
        .run(
            "docker inspect",
            docker(&[
                "image",
                "inspect",
                "--format",
                "{{json .RepoDigests}}",
                &image,
            ]),
            "",
        )
        .expect_ok()
        .stdout();
    assert!(digests.contains(&reported), "{digests} lacks {reported}");

    // After logout the engine is anonymous again: the pull is refused.
    w.run("docker logout", docker(&["logout", &addr]), "")
        .expect_ok();
    w.run("docker rmi", docker(&["rmi", "-f", &image]), "")
        .expect_ok();
    w.run(
        "docker pull (logged out)",
        docker(&["pull", "-q", &image]),
        "",
    )
    .expect_fail("");
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(config.join("config.json")).unwrap())
            .unwrap();
    assert!(after["auths"][&addr].is_null(), "still logged in: {after}");
    w.assert_no_leaks();
}

fn containerd_socket() -> Option<&'static str> {
    [
        "/var/run/docker/containerd/containerd.sock",
        "/run/containerd/containerd.sock",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

#[test]
fn containerd_pulls_and_pushes_with_credentials() {
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
    let socket = socket.unwrap();
    let Setup { mut w, robot, .. } = setup();
    let addr = w.addr(0);
    let port = w.port(0);
    let admin = w.admin.clone();
    skopeo_as(
        &mut w,
        "admin",
        &admin,
        &["--all", "--dest-tls-verify=false"],
        &oci_target("multiarch"),
        &format!("docker://{addr}/ci/app:src"),
    )
    .expect_ok();
    let creds = format!("{}:{}", robot.0, robot.1);
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.args(["-a", socket, "-n", "drydock-auth-test"]).args(args);
        c
    };
    let src = format!("{addr}/ci/app:src");
    let dst = format!("{addr}/ci/app:copy");
    w.run(
        "ctr pull (anonymous)",
        ctr(&["images", "pull", "--plain-http", &src]),
        "",
    )
    .expect_fail("");
    w.run(
        "ctr pull",
        ctr(&[
            "images",
            "pull",
            "--all-platforms",
            "--plain-http",
            "--user",
            &creds,
            &src,
        ]),
        "",
    )
    .expect_ok();
    w.run(
        "ctr tag",
        ctr(&["images", "tag", "--force", &src, &dst]),
        "",
    )
    .expect_ok();
    w.run(
        "ctr push",
        ctr(&["images", "push", "--plain-http", "--user", &creds, &dst]),
        "",
    )
    .expect_ok();
    let robot_creds = (robot.0.as_str(), robot.1.as_str());
    assert_eq!(
        digest_as(port, robot_creds, "ci/app", "copy"),
        digest_as(port, robot_creds, "ci/app", "src")
    );
    assert!(digest_as(port, robot_creds, "ci/app", "copy").is_some());
    // The robot's grant is one repository.
    let other = format!("{addr}/other/base:1");
    w.run(
        "ctr pull (outside the grant)",
        ctr(&["images", "pull", "--plain-http", "--user", &creds, &other]),
        "",
    )
    .expect_fail("");
    w.run("ctr rm", ctr(&["images", "rm", &src, &dst]), "")
        .expect_ok();
    w.assert_no_leaks();
}

#[test]
fn podman_logs_in_pushes_and_pulls_its_namespace_only() {
    transport::require_test_images!(dir);
    if !present_or_skip(installed("podman", "--version"), "podman", "CI") {
        return;
    }
    let Setup { mut w, alice, .. } = setup();
    let addr = w.addr(0);
    let port = w.port(0);
    let admin = w.admin.clone();
    skopeo_as(
        &mut w,
        "admin",
        &admin,
        &["--dest-tls-verify=false"],
        &oci_target("bookworm-base"),
        &format!("docker://{addr}/team-a/base:12"),
    )
    .expect_ok();
    let auth_file = w.path("podman-auth.json");
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.env("REGISTRY_AUTH_FILE", &auth_file).args(args);
        c
    };
    let wrong = random("wrongpw");
    w.secret("a wrong password", &wrong);
    w.run(
        "podman login (wrong password)",
        podman(&[
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "--password-stdin",
            &addr,
        ]),
        &wrong,
    )
    .expect_fail("");
    w.run(
        "podman login",
        podman(&[
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "--password-stdin",
            &addr,
        ]),
        &alice,
    )
    .expect_ok();

    let src = format!("{addr}/team-a/base:12");
    w.run(
        "podman pull",
        podman(&["pull", "-q", "--tls-verify=false", &src]),
        "",
    )
    .expect_ok();
    let dst = format!("{addr}/team-a/podman:v1");
    w.run("podman tag", podman(&["tag", &src, &dst]), "")
        .expect_ok();
    let reported = w
        .run(
            "podman push",
            podman(&[
                "push",
                "-q",
                "--tls-verify=false",
                "--digestfile",
                "/dev/stdout",
                &dst,
            ]),
            "",
        )
        .expect_ok()
        .stdout();
    assert_eq!(
        digest_as(port, ("alice", &alice), "team-a/podman", "v1").as_deref(),
        Some(reported.as_str())
    );

    w.run(
        "podman pull (another namespace)",
        podman(&[
            "pull",
            "-q",
            "--tls-verify=false",
            &format!("{addr}/other/base:1"),
        ]),
        "",
    )
    .expect_fail("");
    w.run("podman rmi", podman(&["rmi", "-f", &src, &dst]), "")
        .expect_ok();
    w.run(
        "podman pull (its push)",
        podman(&["pull", "-q", "--tls-verify=false", &dst]),
        "",
    )
    .expect_ok();
    w.run("podman rmi", podman(&["rmi", "-f", &dst]), "")
        .expect_ok();
    w.run("podman logout", podman(&["logout", &addr]), "")
        .expect_ok();
    w.assert_no_leaks();
}

#[test]
fn skopeo_copies_with_credentials() {
    transport::require_test_images!(dir);
    if !present_or_skip(installed("skopeo", "--version"), "skopeo", "CI") {
        return;
    }
    let Setup {
        mut w,
        alice,
        robot,
    } = setup();
    let addr = w.addr(0);
    let port = w.port(0);
    let dest = format!("docker://{addr}/team-a/sk:v1");
    skopeo_as(
        &mut w,
        "alice",
        &alice,
        &["--all", "--dest-tls-verify=false"],
        &oci_target("multiarch"),
        &dest,
    )
    .expect_ok();
    let layout = w.path("out");
    let back = format!("oci:{}:v1", layout.display());
    skopeo_as(
        &mut w,
        "alice",
        &alice,
        &["--all", "--src-tls-verify=false"],
        &dest,
        &back,
    )
    .expect_ok();
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    let copied = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        digest_as(port, ("alice", &alice), "team-a/sk", "v1"),
        Some(copied)
    );

    // Wrong credentials, and a robot outside its repository, fail.
    let wrong = random("wrongpw");
    w.secret("a wrong password", &wrong);
    let nowhere = format!("oci:{}:x", w.path("x").display());
    skopeo_as(
        &mut w,
        "alice",
        &wrong,
        &["--src-tls-verify=false"],
        &dest,
        &nowhere,
    )
    .expect_fail("");
    skopeo_as(
        &mut w,
        &robot.0,
        &robot.1,
        &["--dest-tls-verify=false"],
        &oci_target("bookworm-base"),
        &format!("docker://{addr}/team-a/robot:v1"),
    )
    .expect_fail("");
    skopeo_as(
        &mut w,
        &robot.0,
        &robot.1,
        &["--dest-tls-verify=false"],
        &oci_target("bookworm-base"),
        &format!("docker://{addr}/ci/app:v1"),
    )
    .expect_ok();
    assert!(digest_as(port, (&robot.0, &robot.1), "ci/app", "v1").is_some());
    w.assert_no_leaks();
}

// oras-py's token backend keeps the first token it gets and sends it
// again after a 401 with `insufficient_scope`, so a push whose first
// request was a pull-scoped HEAD never gets a push token (from any
// registry that follows the token spec). The pushing client therefore uses
// its Basic backend (drydock takes Basic on every request); a second
// client with the default token backend pulls through the token flow.
const ORAS: &str = r#"
import os, sys
import oras.client
host, src, out, cfg = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
user, password = os.environ["ORAS_USER"], os.environ["ORAS_PASSWORD"]
pusher = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
pusher.login(username=user, password=password, hostname=host, config_path=cfg)
os.chdir(src)
r = pusher.push(target=f"{host}/ci/app:notes", files=["notes.txt", "data.bin"])
assert r.status_code == 201, r.status_code
print(r.headers["Docker-Content-Digest"])
try:
    pusher.push(target=f"{host}/team-a/notes:v1", files=["notes.txt"])
except Exception as e:
    print("refused:", type(e).__name__)
else:
    sys.exit("pushed outside the robot's repository")
puller = oras.client.OrasClient(hostname=host, insecure=True)
puller.login(username=user, password=password, hostname=host, config_path=cfg)
puller.pull(target=f"{host}/ci/app:notes", outdir=out)
assert puller.get_tags(f"{host}/ci/app") == ["notes"], puller.get_tags(f"{host}/ci/app")
"#;

#[test]
fn oras_robot_pushes_and_pulls_an_artifact() {
    transport::require_test_images!(dir);
    let has_oras = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present_or_skip(has_oras, "the oras Python SDK", "CI") {
        return;
    }
    let Setup { mut w, robot, .. } = setup();
    let addr = w.addr(0);
    let port = w.port(0);
    let (src, out) = (w.path("in"), w.path("out"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(src.join("notes.txt"), b"release notes\n").unwrap();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(src.join("data.bin"), &blob).unwrap();
    let cfg = w.path("oras-config.json");
    let mut cmd = Command::new("python3");
    cmd.args(["-c", ORAS, &addr])
        .arg(&src)
        .arg(&out)
        .arg(&cfg)
        .env("HOME", w.path("."))
        .env("DOCKER_CONFIG", w.path("."))
        .env("ORAS_USER", &robot.0)
        .env("ORAS_PASSWORD", &robot.1);
    let printed = w.run("oras (python)", cmd, "").expect_ok().stdout();
    let digest = printed.lines().next().unwrap().to_string();
    assert!(printed.contains("refused:"), "{printed}");
    assert_eq!(
        digest_as(port, (&robot.0, &robot.1), "ci/app", "notes"),
        Some(digest)
    );
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), blob);
    assert_eq!(
        std::fs::read(out.join("notes.txt")).unwrap(),
        b"release notes\n"
    );
    w.assert_no_leaks();
}

/// `drydock import` from another drydock that demands credentials: with
/// credentials stored in the importing server's configuration, and with
/// `--creds`; the import client itself logs in to the target.
#[test]
fn import_from_a_drydock_with_access_control() {
    transport::require_test_images!(dir);
    if !present_or_skip(installed("skopeo", "--version"), "skopeo", "CI") {
        return;
    }
    let mut w = World::new();
    let source = w.serve(&[], &[]);
    let src_addr = w.addr(source);
    let admin = w.admin.clone();
    skopeo_as(
        &mut w,
        "admin",
        &admin,
        &["--dest-tls-verify=false"],
        &oci_target("python-app"),
        &format!("docker://{src_addr}/team-a/app:v1"),
    )
    .expect_ok();
    let want = digest_as(w.port(source), ("admin", &admin), "team-a/app", "v1")
        .expect("pushed to the source");
    let reader = w.robot(source, "reader", "team-a/**:pull");
    w.wait_login(source, &reader.0, &reader.1);

    // The importing server stores the source's credentials.
    let config = w.path("target.toml");
    std::fs::write(
        &config,
        format!(
            "[import.remotes.\"{src_addr}\"]\nusername = \"{}\"\npassword = \"{}\"\ninsecure = true\n",
            reader.0, reader.1
        ),
    )
    .unwrap();
    let target = w.serve(
        &["--config", config.to_str().unwrap()],
        &[("DRYDOCK_OUTBOUND_ALLOW", "127.0.0.0/8,::1/128")],
    );
    let alice = w.user(target, "alice", &["team-a/**:pull,push"]);
    w.wait_login(target, "alice", &alice);
    let server_url = format!("http://{}", w.addr(target));
    let import = |w: &mut World,
                  what: &str,
                  target_ref: &str,
                  user: &str,
                  password: &str,
                  creds: Option<&str>| {
        let data = w.data(target);
        let mut cmd = drydock(
            &data,
            &[
                "import",
                &format!("docker://{src_addr}/team-a/app:v1"),
                target_ref,
                "--insecure",
                "--server",
                &server_url,
            ],
        );
        cmd.env("DRYDOCK_USERNAME", user)
            .env("DRYDOCK_PASSWORD", password);
        if let Some(c) = creds {
            cmd.env("DRYDOCK_IMPORT_CREDS", c);
        }
        w.run(what, cmd, "");
    };

    // The client must log in to the target too.
    let wrong = random("wrongpw");
    w.secret("a wrong password", &wrong);
    import(
        &mut w,
        "drydock import (wrong target password)",
        "team-a/imported:v1",
        "alice",
        &wrong,
        None,
    );
    w.outputs.last().unwrap().expect_fail("");
    import(
        &mut w,
        "drydock import (stored source credentials)",
        "team-a/imported:v1",
        "alice",
        &alice,
        None,
    );
    w.outputs.last().unwrap().expect_ok();
    let port = w.port(target);
    assert_eq!(
        digest_as(port, ("alice", &alice), "team-a/imported", "v1").as_deref(),
        Some(want.as_str())
    );

    // --creds overrides the stored ones: a wrong secret fails, without
    // saying it; the right one works.
    let bad = format!("{}:{}", reader.0, random("badsecret"));
    w.secret("a wrong robot secret", bad.split_once(':').unwrap().1);
    import(
        &mut w,
        "drydock import (wrong --creds)",
        "team-a/imported:v2",
        "alice",
        &alice,
        Some(&bad),
    );
    w.outputs.last().unwrap().expect_fail("");
    let good = format!("{}:{}", reader.0, reader.1);
    import(
        &mut w,
        "drydock import (--creds)",
        "team-a/imported:v2",
        "alice",
        &alice,
        Some(&good),
    );
    w.outputs.last().unwrap().expect_ok();
    assert_eq!(
        digest_as(port, ("alice", &alice), "team-a/imported", "v2").as_deref(),
        Some(want.as_str())
    );
    // Alice may not write outside team-a, import or not.
    import(
        &mut w,
        "drydock import (outside the grant)",
        "team-b/imported:v1",
        "alice",
        &alice,
        None,
    );
    w.outputs.last().unwrap().expect_fail("");
    assert_eq!(
        digest_as(port, ("admin", &admin), "team-b/imported", "v1"),
        None
    );
    w.assert_no_leaks();
}
