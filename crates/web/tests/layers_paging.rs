//! An image with more layers than one page holds (150, pushed through the
//! registry's API): `GET /api/v1/images/{digest}/layers` gives the first
//! 100 with a `next_cursor`, the cursor gives the other 50 in order with
//! their commands from the config history, and a cursor made for another
//! image's layers is refused. The dashboard follows the same cursor (the
//! image page's "Next layers" link, tried in ui-tests/registry.test.mjs).

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const LAYERS: usize = 150;

/// An image of `n` one-file layers, each made by `RUN step <i>`; its digest.
async fn push_layered(env: &Env, repo: &str, tag: &str, n: usize) -> String {
    let name = oci::Name::parse(repo).unwrap();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    for i in 0..n {
        let layer = gzip_layer(&[(format!("step/{i}"), format!("{repo} {i}").into_bytes())]);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut raw)
            .unwrap();
        diff_ids.push(sha256(&raw));
        history.push(json!({"created_by": format!("RUN step {i}")}));
        // A step that makes no layer between the others: skipped.
        history.push(json!({"created_by": "ENV X=1", "empty_layer": true}));
        layers.push(layer);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .unwrap();
    for blob in layers.iter().map(Vec::as_slice).chain([&config[..]]) {
        env.registry
            .put_blob(&name, &oci::Digest::parse(&sha256(blob)).unwrap(), blob)
            .await
            .unwrap();
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": {"mediaType": oci::OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": oci::OCI_LAYER_GZIP, "digest": sha256(l), "size": l.len(),
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    env.registry
        .put_manifest(
            &name,
            &oci::Reference::Tag(oci::Tag::parse(tag).unwrap()),
            manifest.clone().into(),
            Some(oci::OCI_MANIFEST),
            registry::Origin::Push,
        )
        .await
        .unwrap();
    sha256(&manifest)
}

/// The layers page at `query`, once the assessor has looked at the
/// image (before, it is unknown, then of kind "unknown" with no layers).
async fn layers(env: &Env, digest: &str, query: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, v) = env
            .get(&format!("/api/v1/images/{digest}/layers{query}"))
            .await;
        let unread =
            st == 200 && v["total"] == 0 && v["notes"].to_string().contains("not looked at yet");
        if st != 404 && !unread {
            return (st, v);
        }
        assert!(Instant::now() < deadline, "{digest} never known: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_layers_than_a_page_are_reached_through_the_cursor() {
    let env = Env::start().await;
    let digest = push_layered(&env, "team/tall", "1", LAYERS).await;

    let (st, first) = layers(&env, &digest, "").await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(first["total"], LAYERS);
    let page: Vec<&Value> = first["layers"].as_array().unwrap().iter().collect();
    assert_eq!(page.len(), 100, "the default page is 100 layers");
    let next = first["next_cursor"]
        .as_str()
        .expect("a next page after 100 of 150 layers");

    let (st, second) = layers(&env, &digest, &format!("?cursor={next}")).await;
    assert_eq!(st, 200, "{second}");
    assert!(second["next_cursor"].is_null(), "the last page: {second}");
    let rest: Vec<&Value> = second["layers"].as_array().unwrap().iter().collect();
    assert_eq!(rest.len(), LAYERS - 100);
    // Every layer once, bottom first, each with its own build step.
    for (i, l) in page.iter().chain(&rest).enumerate() {
        assert_eq!(l["index"], i, "{l}");
        assert_eq!(l["created_by"], format!("RUN step {i}"), "{l}");
    }

    // Smaller pages walk the same layers.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=40&cursor={c}"),
            None => "?limit=40".into(),
        };
        let (st, p) = layers(&env, &digest, &q).await;
        assert_eq!(st, 200, "{p}");
        seen.extend(
            p["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["index"].as_u64().unwrap()),
        );
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, (0..LAYERS as u64).collect::<Vec<_>>());

    // Another image's cursor, and one the server never gave: 400.
    let other = push_layered(&env, "team/short", "1", 3).await;
    let (st, err) = layers(&env, &other, &format!("?cursor={next}")).await;
    assert_eq!(st, 400, "{err}");
    assert_eq!(err["error"]["code"], "BAD_REQUEST");
    let (st, err) = layers(&env, &digest, "?cursor=zz").await;
    assert_eq!(st, 400, "{err}");
}
