//! What every [`AssessState`] backend must do, as functions over a fresh,
//! empty state: `assess_sqlite.rs` runs them on SQLite, and a PostgreSQL
//! test can include this file (`#[path]`) and run them there.
//!
//! Times are small integers: backends store them, they do not read the
//! clock.

#![allow(dead_code)]

use std::sync::Arc;
use storage::assess::*;

pub type State = Arc<dyn AssessState>;

/// Every case, by name, for a runner that opens a fresh state per case.
pub const CASES: &[&str] = &[
    "queue_lifecycle",
    "pusher_is_kept_replaced_and_forgotten",
    "exhausted_jobs_fail_with_their_reason",
    "results_keep_the_previous_assessment",
    "rematch_candidates",
    "forget_drops_an_image_with_its_last_repository",
    "tag_history_tells_the_previous_digest",
    "generations_move_with_writes",
    "inventories_and_layer_cache",
    "inventories_are_read_many_at_once",
    "exemptions_and_webhooks",
    "deliveries_and_notifications",
    "usage_is_counted_once",
    "vex_and_sboms",
    "prune_keeps_what_is_still_needed",
    "patch_jobs",
    "meta_values",
];

/// Run case `name` on `s`.
pub async fn run(name: &str, s: State) {
    match name {
        "queue_lifecycle" => queue_lifecycle(s).await,
        "pusher_is_kept_replaced_and_forgotten" => pusher_is_kept_replaced_and_forgotten(s).await,
        "exhausted_jobs_fail_with_their_reason" => exhausted_jobs_fail_with_their_reason(s).await,
        "results_keep_the_previous_assessment" => results_keep_the_previous_assessment(s).await,
        "rematch_candidates" => rematch_candidates(s).await,
        "forget_drops_an_image_with_its_last_repository" => {
            forget_drops_an_image_with_its_last_repository(s).await
        }
        "tag_history_tells_the_previous_digest" => tag_history_tells_the_previous_digest(s).await,
        "generations_move_with_writes" => generations_move_with_writes(s).await,
        "inventories_and_layer_cache" => inventories_and_layer_cache(s).await,
        "inventories_are_read_many_at_once" => inventories_are_read_many_at_once(s).await,
        "exemptions_and_webhooks" => exemptions_and_webhooks(s).await,
        "deliveries_and_notifications" => deliveries_and_notifications(s).await,
        "usage_is_counted_once" => usage_is_counted_once(s).await,
        "vex_and_sboms" => vex_and_sboms(s).await,
        "prune_keeps_what_is_still_needed" => prune_keeps_what_is_still_needed(s).await,
        "patch_jobs" => patch_jobs(s).await,
        "meta_values" => meta_values(s).await,
        other => panic!("no case {other}"),
    }
}

pub fn job(repo: &str, digest: &str, now: i64) -> Enqueue {
    Enqueue {
        repo: repo.into(),
        digest: digest.into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        parent: None,
        platform: None,
        now,
        pushed: true,
        pusher: None,
    }
}

