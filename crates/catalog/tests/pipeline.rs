//! A layer is inflated on one thread and walked on another, the two joined
//! by a small pipe of blocks: what crosses it (data across block seams,
//! errors from either side) and that it stays bounded when the walk stops.

mod common;

use catalog::{CatalogError, Limits, catalog_layer};
use common::*;
use inventory::Ecosystem;
use oci::{Digest, LayerCompression};
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes that do not compress (so a layer's compressed size is its size).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A reader over `data` that counts what was taken from it and, if
/// `fail_at` is set, fails once that many bytes were read.
struct Source {
    data: Vec<u8>,
    pos: usize,
    fail_at: Option<usize>,
    taken: Arc<AtomicU64>,
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let end = self.fail_at.unwrap_or(self.data.len());
        if self.pos >= end && self.fail_at.is_some() {
            return Err(io::Error::other("the disk went away"));
        }
        let n = buf.len().min(end - self.pos).min(64 << 10);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn source(data: Vec<u8>, fail_at: Option<usize>) -> (Source, Arc<AtomicU64>) {
    let taken = Arc::new(AtomicU64::new(0));
    let s = Source {
        data,
        pos: 0,
        fail_at,
        taken: taken.clone(),
    };
    (s, taken)
}

#[test]
fn packages_across_many_blocks_are_all_found() {
    // Files of odd sizes between the manifests, so headers and file
    // contents fall across the 256 KiB blocks the walker is handed.
    let mut b = LayerBuilder::new();
    for i in 0..40 {
        b = b.file(
            &format!("data/{i}.bin"),
            &noise(97_003 + i * 4_099, i as u64),
        );
        b = b.file(
            &format!("app/node_modules/p{i}/package.json"),
            format!("{{\"name\":\"p{i}\",\"version\":\"1.0.{i}\"}}").as_bytes(),
        );
    }
    let bytes = b.gzip();
    for verify in [true, false] {
        let d = Digest::sha256_of(&bytes);
        let limits = Limits {
            verify_digest: verify,
            ..Limits::default()
        };
        let inv = catalog_layer(&bytes[..], LayerCompression::Gzip, &d, &limits).unwrap();
        let image = catalog::merge(&[(d.clone(), inv.clone())]);
        let found = name_versions(&image, Ecosystem::Npm);
        assert_eq!(found.len(), 40, "{found:?}");
        for i in 0..40 {
            assert!(
                found.contains(&(format!("p{i}"), format!("1.0.{i}"))),
                "p{i}"
            );
        }
        assert_eq!(inv.stats.compressed_bytes, bytes.len() as u64);
        assert!(inv.stats.uncompressed_bytes > 40 * 97_003);
    }
}

#[test]
fn a_source_failing_mid_layer_is_a_read_error() {
    let bytes = LayerBuilder::new()
        .file("var/lib/dpkg/status", b"Package: a\nVersion: 1\n")
        .file("big", &noise(3 << 20, 7))
        .gzip();
    for verify in [true, false] {
        let (src, _) = source(bytes.clone(), Some(bytes.len() / 2));
        let d = Digest::sha256_of(&bytes);
        let limits = Limits {
            verify_digest: verify,
            ..Limits::default()
        };
        let err = catalog_layer(src, LayerCompression::Gzip, &d, &limits).unwrap_err();
        match err {
            CatalogError::Read { source, .. } => {
                assert!(source.to_string().contains("went away"), "{source}")
            }
            other => panic!("verify {verify}: not a read error: {other}"),
        }
    }
}

#[test]
fn a_walk_that_fails_stops_the_inflating_early() {
    // A valid first entry, then a block that is no tar header, then much
    // more data: the walker fails at the bad block, and the inflating side
    // must stop soon after instead of reading the whole blob.
    let mut tar = LayerBuilder::new().file("a", b"first").tar();
    tar.truncate(1024); // the header and the data block of "a"
    tar.extend_from_slice(&[0x55u8; 512]);
    tar.extend_from_slice(&noise(24 << 20, 3));
    let bytes = gzip(&tar);
    let (src, taken) = source(bytes.clone(), None);
    let d = Digest::sha256_of(&bytes);
    let limits = Limits {
        verify_digest: false,
        ..Limits::default()
    };
    let err = catalog_layer(src, LayerCompression::Gzip, &d, &limits).unwrap_err();
    assert!(matches!(err, CatalogError::Corrupt { .. }), "{err}");
    let taken = taken.load(Ordering::Relaxed);
    // The pipe holds a few 256 KiB blocks and the inflater's input buffer
    // 128 KiB: a few MiB at most, of a 24 MiB blob.
    assert!(taken < 8 << 20, "read {taken} of {} bytes", bytes.len());
}
