//! Three `drydock serve` processes sharing one PostgreSQL database, one
//! SeaweedFS bucket and one token signing key, behind a round-robin TCP
//! balancer, as a team would run them. Through the balancer: skopeo copies
//! a real image in and out, a chunked upload whose requests land on
//! different nodes, a monolithic one, tag listing and delete, and each
//! node answers for every push at once. Then one node is killed (SIGKILL)
//! while images are pushed: the others keep serving, the clients' retries
//! succeed, and no tag points at anything missing.
//!
//! Apart, three nodes with scheduled GC: only the GC leader collects, and
//! when it is killed another node takes the lead over.
//!
//! Skips (naming what is missing) without PostgreSQL, the shared tools'
//! SeaweedFS, skopeo or the test images, except under CI.

mod several_nodes_support;

use futures::StreamExt;
use oci::Digest;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use several_nodes_support::{Balancer, Node, skopeo, start_s3};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PASSWORD: &str = "several-nodes-Pw-2026";
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// A client that opens a new connection for every request, so that the
/// balancer spreads even one upload's requests over the nodes.
fn client() -> Client {
    Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// A bearer token issued by the node at `base` for every action on `repo`.
async fn token(c: &Client, base: &str, repo: &str) -> String {
    let r = c
        .get(format!(
            "{base}/token?scope=repository:{repo}:pull,push,delete"
        ))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "token from {base}");
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().expect("a token").to_string()
}

/// The manifest `repo:reference` as the node at `base` serves it: its
/// digest and JSON, or `None` on 404.
async fn manifest(
    c: &Client,
    base: &str,
    tok: &str,
    repo: &str,
    r: &str,
) -> Option<(String, Value)> {
    let resp = c
        .get(format!("{base}/v2/{repo}/manifests/{r}"))
        .header("accept", ACCEPT)
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    if resp.status() == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(resp.status(), 200, "{base} {repo}:{r}");
    let digest = resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let body = resp.bytes().await.unwrap();
    assert_eq!(Digest::sha256_of(&body).to_string(), digest);
    Some((digest, serde_json::from_slice(&body).unwrap()))
}

/// Everything `repo:r` names is served by the node at `base`: the
/// manifest, its blobs (whole, matching their digests), and for an index
/// each child, recursively.
async fn check_complete(c: &Client, base: &str, tok: &str, repo: &str, r: &str) -> String {
    let mut todo = vec![r.to_string()];
    let mut top = None;
    while let Some(r) = todo.pop() {
        let (digest, m) = manifest(c, base, tok, repo, &r)
            .await
            .unwrap_or_else(|| panic!("{base}: {repo}:{r} points at nothing"));
        top.get_or_insert(digest);
        if let Some(children) = m["manifests"].as_array() {
            todo.extend(
                children
                    .iter()
                    .map(|d| d["digest"].as_str().unwrap().to_string()),
            );
            continue;
        }
        let layers = m["layers"].as_array().cloned().unwrap_or_default();
        for b in layers.iter().chain(std::iter::once(&m["config"])) {
            let d = b["digest"].as_str().unwrap();
            let got = c
                .get(format!("{base}/v2/{repo}/blobs/{d}"))
                .bearer_auth(tok)
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), 200, "{base}: blob {d} of {repo}:{r}");
            let bytes = got.bytes().await.unwrap();
            assert_eq!(Digest::sha256_of(&bytes).to_string(), d, "{base}: blob {d}");
        }
    }
    top.unwrap()
}

fn skopeo_present() -> bool {
    let ok = std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI: skopeo is missing");
        eprintln!("skipped: no skopeo");
    }
    ok
}

