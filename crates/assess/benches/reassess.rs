//! Re-assessment benchmark (issue #13; run with `bash bench/reassess/run.sh`).
//!
//! Seeds N finished images straight through the assessor's state
//! (`storage::assess::AssessState`, via `assess::store::Store`): each with
//! an inventory made from a real test image's (bookworm-base, python-app,
//! node-app, rust-app, cataloged from the OCI layout), versions varied and
//! one package of its own so every image is a distinct inventory, and a
//! result from an older database (v1: Debian). Then the assessor is opened
//! on that state, the database moves to a newer build (v2: Debian, PyPI,
//! npm, cargo, Go) and the time until every image carries v2 is measured
//! (`Service::rematch_due`, which is what the scheduler runs on a version
//! change). Afterwards the re-match's phases are timed one by one over a
//! sample (read stored inventories, decode, match, encode, write) to show
//! where the time goes.
//!
//! Env: `BENCH_IMAGES` (comma-separated sizes, default `10000,100000`),
//! `BENCH_BACKENDS` (`sqlite,postgres`), `BENCH_PG_URL` (a server's URL
//! whose database the bench may fill, `{n}` in it replaced by the size,
//! each an empty database; otherwise a throwaway cluster from
//! `storage::testing`), `DRYDOCK_TEST_IMAGES`, `DRYDOCK_VULNDATA`
//! (default `../shared/vulndata`, else `tests/fixtures/vulndata`),
//! `BENCH_SEED_THREADS` (default 8), `BENCH_PROFILE_SAMPLE` (default 20000).

use assess::store::{EncodedFindings, Store};
use assess::{Finding, Options, SystemClock, VulnDatabase, VulnSource};
use inventory::Inventory;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The two database builds, switched by the bench: the version change the
/// assessor sees, without a build's time inside the measurement.
struct Switch {
    dbs: [Arc<vulndb::Database>; 2],
    current: AtomicUsize,
}

impl VulnSource for Switch {
    fn current(&self) -> Option<Arc<dyn VulnDatabase>> {
        let db = self.dbs[self.current.load(Ordering::SeqCst)].clone();
        Some(db as Arc<dyn VulnDatabase>)
    }
}

fn catalog_tag(layout: &oci::layout::OciLayout, tag: &str) -> Inventory {
    let desc = layout.resolve(Some(tag)).expect("test image");
    let oci::Manifest::Image { manifest, .. } = layout.manifest(&desc).unwrap() else {
        panic!("{tag} is not a single image");
    };
    catalog::catalog_image(
        layout,
        &manifest,
        &catalog::NoCache,
        &catalog::Limits::default(),
    )
    .unwrap()
    .inventory
}

/// The variant of a base inventory that image `i` gets: every fifth
/// package (shifted by `i`) has the last digit of its version moved by
/// `i % 3`. 60 variants in all (4 bases × 5 × 3).
fn vary(inv: &Inventory, i: usize) -> Inventory {
    let mut inv = inv.clone();
    for (j, p) in inv.packages.iter_mut().enumerate() {
        if !(i + j).is_multiple_of(5) {
            continue;
        }
        let mut v: Vec<char> = p.version.chars().collect();
        if let Some(pos) = v.iter().rposition(|c| c.is_ascii_digit()) {
            let d = v[pos].to_digit(10).unwrap();
            v[pos] = char::from_digit((d + (i % 3) as u32) % 10, 10).unwrap();
            p.version = v.into_iter().collect();
        }
    }
    inv
}

/// Image `i`'s inventory: its variant plus the application's own package
/// (unknown to any database), so no two images store the same inventory.
fn image_inventory(bases: &[Inventory], i: usize) -> Inventory {
    let mut inv = vary(&bases[i % bases.len()], i % 60);
    if let Some(last) = inv.packages.last() {
        let mut own = last.clone();
        own.name = format!("bench-app-{i}");
        own.version = format!("1.{}.{}", i / 1000, i % 1000);
        own.purl = format!("pkg:generic/bench-app-{i}@{}", own.version);
        own.source_name = None;
        own.source_version = None;
        inv.packages.push(own);
    }
    inv
}

