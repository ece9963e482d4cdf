//! One contract for the metadata and access stores, run against SQLite
//! and against a real PostgreSQL (a throwaway cluster on loopback; see
//! `storage::testing`). Each case runs once per backend: `<case>::sqlite`
//! and `<case>::postgres`.

use oci::Digest;
use std::collections::HashSet;
use std::sync::Arc;
use storage::access::{ApiTokenRow, AuditQuery, AuditRow, RobotRow};
use storage::{
    AccessStore, GcParams, Meta, MetaError, MetadataStorage, NewManifest, PutManifestError,
    UnlinkBlob,
};

/// A backend under test: two independent handles on the same data (two
/// processes, or two nodes), and what keeps the data alive.
struct Backend {
    meta: Arc<dyn Meta>,
    other: Arc<dyn Meta>,
    access: Arc<dyn AccessStore>,
    _dir: tempfile::TempDir,
}

impl Backend {
    fn open(metadata: MetadataStorage) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        Backend {
            meta: metadata.open_meta(dir.path()).unwrap(),
            other: metadata.open_meta(dir.path()).unwrap(),
            access: storage::open_access(dir.path(), &metadata).unwrap(),
            _dir: dir,
        }
    }

    fn sqlite() -> Backend {
        Backend::open(MetadataStorage::Sqlite)
    }

    fn postgres() -> Option<Backend> {
        let cluster = storage::testing::shared_cluster()?;
        let url = cluster.fresh_database();
        Some(Backend::open(MetadataStorage::from_url(&url).unwrap()))
    }
}

/// `case::sqlite` and `case::postgres` for an `async fn case(Backend)`.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case(super::Backend::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(b) = super::Backend::postgres() else { return };
                super::$case(b).await
            }
        }
    )*};
}

contract!(
    manifests_tags_links,
    repositories_linking_a_blob,
    referenced_blob_is_not_unlinked,
    pulls_are_recorded,
    listings_sort_bytewise_and_page,
    referrers_and_recent_pushes,
    another_handle_sees_changes,
    gc_keeps_what_is_referenced_and_journals_the_rest,
    push_and_unlink_race_never_strand_a_manifest,
    push_and_gc_race_never_strand_a_manifest,
    access_round_trip,
    access_conflicts_and_audit_filters,
);

fn d(s: &[u8]) -> Digest {
    Digest::sha256_of(s)
}

const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn manifest(
    repo: &str,
    body: &[u8],
    blobs: Vec<(Digest, u64)>,
    tags: &[&str],
    at: i64,
) -> NewManifest {
    NewManifest {
        repo: repo.into(),
        digest: d(body),
        media_type: IMAGE.into(),
        body: body.to_vec(),
        subject: None,
        artifact_type: None,
        annotations: None,
        blobs,
        children: vec![],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        origin: "push".into(),
        at,
    }
}

