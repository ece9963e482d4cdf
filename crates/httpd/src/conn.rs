//! One connection: optional TLS handshake, hyper's HTTP/1.1 or HTTP/2, and
//! a watchdog that applies the header and idle deadlines.
//!
//! hyper's own HTTP/1 `header_read_timeout` is not used: it also runs
//! between keep-alive requests, so it would close every idle connection at
//! the header deadline instead of the idle one. The watchdog instead reads
//! what the connection is doing from [`ConnState`], which the IO wrapper,
//! the request body wrapper and the in-flight guard keep up to date.

use crate::Stop;
use crate::tls::Acceptor;
use axum::extract::ConnectInfo;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};

/// After an idle connection was asked to close gracefully, how long it may
/// take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
}

/// What every connection shares.
pub(crate) struct Shared {
    app: axum::Router,
    timeouts: Timeouts,
    builder: auto::Builder<TokioExecutor>,
}

impl Shared {
    pub(crate) fn new(app: axum::Router, timeouts: Timeouts) -> Shared {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Request heads are bounded: hyper's HTTP/1 read buffer (about
        // 400 KiB) and at most 100 header fields, else 431; HTTP/2 header
        // lists at most 64 KiB.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_headers(100)
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(64 << 10);
        Shared {
            app,
            timeouts,
            builder,
        }
    }
}

/// Serve one accepted connection; `_permit` is its slot under the cap.
pub(crate) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<Acceptor>,
    mut stop: watch::Receiver<Stop>,
    _permit: OwnedSemaphorePermit,
) {
    let state = Arc::new(ConnState::new());
    let io = ActivityIo {
        inner: tcp,
        state: state.clone(),
        sniffed: tls.is_some(),
    };
    let Some(tls) = tls else {
        return serve_io(io, peer, &shared, state, stop).await;
    };
    let handshake = tokio::time::timeout(shared.timeouts.header, tls.inner.accept(io));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stop.wait_for(|s| *s != Stop::Running) => return,
    };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        state.h2.store(true, Relaxed);
    }
    // The header deadline of the first request runs from here.
    state.idle_since.store(state.now(), Relaxed);
    serve_io(stream, peer, &shared, state, stop).await
}

async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    shared: &Shared,
    state: Arc<ConnState>,
    mut stop: watch::Receiver<Stop>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let state = state.clone();
        let app = shared.app.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let flight = Flight::start(&state);
            let mut app = app.clone();
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = WatchedBody {
                inner: body,
                state: state.clone(),
                waiting: false,
            };
            let req = hyper::Request::from_parts(parts, body);
            async move {
                let resp = tower::Service::call(&mut app, req).await?;
                Ok::<_, Infallible>(resp.map(|inner| FlightBody {
                    inner,
                    _flight: flight,
                }))
            }
        })
    };
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let t = shared.timeouts;
    // Check a few times per deadline, never busier than every 5 ms nor
    // lazier than every second.
    let tick = (t.header.min(t.idle) / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Asked to finish (idle close or server shutdown)?
    let mut graceful_sent = false;
    let mut idle_close_since: Option<Instant> = None;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = ticker.tick() => match state.verdict(t) {
                Verdict::Keep => idle_close_since = None,
                Verdict::Close(why) => {
                    tracing::debug!(%peer, why, "closing connection");
                    return;
                }
                Verdict::Idle => match idle_close_since {
                    None => {
                        tracing::debug!(%peer, "closing idle connection");
                        if !graceful_sent {
                            conn.as_mut().graceful_shutdown();
                            graceful_sent = true;
                        }
                        idle_close_since = Some(Instant::now());
                    }
                    Some(since) if since.elapsed() >= CLOSE_GRACE => return,
                    Some(_) => {}
                },
            },
            changed = stop.changed() => {
                let now = *stop.borrow_and_update();
                if changed.is_err() || now == Stop::Now {
                    return;
                }
                if now == Stop::Graceful && !graceful_sent {
                    // Requests in flight run on; hyper closes when they end.
                    conn.as_mut().graceful_shutdown();
                    graceful_sent = true;
                }
            }
        }
    }
}

/// What the watchdog decides on a tick.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// Ask the connection to close (HTTP/2: GOAWAY), drop it if it lingers.
    Idle,
    /// Drop it now.
    Close(&'static str),
}

/// What a connection is doing, as seen by the watchdog. Times are
/// milliseconds since `epoch`.
struct ConnState {
    epoch: Instant,
    /// Last byte read or written.
    last_io: AtomicU64,
    /// When the last request ended (or the connection started).
    idle_since: AtomicU64,
    /// First byte read while no request was in flight, plus one; 0: none.
    head_started: AtomicU64,
    in_flight: AtomicUsize,
    served: AtomicU64,
    /// Request bodies whose handler waits for bytes from the peer.
    body_waiting: AtomicUsize,
    /// The last write (or flush) could not proceed: the peer is not reading.
    write_blocked: AtomicBool,
    /// HTTP/2: control frames may arrive between requests, so bytes while
    /// idle do not start a header deadline.
    h2: AtomicBool,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            epoch: Instant::now(),
            last_io: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            body_waiting: AtomicUsize::new(0),
            write_blocked: AtomicBool::new(false),
            h2: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn on_read(&self) {
        let now = self.now();
        self.last_io.store(now, Relaxed);
        if self.in_flight.load(Relaxed) == 0 {
            let _ = self
                .head_started
                .compare_exchange(0, now + 1, Relaxed, Relaxed);
        }
    }

    fn on_write(&self) {
        self.last_io.store(self.now(), Relaxed);
        self.write_blocked.store(false, Relaxed);
    }

