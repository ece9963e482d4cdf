//! The dashboard is served, and every API path its script reads exists in
//! the OpenAPI document (so the page cannot drift from the API).

mod common;

use utoipa::OpenApi;

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, web::dashboard::router())
            .await
            .unwrap()
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn serves_page_and_assets_with_types() {
    let base = serve().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(root.status(), 307);
    assert_eq!(root.headers()["location"], "/ui/");
    for (path, ty, needle) in [
        ("/ui/", "text/html", "/ui/app.js"),
        ("/ui/login", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "/api/v1"),
        (
            "/ui/pages.js",
            "text/javascript",
            "waiting for a vulnerability database",
        ),
        ("/ui/style.css", "text/css", ".sev.critical"),
    ] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        // Nothing the page loads may come from elsewhere.
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self'"), "{path}: {csp}");
        assert!(ct.starts_with(ty), "{path}: {ct}");
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
    let missing = client
        .get(format!("{base}/ui/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[test]
fn script_calls_only_documented_endpoints() {
    let js = concat!(
        include_str!("../assets/app.js"),
        include_str!("../assets/pages.js")
    );
    let doc = serde_json::to_value(web::api::ApiDoc::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    // Every `get("/x...")` / post(`/x/${...}`) call (the script's helpers
    // per method): take the literal prefix up to `?` or `${`.
    let mut checked = 0;
    for (helper, method) in [
        ("get(", "get"),
        ("post(", "post"),
        ("put(", "put"),
        ("del(", "delete"),
    ] {
        for call in js.split(helper).skip(1) {
            let quote = call.chars().next().unwrap();
            if !matches!(quote, '"' | '`') {
                continue;
            }
            let lit: String = call[1..].chars().take_while(|&c| c != quote).collect();
            let prefix = lit.split(['?', '$']).next().unwrap();
            let full = format!("/api/v1{}", prefix.trim_end_matches('/'));
            // `/images${qs(...)}` adds a query string, not a path segment.
            let templated = lit.contains("${") && !lit[prefix.len()..].starts_with("${qs(");
            let found = paths.iter().any(|(p, ops)| {
                let path_ok = if templated {
                    // `/images/${digest}` matches `/api/v1/images/{digest}`.
                    p.starts_with(&format!("{full}/{{"))
                } else {
                    *p == full
                };
                path_ok && ops.get(method).is_some()
            });
            assert!(
                found,
                "app.js calls {method} {lit:?}, which the OpenAPI document does not list"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 15,
        "expected the script's API calls to be found, got {checked}"
    );
}

/// The contract the API's session endpoints rely on: the token goes out
/// on writes, and sign-in uses JSON.
#[test]
fn script_sends_the_csrf_token_on_writes() {
    let js = include_str!("../assets/app.js");
    assert!(js.contains(r#"if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;"#));
    assert!(js.contains(r#"post("/auth/login", { username: v.username, password: v.password })"#));
    assert!(js.contains(r#"headers["Content-Type"] = "application/json""#));
    // Only the helpers talk to the API (so none skips the token), apart
    // from the one read of who is signed in.
    assert_eq!(
        js.matches("fetch(").count(),
        2,
        "request() and loadSession()"
    );
    assert!(
        !js.contains("localStorage") && !js.contains("sessionStorage"),
        "the token stays in memory"
    );
    assert!(
        !js.contains("http://") && !js.contains("https://"),
        "no external resources"
    );
    let pages = include_str!("../assets/pages.js");
    assert!(
        !pages.contains("fetch("),
        "pages read through app.js's helpers"
    );
    assert!(
        !pages.contains("http://") && !pages.contains("https://"),
        "no external resources"
    );
}

// ---- the browsing API against a real registry and real images ----

mod browse {
    use assess::{ManualClock, Service};
    use axum::Router;
    use serde_json::Value;
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn vulndata() -> PathBuf {
        std::env::var_os("DRYDOCK_VULNDATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("tests/fixtures/vulndata"))
    }

    /// The test images' layout, built when missing; `None` (a skip) only
    /// outside CI.
    fn prerequisites() -> Option<PathBuf> {
        let skip = |why: &str| {
            assert!(std::env::var_os("CI").is_none(), "{why} (required in CI)");
            eprintln!("{why}; skipping");
            None
        };
        if Command::new("skopeo").arg("--version").output().is_err() {
            return skip("skopeo not installed");
        }
        if !vulndata().join("osv/Debian/all.zip").exists() {
            return skip("vulndata unavailable");
        }
        let out = std::env::var_os("DRYDOCK_TEST_IMAGES")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target/test-images"));
        let layout = out.join("oci");
        let has = |p: &Path| {
            std::fs::read_to_string(p.join("index.json")).is_ok_and(|s| {
                ["bookworm-base", "python-app", "multiarch"]
                    .iter()
                    .all(|t| s.contains(&format!("\"{t}\"")))
            })
        };
        if !has(&layout) {
            let _ = Command::new("bash")
                .arg(root().join("scripts/test-images.sh"))
                .env("DRYDOCK_TEST_IMAGES", &out)
                .status();
        }
        if !has(&layout) {
            return skip("test images unavailable");
        }
        std::fs::canonicalize(layout).ok()
    }

    struct Server {
        addr: SocketAddr,
        http: reqwest::Client,
        _service: Service,
    }

    impl Server {
        async fn start(data: &Path) -> Server {
            let registry = registry::Registry::open(crate::common::registry_options(data)).unwrap();
            let handle = vulndb::Handle::open_with_interval(data, Duration::from_millis(100));
            let mut opts = crate::common::assess_options(data);
            opts.workers = 2;
            // The database appearing is noticed by the scheduler's tick.
            opts.tick = Duration::from_millis(200);
            let service = assess::start_with_registry(
                opts,
                registry.clone(),
                handle,
                catalog::Limits::default(),
                Arc::new(ManualClock::new()),
            )
            .await
            .unwrap();
            let app: Router = registry
                .router()
                .merge(web::router(web::State::new(service.clone())));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            Server {
                addr,
                http: reqwest::Client::new(),
                _service: service,
            }
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            let r = self
                .http
                .get(format!("http://{}{path}", self.addr))
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json().await.unwrap_or(Value::Null))
        }

        fn push(&self, layout: &Path, tag: &str, dest: &str) {
            let out = Command::new("skopeo")
                .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:{tag}", layout.display()))
                .arg(format!("docker://127.0.0.1:{}/{dest}", self.addr.port()))
                .output()
                .expect("run skopeo");
            assert!(
                out.status.success(),
                "skopeo: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        /// Poll `path` until `check` holds (at most two minutes).
        async fn until(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let (st, v) = self.get(path).await;
                if st == 200 && check(&v) {
                    return v;
                }
                assert!(Instant::now() < deadline, "{path}: still {v}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn digest_of(layout: &Path, tag: &str) -> String {
        let index: Value =
            serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap())
                .unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn items(v: &Value) -> Vec<Value> {
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Before any database exists an assessed image is "waiting for a
    /// vulnerability database" — never healthy, in the image view, the
    /// lists and the overview's counts; once a database is imported the
    /// same image is matched and its findings appear, without a push.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_health_is_claimed_before_a_database_exists() {
        let Some(layout) = tokio::task::spawn_blocking(prerequisites).await.unwrap() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let s = Server::start(dir.path()).await;
        s.push(&layout, "bookworm-base", "library/base:12");
        let digest = digest_of(&layout, "bookworm-base");

        let view = s
            .until(&format!("/api/v1/images/{digest}"), |v| {
                v["status"] == "done"
            })
            .await;
        assert!(
            view["health"].is_null(),
            "no database, yet a verdict: {}",
            view["health"]
        );
        let list = s.get("/api/v1/browse/images").await.1;
        let entry = &items(&list)[0];
        assert_eq!(entry["digest"], digest.as_str());
        assert_eq!(entry["state"], "waiting_for_database", "{entry}");
        assert!(entry["summary"].is_null());
        let overview = s.get("/api/v1/overview").await.1;
        assert_eq!(overview["images"]["waiting_for_database"], 1, "{overview}");
        assert!(overview["images"]["healthy"].is_null(), "{overview}");
        assert_eq!(overview["database"]["available"], false);
        // The old listing claims no health either.
        let old = s.get("/api/v1/images").await.1;
        assert!(old[0]["health"].is_null(), "{old}");

        let data = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            vulndb::import(&data, &[vulndata().join("osv/Debian/all.zip")], &mut |_| {}).unwrap()
        })
        .await
        .unwrap();
        let list = s
            .until("/api/v1/browse/images", |v| {
                items(v)
                    .first()
                    .is_some_and(|e| e["state"] != "waiting_for_database")
            })
            .await;
        let entry = &items(&list)[0];
        assert!(
            matches!(entry["state"].as_str(), Some("healthy" | "unhealthy")),
            "{entry}"
        );
        assert!(entry["db_version"].is_string());
        assert!(entry["summary"]["total"].as_u64().unwrap() > 0, "{entry}");
        let vulns = s.get("/api/v1/vulnerabilities?limit=5").await.1;
        assert!(vulns["total"].as_u64().unwrap() > 0, "{vulns}");
        let view = s.get(&format!("/api/v1/images/{digest}")).await.1;
        assert!(view["health"]["status"].is_string(), "{view}");
    }

    /// Paging, sorting, filtering and counting as a user sees images: an
    /// index is one image, an overwritten tag leaves an untagged digest
    /// that is listed apart, cursors walk every entry once, vulnerabilities
    /// are listed once with their image count, and answers are compressed
    /// and revalidated with ETags.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_are_paged_filtered_and_counted_as_users_see_them() {
        let Some(layout) = tokio::task::spawn_blocking(prerequisites).await.unwrap() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            vulndb::import(
                &data,
                &[
                    vulndata().join("osv/Debian/all.zip"),
                    vulndata().join("osv/PyPI/all.zip"),
                ],
                &mut |_| {},
            )
            .unwrap()
        })
        .await
        .unwrap();
        let s = Server::start(dir.path()).await;
        // team/app:v1 is python-app, then overwritten by bookworm-base.
        s.push(&layout, "python-app", "team/app:v1");
        s.push(&layout, "bookworm-base", "team/app:v1");
        s.push(&layout, "bookworm-base", "team/base:12");
        s.push(&layout, "multiarch", "team/multi:latest");
        let all_done = |v: &Value| {
            items(v).iter().all(|e| {
                !matches!(
                    e["state"].as_str(),
                    Some("not_assessed" | "assessing" | "waiting_for_database")
                )
            })
        };
        let tagged = s
            .until("/api/v1/browse/images?limit=500", |v| {
                v["total"] == 2 && all_done(v)
            })
            .await;
        // bookworm-base (two tags, one entry) and the index (one entry
        // holding its two platforms).
        let index = items(&tagged)
            .into_iter()
            .find(|e| e["kind"] == "index")
            .expect("the index is listed");
        assert_eq!(index["platforms"].as_array().unwrap().len(), 2, "{index}");
        assert_eq!(index["tags"], serde_json::json!(["team/multi:latest"]));
        let base = items(&tagged)
            .into_iter()
            .find(|e| e["kind"] == "image")
            .unwrap();
        let mut tags: Vec<String> = serde_json::from_value(base["tags"].clone()).unwrap();
        tags.sort();
        assert_eq!(tags, ["team/app:v1", "team/base:12"]);
        assert!(base["size"].as_u64().unwrap() > 1_000_000, "{base}");

        let untagged = s
            .until("/api/v1/browse/images?untagged=true", |v| {
                v["total"] == 1 && all_done(v)
            })
            .await;
        assert_eq!(
            items(&untagged)[0]["digest"],
            digest_of(&layout, "python-app").as_str()
        );
        let overview = s.get("/api/v1/overview").await.1;
        assert_eq!(overview["images_total"], 2, "{overview}");
        assert_eq!(overview["untagged"], 1, "{overview}");

        // A cursor walk sees each entry once, in order.
        let mut seen = Vec::new();
        let mut next = String::new();
        loop {
            let path = format!(
                "/api/v1/browse/images?limit=1&sort=name&order=asc{}",
                if next.is_empty() {
                    String::new()
                } else {
                    format!("&cursor={next}")
                }
            );
            let (st, page) = s.get(&path).await;
            assert_eq!(st, 200, "{page}");
            for e in items(&page) {
                seen.push(e["digest"].as_str().unwrap().to_string());
            }
            match page["next"].as_str() {
                Some(n) => next = n.to_string(),
                None => break,
            }
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 2);
        for bad in [
            "/api/v1/browse/images?cursor=zz",
            "/api/v1/browse/images?state=sick",
            "/api/v1/browse/images?limit=0",
            "/api/v1/vulnerabilities?severity=urgent",
            "/api/v1/browse/tags",
        ] {
            let (st, v) = s.get(bad).await;
            assert_eq!(st, 400, "{bad}: {v}");
            assert!(v["error"]["message"].is_string(), "{bad}: {v}");
        }

        // Search and repositories → tags.
        let found = s.get("/api/v1/browse/images?q=MULTI").await.1;
        assert_eq!(found["total"], 1);
        let repos = s.get("/api/v1/browse/repositories?q=team").await.1;
        assert_eq!(repos["total"], 3, "{repos}");
        let app = items(&repos)
            .into_iter()
            .find(|r| r["name"] == "team/app")
            .unwrap();
        assert_eq!(
            (app["tags"].clone(), app["untagged"].clone()),
            (1.into(), 1.into())
        );
        let t = s.get("/api/v1/browse/tags?repository=team/multi").await.1;
        let tag = &items(&t)[0];
        assert_eq!(tag["tag"], "latest");
        assert_eq!(tag["platforms"].as_array().unwrap().len(), 2, "{tag}");
        assert!(tag["state"].is_string());

        // Vulnerabilities: each once, "high and above" holds only those.
        let v = s.get("/api/v1/vulnerabilities?limit=500").await.1;
        let ids: Vec<String> = items(&v)
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect();
        assert!(!ids.is_empty());
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        let high = s
            .get("/api/v1/vulnerabilities?severity=high%2B&limit=500")
            .await
            .1;
        assert!(
            items(&high)
                .iter()
                .all(|x| matches!(x["severity"].as_str(), Some("high" | "critical"))),
            "{high}"
        );
        // One present in both bookworm-base and the index's platforms
        // counts two images; its page lists each repository once.
        let shared = items(&v)
            .into_iter()
            .find(|x| x["images"] == 2)
            .expect("a vulnerability of the shared base");
        let id = shared["id"].as_str().unwrap();
        let (st, detail) = s.get(&format!("/api/v1/vulnerabilities/{id}")).await;
        assert_eq!(st, 200, "{detail}");
        let repos: Vec<String> = detail["affected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["repository"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(repos.iter().collect::<HashSet<_>>().len(), repos.len());
        assert!(repos.iter().any(|r| r == "team/multi") && repos.iter().any(|r| r == "team/base"));
        assert!(detail["references"].is_array());
        let (st, _) = s.get("/api/v1/vulnerabilities/CVE-0000-00000").await;
        assert_eq!(st, 404);

        // Compressed when asked; 304 for an unchanged answer.
        let url = format!("http://{}/api/v1/vulnerabilities?limit=500", s.addr);
        let r = s
            .http
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], "gzip");
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let again = s
            .http
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
        let r = s
            .http
            .get(format!("http://{}/ui/app.js", s.addr))
            .header("accept-encoding", "br")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], "br");

        // Settings: the configuration, for administrators (everyone
        // without access control).
        let (st, set) = s.get("/api/v1/settings").await;
        assert_eq!(st, 200, "{set}");
        assert!(set["policy"]["default"]["threshold"].is_string(), "{set}");
        let (st, q) = s.get("/api/v1/browse/queue").await;
        assert_eq!(st, 200);
        assert!(q["failed"].as_array().unwrap().is_empty(), "{q}");
    }
}
