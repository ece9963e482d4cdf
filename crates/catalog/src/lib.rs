//! The image catalog: every package installed in an image, found by reading
//! its layers as streams, cached per layer digest.
//!
//! # Job
//! Given an image manifest and somewhere to read its blobs from
//! ([`oci::BlobSource`]), list the packages installed in the image (OS
//! packages with their source package, and language packages) as an
//! [`inventory::Inventory`], the one model the vulnerability matcher and the
//! assessment service consume.
//!
//! # API
//! - [`catalog_layer`] reads one layer (a tar stream, gzip, zstd or plain)
//!   once and returns a [`LayerInventory`]: the packages each interesting
//!   file declares, the whiteouts and opaque directories of the layer, and
//!   the distribution facts (os-release and fallbacks). Results never depend
//!   on other layers, so they are cached by layer digest ([`LayerCache`],
//!   with [`MemoryCache`] and [`DirCache`] here) and shared by every image
//!   that has the layer ("index once, match many").
//! - [`merge`] overlays layer results bottom-up with OCI whiteout semantics:
//!   a file in an upper layer replaces the lower one at the same path (an
//!   upper `var/lib/dpkg/status` replaces the whole lower database), a
//!   `.wh.NAME` entry deletes `NAME` and everything below it (a whited-out
//!   `foo-1.0.dist-info` removes that Python package), and an opaque
//!   directory hides everything lower layers put under it. A package whose
//!   declaring file was rewritten by an upper layer keeps the layer that
//!   first introduced it when name and version are unchanged.
//! - [`catalog_image`] = cache look-up or [`catalog_layer`] for each layer
//!   (uncached layers up to [`Limits::parallel_layers`] at a time), then
//!   [`merge`]. [`catalog_index`] does it for every platform of an
//!   index. SBOMs of an inventory are the `report` crate's.
//! - Layouts on disk are read with [`oci::layout::OciLayout`] (tests, benches,
//!   the example); `drydock scan` reads through `transport`.
//!
//! # Invariants
//! - Layer contents are never written to disk, except the files a
//!   cataloger needs random access to (executables, Java archives, RPM
//!   databases), which are spooled one at a time per layer into a private temporary
//!   directory (removed when the layer is done), under a size cap. Nothing is ever written at a path taken from
//!   the archive.
//! - Paths are normalised lexically (leading `/` and `./` dropped); an entry
//!   whose path (or hard link target) climbs out of the root with `..` is
//!   skipped and named ([`SkipKind::UnsafePath`]), and the rest of the
//!   layer is read. Symbolic links are never followed: files are read from
//!   the tar entry itself.
//! - **Fail closed.** Whatever part of an image cannot be read completely
//!   (a file over its cap, a malformed package database, a hostile path, a
//!   cap on packages or files reached, a layer that stops early: a bomb, a
//!   corrupt stream, too many entries) is skipped and named in
//!   [`LayerInventory::skipped`]; [`catalog_image`] returns those notes
//!   with the inventory ([`ImageInventory::incomplete`]) so no consumer can
//!   mistake a partial inventory for a whole one. A skipped file hides
//!   nothing: the lower layers' copy of its path stays in the inventory.
//! - Memory is bounded by [`Limits`]: what one layer and one image may
//!   contribute (packages, watched files) is capped while walking, each
//!   file read into memory has a cap,
//!   the uncompressed size has an absolute cap and a ratio cap against the
//!   compressed bytes (decompression bombs), and the stream is processed in
//!   fixed buffers however large the layer. Tar extension headers (PAX,
//!   GNU long names), which the tar parser reads whole, are capped too.
//! - Every error names the layer digest. A truncated or corrupt stream is an
//!   error of [`catalog_layer`] even when the tar end marker was seen,
//!   because the whole compressed stream is drained and (by default) its
//!   digest verified; [`catalog_image`] turns such a layer (and a bomb, or
//!   a layer over its size or entry cap) into a note naming it, and reads
//!   the other layers. Only failures that say nothing about the content
//!   (the blob cannot be opened or read, scratch space, a digest mismatch)
//!   fail the image.
//! - [`CATALOG_VERSION`] changes whenever a cataloger's output changes, so
//!   cached layer results from older catalogers are never used.

