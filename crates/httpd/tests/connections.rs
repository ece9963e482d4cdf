//! Deadlines, the connection cap, shutdown and the peer address, over
//! real loopback sockets.

mod support;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::{get, put};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{Server, closed_after, config, read_response};
use tokio::io::AsyncWriteExt;

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        // 24 chunks of 64 KiB, one every 100 ms.
        .route(
            "/slow-download",
            get(|| async {
                let chunks = futures::stream::unfold(0u32, |i| async move {
                    if i == 24 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((
                        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 65536])),
                        i + 1,
                    ))
                });
                Body::from_stream(chunks)
            }),
        )
        .route(
            "/slow-handler",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(2000)).await;
                "done"
            }),
        )
        .route(
            "/upload",
            put(|body: Body| async move {
                let mut body = body.into_data_stream();
                let mut n = 0usize;
                while let Some(chunk) = futures::StreamExt::next(&mut body).await {
                    n += chunk.map_err(|_| "body error")?.len();
                }
                Ok::<_, &'static str>(n.to_string())
            }),
        )
}

#[tokio::test]
async fn a_stalled_request_head_is_closed_after_the_header_timeout() {
    let srv = Server::start(app(), config(400, 30_000, 100)).await;

    let t0 = std::time::Instant::now();
    // Half a head, then nothing.
    let mut half = srv.connect().await;
    half.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // A connection that never sends a byte.
    let mut silent = srv.connect().await;
    // A keep-alive connection that served a request, then starts another
    // head and stalls: the header deadline applies, not the idle one.
    let mut later = srv.connect().await;
    assert_eq!(support::get(&mut later, "/").await.body, b"hello");
    later.write_all(b"GET / HT").await.unwrap();

    for (what, s) in [
        ("half head", &mut half),
        ("silent", &mut silent),
        ("second head", &mut later),
    ] {
        closed_after(s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what}: still open after 5 s"));
        let after = t0.elapsed();
        assert!(
            after >= Duration::from_millis(250),
            "{what}: closed too early ({after:?})"
        );
    }

    // A complete request on a fresh connection is still answered.
    let mut ok = srv.connect().await;
    assert_eq!(support::get(&mut ok, "/").await.status, 200);
}

