//! The dashboard is served, and every API path its script reads exists in
//! the OpenAPI document (so the page cannot drift from the API).

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
        ("/ui/style.css", "text/css", ".sev.critical"),
    ] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
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
    let js = include_str!("../assets/app.js");
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
            let templated = lit.contains("${");
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
}
