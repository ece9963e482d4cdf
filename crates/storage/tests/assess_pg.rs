//! The assessor's state on PostgreSQL: the backend contract
//! (`assess_sqlite/contract.rs`, as SQLite runs it), the queue shared by
//! several nodes (leases, dead nodes, the attempt limit), change
//! counters that see other nodes' writes, and migrations that run once.
//! Skips without PostgreSQL, except under CI.

#[path = "assess_sqlite/contract.rs"]
mod contract;

use contract::job;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::PgConfig;
use storage::assess::{AssessState, PgAssessOptions, PgAssessState, status};

/// A fresh database on the shared test cluster; `None` without one.
fn database() -> Option<String> {
    Some(storage::testing::shared_cluster()?.fresh_database())
}

/// A node named `node` on the database at `url`.
fn node(url: &str, node: &str, opts: PgAssessOptions) -> PgAssessState {
    let cfg = PgConfig::new(url).unwrap();
    PgAssessState::connect(
        &cfg,
        PgAssessOptions {
            node: node.into(),
            ..opts
        },
    )
    .unwrap()
}

/// A node whose leases last `lease` and are never renewed: once it
/// stops claiming it behaves as a node that died.
fn mortal(url: &str, name: &str, lease: Duration) -> PgAssessState {
    node(
        url,
        name,
        PgAssessOptions {
            lease,
            renew_every: None,
            ..Default::default()
        },
    )
}