fn findings(hash: &str, keys: &[&str]) -> EncodedFindings {
    EncodedFindings {
        data: format!("[\"{hash}\"]").into_bytes(),
        hash: hash.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

fn result(digest: &str, version: &str, at: i64, f: EncodedFindings) -> NewResult {
    NewResult {
        digest: digest.into(),
        db_version: Some(version.into()),
        assessed_at: at,
        findings: f,
    }
}

pub async fn queue_lifecycle(s: State) {
    assert!(s.enqueue(job("team/app", "sha256:a", 10)).await.unwrap());
    // Queued already: stays queued, first time kept.
    assert!(s.enqueue(job("team/other", "sha256:a", 11)).await.unwrap());
    assert!(s.enqueue(job("team/app", "sha256:b", 12)).await.unwrap());
    assert_eq!(
        s.repos_of("sha256:a").await.unwrap(),
        ["team/app", "team/other"]
    );

    let q = s.queue().await.unwrap();
    assert_eq!(q.pending.len(), 2);
    assert_eq!(q.counts, vec![("queued".to_string(), 2)]);

    // Oldest first, each once.
    let a = s.claim(20).await.unwrap().unwrap();
    assert_eq!(
        (
            a.digest.as_str(),
            a.status.as_str(),
            a.attempts,
            a.queued_at
        ),
        ("sha256:a", status::CATALOGING, 1, 10)
    );
    assert_eq!(a.started_at, Some(20));
    assert_eq!(a.last_pushed_at, Some(11));
    let b = s.claim(21).await.unwrap().unwrap();
    assert_eq!(b.digest, "sha256:b");
    assert!(s.claim(22).await.unwrap().is_none());

    // In progress: enqueue leaves it.
    assert!(!s.enqueue(job("team/app", "sha256:a", 23)).await.unwrap());

    s.set_shape("sha256:a", "image", &["sha256:l1".into()], &[])
        .await
        .unwrap();
    s.set_platform_if_unknown("sha256:a", "linux/amd64")
        .await
        .unwrap();
    s.set_platform_if_unknown("sha256:a", "linux/arm64")
        .await
        .unwrap();
    s.set_status("sha256:a", status::DONE, None, 30)
        .await
        .unwrap();
    let a = s.image("sha256:a").await.unwrap().unwrap();
    assert_eq!(a.kind, "image");
    assert_eq!(a.layers, ["sha256:l1"]);
    assert_eq!(a.platform.as_deref(), Some("linux/amd64"));
    assert_eq!((a.status.as_str(), a.finished_at), ("done", Some(30)));
    // Done: never assessed again.
    assert!(!s.enqueue(job("team/app", "sha256:a", 31)).await.unwrap());

    // Failed: queued again, attempts and error reset.
    s.set_status("sha256:b", status::FAILED, Some("broken"), 32)
        .await
        .unwrap();
    assert_eq!(
        s.image("sha256:b").await.unwrap().unwrap().error.as_deref(),
        Some("broken")
    );
    assert!(s.enqueue(job("team/app", "sha256:b", 33)).await.unwrap());
    let b = s.image("sha256:b").await.unwrap().unwrap();
    assert_eq!(
        (b.status.as_str(), b.attempts, b.error, b.queued_at),
        ("queued", 0, None, 33)
    );

    // An index's children, by platform.
    let mut child = job("team/app", "sha256:c2", 40);
    child.parent = Some("sha256:idx".into());
    child.platform = Some("linux/arm64".into());
    s.enqueue(child.clone()).await.unwrap();
    child.digest = "sha256:c1".into();
    child.now = 41;
    child.platform = Some("linux/amd64".into());
    s.enqueue(child).await.unwrap();
    let kids: Vec<_> = s
        .children("sha256:idx")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.digest)
        .collect();
    assert_eq!(kids, ["sha256:c1", "sha256:c2"]);

    // Newest first.
    let all: Vec<_> = s
        .all_images()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.digest)
        .collect();
    assert_eq!(all[0], "sha256:c1");
    assert_eq!(all.len(), 4);
    assert_eq!(s.images_in_repo("team/other").await.unwrap().len(), 1);
    assert_eq!(s.known_digests().await.unwrap().len(), 4);

    // A crash: in-progress jobs go back to the queue.
    let c = s.claim(50).await.unwrap().unwrap();
    assert_eq!(s.requeue_interrupted().await.unwrap(), 1);
    assert_eq!(
        s.image(&c.digest).await.unwrap().unwrap().status,
        status::QUEUED
    );

    // Pulls: the latest time wins, and an index's pull counts for its children.
    s.record_pulls(&[("sha256:idx".into(), 60), ("sha256:a".into(), 70)])
        .await
        .unwrap();
    s.record_pulls(&[("sha256:a".into(), 65)]).await.unwrap();
    let pulled = s.pulled_times().await.unwrap();
    assert_eq!(pulled.get("sha256:a"), Some(&70));
    assert_eq!(pulled.get("sha256:c1"), Some(&60));
    assert_eq!(pulled.get("sha256:b"), None);
}

