//! TLS: ALPN, certificate reload, a bad replacement, handshake deadline.

mod support;

use axum::Router;
use axum::routing::get;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Server, closed_after};

/// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM, DER).
fn self_signed() -> (String, String, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    (
        ck.cert.pem(),
        ck.key_pair.serialize_pem(),
        ck.cert.der().to_vec(),
    )
}

/// Replace `path`'s content in one step, as a deployment tool would.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn files(cert: &str, key: &str) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    Files {
        _dir: dir,
        cert: c,
        key: k,
    }
}

async fn start(f: &Files) -> Server {
    let app = Router::new().route("/", get(|| async { "secure hello" }));
    let cfg = httpd::ServerConfig {
        tls: Some(httpd::TlsFiles {
            cert: f.cert.clone(),
            key: f.key.clone(),
        }),
        tls_reload_interval: Duration::from_millis(100),
        ..support::config(500, 5_000, 100)
    };
    Server::start(app, cfg).await
}

/// The certificate the server presents to a new connection (the client
/// trusts every certificate in `trusted`).
async fn presented(srv: &Server, trusted: &[&[u8]]) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for der in trusted {
        roots.add(CertificateDer::from(der.to_vec())).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = srv.connect().await;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Wait until new connections see `want` (checked every 100 ms by the
/// server; up to 60 s on a loaded machine).
async fn wait_for_cert(srv: &Server, trusted: &[&[u8]], want: &[u8]) {
    let start = Instant::now();
    while presented(srv, trusted).await != want {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client(trust_pem: &str, http1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(trust_pem.as_bytes()).unwrap());
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[tokio::test]
async fn alpn_negotiates_http2_and_a_replaced_certificate_is_served() {
    let (cert1, key1, der1) = self_signed();
    let f = files(&cert1, &key1);
    let srv = start(&f).await;
    let url = format!("https://{}/", srv.addr);

    let r = client(&cert1, false).get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "secure hello");
    let r = client(&cert1, true).get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.text().await.unwrap(), "secure hello");
    assert_eq!(presented(&srv, &[&der1]).await, der1);

    let (cert2, key2, der2) = self_signed();
    replace(&f.key, &key2);
    replace(&f.cert, &cert2);
    wait_for_cert(&srv, &[&der1, &der2], &der2).await;
    // A client that trusts only the new certificate now gets through.
    let r = client(&cert2, false).get(&url).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "secure hello");
    assert!(client(&cert1, false).get(&url).send().await.is_err());
}

#[tokio::test]
async fn a_bad_replacement_keeps_the_old_certificate() {
    let (cert1, key1, der1) = self_signed();
    let f = files(&cert1, &key1);
    let srv = start(&f).await;
    let (cert2, key2, der2) = self_signed();
    let trusted: [&[u8]; 2] = [&der1, &der2];
    // Serving (the files are loaded) before they are spoilt.
    assert_eq!(presented(&srv, &trusted).await, der1);

    // Not PEM at all.
    replace(&f.cert, "not a certificate\n");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(presented(&srv, &trusted).await, der1);
    // A new certificate with the old key: they do not match.
    replace(&f.cert, &cert2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(presented(&srv, &trusted).await, der1);
    // A missing key file.
    std::fs::remove_file(&f.key).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(presented(&srv, &trusted).await, der1);
    let r = client(&cert1, false)
        .get(format!("https://{}/", srv.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "secure hello");

    // The reloader is still watching: a good pair is taken.
    replace(&f.key, &key2);
    wait_for_cert(&srv, &trusted, &der2).await;
}

#[tokio::test]
async fn unusable_files_fail_at_start_and_a_stalled_handshake_is_closed() {
    let (cert1, _key1, _) = self_signed();
    let (_, other_key, _) = self_signed();
    let mismatched = files(&cert1, &other_key);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = httpd::ServerConfig {
        tls: Some(httpd::TlsFiles {
            cert: mismatched.cert.clone(),
            key: mismatched.key.clone(),
        }),
        ..httpd::ServerConfig::default()
    };
    let err = httpd::serve(listener, Router::new(), cfg, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");

    let (cert, key, _) = self_signed();
    let f = files(&cert, &key);
    let srv = start(&f).await;
    // A TCP connection that never starts the handshake.
    let mut s = srv.connect().await;
    let t0 = Instant::now();
    closed_after(&mut s, Duration::from_secs(5))
        .await
        .expect("a connection without a handshake stays open");
    assert!(t0.elapsed() >= Duration::from_millis(400));
}
