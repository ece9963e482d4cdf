//! The assessor's state on SQLite: the backend contract
//! (`assess_sqlite/contract.rs`), in-place upgrades of an `assess.db`
//! made before versioned migrations, and readers that do not wait for a
//! writer.

#[path = "assess_sqlite/contract.rs"]
mod contract;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use storage::assess::{AssessState, SqliteAssessState, StoredInventory};

fn open(path: &Path) -> Arc<dyn AssessState> {
    Arc::new(SqliteAssessState::open(path).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_on_sqlite() {
    for case in contract::CASES {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir.path().join("assess.db"));
        contract::run(case, s).await;
    }
}

#[test]
fn contract_on_sqlite_from_a_plain_thread() {
    // Callers without a runtime (the CLI's `usage`) drive the same calls.
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir.path().join("assess.db"));
    storage::block_on(contract::queue_lifecycle(s));
}

/// The schema as the oldest drydock that created `assess.db` left it:
/// before the pusher, incomplete inventories, layer cache times, VEX
/// provenance, patch jobs and the notified index.
const OLDEST: &str = r#"
CREATE TABLE images(
  digest TEXT PRIMARY KEY, repo TEXT NOT NULL, media_type TEXT NOT NULL,
  kind TEXT NOT NULL DEFAULT 'unknown', parent TEXT, platform TEXT, status TEXT NOT NULL,
  error TEXT, attempts INTEGER NOT NULL DEFAULT 0, queued_at INTEGER NOT NULL,
  started_at INTEGER, finished_at INTEGER, last_pushed_at INTEGER, last_pulled_at INTEGER,
  layers TEXT, children TEXT);
