//! Load generator for manifest HEAD (wrk cannot: it waits for a body on
//! HEAD responses). Used by bench/registry/run.sh.
//!
//!     headload URL CONNECTIONS SECONDS [ACCEPT]   -> prints requests/s

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args[1].clone();
    let conns: usize = args[2].parse().unwrap();
    let secs: u64 = args[3].parse().unwrap();
    let accept = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        // One client per connection, like wrk's connections.
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let (url, accept, done, errors) =
            (url.clone(), accept.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match client.head(&url).header("accept", &accept).send().await {
                    Ok(r) if r.status().is_success() => done.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed);
    if errors.load(Ordering::Relaxed) > 0 {
        eprintln!("{} errors", errors.load(Ordering::Relaxed));
    }
    println!("{}", n / secs);
}
