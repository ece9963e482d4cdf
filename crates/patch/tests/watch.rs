//! Continuous mode's database trigger: the watcher evaluates when the
//! database subscription it is handed announces a new version, at once and
//! once per version, and does not wait for its archive poll to do so.

use anyhow::Result;
use bytes::Bytes;
use futures::future::BoxFuture;
use oci::{Digest, Name, Reference, Tag};
use patch::{FindingsSource, ImageStore, PatchConfig, Patcher};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// An empty registry that counts how often it is asked for its
/// repositories: once per evaluation pass (and once per check that the
/// images were re-matched, which an empty registry answers at once).
#[derive(Default)]
struct Empty {
    listed: AtomicUsize,
}

impl ImageStore for Empty {
    fn manifest<'a>(
        &'a self,
        _: &'a Name,
        _: &'a Reference,
    ) -> BoxFuture<'a, Result<Option<(Bytes, String, Digest)>>> {
        Box::pin(async { Ok(None) })
    }
    fn open_blob(&self, _: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        Err(std::io::ErrorKind::NotFound.into())
    }
    fn put_blob<'a>(
        &'a self,
        _: &'a Name,
        _: &'a Digest,
        _: &'a Path,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { anyhow::bail!("read-only") })
    }
    fn put_manifest<'a>(
        &'a self,
        _: &'a Name,
        _: &'a Reference,
        _: Bytes,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Digest>> {
        Box::pin(async { anyhow::bail!("read-only") })
    }
    fn tags(&self, _: &Name) -> Result<Vec<(Tag, Digest)>> {
        Ok(Vec::new())
    }
    fn repositories(&self) -> Result<Vec<Name>> {
        self.listed.fetch_add(1, Ordering::SeqCst);
        Ok(Vec::new())
    }
}

struct NoFindings;

impl FindingsSource for NoFindings {
    fn fixable(&self, _: &str) -> Result<Option<Vec<patch::Fixable>>> {
        Ok(None)
    }
    fn assessed_with(&self, _: &str) -> Option<String> {
        None
    }
}

async fn until(what: &str, within: Duration, f: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_wakes_continuous_mode_at_once_and_once() {
    let store = Arc::new(Empty::default());
    let data = tempfile::tempdir().unwrap();
    let cfg = PatchConfig {
        enabled: true,
        // The archive poll (no archive here: it only logs) is an hour
        // away, so anything that evaluates below is the database event.
        interval_seconds: 3600,
        ..PatchConfig::default()
    };
    let patcher = Patcher::new(
        store.clone(),
        data.path(),
        Arc::new(NoFindings),
        egress::EgressPolicy::parse_allow(&["127.0.0.0/8".to_string()]).unwrap(),
        cfg,
    )
    .unwrap();
    let (tx, rx) = tokio::sync::watch::channel(Some("db-1".to_string()));
    let watcher = tokio::spawn(patcher.watch(rx));
    let listed = || store.listed.load(Ordering::SeqCst);

    // The database present at start: one pass.
    until("the first pass", Duration::from_secs(10), || listed() >= 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_first = listed();
    assert_eq!(after_first, 2, "one re-match check and one pass");

    // A new database: evaluated on the event, well before any poll.
    tx.send_replace(Some("db-2".to_string()));
    let took = until("the pass for db-2", Duration::from_secs(5), || {
        listed() >= after_first + 2
    })
    .await;
    assert!(took < Duration::from_millis(900), "took {took:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_second = listed();
    assert_eq!(after_second, after_first + 2);

    // The same version announced again is not a new database.
    tx.send_replace(Some("db-2".to_string()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(listed(), after_second);

    // Without a sender the watcher goes on (its archive poll) quietly.
    drop(tx);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(listed(), after_second);
    assert!(!watcher.is_finished());
    watcher.abort();
}
