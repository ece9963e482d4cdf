//! Import jobs in the metadata store, on both backends: a node writes a
//! job's status with its heartbeat; any handle reads it back, lists jobs
//! newest first, asks for a stop (seen by the runner at its next write),
//! and old finished jobs are pruned. PostgreSQL skips without it, except
//! under CI.

use std::sync::Arc;
use storage::{Meta, MetadataStorage};

/// A backend's name, two handles on one store (two nodes on
/// PostgreSQL), and the directory SQLite's lives in.
type TwoHandles = (
    &'static str,
    Arc<dyn Meta>,
    Arc<dyn Meta>,
    tempfile::TempDir,
);

fn stores() -> Vec<TwoHandles> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let a = MetadataStorage::Sqlite.open_meta(dir.path()).unwrap();
    let b = MetadataStorage::Sqlite.open_meta(dir.path()).unwrap();
    out.push(("sqlite", a, b, dir));
    if let Some(cluster) = storage::testing::shared_cluster() {
        let m = MetadataStorage::from_url(&cluster.fresh_database()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let a = m.open_meta(dir.path()).unwrap();
        let b = m.open_meta(dir.path()).unwrap();
        out.push(("postgres", a, b, dir));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_written_by_one_node_is_read_by_another() {
    for (backend, a, b, _dir) in stores() {
        let (j1, j2, j3) = (
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        );
        assert!(b.import_job(j1).await.unwrap().is_none(), "{backend}");
        assert!(
            !a.save_import_job(j1, 10, r#"{"state":"running"}"#.into(), false, 100)
                .await
                .unwrap()
        );
        let got = b.import_job(j1).await.unwrap().expect("stored");
        assert_eq!(got.status, r#"{"state":"running"}"#, "{backend}");
        assert!(!got.finished && !got.cancel_requested);
        assert_eq!(got.heartbeat, 100);

        // Another node asks for a stop; the runner learns it at its next
        // write, and the stored request stays until the job finishes.
        assert!(b.request_import_cancel(j1).await.unwrap(), "{backend}");
        assert!(!b.request_import_cancel(uuid::Uuid::new_v4()).await.unwrap());
        assert!(
            a.save_import_job(j1, 999, r#"{"state":"running","n":2}"#.into(), false, 200)
                .await
                .unwrap()
        );
        let got = b.import_job(j1).await.unwrap().unwrap();
        assert_eq!(got.heartbeat, 200);
        assert!(got.cancel_requested);
        a.save_import_job(j1, 10, r#"{"state":"cancelled"}"#.into(), true, 300)
            .await
            .unwrap();
        assert!(
            !b.request_import_cancel(j1).await.unwrap(),
            "{backend}: a finished job cannot be stopped"
        );

        a.save_import_job(j2, 20, "{}".into(), true, 20)
            .await
            .unwrap();
        a.save_import_job(j3, 30, "{}".into(), false, 30)
            .await
            .unwrap();
        // Newest first, by the first write's time (the later 999 did not
        // move j1).
        let ids: Vec<_> = b
            .import_jobs(10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, vec![j3, j2, j1], "{backend}");
        assert_eq!(b.import_jobs(1).await.unwrap()[0].id, j3);

        // Pruning keeps the newest and every unfinished job.
        assert_eq!(a.prune_import_jobs(1).await.unwrap(), 2, "{backend}");
        let ids: Vec<_> = b
            .import_jobs(10)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, vec![j3]);
        a.save_import_job(j2, 40, "{}".into(), false, 40)
            .await
            .unwrap();
        assert_eq!(a.prune_import_jobs(0).await.unwrap(), 0, "{backend}");
        assert_eq!(b.import_jobs(10).await.unwrap().len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_job_is_rewritten_finished_unless_its_node_wrote_again() {
    for (backend, a, b, _dir) in stores() {
        let (silent, alive, done) = (
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        );
        a.save_import_job(silent, 1, "running".into(), false, 100)
            .await
            .unwrap();
        a.save_import_job(alive, 2, "running".into(), false, 900)
            .await
            .unwrap();
        a.save_import_job(done, 3, "succeeded".into(), true, 100)
            .await
            .unwrap();
        let found: Vec<uuid::Uuid> = b
            .silent_import_jobs(500)
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(found, vec![silent], "{backend}");

        // Its node wrote again after the job was judged silent: the
        // rewrite is refused and the row stays as the node wrote it.
        a.save_import_job(silent, 1, "running, later".into(), false, 150)
            .await
            .unwrap();
        assert!(
            !b.finish_silent_import_job(silent, 100, "failed".into())
                .await
                .unwrap(),
            "{backend}"
        );
        let row = b.import_job(silent).await.unwrap().unwrap();
        assert_eq!(
            (row.status.as_str(), row.finished),
            ("running, later", false)
        );

        // Still silent at that heartbeat: the row itself becomes finished.
        assert!(
            b.finish_silent_import_job(silent, 150, "failed".into())
                .await
                .unwrap(),
            "{backend}"
        );
        let row = a.import_job(silent).await.unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.finished), ("failed", true));
        assert_eq!(row.heartbeat, 150);
        assert!(b.silent_import_jobs(500).await.unwrap().is_empty());
        // Once only: a second node finds it finished.
        assert!(
            !a.finish_silent_import_job(silent, 150, "failed".into())
                .await
                .unwrap()
        );
        // A finished job is never rewritten.
        assert!(
            !b.finish_silent_import_job(done, 100, "failed".into())
                .await
                .unwrap()
        );
    }
}
