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

/// A layer result read before its digest was known (from an upload stream,
/// under `placeholder`), named by its real `digest` instead, so it can be
/// cached under that digest once the upload verified. Every text field
/// that names the layer (packages, notes) is rewritten in place: a layer
/// of 50,000 packages is not copied (a round trip through JSON held the
/// result three times over, the heap peak of a large upload). The
/// destructuring below names every field, so a field added later does not
/// compile until it is considered here.
pub fn relabel_layer(
    mut inv: LayerInventory,
    placeholder: &Digest,
    digest: &Digest,
) -> LayerInventory {
    let from = placeholder.to_string();
    let to = digest.to_string();
    // Notes shown as text name the layer short (see `Skipped`'s Display).
    let short = |d: &str| d[..d.find(':').map_or(12, |i| i + 13).min(d.len())].to_string();
    let (short_from, short_to) = (short(&from), short(&to));
    let swap = |s: &mut String| {
        if s.contains(&short_from) {
            *s = s.replace(&from, &to).replace(&short_from, &short_to);
        }
    };
    let swap_opt = |s: &mut Option<String>| {
        if let Some(s) = s {
            swap(s);
        }
    };
    let LayerInventory {
        catalog_version: _,
        files,
        whiteouts,
        opaque_dirs,
        stats: _,
        warnings,
        skipped,
        limits,
    } = &mut inv;
    // Keys are paths from the archive: no layer names itself in them, as
    // nobody can know the random placeholder in advance.
    for facts in files.values_mut() {
        let crate::FileFacts {
            kind: _,
            packages,
            distro,
        } = facts;
        for p in packages {
            let inventory::Package {
                ecosystem: _,
                name,
                version,
                source_name,
                source_version,
                purl,
                location,
                layer,
            } = p;
            for s in [name, version, purl, location, layer] {
                swap(s);
            }
            swap_opt(source_name);
            swap_opt(source_version);
        }
        if let Some(inventory::Distro {
            id,
            version_id,
            codename,
            pretty_name,
        }) = distro
        {
            swap(id);
            swap(version_id);
            swap_opt(codename);
            swap_opt(pretty_name);
        }
    }
    for s in whiteouts.iter_mut().chain(opaque_dirs).chain(warnings) {
        swap(s);
    }
    for note in skipped {
        let crate::Skipped {
            kind: _,
            layer,
            path,
            detail,
        } = note;
        swap_opt(layer);
        swap_opt(path);
        swap(detail);
    }
    swap(limits);
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, catalog_layer};

    /// A plain tar layer with a dpkg database of one package and one
    /// hostile entry (skipped and named with the layer).
    fn layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let status = b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13\nArchitecture: amd64\n\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(status.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "var/lib/dpkg/status", &status[..])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // `append_data` refuses `..`, so the name is written raw.
        h.as_old_mut().name[..12].copy_from_slice(b"../escape.py");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn a_result_read_under_a_placeholder_is_relabelled_everywhere() {
        let bytes = layer();
        let placeholder = Digest::sha256_of(b"placeholder");
        let real = Digest::sha256_of(&bytes);
        let limits = Limits {
            verify_digest: false,
            ..Limits::default()
        };
        let inv = catalog_layer(
            &bytes[..],
            oci::LayerCompression::None,
            &placeholder,
            &limits,
        )
        .unwrap();
        assert_eq!(inv.packages().count(), 1);
        assert!(!inv.skipped.is_empty(), "the hostile entry is named");
        let text = serde_json::to_string(&inv).unwrap();
        assert!(text.contains(&placeholder.to_string()), "{text}");

        let moved = relabel_layer(inv.clone(), &placeholder, &real);
        let text = serde_json::to_string(&moved).unwrap();
        assert!(!text.contains(&placeholder.to_string()), "{text}");
        assert!(moved.packages().all(|p| p.layer == real.to_string()));
        // The warnings name the layer short, as notes are shown.
        let short = |d: &Digest| d.to_string()[..19].to_string();
        assert!(
            inv.warnings
                .iter()
                .any(|w| w.contains(&short(&placeholder)))
        );
        assert!(
            moved
                .warnings
                .iter()
                .all(|w| !w.contains(&short(&placeholder))),
            "{:?}",
            moved.warnings
        );
        assert!(moved.warnings.iter().any(|w| w.contains(&short(&real))));
        assert!(
            moved
                .skipped
                .iter()
                .all(|s| s.layer.as_deref() == Some(real.to_string().as_str()))
        );
        // Only the digest changed.
        assert_eq!(relabel_layer(moved, &real, &placeholder), inv);
    }

    #[test]
    fn caches_keep_results_per_digest_and_version() {
        let d = Digest::sha256_of(b"a layer");
        let inv = LayerInventory::new();
        let dir = tempfile::tempdir().unwrap();
        let memory = MemoryCache::new();
        for cache in [&memory as &dyn LayerCache, &DirCache::new(dir.path())] {
            assert!(cache.get(&d, 1).is_none());
            let mut v1 = inv.clone();
            v1.catalog_version = 1;
            cache.put(&d, 1, &v1);
            assert_eq!(cache.get(&d, 1), Some(v1));
            assert!(cache.get(&d, 2).is_none());
            assert!(cache.get(&Digest::sha256_of(b"other"), 1).is_none());
        }
        assert!(NoCache.get(&d, 1).is_none());
    }
}