async fn manifests_tags_links(b: Backend) {
    let m = &b.meta;
    let layer = d(b"layer");
    let new = |tags: &[&str]| manifest("a/b", b"manifest", vec![(layer.clone(), 5)], tags, 1);
    assert!(matches!(
        m.put_manifest(new(&["v1"])).await,
        Err(PutManifestError::BlobUnknown(_))
    ));
    assert!(!m.repo_exists("a/b").await.unwrap());
    m.link_blob("a/b", &layer, 4, 1).await.unwrap();
    assert!(matches!(
        m.put_manifest(new(&["v1"])).await,
        Err(PutManifestError::BlobSize {
            expected: 5,
            actual: 4,
            ..
        })
    ));
    m.link_blob("a/b", &layer, 5, 1).await.unwrap();
    assert!(m.put_manifest(new(&["v1"])).await.unwrap());
    assert!(!m.put_manifest(new(&["v2"])).await.unwrap());
    assert!(m.repo_exists("a/b").await.unwrap());
    assert_eq!(m.blob_link("a/b", &layer).await.unwrap(), Some(5));
    assert_eq!(m.blob_linked_anywhere(&layer).await.unwrap(), Some(5));
    assert_eq!(m.tags("a/b", None, None).await.unwrap().len(), 2);
    assert_eq!(m.tags("a/b", Some("v1"), Some(5)).await.unwrap()[0].0, "v2");
    let man = d(b"manifest");
    let row = m.manifest_by_tag("a/b", "v2").await.unwrap().unwrap();
    assert_eq!(row.digest, man);
    assert_eq!(row.body, b"manifest");
    assert_eq!(m.manifest("a/b", &man).await.unwrap().unwrap(), row);
    assert!(m.manifest("other", &man).await.unwrap().is_none());
    let summary = m.manifests("a/b").await.unwrap();
    assert_eq!(summary[0].tags, vec!["v1", "v2"]);
    assert_eq!(
        (summary[0].size, summary[0].media_type.as_str()),
        (8, IMAGE)
    );

    // An index needs its children, with their sizes and media types.
    let mut index = manifest("a/b", b"index", vec![], &["multi"], 2);
    index.media_type = INDEX.into();
    index.children = vec![(man.clone(), 8, INDEX.into())];
    assert!(matches!(
        m.put_manifest(index.clone()).await,
        Err(PutManifestError::ChildMismatch { .. })
    ));
    index.children = vec![(d(b"missing"), 8, IMAGE.into())];
    assert!(matches!(
        m.put_manifest(index.clone()).await,
        Err(PutManifestError::ChildUnknown(_))
    ));
    index.children = vec![(man.clone(), 8, IMAGE.into())];
    assert!(m.put_manifest(index).await.unwrap());

    assert!(m.delete_tag("a/b", "v2").await.unwrap());
    assert!(!m.delete_tag("a/b", "v2").await.unwrap());
    assert_eq!(
        m.delete_manifest("a/b", &man).await.unwrap(),
        Some(vec!["v1".to_string()])
    );
    assert_eq!(m.delete_manifest("a/b", &man).await.unwrap(), None);
    assert!(m.manifest_by_tag("a/b", "v1").await.unwrap().is_none());
    assert_eq!(m.repositories(None, None).await.unwrap(), vec!["a/b"]);
}

async fn repositories_linking_a_blob(b: Backend) {
    let m = &b.meta;
    let shared = d(b"shared");
    assert!(m.blob_repos(&shared).await.unwrap().is_empty());
    m.link_blob("z/app", &shared, 6, 1).await.unwrap();
    m.link_blob("a/app", &shared, 6, 1).await.unwrap();
    m.link_blob("a/app", &d(b"other"), 5, 1).await.unwrap();
    assert_eq!(m.blob_repos(&shared).await.unwrap(), vec!["a/app", "z/app"]);
    assert!(m.unlink_blob("z/app", &shared).await.unwrap());
    assert!(!m.unlink_blob("z/app", &shared).await.unwrap());
    assert_eq!(m.blob_repos(&shared).await.unwrap(), vec!["a/app"]);
}

async fn referenced_blob_is_not_unlinked(b: Backend) {
    let m = &b.meta;
    let layer = d(b"layer");
    let man = d(b"manifest");
    m.link_blob("a", &layer, 5, 1).await.unwrap();
    m.put_manifest(manifest(
        "a",
        b"manifest",
        vec![(layer.clone(), 5)],
        &["v2", "v1"],
        1,
    ))
    .await
    .unwrap();
    let held = UnlinkBlob::Referenced {
        manifest: man.clone(),
        tag: Some("v1".into()),
    };
    assert_eq!(m.unlink_unreferenced_blob("a", &layer).await.unwrap(), held);
    assert!(m.blob_link("a", &layer).await.unwrap().is_some());
    m.delete_tag("a", "v1").await.unwrap();
    m.delete_tag("a", "v2").await.unwrap();
    assert!(matches!(
        m.unlink_unreferenced_blob("a", &layer).await.unwrap(),
        UnlinkBlob::Referenced { tag: None, .. }
    ));
    m.delete_manifest("a", &man).await.unwrap();
    assert_eq!(
        m.unlink_unreferenced_blob("a", &layer).await.unwrap(),
        UnlinkBlob::Unlinked
    );
    assert_eq!(
        m.unlink_unreferenced_blob("a", &layer).await.unwrap(),
        UnlinkBlob::NotLinked
    );
}

