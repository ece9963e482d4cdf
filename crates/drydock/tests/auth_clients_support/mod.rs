//! Helpers of `auth_clients.rs`: a test's servers started with `--auth`,
//! the identities and secrets it made, every command it ran (kept for the
//! leak check), and plain HTTP requests to the servers.

use crate::cli_support::*;
use serde_json::Value;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A fresh random string: the secrets of each run differ, so a leak check
/// cannot match by accident something the code base prints anyway.
pub fn random(prefix: &str) -> String {
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

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// One HTTP/1.1 request to 127.0.0.1:PORT: status, lower-cased head, body.
pub fn http(
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
pub fn digest_as(
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
pub struct Ran {
    pub what: String,
    pub out: Output,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).trim().to_string()
    }
    pub fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }
    pub fn expect_ok(&self) -> &Ran {
        assert!(
            self.ok(),
            "{} failed ({}): {}",
            self.what,
            self.out.status,
            self.text()
        );
        self
    }
    pub fn expect_fail(&self, needle: &str) -> &Ran {
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
pub struct World {
    pub dir: tempfile::TempDir,
    pub servers: Vec<(Server, tempfile::TempDir)>,
    pub logs: Vec<PathBuf>,
    pub secrets: Vec<(String, String)>,
    pub outputs: Vec<Ran>,
    pub admin: String,
    /// (server, text) its log must hold: proof that the paths that
    /// handle secrets wrote to the log the check reads.
    pub must_log: Vec<(usize, &'static str)>,
}

impl World {
    pub fn new() -> World {
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

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn secret(&mut self, what: &str, value: &str) {
        assert!(value.len() >= 8, "{what}: too short to look for");
        self.secrets.push((what.to_string(), value.to_string()));
    }

    /// Start `drydock serve --auth` with the admin password set and the
    /// log at debug level into a file; returns the server's index.
    pub fn serve(&mut self, args: &[&str], env: &[(&str, &str)]) -> usize {
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

    pub fn port(&self, i: usize) -> u16 {
        self.servers[i].0.port
    }

    pub fn addr(&self, i: usize) -> String {
        self.servers[i].0.addr()
    }

    pub fn data(&self, i: usize) -> PathBuf {
        self.servers[i].1.path().to_path_buf()
    }

    /// Run a command with `stdin` as its input; keep its output.
    pub fn run(&mut self, what: &str, mut cmd: Command, stdin: &str) -> &Ran {
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

    pub fn drydock_cli(&mut self, server: usize, args: &[&str], stdin: &str) -> &Ran {
        let data = self.data(server);
        let cmd = drydock(&data, args);
        self.run(&format!("drydock {}", args.join(" ")), cmd, stdin)
    }

    /// `drydock user add NAME --password-stdin --permission P...`; returns
    /// the password.
    pub fn user(&mut self, server: usize, name: &str, permissions: &[&str]) -> String {
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
    pub fn robot(&mut self, server: usize, name: &str, permission: &str) -> (String, String) {
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
    pub fn wait_login(&self, server: usize, user: &str, password: &str) {
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
    pub fn token_flow(&mut self, server: usize, user: &str, password: &str, repo: &str) {
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
    pub fn assert_no_leaks(&self) {
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
pub struct Setup {
    pub w: World,
    pub alice: String,
    pub robot: (String, String),
}

pub fn setup() -> Setup {
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

pub fn skopeo_as<'a>(
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

pub fn daemon_available() -> bool {
    let up = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    present_or_skip(up, "a Docker daemon", "DRYDOCK_REQUIRE_DOCKER")
}

pub fn installed(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}
