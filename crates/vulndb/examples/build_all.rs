//! Build a database from a directory and print its status and timings:
//! `cargo run -p vulndb --release --example build_all -- ../shared/vulndata /tmp/dd`
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let src = std::path::PathBuf::from(&args[1]);
    let data = std::path::PathBuf::from(&args[2]);
    let t = std::time::Instant::now();
    let report = vulndb::import(&data, &[src], &mut |_| {}).expect("import");
    println!("import: {:.2}s", t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let db = vulndb::Database::open(&data).expect("open");
    println!(
        "load: {:.1} ms, heap ~{} MB",
        t.elapsed().as_secs_f64() * 1e3,
        db.heap_size() / 1_000_000
    );
    println!("{}", serde_json::to_string_pretty(&report.status).unwrap());
    println!("skipped: {:?}", report.skipped_files);
}
