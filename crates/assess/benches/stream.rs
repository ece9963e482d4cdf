//! Catalog-while-uploading benchmark (run with `BENCH=stream bash
//! bench/assess/run.sh`).
//!
//! Two registries with their assessors run side by side in this process,
//! configured as `drydock serve` configures them except for one switch:
//! `catalog_while_uploading` off (the baseline: each layer is read back
//! after its upload commits) and on (each layer is cataloged from its
//! upload stream). skopeo pushes each image to both in turn, new every
//! time (the registry is emptied and the digest forgotten before each
//! push, so every blob is uploaded and every layer cataloged), and the
//! bench reports per switch:
//! - blob push throughput: the image's blob bytes over skopeo's wall time;
//! - commit→findings: the manifest's commit (the job is written in the
//!   event call) to its findings stored (`queued_at` → `finished_at`);
//! - exit→findings: skopeo's exit to the digest's status `done`, polled;
//! - how each layer was cataloged: wholly from its stream, from its stream
//!   until the reader fell behind the client (the rest read back after the
//!   commit), or read back after the commit.
//!
//! Env: `DRYDOCK_TEST_IMAGES` (OCI layout parent), `DRYDOCK_VULNDATA`,
//! `BENCH_PUSHES` (pushes per image and switch, default 10), `BENCH_TAGS`
//! (comma-separated test image tags), `BENCH_STREAM_BUFFER_MB` (the
//! assessors' `stream_buffer_bytes` in MiB; default the server's).

use assess::{Options, Service, SystemClock};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_num(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// The 1, 5 and 15 minute load averages, for the record (the bench is only
/// as quiet as the box it runs on).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The manifest digest of `tag` and the bytes of every blob it names.
fn image_of(layout: &Path, tag: &str) -> (String, u64) {
    let l = oci::layout::OciLayout::open(layout).unwrap();
    let desc = l.resolve(Some(tag)).unwrap();
    let hex = desc.digest.to_string();
    let path = layout.join("blobs/sha256").join(&hex["sha256:".len()..]);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut bytes = m["config"]["size"].as_u64().unwrap_or(0);
    for l in m["layers"].as_array().into_iter().flatten() {
        bytes += l["size"].as_u64().unwrap_or(0);
    }
    (hex, bytes)
}

struct Server {
    name: &'static str,
    _dir: tempfile::TempDir,
    data: PathBuf,
    registry: registry::Registry,
    svc: Service,
    addr: std::net::SocketAddr,
}

async fn server(name: &'static str, while_uploading: bool, vulndata: &Path) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    vulndb::import(&data, &[vulndata.join("osv/Debian/all.zip")], &mut |_| {}).unwrap();
    let registry = registry::Registry::open(registry::Options::new(&data)).unwrap();
    let handle = vulndb::Handle::open_with_interval(&data, Duration::from_millis(200));
    let mut opts = Options::new(&data);
    opts.tick = Duration::from_secs(3600);
    opts.catalog_while_uploading = while_uploading;
    if let Some(mb) = std::env::var("BENCH_STREAM_BUFFER_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        opts.stream_buffer_bytes = mb << 20;
    }
    let svc = assess::start_with_registry(
        opts,
        registry.clone(),
        handle,
        catalog::Limits::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        name,
        _dir: dir,
        data,
        registry,
        svc,
        addr,
    }
}

impl Server {
    /// Forget everything so the next push is new: manifests deleted and
    /// collected, the layer cache emptied, the digest forgotten.
    async fn empty(&self, repo: &str, digest: &str) {
        self.svc.manifest_deleted(repo, digest);
        for r in self.registry.repositories().unwrap() {
            for m in self.registry.manifests(&r).unwrap() {
                let _ = self.registry.delete_manifest(&r, &m.digest);
            }
        }
        let gc = registry::GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        };
        registry::gc(&self.data, gc).await.unwrap();
        self.svc.store().clear_layer_cache().unwrap();
    }
}

#[derive(Default)]
struct Runs {
    push_ms: Vec<f64>,
    mb_s: Vec<f64>,
    commit: Vec<f64>,
    exit: Vec<f64>,
}

