//! Crash test: run the real `drydock serve`, kill -9 it in the middle of
//! concurrent pushes, restart it, and check that every acknowledged push is
//! intact, every stored blob matches its digest, no temporary files remain,
//! and no tag points at a missing manifest.

mod cli_support;

use oci::Digest;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An acknowledged push: repository, tag, manifest digest, blob digests.
type Acked = (String, String, Digest, Vec<Digest>);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `drydock serve` on the environment's backend (cli_support), the same
/// one again after the kill.
fn spawn(data: &std::path::Path, port: u16) -> Child {
    cli_support::drydock(data, &["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait until `/readyz` answers 200: a restart after a kill may take a
/// while on a loaded machine (the deadline is generous; it returns as
/// soon as the server is up).
async fn wait_ready(c: &reqwest::Client, base: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited: {status}");
        }
        if let Ok(r) = c.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

/// One image: a config, a layer of `size` bytes, a manifest tagged `tag`.
async fn push_image(
    c: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    seed: u64,
    size: usize,
) -> Result<(Digest, Vec<Digest>), reqwest::Error> {
    let mut layer = vec![0u8; size];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for b in layer.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    let ld = Digest::sha256_of(&layer);
    let cd = Digest::sha256_of(&config);
    // Layer in two chunks, config monolithic.
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await?
        .error_for_status()?;
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let half = size / 2;
    let r = c
        .patch(format!("{base}{loc}"))
        .header("content-range", format!("0-{}", half - 1))
        .body(layer[..half].to_vec())
        .send()
        .await?
        .error_for_status()?;
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    c.put(format!("{base}{loc}?digest={ld}"))
        .header("content-range", format!("{half}-{}", size - 1))
        .body(layer[half..].to_vec())
        .send()
        .await?
        .error_for_status()?;
    c.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={cd}"))
        .body(config.clone())
        .send()
        .await?
        .error_for_status()?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{size}}}]}}"#,
        config.len()
    );
    let md = Digest::sha256_of(manifest.as_bytes());
    c.put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await?
        .error_for_status()?;
    Ok((md, vec![cd, ld]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_during_pushes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut child = spawn(&data, port);
    wait_ready(&c, &base, &mut child).await;

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..6u64 {
        let (c, base, acked) = (c.clone(), base.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..1000u64 {
                let repo = format!("crash/w{w}");
                let tag = format!("t{i}");
                match push_image(
                    &c,
                    &base,
                    &repo,
                    &tag,
                    w * 10_000 + i,
                    300_000 + (i as usize % 7) * 100_000,
                )
                .await
                {
                    Ok((md, blobs)) => acked.lock().unwrap().push((repo, tag, md, blobs)),
                    Err(_) => return,
                }
            }
        }));
    }
    // Let pushes run (at least 2.5 s and until some were acknowledged,
    // however slow the machine), then kill -9 in the middle of them.
    let start = Instant::now();
    let deadline = start + Duration::from_secs(120);
    while start.elapsed() < Duration::from_millis(2500) || acked.lock().unwrap().len() < 5 {
        assert!(
            Instant::now() < deadline,
            "only {} pushes acknowledged",
            acked.lock().unwrap().len()
        );
        assert!(
            !tasks.iter().all(|t| t.is_finished()),
            "every pusher stopped before the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 5,
        "only {} pushes before the kill",
        acked.len()
    );
    // What the crash left half-written. After the restart only these
    // must be gone: the restarted server's assessor writes temporary
    // files of its own (an SBOM's blobs) while the checks below run.
    let leftovers: Vec<std::path::PathBuf> = std::fs::read_dir(data.join("tmp"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    eprintln!("{} temporary files left by the crash", leftovers.len());

    let mut child = spawn(&data, port);
    wait_ready(&c, &base, &mut child).await;
    // Every acknowledged push is intact.
    for (repo, tag, md, blobs) in &acked {
        let r = c
            .get(format!("{base}/v2/{repo}/manifests/{tag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo}:{tag}");
        let body = r.bytes().await.unwrap();
        assert_eq!(&Digest::sha256_of(&body), md);
        for b in blobs {
            let r = c
                .get(format!("{base}/v2/{repo}/blobs/{b}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(&Digest::sha256_of(&r.bytes().await.unwrap()), b);
        }
    }
    // Every stored blob matches its name; no temporary file of the crash
    // remains.
    if cli_support::backend::embedded_only("reads the blob files under the data directory") {
        let mut n = 0;
        for prefix in std::fs::read_dir(data.join("blobs/sha256")).unwrap() {
            for f in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
                let p = f.unwrap().path();
                let name = p.file_name().unwrap().to_str().unwrap().to_string();
                assert_eq!(Digest::sha256_of(&std::fs::read(&p).unwrap()).hex(), name);
                n += 1;
            }
        }
        assert!(n >= acked.len());
        let left: Vec<_> = leftovers.iter().filter(|p| p.exists()).collect();
        assert!(
            left.is_empty(),
            "temporary files survived the restart: {left:?}"
        );
    }
    // Every tag resolves.
    let catalog: serde_json::Value = c
        .get(format!("{base}/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags: serde_json::Value = c
            .get(format!("{base}/v2/{repo}/tags/list"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for t in tags["tags"].as_array().unwrap() {
            let r = c
                .head(format!(
                    "{base}/v2/{repo}/manifests/{}",
                    t.as_str().unwrap()
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    // A push after the restart works.
    push_image(&c, &base, "crash/after", "ok", 1, 1000)
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}
