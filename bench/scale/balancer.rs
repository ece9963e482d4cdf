//! A round-robin TCP balancer for the scale-out benchmark (no HAProxy on
//! the bench machine). Standard library only, so `run.sh` compiles it with
//! plain `rustc` into its scratch directory instead of a cargo target.
//!
//!     balancer LISTEN_ADDR BACKEND_ADDR...
//!
//! Each accepted connection goes to the next backend in turn, for its whole
//! life (as HAProxy's `mode tcp` with `balance roundrobin`): a client's
//! keep-alive connection stays on one node. A backend that refuses the
//! connection is skipped. Prints one line on stdout once it listens.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: balancer LISTEN_ADDR BACKEND_ADDR...");
        std::process::exit(2);
    }
    let listener = TcpListener::bind(&args[0]).expect("bind the listen address");
    let backends: Arc<Vec<SocketAddr>> = Arc::new(
        args[1..]
            .iter()
            .map(|a| a.parse().expect("a backend is IP:PORT"))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    println!("listening on {}", listener.local_addr().unwrap());
    std::io::stdout().flush().ok();
    for inbound in listener.incoming() {
        let Ok(inbound) = inbound else { continue };
        let (backends, next) = (backends.clone(), next.clone());
        thread::spawn(move || {
            let start = next.fetch_add(1, Ordering::Relaxed);
            for k in 0..backends.len() {
                let b = backends[(start + k) % backends.len()];
                if let Ok(out) = TcpStream::connect(b) {
                    pipe(inbound, out);
                    return;
                }
            }
        });
    }
}

/// Copy both ways until each side closes. `io::copy` between two sockets
/// uses splice(2) on Linux, so the bytes never enter this process.
fn pipe(a: TcpStream, b: TcpStream) {
    // Small request/response exchanges (manifest GETs) must not wait for
    // Nagle's timer on the extra hop.
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let (mut a2, mut b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(x), Ok(y)) => (x, y),
        _ => return,
    };
    let up = thread::spawn(move || {
        let mut a = a;
        let mut b = b;
        let _ = std::io::copy(&mut a, &mut b);
        let _ = b.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut b2, &mut a2);
    let _ = a2.shutdown(Shutdown::Write);
    let _ = up.join();
}