fn copy(e: &EncodedFindings) -> EncodedFindings {
    EncodedFindings {
        data: e.data.clone(),
        hash: e.hash.clone(),
        keys: e.keys.clone(),
    }
}

fn digest(i: usize) -> String {
    format!("sha256:{:064x}", i + 1)
}

/// Seed `n` finished images with v1 results, on `threads` threads.
fn seed(store: &Store, bases: &[Inventory], v1: &str, v1_enc: &[EncodedFindings], n: usize) {
    let threads = env_num("BENCH_SEED_THREADS", 8).max(1);
    let now = assess::clock::to_ms(time::OffsetDateTime::now_utc());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    // Blocks of 256: results go in one transaction each.
                    let start = next.fetch_add(256, Ordering::SeqCst);
                    if start >= n {
                        return;
                    }
                    let end = (start + 256).min(n);
                    let mut batch = Vec::with_capacity(end - start);
                    for i in start..end {
                        let d = digest(i);
                        store
                            .enqueue(
                                "bench/synthetic",
                                &d,
                                oci::OCI_MANIFEST,
                                None,
                                None,
                                now,
                                true,
                            )
                            .unwrap();
                        store.set_shape(&d, "image", &[], &[]).unwrap();
                        store
                            .put_inventory(&d, catalog::CATALOG_VERSION, &image_inventory(bases, i))
                            .unwrap();
                        batch.push((d, Some(v1.to_string()), now, copy(&v1_enc[i % 60])));
                    }
                    store.save_encoded(batch).unwrap();
                    for i in start..end {
                        store.set_status(&digest(i), "done", None, now).unwrap();
                    }
                }
            });
        }
    });
}

struct Run {
    backend: &'static str,
    images: usize,
    seed: Duration,
    rematched: usize,
    reassess: Duration,
    phases: Option<Phases>,
}

/// Per-image cost of each re-match phase over a sample, one thread.
struct Phases {
    sample: usize,
    candidates: Duration,
    read: Duration,
    decode: Duration,
    matching: Duration,
    encode: Duration,
    /// JSON and SHA-256 alone.
    encode_json: Duration,
    /// zstd of that JSON with one context reused.
    encode_zstd_reused: Duration,
    findings_per_image: usize,
    write: Duration,
}

fn profile(store: &Store, db: &Arc<dyn VulnDatabase>, n: usize, sample: usize) -> Phases {
    let now = time::OffsetDateTime::now_utc();
    let window = assess::clock::to_ms(now - time::Duration::days(30));
    let t = Instant::now();
    let due = store
        .rematch_candidates(window, "not-a-version", assess::clock::to_ms(now))
        .unwrap();
    let candidates = t.elapsed();
    assert_eq!(
        due.len(),
        n,
        "every image is a candidate for another version"
    );
    let digests: Vec<String> = (0..sample.min(n)).map(digest).collect();
    let t = Instant::now();
    let raw: Vec<Vec<u8>> = digests
        .iter()
        .map(|d| store.inventory_raw(d).unwrap().unwrap())
        .collect();
    let read = t.elapsed();
    let t = Instant::now();
    let invs: Vec<Inventory> = raw
        .iter()
        .map(|r| assess::store::unpack(r).unwrap())
        .collect();
    let decode = t.elapsed();
    let t = Instant::now();
    let found: Vec<Vec<Finding>> = invs.iter().map(|i| db.match_inventory(i)).collect();
    let matching = t.elapsed();
    let t = Instant::now();
    let enc: Vec<EncodedFindings> = found
        .iter()
        .map(|f| EncodedFindings::new(f).unwrap())
        .collect();
    let encode = t.elapsed();
    // The same documents encoded as JSON into a buffer, hashed, then
    // compressed with one zstd context reused (not a new encoder per
    // document, as the store's pack does): to tell what encoding costs.
    let t = Instant::now();
    let json: Vec<Vec<u8>> = found
        .iter()
        .map(|f| {
            let j = serde_json::to_vec(f).unwrap();
            std::hint::black_box(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&j)));
            j
        })
        .collect();
    let encode_json = t.elapsed();
    let mut zstd = zstd::bulk::Compressor::new(3).unwrap();
    let t = Instant::now();
    for j in &json {
        std::hint::black_box(zstd.compress(j).unwrap());
    }
    let encode_zstd_reused = t.elapsed();
    let findings_per_image = found.iter().map(Vec::len).sum::<usize>() / found.len().max(1);
    let at = assess::clock::to_ms(time::OffsetDateTime::now_utc());
    let t = Instant::now();
    let version = db.version();
    let rows: Vec<_> = digests
        .iter()
        .zip(enc)
        .map(|(d, e)| (d.clone(), Some(version.clone()), at, e))
        .collect();
    for chunk in rows.chunks(1024) {
        store
            .save_encoded(
                chunk
                    .iter()
                    .map(|(d, v, a, e)| (d.clone(), v.clone(), *a, copy(e)))
                    .collect(),
            )
            .unwrap();
    }
    let write = t.elapsed();
    Phases {
        sample: digests.len(),
        candidates,
        read,
        decode,
        matching,
        encode,
        encode_json,
        encode_zstd_reused,
        findings_per_image,
        write,
    }
}

