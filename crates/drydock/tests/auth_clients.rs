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

mod cli_support;

use cli_support::*;
use serde_json::Value;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A fresh random string: the secrets of each run differ, so a leak check
/// cannot match by accident something the code base prints anyway.
fn random(prefix: &str) -> String {
    let a = RandomState::new().hash_one(Instant::now());
    let b = RandomState::new().hash_one(std::process::id());
    format!("{prefix}-{a:016x}{b:016x}")
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(input: &[u8]) -> String {
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// One HTTP/1.1 request to 127.0.0.1:PORT: status, lower-cased head, body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// The digest a manifest HEAD reports, as `user` (HTTP Basic).
fn digest_as(
    port: u16,
    (user, password): (&str, &str),
    name: &str,
    reference: &str,
) -> Option<String> {
    let auth = basic(user, password);
    let (status, head, _) = http(
        port,
        "HEAD",
        &format!("/v2/{name}/manifests/{reference}"),
        &[("Authorization", &auth), ("Accept", ACCEPT)],
        b"",
    );
    if status != 200 {
        return None;
    }
    head.lines()
        .find_map(|l| l.strip_prefix("docker-content-digest: "))
        .map(|d| d.trim().to_string())
}

/// The log without terminal colours.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The output of one command, kept for the leak check.
struct Ran {
    what: String,
    out: Output,
}

impl Ran {
    fn ok(&self) -> bool {
        self.out.status.success()
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).trim().to_string()
    }
    fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }
    fn expect_ok(&self) -> &Ran {
        assert!(
            self.ok(),
            "{} failed ({}): {}",
            self.what,
            self.out.status,
            self.text()
        );
        self
    }
    fn expect_fail(&self, needle: &str) -> &Ran {
        assert!(
            !self.ok(),
            "{} succeeded but should fail: {}",
            self.what,
            self.text()
        );
        assert!(
            self.text().to_lowercase().contains(needle),
            "{} failed without {needle:?}: {}",
            self.what,
            self.text()
        );
        self
    }
}

/// A test's servers, identities, secrets and everything it captured.
struct World {
    dir: tempfile::TempDir,
    servers: Vec<(Server, tempfile::TempDir)>,
    logs: Vec<PathBuf>,
    secrets: Vec<(String, String)>,
    outputs: Vec<Ran>,
    admin: String,
    /// (server, text) its log must hold: proof that the paths that
    /// handle secrets wrote to the log the check reads.
    must_log: Vec<(usize, &'static str)>,
}

impl World {
    fn new() -> World {
        World {
            dir: tempfile::tempdir().unwrap(),
            servers: Vec::new(),
            logs: Vec::new(),
            secrets: Vec::new(),
            outputs: Vec::new(),
            admin: random("adminpw"),
            must_log: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn secret(&mut self, what: &str, value: &str) {
        assert!(value.len() >= 8, "{what}: too short to look for");
        self.secrets.push((what.to_string(), value.to_string()));
    }

    /// Start `drydock serve --auth` with the admin password set and the
    /// log at debug level into a file; returns the server's index.
    fn serve(&mut self, args: &[&str], env: &[(&str, &str)]) -> usize {
        let data = tempfile::tempdir().unwrap();
        let log = self.path(&format!("server{}.log", self.servers.len()));
        let admin = self.admin.clone();
        let mut all_env = vec![
            ("DRYDOCK_ADMIN_PASSWORD", admin.as_str()),
            ("RUST_LOG", "debug"),
        ];
        all_env.extend_from_slice(env);
        let mut all_args = vec!["--auth"];
        all_args.extend_from_slice(args);
        let server = Server::start_logged(data.path(), &all_args, &all_env, &log);
        if self.secrets.iter().all(|(w, _)| w != "admin password") {
            self.secret("admin password", &admin.clone());
        }
        self.logs.push(log);
        self.servers.push((server, data));
        self.servers.len() - 1
    }

    fn port(&self, i: usize) -> u16 {
        self.servers[i].0.port
    }

    fn addr(&self, i: usize) -> String {
        self.servers[i].0.addr()
    }

    fn data(&self, i: usize) -> PathBuf {
        self.servers[i].1.path().to_path_buf()
    }

    /// Run a command with `stdin` as its input; keep its output.
    fn run(&mut self, what: &str, mut cmd: Command, stdin: &str) -> &Ran {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let mut input = child.stdin.take().unwrap();
        // A client that does not read its input must not block the test.
        let _ = input.write_all(stdin.as_bytes());
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert_ne!(
            out.status.code(),
            Some(101),
            "{what} panicked: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.outputs.push(Ran {
            what: what.to_string(),
            out,
        });
        self.outputs.last().unwrap()
    }

    fn drydock_cli(&mut self, server: usize, args: &[&str], stdin: &str) -> &Ran {
        let data = self.data(server);
        let cmd = drydock(&data, args);
        self.run(&format!("drydock {}", args.join(" ")), cmd, stdin)
    }

    /// `drydock user add NAME --password-stdin --permission P...`; returns
    /// the password.
    fn user(&mut self, server: usize, name: &str, permissions: &[&str]) -> String {
        let password = random(&format!("{name}pw"));
        let mut args = vec!["user", "add", name, "--password-stdin"];
        for p in permissions {
            args.extend(["--permission", p]);
        }
        self.drydock_cli(server, &args, &format!("{password}\n"))
            .expect_ok();
        self.secret(&format!("password of {name}"), &password);
        password
    }

    /// `drydock robot add NAME --permission P`; returns (username, secret)
    /// as printed.
    fn robot(&mut self, server: usize, name: &str, permission: &str) -> (String, String) {
        let out = self
            .drydock_cli(
                server,
                &[
                    "robot",
                    "add",
                    name,
                    "--permission",
                    permission,
                    "--expires",
                    "90d",
                ],
                "",
            )
            .expect_ok()
            .stdout();
        let field = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {out}"))
                .trim()
                .to_string()
        };
        let (user, secret) = (field("username:"), field("secret:"));
        assert_eq!(user, format!("robot${name}"));
        self.secret(&format!("secret of robot {name}"), &secret);
        (user, secret)
    }

