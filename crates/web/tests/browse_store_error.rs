//! The browse endpoints over real HTTP on 127.0.0.1 when the assessor's
//! store cannot be read (`BrowseError::Store`): the images' table is
//! dropped under the running server, as a damaged or tampered database
//! would leave it, before anything was judged. Every endpoint that reads
//! the judged snapshot answers 500 with the API's generic error body; the
//! database's message (SQL, the table's name, the file's path) stays in
//! the server's log.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_unreadable_store_is_a_500_that_names_nothing_internal() {
    if !backend::embedded_only("damages the assessor's SQLite file, assess.db") {
        return;
    }
    let env = Env::start().await;
    let layer = gzip_layer(&[(
        "usr/lib/python3/dist-packages/django-1.2.dist-info/METADATA".to_string(),
        b"Metadata-Version: 2.1\nName: django\nVersion: 1.2\n\n".to_vec(),
    )]);
    let digest = env.push("team/app", &layer, &["v1"]).await;
    // Assessed (the worker wrote its rows), yet not judged: the findings
    // page reads the image's own result, and no browse endpoint (nor the
    // image page, which counts from the judging) was asked, so no judging
    // is cached to be served instead.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (st, v) = env.get(&format!("/api/v1/images/{digest}/findings")).await;
        if st == 200 && v["total"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never assessed: {st} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.service.dashboard_images_judged(), 0);

    let data_dir = env.service.options().data_dir.clone();
    storage::assess::sqlite_execute_for_tests(&data_dir.join("assess.db"), "DROP TABLE images")
        .unwrap();

    let internal = json!({"error": {"code": "INTERNAL", "message": "internal error"}});
    for path in [
        "/api/v1/browse/images",
        "/api/v1/browse/repositories",
        "/api/v1/browse/tags?repository=team/app",
        "/api/v1/vulnerabilities",
        "/api/v1/vulnerabilities/PYSEC-2010-1",
        "/api/v1/overview",
    ] {
        let (st, body) = env.get(path).await;
        assert_eq!(st, 500, "{path}: {body}");
        assert_eq!(body, internal, "{path}");
        let text = body.to_string().to_lowercase();
        for internal_word in [
            "table",
            "images",
            "sql",
            "assess.db",
            "judge",
            data_dir.to_str().unwrap(),
        ] {
            assert!(
                !text.contains(&internal_word.to_lowercase()),
                "{path} leaks {internal_word:?}: {body}"
            );
        }
    }
}
