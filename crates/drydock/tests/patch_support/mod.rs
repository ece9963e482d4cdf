//! What the `patch*` tests share: the old Debian image they patch (an OCI
//! layout whose dpkg database records older versions than the loopback
//! archive holds), the server's configuration, and the calls and waits on
//! the server's API and registry.
//!
//! Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use crate::cli_support::*;
use flate2::read::GzDecoder;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Installed version → the older one the test image claims.
pub const OLDER: &[(&str, &str)] = &[
    ("libtasn1-6", "4.19.0-2"),
    ("libgnutls30", "3.7.9-2"),
    ("libsystemd0", "252.19-1~deb12u1"),
    ("libudev1", "252.19-1~deb12u1"),
    ("libp11-kit0", "0.23.2-5"),
    ("tar", "1.34+dfsg-1.2"),
];

pub fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// An OCI layout with `bookworm-base` plus one layer whose dpkg status
/// records the OLDER versions (as if built before their security updates).
pub fn old_image(out: &Path) {
    let older: Vec<(String, String)> = OLDER
        .iter()
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect();
    old_image_with(out, &older);
}

/// [`old_image`] with the dpkg database recording `older` (package,
/// version); a package's `Source:` version, where it has one, goes (the
/// assessor would match that instead).
pub fn old_image_with(out: &Path, older: &[(String, String)]) {
    let src = oci_dir();
    let index: Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "bookworm-base")
        .expect("bookworm-base in the test images")
        .clone();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blob(&src, desc["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let config: Value = serde_json::from_slice(
        &std::fs::read(blob(&src, manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut status = String::new();
    let mut tar = tar::Archive::new(GzDecoder::new(
        std::fs::File::open(blob(&src, &layer)).unwrap(),
    ));
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if p == "var/lib/dpkg/status" {
            e.read_to_string(&mut status).unwrap();
        }
    }
    assert!(!status.is_empty());
    let stanzas: Vec<String> = status
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let pkg = s.lines().next().unwrap().trim_start_matches("Package: ");
            match older.iter().find(|(p, _)| p == pkg) {
                Some((_, v)) => s
                    .lines()
                    .map(|l| {
                        if l.starts_with("Version: ") {
                            format!("Version: {v}")
                        } else if let Some(src) = l.strip_prefix("Source: ") {
                            format!("Source: {}", src.split(' ').next().unwrap())
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                None => s.to_string(),
            }
        })
        .collect();
    let status = stanzas.join("\n\n") + "\n";
    for (p, v) in older {
        assert!(status.contains(&format!("Package: {p}\n")), "{p} installed");
        assert!(status.contains(&format!("Version: {v}\n")));
    }
    // The new layer: the status file alone.
    let mut raw = Vec::new();
    {
        let mut b = tar::Builder::new(&mut raw);
        let mut h = tar::Header::new_gnu();
        h.set_size(status.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, "var/lib/dpkg/status", status.as_bytes())
            .unwrap();
        b.finish().unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let gz = gz.finish().unwrap();
    std::fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    std::fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(blob(out, &d), b).unwrap();
        d
    };
    let layer_new = put(&gz);
    if std::fs::hard_link(blob(&src, &layer), blob(out, &layer)).is_err() {
        std::fs::copy(blob(&src, &layer), blob(out, &layer)).unwrap();
    }
    let mut config = config;
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(sha(&raw)));
    let config = serde_json::to_vec(&config).unwrap();
    let config_d = put(&config);
    let mut m = manifest.clone();
    m["config"]["digest"] = json!(config_d);
    m["config"]["size"] = json!(config.len());
    m["layers"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_new, "size": gz.len()
    }));
    let m = serde_json::to_vec(&m).unwrap();
    let md = put(&m);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Wait until the assessor has a result for `digest`; its view.
pub fn assessed(port: u16, digest: &str) -> Value {
    let start = Instant::now();
    loop {
        let (code, v) = get_json(port, &format!("/api/v1/images/{digest}"));
        if code == 200 && v["status"] == "done" {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "not assessed: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn finding_ids(view: &Value) -> BTreeSet<(String, String)> {
    view["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["package"].as_str().unwrap().to_string(),
                f["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn patch_cli(data: &Path, server: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["patch", "--server", server];
    all.extend_from_slice(args);
    let out = run(data, &all);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// One request to the server's API, with HTTP Basic credentials if given.
pub fn api(
    method: &str,
    url: &str,
    creds: Option<(&str, &str)>,
    body: Option<Value>,
) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let mut r = c.request(method.parse().unwrap(), url);
        if let Some((u, p)) = creds {
            r = r.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    })
}

/// The server configuration of these tests: the loopback archive, and
/// whatever `extra` TOML adds.
pub fn patch_config(dir: &Path, archive_root: &Path, archive_url: &str, extra: &str) -> String {
    let config = dir.join("drydock.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[outbound]
allow = ["127.0.0.0/8"]
{extra}
[patch.debian]
keyring = "{}"
archives = [{{ url = "{archive_url}", suite = "bookworm" }}]
"#,
            archive_root.join("keyring.gpg").display(),
        ),
    )
    .unwrap();
    config.to_string_lossy().to_string()
}

/// A manifest or index as stored, and its digest (`Accept` names every
/// type, so an index is answered as itself).
pub fn manifest_with_digest(port: u16, repo: &str, reference: &str) -> Option<(String, Value)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v2/{repo}/manifests/{reference} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
         application/vnd.docker.distribution.manifest.list.v2+json, \
         application/vnd.docker.distribution.manifest.v2+json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let digest = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })
        .unwrap();
    assert_eq!(digest, sha(body.as_bytes()));
    Some((digest, serde_json::from_str(body).unwrap()))
}

pub fn manifest_json(port: u16, repo: &str, reference: &str) -> Value {
    manifest_with_digest(port, repo, reference)
        .unwrap_or_else(|| panic!("{repo}@{reference} missing"))
        .1
}