mod cache;
mod catalogers;
mod error;
mod layer;
mod limits;
mod merge;
mod model;
pub mod purl;
mod targuard;

pub use cache::{DirCache, LayerCache, MemoryCache, NoCache, relabel_layer};
pub use error::CatalogError;
pub use layer::catalog_layer;
pub use limits::Limits;
pub use merge::{merge, merge_image};
pub use model::{
    FileFacts, FileKind, ImageInventory, LayerInventory, LayerStats, MAX_NOTES, SkipKind, Skipped,
    escape_path,
};

use inventory::Inventory;
use oci::{BlobSource, Descriptor, Digest, ImageIndex, ImageManifest, Platform};

/// Version of the catalogers' output. Bump it whenever a cataloger is added
/// or changes what it reports: cached [`LayerInventory`] values carry the
/// version they were made with and are ignored when it differs.
/// 2: NDB `Packages.db` (SUSE) is read.
/// 3: Go 1.13–1.17 build info (the pointer form) is read.
/// 4: skipped parts are named (`skipped`, `limits`); hostile paths, caps
///    and unreadable layers no longer fail or blind the read.
pub const CATALOG_VERSION: u32 = 4;

/// Catalog one image (one platform): each layer from `cache` when present,
/// otherwise read from `source` and stored in `cache`, then merged
/// ([`merge_image`]), with the parts that could not be read named.
///
/// Synchronous and CPU/IO bound: call it from `spawn_blocking`. Layers
/// whose media type is not a filesystem layer (artifacts, attestations) are
/// skipped.
pub fn catalog_image(
    source: &dyn BlobSource,
    manifest: &ImageManifest,
    cache: &dyn LayerCache,
    limits: &Limits,
) -> Result<ImageInventory, CatalogError> {
    let layers = catalog_image_layers(source, manifest, cache, limits)?;
    Ok(merge_image(layers, limits))
}

/// Whether the catalog reads the contents of the regular file at `path`
/// (relative, `/`-separated, no leading `/`) with permission bits `mode`
/// and `size` bytes under `limits`. `drydock scan dir:` streams only such
/// files into [`catalog_layer`], so a directory is cataloged by the same
/// walk as a layer without copying the files nothing looks at.
pub fn reads_file(path: &str, mode: u32, size: u64, limits: &Limits) -> bool {
    catalogers::classify(path, mode, size, limits).is_some()
}

/// A cached layer result usable under `limits`: one with skipped parts
/// made under other limits is read again (its gaps may close).
pub fn cached_layer(
    cache: &dyn LayerCache,
    layer: &Digest,
    limits: &Limits,
) -> Option<LayerInventory> {
    cache
        .get(layer, CATALOG_VERSION)
        .filter(|inv| inv.is_complete() || inv.limits == limits.key())
}

