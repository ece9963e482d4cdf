use crate::LayerInventory;
use oci::Digest;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Where per-layer results are kept between catalog runs. Implementations
/// must return only values stored for the same digest *and* version.
/// Failures to store are not errors: the layer is simply read again later.
pub trait LayerCache: Send + Sync {
    fn get(&self, layer: &Digest, version: u32) -> Option<LayerInventory>;
    fn put(&self, layer: &Digest, version: u32, inv: &LayerInventory);
}

/// A cache that keeps nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCache;

impl LayerCache for NoCache {
    fn get(&self, _: &Digest, _: u32) -> Option<LayerInventory> {
        None
    }
    fn put(&self, _: &Digest, _: u32, _: &LayerInventory) {}
}

/// An in-process cache.
#[derive(Debug, Default)]
pub struct MemoryCache(Mutex<HashMap<(Digest, u32), LayerInventory>>);

impl MemoryCache {
    pub fn new() -> MemoryCache {
        MemoryCache::default()
    }
    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LayerCache for MemoryCache {
    fn get(&self, layer: &Digest, version: u32) -> Option<LayerInventory> {
        self.0.lock().ok()?.get(&(layer.clone(), version)).cloned()
    }
    fn put(&self, layer: &Digest, version: u32, inv: &LayerInventory) {
        if let Ok(mut m) = self.0.lock() {
            m.insert((layer.clone(), version), inv.clone());
        }
    }
}

/// A cache of JSON files, `DIR/<algorithm>/<hex>.v<version>.json`, written
/// atomically (temporary file, then rename).
#[derive(Debug, Clone)]
pub struct DirCache(pub PathBuf);

impl DirCache {
    pub fn new(dir: impl Into<PathBuf>) -> DirCache {
        DirCache(dir.into())
    }
    fn path(&self, layer: &Digest, version: u32) -> PathBuf {
        self.0
            .join(layer.algorithm().as_str())
            .join(format!("{}.v{version}.json", layer.hex()))
    }
}

impl LayerCache for DirCache {
    fn get(&self, layer: &Digest, version: u32) -> Option<LayerInventory> {
        let bytes = std::fs::read(self.path(layer, version)).ok()?;
        let inv: LayerInventory = serde_json::from_slice(&bytes).ok()?;
        (inv.catalog_version == version).then_some(inv)
    }
    fn put(&self, layer: &Digest, version: u32, inv: &LayerInventory) {
        let path = self.path(layer, version);
        let Some(dir) = path.parent() else { return };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer(&mut tmp, inv)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            // A cache that cannot be written only costs a re-read later.
            tracing::warn!("cannot write layer cache {}: {e}", path.display());
        }
    }
}
