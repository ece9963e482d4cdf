//! A build published by one node is fetched by another through the
//! shared stores (PostgreSQL and one blob directory): the same version,
//! the same findings; a damaged blob is refused and the node keeps its
//! build; GC keeps a release's blob though no manifest references it.
//! One node on SQLite publishes to itself and finds nothing to fetch.
//! PostgreSQL tests skip without it, except under CI.

use dbsync::DbSync;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use storage::{BlobStorage, MetadataStorage, Store};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vulndata")
}

/// Build a database from the small fixtures into `data`; its version.
fn build(data: &Path) -> String {
    vulndb::import(data, &[fixtures()], &mut |_| {})
        .unwrap()
        .version
}

/// A node: its own data directory, blobs under `blobs_root` (shared by
/// the nodes of a test) and metadata where `metadata` says.
fn node(data: &Path, blobs_root: &Path, metadata: &MetadataStorage) -> DbSync {
    std::fs::create_dir_all(data).unwrap();
    let store = Arc::new(Store::open(blobs_root, &BlobStorage::Filesystem, metadata).unwrap());
    let releases = storage::open_releases(blobs_root, metadata).unwrap();
    DbSync::new(data, store, releases)
}

fn blob_path(root: &Path, d: &oci::Digest) -> PathBuf {
    root.join("blobs/sha256").join(&d.hex()[..2]).join(d.hex())
}

