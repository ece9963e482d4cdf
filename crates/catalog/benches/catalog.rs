//! Catalog benchmarks. Targets (issue 4): the debootstrap Debian image in
//! under 150 ms warm (cache hit), and layers without packages read at
//! 500 MB/s or more of uncompressed data.
//!
//! The real-image benches need the test images (`scripts/test-images.sh`,
//! or `DRYDOCK_TEST_IMAGES`); they are skipped when absent.

use catalog::{DirCache, LayerCache, Limits, MemoryCache, catalog_layer};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use oci::layout::OciLayout;
use oci::{Digest, LayerCompression};
use std::io::Write;
use std::path::PathBuf;

fn images() -> Option<PathBuf> {
    let dir = std::env::var_os("DRYDOCK_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-images")
        });
    dir.join("oci/index.json").exists().then_some(dir)
}

fn manifest(l: &OciLayout, tag: &str) -> oci::ImageManifest {
    let d = l.resolve(Some(tag)).unwrap();
    match l.manifest(&d).unwrap() {
        oci::Manifest::Image { manifest, .. } => manifest,
        _ => panic!("{tag} is an index"),
    }
}

fn real_images(c: &mut Criterion) {
    let Some(dir) = images() else {
        eprintln!("test images not built; skipping real-image benches");
        return;
    };
    let l = OciLayout::open(dir.join("oci")).unwrap();
    let m = manifest(&l, "bookworm-base");
    let limits = Limits::default();
    let mut g = c.benchmark_group("bookworm-base");
    // Warm: every layer is in the cache (in memory, or JSON files on disk
    // like the registry keeps), so this is lookup + merge.
    let mem = MemoryCache::new();
    catalog::catalog_image(&l, &m, &mem, &limits).unwrap();
    g.bench_function("warm-memory-cache", |b| {
        b.iter(|| catalog::catalog_image(&l, &m, &mem, &limits).unwrap())
    });
    let tmp = tempfile::tempdir().unwrap();
    let disk = DirCache::new(tmp.path());
    catalog::catalog_image(&l, &m, &disk, &limits).unwrap();
    g.bench_function("warm-dir-cache", |b| {
        b.iter(|| catalog::catalog_image(&l, &m, &disk, &limits).unwrap())
    });
    g.sample_size(10);
    let bytes: u64 = m.layers.iter().map(|d| d.size).sum();
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("cold", |b| {
        b.iter(|| catalog::catalog_image(&l, &m, &catalog::NoCache, &limits).unwrap())
    });
    g.finish();
    let _ = disk.get(&m.layers[0].digest, catalog::CATALOG_VERSION);
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Text-like bytes, compressing about 3:1 like typical layer content.
fn texty(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "layer", "package", "return", "function", "static", "const", "data", "value",
        "config", "module", "import", "error", "string", "index", "buffer", "version", "{", "}",
        "(", ")", ";", "\n", "    ", "if", "else", "for", "while", "0x1f", "42", "struct",
    ];
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        if x & 0x300 == 0 {
            v.extend_from_slice(format!("{:x}", x >> 20).as_bytes());
        }
        v.push(b' ');
    }
    v.truncate(len);
    v
}

/// A tar of `files` non-executable files of `size` bytes each: nothing a
/// cataloger reads, so this measures the stream itself.
fn layer_tar(files: usize, size: usize, make: fn(usize, u64) -> Vec<u8>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..files {
        let data = make(size, i as u64 + 7);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, format!("usr/share/blob/{i}.bin"), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("no-packages");
    g.sample_size(10);
    let limits = Limits::default();
    for (kind, make) in [
        ("random", noise as fn(usize, u64) -> Vec<u8>),
        ("text", texty),
    ] {
        let tar = layer_tar(128, 1 << 20, make);
        g.throughput(Throughput::Bytes(tar.len() as u64));
        let variants = [
            ("tar", LayerCompression::None, tar.clone()),
            ("gzip", LayerCompression::Gzip, gzip(&tar, 6)),
            (
                "zstd",
                LayerCompression::Zstd,
                zstd::encode_all(&tar[..], 3).unwrap(),
            ),
        ];
        // Baseline: decompression alone, nothing else, for comparison.
        let gz = variants[1].2.clone();
        g.bench_function(
            BenchmarkId::new(format!("{kind}-gzip-decode-only"), tar.len()),
            |b| {
                b.iter(|| {
                    let mut d = flate2::read::MultiGzDecoder::new(&gz[..]);
                    std::io::copy(&mut d, &mut std::io::sink()).unwrap()
                })
            },
        );
        for (name, comp, blob) in variants {
            let d = Digest::sha256_of(&blob);
            g.bench_with_input(
                BenchmarkId::new(format!("{kind}-{name}"), tar.len()),
                &blob,
                |b, blob| b.iter(|| catalog_layer(&blob[..], comp, &d, &limits).unwrap()),
            );
            // Without the digest check, to show what hashing costs.
            let no_verify = Limits {
                verify_digest: false,
                ..Limits::default()
            };
            g.bench_with_input(
                BenchmarkId::new(format!("{kind}-{name}-noverify"), tar.len()),
                &blob,
                |b, blob| b.iter(|| catalog_layer(&blob[..], comp, &d, &no_verify).unwrap()),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, real_images, throughput);
criterion_main!(benches);
