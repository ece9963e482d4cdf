//! Fail closed: whatever part of an image cannot be read completely is
//! skipped and named, the rest is still cataloged, and what one layer or
//! image may contribute is capped while walking.

mod common;

use catalog::{
    ImageInventory, LayerInventory, Limits, MAX_NOTES, MemoryCache, SkipKind, catalog_image,
    catalog_layer, merge_image,
};
use common::*;
use inventory::Ecosystem;
use oci::{Digest, ImageManifest, LayerCompression};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

const STATUS_AB: &str = "Package: aaa\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\nPackage: bbb\nStatus: install ok installed\nArchitecture: amd64\nSource: bsrc (0.9)\nVersion: 2.0\n";

fn metadata(name: &str, version: &str) -> Vec<u8> {
    format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n").into_bytes()
}

fn pkg_json(name: &str, version: &str) -> Vec<u8> {
    format!("{{\"name\":\"{name}\",\"version\":\"{version}\"}}").into_bytes()
}

/// Blobs in memory, counting how often each is opened.
#[derive(Default)]
struct Blobs {
    blobs: HashMap<Digest, Vec<u8>>,
    opened: AtomicUsize,
}

impl oci::BlobSource for Blobs {
    fn open_blob(&self, d: &Digest) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        let b = self
            .blobs
            .get(d)
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("{d} missing")))?;
        Ok(Box::new(std::io::Cursor::new(b)))
    }
}

/// An image of gzip layers (bottom first).
fn image(layers: Vec<Vec<u8>>) -> (Blobs, ImageManifest) {
    let mut blobs = Blobs::default();
    let mut descs = Vec::new();
    for l in layers {
        let d = Digest::sha256_of(&l);
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(),
            "size": l.len(),
        }));
        blobs.blobs.insert(d, l);
    }
    let config = b"{}";
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::sha256_of(config).to_string(),
            "size": config.len(),
        },
        "layers": descs,
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    match oci::Manifest::parse(&bytes, Some("application/vnd.oci.image.manifest.v1+json")) {
        Ok(oci::Manifest::Image { manifest, .. }) => (blobs, manifest),
        other => panic!("{other:?}"),
    }
}

fn layer(bytes: &[u8], limits: &Limits) -> (Digest, LayerInventory) {
    let d = Digest::sha256_of(bytes);
    let li = catalog_layer(bytes, LayerCompression::Gzip, &d, limits).unwrap();
    (d, li)
}

fn names(img: &ImageInventory, eco: Ecosystem) -> Vec<String> {
    name_versions(&img.inventory, eco)
        .into_iter()
        .map(|(n, v)| format!("{n}@{v}"))
        .collect()
}

fn debian_base() -> Vec<u8> {
    LayerBuilder::new()
        .file(
            "etc/os-release",
            b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        )
        .file("var/lib/dpkg/status", STATUS_AB.as_bytes())
        .gzip()
}

/// The case: a dpkg `status` with one field past 32 MiB, stacked on
/// a Debian base, used to turn its packages into none, without a word.
#[test]
fn oversized_dpkg_status_is_named_and_hides_nothing() {
    let mut evil = STATUS_AB.to_string();
    evil.push_str("\nPackage: evil\nStatus: install ok installed\nVersion: 1\nDescription: ");
    evil.push_str(&"x".repeat(33 << 20));
    evil.push('\n');
    let upper = LayerBuilder::new()
        .file("var/lib/dpkg/status", evil.as_bytes())
        .file(
            "usr/lib/python3/dist-packages/foo-1.0.dist-info/METADATA",
            &metadata("foo", "1.0"),
        )
        .gzip();
    let (blobs, m) = image(vec![debian_base(), upper]);
    let upper_digest = m.layers[1].digest.to_string();
    let img = catalog_image(&blobs, &m, &MemoryCache::new(), &Limits::default()).unwrap();
    // The lower database still shows, and the upper layer's other files.
    assert_eq!(names(&img, Ecosystem::Deb), ["aaa@1.0", "bbb@2.0"]);
    assert_eq!(names(&img, Ecosystem::PyPI), ["foo@1.0"]);
    assert_eq!(img.inventory.distro.as_ref().unwrap().id, "debian");
    assert!(!img.is_complete());
    assert_eq!(img.incomplete.len(), 1, "{:?}", img.incomplete);
    let note = &img.incomplete[0];
    assert_eq!(note.kind, SkipKind::TooLarge);
    assert_eq!(note.path.as_deref(), Some("/var/lib/dpkg/status"));
    assert_eq!(note.layer.as_deref(), Some(upper_digest.as_str()));
    let reason = &img.reasons()[0];
    assert!(
        reason.contains("/var/lib/dpkg/status")
            && reason.contains(&(32u64 << 20).to_string())
            && reason.contains("max_file_bytes"),
        "{reason}"
    );
}