pub async fn pusher_is_kept_replaced_and_forgotten(s: State) {
    let mut j = job("team/app", "sha256:v", 1);
    j.pusher = Some("alice".into());
    s.enqueue(j.clone()).await.unwrap();
    assert_eq!(
        s.pusher("sha256:v").await.unwrap().as_deref(),
        Some("alice")
    );
    // Nobody known: kept.
    j.pusher = None;
    s.enqueue(j.clone()).await.unwrap();
    assert_eq!(
        s.pusher("sha256:v").await.unwrap().as_deref(),
        Some("alice")
    );

    // A finished artifact pushed again by someone known runs again.
    s.claim(2).await.unwrap().unwrap();
    s.set_shape("sha256:v", "artifact", &[], &[]).await.unwrap();
    s.set_status("sha256:v", status::UNSUPPORTED, None, 3)
        .await
        .unwrap();
    assert!(
        !s.enqueue(j.clone()).await.unwrap(),
        "nobody known: not again"
    );
    j.pusher = Some("bob".into());
    assert!(s.enqueue(j).await.unwrap());
    assert_eq!(s.pusher("sha256:v").await.unwrap().as_deref(), Some("bob"));

    s.forget_pusher("sha256:v").await.unwrap();
    assert_eq!(s.pusher("sha256:v").await.unwrap(), None);
    assert_eq!(s.pusher("sha256:none").await.unwrap(), None);
}

pub async fn exhausted_jobs_fail_with_their_reason(s: State) {
    s.enqueue(job("r", "sha256:x", 1)).await.unwrap();
    s.enqueue(job("r", "sha256:y", 2)).await.unwrap();
    s.claim(3).await.unwrap().unwrap();
    s.requeue_interrupted().await.unwrap();
    // x was claimed once, y never.
    assert!(s.give_up_exhausted(2, 4).await.unwrap().is_empty());
    let gone = s.give_up_exhausted(1, 5).await.unwrap();
    assert_eq!(
        gone,
        vec![(
            "sha256:x".to_string(),
            "gave up after 1 attempts: the process stopped while assessing".to_string()
        )]
    );
    let x = s.image("sha256:x").await.unwrap().unwrap();
    assert_eq!((x.status.as_str(), x.finished_at), ("failed", Some(5)));
    assert_eq!(
        s.image("sha256:y").await.unwrap().unwrap().status,
        status::QUEUED
    );
    // A recorded error is the reason given.
    let y = s.claim(6).await.unwrap().unwrap();
    s.set_status(&y.digest, status::QUEUED, Some("registry unreachable"), 7)
        .await
        .unwrap();
    let gone = s.give_up_exhausted(1, 8).await.unwrap();
    assert_eq!(gone[0].1, "gave up after 1 attempts: registry unreachable");
}

pub async fn results_keep_the_previous_assessment(s: State) {
    assert!(s.result("sha256:a").await.unwrap().is_none());
    s.save_results(vec![result("sha256:a", "v1", 10, findings("h1", &["k1"]))])
        .await
        .unwrap();
    let r = s.result("sha256:a").await.unwrap().unwrap();
    assert_eq!(r.findings, b"[\"h1\"]");
    assert_eq!(
        (r.db_version.as_deref(), r.assessed_at, r.prev_assessed_at),
        (Some("v1"), 10, None)
    );

    // Same findings: only version and time move; previous keys "same".
    s.save_results(vec![result("sha256:a", "v2", 20, findings("h1", &["k1"]))])
        .await
        .unwrap();
    let r = s.result("sha256:a").await.unwrap().unwrap();
    assert_eq!(
        (
            r.db_version.as_deref(),
            r.prev_db_version.as_deref(),
            r.prev_assessed_at,
            r.prev_keys.clone()
        ),
        (Some("v2"), Some("v1"), Some(10), None)
    );

    // Changed: the old keys are kept, the new document stored.
    s.save_results(vec![
        result("sha256:a", "v3", 30, findings("h2", &["k1", "k2"])),
        result("sha256:b", "v3", 30, findings("h9", &[])),
    ])
    .await
    .unwrap();
    let r = s.result("sha256:a").await.unwrap().unwrap();
    assert_eq!(r.findings, b"[\"h2\"]");
    assert_eq!(r.findings_hash, "h2");
    assert_eq!(r.prev_keys, Some(vec!["k1".to_string()]));
    assert_eq!(r.prev_assessed_at, Some(20));
    assert_eq!(
        s.findings_hash("sha256:b").await.unwrap().as_deref(),
        Some("h9")
    );
    let stamps = s.result_stamps().await.unwrap();
    assert_eq!(
        stamps.get("sha256:a"),
        Some(&(Some("v3".to_string()), 30, "h2".to_string()))
    );
    assert_eq!(stamps.len(), 2);
}

