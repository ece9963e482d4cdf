//! Shared test helpers: locating the real test images, building layers.
#![allow(dead_code)]

use catalog::{LayerCache, Limits};
use inventory::{Ecosystem, Inventory};
use oci::layout::OciLayout;
use oci::{Digest, ImageManifest, Manifest};
use std::collections::BTreeSet;
use std::path::PathBuf;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The test images' directory, for a test that has passed
/// `transport::require_test_images!(dir)` (which skips, or under CI fails,
/// when they cannot be built here).
pub fn test_images() -> PathBuf {
    transport::testing::test_images_dir().expect("require_test_images!() first")
}

pub fn layout() -> OciLayout {
    OciLayout::open(test_images().join("oci")).expect("test image layout")
}

pub fn image_manifest(layout: &OciLayout, tag: &str) -> (Digest, ImageManifest) {
    let desc = layout.resolve(Some(tag)).expect("tag");
    match layout.manifest(&desc).expect("manifest") {
        Manifest::Image { manifest, .. } => (desc.digest, manifest),
        Manifest::Index { .. } => panic!("{tag} is an index"),
    }
}

pub fn catalog_tag(tag: &str, cache: &dyn LayerCache) -> Inventory {
    let l = layout();
    let (_, m) = image_manifest(&l, tag);
    let image = catalog::catalog_image(&l, &m, cache, &Limits::default()).expect("catalog");
    assert!(image.is_complete(), "{tag}: {:?}", image.incomplete);
    image.inventory
}

pub fn name_versions(inv: &Inventory, eco: Ecosystem) -> BTreeSet<(String, String)> {
    inv.packages
        .iter()
        .filter(|p| p.ecosystem == eco)
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect()
}

/// A tar layer built in memory.
pub struct LayerBuilder(tar::Builder<Vec<u8>>);

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder(tar::Builder::new(Vec::new()))
    }
    pub fn file(mut self, path: &str, data: &[u8]) -> Self {
        self.file_mode(path, data, 0o644);
        self
    }
    pub fn file_mode(&mut self, path: &str, data: &[u8], mode: u32) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        self.0.append_data(&mut h, path, data).unwrap();
    }
    pub fn dir(mut self, path: &str) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Directory);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Symlink);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    /// An entry whose name is written raw (no checks), e.g. `../x`.
    pub fn raw_file(mut self, name: &[u8], data: &[u8]) -> Self {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    pub fn tar(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
    pub fn gzip(self) -> Vec<u8> {
        gzip(&self.tar())
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}
