//! The cataloger port says what failed: a blob that cannot be read (worth
//! another try) apart from a layer that is wrong (the same every time),
//! with the cataloger's own message; and the registry-wide layer cache is
//! catalog's `LayerCache`, with nothing between.

use assess::live::CatalogCataloger;
use assess::{CatalogFailure, Cataloger};
use catalog::{LayerCache, MemoryCache};
use oci::{BlobSource, Digest, ImageManifest};
use std::collections::HashMap;
use std::io::Read;

/// Blobs in memory; a digest without bytes fails to open.
struct Blobs(HashMap<Digest, Vec<u8>>);

impl BlobSource for Blobs {
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        match self.0.get(digest) {
            Some(b) => Ok(Box::new(std::io::Cursor::new(b.clone()))),
            None => Err(std::io::Error::other("the store is unavailable")),
        }
    }
}

/// A plain tar layer declaring one Debian package.
fn layer() -> Vec<u8> {
    let status = b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13\nArchitecture: amd64\n\n";
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(status.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "var/lib/dpkg/status", &status[..])
        .unwrap();
    b.into_inner().unwrap()
}

fn manifest(layer: &Digest, size: usize) -> ImageManifest {
    serde_json::from_value(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": {
            "mediaType": oci::OCI_CONFIG,
            "digest": Digest::sha256_of(b"{}").to_string(),
            "size": 2,
        },
        "layers": [{
            "mediaType": oci::OCI_LAYER_TAR,
            "digest": layer.to_string(),
            "size": size,
        }],
    }))
    .unwrap()
}

#[test]
fn a_blob_that_cannot_be_read_is_transient_and_keeps_its_message() {
    let bytes = layer();
    let d = Digest::sha256_of(&bytes);
    let cataloger = CatalogCataloger::default();
    let e = cataloger
        .catalog_image(
            &Blobs(HashMap::new()),
            &manifest(&d, bytes.len()),
            &MemoryCache::new(),
        )
        .unwrap_err();
    assert!(matches!(e, CatalogFailure::BlobUnreadable(_)), "{e:?}");
    assert!(e.is_transient());
    // The message users saw before the error was typed.
    assert_eq!(
        e.to_string(),
        format!("layer {d}: cannot open blob: the store is unavailable")
    );
    // Through the worker's wrapping, the text is unchanged and the kind
    // can still be found.
    let wrapped = anyhow::Error::new(e).context("cataloging failed");
    assert_eq!(
        format!("{wrapped:#}"),
        format!("cataloging failed: layer {d}: cannot open blob: the store is unavailable")
    );
    assert!(
        wrapped
            .downcast_ref::<CatalogFailure>()
            .is_some_and(CatalogFailure::is_transient)
    );
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_malformed_not_transient() {
    let bytes = layer();
    let claimed = Digest::sha256_of(b"something else");
    let blobs = Blobs(HashMap::from([(claimed.clone(), bytes.clone())]));
    let e = CatalogCataloger::default()
        .catalog_image(
            &blobs,
            &manifest(&claimed, bytes.len()),
            &MemoryCache::new(),
        )
        .unwrap_err();
    assert!(matches!(e, CatalogFailure::LayerMalformed(_)), "{e:?}");
    assert!(!e.is_transient());
    assert!(
        e.to_string().starts_with(&format!(
            "layer {claimed}: content does not match its digest"
        )),
        "{e}"
    );
}

#[test]
fn layer_results_go_to_the_cache_the_worker_hands_in() {
    let bytes = layer();
    let d = Digest::sha256_of(&bytes);
    let blobs = Blobs(HashMap::from([(d.clone(), bytes.clone())]));
    let cataloger = CatalogCataloger::default();
    let cache = MemoryCache::new();
    let image = cataloger
        .catalog_image(&blobs, &manifest(&d, bytes.len()), &cache)
        .unwrap();
    assert!(image.incomplete.is_empty(), "{:?}", image.incomplete);
    assert_eq!(image.inventory.packages.len(), 1);
    let cached = cache.get(&d, cataloger.version()).expect("layer cached");
    assert_eq!(cached.packages().count(), 1);
    // A second read comes from the cache: the blob is no longer needed.
    let again = cataloger
        .catalog_image(&Blobs(HashMap::new()), &manifest(&d, bytes.len()), &cache)
        .unwrap();
    assert_eq!(again, image);
    // Already cached: the prefetch does not read it again.
    assert!(!cataloger.prefetch_layer(&blobs, &d, &cache));
}

#[test]
fn the_store_is_the_layer_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = assess::store::Store::open(&dir.path().join("assess.db")).unwrap();
    let bytes = layer();
    let d = Digest::sha256_of(&bytes);
    let blobs = Blobs(HashMap::from([(d.clone(), bytes)]));
    let cataloger = CatalogCataloger::default();
    assert!(store.get(&d, cataloger.version()).is_none());
    assert!(cataloger.prefetch_layer(&blobs, &d, &store));
    let stored = store.get(&d, cataloger.version()).expect("stored");
    assert_eq!(stored.packages().count(), 1);
    assert!(store.get(&d, cataloger.version() + 1).is_none());
}