async fn pulls_are_recorded(b: Backend) {
    let m = &b.meta;
    m.record_pulls(vec![
        ("r".into(), d(b"x"), 10, 1),
        ("r".into(), d(b"x"), 20, 2),
    ])
    .await
    .unwrap();
    m.record_pulls(vec![("r".into(), d(b"x"), 15, 1)])
        .await
        .unwrap();
    m.record_pulls(vec![]).await.unwrap();
    let p = m.recent_pulls(15).await.unwrap();
    assert_eq!(p, vec![("r".to_string(), d(b"x"), 20)]);
    assert!(m.recent_pulls(21).await.unwrap().is_empty());
}

async fn listings_sort_bytewise_and_page(b: Backend) {
    let m = &b.meta;
    let layer = d(b"l");
    for repo in ["b", "A", "a", "_x", "a/b"] {
        m.link_blob(repo, &layer, 1, 1).await.unwrap();
    }
    // Byte order, as the Distribution spec's lexical order is taken.
    assert_eq!(
        m.repositories(None, None).await.unwrap(),
        vec!["A", "_x", "a", "a/b", "b"]
    );
    assert_eq!(
        m.repositories(Some("_x"), Some(2)).await.unwrap(),
        vec!["a", "a/b"]
    );
    m.put_manifest(manifest(
        "a",
        b"m",
        vec![(layer.clone(), 1)],
        &["v1", "V2", "latest", "1.0"],
        1,
    ))
    .await
    .unwrap();
    let names = |v: Vec<(String, Digest)>| v.into_iter().map(|t| t.0).collect::<Vec<_>>();
    assert_eq!(
        names(m.tags("a", None, None).await.unwrap()),
        vec!["1.0", "V2", "latest", "v1"]
    );
    assert_eq!(
        names(m.tags("a", Some("V2"), Some(1)).await.unwrap()),
        vec!["latest"]
    );
}

