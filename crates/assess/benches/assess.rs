//! Assessment benchmark (run with `bash bench/assess/run.sh`).
//!
//! 1. Push-to-findings latency: skopeo pushes real images into a registry
//!    on 127.0.0.1 with the assessor attached; the time from skopeo's exit
//!    to the digest's status `done` (findings stored) is measured in three
//!    states: "new" (no blob of the image in the registry: every blob is
//!    uploaded, and layers are cataloged as their uploads complete), "cold"
//!    (blobs already stored but the layer cache empty: every layer is read
//!    after the manifest arrives) and "warm" (layers cataloged before, as
//!    for a rebuilt image on a known base).
//! 2. Re-assessment: 10,000 stored inventories, generated from the real
//!    images' inventories with varied versions, re-matched after a
//!    vulnerability database update.
//!
//! Env: `DRYDOCK_TEST_IMAGES` (OCI layout parent), `DRYDOCK_VULNDATA`,
//! `BENCH_PUSHES` (pushes per image and cache state, default 10),
//! `BENCH_TAGS` (comma-separated test image tags, default the four app
//! images; `large` is the 1 GiB one),
//! `BENCH_INVENTORIES` (default 10000).

use assess::{Options, SystemClock};
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

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn digest_of(layout: &Path, tag: &str) -> String {
    let layout = oci::layout::OciLayout::open(layout).unwrap();
    layout.resolve(Some(tag)).unwrap().digest.to_string()
}

fn vary(inv: &inventory::Inventory, i: usize) -> inventory::Inventory {
    let mut inv = inv.clone();
    for (j, p) in inv.packages.iter_mut().enumerate() {
        if !(i + j).is_multiple_of(5) {
            continue;
        }
        // Vary the last digit of the version (older or newer builds).
        let mut v: Vec<char> = p.version.chars().collect();
        if let Some(pos) = v.iter().rposition(|c| c.is_ascii_digit()) {
            let d = v[pos].to_digit(10).unwrap();
            v[pos] = char::from_digit((d + (i % 3) as u32) % 10, 10).unwrap();
            p.version = v.into_iter().collect();
        }
    }
    inv
}

