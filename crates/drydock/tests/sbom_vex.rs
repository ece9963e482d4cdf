//! Real clients against `drydock serve`: ORAS's Python SDK finds the SBOM
//! drydock attached to a pushed image through the referrers API and pulls
//! it; a VEX document posted to `/api/v1/vex` makes the image healthy (an
//! invalid one is refused with its JSON path); an OpenVEX document pushed
//! as a referrer with skopeo is applied. With access control on and
//! `[assess.vex] trusted` set, a referrer pushed by a user who may push but
//! is not trusted is listed as not applied, with the reason, and changes
//! nothing; the same statements pushed by a trusted user clear the findings.
//! A loopback webhook receiver hears of the image while it is unhealthy and
//! of nothing after the trusted VEX makes it healthy.

mod cli_support;

use cli_support::*;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ORAS: &str = r#"
import json, sys, tempfile, os
import oras.client
host, repo, digest = sys.argv[1], sys.argv[2], sys.argv[3]
c = oras.client.OrasClient(hostname=host, insecure=True)
r = c.do_request(f"http://{host}/v2/{repo}/referrers/{digest}?artifactType=application/vnd.cyclonedx%2Bjson")
assert r.status_code == 200, r.status_code
found = r.json()["manifests"]
assert len(found) == 1, found
sbom = found[0]
m = c.get_manifest(f"{host}/{repo}@{sbom['digest']}")
assert m["subject"]["digest"] == digest, m
out = os.path.join(tempfile.mkdtemp(), "sbom.json")
c.download_blob(f"{host}/{repo}", m["layers"][0]["digest"], out)
doc = json.load(open(out))
print(json.dumps({"artifactType": sbom["artifactType"], "annotations": sbom.get("annotations"), "bomFormat": doc["bomFormat"], "specVersion": doc["specVersion"], "components": len(doc.get("components", []))}))
"#;