pub async fn rematch_candidates(s: State) {
    for (d, at) in [
        ("sha256:recent", 100),
        ("sha256:old", 1),
        ("sha256:never", 1),
    ] {
        s.enqueue(job("r", d, at)).await.unwrap();
        s.set_shape(d, "image", &[], &[]).await.unwrap();
        s.set_status(d, status::DONE, None, at).await.unwrap();
    }
    s.enqueue(job("r", "sha256:index", 100)).await.unwrap();
    s.set_shape("sha256:index", "index", &[], &[])
        .await
        .unwrap();
    s.set_status("sha256:index", status::DONE, None, 100)
        .await
        .unwrap();
    s.save_results(vec![
        result("sha256:recent", "v1", 100, findings("h", &[])),
        result("sha256:old", "v1", 1, findings("h", &[])),
        result("sha256:index", "v1", 100, findings("h", &[])),
        NewResult {
            db_version: None,
            ..result("sha256:never", "", 1, findings("h", &[]))
        },
    ])
    .await
    .unwrap();
    let mut c = s.rematch_candidates(50, "v2", 0).await.unwrap();
    c.sort();
    assert_eq!(c, ["sha256:never", "sha256:recent"]);
    // Same version, result newer than the cut: only the never matched.
    let c = s.rematch_candidates(50, "v1", 100).await.unwrap();
    assert_eq!(c, ["sha256:never"]);
    let mut c = s.rematch_candidates(50, "v1", 101).await.unwrap();
    c.sort();
    assert_eq!(c, ["sha256:never", "sha256:recent"]);
}

pub async fn forget_drops_an_image_with_its_last_repository(s: State) {
    s.enqueue(job("one", "sha256:a", 1)).await.unwrap();
    s.enqueue(job("two", "sha256:a", 2)).await.unwrap();
    s.put_inventory("sha256:a", 1, b"{}".to_vec(), &[])
        .await
        .unwrap();
    s.save_results(vec![result("sha256:a", "v", 3, findings("h", &[]))])
        .await
        .unwrap();
    s.forget("one", "sha256:a").await.unwrap();
    assert!(s.image("sha256:a").await.unwrap().is_some());
    assert_eq!(s.repos_of("sha256:a").await.unwrap(), ["two"]);
    s.forget("two", "sha256:a").await.unwrap();
    assert!(s.image("sha256:a").await.unwrap().is_none());
    assert!(s.result("sha256:a").await.unwrap().is_none());
    assert!(s.inventory("sha256:a").await.unwrap().is_none());
}

pub async fn tag_history_tells_the_previous_digest(s: State) {
    s.record_tag("r", "latest", "sha256:1", 1).await.unwrap();
    s.record_tag("r", "latest", "sha256:1", 2).await.unwrap();
    s.record_tag("r", "latest", "sha256:2", 3).await.unwrap();
    s.record_tag("r", "v1", "sha256:2", 4).await.unwrap();
    assert_eq!(
        s.previous_tag_digests("sha256:2").await.unwrap(),
        vec![(
            "r".to_string(),
            "latest".to_string(),
            "sha256:1".to_string()
        )]
    );
    assert!(s.previous_tag_digests("sha256:1").await.unwrap().is_empty());
}