/// Findings for a package the fixtures know to be vulnerable, as text.
fn findings(data: &Path) -> Vec<String> {
    let db = vulndb::Database::open(data).unwrap();
    let mut out: Vec<String> = db
        .query(inventory::Ecosystem::Npm, "lodash", "4.17.15", None)
        .findings
        .iter()
        .map(|f| format!("{} {:?}", f.id, f.fixed_version))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_build_serves_every_node_and_a_damaged_one_is_refused() {
    let Some(pg) = storage::testing::shared_cluster() else {
        return;
    };
    let metadata = MetadataStorage::from_url(&pg.fresh_database()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    let (d1, d2) = (tmp.path().join("n1"), tmp.path().join("n2"));
    let (n1, n2) = (node(&d1, &shared, &metadata), node(&d2, &shared, &metadata));

    // Nothing published, nothing local: neither does anything.
    assert!(n1.publish().await.unwrap().is_none());
    assert!(n2.fetch().await.unwrap().is_none());

    let v1 = build(&d1);
    let rel = n1.publish().await.unwrap().expect("published");
    assert_eq!(rel.version, v1);
    assert!(blob_path(&shared, &rel.digest).exists());
    // Published once: the next round finds it there.
    assert!(n1.publish().await.unwrap().is_none());
    assert!(n1.fetch().await.unwrap().is_none());

    assert_eq!(n2.fetch().await.unwrap().as_deref(), Some(v1.as_str()));
    assert_eq!(
        vulndb::dist::current_version(&d2).unwrap().as_deref(),
        Some(v1.as_str())
    );
    let want = findings(&d1);
    assert!(!want.is_empty(), "the fixtures know lodash 4.17.15");
    assert_eq!(findings(&d2), want);
    assert!(n2.fetch().await.unwrap().is_none(), "nothing newer");
    // n2 never built: its only build is the one received.
    let builds: Vec<String> = std::fs::read_dir(d2.join("vulndb"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(builds, vec![v1.clone()]);

    // A newer build whose stored bytes are damaged (one byte flipped in
    // the middle of the blob): refused, and n2 keeps v1.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let v2 = build(&d1);
    assert!(v2 > v1);
    let rel2 = n1.publish().await.unwrap().expect("published");
    assert_eq!(rel2.version, v2);
    let path = blob_path(&shared, &rel2.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = n2.fetch().await.unwrap_err();
    assert!(matches!(err, dbsync::Error::Damaged { .. }), "{err}");
    assert_eq!(
        vulndb::dist::current_version(&d2).unwrap().as_deref(),
        Some(v1.as_str())
    );
    assert!(
        !d2.join("vulndb").join(format!("{v2}.partial")).exists(),
        "the damaged download was left behind"
    );
    assert_eq!(findings(&d2), want);
    // Refused: not downloaded again at the next poll.
    assert!(n2.fetch().await.unwrap().is_none());

    // A blob cut short (a partial object) is refused as well.
    let n3 = node(&tmp.path().join("n3"), &shared, &metadata);
    std::fs::write(&path, &bytes[..mid]).unwrap();
    assert!(matches!(
        n3.fetch().await.unwrap_err(),
        dbsync::Error::Damaged { .. }
    ));
    assert!(
        vulndb::dist::current_version(&tmp.path().join("n3"))
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_publishes_to_itself_and_gc_keeps_the_release() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_path_buf();
    let n = node(&data, &data, &MetadataStorage::Sqlite);
    let v = build(&data);
    let rel = n.publish().await.unwrap().expect("published");
    assert_eq!(rel.version, v);
    assert!(n.fetch().await.unwrap().is_none());
    assert!(n.publish().await.unwrap().is_none());

    // No manifest references the blob and the grace period is over: only
    // the release keeps it.
    let opts = registry::GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
    };
    let report = registry::gc_stores(
        &data,
        &BlobStorage::Filesystem,
        &MetadataStorage::Sqlite,
        opts,
    )
    .await
    .unwrap();
    assert_eq!(report.blobs_removed, 0, "{report:?}");
    assert!(blob_path(&data, &rel.digest).exists());

    // Retired releases are garbage like any other blob.
    let releases = storage::open_releases(&data, &MetadataStorage::Sqlite).unwrap();
    assert_eq!(releases.prune_releases(0).await.unwrap().len(), 1);
    let opts = registry::GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
    };
    let report = registry::gc_stores(
        &data,
        &BlobStorage::Filesystem,
        &MetadataStorage::Sqlite,
        opts,
    )
    .await
    .unwrap();
    assert_eq!(report.blobs_removed, 1, "{report:?}");
    assert!(!blob_path(&data, &rel.digest).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_few_releases_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_path_buf();
    let n = node(&data, &data, &MetadataStorage::Sqlite);
    let mut published = Vec::new();
    for _ in 0..dbsync::KEEP_RELEASES + 1 {
        build(&data);
        published.push(n.publish().await.unwrap().expect("published").version);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let releases = storage::open_releases(&data, &MetadataStorage::Sqlite).unwrap();
    let kept: Vec<String> = releases
        .releases()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.version)
        .collect();
    published.reverse();
    published.truncate(dbsync::KEEP_RELEASES);
    assert_eq!(kept, published);
}

/// A stream that is not a build (another entry, a path out of the
/// directory, a missing file) is refused and leaves nothing behind.
#[test]
fn only_a_builds_own_files_are_received() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let v = build(&src);
    let mut good = Vec::new();
    vulndb::dist::pack(&src, &v, &mut good).unwrap();

    let tar_of = |entries: &[(&str, &[u8])]| {
        let mut t = tar::Builder::new(Vec::new());
        for (name, body) in entries {
            let mut h = tar::Header::new_gnu();
            // Written raw: the builder itself refuses `..`.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            t.append(&h, *body).unwrap();
        }
        t.into_inner().unwrap()
    };
    let dest = tmp.path().join("dest");
    for bad in [
        tar_of(&[("../escape", b"x")]),
        tar_of(&[("db.bin", b"x")]),
        tar_of(&[("db.bin", b"x"), ("status.json", b"{}"), ("extra", b"x")]),
        good[..good.len() / 2].to_vec(),
    ] {
        assert!(vulndb::dist::receive(&dest, &v, &bad[..]).is_err());
        assert!(!dest.join("vulndb").join(format!("{v}.partial")).exists());
        assert!(!dest.join("escape").exists() && !dest.join("vulndb/escape").exists());
    }
    // Files of another version under this version's name: refused at
    // install, before anything becomes current.
    let incoming =
        vulndb::dist::receive(&dest, "20990101T000000Z-000000000000", &good[..]).unwrap();
    assert!(incoming.install().is_err());
    assert!(vulndb::dist::current_version(&dest).unwrap().is_none());
    // The real thing.
    vulndb::dist::receive(&dest, &v, &good[..])
        .unwrap()
        .install()
        .unwrap();
    assert_eq!(vulndb::dist::current_version(&dest).unwrap(), Some(v));
    assert_eq!(findings(&dest), findings(&src));
}

/// Two nodes run the loop `drydock serve` runs, each with a scheduled
/// build: only the one that leads the update builds, and the other
/// serves that build without ever building.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_builds_and_the_follower_fetches() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(pg) = storage::testing::shared_cluster() else {
        return;
    };
    let metadata = MetadataStorage::from_url(&pg.fresh_database()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    let mut nodes = Vec::new();
    for name in ["n1", "n2"] {
        let data = tmp.path().join(name);
        let sync = node(&data, &shared, &metadata);
        let lead = sync.lead(Duration::from_millis(200));
        let builds = Arc::new(AtomicUsize::new(0));
        let (d, count) = (data.clone(), builds.clone());
        let build = dbsync::Build {
            every: Duration::from_secs(3600),
            run: Box::new(move || {
                let (d, count) = (d.clone(), count.clone());
                Box::pin(async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    Ok(tokio::task::spawn_blocking(move || build(&d)).await?)
                })
            }),
        };
        let task = tokio::spawn(sync.run(lead, Duration::from_millis(200), Some(build)));
        nodes.push((data, builds, task));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let version = loop {
        let v: Vec<Option<String>> = nodes
            .iter()
            .map(|(d, _, _)| vulndb::dist::current_version(d).unwrap())
            .collect();
        if v[0].is_some() && v[0] == v[1] {
            break v[0].clone().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "not in step: {v:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A few more rounds: still one build, by one node.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts: Vec<usize> = nodes
        .iter()
        .map(|(_, b, _)| b.load(Ordering::SeqCst))
        .collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        1,
        "builds per node: {counts:?}"
    );
    for (d, _, task) in &nodes {
        assert_eq!(
            vulndb::dist::current_version(d).unwrap().as_deref(),
            Some(version.as_str())
        );
        task.abort();
    }
}