/// One HTTP/1.1 request on 127.0.0.1:PORT: status, headers (lower-cased names), body.
fn http(port: u16, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn post_json(port: u16, path: &str, body: &str) -> (u16, Value) {
    let (status, _, body) = http(
        port,
        "POST",
        path,
        "Content-Type: application/json\r\n",
        body.as_bytes(),
    );
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn assessed(port: u16, digest: &str) -> Value {
    assessed_as(port, "", digest)
}

/// `Authorization: …` header line for `user` (HTTP Basic).
fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {b64}\r\n")
}

/// `GET PATH` with header lines `auth` (empty: anonymous), body as JSON.
fn get_as(port: u16, auth: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = http(port, "GET", path, auth, b"");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The image view of `digest` once its job finished, read with `auth`.
fn assessed_as(port: u16, auth: &str, digest: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, v) = get_as(port, auth, &format!("/api/v1/images/{digest}"));
        if code == 200
            && matches!(
                v["status"].as_str(),
                Some("done" | "unsupported" | "failed")
            )
        {
            return v;
        }
        assert!(Instant::now() < deadline, "never assessed: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn openvex(id: &str, product: &str, vulns: &[String]) -> Value {
    let statements: Vec<Value> = vulns
        .iter()
        .map(|v| {
            json!({
                "vulnerability": {"name": v},
                "products": [{"@id": product}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
            })
        })
        .collect();
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": id,
        "author": "Platform Security",
        "timestamp": "2026-01-10T10:00:00Z",
        "version": 1,
        "statements": statements,
    })
}

#[test]
fn sbom_referrer_and_vex_with_real_clients() {
    transport::require_test_images!(dir);
    let has_oras = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present_or_skip(has_oras, "the oras Python SDK", "CI")
        || !present_or_skip(tool_present("skopeo"), "skopeo", "CI")
    {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    run_ok(d, &["db", "import", VULNDATA]);
    let server = Server::start(d);
    let addr = server.addr();
    push_test_image(&addr, "bookworm-base", "library/debian:bookworm");
    let digest = manifest_digest(server.port, "library/debian", "bookworm").unwrap();
    let v = assessed(server.port, &digest);
    assert_eq!(v["status"], "done", "{v}");
    let total = v["summary"]["total"].as_u64().unwrap();
    assert!(total > 0, "the test image has findings: {v}");

    // The SBOM is attached just after the findings are stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, refs) = get_json(
            server.port,
            &format!(
                "/v2/library/debian/referrers/{digest}?artifactType=application/vnd.cyclonedx%2Bjson"
            ),
        );
        assert_eq!(code, 200, "{refs}");
        if refs["manifests"].as_array().is_some_and(|m| !m.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "no SBOM attached: {refs}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // ORAS discovers the SBOM through the referrers API and pulls it.
    let out = Command::new("python3")
        .args(["-c", ORAS, &addr, "library/debian", &digest])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["artifactType"], "application/vnd.cyclonedx+json");
    assert_eq!(got["bomFormat"], "CycloneDX");
    assert_eq!(got["specVersion"], "1.6");
    assert!(got["components"].as_u64().unwrap() > 10, "{got}");
    assert!(
        got["annotations"]["org.opencontainers.image.created"].is_string(),
        "{got}"
    );

    // An invalid document: 400 with the JSON path.
    let mut bad = openvex("https://example.com/vex/bad", &digest, &["CVE-1".into()]);
    bad["statements"][0]["status"] = json!("probably_fine");
    let (code, e) = post_json(server.port, "/api/v1/vex", &bad.to_string());
    assert_eq!(code, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("$.statements[0].status: "),
        "{e}"
    );

    // Half the vulnerabilities through the API…
    let ids: Vec<String> = {
        let mut ids: Vec<String> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["informational"].is_null() && !f["exempt"].as_bool().unwrap())
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let (api, referrer) = ids.split_at(ids.len() / 2);
    let doc = openvex("https://example.com/vex/debian-1", &digest, api);
    let (code, added) = post_json(server.port, "/api/v1/vex", &doc.to_string());
    assert_eq!(code, 201, "{added}");
    assert_eq!(added["rejudged"], 1, "{added}");
    let v = assessed(server.port, &digest);
    let cleared = v["summary"]["not_affected"].as_u64().unwrap();
    assert!(cleared > 0, "{}", v["summary"]);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| !f["not_affected_per_vex"].is_null())
        .unwrap();
    assert_eq!(
        f["not_affected_per_vex"]["document"],
        "https://example.com/vex/debian-1"
    );
    assert_eq!(f["not_affected_per_vex"]["author"], "Platform Security");
    assert_eq!(f["violates_policy"], false);

    // …the rest as an OpenVEX referrer pushed with skopeo from an OCI layout.
    let layout = tempfile::tempdir().unwrap();
    let vex = openvex("https://example.com/vex/debian-2", &digest, referrer).to_string();
    let subject = manifest_descriptor(server.port, "", "library/debian", &digest);
    vex_layout(layout.path(), &vex, &digest, subject);
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:vex", layout.path().display()),
        &format!("docker://{addr}/library/debian:bookworm-vex"),
    ]);
    let pushed = manifest_digest(server.port, "library/debian", "bookworm-vex").unwrap();
    let a = assessed(server.port, &pushed);
    assert!(
        a["error"]
            .as_str()
            .unwrap_or("")
            .contains("VEX document https://example.com/vex/debian-2 applied"),
        "{a}"
    );
    let v = assessed(server.port, &digest);
    assert!(
        v["summary"]["not_affected"].as_u64().unwrap() > cleared,
        "{}",
        v["summary"]
    );
    assert_eq!(v["summary"]["total"], 0, "{}", v["summary"]);
}

/// The media type and byte length of a stored manifest (for a
/// descriptor), read with header lines `auth`.
fn manifest_descriptor(port: u16, auth: &str, repo: &str, digest: &str) -> (String, usize) {
    let (status, head, body) = http(
        port,
        "GET",
        &format!("/v2/{repo}/manifests/{digest}"),
        &format!("{auth}Accept: {MANIFEST_TYPES}\r\n"),
        b"",
    );
    assert_eq!(status, 200);
    let media_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap()
        .trim()
        .to_string();
    (media_type, body.len())
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Write an OCI layout at `l` whose one manifest, tagged `vex`, is an
/// OpenVEX artifact (the document `vex` as its layer, the empty config)
/// with `subject` (`(media type, size)` of manifest `digest`), as ORAS
/// and `oras attach` lay one out.
fn vex_layout(l: &Path, vex: &str, digest: &str, subject: (String, usize)) {
    let blob = |bytes: &[u8]| -> String {
        let d = oci::Digest::sha256_of(bytes);
        let p = l.join("blobs/sha256").join(d.hex());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
        d.to_string()
    };
    let config = blob(b"{}");
    let layer = blob(vex.as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.openvex+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.openvex+json", "digest": layer, "size": vex.len()}],
        "subject": {"mediaType": subject.0, "digest": digest, "size": subject.1},
    })
    .to_string();
    let md = blob(manifest.as_bytes());
    std::fs::write(l.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        l.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "vex"}}]})
        .to_string(),
    )
    .unwrap();
}

