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
fn script_reads_only_documented_endpoints() {
    let js = include_str!("../assets/app.js");
    let doc = serde_json::to_value(web::api::ApiDoc::openapi()).unwrap();
    let paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    // Every `get("/x...")` / get(`/x/${...}`) call: take the literal prefix up to `?` or `${`.
    let mut checked = 0;
    for call in js.split("get(").skip(1) {
        let quote = call.chars().next().unwrap();
        if !matches!(quote, '"' | '`') {
            continue;
        }
        let lit: String = call[1..].chars().take_while(|&c| c != quote).collect();
        let prefix = lit.split(['?', '$']).next().unwrap();
        let full = format!("/api/v1{}", prefix.trim_end_matches('/'));
        let templated = lit.contains("${");
        let found = paths.iter().any(|p| {
            if templated {
                // `/images/${digest}` matches `/api/v1/images/{digest}`.
                p.starts_with(&format!("{full}/{{"))
            } else {
                *p == full
            }
        });
        assert!(
            found,
            "app.js reads {lit:?}, which the OpenAPI document does not list"
        );
        checked += 1;
    }
    assert!(
        checked >= 5,
        "expected the script's API calls to be found, got {checked}"
    );
}
