//! `Meta::cluster_lock` on two handles of one PostgreSQL database (two
//! nodes): GC's shared and exclusive sides exclude each other, upload
//! locks are per session, a lock whose holder's connection dies is
//! released, and a request abandoned while it waits leaves nothing held.
//! SQLite has no cluster lock (`None`: its file lock serves). PostgreSQL
//! cases skip without PostgreSQL, except under CI.

use std::sync::Arc;
use std::time::Duration;
use storage::{ClusterLock, Meta, MetaLock, MetadataStorage};

/// Two handles on one fresh database, and its URL.
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

fn take(meta: &Arc<dyn Meta>, l: ClusterLock) -> tokio::task::JoinHandle<MetaLock> {
    let meta = meta.clone();
    tokio::spawn(async move { meta.cluster_lock(l).await.unwrap().expect("a cluster lock") })
}

/// Whether `h` is still waiting after a while.
async fn waits(h: &tokio::task::JoinHandle<MetaLock>) -> bool {
    tokio::time::sleep(Duration::from_millis(400)).await;
    !h.is_finished()
}

async fn granted(h: tokio::task::JoinHandle<MetaLock>) -> MetaLock {
    tokio::time::timeout(Duration::from_secs(10), h)
        .await
        .expect("the lock was granted")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_sides_exclude_each_other_across_nodes() {
    let Some((a, b, _)) = two_nodes() else { return };
    let a_shared = granted(take(&a, ClusterLock::GcShared)).await;
    let b_shared = granted(take(&b, ClusterLock::GcShared)).await;
    let gc = take(&b, ClusterLock::GcExclusive);
    assert!(waits(&gc).await, "GC ran while commits held the lock");
    drop(a_shared);
    assert!(waits(&gc).await, "GC ran while a commit held the lock");
    drop(b_shared);
    let gc = granted(gc).await;
    let commit = take(&a, ClusterLock::GcShared);
    assert!(waits(&commit).await, "a commit ran during GC");
    drop(gc);
    granted(commit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_locks_are_per_session() {
    let Some((a, b, _)) = two_nodes() else { return };
    let (s1, s2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let held = granted(take(&a, ClusterLock::Upload(s1))).await;
    // Another session, and GC, are not held up by it.
    let other = granted(take(&b, ClusterLock::Upload(s2))).await;
    let gc = granted(take(&b, ClusterLock::GcExclusive)).await;
    drop((other, gc));
    let same = take(&b, ClusterLock::Upload(s1));
    assert!(
        waits(&same).await,
        "two requests of one session ran at once"
    );
    drop(held);
    granted(same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_lock_is_released() {
    let Some((a, b, url)) = two_nodes() else {
        return;
    };
    let held = granted(take(&a, ClusterLock::GcExclusive)).await;
    let waiting = take(&b, ClusterLock::GcShared);
    assert!(waits(&waiting).await);
    // The holder's connection dies (as with its node): PostgreSQL drops
    // its session locks. `held` is never dropped here.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let killed = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1);
    granted(waiting).await;
    std::mem::forget(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_abandoned_while_it_waits_holds_nothing() {
    let Some((a, b, _)) = two_nodes() else { return };
    let held = granted(take(&a, ClusterLock::GcExclusive)).await;
    // A caller gives up waiting (a client went away): its request is
    // granted later on the store's runtime and must be released then.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        b.cluster_lock(ClusterLock::GcShared),
    )
    .await;
    assert!(gave_up.is_err(), "granted while GC held the lock");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    granted(take(&a, ClusterLock::GcExclusive)).await;
}

#[tokio::test]
async fn sqlite_has_no_cluster_lock() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetadataStorage::Sqlite.open_meta(dir.path()).unwrap();
    assert!(
        meta.cluster_lock(ClusterLock::GcExclusive)
            .await
            .unwrap()
            .is_none()
    );
}