pub async fn generations_move_with_writes(s: State) {
    let g0 = s.generation().await.unwrap();
    let v0 = s.verdict_generation().await.unwrap();
    s.enqueue(job("r", "sha256:a", 1)).await.unwrap();
    let (g1, v1) = (
        s.generation().await.unwrap(),
        s.verdict_generation().await.unwrap(),
    );
    assert!(g1 > g0 && v1 > v0, "an enqueue moves both");

    // Pulls, tag history, usage, meta: the generation only.
    s.record_pulls(&[("sha256:a".into(), 5)]).await.unwrap();
    s.record_tag("r", "t", "sha256:a", 5).await.unwrap();
    s.count_usage("sha256:a", "r", "2026-01", 5).await.unwrap();
    s.set_meta("trend", "[]").await.unwrap();
    let (g2, v2) = (
        s.generation().await.unwrap(),
        s.verdict_generation().await.unwrap(),
    );
    assert!(g2 > g1, "quiet writes move the generation");
    assert_eq!(v2, v1, "quiet writes leave the verdict generation");

    // Reads and writes that change nothing move nothing.
    s.image("sha256:a").await.unwrap();
    s.set_status("sha256:none", status::DONE, None, 6)
        .await
        .unwrap();
    assert_eq!(s.generation().await.unwrap(), g2);

    s.set_status("sha256:a", status::DONE, None, 7)
        .await
        .unwrap();
    assert!(s.verdict_generation().await.unwrap() > v2);
}