CREATE INDEX images_status ON images(status, queued_at);
CREATE INDEX images_parent ON images(parent);
CREATE TABLE image_repos(repo TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY(repo, digest));
CREATE INDEX image_repos_digest ON image_repos(digest);
CREATE TABLE tag_history(id INTEGER PRIMARY KEY AUTOINCREMENT, repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE inventories(digest TEXT PRIMARY KEY, catalog_version INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE layer_cache(layer TEXT NOT NULL, version INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(layer, version));
CREATE TABLE results(digest TEXT PRIMARY KEY, db_version TEXT, assessed_at INTEGER NOT NULL,
  findings BLOB NOT NULL, findings_hash TEXT NOT NULL, keys TEXT NOT NULL DEFAULT '[]',
  prev_db_version TEXT, prev_assessed_at INTEGER, prev_keys TEXT);
CREATE TABLE exemptions(id TEXT PRIMARY KEY, data TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE webhooks(id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, repository TEXT, min_severity TEXT, created_at INTEGER NOT NULL);
CREATE TABLE deliveries(id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, event TEXT NOT NULL,
  digest TEXT, repo TEXT, payload TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER, last_error TEXT, created_at INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL,
  delivered_at INTEGER);
CREATE TABLE notified(digest TEXT NOT NULL, key TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(digest, key));
CREATE TABLE usage(digest TEXT PRIMARY KEY, repo TEXT NOT NULL, month TEXT NOT NULL, first_assessed_at INTEGER NOT NULL);
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE vex(key TEXT PRIMARY KEY, doc_id TEXT NOT NULL, subject TEXT, source TEXT NOT NULL, data TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE sboms(subject TEXT PRIMARY KEY, repo TEXT NOT NULL, digest TEXT NOT NULL, catalog_version INTEGER NOT NULL, created_at INTEGER NOT NULL);

INSERT INTO images(digest, repo, media_type, kind, status, attempts, queued_at, last_pushed_at, layers)
  VALUES ('sha256:old', 'team/app', 'application/vnd.oci.image.manifest.v1+json', 'image', 'queued', 1, 5, 5, '["sha256:l1"]');
INSERT INTO image_repos VALUES ('team/app', 'sha256:old');
INSERT INTO inventories VALUES ('sha256:old', 3, x'7b7d');
INSERT INTO layer_cache VALUES ('sha256:l1', 3, x'01');
INSERT INTO layer_cache VALUES ('sha256:l2', 3, x'02');
INSERT INTO results(digest, db_version, assessed_at, findings, findings_hash, keys)
  VALUES ('sha256:old', 'v1', 6, x'5b5d', 'h', '["k"]');
INSERT INTO vex VALUES ('api:doc', 'doc', NULL, 'alice', '{"a":1}', 7);
INSERT INTO webhooks VALUES ('w', 'http://127.0.0.1:1/', 'secret', NULL, NULL, 8);
INSERT INTO usage VALUES ('sha256:old', 'team/app', '2026-01', 9);
"#;

fn columns(db: &Path, table: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn history(db: &Path) -> Vec<(i64, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT version, name FROM assess_schema_history ORDER BY version")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

async fn assert_old_rows_kept(s: &dyn AssessState) {
    let img = s.image("sha256:old").await.unwrap().unwrap();
    assert_eq!(
        (img.status.as_str(), img.attempts, img.layers.clone()),
        ("queued", 1, vec!["sha256:l1".to_string()])
    );
    assert_eq!(s.repos_of("sha256:old").await.unwrap(), ["team/app"]);
    assert_eq!(s.pusher("sha256:old").await.unwrap(), None);
    assert_eq!(
        s.inventory("sha256:old").await.unwrap(),
        Some(StoredInventory {
            catalog_version: 3,
            data: b"{}".to_vec()
        })
    );
    assert!(s.incomplete("sha256:old").await.unwrap().is_empty());
    let r = s.result("sha256:old").await.unwrap().unwrap();
    assert_eq!((r.findings.as_slice(), r.assessed_at), (&b"[]"[..], 6));
    let vex = s.vex_document("api:doc").await.unwrap().unwrap();
    assert_eq!(vex.data, serde_json::json!({"a": 1}));
    assert_eq!((vex.recorded_by, vex.not_applied), (None, None));
    assert_eq!(s.webhooks().await.unwrap()[0].secret, "secret");
    assert_eq!(s.usage("2026-01", "2026-01").await.unwrap()[0].images, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_assess_db_upgrades_in_place_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assess.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(OLDEST)
        .unwrap();
    assert!(!columns(&db, "images").contains(&"pusher".to_string()));

    let s = open(&db);
    for (table, column) in [
        ("images", "pusher"),
        ("inventories", "incomplete"),
        ("layer_cache", "at"),
        ("vex", "recorded_by"),
        ("vex", "not_applied"),
        ("patch_jobs", "data"),
    ] {
        assert!(
            columns(&db, table).contains(&column.to_string()),
            "{table}.{column} added"
        );
    }
    assert_eq!(history(&db), vec![(1, "assess".to_string())]);
    assert_old_rows_kept(&*s).await;

    // The new columns work on old rows: a pusher recorded, reasons
    // stored, an unreferenced old layer (no time: 0) pruned, a
    // referenced one kept.
    let mut j = contract::job("team/app", "sha256:old", 10);
    j.pusher = Some("bob".into());
    s.enqueue(j).await.unwrap();
    assert_eq!(
        s.pusher("sha256:old").await.unwrap().as_deref(),
        Some("bob")
    );
    s.put_inventory("sha256:old", 4, b"{}".to_vec(), &["why".into()])
        .await
        .unwrap();
    assert_eq!(s.incomplete("sha256:old").await.unwrap(), ["why"]);
    let pruned = s
        .prune(&storage::assess::PruneBefore {
            deliveries: 0,
            notified: 0,
            tag_history: 0,
            layer_cache: 1,
            catalog_version: 3,
        })
        .await
        .unwrap();
    assert_eq!(pruned.layer_cache, 1);
    assert!(s.layer_cache_get("sha256:l1", 3).await.unwrap().is_some());
    drop(s);

    // Opening again changes nothing more.
    let s = open(&db);
    assert_eq!(history(&db), vec![(1, "assess".to_string())]);
    assert_eq!(s.incomplete("sha256:old").await.unwrap(), ["why"]);
    assert_eq!(s.webhooks().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_upgraded_assess_db_gains_only_what_it_lacks() {
    // The newest drydock before versioning had run some in-place
    // upgrades (here the pusher and VEX provenance) but not others.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assess.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(OLDEST).unwrap();
    c.execute_batch(
        "ALTER TABLE images ADD COLUMN pusher TEXT;
         ALTER TABLE vex ADD COLUMN recorded_by TEXT; ALTER TABLE vex ADD COLUMN not_applied TEXT;
         UPDATE images SET pusher = 'carol';
         UPDATE vex SET recorded_by = 'alice';",
    )
    .unwrap();
    drop(c);

    let s = open(&db);
    assert_eq!(
        s.pusher("sha256:old").await.unwrap().as_deref(),
        Some("carol")
    );
    assert_eq!(
        s.vex_document("api:doc")
            .await
            .unwrap()
            .unwrap()
            .recorded_by
            .as_deref(),
        Some("alice")
    );
    assert!(columns(&db, "inventories").contains(&"incomplete".to_string()));
    assert_eq!(
        columns(&db, "images")
            .iter()
            .filter(|c| *c == "pusher")
            .count(),
        1
    );
    assert!(s.incomplete("sha256:old").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_is_versioned_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/assess.db");
    let s = open(&db);
    s.enqueue(contract::job("r", "sha256:a", 1)).await.unwrap();
    drop(s);
    let s = open(&db);
    assert!(s.image("sha256:a").await.unwrap().is_some());
    assert_eq!(history(&db), vec![(1, "assess".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_do_not_wait_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("assess.db");
    let s = open(&db);
    s.enqueue(contract::job("r", "sha256:a", 1)).await.unwrap();

    // Another connection holds the write lock (a long re-match batch).
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder
        .execute_batch(
            "BEGIN IMMEDIATE; UPDATE images SET status = 'done' WHERE digest = 'sha256:a';",
        )
        .unwrap();

    // Reads answer at once, from the last committed state.
    let row = tokio::time::timeout(Duration::from_secs(5), s.image("sha256:a"))
        .await
        .expect("a read waited for the writer")
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "queued");
    let all = tokio::time::timeout(Duration::from_secs(5), s.all_images())
        .await
        .expect("a read waited for the writer")
        .unwrap();
    assert_eq!(all.len(), 1);

    // A write waits for the lock, off the async workers: this runtime
    // still answers reads meanwhile.
    let writer = {
        let s = s.clone();
        tokio::spawn(async move { s.set_meta("k", "v").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!writer.is_finished(), "the write waited for the lock");
    assert!(s.meta("k").await.unwrap().is_none());
    holder.execute_batch("COMMIT").unwrap();
    writer.await.unwrap().unwrap();
    assert_eq!(s.meta("k").await.unwrap().as_deref(), Some("v"));
    assert_eq!(s.image("sha256:a").await.unwrap().unwrap().status, "done");
}