#[tokio::test]
async fn idle_keep_alive_is_closed_but_active_transfers_are_not() {
    let srv = Arc::new(Server::start(app(), config(5_000, 500, 100)).await);

    let mut idle = srv.connect().await;
    assert_eq!(support::get(&mut idle, "/").await.body, b"hello");

    // A download that takes ~2.4 s, more than four idle timeouts.
    let download = tokio::spawn({
        let srv = srv.clone();
        async move {
            let mut s = srv.connect().await;
            let r = support::get(&mut s, "/slow-download").await;
            assert_eq!(r.body.len(), 24 * 65536);
            // The connection is still usable after it.
            assert_eq!(support::get(&mut s, "/").await.body, b"hello");
        }
    });
    // An upload that sends 16 KiB every 100 ms for ~2.4 s.
    let upload = tokio::spawn({
        let srv = srv.clone();
        async move {
            let mut s = srv.connect().await;
            let total = 24 * 16384;
            s.write_all(
                format!("PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            for _ in 0..24 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                s.write_all(&[b'y'; 16384]).await.unwrap();
            }
            let r = read_response(&mut s).await;
            assert_eq!((r.status, r.body), (200, total.to_string().into_bytes()));
        }
    });
    // A handler that works for 2 s before answering: the request is in
    // flight, so the idle deadline does not apply.
    let slow = tokio::spawn({
        let srv = srv.clone();
        async move {
            let mut s = srv.connect().await;
            assert_eq!(support::get(&mut s, "/slow-handler").await.body, b"done");
        }
    });

    let after = closed_after(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection stays open");
    assert!(
        after >= Duration::from_millis(400),
        "idle connection closed too early ({after:?})"
    );
    download.await.unwrap();
    upload.await.unwrap();
    slow.await.unwrap();
}

#[tokio::test]
async fn an_upload_that_stops_sending_is_cut_after_the_idle_timeout() {
    let srv = Server::start(app(), config(5_000, 500, 100)).await;
    let mut s = srv.connect().await;
    s.write_all(b"PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nsome bytes")
        .await
        .unwrap();
    let after = closed_after(&mut s, Duration::from_secs(5))
        .await
        .expect("a stalled upload is never cut");
    assert!(
        after >= Duration::from_millis(400),
        "cut too early ({after:?})"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    const N: usize = 2;
    let current = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let counting = {
        let (current, most) = (current.clone(), most.clone());
        get(move || async move {
            let now = current.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            current.fetch_sub(1, Ordering::SeqCst);
            "counted"
        })
    };
    let srv =
        Arc::new(Server::start(app().route("/count", counting), config(30_000, 30_000, N)).await);

    // N idle keep-alive connections hold every slot.
    let mut held = Vec::new();
    for _ in 0..N {
        let mut s = srv.connect().await;
        assert_eq!(support::get(&mut s, "/").await.status, 200);
        held.push(s);
    }
    // Connection N+1 connects (the kernel queues it) but is not served…
    let mut extra = srv.connect().await;
    extra
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(700), read_response(&mut extra)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    // …until one of the others closes.
    drop(held.pop());
    let r = tokio::time::timeout(Duration::from_secs(5), read_response(&mut extra))
        .await
        .expect("the queued connection is served once a slot frees");
    assert_eq!(r.body, b"hello");
    drop(held);
    drop(extra);

    // Many clients at once: never more than N in the handler together.
    let clients: Vec<_> = (0..4 * N)
        .map(|_| {
            let srv = srv.clone();
            tokio::spawn(async move {
                let mut s = srv.connect().await;
                s.write_all(b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                read_response(&mut s).await.body
            })
        })
        .collect();
    for c in clients {
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(20), c)
                .await
                .expect("every client is served in time")
                .unwrap(),
            b"counted"
        );
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        (1..=N).contains(&most),
        "{most} connections served at once, cap {N}"
    );
}

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let srv = Server::start(app(), config(5_000, 5_000, 10)).await;
    let mut s = srv.connect().await;
    let me = s.local_addr().unwrap();
    let r = support::get(&mut s, "/peer").await;
    assert_eq!(String::from_utf8(r.body).unwrap(), me.to_string());
}

/// Send `head` (ignoring a write the server cuts short) and read the
/// status it answers with.
async fn status_of_head(srv: &Server, head: Vec<u8>) -> u16 {
    let s = srv.connect().await;
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&head).await;
        wr
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::io::AsyncReadExt::read(&mut rd, &mut chunk)
            .await
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    drop(writer);
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let srv = Server::start(app(), config(5_000, 5_000, 10)).await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    assert_eq!(status_of_head(&srv, huge.into_bytes()).await, 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(status_of_head(&srv, many.into_bytes()).await, 431);
    // A normal request on a new connection is still served.
    let mut s = srv.connect().await;
    assert_eq!(support::get(&mut s, "/").await.status, 200);
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_and_stops_accepting() {
    let mut srv = Server::start(app(), config(5_000, 30_000, 10)).await;
    let mut busy = srv.connect().await;
    busy.write_all(b"GET /slow-handler HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut idle = srv.connect().await;
    assert_eq!(support::get(&mut idle, "/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.stop();
    // The idle connection goes at once; the busy one gets its answer.
    assert!(
        closed_after(&mut idle, Duration::from_secs(1))
            .await
            .is_some(),
        "idle connection kept open during shutdown"
    );
    assert_eq!(read_response(&mut busy).await.body, b"done");
    let task = &mut srv.task;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns once the requests are done")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(srv.addr).await.is_err());
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let (soft, hard) = httpd::raise_nofile_limit();
    assert_eq!(soft, hard);
    assert_eq!(httpd::nofile_limit(), (soft, hard));
    assert_eq!(httpd::connection_cap(1024), 768);
    assert_eq!(httpd::connection_cap(300), 150);
    assert_eq!(httpd::connection_cap(1 << 20), 10_000);
    assert_eq!(httpd::connection_cap(u64::MAX), 10_000);
}