pub async fn inventories_are_read_many_at_once(s: State) {
    assert!(s.inventories(&[]).await.unwrap().is_empty());
    // More than one bound list's worth, stored out of order.
    let n = 1_300;
    for i in (0..n).rev() {
        if i % 7 != 3 {
            s.put_inventory(&format!("sha256:{i:05}"), i % 5, vec![i as u8, 1], &[])
                .await
                .unwrap();
        }
    }
    let mut asked: Vec<String> = (0..n).map(|i| format!("sha256:{i:05}")).collect();
    asked.reverse();
    asked.push("sha256:none".into());
    asked.push("sha256:00010".into());
    let got = s.inventories(&asked).await.unwrap();
    let want: Vec<(String, StoredInventory)> = (0..n)
        .rev()
        .filter(|i| i % 7 != 3)
        .map(|i| {
            (
                format!("sha256:{i:05}"),
                StoredInventory {
                    catalog_version: i % 5,
                    data: vec![i as u8, 1],
                },
            )
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    // Each agrees with the one-at-a-time read.
    for (d, inv) in got.iter().step_by(97) {
        assert_eq!(s.inventory(d).await.unwrap().as_ref(), Some(inv));
    }
}

pub async fn inventories_and_layer_cache(s: State) {
    assert!(s.inventory("sha256:a").await.unwrap().is_none());
    assert!(s.incomplete("sha256:a").await.unwrap().is_empty());
    let why = vec!["layer sha256:l: unreadable".to_string()];
    s.put_inventory("sha256:a", 3, vec![1, 2, 3], &why)
        .await
        .unwrap();
    assert_eq!(
        s.inventory("sha256:a").await.unwrap(),
        Some(StoredInventory {
            catalog_version: 3,
            data: vec![1, 2, 3]
        })
    );
    assert_eq!(s.incomplete("sha256:a").await.unwrap(), why);
    // Stored again complete: the reasons go with the old row.
    s.put_inventory("sha256:a", 4, vec![4], &[]).await.unwrap();
    assert!(s.incomplete("sha256:a").await.unwrap().is_empty());
    assert_eq!(
        s.inventory("sha256:a")
            .await
            .unwrap()
            .unwrap()
            .catalog_version,
        4
    );

    s.layer_cache_put("sha256:l", 7, vec![9, 9], 1)
        .await
        .unwrap();
    assert_eq!(
        s.layer_cache_get("sha256:l", 7).await.unwrap(),
        Some(vec![9, 9])
    );
    assert_eq!(s.layer_cache_get("sha256:l", 8).await.unwrap(), None);
    s.layer_cache_put("sha256:l", 7, vec![8], 2).await.unwrap();
    assert_eq!(
        s.layer_cache_get("sha256:l", 7).await.unwrap(),
        Some(vec![8])
    );
    s.clear_layer_cache().await.unwrap();
    assert_eq!(s.layer_cache_get("sha256:l", 7).await.unwrap(), None);
}

pub async fn exemptions_and_webhooks(s: State) {
    for (id, at) in [("e2", 2), ("e1", 1)] {
        s.add_exemption(&ExemptionRow {
            id: id.into(),
            data: format!("{{\"id\":\"{id}\"}}"),
            created_at: at,
        })
        .await
        .unwrap();
    }
    let ids: Vec<_> = s
        .exemptions()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["e1", "e2"]);
    assert!(s.delete_exemption("e1").await.unwrap());
    assert!(!s.delete_exemption("e1").await.unwrap());
    assert_eq!(s.exemptions().await.unwrap()[0].data, "{\"id\":\"e2\"}");

    let w = Webhook {
        id: "w1".into(),
        url: "http://127.0.0.1:1/hook".into(),
        secret: "s3cret".into(),
        repository: Some("team/*".into()),
        min_severity: Some("high".into()),
        created_at: 1,
    };
    s.add_webhook(&w).await.unwrap();
    assert!(
        !format!("{w:?}").contains("s3cret"),
        "Debug hides the secret"
    );
    assert_eq!(s.webhooks().await.unwrap(), vec![w]);
}

fn delivery(id: &str, webhook: &str, at: i64) -> Delivery {
    Delivery {
        id: id.into(),
        webhook_id: webhook.into(),
        event: "image.unhealthy".into(),
        digest: Some("sha256:a".into()),
        repository: Some("team/app".into()),
        state: "ignored".into(),
        attempts: 99,
        last_status: None,
        last_error: None,
        created_at: at,
        next_attempt_at: at,
        delivered_at: None,
        payload: "{}".into(),
    }
}

pub async fn deliveries_and_notifications(s: State) {
    for id in ["w1", "w2"] {
        s.add_webhook(&Webhook {
            id: id.into(),
            url: "http://127.0.0.1:1/".into(),
            secret: "x".into(),
            repository: None,
            min_severity: None,
            created_at: 1,
        })
        .await
        .unwrap();
    }
    s.add_delivery(&delivery("d1", "w1", 10)).await.unwrap();
    s.add_delivery(&delivery("d2", "w1", 20)).await.unwrap();
    s.add_delivery(&delivery("d3", "w2", 30)).await.unwrap();
    assert_eq!(s.next_delivery_at().await.unwrap(), Some(10));
    let due: Vec<_> = s
        .due_deliveries(20, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.state, d.attempts))
        .collect();
    assert_eq!(
        due,
        [
            ("d1".to_string(), "pending".to_string(), 0),
            ("d2".to_string(), "pending".to_string(), 0)
        ]
    );
    s.delivery_attempted(&DeliveryAttempt {
        id: "d1".into(),
        delivered: true,
        status: Some(204),
        error: None,
        next: None,
        now: 11,
    })
    .await
    .unwrap();
    s.delivery_attempted(&DeliveryAttempt {
        id: "d2".into(),
        delivered: false,
        status: Some(500),
        error: Some("HTTP 500".into()),
        next: Some(40),
        now: 21,
    })
    .await
    .unwrap();
    let d: Vec<_> = s.deliveries(Some("w1"), 10).await.unwrap();
    assert_eq!(d[0].id, "d2", "newest first");
    assert_eq!(
        (
            d[0].state.as_str(),
            d[0].attempts,
            d[0].last_status,
            d[0].next_attempt_at
        ),
        ("pending", 1, Some(500), 40)
    );
    assert_eq!(
        (d[1].state.as_str(), d[1].delivered_at),
        ("delivered", Some(11))
    );
    assert_eq!(s.deliveries(None, 1).await.unwrap()[0].id, "d3");
    assert_eq!(s.next_delivery_at().await.unwrap(), Some(30));

    // Deleting a webhook fails its pending deliveries.
    assert!(s.delete_webhook("w1").await.unwrap());
    let d2 = s
        .deliveries(Some("w1"), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == "d2")
        .unwrap();
    assert_eq!(
        (d2.state.as_str(), d2.last_error.as_deref()),
        ("failed", Some("webhook deleted"))
    );
    assert!(!s.delete_webhook("w1").await.unwrap());

    s.mark_notified("sha256:a", &["k1".into(), "k2".into()], 5)
        .await
        .unwrap();
    s.mark_notified("sha256:a", &["k1".into()], 6)
        .await
        .unwrap();
    let keys = s.notified_keys("sha256:a").await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains("k2"));
}

