//! Catalog one tag of an OCI layout and print a summary with timings:
//! `cargo run -p catalog --release --example catalog_layout -- DIR TAG [--json]`
//! (run it under `/usr/bin/time -v` for peak memory).
use catalog::{Limits, MemoryCache};
use oci::layout::OciLayout;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, tag) = (&args[1], &args[2]);
    let l = OciLayout::open(dir).expect("layout");
    let desc = l.resolve(Some(tag)).expect("tag");
    let oci::Manifest::Image { manifest, .. } = l.manifest(&desc).expect("manifest") else {
        panic!("{tag} is an index");
    };
    let cache = MemoryCache::new();
    let t = Instant::now();
    let layers = catalog::catalog_image_layers(&l, &manifest, &cache, &Limits::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let cold = t.elapsed();
    let bytes: u64 = layers
        .iter()
        .map(|(_, li)| li.stats.uncompressed_bytes)
        .sum();
    let t = Instant::now();
    let image = catalog::catalog_image(&l, &manifest, &cache, &Limits::default()).unwrap();
    let inv = &image.inventory;
    let warm = t.elapsed();
    if args.iter().any(|a| a == "--json") {
        println!("{}", serde_json::to_string_pretty(inv).unwrap());
    }
    let mut per: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in &inv.packages {
        *per.entry(p.ecosystem.as_str()).or_default() += 1;
    }
    for note in &image.incomplete {
        eprintln!("incomplete: {note}");
    }
    for (_, li) in &layers {
        for w in &li.warnings {
            eprintln!("warning: {w}");
        }
    }
    eprintln!(
        "{tag}: {} packages {per:?}; cold {:.1} ms ({:.0} MB/s of {} uncompressed bytes), warm {:.2} ms",
        inv.packages.len(),
        cold.as_secs_f64() * 1e3,
        bytes as f64 / cold.as_secs_f64() / 1e6,
        bytes,
        warm.as_secs_f64() * 1e3
    );
}