async fn psql(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let rows = client.query(sql, &[]).await.unwrap();
    drop(client);
    let _ = task.await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_on_postgres() {
    if storage::testing::shared_cluster().is_none() {
        return;
    }
    for case in contract::CASES {
        let url = database().unwrap();
        let s: contract::State = Arc::new(node(&url, "n1", PgAssessOptions::default()));
        let started = Instant::now();
        contract::run(case, s).await;
        eprintln!("{case}: {:?}", started.elapsed());
    }
}

#[test]
fn contract_on_postgres_from_a_plain_thread() {
    // Callers without a runtime (the CLI's `usage`) drive the same calls.
    let Some(url) = database() else { return };
    let s: contract::State = Arc::new(node(&url, "n1", PgAssessOptions::default()));
    storage::block_on(contract::queue_lifecycle(s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_claiming_together_never_take_the_same_job() {
    let Some(url) = database() else { return };
    let a = node(&url, "a", PgAssessOptions::default());
    let b = node(&url, "b", PgAssessOptions::default());
    const JOBS: usize = 60;
    for i in 0..JOBS {
        assert!(
            a.enqueue(job("r", &format!("sha256:{i:04}"), i as i64))
                .await
                .unwrap()
        );
    }
    // Four claimers per node, all at once, until the queue is empty.
    let mut tasks = Vec::new();
    for (name, s) in [("a", a.clone()), ("b", b.clone())] {
        for _ in 0..4 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(j) = s.claim(1_000).await.unwrap() {
                    assert_eq!(j.status, status::CATALOGING);
                    assert_eq!(j.attempts, 1, "{}: claimed before", j.digest);
                    got.push((name, j.digest));
                }
                got
            }));
        }
    }
    let mut seen = HashSet::new();
    let mut per_node = [0usize; 2];
    for t in tasks {
        for (name, d) in t.await.unwrap() {
            assert!(seen.insert(d.clone()), "{d} was claimed twice");
            per_node[usize::from(name == "b")] += 1;
        }
    }
    assert_eq!(seen.len(), JOBS, "every job claimed once");
    assert!(
        per_node[0] > 0 && per_node[1] > 0,
        "both nodes took work: {per_node:?}"
    );
    let q = b.queue().await.unwrap();
    assert_eq!(q.counts, vec![("cataloging".to_string(), JOBS as i64)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_job_is_claimed_again_when_its_lease_ends() {
    let Some(url) = database() else { return };
    let dead = mortal(&url, "dead", Duration::from_millis(1500));
    let other = node(&url, "other", PgAssessOptions::default());
    other.enqueue(job("r", "sha256:a", 1)).await.unwrap();
    let first = dead.claim(2).await.unwrap().unwrap();
    assert_eq!((first.digest.as_str(), first.attempts), ("sha256:a", 1));
    // The node dies holding it (no renewal, no release).
    drop(dead);

    // While the lease lasts, nobody takes it, not even a node starting up.
    assert!(other.claim(3).await.unwrap().is_none());
    assert_eq!(other.requeue_interrupted().await.unwrap(), 0);
    assert_eq!(
        other.image("sha256:a").await.unwrap().unwrap().status,
        status::CATALOGING
    );

    let started = Instant::now();
    let again = loop {
        if let Some(j) = other.claim(4).await.unwrap() {
            break j;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the job never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(again.digest, "sha256:a");
    assert_eq!(again.attempts, 2, "the dead node's claim counted");
    assert_eq!(again.started_at, Some(4));
    assert!(other.claim(5).await.unwrap().is_none(), "claimed once");
}

/// A node that stops (its assessor shut down) gives its jobs back at once
/// and stops renewing them: before, they stayed its own, renewed for as
/// long as the process lived, and a service restarted in it never got them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_gives_its_jobs_back_at_once() {
    let Some(url) = database() else { return };
    let renewing = PgAssessOptions {
        lease: Duration::from_secs(60),
        renew_every: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let stopping = node(&url, "stopping", renewing.clone());
    let other = node(&url, "other", renewing);
    other.enqueue(job("r", "sha256:a", 1)).await.unwrap();
    other.enqueue(job("r", "sha256:b", 1)).await.unwrap();
    let held = stopping.claim(2).await.unwrap().unwrap();
    let theirs = other.claim(2).await.unwrap().unwrap();
    assert_ne!(held.digest, theirs.digest);
    assert!(other.claim(3).await.unwrap().is_none());

    assert_eq!(stopping.release_claims().await.unwrap(), 1);
    // Still alive as a value: the job is free all the same.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = other.claim(4).await.unwrap().expect("the job came back");
    assert_eq!(again.digest, held.digest);
    assert_eq!(again.attempts, 2, "the stopped node's claim counted");
    // The other node's own job was left alone.
    assert_eq!(
        other.image(&theirs.digest).await.unwrap().unwrap().status,
        status::CATALOGING
    );
    drop(stopping);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lease_is_renewed_and_never_taken() {
    let Some(url) = database() else { return };
    let lease = Duration::from_millis(900);
    let live = node(
        &url,
        "live",
        PgAssessOptions {
            lease,
            renew_every: Some(Duration::from_millis(200)),
            ..Default::default()
        },
    );
    let other = node(&url, "other", PgAssessOptions::default());
    live.enqueue(job("r", "sha256:a", 1)).await.unwrap();
    live.claim(2).await.unwrap().unwrap();

    // Three leases' worth of time: renewed all along, so held all along,
    // whether another node claims or restarts.
    let until = Instant::now() + lease * 3;
    while Instant::now() < until {
        assert!(other.claim(3).await.unwrap().is_none(), "a live job taken");
        assert_eq!(other.requeue_interrupted().await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let held = other.image("sha256:a").await.unwrap().unwrap();
    assert_eq!((held.status.as_str(), held.attempts), ("cataloging", 1));

    // The owner moves it on and finishes it; its lease goes with it.
    live.set_status("sha256:a", status::MATCHING, None, 4)
        .await
        .unwrap();
    assert!(other.claim(5).await.unwrap().is_none());
    live.set_status("sha256:a", status::DONE, None, 6)
        .await
        .unwrap();
    assert_eq!(live.renew_leases().await.unwrap(), 0, "nothing held");
    let rows = psql(
        &url,
        "SELECT lease_owner, lease_until FROM assess_images WHERE digest = 'sha256:a'",
    )
    .await;
    assert_eq!(rows[0].get::<_, Option<String>>(0), None);
    assert_eq!(rows[0].get::<_, Option<i64>>(1), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarting_under_its_name_takes_back_only_its_own_jobs() {
    let Some(url) = database() else { return };
    let a = mortal(&url, "a", Duration::from_secs(600));
    let b = mortal(&url, "b", Duration::from_secs(600));
    for (i, d) in ["sha256:1", "sha256:2", "sha256:3"].into_iter().enumerate() {
        a.enqueue(job("r", d, i as i64)).await.unwrap();
    }
    assert_eq!(a.claim(10).await.unwrap().unwrap().digest, "sha256:1");
    assert_eq!(b.claim(10).await.unwrap().unwrap().digest, "sha256:2");
    drop(a);
    // `a` comes back under the same name: its job is queued again at
    // once; `b`'s stays with `b`.
    let a = mortal(&url, "a", Duration::from_secs(600));
    assert_eq!(a.requeue_interrupted().await.unwrap(), 1);
    let one = a.image("sha256:1").await.unwrap().unwrap();
    assert_eq!(one.status, status::QUEUED);
    assert_eq!(
        a.image("sha256:2").await.unwrap().unwrap().status,
        status::CATALOGING
    );
    let next = a.claim(11).await.unwrap().unwrap();
    assert_eq!((next.digest.as_str(), next.attempts), ("sha256:1", 2));

    // A node gives a job back without finishing it: queued at once.
    assert!(!a.release_lease("sha256:2").await.unwrap(), "not a's");
    assert!(a.release_lease("sha256:1").await.unwrap());
    assert_eq!(
        b.image("sha256:1").await.unwrap().unwrap().status,
        status::QUEUED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_at_the_attempt_limit_fails_with_its_reason_instead_of_being_claimed() {
    let Some(url) = database() else { return };
    let lease = Duration::from_millis(400);
    let opts = || PgAssessOptions {
        lease,
        renew_every: None,
        max_attempts: 2,
        ..Default::default()
    };
    let n1 = node(&url, "n1", opts());
    let n2 = node(&url, "n2", opts());
    let n3 = node(&url, "n3", opts());
    n1.enqueue(job("r", "sha256:a", 1)).await.unwrap();
    n1.enqueue(job("r", "sha256:b", 2)).await.unwrap();

    // a: claimed, put back with a reason (a transient failure), claimed
    // again by a node that then dies.
    assert_eq!(n1.claim(3).await.unwrap().unwrap().digest, "sha256:a");
    n1.set_status("sha256:a", status::QUEUED, Some("blob unreadable"), 4)
        .await
        .unwrap();
    let a2 = n2.claim(5).await.unwrap().unwrap();
    assert_eq!((a2.digest.as_str(), a2.attempts), ("sha256:a", 2));
    // b: claimed twice by nodes that died.
    assert_eq!(n1.claim(6).await.unwrap().unwrap().digest, "sha256:b");
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let b2 = n2.claim(7).await.unwrap().unwrap();
    assert_eq!((b2.digest.as_str(), b2.attempts), ("sha256:b", 2));
    drop((n1, n2));
    tokio::time::sleep(lease + Duration::from_millis(200)).await;

    // Both leases are over, both jobs at the limit: not claimed...
    assert!(n3.claim(8).await.unwrap().is_none());
    // ...but failed, each with its reason.
    let mut gone = n3.give_up_exhausted(2, 9).await.unwrap();
    gone.sort();
    assert_eq!(
        gone,
        vec![
            (
                "sha256:a".to_string(),
                "gave up after 2 attempts: blob unreadable".to_string()
            ),
            (
                "sha256:b".to_string(),
                "gave up after 2 attempts: the process stopped while assessing".to_string()
            ),
        ]
    );
    let a = n3.image("sha256:a").await.unwrap().unwrap();
    assert_eq!(
        (a.status.as_str(), a.finished_at),
        (status::FAILED, Some(9))
    );
    assert!(n3.give_up_exhausted(2, 10).await.unwrap().is_empty());
    // A push of it again retries it from scratch.
    assert!(n3.enqueue(job("r", "sha256:a", 11)).await.unwrap());
    let again = n3.claim(12).await.unwrap().unwrap();
    assert_eq!((again.digest.as_str(), again.attempts), ("sha256:a", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_sees_another_nodes_writes_in_its_counters() {
    let Some(url) = database() else { return };
    let ttl = Duration::from_millis(300);
    let opts = || PgAssessOptions {
        generation_ttl: ttl,
        ..Default::default()
    };
    let a = node(&url, "a", opts());
    let b = node(&url, "b", opts());
    let (g0, v0) = (
        b.generation().await.unwrap(),
        b.verdict_generation().await.unwrap(),
    );
    a.enqueue(job("r", "sha256:a", 1)).await.unwrap();
    // Within the ttl `b` may still answer from what it read...
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    // ...after it, it has seen `a`'s write.
    let (g1, v1) = (
        b.generation().await.unwrap(),
        b.verdict_generation().await.unwrap(),
    );
    assert!(g1 > g0 && v1 > v0, "{g0}->{g1}, {v0}->{v1}");
    // A quiet write (pulls) moves only the generation.
    a.record_pulls(&[("sha256:a".into(), 5)]).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert!(b.generation().await.unwrap() > g1);
    assert_eq!(b.verdict_generation().await.unwrap(), v1);
    // Its own writes show at once, ttl or not.
    let before = b.verdict_generation().await.unwrap();
    b.set_status("sha256:a", status::DONE, None, 6)
        .await
        .unwrap();
    assert!(b.verdict_generation().await.unwrap() > before);
    // And what `a` reads then is what `b` wrote.
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert!(a.verdict_generation().await.unwrap() >= b.verdict_generation().await.unwrap());
    assert_eq!(
        a.image("sha256:a").await.unwrap().unwrap().status,
        status::DONE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_twice_are_a_no_op() {
    let Some(url) = database() else { return };
    let first = node(&url, "a", PgAssessOptions::default());
    first.enqueue(job("r", "sha256:a", 1)).await.unwrap();
    first.set_meta("k", "v").await.unwrap();
    // A second node, and the same one again: each migrates at connect.
    let second = node(&url, "b", PgAssessOptions::default());
    drop(first);
    let third = node(&url, "a", PgAssessOptions::default());
    for s in [&second, &third] {
        assert_eq!(s.meta("k").await.unwrap().as_deref(), Some("v"));
        assert!(s.image("sha256:a").await.unwrap().is_some());
    }
    let history = psql(&url, "SELECT version, name FROM assess_schema_history").await;
    let history: Vec<(i32, String)> = history.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(history, vec![(1, "assess".to_string())]);
    // The registry's own history is another table, untouched by ours.
    let registry = psql(
        &url,
        "SELECT COUNT(*) FROM drydock_schema_history WHERE name = 'assess'",
    )
    .await;
    assert_eq!(registry[0].get::<_, i64>(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let Some(url) = database() else { return };
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || node(&url, &format!("n{i}"), PgAssessOptions::default()))
        })
        .collect();
    let nodes: Vec<PgAssessState> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    nodes[0].enqueue(job("r", "sha256:a", 1)).await.unwrap();
    for n in &nodes {
        assert!(n.image("sha256:a").await.unwrap().is_some());
    }
    let history = psql(&url, "SELECT COUNT(*) FROM assess_schema_history").await;
    assert_eq!(history[0].get::<_, i64>(0), 1);
}

/// One batch naming an image, its index and the image again: each image
/// keeps the latest time that names it or its index (the one statement
/// PostgreSQL runs for a batch, against SQLite's one per pull).
async fn pulls_in_one_batch(s: &dyn AssessState) {
    let mut child = job("r", "sha256:c", 1);
    child.parent = Some("sha256:idx".into());
    s.enqueue(child).await.unwrap();
    s.enqueue(job("r", "sha256:idx", 2)).await.unwrap();
    s.enqueue(job("r", "sha256:lone", 3)).await.unwrap();
    s.record_pulls(&[
        ("sha256:c".into(), 50),
        ("sha256:idx".into(), 80),
        ("sha256:c".into(), 60),
        ("sha256:unknown".into(), 99),
    ])
    .await
    .unwrap();
    let pulled = s.pulled_times().await.unwrap();
    assert_eq!(pulled.get("sha256:c"), Some(&80));
    assert_eq!(pulled.get("sha256:idx"), Some(&80));
    assert_eq!(pulled.get("sha256:lone"), None);
    assert_eq!(pulled.len(), 2);
    // An older pull never moves a time back.
    s.record_pulls(&[("sha256:idx".into(), 10)]).await.unwrap();
    assert_eq!(s.pulled_times().await.unwrap(), pulled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_in_one_batch_keep_the_latest_time_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = storage::assess::SqliteAssessState::open(&dir.path().join("assess.db")).unwrap();
    pulls_in_one_batch(&sqlite).await;
    let Some(url) = database() else { return };
    pulls_in_one_batch(&node(&url, "a", PgAssessOptions::default())).await;
}

#[test]
fn an_unreachable_server_is_unavailable_and_its_password_never_shows() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = PgConfig::new(&format!(
        "postgres://drydock:s3cret-pw@127.0.0.1:{port}/db?sslmode=disable"
    ))
    .unwrap();
    let Err(e) = PgAssessState::connect(&cfg, PgAssessOptions::default()) else {
        panic!("connected to nothing");
    };
    assert!(
        matches!(e, storage::assess::AssessStateError::Unavailable(_)),
        "{e:?}"
    );
    assert!(!format!("{e} {e:?}").contains("s3cret-pw"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_node_assesses_every_other_reads() {
    use storage::assess::{EncodedFindings, NewResult, Webhook};
    let Some(url) = database() else { return };
    let (n1, n3) = (
        node(&url, "n1", PgAssessOptions::default()),
        node(&url, "n3", PgAssessOptions::default()),
    );
    // Node 1 takes the push, catalogs the image (its layer into the
    // shared cache) and stores the result.
    n1.enqueue(job("team/app", "sha256:a", 1)).await.unwrap();
    let j = n1.claim(2).await.unwrap().unwrap();
    n1.set_shape(&j.digest, "image", &["sha256:l1".into()], &[])
        .await
        .unwrap();
    n1.layer_cache_put("sha256:l1", 7, b"layer".to_vec(), 3)
        .await
        .unwrap();
    n1.put_inventory(&j.digest, 7, b"inventory".to_vec(), &[])
        .await
        .unwrap();
    n1.save_results(vec![NewResult {
        digest: j.digest.clone(),
        db_version: Some("v1".into()),
        assessed_at: 4,
        findings: EncodedFindings {
            data: b"[]".to_vec(),
            hash: "h".into(),
            keys: vec!["CVE-1".into()],
        },
    }])
    .await
    .unwrap();
    n1.set_status(&j.digest, status::DONE, None, 5)
        .await
        .unwrap();

    // Node 3 reads all of it, and reuses the layer instead of reading it.
    let img = n3.image("sha256:a").await.unwrap().unwrap();
    assert_eq!(
        (img.status.as_str(), img.layers),
        ("done", vec!["sha256:l1".to_string()])
    );
    assert_eq!(
        n3.layer_cache_get("sha256:l1", 7).await.unwrap().as_deref(),
        Some(&b"layer"[..])
    );
    assert_eq!(
        n3.inventory("sha256:a").await.unwrap().unwrap().data,
        b"inventory"
    );
    let r = n3.result("sha256:a").await.unwrap().unwrap();
    assert_eq!((r.db_version.as_deref(), r.assessed_at), (Some("v1"), 4));
    assert_eq!(
        n3.rematch_candidates(0, "v2", 0).await.unwrap(),
        vec!["sha256:a".to_string()]
    );

    // And the other way: a webhook registered through node 3 is node 1's.
    n3.add_webhook(&Webhook {
        id: "w1".into(),
        url: "http://127.0.0.1:9/hook".into(),
        secret: "s".into(),
        repository: None,
        min_severity: None,
        created_at: 6,
    })
    .await
    .unwrap();
    assert_eq!(n1.webhooks().await.unwrap()[0].id, "w1");
}
