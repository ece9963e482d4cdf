//! `drydock serve --tls-cert --tls-key`: the real binary answers `/v2/`
//! over HTTPS and says where it serves.

mod cli_support;

use cli_support::{drydock, free_port};
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test]
async fn serve_answers_v2_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();

    let port = free_port();
    let mut child = drydock(
        &data,
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn drydock serve");

    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let start = Instant::now();
    let resp = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("drydock serve exited ({status}): {err}");
        }
        if let Ok(r) = client.get(format!("{base}/v2/")).send().await {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "drydock serve did not answer over HTTPS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    // Plain HTTP on the same port is not served.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/v2/"))
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );

    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains(&format!("{base}/ (dashboard: {base}/ui/)")),
        "the start message names the HTTPS URL: {err}"
    );
}