    /// Wait until the server accepts a login (the CLI wrote to its data
    /// directory; the server reloads within a second).
    fn wait_login(&self, server: usize, user: &str, password: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let auth = basic(user, password);
        loop {
            let (status, _, _) = http(
                self.port(server),
                "GET",
                "/v2/",
                &[("Authorization", &auth)],
                b"",
            );
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "{user} cannot log in: {status}");
            // Each refusal counts as a failed login (ten per address and
            // window, then 429): look seldom.
            std::thread::sleep(Duration::from_millis(400));
        }
    }

    /// Use the token flow directly (GET with Basic and a refresh token,
    /// POST refresh grant, a bearer request, a forged token, a wrong
    /// password), so the log holds the lines those paths write, and
    /// remember the tokens.
    fn token_flow(&mut self, server: usize, user: &str, password: &str, repo: &str) {
        let port = self.port(server);
        let scope = format!("repository:{repo}:pull");
        let (status, _, body) = http(
            port,
            "GET",
            &format!("/token?service=drydock&scope={scope}&offline_token=true"),
            &[("Authorization", &basic(user, password))],
            b"",
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let t: Value = serde_json::from_slice(&body).unwrap();
        let access = t["access_token"].as_str().unwrap().to_string();
        let refresh = t["refresh_token"].as_str().unwrap().to_string();
        self.secret("access token", &access);
        self.secret("refresh token", &refresh);

        let form = format!(
            "grant_type=refresh_token&service=drydock&scope={scope}&refresh_token={refresh}"
        );
        let (status, _, body) = http(
            port,
            "POST",
            "/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let t: Value = serde_json::from_slice(&body).unwrap();
        let refreshed = t["access_token"].as_str().unwrap().to_string();
        self.secret("refreshed access token", &refreshed);

        let bearer = format!("Bearer {refreshed}");
        let (status, _, _) = http(
            port,
            "GET",
            &format!("/v2/{repo}/tags/list"),
            &[("Authorization", &bearer)],
            b"",
        );
        assert!(
            status == 200 || status == 404,
            "tags list with a token: {status}"
        );
        // A token with its signature cut off, and a wrong password: both
        // refused, and both logged (at debug) without the secret.
        let forged = format!("Bearer {}", &refreshed[..refreshed.rfind('.').unwrap()]);
        let (status, _, _) = http(port, "GET", "/v2/", &[("Authorization", &forged)], b"");
        assert_eq!(status, 401);
        let wrong = random("wrongpw");
        self.secret("a wrong password", &wrong);
        let (status, _, _) = http(
            port,
            "GET",
            "/v2/",
            &[("Authorization", &basic(user, &wrong))],
            b"",
        );
        assert_eq!(status, 401);
        self.must_log.push((server, "refused an access token"));
        self.must_log.push((server, "path=/token status=200"));
    }

    /// No secret in any server log, nor in any captured output except the
    /// robot secret on the standard output of the `drydock robot add` that
    /// printed it.
    fn assert_no_leaks(&self) {
        // Give the servers a moment to write the last request lines.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!self.secrets.is_empty());
        for (i, log) in self.logs.iter().enumerate() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let plain = strip_ansi(&text);
            for (_, needle) in self.must_log.iter().filter(|(s, _)| *s == i) {
                assert!(
                    plain.contains(needle),
                    "{}: no {needle:?}:\n{plain}",
                    log.display()
                );
            }
            assert!(
                text.contains("listening"),
                "{}: not the server's log?\n{text}",
                log.display()
            );
            for (what, value) in &self.secrets {
                assert!(
                    !text.contains(value.as_str()) && !plain.contains(value.as_str()),
                    "the {what} appears in {}",
                    log.display()
                );
            }
        }
        for ran in &self.outputs {
            let stdout = String::from_utf8_lossy(&ran.out.stdout);
            let stderr = String::from_utf8_lossy(&ran.out.stderr);
            for (what, value) in &self.secrets {
                let printed_by_design = ran.what.starts_with("drydock robot add")
                    && what.starts_with("secret of robot");
                if !printed_by_design {
                    assert!(
                        !stdout.contains(value.as_str()),
                        "the {what} appears in the output of {}",
                        ran.what
                    );
                }
                assert!(
                    !stderr.contains(value.as_str()),
                    "the {what} appears in the errors of {}",
                    ran.what
                );
            }
        }
    }
}

/// A server with the user alice (pull and push on `team-a/**`), the robot
/// ci (pull and push on `ci/app`) and `other/base:1`, which neither may
/// read, pushed by the administrator.
struct Setup {
    w: World,
    alice: String,
    robot: (String, String),
}

fn setup() -> Setup {
    let mut w = World::new();
    let s = w.serve(&[], &[]);
    let alice = w.user(s, "alice", &["team-a/**:pull,push"]);
    let robot = w.robot(s, "ci", "ci/app:pull,push");
    w.wait_login(s, "alice", &alice);
    w.wait_login(s, &robot.0, &robot.1);
    w.token_flow(s, "alice", &alice, "team-a/app");
    let admin = w.admin.clone();
    let addr = w.addr(s);
    skopeo_as(
        &mut w,
        "admin",
        &admin,
        &["--dest-tls-verify=false"],
        &oci_target("bookworm-base"),
        &format!("docker://{addr}/other/base:1"),
    )
    .expect_ok();
    Setup { w, alice, robot }
}

fn skopeo_as<'a>(
    w: &'a mut World,
    user: &str,
    password: &str,
    flags: &[&str],
    from: &str,
    to: &str,
) -> &'a Ran {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "-q"]).args(flags);
    let creds = format!("{user}:{password}");
    if from.starts_with("docker://") {
        cmd.args(["--src-creds", &creds]);
    }
    if to.starts_with("docker://") {
        cmd.args(["--dest-creds", &creds]);
    }
    cmd.args([from, to]);
    w.run(&format!("skopeo copy {from} {to} as {user}"), cmd, "")
}

fn daemon_available() -> bool {
    let up = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    present_or_skip(up, "a Docker daemon", "DRYDOCK_REQUIRE_DOCKER")
}

fn installed(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

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
