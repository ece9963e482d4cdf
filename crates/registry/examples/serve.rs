//! The registry alone, for profiling the blob paths without the rest of
//! drydock (`drydock serve` adds assessment, the API and the dashboard):
//!
//!     serve DATA_DIR ADDR
//!
//! `SERVE_MALLOPT=1` applies the glibc tuning `drydock serve` used to.

use axum::serve::ListenerExt;
use registry::{Options, Registry};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var("SERVE_MALLOPT").is_ok_and(|v| v == "1") {
        // SAFETY: mallopt only adjusts allocator parameters.
        unsafe {
            libc_mallopt(-3, 32 << 20); // M_MMAP_THRESHOLD
            libc_mallopt(-1, 64 << 20); // M_TRIM_THRESHOLD
            libc_mallopt(-2, 16 << 20); // M_TOP_PAD
        }
    }
    let reg = Registry::open(Options::new(&args[1])).expect("open registry");
    let listener = tokio::net::TcpListener::bind(&args[2])
        .await
        .expect("bind")
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    axum::serve(listener, reg.router()).await.expect("serve");
}

unsafe extern "C" {
    #[link_name = "mallopt"]
    fn libc_mallopt(param: i32, value: i32) -> i32;
}