pub async fn usage_is_counted_once(s: State) {
    assert!(s.count_usage("sha256:a", "r", "2026-01", 1).await.unwrap());
    assert!(!s.count_usage("sha256:a", "r", "2026-02", 2).await.unwrap());
    assert!(s.count_usage("sha256:b", "r", "2026-02", 3).await.unwrap());
    assert!(s.count_usage("sha256:c", "q", "2026-02", 3).await.unwrap());
    assert!(s.count_usage("sha256:d", "q", "2026-04", 3).await.unwrap());
    let rows = s.usage("2026-01", "2026-03").await.unwrap();
    let rows: Vec<_> = rows
        .into_iter()
        .map(|u| (u.month, u.repository, u.images))
        .collect();
    assert_eq!(
        rows,
        [
            ("2026-01".to_string(), "r".to_string(), 1),
            ("2026-02".to_string(), "q".to_string(), 1),
            ("2026-02".to_string(), "r".to_string(), 1),
        ]
    );
}

pub async fn vex_and_sboms(s: State) {
    let row = VexRow {
        key: "api:doc".into(),
        doc_id: "doc".into(),
        subject: None,
        source: "alice".into(),
        recorded_by: Some("alice".into()),
        not_applied: None,
        data: serde_json::json!({"statements": []}),
        created_at: 5,
    };
    assert_eq!(s.put_vex(&row).await.unwrap(), None);
    let newer = VexRow {
        created_at: 6,
        not_applied: Some("untrusted".into()),
        ..row.clone()
    };
    assert_eq!(s.put_vex(&newer).await.unwrap(), Some(row));
    let other = VexRow {
        key: "referrer:sha256:v".into(),
        subject: Some("sha256:a".into()),
        created_at: 1,
        ..newer.clone()
    };
    s.put_vex(&other).await.unwrap();
    let keys: Vec<_> = s
        .vex_documents()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.key)
        .collect();
    assert_eq!(keys, ["referrer:sha256:v", "api:doc"]);
    assert_eq!(
        s.vex_document("api:doc").await.unwrap(),
        Some(newer.clone())
    );
    assert_eq!(s.delete_vex("api:doc").await.unwrap(), Some(newer));
    assert_eq!(s.delete_vex("api:doc").await.unwrap(), None);

    let sbom = SbomRow {
        subject: "sha256:a".into(),
        repo: "r".into(),
        digest: "sha256:sbom1".into(),
        catalog_version: 2,
    };
    s.put_sbom(&sbom, 1).await.unwrap();
    let replaced = SbomRow {
        digest: "sha256:sbom2".into(),
        ..sbom.clone()
    };
    s.put_sbom(&replaced, 2).await.unwrap();
    assert_eq!(s.sbom("sha256:a").await.unwrap(), Some(replaced));
    assert_eq!(s.sbom("sha256:b").await.unwrap(), None);
    let attached = s.attached_sboms().await.unwrap();
    assert_eq!(attached.len(), 1);
    assert!(attached.contains("sha256:sbom2"));
}

