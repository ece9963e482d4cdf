//! `drydock import` against a running `drydock serve`: a local source is
//! read by the client and pushed over the registry API, the image lands
//! byte for byte, and the assessment service assesses it on arrival.

mod cli_support;

use cli_support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The digest the layout's index gives a tag.
fn layout_digest(tag: &str) -> String {
    let layout = oci::layout::OciLayout::open(oci_dir()).unwrap();
    layout.resolve(Some(tag)).unwrap().digest.to_string()
}

#[test]
fn imported_image_is_stored_and_assessed() {
    transport::require_test_images!(dir);
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    import(d, &[vulndata("osv/PyPI/all.zip")]);
    let server = Server::start(d);
    let url = format!("http://{}", server.addr());

    let out = run(
        d,
        &[
            "import",
            &oci_target("python-app"),
            "team/imported:v1",
            "--server",
            &url,
        ],
    );
    assert!(out.status.success(), "import failed: {}", stderr(&out));

    // Stored under the new name with the layout's digest (nothing rewritten).
    let want = layout_digest("python-app");
    let (status, tags) = get_json(server.port, "/v2/team/imported/tags/list");
    assert_eq!(status, 200);
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));

    // Assessed on arrival: the API shows the finished assessment with the
    // PyPI finding the record gives for requests 2.19.1.
    let start = Instant::now();
    let image = loop {
        let (status, v) = get_json(server.port, &format!("/api/v1/images/{want}"));
        if status == 200 && v["status"] == "done" {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not assessed: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(image["repositories"], serde_json::json!(["team/imported"]));
    let ids: Vec<&str> = image["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["package"] == "requests")
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"PYSEC-2018-28"), "requests findings: {ids:?}");
    assert!(image["summary"]["total"].as_u64().unwrap() > 0);

    // A bad source fails with the reason and creates nothing (read here,
    // so no job on the server either).
    let out = run(
        d,
        &[
            "import",
            "oci:/nonexistent/layout:x",
            "team/bad:v1",
            "--server",
            &url,
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/layout"),
        "{}",
        stderr(&out)
    );
    let (status, _) = get_json(server.port, "/v2/team/bad/tags/list");
    assert_eq!(status, 404);
    assert_eq!(
        get_json(server.port, "/api/v1/imports"),
        (200, serde_json::json!([]))
    );
}

/// `GET PATH` on 127.0.0.1:PORT: status and body.
fn get_bytes(port: u16, path: &str, accept: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
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
        b = &b[eol + 4 + n..];
    }
}