/// `drydock user add NAME --password-stdin --group G --permission P` on
/// the server's data directory.
fn add_user(data: &Path, name: &str, password: &str, group: Option<&str>, permission: &str) {
    let mut args = vec!["user", "add", name, "--password-stdin"];
    if let Some(g) = group {
        args.extend(["--group", g]);
    }
    args.extend(["--permission", permission]);
    let mut child = drydock(data, &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The server reads users again within a second: wait until `auth` logs in.
fn wait_login(port: u16, auth: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_as(port, auth, "/v2/").0 != 200 {
        assert!(Instant::now() < deadline, "cannot log in");
        // Each refusal counts as a failed login: look seldom.
        std::thread::sleep(Duration::from_millis(400));
    }
}

/// One request a loopback webhook receiver got: lower-cased head, raw body.
struct Hook {
    head: String,
    body: Vec<u8>,
}

impl Hook {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<Hook>>>;

/// A webhook receiver on 127.0.0.1 that answers 200 to every request and
/// keeps it: its URL, and what it got.
fn webhook_receiver() -> (String, Received) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Default::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let split = loop {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(p);
                }
            };
            let Some(p) = split else { continue };
            let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            let mut body = buf[p + 4..].to_vec();
            while body.len() < len {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                }
            }
            g.lock().unwrap().push(Hook { head, body });
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// Hex HMAC-SHA256 of `msg` keyed with `key` (RFC 2104), computed here
/// rather than with drydock's own signer so a wrong signature shows.
fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// The delivery log of webhook `id` once every entry in it is delivered
/// and the receiver got as many requests as it lists (at least `min`).
fn deliveries_settled(port: u16, auth: &str, id: &str, min: usize, got: &Received) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, log) = get_as(port, auth, &format!("/api/v1/webhooks/{id}/deliveries"));
        assert_eq!(code, 200, "{log}");
        let log = log.as_array().unwrap().clone();
        if log.len() >= min
            && log.iter().all(|d| d["state"] == "delivered")
            && got.lock().unwrap().len() == log.len()
        {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never settled: {log:?}, {} received",
            got.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Issue #14: `drydock serve` with access control on and `[assess.vex]
/// trusted = ["group:security"]`. `dev` may push to the repository but is
/// not trusted: the OpenVEX referrer dev pushes (skopeo, from an OCI
/// layout) is stored and listed `not_applied` with the reason, and the
/// image's health and findings stay as they were. `sec`, in the security
/// group, pushes the same statements: every finding becomes not affected
/// per VEX, recorded as stated by sec, and the image turns healthy. dev's
/// referrer pushed again by sec is then applied as sec's. A webhook
/// configured in the file (to a receiver on loopback, allowed through
/// `outbound.allow`) is told once that the image is unhealthy, with its
/// findings and a signature made with its secret; none of the VEX pushes
/// after that sends anything, as the delivery log and the receiver show.
#[test]
fn vex_referrers_apply_only_from_trusted_pushers_with_real_clients() {
    transport::require_test_images!(dir);
    if !present_or_skip(tool_present("skopeo"), "skopeo", "CI") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let d = work.path().join("data");
    run_ok(&d, &["db", "import", VULNDATA]);
    let config = work.path().join("drydock.toml");
    let (hook, got) = webhook_receiver();
    let secret = "vex-webhook-secret-0123456789";
    // Every finding at or above low counts (by default only fixable high
    // ones do, and the test image has none), so clearing them shows.
    // (The harness allows loopback through the environment too; the
    // file says it as an operator would.)
    std::fs::write(
        &config,
        format!(
            "[outbound]\nallow = [\"127.0.0.0/8\"]\n\n\
             [assess.vex]\ntrusted = [\"group:security\"]\n\n\
             [[assess.policy]]\nrepository = \"**\"\nthreshold = \"low\"\nfixable_only = false\n\n\
             [[assess.webhooks]]\nurl = \"{hook}\"\nsecret = \"{secret}\"\n"
        ),
    )
    .unwrap();
    let admin_pw = "vex-admin-password";
    let server = Server::start_logged(
        &d,
        &["--config", config.to_str().unwrap(), "--auth"],
        &[("DRYDOCK_ADMIN_PASSWORD", admin_pw)],
        &work.path().join("server.log"),
    );
    let (port, addr) = (server.port, server.addr());
    add_user(&d, "dev", "dev-password", None, "library/*:pull,push");
    add_user(
        &d,
        "sec",
        "sec-password",
        Some("security"),
        "library/*:pull,push",
    );
    let admin = basic("admin", admin_pw);
    let dev = basic("dev", "dev-password");
    wait_login(port, &dev);
    wait_login(port, &basic("sec", "sec-password"));

    skopeo(&[
        "copy",
        "-q",
        "--all",
        "--dest-tls-verify=false",
        "--dest-creds=dev:dev-password",
        &oci_target("bookworm-base"),
        &format!("docker://{addr}/library/debian:bookworm"),
    ]);
    let (code, head, _) = http(
        port,
        "HEAD",
        "/v2/library/debian/manifests/bookworm",
        &format!("{dev}Accept: {MANIFEST_TYPES}\r\n"),
        b"",
    );
    assert_eq!(code, 200, "{head}");
    let digest = head
        .lines()
        .find_map(|l| l.strip_prefix("docker-content-digest: "))
        .unwrap()
        .trim()
        .to_string();
    let before = assessed_as(port, &admin, &digest);
    assert_eq!(before["status"], "done", "{before}");
    assert_eq!(
        before["health"]["status"], "unhealthy",
        "{}",
        before["health"]
    );
    let mut ids: Vec<String> = before["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["informational"].is_null() && !f["exempt"].as_bool().unwrap())
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert!(!ids.is_empty(), "{before}");

    // The unhealthy image is told to the configured webhook: every
    // finding that violates the policy, once, signed with its secret.
    let (code, hooks) = get_as(port, &admin, "/api/v1/webhooks");
    assert_eq!(code, 200, "{hooks}");
    let hooks = hooks.as_array().unwrap();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["url"], hook.as_str());
    let hook_id = hooks[0]["id"].as_str().unwrap().to_string();
    let told = deliveries_settled(port, &admin, &hook_id, 1, &got);
    let mut violating: Vec<(String, String)> = before["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["violates_policy"] == true)
        .map(|f| (f["id"].to_string(), f["package"].to_string()))
        .collect();
    violating.sort();
    violating.dedup();
    assert!(!violating.is_empty(), "{before}");
    let mut sent: Vec<(String, String)> = Vec::new();
    for (i, h) in got.lock().unwrap().iter().enumerate() {
        let body = h.json();
        let event = h.header("x-drydock-event").unwrap();
        assert_eq!(
            event,
            if i == 0 {
                "image.unhealthy"
            } else {
                "image.new_findings"
            },
            "{body}"
        );
        assert_eq!(
            h.header("x-drydock-signature").unwrap(),
            format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &h.body)),
            "the signature verifies with the configured secret"
        );
        let delivery = h.header("x-drydock-delivery").unwrap();
        assert!(told.iter().any(|d| d["id"] == delivery), "{told:?}");
        assert_eq!(body["repository"], "library/debian", "{body}");
        assert_eq!(body["digest"], digest.as_str(), "{body}");
        assert_eq!(body["health"]["status"], "unhealthy", "{body}");
        for f in body["new_findings"].as_array().unwrap() {
            sent.push((f["id"].to_string(), f["package"].to_string()));
        }
    }
    let n = sent.len();
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), n, "a finding told twice");
    assert_eq!(sent, violating, "the findings told are the policy's");
    let subject = manifest_descriptor(port, &admin, "library/debian", &digest);

    // Push one OpenVEX referrer as `who`; returns its job's view.
    let push_vex = |who: &str, password: &str, id: &str, tag: &str| -> Value {
        let layout = tempfile::tempdir().unwrap();
        let vex = openvex(id, &digest, &ids).to_string();
        vex_layout(layout.path(), &vex, &digest, subject.clone());
        skopeo(&[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &format!("--dest-creds={who}:{password}"),
            &format!("oci:{}:vex", layout.path().display()),
            &format!("docker://{addr}/library/debian:{tag}"),
        ]);
        let (code, head, _) = http(
            port,
            "HEAD",
            &format!("/v2/library/debian/manifests/{tag}"),
            &format!("{admin}Accept: {MANIFEST_TYPES}\r\n"),
            b"",
        );
        assert_eq!(code, 200, "{head}");
        let pushed = head
            .lines()
            .find_map(|l| l.strip_prefix("docker-content-digest: "))
            .unwrap()
            .trim()
            .to_string();
        let a = assessed_as(port, &admin, &pushed);
        assert_eq!(a["status"], "unsupported", "{a}");
        a
    };
    let listed = |key: &str| -> Value {
        let (code, all) = get_as(port, &admin, "/api/v1/vex");
        assert_eq!(code, 200, "{all}");
        all.as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("{key} not listed: {all}"))
    };

    // dev: stored, listed with the reason, not applied.
    let a = push_vex(
        "dev",
        "dev-password",
        "https://example.com/vex/by-dev",
        "vex-dev",
    );
    let why = "pushed by dev, who is not trusted for VEX (assess.vex.trusted)";
    let note = a["error"].as_str().unwrap_or("");
    assert!(
        note.contains("VEX document https://example.com/vex/by-dev stored, not applied")
            && note.contains(why),
        "{a}"
    );
    let by_dev = format!("referrer:{}", a["digest"].as_str().unwrap());
    let row = listed(&by_dev);
    assert_eq!(row["recorded_by"], "dev", "{row}");
    assert_eq!(row["not_applied"], why, "{row}");
    assert_eq!(row["doc_id"], "https://example.com/vex/by-dev", "{row}");
    let v = assessed_as(port, &admin, &digest);
    assert_eq!(v["health"], before["health"], "{v}");
    assert_eq!(v["summary"], before["summary"], "{v}");
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["not_affected_per_vex"].is_null()),
        "{v}"
    );

    // sec: applied; every finding not affected per VEX, stated by sec.
    let a = push_vex(
        "sec",
        "sec-password",
        "https://example.com/vex/by-sec",
        "vex-sec",
    );
    let note = a["error"].as_str().unwrap_or("");
    assert!(
        note.contains("VEX document https://example.com/vex/by-sec applied")
            && note.contains("pushed by sec"),
        "{a}"
    );
    let row = listed(&format!("referrer:{}", a["digest"].as_str().unwrap()));
    assert_eq!(row["recorded_by"], "sec", "{row}");
    assert!(row["not_applied"].is_null(), "{row}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let v = loop {
        // Re-judged from the stored inventory just after the referrer's job.
        let v = assessed_as(port, &admin, &digest);
        if v["health"]["status"] == "healthy" {
            break v;
        }
        assert!(Instant::now() < deadline, "never healthy: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["summary"]["total"], 0, "{}", v["summary"]);
    let cleared: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| ids.iter().any(|id| f["id"] == id.as_str()))
        .collect();
    assert!(!cleared.is_empty(), "{v}");
    for f in cleared {
        let n = &f["not_affected_per_vex"];
        assert_eq!(n["document"], "https://example.com/vex/by-sec", "{f}");
        assert_eq!(n["recorded_by"], "sec", "{f}");
        assert_eq!(n["author"], "Platform Security", "{f}");
    }

    // dev's very referrer (same manifest, same digest) pushed again by
    // sec: its job runs again and the document is applied as sec's.
    let a = push_vex(
        "sec",
        "sec-password",
        "https://example.com/vex/by-dev",
        "vex-again",
    );
    assert_eq!(
        format!("referrer:{}", a["digest"].as_str().unwrap()),
        by_dev
    );
    let note = a["error"].as_str().unwrap_or("");
    assert!(
        note.contains("VEX document https://example.com/vex/by-dev applied")
            && note.contains("pushed by sec"),
        "{a}"
    );
    let row = listed(&by_dev);
    assert_eq!(row["recorded_by"], "sec", "{row}");
    assert!(row["not_applied"].is_null(), "{row}");

    // The webhook heard nothing new. A test delivery, asked for only now,
    // goes through the same delivery loop: once it is in, anything the
    // VEX pushes and re-judgings above had queued would be too (the log
    // lists pending deliveries as well as sent ones).
    let (code, _, body) = http(
        port,
        "POST",
        &format!("/api/v1/webhooks/{hook_id}/test"),
        &admin,
        b"",
    );
    assert_eq!(code, 202, "{}", String::from_utf8_lossy(&body));
    let after = deliveries_settled(port, &admin, &hook_id, told.len() + 1, &got);
    let new: Vec<&Value> = after
        .iter()
        .filter(|d| !told.iter().any(|t| t["id"] == d["id"]))
        .collect();
    assert_eq!(new.len(), 1, "only the test delivery is new: {new:?}");
    assert_eq!(new[0]["event"], "webhook.test", "{new:?}");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), told.len() + 1);
    let last = got.last().unwrap();
    assert_eq!(last.header("x-drydock-event"), Some("webhook.test"));
}