/// Empty the registry (every manifest deleted, then collected with no
/// grace period), so the next push uploads every blob again.
async fn empty_registry(registry: &registry::Registry, data: &Path) {
    for repo in registry.repositories().unwrap() {
        for m in registry.manifests(&repo).unwrap() {
            let _ = registry.delete_manifest(&repo, &m.digest);
        }
    }
    let gc = registry::GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
    };
    registry::gc(data, gc).await.unwrap();
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
    let inventories = env_num("BENCH_INVENTORIES", 10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let t = Instant::now();
        let v1 = vulndb::import(&data, &[vulndata.join("osv/Debian/all.zip")], &mut |_| {})
            .unwrap()
            .version;
        eprintln!("database v1 {v1} built in {:?}", t.elapsed());
        let registry = registry::Registry::open(registry::Options::new(&data)).unwrap();
        let handle = vulndb::Handle::open_with_interval(&data, Duration::from_millis(200));
        let mut opts = Options::new(&data);
        opts.tick = Duration::from_secs(3600);
        let svc = assess::start_with_registry(
            opts,
            registry.clone(),
            handle.clone(),
            catalog::Limits::default(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = registry.router();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        println!("## Push-to-findings latency\n");
        println!(
            "| image | layer cache | pushes | skopeo push p50 | commit→findings p50 | p99 | max | skopeo exit→findings p50 |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let tags = ["bookworm-base", "python-app", "node-app", "rust-app"];
        let pushed: Vec<String> = std::env::var("BENCH_TAGS")
            .map(|t| t.split(',').map(str::to_string).collect())
            .unwrap_or_else(|_| tags.iter().map(|t| t.to_string()).collect());
        let mut all = Vec::new();
        // Each image's inventory, kept for the re-assessment part (emptying
        // the registry for a "new" push forgets the others).
        let mut inventories_by_tag = std::collections::HashMap::new();
        for tag in &pushed {
            let tag = tag.as_str();
            let digest = digest_of(&layout, tag);
            for state in ["new", "cold", "warm"] {
                let mut lat = Vec::new();
                let mut push = Vec::new();
                let mut commit = Vec::new();
                for i in 0..pushes {
                    let repo = format!("bench/{tag}");
                    // Forget the digest so the next push is a new assessment.
                    svc.manifest_deleted(&repo, &digest);
                    if state == "new" {
                        empty_registry(&registry, &data).await;
                    }
                    if state != "warm" {
                        svc.store().clear_layer_cache().unwrap();
                    }
                    let t0 = Instant::now();
                    let out = Command::new("skopeo")
                        .args([
                            "copy",
                            "--dest-tls-verify=false",
                            &format!("oci:{}:{tag}", layout.display()),
                            &format!("docker://{addr}/{repo}:{i}"),
                        ])
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                    let t1 = Instant::now();
                    loop {
                        let row = svc.store().image(&digest).unwrap();
                        if let Some(r) = row.as_ref().filter(|r| r.status == "done") {
                            commit.push((r.finished_at.unwrap() - r.queued_at) as f64);
                            break;
                        }
                        assert!(t1.elapsed() < Duration::from_secs(120), "{row:?}");
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    push.push((t1 - t0).as_secs_f64() * 1000.0);
                    lat.push(t1.elapsed().as_secs_f64() * 1000.0);
                }
                lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
                push.sort_by(|a, b| a.partial_cmp(b).unwrap());
                commit.sort_by(|a, b| a.partial_cmp(b).unwrap());
                all.extend(commit.iter().copied());
                println!(
                    "| {tag} | {} | {pushes} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
                    state,
                    pct(&push, 0.5),
                    pct(&commit, 0.5),
                    pct(&commit, 0.99),
                    commit.last().unwrap(),
                    pct(&lat, 0.5),
                );
            }
            let inv = svc.store().inventory(&digest).unwrap().expect("assessed");
            inventories_by_tag.insert(tag.to_string(), inv.1);
        }
        all.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "\nAll pushes, commit→findings: n = {}, p50 = {:.0} ms, p99 = {:.0} ms\n",
            all.len(),
            pct(&all, 0.5),
            pct(&all, 0.99)
        );

        // 10,000 stored inventories. Workers stop first: the synthetic
        // digests have no manifest to fetch.
        svc.shutdown();
        if inventories == 0 || !tags.iter().all(|t| pushed.iter().any(|p| p == t)) {
            eprintln!("re-assessment skipped: it needs BENCH_INVENTORIES > 0 and the four app images");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let base: Vec<inventory::Inventory> = tags
            .iter()
            .map(|t| inventories_by_tag.remove(*t).expect("pushed above"))
            .collect();
        let t = Instant::now();
        let now = assess::clock::to_ms(time::OffsetDateTime::now_utc());
        let db1 = svc.database().unwrap();
        for i in 0..inventories {
            let inv = vary(&base[i % base.len()], i);
            let d = format!("sha256:{:064x}", i + 1);
            let st = svc.store();
            st.enqueue("bench/synthetic", &d, oci::OCI_MANIFEST, None, None, now, true).unwrap();
            st.set_shape(&d, "image", &[], &[]).unwrap();
            st.put_inventory(&d, catalog::CATALOG_VERSION, &inv).unwrap();
            st.save_result(&d, Some(&v1), now, &db1.match_inventory(&inv)).unwrap();
            st.set_status(&d, "done", None, now).unwrap();
        }
        let packages: usize = base.iter().map(|b| b.packages.len()).sum::<usize>() / base.len();
        eprintln!("{inventories} inventories stored in {:?}", t.elapsed());
        let t = Instant::now();
        let v2 = vulndb::import(
            &data,
            &[vulndata.join("osv/Debian/all.zip"), vulndata.join("osv/PyPI/all.zip")],
            &mut |_| {},
        )
        .unwrap()
        .version;
        eprintln!("database v2 {v2} built in {:?}", t.elapsed());
        handle.reload().unwrap();
        let t = Instant::now();
        let n = svc.rematch_due().await.unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!("## Re-assessment after a database update\n");
        println!("| stored inventories | mean packages | re-matched | time | per image |");
        println!("|---|---|---|---|---|");
        println!(
            "| {inventories} | {packages} | {n} | {secs:.2} s | {:.2} ms |",
            secs * 1000.0 / n.max(1) as f64
        );
        svc.shutdown();
    });
}