/// The per-layer results of an image, in manifest order, from the cache or
/// freshly read. [`catalog_image`] is this followed by [`merge`].
pub fn catalog_image_layers(
    source: &dyn BlobSource,
    manifest: &ImageManifest,
    cache: &dyn LayerCache,
    limits: &Limits,
) -> Result<Vec<(Digest, LayerInventory)>, CatalogError> {
    let mut slots: Vec<(Digest, Option<LayerInventory>)> = Vec::new();
    // Layers to read, each digest once (a layer may repeat in a manifest).
    let mut misses: Vec<(Digest, oci::LayerCompression)> = Vec::new();
    let mut missing = std::collections::HashSet::new();
    for desc in &manifest.layers {
        let Some(compression) = oci::layer_compression(&desc.media_type) else {
            continue;
        };
        let cached = cached_layer(cache, &desc.digest, limits);
        if cached.is_none() && missing.insert(desc.digest.clone()) {
            misses.push((desc.digest.clone(), compression));
        }
        slots.push((desc.digest.clone(), cached));
    }
    let mut read: std::collections::HashMap<Digest, LayerInventory> =
        read_layers(source, &misses, cache, limits)?
            .into_iter()
            .collect();
    // How often each layer read is still wanted: its last use moves the
    // result, only a layer repeated in the manifest is copied.
    let mut uses: std::collections::HashMap<Digest, usize> = std::collections::HashMap::new();
    for (digest, inv) in &slots {
        if inv.is_none() {
            *uses.entry(digest.clone()).or_default() += 1;
        }
    }
    Ok(slots
        .into_iter()
        .map(|(digest, inv)| {
            let inv = inv.unwrap_or_else(|| {
                let left = uses.get_mut(&digest).expect("counted above");
                *left -= 1;
                if *left == 0 {
                    read.remove(&digest).expect("read above")
                } else {
                    read[&digest].clone()
                }
            });
            (digest, inv)
        })
        .collect())
}

/// Read `layers` from `source`, up to [`Limits::parallel_layers`] at a
/// time (layers are independent until [`merge`]), each stored in `cache` as
/// soon as it is read, so a later failure does not waste it. Results come
/// back in the order given; on failure, the error of the first failing
/// layer in that order, and the remaining layers are not started.
///
/// A layer whose content stops the read (a bomb, a cap on its size or
/// entries, a corrupt stream) does not fail the image: it comes back as a
/// result naming why it was not read, not cached, so the rest of the image is still cataloged and the image is
/// incomplete. Failures that say nothing about the content (the blob
/// cannot be opened or read, scratch space, a digest mismatch) are errors.
fn read_layers(
    source: &dyn BlobSource,
    layers: &[(Digest, oci::LayerCompression)],
    cache: &dyn LayerCache,
    limits: &Limits,
) -> Result<Vec<(Digest, LayerInventory)>, CatalogError> {
    let read_one = |(digest, compression): &(Digest, oci::LayerCompression)| {
        let reader = source.open_blob(digest).map_err(|e| CatalogError::Open {
            layer: digest.clone(),
            source: e,
        })?;
        let inv = match catalog_layer(reader, *compression, digest, limits) {
            Ok(inv) => {
                cache.put(digest, CATALOG_VERSION, &inv);
                inv
            }
            Err(
                e @ (CatalogError::Bomb { .. }
                | CatalogError::Limit { .. }
                | CatalogError::Corrupt { .. }
                | CatalogError::Unsafe { .. }),
            ) => {
                tracing::warn!(layer = %digest, error = %e, "layer not cataloged");
                LayerInventory::unread(digest, unread_detail(&e))
            }
            Err(e) => return Err(e),
        };
        Ok((digest.clone(), inv))
    };
    let threads = limits.parallel_layers.clamp(1, layers.len().max(1));
    if threads == 1 {
        return layers.iter().map(read_one).collect();
    }
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    type Slot = Option<Result<(Digest, LayerInventory), CatalogError>>;
    let results: Mutex<Vec<Slot>> = Mutex::new((0..layers.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(layer) = layers.get(i) else { break };
                    let result = read_one(layer);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results.lock().expect("no panics while held")[i] = Some(result);
                }
            });
        }
    });
    // Slots left empty were never started because a layer failed.
    let mut out = Vec::with_capacity(layers.len());
    for result in results
        .into_inner()
        .expect("no panics while held")
        .into_iter()
        .flatten()
    {
        out.push(result?);
    }
    Ok(out)
}

/// Why a layer was not read, without the layer digest the error repeats
/// (the note carries it).
fn unread_detail(e: &CatalogError) -> String {
    let what = match e {
        CatalogError::Bomb { detail, .. } => format!("decompression bomb suspected: {detail}"),
        CatalogError::Limit { detail, .. } => format!("limit exceeded: {detail}"),
        CatalogError::Corrupt { detail, .. } => format!("corrupt archive: {detail}"),
        CatalogError::Unsafe { path, reason, .. } => {
            format!("unsafe entry {}: {reason}", escape_path(path.as_bytes()))
        }
        other => other.to_string(),
    };
    format!("layer not cataloged ({what})")
}