async fn referrers_and_recent_pushes(b: Backend) {
    let m = &b.meta;
    let layer = d(b"l");
    m.link_blob("r", &layer, 1, 1).await.unwrap();
    m.put_manifest(manifest(
        "r",
        b"subject",
        vec![(layer.clone(), 1)],
        &["v1"],
        10,
    ))
    .await
    .unwrap();
    for (body, at) in [(&b"sbom"[..], 30), (&b"sig"[..], 20)] {
        let mut r = manifest("r", body, vec![(layer.clone(), 1)], &[], at);
        r.subject = Some(d(b"subject"));
        r.artifact_type = Some("application/example".into());
        r.annotations = Some(r#"{"a":"b"}"#.into());
        m.put_manifest(r).await.unwrap();
    }
    let refs = m.referrers("r", &d(b"subject")).await.unwrap();
    assert_eq!(
        refs.iter().map(|r| r.digest.clone()).collect::<Vec<_>>(),
        vec![d(b"sig"), d(b"sbom")]
    );
    assert_eq!(
        refs[0].artifact_type.as_deref(),
        Some("application/example")
    );
    assert_eq!(refs[0].annotations.as_deref(), Some(r#"{"a":"b"}"#));
    let row = m.manifest("r", &d(b"sbom")).await.unwrap().unwrap();
    assert_eq!(row.subject, Some(d(b"subject").to_string()));
    let pushed: Vec<i64> = m
        .recent_pushes(15)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.2)
        .collect();
    assert_eq!(pushed, vec![20, 30]);
}

/// A second handle (another process on SQLite, another node on
/// PostgreSQL) commits: this one's change version moves, so caches drop.
async fn another_handle_sees_changes(b: Backend) {
    let layer = d(b"l");
    let before = b.meta.change_version().await.unwrap();
    assert_eq!(b.meta.change_version().await.unwrap(), before);
    b.other.link_blob("r", &layer, 1, 1).await.unwrap();
    b.other
        .put_manifest(manifest("r", b"m", vec![(layer.clone(), 1)], &["v1"], 1))
        .await
        .unwrap();
    let after = b.meta.change_version().await.unwrap();
    assert_ne!(after, before);
    b.other.delete_tag("r", "v1").await.unwrap();
    assert_ne!(b.meta.change_version().await.unwrap(), after);
    assert!(b.meta.manifest_by_tag("r", "v1").await.unwrap().is_none());
}

async fn gc_keeps_what_is_referenced_and_journals_the_rest(b: Backend) {
    let m = &b.meta;
    let (l1, l2, l3, young) = (d(b"l1"), d(b"l2"), d(b"l3"), d(b"young"));
    for l in [&l1, &l2, &l3] {
        m.link_blob("r", l, 2, 10).await.unwrap();
    }
    m.link_blob("r", &young, 5, 1000).await.unwrap();
    m.link_blob("gone", &l3, 2, 10).await.unwrap();
    // Tagged index → child; a referrer of the child; an untagged old one.
    m.put_manifest(manifest("r", b"child", vec![(l1.clone(), 2)], &[], 10))
        .await
        .unwrap();
    let mut index = manifest("r", b"index", vec![], &["v1"], 10);
    index.media_type = INDEX.into();
    index.children = vec![(d(b"child"), 5, IMAGE.into())];
    m.put_manifest(index).await.unwrap();
    let mut sig = manifest("r", b"sig", vec![(l2.clone(), 2)], &[], 10);
    sig.subject = Some(d(b"child"));
    m.put_manifest(sig).await.unwrap();
    m.put_manifest(manifest("r", b"old", vec![(l3.clone(), 2)], &[], 10))
        .await
        .unwrap();
    let params = GcParams {
        cutoff: 500,
        now: 600,
        prune_journal_before: 0,
        dry_run: true,
    };
    let dry = m.gc_mark_and_sweep(params).await.unwrap();
    assert_eq!((dry.manifests_removed, dry.links_removed), (1, 2));
    assert!(m.manifest("r", &d(b"old")).await.unwrap().is_some());

    let (_, seq) = b.other.removed_since(0).await.unwrap();
    let v = b.other.change_version().await.unwrap();
    let done = m
        .gc_mark_and_sweep(GcParams {
            dry_run: false,
            ..params
        })
        .await
        .unwrap();
    assert_eq!((done.manifests_removed, done.links_removed), (1, 2));
    let expect: HashSet<String> = [&l1, &l2].iter().map(|d| d.to_string()).collect();
    assert_eq!(done.live_blobs, expect);
    assert!(done.linked.contains(&young.to_string()));
    assert!(!done.linked.contains(&l3.to_string()));
    assert!(m.manifest("r", &d(b"old")).await.unwrap().is_none());
    for kept in [&b"child"[..], b"index", b"sig"] {
        assert!(m.manifest("r", &d(kept)).await.unwrap().is_some());
    }
    assert!(m.blob_link("r", &l3).await.unwrap().is_none());
    assert!(m.blob_link("r", &young).await.unwrap().is_some());
    assert!(!m.repo_exists("gone").await.unwrap());
    // Another process or node learns what went.
    assert_ne!(b.other.change_version().await.unwrap(), v);
    let (removed, last) = b.other.removed_since(seq).await.unwrap();
    assert_eq!(removed, vec![("r".to_string(), d(b"old"))]);
    assert!(b.other.removed_since(last).await.unwrap().0.is_empty());
    // Pushed again: no longer reported as removed.
    m.link_blob("r", &l3, 2, 1000).await.unwrap();
    m.put_manifest(manifest("r", b"old", vec![(l3.clone(), 2)], &[], 1000))
        .await
        .unwrap();
    assert!(b.other.removed_since(seq).await.unwrap().0.is_empty());
}

/// A push and a blob delete of the same blob, many times at once: either
/// the push wins (the link stays) or the delete does (the push fails);
/// never a stored manifest whose blob is unlinked.
async fn push_and_unlink_race_never_strand_a_manifest(b: Backend) {
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let (push, del) = (b.meta.clone(), b.other.clone());
        tasks.push(tokio::spawn(async move {
            let layer = d(format!("layer{i}").as_bytes());
            push.link_blob("race", &layer, 1, 1).await.unwrap();
            let body = format!("manifest{i}").into_bytes();
            let m = manifest("race", &body, vec![(layer.clone(), 1)], &[], 1);
            let (pushed, unlinked) = tokio::join!(
                push.put_manifest(m),
                del.unlink_unreferenced_blob("race", &layer)
            );
            let unlinked = unlinked.unwrap();
            let stored = push.manifest("race", &d(&body)).await.unwrap().is_some();
            let linked = push.blob_link("race", &layer).await.unwrap().is_some();
            match pushed {
                Ok(_) => {
                    assert!(stored && linked, "pushed but the blob went ({unlinked:?})");
                    assert!(matches!(unlinked, UnlinkBlob::Referenced { .. }));
                }
                Err(PutManifestError::BlobUnknown(_)) => {
                    assert!(!stored && !linked);
                    assert_eq!(unlinked, UnlinkBlob::Unlinked);
                }
                Err(e) => panic!("{e}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// GC sweeping (everything older than the cutoff) while tagged manifests
/// are pushed: a push that succeeded keeps its blob linked while its
/// manifest is tagged.
async fn push_and_gc_race_never_strand_a_manifest(b: Backend) {
    let gc = b.other.clone();
    let sweeper = tokio::spawn(async move {
        for _ in 0..15 {
            gc.gc_mark_and_sweep(GcParams {
                cutoff: i64::MAX,
                now: 1,
                prune_journal_before: 0,
                dry_run: false,
            })
            .await
            .unwrap();
        }
    });
    let mut pushed = 0;
    for i in 0..30u32 {
        let layer = d(format!("gc-layer{i}").as_bytes());
        b.meta.link_blob("gc", &layer, 1, 1).await.unwrap();
        let body = format!("gc-manifest{i}").into_bytes();
        match b
            .meta
            .put_manifest(manifest("gc", &body, vec![(layer.clone(), 1)], &["t"], 1))
            .await
        {
            Ok(_) => pushed += 1,
            Err(PutManifestError::BlobUnknown(_)) => continue,
            Err(e) => panic!("{e}"),
        }
        // Whatever "t" names now, its blob is linked.
        let tagged = b.meta.manifest_by_tag("gc", "t").await.unwrap().unwrap();
        let n: u32 = std::str::from_utf8(&tagged.body).unwrap()[11..]
            .parse()
            .unwrap();
        let its_layer = d(format!("gc-layer{n}").as_bytes());
        assert!(
            b.meta.blob_link("gc", &its_layer).await.unwrap().is_some(),
            "tagged manifest {n} lost its blob link"
        );
    }
    sweeper.await.unwrap();
    assert!(pushed > 0);
}

async fn access_round_trip(b: Backend) {
    let s = &b.access;
    let g0 = s.generation().await.unwrap();
    assert!(s.insert_user("alice", "h1", 1).await.unwrap());
    assert!(!s.insert_user("alice", "h2", 2).await.unwrap());
    assert!(s.insert_user("bob", "hb", 3).await.unwrap());
    s.set_groups("alice", &["devs".into(), "admins".into()])
        .await
        .unwrap();
    assert!(s.set_password("alice", "h3").await.unwrap());
    assert!(!s.set_password("nobody", "h").await.unwrap());
    let u = s.user("alice").await.unwrap().unwrap();
    assert_eq!((u.password_hash.as_str(), u.generation), ("h3", 2));
    assert_eq!(u.groups, vec!["admins".to_string(), "devs".to_string()]);
    let names: Vec<String> = s
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, vec!["alice", "bob"]);
    assert!(s.generation().await.unwrap() > g0);

    let robot = RobotRow {
        name: "ci".into(),
        secret_hash: "x".into(),
        description: "builds".into(),
        created_at: 1,
        expires_at: Some(99),
        revoked_at: None,
    };
    assert!(s.insert_robot(&robot).await.unwrap());
    assert!(!s.insert_robot(&robot).await.unwrap());
    assert_eq!(s.robot("ci").await.unwrap().unwrap(), robot);
    assert!(s.revoke_robot("ci", 5).await.unwrap());
    assert!(!s.revoke_robot("ci", 6).await.unwrap());
    assert_eq!(s.robot("ci").await.unwrap().unwrap().revoked_at, Some(5));
    assert_eq!(s.robots().await.unwrap().len(), 1);

    let token = ApiTokenRow {
        id: "t1".into(),
        owner: "alice".into(),
        secret_hash: "sh1".into(),
        description: String::new(),
        created_at: 1,
        expires_at: None,
        revoked_at: None,
    };
    s.insert_api_token(&token).await.unwrap();
    assert_eq!(s.api_token_by_hash("sh1").await.unwrap().unwrap(), token);
    assert_eq!(s.api_tokens(Some("alice")).await.unwrap().len(), 1);
    assert_eq!(s.api_tokens(Some("bob")).await.unwrap().len(), 0);
    assert_eq!(s.api_tokens(None).await.unwrap().len(), 1);
    assert!(s.revoke_api_token("t1", 7).await.unwrap());
    assert!(!s.revoke_api_token("t1", 8).await.unwrap());

    let binding = storage::access::BindingRow {
        id: "b1".into(),
        subject_kind: "user".into(),
        subject: "alice".into(),
        pattern: "team/*".into(),
        actions: "pull,push".into(),
        created_at: 1,
    };
    s.insert_binding(&binding).await.unwrap();
    assert_eq!(s.bindings().await.unwrap(), vec![binding]);

    let g1 = s.generation().await.unwrap();
    assert!(s.delete_user("alice").await.unwrap());
    assert!(s.generation().await.unwrap() > g1);
    assert!(s.user("alice").await.unwrap().is_none());
    // The user's tokens and bindings went with it.
    assert!(s.api_token_by_hash("sh1").await.unwrap().is_none());
    assert!(s.bindings().await.unwrap().is_empty());
    assert!(s.delete_robot("ci").await.unwrap());
    assert!(!s.delete_robot("ci").await.unwrap());
    assert!(!s.delete_binding("b1").await.unwrap());
}

async fn access_conflicts_and_audit_filters(b: Backend) {
    let s = &b.access;
    let token = |id: &str, hash: &str| ApiTokenRow {
        id: id.into(),
        owner: "alice".into(),
        secret_hash: hash.into(),
        description: String::new(),
        created_at: 1,
        expires_at: None,
        revoked_at: None,
    };
    s.insert_api_token(&token("t1", "secret-hash-1"))
        .await
        .unwrap();
    for dup in [token("t1", "secret-hash-2"), token("t2", "secret-hash-1")] {
        let e = s.insert_api_token(&dup).await.unwrap_err();
        assert!(matches!(e, MetaError::Conflict(_)), "{e:?}");
        assert!(!e.is_storage_full());
        // Errors never quote a row's values (here a secret's hash).
        assert!(!e.to_string().contains("secret-hash"), "{e}");
    }

    let row = |at: i64, identity: &str, target: &str, bucket: Option<&str>| AuditRow {
        id: 0,
        at,
        identity: identity.into(),
        address: "127.0.0.1".into(),
        action: "pull".into(),
        target: target.into(),
        outcome: "ok".into(),
        detail: String::new(),
        count: 2,
        bucket: bucket.map(str::to_string),
    };
    s.append_audit(&[
        row(10, "alice", "team/app", Some("b1")),
        row(20, "alice", "team/app", Some("b1")),
        row(30, "bob", "other/app", None),
        row(40, "bob", "team/web", None),
    ])
    .await
    .unwrap();
    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 10,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let all = s.audit(&q(&|_| {})).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all.iter().map(|r| r.count).sum::<i64>(), 8);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let bucket = all.iter().find(|r| r.bucket.is_some()).unwrap();
    assert_eq!((bucket.count, bucket.at), (4, 20));
    let n = |q: AuditQuery| {
        let s = s.clone();
        async move { s.audit(&q).await.unwrap().len() }
    };
    assert_eq!(n(q(&|q| q.identity = Some("bob".into()))).await, 2);
    assert_eq!(n(q(&|q| q.target_prefix = Some("team/".into()))).await, 2);
    assert_eq!(
        n(q(&|q| {
            q.since = Some(25);
            q.until = Some(40);
        }))
        .await,
        1
    );
    let newest = all[0].id;
    assert_eq!(n(q(&|q| q.before_id = Some(newest))).await, 2);
    assert_eq!(n(q(&|q| q.limit = 1)).await, 1);
    assert_eq!(s.prune_audit(35).await.unwrap(), 2);
    assert_eq!(n(q(&|_| {})).await, 1);
}
