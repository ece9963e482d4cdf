//! An existing data directory upgrades in place: a `meta.db` created by
//! drydock before schema versioning (its statements, as they were, below)
//! opens, is migrated, and keeps every row.

use oci::Digest;
use storage::{AccessStore, Meta, SqliteAccess, SqliteMeta};

/// The schema as `Meta::open` and `AccessStore::open` created it before
/// versioned migrations.
const OLD_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS repos (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blob_links (repo TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
    linked_at INTEGER NOT NULL, PRIMARY KEY (repo, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_links_digest ON blob_links(digest);
CREATE TABLE IF NOT EXISTS manifests (repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,
    size INTEGER NOT NULL, body BLOB NOT NULL, subject TEXT, artifact_type TEXT, annotations TEXT,
    origin TEXT NOT NULL, pushed_at INTEGER NOT NULL, PRIMARY KEY (repo, digest));
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repo, subject) WHERE subject IS NOT NULL;
CREATE INDEX IF NOT EXISTS manifests_pushed ON manifests(pushed_at);
CREATE TABLE IF NOT EXISTS manifest_refs (repo TEXT NOT NULL, manifest TEXT NOT NULL, target TEXT NOT NULL,
    kind INTEGER NOT NULL, PRIMARY KEY (repo, manifest, kind, target)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_refs_target ON manifest_refs(target);
CREATE TABLE IF NOT EXISTS tags (repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,
    updated_at INTEGER NOT NULL, PRIMARY KEY (repo, tag)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags(repo, digest);
CREATE TABLE IF NOT EXISTS pulls (repo TEXT NOT NULL, digest TEXT NOT NULL, last_pulled_at INTEGER NOT NULL,
    count INTEGER NOT NULL, PRIMARY KEY (repo, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pulls_time ON pulls(last_pulled_at);
CREATE TABLE IF NOT EXISTS manifests_removed (seq INTEGER PRIMARY KEY AUTOINCREMENT, repo TEXT NOT NULL,
    digest TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS auth_users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL, generation INTEGER NOT NULL DEFAULT 1) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_user_groups (user TEXT NOT NULL, grp TEXT NOT NULL,
    PRIMARY KEY (user, grp)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_robots (name TEXT PRIMARY KEY, secret_hash TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, expires_at INTEGER,
    revoked_at INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_api_tokens (id TEXT PRIMARY KEY, owner TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE, description TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL,
    expires_at INTEGER, revoked_at INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_bindings (id TEXT PRIMARY KEY, subject_kind TEXT NOT NULL,
    subject TEXT NOT NULL, pattern TEXT NOT NULL, actions TEXT NOT NULL,
    created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
    identity TEXT NOT NULL, address TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
    outcome TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', count INTEGER NOT NULL DEFAULT 1,
    bucket TEXT UNIQUE);
CREATE INDEX IF NOT EXISTS auth_audit_at ON auth_audit(at);
CREATE TABLE IF NOT EXISTS auth_generation (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL);
INSERT OR IGNORE INTO auth_generation(id, value) VALUES (0, 0);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meta_db_from_before_versioning_migrates_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let layer = Digest::sha256_of(b"layer");
    let man = Digest::sha256_of(b"manifest");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch(OLD_SCHEMA).unwrap();
        c.execute_batch(&format!(
            "INSERT INTO repos VALUES ('team/app', 1);
             INSERT INTO blob_links VALUES ('team/app', '{layer}', 5, 1);
             INSERT INTO manifests VALUES ('team/app', '{man}', 'application/vnd.oci.image.manifest.v1+json',
                 8, CAST('manifest' AS BLOB), NULL, NULL, NULL, 'push', 7);
             INSERT INTO manifest_refs VALUES ('team/app', '{man}', '{layer}', 0);
             INSERT INTO tags VALUES ('team/app', 'v1', '{man}', 7);
             INSERT INTO pulls VALUES ('team/app', '{man}', 9, 3);
             INSERT INTO auth_users VALUES ('alice', 'argon-hash', 1, 4);
             INSERT INTO auth_user_groups VALUES ('alice', 'devs');
             UPDATE auth_generation SET value = 12;"
        ))
        .unwrap();
    }

    let meta = SqliteMeta::open(&path).unwrap();
    let access = SqliteAccess::open(&path).unwrap();
    let row = meta
        .manifest_by_tag("team/app", "v1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.digest, row.body), (man.clone(), b"manifest".to_vec()));
    assert_eq!(meta.blob_link("team/app", &layer).await.unwrap(), Some(5));
    assert_eq!(meta.recent_pulls(0).await.unwrap()[0].2, 9);
    assert_eq!(
        meta.unlink_unreferenced_blob("team/app", &layer)
            .await
            .unwrap(),
        storage::UnlinkBlob::Referenced {
            manifest: man,
            tag: Some("v1".into())
        }
    );
    let alice = access.user("alice").await.unwrap().unwrap();
    assert_eq!(
        (alice.password_hash.as_str(), alice.generation, alice.groups),
        ("argon-hash", 4, vec!["devs".to_string()])
    );
    assert_eq!(access.generation().await.unwrap(), 12);
    drop((meta, access));

    // The migrations are recorded, once, and opening again changes nothing.
    let applied = || {
        let c = rusqlite::Connection::open(&path).unwrap();
        let mut st = c
            .prepare("SELECT version, name FROM drydock_schema_history ORDER BY version")
            .unwrap();
        st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    assert_eq!(
        applied(),
        vec![
            (1, "registry".to_string()),
            (2, "access".to_string()),
            (3, "import_jobs".to_string()),
            (4, "upload_sessions".to_string()),
            (5, "vulndb_releases".to_string())
        ]
    );
    let meta = SqliteMeta::open(&path).unwrap();
    assert_eq!(applied().len(), 5);
    assert_eq!(
        meta.repositories(None, None).await.unwrap(),
        vec!["team/app"]
    );
}

#[test]
fn a_new_database_gets_the_same_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    SqliteMeta::open(&path).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'
               AND name IN ('repos', 'manifests', 'tags', 'auth_users', 'auth_audit')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 5);
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
