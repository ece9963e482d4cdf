//! `UploadSessions`: the upload session table in the metadata store, on
//! SQLite and on PostgreSQL (two handles on one database, as two nodes
//! have). A save is a compare-and-swap on the revision its writer
//! resumed from: a save after another writer's, or after the session
//! was deleted (cancelled, expired), fails with a typed error and
//! changes nothing, and a deleted session never comes back. PostgreSQL
//! cases skip without PostgreSQL, except under CI.

use std::sync::Arc;
use storage::{MetadataStorage, UploadCasError, UploadSessions};
use uuid::Uuid;

/// Two handles on one store (two nodes, or two requests of one), kept
/// with what keeps the store alive.
struct Two {
    a: Arc<dyn UploadSessions>,
    b: Arc<dyn UploadSessions>,
    _dir: tempfile::TempDir,
}

fn open(m: &MetadataStorage) -> Two {
    let dir = tempfile::tempdir().unwrap();
    let (_, a) = m.open_meta_and_uploads(dir.path()).unwrap();
    let (_, b) = m.open_meta_and_uploads(dir.path()).unwrap();
    Two { a, b, _dir: dir }
}

fn sqlite() -> Two {
    open(&MetadataStorage::Sqlite)
}

fn postgres() -> Option<Two> {
    let cluster = storage::testing::shared_cluster()?;
    Some(open(
        &MetadataStorage::from_url(&cluster.fresh_database()).unwrap(),
    ))
}

/// Create, read, save in turn, a stale save refused, delete: the same
/// answers on every backend.
async fn compare_and_swap(t: &Two) {
    let (a, b) = (&t.a, &t.b);
    let id = Uuid::new_v4();
    let created = a.create(id, "lib/app", "alice", b"s0").await.unwrap();
    assert_eq!((created.revision, created.offset), (0, 0));
    let seen = b.get(&id).await.unwrap().expect("the other node sees it");
    assert_eq!(seen.repo, "lib/app");
    assert_eq!(seen.owner, "alice");
    assert_eq!(seen.state, b"s0");

    // Both resumed revision 0; the first save wins.
    assert_eq!(a.save(&id, 0, 10, b"s1").await.unwrap(), 1);
    match b.save(&id, 0, 20, b"lost").await {
        Err(UploadCasError::Conflict) => {}
        other => panic!("a stale save: {other:?}"),
    }
    let now = b.get(&id).await.unwrap().unwrap();
    assert_eq!((now.revision, now.offset), (1, 10));
    assert_eq!(now.state, b"s1");
    assert!(now.updated_ms >= created.updated_ms);

    // The loser resumes the new revision and goes on.
    assert_eq!(b.save(&id, 1, 20, b"s2").await.unwrap(), 2);
    assert_eq!(a.list().await.unwrap().len(), 1);

    // Ending at a revision that moved on is refused and keeps the row.
    match a.delete_at(&id, 1).await {
        Err(UploadCasError::Conflict) => {}
        other => panic!("a stale delete: {other:?}"),
    }
    assert!(a.get(&id).await.unwrap().is_some());

    // Cancelled on one node while the other still writes: its save is
    // refused as gone and does not bring the session back.
    let gone = a.delete(&id).await.unwrap().expect("it was there");
    assert_eq!((gone.revision, gone.offset), (2, 20));
    match b.save(&id, 2, 30, b"s3").await {
        Err(UploadCasError::Gone) => {}
        other => panic!("a save after a cancel: {other:?}"),
    }
    assert!(a.get(&id).await.unwrap().is_none());
    assert!(b.get(&id).await.unwrap().is_none());
    assert!(b.list().await.unwrap().is_empty());
    assert!(matches!(
        b.delete_at(&id, 2).await,
        Err(UploadCasError::Gone)
    ));
    assert!(a.delete(&id).await.unwrap().is_none());

    // A delete at the current revision ends it.
    let id2 = Uuid::new_v4();
    a.create(id2, "lib/app", "bob", b"x").await.unwrap();
    assert_eq!(a.save(&id2, 0, 5, b"y").await.unwrap(), 1);
    assert_eq!(b.delete_at(&id2, 1).await.unwrap().state, b"y");
    assert!(a.get(&id2).await.unwrap().is_none());
}

/// Many writers race from one revision: exactly one save lands.
async fn one_winner(t: &Two) {
    let id = Uuid::new_v4();
    t.a.create(id, "r", "o", b"").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let s = if i % 2 == 0 { t.a.clone() } else { t.b.clone() };
        tasks.push(tokio::spawn(async move {
            s.save(&id, 0, i, format!("w{i}").as_bytes()).await
        }));
    }
    let mut won = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(rev) => won.push((i as u64, rev)),
            Err(UploadCasError::Conflict) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let (i, rev) = won[0];
    let row = t.b.get(&id).await.unwrap().unwrap();
    assert_eq!((row.revision, row.offset), (rev, i));
    assert_eq!(row.state, format!("w{i}").as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_saves_are_compare_and_swap() {
    let t = sqlite();
    compare_and_swap(&t).await;
    one_winner(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_saves_are_compare_and_swap() {
    let Some(t) = postgres() else { return };
    compare_and_swap(&t).await;
    one_winner(&t).await;
}

/// The table is part of the schema an existing `meta.db` migrates to,
/// and sessions survive reopening the store (a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_outlive_the_store_handle() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::new_v4();
    {
        let (_, s) = MetadataStorage::Sqlite
            .open_meta_and_uploads(dir.path())
            .unwrap();
        s.create(id, "r", "o", b"st").await.unwrap();
        s.save(&id, 0, 7, b"st2").await.unwrap();
    }
    let (_, s) = MetadataStorage::Sqlite
        .open_meta_and_uploads(dir.path())
        .unwrap();
    let row = s.get(&id).await.unwrap().unwrap();
    assert_eq!((row.revision, row.offset), (1, 7));
    assert_eq!(row.state, b"st2");
}