fn main() {
    let layout_dir = std::env::var_os("DRYDOCK_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/test-images"))
        .join("oci");
    let layout = oci::layout::OciLayout::open(&layout_dir)
        .expect("test images (bash scripts/test-images.sh)");
    let shared = root().join("../shared/vulndata");
    let vulndata = std::env::var_os("DRYDOCK_VULNDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if shared.join("osv/Debian/all.zip").is_file() {
                shared
            } else {
                root().join("tests/fixtures/vulndata")
            }
        });
    let sizes: Vec<usize> = std::env::var("BENCH_IMAGES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_IMAGES: numbers"))
        .collect();
    let backends: Vec<String> = std::env::var("BENCH_BACKENDS")
        .unwrap_or_else(|_| "sqlite,postgres".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let sample = env_num("BENCH_PROFILE_SAMPLE", 20_000);

    let tmp = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let bases: Vec<Inventory> = ["bookworm-base", "python-app", "node-app", "rust-app"]
        .iter()
        .map(|t| catalog_tag(&layout, t))
        .collect();
    let mean_packages = bases.iter().map(|b| b.packages.len()).sum::<usize>() / bases.len() + 1;
    eprintln!("base inventories cataloged in {:?}", t.elapsed());

    let osv = |eco: &str| vulndata.join(format!("osv/{eco}/all.zip"));
    let (d1, d2) = (tmp.path().join("vdb1"), tmp.path().join("vdb2"));
    let t = Instant::now();
    vulndb::import(&d1, &[osv("Debian")], &mut |_| {}).unwrap();
    let srcs2: Vec<PathBuf> = ["Debian", "PyPI", "npm", "cargo", "Go"]
        .iter()
        .map(|e| osv(e))
        .filter(|p| p.is_file())
        .collect();
    vulndb::import(&d2, &srcs2, &mut |_| {}).unwrap();
    eprintln!("databases built in {:?}", t.elapsed());
    let db1 = Arc::new(vulndb::Database::open(&d1).unwrap());
    let db2 = Arc::new(vulndb::Database::open(&d2).unwrap());
    let (v1, v2) = (VulnDatabase::version(&*db1), VulnDatabase::version(&*db2));
    assert_ne!(v1, v2);
    let v1_enc: Vec<EncodedFindings> = (0..60)
        .map(|i| EncodedFindings::new(&db1.match_inventory(&vary(&bases[i % 4], i))).unwrap())
        .collect();

    let pg_cluster =
        if backends.iter().any(|b| b == "postgres") && std::env::var_os("BENCH_PG_URL").is_none() {
            Some(storage::testing::PgCluster::start().expect("PostgreSQL for the bench"))
        } else {
            None
        };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runs = Vec::new();
    for backend in &backends {
        for &n in &sizes {
            let data = tmp.path().join(format!("{backend}-{n}"));
            std::fs::create_dir_all(&data).unwrap();
            let metadata = match backend.as_str() {
                "sqlite" => storage::MetadataStorage::Sqlite,
                "postgres" => {
                    let url = match (&pg_cluster, std::env::var("BENCH_PG_URL")) {
                        (Some(c), _) => c.fresh_database(),
                        // One database per size, so runs do not see each other's rows.
                        (None, Ok(u)) => u.replace("{n}", &n.to_string()),
                        (None, Err(_)) => unreachable!(),
                    };
                    storage::MetadataStorage::from_url(&url).unwrap()
                }
                other => panic!("BENCH_BACKENDS: unknown backend {other}"),
            };
            let state = storage::assess::open_state(&data, &metadata, Default::default()).unwrap();
            let store = Store::new(state.clone());
            let t = Instant::now();
            seed(&store, &bases, &v1, &v1_enc, n);
            let seeded = t.elapsed();
            eprintln!("{backend}: {n} images seeded in {seeded:?}");

            let switch = Arc::new(Switch {
                dbs: [db1.clone(), db2.clone()],
                current: AtomicUsize::new(0),
            });
            let registry = registry::Registry::open(registry::Options::new(&data)).unwrap();
            let mut opts = Options::new(&data);
            opts.metadata = metadata;
            let svc = assess::Service::open_with_state(
                opts,
                state,
                Arc::new(assess::live::RegistrySource(registry)),
                Arc::new(assess::live::CatalogCataloger::default()),
                switch.clone(),
                Arc::new(SystemClock),
            )
            .unwrap();
            let (rematched, took) = rt.block_on(async {
                assert_eq!(
                    svc.rematch_due().await.unwrap(),
                    0,
                    "all matched against v1"
                );
                // The version change: from here until every image is judged anew.
                let t = Instant::now();
                switch.current.store(1, Ordering::SeqCst);
                let k = svc.rematch_due().await.unwrap();
                (k, t.elapsed())
            });
            assert_eq!(rematched, n);
            // Every image now carries v2 (checked on a spread of them).
            for i in (0..n).step_by((n / 97).max(1)) {
                let r = store.result(&digest(i)).unwrap().unwrap();
                assert_eq!(r.db_version.as_deref(), Some(v2.as_str()), "image {i}");
            }
            eprintln!("{backend}: {n} images re-assessed in {took:?}");
            let db: Arc<dyn VulnDatabase> = db2.clone();
            let phases = (sample > 0).then(|| profile(&store, &db, n, sample));
            runs.push(Run {
                backend: if backend == "sqlite" {
                    "SQLite"
                } else {
                    "PostgreSQL"
                },
                images: n,
                seed: seeded,
                rematched,
                reassess: took,
                phases,
            });
        }
    }

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "Database v1 {v1} (OSV Debian), v2 {v2} ({}), from `{}`. Mean packages per image: {mean_packages}. Load average at the end: {}.\n",
        srcs2
            .iter()
            .filter_map(|p| p.parent()?.file_name()?.to_str())
            .collect::<Vec<_>>()
            .join(", "),
        vulndata.display(),
        load.join(" ")
    );
    println!("| backend | images | seeding | re-assess (v1 → v2) | images/s | per image |");
    println!("|---|---|---|---|---|---|");
    for r in &runs {
        let s = r.reassess.as_secs_f64();
        println!(
            "| {} | {} | {:.1} s | {:.1} s | {:.0} | {:.0} µs |",
            r.backend,
            r.images,
            r.seed.as_secs_f64(),
            s,
            r.rematched as f64 / s,
            s * 1e6 / r.rematched.max(1) as f64
        );
    }
    println!(
        "\nWhere the time goes (one thread, per image, over a sample; the re-match decodes, matches and encodes on `workers` = 2 threads, reads and writes on one):\n"
    );
    println!(
        "| backend | images | sample | findings per image | candidates query (all) | read inventory | decode | match | encode | of which JSON + SHA-256 | zstd, context reused | write result |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let Some(p) = &r.phases else { continue };
        let per = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6 / p.sample as f64);
        println!(
            "| {} | {} | {} | {} | {:.2} s | {} | {} | {} | {} | {} | {} | {} |",
            r.backend,
            r.images,
            p.sample,
            p.findings_per_image,
            p.candidates.as_secs_f64(),
            per(p.read),
            per(p.decode),
            per(p.matching),
            per(p.encode),
            per(p.encode_json),
            per(p.encode_zstd_reused),
            per(p.write)
        );
    }
}