#[test]
fn a_local_layout_is_pushed_from_the_client_and_pulls_back_identical() {
    transport::require_test_images!(dir);
    // The server's data directory and the client's working tree are
    // different places; the server has no import directories, so it could
    // not read the layout even if asked to.
    let server_data = tempfile::tempdir().unwrap();
    let server = Server::start(server_data.path());
    let url = format!("http://{}", server.addr());
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(oci_dir(), work.path().join("images")).unwrap();
    let client_data = work.path().join("client-data");

    // A relative path: only the client can resolve it.
    let out = drydock(
        &client_data,
        &[
            "import",
            "oci:images:multiarch",
            "team/multi:v1",
            "--server",
            &url,
            "--json",
        ],
    )
    .current_dir(work.path())
    .output()
    .unwrap();
    assert_no_panic(&out, &["import"]);
    assert!(out.status.success(), "import failed: {}", stderr(&out));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(
        get_json(server.port, "/api/v1/imports"),
        (200, serde_json::json!([])),
        "no server-side job"
    );

    // Pull it back: the index, each platform manifest and every blob hash
    // to what the layout holds.
    let want = layout_digest("multiarch");
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
    let (status, index) = get_bytes(server.port, "/v2/team/multi/manifests/v1", accept);
    assert_eq!(status, 200);
    assert_eq!(oci::Digest::sha256_of(&index).to_string(), want);
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let children = index["manifests"].as_array().unwrap();
    assert!(children.len() >= 2);
    let mut blobs = 0;
    for c in children {
        let d = c["digest"].as_str().unwrap();
        let (status, m) = get_bytes(
            server.port,
            &format!("/v2/team/multi/manifests/{d}"),
            accept,
        );
        assert_eq!(status, 200);
        assert_eq!(oci::Digest::sha256_of(&m).to_string(), d);
        let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
        let layers = m["layers"].as_array().cloned().unwrap_or_default();
        for b in std::iter::once(&m["config"]).chain(layers.iter()) {
            let bd = b["digest"].as_str().unwrap();
            let (status, bytes) =
                get_bytes(server.port, &format!("/v2/team/multi/blobs/{bd}"), "*/*");
            assert_eq!(status, 200, "{bd}");
            assert_eq!(oci::Digest::sha256_of(&bytes).to_string(), bd);
            assert_eq!(bytes.len() as u64, b["size"].as_u64().unwrap());
            blobs += 1;
        }
    }
    assert!(blobs >= 4);

    // A file that is not an image is read (and refused) here, without
    // quoting it, and the server is never asked to read it.
    let out = run(
        &client_data,
        &[
            "import",
            "docker-archive:/etc/passwd",
            "team/x:v1",
            "--server",
            &url,
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("not a tar archive") || err.contains("not a docker archive"),
        "{err}"
    );
    assert!(!err.contains("root:"), "{err}");
    assert_eq!(
        get_json(server.port, "/api/v1/imports"),
        (200, serde_json::json!([]))
    );
}

#[test]
fn the_password_is_taken_from_the_environment_and_never_shown() {
    let d = tempfile::tempdir().unwrap();
    let out = drydock(d.path(), &["import", "--help"])
        .env("DRYDOCK_USERNAME", "alice")
        .env("DRYDOCK_PASSWORD", "pw-7d1c0e")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("DRYDOCK_PASSWORD"), "{help}");
    assert!(!help.contains("pw-7d1c0e"), "{help}");
    // Against a server that refuses it, the message does not carry it.
    let server_data = tempfile::tempdir().unwrap();
    let server = Server::start(server_data.path());
    let out = drydock(
        d.path(),
        &[
            "import",
            "docker://127.0.0.1:1/a/b:c",
            "team/x:v1",
            "--server",
            &format!("http://{}", server.addr()),
        ],
    )
    .env("DRYDOCK_USERNAME", "alice")
    .env("DRYDOCK_PASSWORD", "pw-7d1c0e")
    .output()
    .unwrap();
    assert_no_panic(&out, &["import"]);
    assert!(!stderr(&out).contains("pw-7d1c0e"), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pw-7d1c0e"));
}

#[test]
fn with_access_control_the_credentials_open_both_the_push_and_the_api() {
    transport::require_test_images!(dir);
    let password = "admin-password-for-tests-1";
    let server_data = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        server_data.path(),
        &[
            ("DRYDOCK_AUTH", "true"),
            ("DRYDOCK_ADMIN_PASSWORD", password),
        ],
    );
    let url = format!("http://{}", server.addr());
    let client = tempfile::tempdir().unwrap();
    let import = |source: &str, creds: bool| {
        let mut c = drydock(
            client.path(),
            &["import", source, "team/rust:v1", "--server", &url, "--json"],
        );
        if creds {
            c.env("DRYDOCK_USERNAME", "admin")
                .env("DRYDOCK_PASSWORD", password);
        }
        let out = c.output().unwrap();
        assert_no_panic(&out, &["import", source]);
        out
    };

    // Without credentials: an anonymous token does not let us push, and
    // the command says what to give; nothing is written.
    let out = import(&oci_target("rust-app"), false);
    assert!(!out.status.success());
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["state"], "failed");
    assert!(job["manifests"].as_array().unwrap().is_empty());
    let why = job["error"].as_str().unwrap();
    assert!(why.contains("requires credentials"), "{why}");

    // With them: Basic, then the bearer token the challenge points to.
    let out = import(&oci_target("rust-app"), true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains(password));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let root = job["manifests"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(root["digest"], layout_digest("rust-app").as_str());
    assert_eq!(root["tag"], "v1");

    // The API: anonymous is asked to sign in; with the credentials (Basic)
    // the job is accepted, and then fails on its unreachable source.
    let out = import("docker://127.0.0.1:1/a/b:c", false);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sign in"), "{}", stderr(&out));
    let out = import("docker://127.0.0.1:1/a/b:c", true);
    assert!(!out.status.success());
    let job: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(job["target"], "team/rust:v1");
    let text = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(!text.contains(password));
}