/// How much of a blob [`sniff_layer`] needs to see.
pub const SNIFF_LEN: usize = 512;

/// Whether the first bytes of a blob (at least [`SNIFF_LEN`] of them when
/// the blob is that long) look like a filesystem layer, and how it is
/// compressed: a gzip or zstd stream, or a tar archive (the `ustar` magic).
/// For reading a blob before any manifest says what it is.
pub fn sniff_layer(head: &[u8]) -> Option<oci::LayerCompression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(oci::LayerCompression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(oci::LayerCompression::Zstd)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(oci::LayerCompression::None)
    } else {
        None
    }
}

/// One platform of an index, cataloged.
#[derive(Debug, Clone)]
pub struct PlatformInventory {
    /// Digest of the platform's image manifest.
    pub manifest: Digest,
    pub platform: Option<Platform>,
    pub inventory: Inventory,
    /// The parts of this platform's image not read ([`ImageInventory::incomplete`]).
    pub incomplete: Vec<Skipped>,
}

/// Catalog every platform of an index (the images [`oci::IndexWalk`]
/// picks, nested indexes followed). `fetch_manifest` returns the bytes of
/// a child manifest (from a layout or a registry). Layers shared between
/// platforms are read once thanks to `cache`.
pub fn catalog_index(
    source: &dyn BlobSource,
    index: &ImageIndex,
    fetch_manifest: &dyn Fn(&Descriptor) -> std::io::Result<Vec<u8>>,
    cache: &dyn LayerCache,
    limits: &Limits,
) -> Result<Vec<PlatformInventory>, CatalogError> {
    let mut walk = oci::IndexWalk::new(index, &oci::PlatformFilter::all());
    while let Some(nested) = walk.next_index() {
        let digest = nested.descriptor.digest.clone();
        let manifest_err = |detail: String| CatalogError::Manifest {
            digest: digest.clone(),
            detail,
        };
        let body = fetch_manifest(&nested.descriptor).map_err(|e| manifest_err(e.to_string()))?;
        let inner = match oci::Manifest::parse(&body, Some(&nested.descriptor.media_type)) {
            Ok(oci::Manifest::Index { index, .. }) => index,
            Ok(_) => return Err(manifest_err("expected an index".into())),
            Err(e) => return Err(manifest_err(e.to_string())),
        };
        walk.add_index(nested, &inner)
            .map_err(|e| manifest_err(e.to_string()))?;
    }
    // Only a platform asked for by name can be missing: with none, finish
    // cannot fail.
    let images = walk.finish().unwrap_or_default();
    images
        .iter()
        .map(|img| catalog_child(source, &img.descriptor, fetch_manifest, cache, limits))
        .collect()
}

fn catalog_child(
    source: &dyn BlobSource,
    desc: &Descriptor,
    fetch_manifest: &dyn Fn(&Descriptor) -> std::io::Result<Vec<u8>>,
    cache: &dyn LayerCache,
    limits: &Limits,
) -> Result<PlatformInventory, CatalogError> {
    let manifest_err = |detail: String| CatalogError::Manifest {
        digest: desc.digest.clone(),
        detail,
    };
    let body = fetch_manifest(desc).map_err(|e| manifest_err(e.to_string()))?;
    let manifest = match oci::Manifest::parse(&body, Some(&desc.media_type)) {
        Ok(oci::Manifest::Image { manifest, .. }) => manifest,
        Ok(_) => return Err(manifest_err("expected an image manifest".into())),
        Err(e) => return Err(manifest_err(e.to_string())),
    };
    let image = catalog_image(source, &manifest, cache, limits)?;
    Ok(PlatformInventory {
        manifest: desc.digest.clone(),
        platform: desc.platform.clone(),
        inventory: image.inventory,
        incomplete: image.incomplete,
    })
}