/// A note about a file goes when an upper layer replaces or deletes it.
#[test]
fn notes_about_replaced_files_are_dropped() {
    let limits = Limits {
        max_file_bytes: 1 << 10,
        ..Limits::default()
    };
    let big = "x".repeat(4 << 10);
    let bad = layer(
        &LayerBuilder::new()
            .file("var/lib/dpkg/status", big.as_bytes())
            .file("app/package-lock.json", b"{not json")
            .file("app/node_modules/a/package.json", big.as_bytes())
            .gzip(),
        &limits,
    );
    assert_eq!(bad.1.skipped.len(), 3, "{:?}", bad.1.skipped);
    let lock_note = bad
        .1
        .skipped
        .iter()
        .find(|s| s.path.as_deref() == Some("/app/package-lock.json"))
        .unwrap();
    assert_eq!(lock_note.kind, SkipKind::Malformed);
    let fix = layer(
        &LayerBuilder::new()
            .file("var/lib/dpkg/status", STATUS_AB.as_bytes())
            .file("app/.wh.package-lock.json", b"")
            .gzip(),
        &limits,
    );
    let img = merge_image(&[bad.clone(), fix], &limits);
    let paths: Vec<_> = img.incomplete.iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        [Some("/app/node_modules/a/package.json".to_string())],
        "{:?}",
        img.incomplete
    );
    assert_eq!(names(&img, Ecosystem::Deb), ["aaa@1.0", "bbb@2.0"]);
    // An opaque directory above hides the last one too.
    let opaque = layer(
        &LayerBuilder::new()
            .file("app/node_modules/.wh..wh..opq", b"")
            .gzip(),
        &limits,
    );
    let fix = layer(
        &LayerBuilder::new()
            .file("var/lib/dpkg/status", STATUS_AB.as_bytes())
            .file("app/.wh.package-lock.json", b"")
            .gzip(),
        &limits,
    );
    assert!(merge_image(&[bad, fix, opaque], &limits).is_complete());
}

/// A tar entry climbing out with `..` used to fail the whole image.
#[test]
fn hostile_path_is_skipped_named_and_the_rest_cataloged() {
    let bytes = LayerBuilder::new()
        .file("var/lib/dpkg/status", STATUS_AB.as_bytes())
        .raw_file(b"../../etc/passwd", b"root:x:0:0")
        .raw_file(b"a/../../\x1b[2J\n\xff", b"x")
        .file(
            "usr/lib/python3/dist-packages/foo-1.0.dist-info/METADATA",
            &metadata("foo", "1.0"),
        )
        .gzip();
    let (d, li) = layer(&bytes, &Limits::default());
    assert_eq!(li.skipped.len(), 2, "{:?}", li.skipped);
    assert!(li.skipped.iter().all(|s| s.kind == SkipKind::UnsafePath));
    assert_eq!(li.skipped[0].path.as_deref(), Some("../../etc/passwd"));
    // Control characters and non-UTF-8 bytes are escaped, never passed on.
    assert_eq!(
        li.skipped[1].path.as_deref(),
        Some("a/../../\\x1b[2J\\x0a\\xff")
    );
    let img = merge_image(&[(d.clone(), li)], &Limits::default());
    assert_eq!(names(&img, Ecosystem::Deb), ["aaa@1.0", "bbb@2.0"]);
    assert_eq!(names(&img, Ecosystem::PyPI), ["foo@1.0"]);
    let reasons = img.reasons();
    assert!(
        reasons[0].contains("../../etc/passwd") && reasons[0].contains(&d.to_string()[..19]),
        "{reasons:?}"
    );
    assert!(reasons.iter().all(|r| !r.chars().any(char::is_control)));
}

/// Each cap stops collection where it is reached, names itself, and leaves
/// the OS package database alone.
#[test]
fn package_caps_stop_collection_early_and_are_named() {
    let limits = Limits {
        max_packages_per_layer: 100,
        max_packages_per_image: 150,
        ..Limits::default()
    };
    let junk = |prefix: &str, n: usize| {
        let mut b = LayerBuilder::new();
        for i in 0..n {
            b.file_mode(
                &format!("{prefix}/node_modules/p{i:04}/package.json"),
                &pkg_json(&format!("p{i:04}"), "1.0.0"),
                0o644,
            );
        }
        b
    };
    let (da, a) = layer(&junk("a", 300).gzip(), &limits);
    assert_eq!(a.packages().count(), 100);
    // Collection stopped at the cap: later files were not even read.
    assert_eq!(a.stats.files_examined, 100);
    assert_eq!(a.files.len(), 100);
    assert_eq!(a.skipped.len(), 1);
    assert_eq!(a.skipped[0].kind, SkipKind::Limit);
    assert!(
        a.skipped[0].detail.contains("100")
            && a.skipped[0].detail.contains("max_packages_per_layer"),
        "{}",
        a.skipped[0].detail
    );
    // The OS database comes after the junk in this layer, and is read.
    let mut b = junk("b", 300);
    b.file_mode("var/lib/dpkg/status", STATUS_AB.as_bytes(), 0o644);
    let (db, b) = layer(&b.gzip(), &limits);
    assert_eq!(b.packages().count(), 102);
    let img = merge_image(&[(da, a), (db, b)], &limits);
    assert_eq!(img.inventory.packages.len(), 150);
    assert_eq!(names(&img, Ecosystem::Deb), ["aaa@1.0", "bbb@2.0"]);
    let last = img.incomplete.last().unwrap();
    assert!(
        last.layer.is_none()
            && last.detail.contains("150")
            && last.detail.contains("max_packages_per_image"),
        "{last:?}"
    );
    assert_eq!(img.incomplete.len(), 3, "{:?}", img.incomplete);
}