pub async fn prune_keeps_what_is_still_needed(s: State) {
    // An image that names layer l1.
    s.enqueue(job("r", "sha256:img", 1)).await.unwrap();
    s.set_shape("sha256:img", "image", &["sha256:l1".into()], &[])
        .await
        .unwrap();
    s.add_webhook(&Webhook {
        id: "w".into(),
        url: "http://127.0.0.1:1/".into(),
        secret: "x".into(),
        repository: None,
        min_severity: None,
        created_at: 1,
    })
    .await
    .unwrap();
    s.add_delivery(&delivery("old-done", "w", 1)).await.unwrap();
    s.add_delivery(&delivery("old-pending", "w", 1))
        .await
        .unwrap();
    s.add_delivery(&delivery("new-done", "w", 100))
        .await
        .unwrap();
    for id in ["old-done", "new-done"] {
        s.delivery_attempted(&DeliveryAttempt {
            id: id.into(),
            delivered: true,
            status: Some(200),
            error: None,
            next: None,
            now: 100,
        })
        .await
        .unwrap();
    }
    s.mark_notified("sha256:img", &["old".into()], 1)
        .await
        .unwrap();
    s.mark_notified("sha256:img", &["new".into()], 100)
        .await
        .unwrap();
    s.mark_notified("sha256:gone", &["new".into()], 100)
        .await
        .unwrap();
    for (i, d) in ["sha256:1", "sha256:2", "sha256:3", "sha256:4"]
        .iter()
        .enumerate()
    {
        s.record_tag("r", "t", d, 1 + i as i64).await.unwrap();
    }
    s.layer_cache_put("sha256:l1", 1, vec![1], 1).await.unwrap();
    s.layer_cache_put("sha256:l2", 1, vec![1], 1).await.unwrap();
    s.layer_cache_put("sha256:l3", 1, vec![1], 100)
        .await
        .unwrap();
    s.layer_cache_put("sha256:l1", 0, vec![1], 100)
        .await
        .unwrap();

    let pruned = s
        .prune(&PruneBefore {
            deliveries: 50,
            notified: 50,
            tag_history: 50,
            layer_cache: 50,
            catalog_version: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        pruned,
        Pruned {
            deliveries: 1,
            notified: 2,
            tag_history: 2,
            layer_cache: 2
        }
    );
    assert_eq!(pruned.total(), 7);
    let left: Vec<_> = s
        .deliveries(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&"old-done".to_string()));
    assert_eq!(
        s.notified_keys("sha256:img").await.unwrap(),
        ["new".to_string()].into_iter().collect()
    );
    // The two newest moves of the tag stay: 4's predecessor is 3.
    assert_eq!(
        s.previous_tag_digests("sha256:4").await.unwrap()[0].2,
        "sha256:3"
    );
    assert!(s.layer_cache_get("sha256:l1", 1).await.unwrap().is_some());
    assert!(s.layer_cache_get("sha256:l2", 1).await.unwrap().is_none());
    assert!(s.layer_cache_get("sha256:l3", 1).await.unwrap().is_some());
    assert!(s.layer_cache_get("sha256:l1", 0).await.unwrap().is_none());
}

pub async fn patch_jobs(s: State) {
    let row = |id: &str, state: &str, at: i64| PatchJobRow {
        id: id.into(),
        repo: "r".into(),
        state: state.into(),
        data: format!("{{\"id\":\"{id}\",\"state\":\"{state}\"}}"),
        updated_at: at,
    };
    s.save_patch_job(&row("p1", "running", 1)).await.unwrap();
    s.save_patch_job(&row("p2", "running", 2)).await.unwrap();
    s.save_patch_job(&row("p1", "done", 3)).await.unwrap();
    assert_eq!(
        s.patch_job("p1").await.unwrap().as_deref(),
        Some("{\"id\":\"p1\",\"state\":\"done\"}")
    );
    assert_eq!(s.patch_job("p9").await.unwrap(), None);
    assert_eq!(s.patch_jobs_in_state("running").await.unwrap().len(), 1);
    assert_eq!(s.patch_jobs_in_state("done").await.unwrap().len(), 1);
}

pub async fn meta_values(s: State) {
    assert_eq!(s.meta("trend").await.unwrap(), None);
    s.set_meta("trend", "[1]").await.unwrap();
    s.set_meta("trend", "[1,2]").await.unwrap();
    assert_eq!(s.meta("trend").await.unwrap().as_deref(), Some("[1,2]"));
}