    fn verdict(&self, t: Timeouts) -> Verdict {
        let now = self.now();
        let since = |ms: u64| Duration::from_millis(now.saturating_sub(ms));
        if self.in_flight.load(Relaxed) > 0 {
            let waiting_on_peer =
                self.write_blocked.load(Relaxed) || self.body_waiting.load(Relaxed) > 0;
            if waiting_on_peer && since(self.last_io.load(Relaxed)) >= t.idle {
                return Verdict::Close("request stalled on the peer");
            }
            return Verdict::Keep;
        }
        let idle_since = self.idle_since.load(Relaxed);
        if self.served.load(Relaxed) == 0 {
            if since(idle_since) >= t.header {
                return Verdict::Close("no request head within the header timeout");
            }
            return Verdict::Keep;
        }
        let head = self.head_started.load(Relaxed);
        if head != 0 && !self.h2.load(Relaxed) {
            if since(head - 1) >= t.header {
                return Verdict::Close("request head not complete within the header timeout");
            }
            return Verdict::Keep;
        }
        if since(idle_since) >= t.idle {
            return Verdict::Idle;
        }
        Verdict::Keep
    }
}

/// A request from its head until its response body is done (or dropped).
struct Flight {
    state: Arc<ConnState>,
}

impl Flight {
    fn start(state: &Arc<ConnState>) -> Flight {
        state.in_flight.fetch_add(1, Relaxed);
        state.served.fetch_add(1, Relaxed);
        state.head_started.store(0, Relaxed);
        Flight {
            state: state.clone(),
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if self.state.in_flight.fetch_sub(1, Relaxed) == 1 {
            self.state.idle_since.store(self.state.now(), Relaxed);
            self.state.head_started.store(0, Relaxed);
        }
    }
}

/// The response body; ends the request's flight when hyper drops it.
struct FlightBody<B> {
    inner: B,
    _flight: Flight,
}

impl<B: Body + Unpin> Body for FlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body; tells the watchdog while the handler waits on it.
struct WatchedBody {
    inner: Incoming,
    state: Arc<ConnState>,
    waiting: bool,
}

impl WatchedBody {
    fn set_waiting(&mut self, waiting: bool) {
        if waiting != self.waiting {
            self.waiting = waiting;
            if waiting {
                self.state.body_waiting.fetch_add(1, Relaxed);
            } else {
                self.state.body_waiting.fetch_sub(1, Relaxed);
            }
        }
    }
}

impl Body for WatchedBody {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        self.set_waiting(r.is_pending());
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

/// The socket, recording when bytes move.
struct ActivityIo<S> {
    inner: S,
    state: Arc<ConnState>,
    /// Whether the first bytes were looked at for the HTTP/2 preface.
    sniffed: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let got = &buf.filled()[before..];
            if !got.is_empty() {
                if !self.sniffed {
                    const PREFACE: &[u8] = b"PRI * HTTP/2.0";
                    let n = got.len().min(PREFACE.len());
                    if got[..n] == PREFACE[..n] {
                        self.state.h2.store(true, Relaxed);
                    }
                    self.sniffed = true;
                }
                self.state.on_read();
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ActivityIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if r.is_pending() {
            self.state.write_blocked.store(true, Relaxed);
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> ActivityIo<S> {
    fn note_write(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => self.state.on_write(),
            Poll::Pending => self.state.write_blocked.store(true, Relaxed),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_millis(100),
        idle: Duration::from_millis(300),
    };

    fn aged(state: &ConnState, ms: u64) {
        // Pretend `ms` passed by moving every stamp back.
        for a in [&state.last_io, &state.idle_since] {
            a.store(a.load(Relaxed).saturating_sub(ms), Relaxed);
        }
        let h = state.head_started.load(Relaxed);
        if h > 0 {
            state
                .head_started
                .store((h - 1).saturating_sub(ms) + 1, Relaxed);
        }
    }

    fn state_at(offset_ms: u64) -> ConnState {
        let s = ConnState::new();
        // Start the epoch in the past so stamps can move back.
        let s = ConnState {
            epoch: s.epoch - Duration::from_millis(offset_ms),
            ..s
        };
        let now = s.now();
        s.last_io.store(now, Relaxed);
        s.idle_since.store(now, Relaxed);
        s
    }

    #[test]
    fn deadlines_follow_what_the_connection_does() {
        let s = state_at(10_000);
        assert_eq!(s.verdict(T), Verdict::Keep);
        aged(&s, 150);
        assert!(matches!(s.verdict(T), Verdict::Close(_)), "no first head");

        // A finished request: the idle deadline, not the header one.
        let s = Arc::new(state_at(10_000));
        drop(Flight::start(&s));
        assert_eq!(s.served.load(Relaxed), 1);
        aged(&s, 150);
        assert_eq!(s.verdict(T), Verdict::Keep);
        aged(&s, 200);
        assert_eq!(s.verdict(T), Verdict::Idle);

        // Bytes of a new head start the header deadline (HTTP/1 only).
        let s = state_at(10_000);
        s.served.store(1, Relaxed);
        s.on_read();
        aged(&s, 150);
        assert!(matches!(s.verdict(T), Verdict::Close(_)));
        s.h2.store(true, Relaxed);
        assert_eq!(s.verdict(T), Verdict::Keep);

        // In flight: kept while nothing waits on the peer, or bytes move.
        let s = state_at(10_000);
        s.in_flight.store(1, Relaxed);
        aged(&s, 1_000);
        assert_eq!(s.verdict(T), Verdict::Keep);
        s.body_waiting.store(1, Relaxed);
        assert!(matches!(s.verdict(T), Verdict::Close(_)));
        s.on_read();
        assert_eq!(s.verdict(T), Verdict::Keep);
    }
}
