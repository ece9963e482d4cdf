//! Times cataloging one layer blob file as the upload-stream reader does
//! (no digest check), for profiling: `profile_layer <blob> [repeats]`.

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("blob path");
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let limits = catalog::Limits {
        verify_digest: false,
        ..Default::default()
    };
    let d = oci::Digest::sha256_of(b"placeholder");
    for _ in 0..n {
        let f = std::fs::File::open(&path).unwrap();
        let t = Instant::now();
        let inv = catalog::catalog_layer(f, oci::LayerCompression::Gzip, &d, &limits).unwrap();
        println!(
            "{:.1} ms, {} files examined, {} entries, {} MB tar",
            t.elapsed().as_secs_f64() * 1000.0,
            inv.stats.files_examined,
            inv.stats.entries,
            inv.stats.uncompressed_bytes / 1_000_000
        );
    }
}