fn main() {
    let images = std::env::var_os("DRYDOCK_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/test-images"))
        .join("oci");
    let layout = std::fs::canonicalize(&images).expect("test images (bash scripts/test-images.sh)");
    let vulndata = std::env::var_os("DRYDOCK_VULNDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/vulndata"));
    let pushes = env_num("BENCH_PUSHES", 10);
    let tags: Vec<String> = std::env::var("BENCH_TAGS")
        .unwrap_or_else(|_| "bookworm-base,python-app,node-app,rust-app".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let servers = [
            server("after commit (off)", false, &vulndata).await,
            server("while uploading (on)", true, &vulndata).await,
        ];
        println!("Load average at start: {}", load_average());
        println!();
        println!(
            "| image | blob bytes | catalog | pushes | skopeo push p50 | push MB/s p50 | \
             commit→findings p50 | p99 | max | skopeo exit→findings p50 | p99 | \
             layers streamed / fell behind / read back |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut all: [Vec<f64>; 2] = Default::default();
        let mut all_exit: [Vec<f64>; 2] = Default::default();
        let mut all_mb: [Vec<f64>; 2] = Default::default();
        // Per image: on's p50 MB/s as a share of off's, and on's p99.
        let mut verdicts: Vec<(String, f64, f64)> = Vec::new();
        for tag in &tags {
            let (digest, bytes) = image_of(&layout, tag);
            let repo = format!("bench/{tag}");
            let mut runs: [Runs; 2] = Default::default();
            let before: Vec<assess::UploadCatalogCounts> = servers
                .iter()
                .map(|s| s.svc.upload_catalog_counts())
                .collect();
            for i in 0..pushes {
                // Alternate which goes first, so neither always follows
                // the other's background work.
                let order: [usize; 2] = if i % 2 == 0 { [0, 1] } else { [1, 0] };
                for k in order {
                    let s = &servers[k];
                    s.empty(&repo, &digest).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let t0 = Instant::now();
                    let out = Command::new("skopeo")
                        .args([
                            "copy",
                            "--dest-tls-verify=false",
                            &format!("oci:{}:{tag}", layout.display()),
                            &format!("docker://{}/{repo}:{i}", s.addr),
                        ])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let t1 = Instant::now();
                    loop {
                        let row = s.svc.store().image(&digest).unwrap();
                        if let Some(r) = row.as_ref().filter(|r| r.status == "done") {
                            runs[k]
                                .commit
                                .push((r.finished_at.unwrap() - r.queued_at) as f64);
                            break;
                        }
                        assert!(t1.elapsed() < Duration::from_secs(120), "{row:?}");
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let secs = (t1 - t0).as_secs_f64();
                    runs[k].exit.push(t1.elapsed().as_secs_f64() * 1000.0);
                    runs[k].push_ms.push(secs * 1000.0);
                    runs[k].mb_s.push(bytes as f64 / secs / 1e6);
                }
            }
            for r in &mut runs {
                for v in [&mut r.push_ms, &mut r.mb_s, &mut r.commit, &mut r.exit] {
                    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                }
            }
            verdicts.push((
                tag.clone(),
                pct(&runs[1].mb_s, 0.5) / pct(&runs[0].mb_s, 0.5),
                pct(&runs[1].commit, 0.99),
            ));
            for (k, s) in servers.iter().enumerate() {
                let r = &runs[k];
                all[k].extend(r.commit.iter().copied());
                all_exit[k].extend(r.exit.iter().copied());
                all_mb[k].extend(r.mb_s.iter().copied());
                let (c0, c1) = (before[k], s.svc.upload_catalog_counts());
                println!(
                    "| {tag} | {:.0} MB | {} | {pushes} | {:.0} ms | {:.0} | {:.0} ms | {:.0} ms | \
                     {:.0} ms | {:.0} ms | {:.0} ms | {} / {} / {} |",
                    bytes as f64 / 1e6,
                    s.name,
                    pct(&r.push_ms, 0.5),
                    pct(&r.mb_s, 0.5),
                    pct(&r.commit, 0.5),
                    pct(&r.commit, 0.99),
                    r.commit.last().unwrap(),
                    pct(&r.exit, 0.5),
                    pct(&r.exit, 0.99),
                    c1.streamed - c0.streamed,
                    c1.spilled - c0.spilled,
                    c1.read_back - c0.read_back,
                );
            }
        }
        println!();
        for (tag, share, p99) in &verdicts {
            println!(
                "{tag}: push throughput while uploading {:.0}% of after commit (target ≥ 90%); \
                 commit→findings p99 {p99:.0} ms (target < 50 ms)",
                share * 100.0
            );
        }
        println!();
        for (k, s) in servers.iter().enumerate() {
            let (c, e, m) = (&mut all[k], &mut all_exit[k], &mut all_mb[k]);
            for v in [&mut *c, &mut *e, &mut *m] {
                v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            }
            println!(
                "All pushes, {}: n = {}, commit→findings p50 = {:.0} ms, p99 = {:.0} ms; \
                 skopeo exit→findings p50 = {:.0} ms, p99 = {:.0} ms",
                s.name,
                c.len(),
                pct(c, 0.5),
                pct(c, 0.99),
                pct(e, 0.5),
                pct(e, 0.99),
            );
        }
        println!("Load average at end: {}", load_average());
        for s in &servers {
            s.svc.shutdown();
        }
    });
}
