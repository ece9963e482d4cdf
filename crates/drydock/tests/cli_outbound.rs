//! `drydock serve` wires `[outbound]` / `DRYDOCK_OUTBOUND_ALLOW` into the
//! webhook and import endpoints: refused by default, allowed when listed.
//! Only loopback is contacted.

mod cli_support;

use cli_support::Server;
use serde_json::{Value, json};

async fn post(port: u16, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn hook(url: &str) -> Value {
    json!({"url": url, "secret": "0123456789abcdef0123"})
}

fn import(port: u16) -> Value {
    json!({"source": format!("docker://127.0.0.1:{port}/team/app:v1"), "target": "copy/app:v1", "insecure": true})
}

#[tokio::test]
async fn the_outbound_allow_list_is_wired_into_webhooks_and_imports() {
    let data = tempfile::tempdir().unwrap();
    // An empty list: the default policy.
    let strict = Server::start_with_env(data.path(), &[("DRYDOCK_OUTBOUND_ALLOW", "")]);
    let (st, v) = post(
        strict.port,
        "/api/v1/webhooks",
        hook("http://127.0.0.1:9/hook"),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v.to_string()
            .contains("refused by the outbound policy: 127.0.0.1 is a loopback address"),
        "{v}"
    );
    let (st, v) = post(strict.port, "/api/v1/imports", import(strict.port)).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("(allow it with outbound.allow)"),
        "{v}"
    );
    drop(strict);

    // The harness's loopback allow-list.
    let data = tempfile::tempdir().unwrap();
    let open = Server::start(data.path());
    let (st, v) = post(
        open.port,
        "/api/v1/webhooks",
        hook("http://127.0.0.1:9/hook"),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = post(open.port, "/api/v1/webhooks", hook("http://10.0.0.1/hook")).await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = post(open.port, "/api/v1/imports", import(open.port)).await;
    assert_eq!(st, 202, "{v}");
}

#[test]
fn a_bad_allow_entry_stops_the_server_at_start() {
    let data = tempfile::tempdir().unwrap();
    let out = cli_support::drydock(data.path(), &["serve", "--listen", "127.0.0.1:0"])
        .env("DRYDOCK_OUTBOUND_ALLOW", "127.0.0.0/8,not-a-cidr")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = cli_support::stderr(&out);
    assert!(err.contains("outbound.allow: \"not-a-cidr\""), "{err}");
}
