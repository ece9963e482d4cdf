//! Cataloging layers while the image is still being uploaded.
//!
//! Clients upload every blob before the manifest that names them, so a
//! layer can be read as soon as it is committed. When the manifest arrives
//! its assessment finds the layer results in the registry-wide cache and
//! only merges and matches: push-to-findings no longer grows with image
//! size. A blob is read here only if it is new to the store and looks like
//! a layer (gzip, zstd or tar); anything that goes wrong is left for the
//! image's own assessment, which reads the layer again and reports it.
//!
//! The one rule that makes this safe to race with the workers: a digest is
//! marked in flight *before* the event call returns, and a worker asking
//! the cache for that digest waits until it is unmarked. So a layer is
//! never read twice at once, and a worker never misses a result that was
//! about to land.

use super::{Inner, Service};
use crate::store::Store;
use catalog::LayerCache;
use oci::Digest;
use prometheus::{IntCounterVec, Opts};
use std::collections::HashSet;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// Blobs waiting to be read; beyond this, new blobs are left to their
/// image's assessment.
const QUEUE: usize = 1024;
/// Longest a worker waits for a layer being read here before reading it
/// itself (a safety net: the reader always unmarks, even on panic).
const WAIT: Duration = Duration::from_secs(300);

pub(crate) struct Prefetch {
    in_flight: Mutex<HashSet<String>>,
    done: Condvar,
    tx: SyncSender<Digest>,
    /// Layers new to the registry by how they were cataloged:
    /// `drydock_catalog_layers_total{source}` (see [`Source`]), registered
    /// in the registry's metrics by [`Service::metrics`].
    pub(crate) layers: IntCounterVec,
}

/// How a layer new to the registry was cataloged: the `source` label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    /// Wholly from its upload stream, while the bytes arrived (`stream.rs`).
    Stream,
    /// From its upload stream until the reader fell behind the client,
    /// the rest read back from the store after the commit.
    StreamThenReadback,
    /// Read back from the store after its commit (here).
    Readback,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Stream => "stream",
            Source::StreamThenReadback => "stream_then_readback",
            Source::Readback => "readback",
        }
    }
}

impl Prefetch {
    /// The queue, and its receiving end for [`spawn_readers`].
    pub(crate) fn new() -> (Prefetch, Receiver<Digest>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let p = Prefetch {
            in_flight: Mutex::new(HashSet::new()),
            done: Condvar::new(),
            tx,
            layers: IntCounterVec::new(
                Opts::new(
                    "drydock_catalog_layers_total",
                    "Layers new to the registry cataloged by the assessor, by source: stream \
                     (wholly from the upload stream while the bytes arrived), \
                     stream_then_readback (from the stream until the reader fell behind the \
                     client, the rest read back after the commit), readback (read back from \
                     the store after the commit)",
                ),
                &["source"],
            )
            .expect("metric"),
        };
        (p, rx)
    }

    /// Count one layer cataloged from `source`.
    pub(crate) fn count(&self, source: Source) {
        self.layers.with_label_values(&[source.label()]).inc();
    }

    fn counted(&self, source: Source) -> u64 {
        self.layers.with_label_values(&[source.label()]).get()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, layer: &str) {
        self.lock().remove(layer);
        self.done.notify_all();
    }

    /// Mark `layer` in flight; false if it already was.
    pub(crate) fn mark(&self, layer: &Digest) -> bool {
        self.lock().insert(layer.to_string())
    }

    /// Undo [`Prefetch::mark`].
    pub(crate) fn unmark(&self, layer: &Digest) {
        self.finish(&layer.to_string());
    }

    /// Block until `layer` is not being read here (or [`WAIT`] passed).
    fn wait_for(&self, layer: &str) {
        let deadline = Instant::now() + WAIT;
        let mut set = self.lock();
        while set.contains(layer) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(layer, "gave up waiting for the upload-time read of a layer");
                return;
            }
            set = self
                .done
                .wait_timeout(set, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Start `threads` readers. They hold the service weakly and stop when the
/// last handle to it is dropped (the queue's sender goes with it).
pub(crate) fn spawn_readers(inner: Weak<Inner>, rx: Receiver<Digest>, threads: usize) {
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..threads.max(1) {
        let (inner, rx) = (inner.clone(), rx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("layer-prefetch-{i}"))
            .spawn(move || {
                loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let (Ok(layer), Some(inner)) = (next, inner.upgrade()) else {
                        return;
                    };
                    let key = layer.to_string();
                    // Unmark even if the cataloger panics.
                    struct Unmark<'a>(&'a Prefetch, &'a str);
                    impl Drop for Unmark<'_> {
                        fn drop(&mut self) {
                            self.0.finish(self.1);
                        }
                    }
                    let _unmark = Unmark(&inner.prefetch, &key);
                    let source = inner.source.blob_source();
                    if inner
                        .cataloger
                        .prefetch_layer(source.as_ref(), &layer, &inner.store)
                    {
                        inner.prefetch.count(Source::Readback);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a layer prefetch thread");
        }
    }
}

/// How layers new to the registry were cataloged (see
/// [`Service::upload_catalog_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadCatalogCounts {
    /// Wholly from their upload streams, while the bytes arrived.
    pub streamed: u64,
    /// From their upload streams until the reader fell behind the client,
    /// the rest read back from the store after the commit.
    pub spilled: u64,
    /// Read back from the store after their commit.
    pub read_back: u64,
}

impl Service {
    /// How the layers new to the registry were cataloged since start.
    pub fn upload_catalog_counts(&self) -> UploadCatalogCounts {
        let p = &self.inner.prefetch;
        UploadCatalogCounts {
            streamed: p.counted(Source::Stream),
            spilled: p.counted(Source::StreamThenReadback),
            read_back: p.counted(Source::Readback),
        }
    }

    /// The assessor's metrics, for the registry's one metrics registry
    /// (`registry::Registry::register_metrics`):
    /// `drydock_catalog_layers_total{source}`.
    pub fn metrics(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![Box::new(self.inner.prefetch.layers.clone())]
    }

    /// A blob new to the registry was committed: read it now if it is a
    /// layer (see the module docs). Returns at once.
    pub fn blob_pushed(&self, layer: &Digest) {
        if !self.inner.opts.catalog_on_upload {
            return;
        }
        let p = &self.inner.prefetch;
        let key = layer.to_string();
        if !p.lock().insert(key.clone()) {
            return;
        }
        match p.tx.try_send(layer.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => p.finish(&key),
        }
    }
}

/// The layer cache as workers see it: a look-up first waits for an
/// upload-time read of the same layer to finish.
pub(crate) struct AfterPrefetch<'a> {
    pub(crate) store: &'a Store,
    pub(crate) prefetch: &'a Prefetch,
}

impl LayerCache for AfterPrefetch<'_> {
    fn get(&self, layer: &Digest, version: u32) -> Option<catalog::LayerInventory> {
        self.prefetch.wait_for(&layer.to_string());
        self.store.get(layer, version)
    }

    fn put(&self, layer: &Digest, version: u32, inv: &catalog::LayerInventory) {
        self.store.put(layer, version, inv)
    }
}
