//! `Meta::lead`: on one PostgreSQL database two contenders (two nodes)
//! stand for a duty; exactly one leads. When the leader gives up (its
//! `Leadership` dropped) or its connection dies (its node killed), the
//! other leads within the retry period. Duties are independent. SQLite
//! always leads (one host). PostgreSQL cases skip without PostgreSQL,
//! except under CI.

use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{Duty, Leadership, Meta, MetadataStorage};

const RETRY: Duration = Duration::from_millis(200);
/// How long a takeover may take here: a few retry periods, with room for
/// a loaded machine (the time taken is printed).
const TAKEOVER: Duration = Duration::from_secs(5);

/// Two handles on one fresh database (two nodes), and its URL.
type TwoNodes = (Arc<dyn Meta>, Arc<dyn Meta>, String);

fn two_nodes() -> Option<TwoNodes> {
    let cluster = storage::testing::shared_cluster()?;
    let url = cluster.fresh_database();
    let m = MetadataStorage::from_url(&url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    Some((
        m.open_meta(dir.path()).unwrap(),
        m.open_meta(dir.path()).unwrap(),
        url,
    ))
}

/// Wait until `f` holds, at most `within`.
async fn until(within: Duration, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Exactly one of the two leads, and goes on doing so for a while.
async fn exactly_one(a: &Leadership, b: &Leadership) {
    until(Duration::from_secs(10), "a leader", || {
        a.is_leader() || b.is_leader()
    })
    .await;
    for _ in 0..(3 * RETRY.as_millis() / 20) {
        assert!(
            a.is_leader() ^ b.is_leader(),
            "a {} b {}",
            a.is_leader(),
            b.is_leader()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leads_and_the_other_takes_over_when_it_gives_up() {
    let Some((a, b, _)) = two_nodes() else { return };
    let la = a.lead(Duty::Gc, RETRY);
    let lb = b.lead(Duty::Gc, RETRY);
    exactly_one(&la, &lb).await;
    let (leader, follower) = if la.is_leader() { (la, lb) } else { (lb, la) };
    drop(leader);
    // The follower tries once per retry period.
    let started = Instant::now();
    until(TAKEOVER, "the follower leads", || follower.is_leader()).await;
    eprintln!("taken over in {:?}", started.elapsed());

    // Another duty has a leader of its own: the follower of one may
    // lead the other.
    let other = a.lead(Duty::VulndbUpdate, RETRY);
    until(Duration::from_secs(5), "a vulndb leader", || {
        other.is_leader()
    })
    .await;
    assert!(follower.is_leader());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_connection_dies_is_replaced() {
    let Some((a, b, url)) = two_nodes() else {
        return;
    };
    let la = a.lead(Duty::Gc, RETRY);
    let lb = b.lead(Duty::Gc, RETRY);
    exactly_one(&la, &lb).await;
    let (leader, follower) = if la.is_leader() {
        (&la, &lb)
    } else {
        (&lb, &la)
    };
    // Its node dies: PostgreSQL ends the session and drops its lock.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let killed = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND objid = 1 \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "one session held the GC lead");
    let started = Instant::now();
    until(TAKEOVER, "the follower leads", || follower.is_leader()).await;
    // The old leader notices at its next check and steps down.
    until(TAKEOVER, "the old leader steps down", || {
        !leader.is_leader()
    })
    .await;
    eprintln!("taken over in {:?}", started.elapsed());
    exactly_one(&la, &lb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_always_leads() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetadataStorage::Sqlite.open_meta(dir.path()).unwrap();
    let a = meta.lead(Duty::Gc, RETRY);
    let b = meta.lead(Duty::Gc, RETRY);
    assert!(a.is_leader() && b.is_leader());
    assert_eq!(a.duty(), Duty::Gc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_leads_nothing() {
    let Some((a, _b, _)) = two_nodes() else {
        return;
    };
    let la = a.lead(Duty::WebhookDelivery, RETRY);
    until(Duration::from_secs(10), "a leader", || la.is_leader()).await;
    // The store's runtime goes with it, and the task that kept the lead.
    drop(a);
    until(Duration::from_secs(5), "no lead without a store", || {
        !la.is_leader()
    })
    .await;
}