fn copy_args(from: String, to: String) -> Vec<String> {
    let creds = format!("admin:{PASSWORD}");
    [
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        &creds,
        "--dest-creds",
        &creds,
        // No retries of skopeo's own: the test retries, as a client would.
        "--retry-times",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([from, to])
    .collect()
}

/// A configuration file in `dir` putting blobs under `prefix` of the
/// SeaweedFS bucket on `port`; its path.
fn s3_config(dir: &std::path::Path, port: u16, prefix: &str) -> std::path::PathBuf {
    let config = dir.join("drydock.toml");
    std::fs::write(
        &config,
        format!(
            "[storage.s3]\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"registry\"\n\
             region = \"us-east-1\"\npath_style = true\naccess_key = \"testkey\"\n\
             secret_key = \"testsecret\"\nprefix = \"{prefix}\"\npart_size_mib = 5\n"
        ),
    )
    .unwrap();
    config
}

/// Which of `nodes` have logged `line` (after the first `from[i]` bytes
/// of their logs).
fn logged(nodes: &[Node], from: &[usize], line: &str) -> Vec<usize> {
    (0..nodes.len())
        .filter(|&i| {
            let log = std::fs::read_to_string(&nodes[i].log).unwrap_or_default();
            log.get(from[i]..).is_some_and(|l| l.contains(line))
        })
        .collect()
}

/// Wait (at most `within`) until some node logged `line`; which did.
async fn until_logged(nodes: &[Node], from: &[usize], line: &str, within: Duration) -> Vec<usize> {
    let deadline = Instant::now() + within;
    loop {
        let who = logged(nodes, from, line);
        if !who.is_empty() {
            return who;
        }
        assert!(
            Instant::now() < deadline,
            "no node logged {line:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const LEADS: &str = "this node leads: it runs scheduled garbage collection";
const GC_DONE: &str = "scheduled garbage collection done";

/// Three nodes with scheduled GC every second: exactly one (the leader of
/// the GC duty) runs it. Killed with SIGKILL, its PostgreSQL session ends
/// and with it the lead: another node takes over within the retry period
/// (5 s) and runs GC from then on; the third still does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gc_leader_dies_and_another_node_takes_over() {
    let Some(pg) = storage::testing::shared_cluster() else {
        return;
    };
    let Some(s3) = start_s3() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = s3_config(tmp.path(), s3.port, "gc-leader/");
    let url = pg.fresh_database();
    let env = [
        ("DRYDOCK_METADATA_URL", url.as_str()),
        ("DRYDOCK_GC_INTERVAL_SECS", "1"),
        ("RUST_LOG", "warn,drydock=info"),
    ];
    let mut nodes = Vec::new();
    for n in ["n1", "n2", "n3"] {
        nodes.push(Node::start(&tmp.path().join(n), &config, &env).await);
    }
    let start = [0, 0, 0];
    let ran = until_logged(&nodes, &start, GC_DONE, Duration::from_secs(30)).await;
    // A few more periods: still one leader, and only it collects.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leaders = logged(&nodes, &start, LEADS);
    assert_eq!(leaders.len(), 1, "leaders: {leaders:?}");
    assert_eq!(logged(&nodes, &start, GC_DONE), leaders);
    assert_eq!(ran, leaders);
    let old = leaders[0];

    let log_len = |n: &Node| std::fs::metadata(&n.log).map_or(0, |m| m.len() as usize);
    // The others' logs are measured before the kill (a new leader can
    // log as soon as the old one's session ends), the old leader's only
    // once it is dead: a collection it finished just before the kill
    // must not count as one run after it.
    let mut from: Vec<usize> = nodes.iter().map(log_len).collect();
    nodes[old].kill9();
    from[old] = log_len(&nodes[old]);
    let killed = Instant::now();
    let new = until_logged(&nodes, &from, LEADS, Duration::from_secs(30)).await;
    eprintln!("GC lead taken over in {:?}", killed.elapsed());
    assert_eq!(new.len(), 1, "new leaders: {new:?}");
    assert_ne!(new[0], old);
    let ran = until_logged(&nodes, &from, GC_DONE, Duration::from_secs(30)).await;
    assert_eq!(ran, new, "only the new leader collects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_behind_a_round_robin_balancer() {
    let images = transport::require_test_images!();
    if !skopeo_present() {
        return;
    }
    let Some(pg) = storage::testing::shared_cluster() else {
        return;
    };
    let Some(s3) = start_s3() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = s3_config(tmp.path(), s3.port, "several-nodes/");
    let url = pg.fresh_database();
    let env = [
        ("DRYDOCK_METADATA_URL", url.as_str()),
        ("DRYDOCK_AUTH", "true"),
        ("DRYDOCK_ADMIN_PASSWORD", PASSWORD),
    ];
    // The first node creates the token signing key; the others get a copy.
    let first = Node::start(&tmp.path().join("n1"), &config, &env).await;
    let key = first.data.join("auth/token-key.p8");
    let mut nodes = vec![first];
    for n in ["n2", "n3"] {
        let data = tmp.path().join(n);
        std::fs::create_dir_all(data.join("auth")).unwrap();
        std::fs::copy(&key, data.join("auth/token-key.p8")).unwrap();
        nodes.push(Node::start(&data, &config, &env).await);
    }
    let lb = Balancer::start(nodes.iter().map(|n| n.addr()).collect()).await;
    let lb_base = format!("http://{}", lb.host());
    let c = client();

    // skopeo in through the balancer; each node serves all of it at once,
    // with a token another node issued.
    let want = transport::testing::test_image_digest("bookworm-base").to_string();
    let out = skopeo(copy_args(
        format!("oci:{}:bookworm-base", images.display()),
        format!("docker://{}/base/debian:12", lb.host()),
    ))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tok = token(&c, &nodes[0].base(), "base/debian").await;
    for n in &nodes {
        let got = check_complete(&c, &n.base(), &tok, "base/debian", "12").await;
        assert_eq!(got, want, "node {}", n.base());
    }
    // And out again: the same digest.
    let out_dir = tmp.path().join("out");
    let out = skopeo(copy_args(
        format!("docker://{}/base/debian:12", lb.host()),
        format!("oci:{}:12", out_dir.display()),
    ))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"].as_str().unwrap(), want);

    // A chunked upload, one request per connection: round robin puts its
    // POST, PATCHes and PUT on different nodes. A token from node 2.
    let tok = token(&c, &nodes[1].base(), "team/app").await;
    let before: Vec<usize> = lb
        .served
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let layer: Vec<u8> = (0..(6u32 << 20) + 77)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    let ld = Digest::sha256_of(&layer);
    let r = c
        .post(format!("{lb_base}/v2/team/app/blobs/uploads/"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut loc = r.headers()["location"].to_str().unwrap().to_string();
    let cuts = [0usize, 1 << 20, 5 << 20, layer.len()];
    for w in cuts.windows(2) {
        let at = if loc.starts_with('/') {
            format!("{lb_base}{loc}")
        } else {
            loc.clone()
        };
        let r = c
            .patch(at)
            .bearer_auth(&tok)
            .header("content-range", format!("{}-{}", w[0], w[1] - 1))
            .body(layer[w[0]..w[1]].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        loc = r.headers()["location"].to_str().unwrap().to_string();
    }
    let at = if loc.starts_with('/') {
        format!("{lb_base}{loc}")
    } else {
        loc.clone()
    };
    let sep = if at.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{at}{sep}digest={ld}"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // A monolithic one (the config), and the manifest naming both.
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = Digest::sha256_of(cfg);
    let r = c
        .post(format!("{lb_base}/v2/team/app/blobs/uploads/?digest={cd}"))
        .bearer_auth(&tok)
        .body(cfg.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
        cfg.len(),
        layer.len()
    );
    let md = Digest::sha256_of(m.as_bytes()).to_string();
    let r = c
        .put(format!("{lb_base}/v2/team/app/manifests/v1"))
        .bearer_auth(&tok)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(m)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let spread: Vec<usize> = lb
        .served
        .iter()
        .zip(&before)
        .map(|(a, b)| a.load(Ordering::Relaxed) - b)
        .collect();
    assert!(
        spread.iter().all(|&n| n >= 2),
        "requests per node: {spread:?}"
    );
    for n in &nodes {
        assert_eq!(
            check_complete(&c, &n.base(), &tok, "team/app", "v1").await,
            md
        );
    }
    // Tag listing through the balancer, several times (several nodes).
    for _ in 0..3 {
        let tags: Value = c
            .get(format!("{lb_base}/v2/team/app/tags/list"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    }
    // Delete through the balancer: gone on every node (caches included).
    let r = c
        .delete(format!("{lb_base}/v2/team/app/manifests/{md}"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Each node notices the change within about a second; the deadline
    // is for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in &nodes {
        while manifest(&c, &n.base(), &tok, "team/app", "v1")
            .await
            .is_some()
        {
            assert!(
                Instant::now() < deadline,
                "{} still serves a deleted tag",
                n.base()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The fault: two pushes through the balancer, and node 2 killed while
    // they run. Each client pushes again and again until it has seen the
    // fault, so a push is in flight when node 2 dies however fast one push
    // is, and then once more: that push, begun after the fault, must
    // succeed (retrying a failed attempt, as a client would).
    let pushes = [("python-app", "team/py:1"), ("node-app", "team/node:1")];
    let lb_host = lb.host();
    let killed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (tag, dst) in pushes {
        let (from, to) = (
            format!("oci:{}:{tag}", images.display()),
            format!("docker://{lb_host}/{dst}"),
        );
        let killed = killed.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let after_fault = killed.load(Ordering::SeqCst);
                let out = skopeo(copy_args(from.clone(), to.clone())).await;
                if out.status.success() {
                    if after_fault {
                        return failures;
                    }
                    continue;
                }
                failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
                assert!(
                    failures.len() < 5,
                    "{to}: every retry failed: {failures:#?}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }
    // Meanwhile a chunked upload whose second chunk streams into node 2
    // (a client connected to it) when it dies; its retry resumes through
    // the balancer from the last saved state.
    let blob: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(40503) >> 5) as u8)
        .collect();
    let bd = Digest::sha256_of(&blob);
    let tok = token(&c, &nodes[0].base(), "team/cut").await;
    let r = c
        .post(format!("{lb_base}/v2/team/cut/blobs/uploads/"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with('/'), "{loc}");
    let first = 1 << 20;
    let r = c
        .patch(format!("{lb_base}{loc}"))
        .bearer_auth(&tok)
        .header("content-range", format!("0-{}", first - 1))
        .body(blob[..first].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let pieces = Arc::new(AtomicUsize::new(0));
    let rest: Vec<Vec<u8>> = blob[first..]
        .chunks(256 << 10)
        .map(<[u8]>::to_vec)
        .collect();
    let (sent, dead) = (pieces.clone(), killed.clone());
    // After three pieces the rest waits for the kill, so the request is
    // still streaming when node 2 dies however slow the machine is.
    let slow = futures::stream::iter(rest).then(move |p| {
        let (sent, dead) = (sent.clone(), dead.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            while sent.load(Ordering::Relaxed) >= 3 && !dead.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::io::Error>(p)
        }
    });
    let cut = c
        .patch(format!("{}{loc}", nodes[1].base()))
        .bearer_auth(&tok)
        .header("content-range", format!("{first}-{}", blob.len() - 1))
        .body(reqwest::Body::wrap_stream(slow))
        .send();
    let cut = tokio::spawn(cut);
    while pieces.load(Ordering::Relaxed) < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "a push gave up before the fault"
    );
    nodes[1].kill9();
    killed.store(true, Ordering::SeqCst);
    let cut = cut.await.unwrap();
    assert!(
        cut.as_ref().map_or(true, |r| !r.status().is_success()),
        "a chunk streamed into a killed node was accepted: {cut:?}"
    );
    // The retry: where does the upload stand? Only the saved first chunk.
    let r = c
        .get(format!("{lb_base}{loc}"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["range"].to_str().unwrap(),
        format!("0-{}", first - 1)
    );
    let r = c
        .patch(format!("{lb_base}{loc}"))
        .bearer_auth(&tok)
        .header("content-range", format!("{first}-{}", blob.len() - 1))
        .body(blob[first..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let r = c
        .put(format!("{lb_base}{loc}?digest={bd}"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    for n in [&nodes[0], &nodes[2]] {
        let got = c
            .get(format!("{}/v2/team/cut/blobs/{bd}", n.base()))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(Digest::sha256_of(&got.bytes().await.unwrap()), bd);
    }
    for t in tasks {
        let failures = t.await.unwrap();
        if !failures.is_empty() {
            eprintln!("retried after: {failures:?}");
        }
    }
    // The survivors serve everything, and every tag of every repository
    // points at a manifest whose blobs are all there.
    let alive = [&nodes[0], &nodes[2]];
    for (tag, dst) in pushes {
        let (repo, t) = dst.split_once(':').unwrap();
        let want = transport::testing::test_image_digest(tag).to_string();
        let tok = token(&c, &alive[0].base(), repo).await;
        for n in alive {
            assert_eq!(check_complete(&c, &n.base(), &tok, repo, t).await, want);
        }
    }
    let admin_tok = token(&c, &alive[1].base(), "base/debian").await;
    let catalog: Value = c
        .get(format!("{}/v2/_catalog", alive[1].base()))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let repos: BTreeSet<String> = catalog["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert!(
        repos.contains("team/py") && repos.contains("base/debian"),
        "{repos:?}"
    );
    for repo in &repos {
        let tok = if repo == "base/debian" {
            admin_tok.clone()
        } else {
            token(&c, &alive[1].base(), repo).await
        };
        let tags: Value = c
            .get(format!("{}/v2/{repo}/tags/list", alive[1].base()))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for t in tags["tags"].as_array().cloned().unwrap_or_default() {
            check_complete(&c, &alive[1].base(), &tok, repo, t.as_str().unwrap()).await;
        }
    }
    // No node logged a secret.
    for n in &nodes {
        let log = std::fs::read_to_string(&n.log).unwrap_or_default();
        assert!(
            !log.contains(PASSWORD) && !log.contains("testsecret"),
            "{}",
            n.log.display()
        );
    }
}
