//! Accepts connections and serves an axum Router: plain TCP or TLS,
//! timeouts, connection cap.
//!
//! [`serve`] is the one entry point. Around hyper's HTTP/1.1 and HTTP/2
//! connections (chosen per connection: ALPN under TLS, the HTTP/2 preface
//! in clear text) it adds what a server facing untrusted clients needs:
//!
//! - **A header deadline.** A connection's first request head (and under
//!   TLS the handshake) must arrive within `header_read_timeout` of the
//!   accept; a later request head within `header_read_timeout` of its first
//!   byte. Slowloris clients are closed.
//! - **An idle deadline.** A keep-alive connection with no request in
//!   flight is closed `idle_timeout` after its last request ended. A request
//!   in flight is never cut while bytes move; one stalled on its peer (an
//!   upload that stopped sending, a download the client stopped reading)
//!   for `idle_timeout` is.
//! - **A connection cap.** At most `max_connections` connections are served
//!   at once; further ones wait in the kernel's accept queue, unaccepted, so
//!   the process never runs out of file descriptors for blobs and databases.
//! - **TLS** with rustls (ring): PEM chain and key, ALPN `h2` and
//!   `http/1.1`, and the files re-read every `tls_reload_interval`; a bad
//!   new pair is logged and the old certificate keeps serving.
//! - **Graceful shutdown**: stop accepting, let requests in flight finish
//!   for up to `shutdown_timeout`, then close what is left.
//!
//! Handlers see the peer address as axum's `ConnectInfo<SocketAddr>`.

mod conn;
mod limits;
mod tls;

pub use limits::{connection_cap, nofile_limit, raise_nofile_limit};
pub use tls::TlsFiles;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// How [`serve`] treats connections.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Serve HTTPS with this certificate and key; `None` is plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Deadline for a request head (and the TLS handshake). Default 10 s.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight (or one stalled on its peer)
    /// is closed after this long. Default 75 s.
    pub idle_timeout: Duration,
    /// Connections served at once. Default: [`connection_cap`] of the
    /// current soft open-file limit.
    pub max_connections: usize,
    /// On shutdown, how long requests in flight may take to finish.
    /// Default 30 s.
    pub shutdown_timeout: Duration,
    /// How often the TLS files are checked for a new certificate.
    /// Default 5 s.
    pub tls_reload_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: connection_cap(nofile_limit().0),
            shutdown_timeout: Duration::from_secs(30),
            tls_reload_interval: Duration::from_secs(5),
        }
    }
}

/// What running connections are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Finish requests in flight, take no new ones.
    Graceful,
    /// Close now.
    Now,
}

/// How often "connection limit reached" (and accept errors) may be logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Serve `app` on `listener` until `shutdown` resolves, then drain.
///
/// Fails at once when the TLS files cannot be loaded; after that, errors
/// are per connection and only logged.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let tls = match &cfg.tls {
        Some(files) => Some(tls::Acceptor::start(
            files.clone(),
            cfg.tls_reload_interval,
        )?),
        None => None,
    };
    let max = cfg
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let conns = Arc::new(conn::Shared::new(
        app,
        conn::Timeouts {
            header: cfg.header_read_timeout,
            idle: cfg.idle_timeout,
        },
    ));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_full_log: Option<Instant> = None;
    let mut last_error_log: Option<Instant> = None;
    loop {
        // Take a slot before accepting: beyond the cap, connections stay in
        // the kernel's queue instead of holding a descriptor here.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if last_full_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    tracing::warn!(
                        max_connections = max,
                        "connection limit reached: new connections wait in the accept queue"
                    );
                    last_full_log = Some(Instant::now());
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the
                    // connection stays queued and is taken once a descriptor
                    // is free.
                    if last_error_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        tracing::error!(error = %e, "cannot accept a connection");
                        last_error_log = Some(Instant::now());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(conn::run(
            tcp,
            peer,
            conns.clone(),
            tls.clone(),
            stop_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(Stop::Graceful);
    // Every connection holds a permit until it ends.
    let all = max as u32;
    if tokio::time::timeout(cfg.shutdown_timeout, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = max - permits.available_permits(),
            "requests still running after the shutdown timeout are cut"
        );
        let _ = stop_tx.send(Stop::Now);
        let _ = tokio::time::timeout(Duration::from_secs(1), permits.acquire_many(all)).await;
    }
    Ok(())
}
