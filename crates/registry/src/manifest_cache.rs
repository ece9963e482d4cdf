//! The in-memory manifest cache: manifests by (repository, tag) and
//! (repository, digest), bounded by bytes (moka, TinyLFU eviction). A
//! write invalidates exactly the keys it changed; only a change made by
//! another process (GC), which the database's data version reveals without
//! saying what, drops everything.

use crate::StoredManifest;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// (repository, tag or digest as written in a reference).
type Key = (String, String);

pub(crate) struct ManifestCache {
    entries: moka::sync::Cache<Key, Arc<StoredManifest>>,
    /// When the data version was last compared, and the version seen.
    pub(crate) checked: Mutex<(Instant, i64)>,
    /// Bumped before every invalidation, so that a read which raced a
    /// write drops what it cached (see [`ManifestCache::put`]).
    writes: AtomicU64,
    max_entry: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Cache counters since start: exposed for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ManifestCacheStats {
    pub hits: u64,
    pub misses: u64,
}

fn weight(repo: &str, reference: &str, m: &StoredManifest) -> usize {
    m.bytes.len() + m.media_type.len() + repo.len() + reference.len() + 128
}

impl ManifestCache {
    /// An empty cache of at most `max_bytes`, checked against the
    /// database's data `version`.
    pub(crate) fn new(version: i64, max_bytes: usize) -> ManifestCache {
        ManifestCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_bytes as u64)
                .weigher(|k: &Key, m: &Arc<StoredManifest>| {
                    u32::try_from(weight(&k.0, &k.1, m)).unwrap_or(u32::MAX)
                })
                .build(),
            checked: Mutex::new((Instant::now(), version)),
            writes: AtomicU64::new(0),
            // One huge manifest must not push out many ordinary ones.
            max_entry: max_bytes / 16,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, repo: &str, reference: &str) -> Option<Arc<StoredManifest>> {
        let found = self.entries.get(&(repo.to_string(), reference.to_string()));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The write generation; take it before reading the database for
    /// [`ManifestCache::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Cache `m`, read from the database after [`ManifestCache::generation`]
    /// returned `seen`. A write that committed after that read either
    /// invalidates after this insert, or bumped the generation before the
    /// check below, which then removes the entry: a stale manifest never
    /// stays.
    pub(crate) fn put(&self, repo: &str, reference: &str, m: Arc<StoredManifest>, seen: u64) {
        if weight(repo, reference, &m) > self.max_entry {
            return;
        }
        let key = (repo.to_string(), reference.to_string());
        self.entries.insert(key.clone(), m);
        if self.generation() != seen {
            self.entries.invalidate(&key);
        }
    }

    /// Forget `references` (tags, digests) of `repo`; call after the write
    /// that changed them committed.
    pub(crate) fn invalidate<'a>(&self, repo: &str, references: impl IntoIterator<Item = &'a str>) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        for r in references {
            self.entries.invalidate(&(repo.to_string(), r.to_string()));
        }
    }

    /// Forget everything (the database changed in a way we were not told).
    pub(crate) fn clear(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
    }

    pub(crate) fn stats(&self) -> ManifestCacheStats {
        ManifestCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn manifest(n: usize) -> Arc<StoredManifest> {
        Arc::new(StoredManifest {
            bytes: Bytes::from(vec![b'x'; n]),
            media_type: oci::OCI_MANIFEST.into(),
            digest: oci::Digest::sha256_of(&n.to_le_bytes()),
            subject: None,
        })
    }

    #[test]
    fn invalidation_is_per_key_and_a_raced_read_is_dropped() {
        let c = ManifestCache::new(0, 1 << 20);
        let g = c.generation();
        c.put("a", "v1", manifest(10), g);
        c.put("b", "v1", manifest(11), g);
        c.invalidate("a", ["v1"]);
        assert!(c.get("a", "v1").is_none());
        assert!(c.get("b", "v1").is_some());
        // A read that started before a write is not kept.
        let before = c.generation();
        c.invalidate("b", ["v2"]);
        c.put("b", "v2", manifest(12), before);
        assert!(c.get("b", "v2").is_none());
        assert_eq!(c.stats(), ManifestCacheStats { hits: 1, misses: 2 });
    }

    #[test]
    fn bounded_by_bytes() {
        let c = ManifestCache::new(0, 64 << 10);
        // Over a sixteenth of the capacity: never cached.
        c.put("a", "big", manifest(8 << 10), c.generation());
        assert!(c.get("a", "big").is_none());
        for i in 0..200 {
            c.put("a", &format!("t{i}"), manifest(2 << 10), c.generation());
        }
        c.entries.run_pending_tasks();
        assert!(c.entries.weighted_size() <= 64 << 10);
        assert!(c.entries.entry_count() < 200);
    }
}
