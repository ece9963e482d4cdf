//! Access control from the command line: on by default beyond loopback,
//! the first administrator, `drydock user` and `drydock robot` against a
//! running server.

mod cli_support;

use cli_support::*;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `drydock serve --listen ADDR ARGS` with its log in `log`; the child.
/// Every test talks to it over 127.0.0.1.
fn serve(data: &Path, listen: &str, args: &[&str], env: &[(&str, &str)], log: &Path) -> Child {
    let mut all = vec!["serve", "--listen", listen];
    all.extend_from_slice(args);
    drydock(data, &all)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_ready(port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if http_status(port, "/readyz") == Some(200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server on {port} did not start");
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// The status of `GET path` with HTTP Basic credentials.
fn basic_status(port: u16, path: &str, user: &str, pass: &str) -> u16 {
    use base64::Engine;
    use std::io::Read;
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {creds}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    let head = std::str::from_utf8(&buf[..n]).unwrap();
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

fn run_stdin(data: &Path, args: &[&str], input: &str) -> std::process::Output {
    let mut child = drydock(data, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_no_panic(&out, args);
    out
}

#[test]
fn beyond_loopback_access_control_is_on_and_the_first_admin_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let c = serve(&data, &listen, &[], &[], &log);
    wait_ready(port);
    assert_eq!(http_status(port, "/v2/"), Some(401));
    stop(c);
    let first = std::fs::read_to_string(&log).unwrap();
    assert!(first.contains("created the first administrator"), "{first}");
    let password = first
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .expect("the password is printed")
        .to_string();
    assert!(password.len() >= 20);

    // The printed password works; a restart prints nothing again and
    // logs no secret.
    let c = serve(&data, &listen, &[], &[], &log);
    wait_ready(port);
    assert_eq!(basic_status(port, "/v2/", "admin", &password), 200);
    assert_eq!(basic_status(port, "/v2/", "admin", "wrong-password"), 401);
    stop(c);
    let all = std::fs::read_to_string(&log).unwrap();
    assert!(!all.contains("created the first administrator"), "{all}");
    assert!(!all.contains(&password), "the password appears in the log");
}

#[test]
fn no_auth_beyond_loopback_is_explicit_and_loud() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let port = free_port();
    let c = serve(
        &dir.path().join("data"),
        &format!("0.0.0.0:{port}"),
        &["--no-auth"],
        &[],
        &log,
    );
    wait_ready(port);
    assert_eq!(http_status(port, "/v2/"), Some(200));
    stop(c);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ACCESS CONTROL IS OFF"), "{text}");

    // On loopback it is off by default and on with --auth.
    let port = free_port();
    let c = serve(
        &dir.path().join("data2"),
        &format!("127.0.0.1:{port}"),
        &[],
        &[],
        &log,
    );
    wait_ready(port);
    assert_eq!(http_status(port, "/v2/"), Some(200));
    stop(c);
    let port = free_port();
    let c = serve(
        &dir.path().join("data3"),
        &format!("127.0.0.1:{port}"),
        &["--auth"],
        &[("DRYDOCK_ADMIN_PASSWORD", "an-admin-password")],
        &log,
    );
    wait_ready(port);
    assert_eq!(http_status(port, "/v2/"), Some(401));
    assert_eq!(
        basic_status(port, "/v2/", "admin", "an-admin-password"),
        200
    );
    stop(c);
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap()
            .contains("an-admin-password")
    );
}

#[test]
fn users_and_robots_from_the_command_line_reach_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let port = free_port();
    let c = serve(
        &data,
        &format!("127.0.0.1:{port}"),
        &["--auth"],
        &[("DRYDOCK_ADMIN_PASSWORD", "an-admin-password")],
        &log,
    );
    wait_ready(port);

    let out = run_stdin(
        &data,
        &[
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--group",
            "team-a",
            "--permission",
            "team-a/*:pull",
        ],
        "alice-password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "no password printed when given");
    let users = json_ok(&data, &["user", "list", "--json"]);
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice"]);
    assert_eq!(users[1]["groups"][0], "team-a");
    assert_eq!(users[0]["admin"], true);

    // Within a second the server knows alice.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        basic_status(port, "/v2/team-a/x/tags/list", "alice", "alice-password"),
        404
    );
    assert_eq!(
        basic_status(port, "/v2/team-b/x/tags/list", "alice", "alice-password"),
        403
    );

    let robot = run_ok(
        &data,
        &[
            "robot",
            "add",
            "ci",
            "--permission",
            "team-a/app:pull,push",
            "--expires",
            "30d",
        ],
    );
    assert!(robot.contains("username: robot$ci"), "{robot}");
    let secret = robot
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        basic_status(port, "/v2/team-a/app/tags/list", "robot$ci", &secret),
        404
    );
    let robots = json_ok(&data, &["robot", "list", "--json"]);
    assert_eq!(robots[0]["state"], "active");
    assert!(
        !robots.to_string().contains(&secret),
        "the secret is shown once"
    );

    run_ok(&data, &["robot", "revoke", "ci"]);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        basic_status(port, "/v2/team-a/app/tags/list", "robot$ci", &secret),
        401
    );

    let out = run_stdin(
        &data,
        &["user", "passwd", "alice", "--password-stdin"],
        "a-new-password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(basic_status(port, "/v2/", "alice", "alice-password"), 401);
    assert_eq!(basic_status(port, "/v2/", "alice", "a-new-password"), 200);
    run_ok(&data, &["user", "rm", "alice"]);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(basic_status(port, "/v2/", "alice", "a-new-password"), 401);
    stop(c);
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [
        &secret[..],
        "alice-password",
        "a-new-password",
        "an-admin-password",
    ] {
        assert!(!text.contains(secret), "a secret in the server log");
    }
}

#[test]
fn bad_identity_input_gets_a_precise_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (args, expect) in [
        (
            vec!["robot", "add", "ci", "--permission", "nocolon"],
            "REPOSITORY-PATTERN:ACTION",
        ),
        (
            vec!["robot", "add", "ci", "--permission", "team-a/*:fly"],
            "unknown action",
        ),
        (
            vec![
                "robot",
                "add",
                "ci",
                "--permission",
                "a:pull",
                "--expires",
                "soon",
            ],
            "--expires",
        ),
        (vec!["user", "add", "bad name!"], "invalid user name"),
        (vec!["user", "rm", "nobody"], "user nobody not found"),
        (vec!["robot", "revoke", "nobody"], "robot nobody not found"),
    ] {
        let out = run(&data, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let out = run_stdin(
        &data,
        &["user", "add", "bob", "--password-stdin"],
        "short\n",
    );
    assert!(
        stderr(&out).contains("at least 8 characters"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        json_ok(&data, &["user", "list", "--json"]),
        serde_json::json!([])
    );
    assert_eq!(
        json_ok(&data, &["robot", "list", "--json"]),
        serde_json::json!([])
    );
}