#[test]
fn file_cap_and_note_cap_bound_a_flood_of_manifests() {
    let limits = Limits {
        max_files_per_layer: 250,
        ..Limits::default()
    };
    let mut b = LayerBuilder::new();
    for i in 0..400 {
        // Invalid JSON: each one is a malformed file.
        b.file_mode(&format!("node_modules/p{i:04}/package.json"), b"{", 0o644);
    }
    b = b.file("etc/os-release", b"ID=alpine\nVERSION_ID=3.20.3\n");
    let (d, li) = layer(&b.gzip(), &limits);
    assert_eq!(li.files.len(), 250 + 1, "capped files plus os-release");
    // 250 malformed files plus the cap: only the first MAX_NOTES named.
    assert_eq!(li.stats.skipped, 251);
    assert_eq!(li.skipped.len(), MAX_NOTES);
    assert!(li.warnings.len() <= MAX_NOTES);
    let img = merge_image(&[(d, li)], &limits);
    assert_eq!(img.inventory.distro.unwrap().id, "alpine");
    assert!(
        img.incomplete
            .iter()
            .any(|s| s.detail.contains("151 more parts skipped")),
        "{:?}",
        img.incomplete
    );
}

/// A layer the reader gives up on (here a decompression bomb) is named,
/// and the other layers are still cataloged.
#[test]
fn a_bomb_layer_is_named_and_the_image_still_cataloged() {
    let mut b = LayerBuilder::new();
    b.file_mode("zeros", &vec![0u8; 16 << 20], 0o644);
    let (blobs, m) = image(vec![debian_base(), b.gzip()]);
    let limits = Limits {
        ratio_grace_bytes: 1 << 20,
        ..Limits::default()
    };
    let img = catalog_image(&blobs, &m, &MemoryCache::new(), &limits).unwrap();
    assert_eq!(names(&img, Ecosystem::Deb), ["aaa@1.0", "bbb@2.0"]);
    assert_eq!(img.incomplete.len(), 1);
    let reason = &img.reasons()[0];
    assert!(
        reason.contains("layer not cataloged") && reason.contains("bomb"),
        "{reason}"
    );
    assert_eq!(
        img.incomplete[0].layer.as_deref(),
        Some(m.layers[1].digest.to_string().as_str())
    );
}

/// Raising a limit is how an administrator gets the whole image read: a
/// cached layer with gaps is read again under other limits, a complete one
/// is not.
#[test]
fn cached_gaps_are_read_again_under_other_limits() {
    let small = Limits {
        max_file_bytes: 1 << 10,
        ..Limits::default()
    };
    let big = "Package: aaa\nStatus: install ok installed\nVersion: 1.0\nDescription: ".to_string()
        + &"x".repeat(4 << 10)
        + "\n";
    let (blobs, m) = image(vec![
        debian_base(),
        LayerBuilder::new()
            .file("var/lib/dpkg/status", big.as_bytes())
            .gzip(),
    ]);
    let cache = MemoryCache::new();
    let img = catalog_image(&blobs, &m, &cache, &small).unwrap();
    assert!(!img.is_complete());
    assert_eq!(blobs.opened.load(Ordering::SeqCst), 2);
    // Same limits: both layers from the cache.
    catalog_image(&blobs, &m, &cache, &small).unwrap();
    assert_eq!(blobs.opened.load(Ordering::SeqCst), 2);
    // Raised: only the layer with gaps is read again, and now it is whole.
    let img = catalog_image(&blobs, &m, &cache, &Limits::default()).unwrap();
    assert_eq!(blobs.opened.load(Ordering::SeqCst), 3);
    assert!(img.is_complete(), "{:?}", img.incomplete);
    assert_eq!(names(&img, Ecosystem::Deb), ["aaa@1.0"]);
}
