//! Server-side paths through `POST /api/v1/imports`: refused unless the
//! caller is an administrator and the path lies inside a configured import
//! directory; a failed job's error names the problem and never quotes the
//! file; callers need push on the target and see only jobs they may pull.

mod common;

use axum::extract::Request;
use axum::middleware::Next;
use import::{ImportConfig, Importer, JobState, JobStatus};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

struct Server {
    importer: Importer,
    base: String,
    task: tokio::task::JoinHandle<()>,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Principals the test middleware puts into requests, picked by the
/// `x-test-as` header; none given: no principal at all (no auth layer).
#[derive(Clone)]
struct Principals {
    admin: auth::Principal,
    dev: auth::Principal,
    anonymous: auth::Principal,
    _store: std::sync::Arc<tempfile::TempDir>,
}

fn principals() -> Principals {
    let store = tempfile::tempdir().unwrap();
    let ac = auth::AccessControl::open(
        store.path(),
        auth::Settings {
            bindings: vec![
                auth::Binding {
                    id: String::new(),
                    subject: auth::Subject::User("dev".into()),
                    pattern: "team/**".into(),
                    actions: vec![auth::Action::Pull, auth::Action::Push],
                },
                auth::Binding {
                    id: String::new(),
                    subject: auth::Subject::Anonymous,
                    pattern: "public/**".into(),
                    actions: vec![auth::Action::Pull],
                },
            ],
            ..Default::default()
        },
    )
    .unwrap();
    let root = auth::Principal::unrestricted();
    ac.add_user(&root, "dev", "a-long-test-password-1", &[])
        .unwrap();
    Principals {
        admin: root,
        dev: ac.as_user("dev").unwrap(),
        anonymous: ac.anonymous(None),
        _store: std::sync::Arc::new(store),
    }
}

async fn server(config: ImportConfig) -> Server {
    let data = tempfile::tempdir().unwrap();
    let reg = common::open_registry(data.path());
    let importer = Importer::new(reg.clone(), config);
    let who = principals();
    let app =
        reg.router()
            .merge(import::router(importer.clone()))
            .layer(axum::middleware::from_fn(
                move |mut req: Request, next: Next| {
                    let who = who.clone();
                    async move {
                        let p = match req.headers().get("x-test-as").map(|v| v.as_bytes()) {
                            Some(b"admin") => Some(who.admin.clone()),
                            Some(b"dev") => Some(who.dev.clone()),
                            Some(b"anonymous") => Some(who.anonymous.clone()),
                            _ => None,
                        };
                        if let Some(p) = p {
                            req.extensions_mut().insert(p);
                        }
                        next.run(req).await
                    }
                },
            ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server {
        importer,
        base,
        task,
        _data: data,
    }
}

fn confined(dirs: &[&Path]) -> ImportConfig {
    ImportConfig {
        local_dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
        // The tests' registry sources are on loopback.
        outbound: egress::EgressPolicy::allow_all(),
        ..Default::default()
    }
}

/// `POST /api/v1/imports` as `who` (`None`: no principal); status and body.
async fn post(
    s: &Server,
    who: Option<&str>,
    source: &str,
    target: &str,
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{}/api/v1/imports", s.base))
        .json(&json!({"source": source, "target": target}));
    if let Some(w) = who {
        r = r.header("x-test-as", w);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn get(s: &Server, who: Option<&str>, path: &str) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new().get(format!("{}{path}", s.base));
    if let Some(w) = who {
        r = r.header("x-test-as", w);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Poll a job over HTTP until it finishes.
async fn finished(s: &Server, id: &str) -> JobStatus {
    for _ in 0..600 {
        let (status, v) = get(s, None, &format!("/api/v1/imports/{id}")).await;
        assert_eq!(status, 200, "{v}");
        let st: JobStatus = serde_json::from_value(v).unwrap();
        if st.state.is_finished() {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

/// A plain tar archive of `files` (ustar headers, written here so the
/// test controls every byte).
fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

const MARKER: &str = "drydock-secret-marker-5f1c0b";

#[tokio::test]
async fn paths_outside_the_import_directories_are_refused_and_queue_nothing() {
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let a = allowed.path();
    std::fs::write(outside.path().join("x.tar"), tar(&[("a", b"b")])).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", a.join("passwd-link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), a.join("outside-link")).unwrap();
    let escape = format!(
        "{}/../{}/x.tar",
        a.display(),
        outside.path().file_name().unwrap().to_str().unwrap()
    );
    let s = server(confined(&[a])).await;
    for source in [
        "docker-archive:/etc/passwd".to_string(),
        "docker-archive:/proc/self/environ".to_string(),
        "oci:/proc/self".to_string(),
        format!("docker-archive:{escape}"),
        format!("docker-archive:{}/passwd-link", a.display()),
        format!("oci:{}/outside-link", a.display()),
        format!("docker-archive:{}/does-not-exist.tar", a.display()),
        "docker-archive:relative.tar".to_string(),
    ] {
        for who in [None, Some("admin")] {
            let (status, v) = post(&s, who, &source, "team/app:v1").await;
            assert_eq!(status, 400, "{source} as {who:?}: {v}");
            let msg = v["error"].as_str().unwrap();
            assert!(
                msg.contains("import directories") || msg.contains("absolute path"),
                "{source}: {msg}"
            );
            assert!(!msg.contains("root:"), "{msg}");
        }
    }
    // Nothing was queued.
    assert!(s.importer.list().is_empty());
    let (status, list) = get(&s, None, "/api/v1/imports").await;
    assert_eq!((status, list), (200, json!([])));

    // Without any import directory (the default) every server-side path
    // is refused, inside a temp dir or not.
    let none = server(ImportConfig::default()).await;
    let (status, v) = post(
        &none,
        None,
        &format!("docker-archive:{}/x.tar", outside.path().display()),
        "team/app:v1",
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().unwrap().contains("import.local_dirs"),
        "{v}"
    );
    assert!(none.importer.list().is_empty());
}

#[tokio::test]
async fn a_path_inside_an_import_directory_is_read_through_its_canonical_path() {
    let allowed = tempfile::tempdir().unwrap();
    let a = allowed.path();
    let layout = a.join("layout");
    let (manifest, _, _) =
        transport::testing::write_one_layer_layout(&layout, &[7u8; 4096], Some("v1"));
    std::os::unix::fs::symlink(&layout, a.join("alias")).unwrap();
    let s = server(confined(&[a])).await;
    let (status, v) = post(
        &s,
        Some("admin"),
        &format!("oci:{}/alias/../alias:v1", a.display()),
        "team/app:v1",
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let st = finished(&s, v["id"].as_str().unwrap()).await;
    assert_eq!(st.state, JobState::Succeeded, "{:?}", st.error);
    assert_eq!(st.manifests.last().unwrap().digest, manifest);
    let real = std::fs::canonicalize(&layout).unwrap();
    assert_eq!(st.source, format!("oci:{}:v1", real.display()));
}

#[tokio::test]
async fn job_errors_never_quote_what_they_read() {
    let allowed = tempfile::tempdir().unwrap();
    let a = allowed.path();
    let m = MARKER;
    // A text file longer than a tar header: the tar reader's own message
    // would quote its first 100 bytes as an entry name.
    let text = format!("{m}:x:0:0:root:/root:/bin/bash\n").repeat(40);
    std::fs::write(a.join("text-file"), &text).unwrap();
    std::fs::write(a.join("short-file"), format!("{m}\n")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "syntax.tar",
            tar(&[("manifest.json", format!("[{{\"{m}\" 1}}]").as_bytes())]),
        ),
        (
            "shape.tar",
            tar(&[("manifest.json", format!("[\"{m}\"]").as_bytes())]),
        ),
        (
            "missing.tar",
            tar(&[(
                "manifest.json",
                format!(
                    "[{{\"Config\":\"{m}.json\",\"RepoTags\":null,\"Layers\":[\"{m}/layer.tar\"]}}]"
                )
                .as_bytes(),
            )]),
        ),
        (
            "config.tar",
            tar(&[
                (
                    "manifest.json",
                    br#"[{"Config":"c.json","RepoTags":null,"Layers":[]}]"#,
                ),
                ("c.json", format!("{{\"rootfs\": \"{m}\"}}").as_bytes()),
            ]),
        ),
        ("no-manifest.tar", tar(&[(m, m.as_bytes())])),
    ];
    for (name, bytes) in &cases {
        std::fs::write(a.join(name), bytes).unwrap();
    }
    let bad_index = a.join("bad-index");
    std::fs::create_dir(&bad_index).unwrap();
    std::fs::write(
        bad_index.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        bad_index.join("index.json"),
        format!("{{\"schemaVersion\":2,\"manifests\":\"{m}\"}}"),
    )
    .unwrap();
    let bad_marker = a.join("bad-marker");
    std::fs::create_dir(&bad_marker).unwrap();
    std::fs::write(bad_marker.join("oci-layout"), format!("{{\"{m}\"}}")).unwrap();

    let s = server(confined(&[a])).await;
    let sources: Vec<(String, &str)> = vec![
        (
            format!("docker-archive:{}/text-file", a.display()),
            "not a tar archive",
        ),
        (
            format!("docker-archive:{}/short-file", a.display()),
            "not a tar archive",
        ),
        (
            format!("docker-archive:{}/syntax.tar", a.display()),
            "not valid JSON at line 1",
        ),
        (
            format!("docker-archive:{}/shape.tar", a.display()),
            "not of the expected shape",
        ),
        (
            format!("docker-archive:{}/missing.tar", a.display()),
            "image 0's config",
        ),
        (
            format!("docker-archive:{}/config.tar", a.display()),
            "image 0's config is JSON",
        ),
        (
            format!("docker-archive:{}/no-manifest.tar", a.display()),
            "no manifest.json",
        ),
        (
            format!("oci:{}", bad_index.display()),
            "not of the expected shape",
        ),
        (format!("oci:{}", bad_marker.display()), "not valid JSON"),
    ];
    for (source, why) in &sources {
        let (status, v) = post(&s, Some("admin"), source, "team/app:v1").await;
        assert_eq!(status, 202, "{source}: {v}");
        let st = finished(&s, v["id"].as_str().unwrap()).await;
        assert_eq!(st.state, JobState::Failed, "{source}");
        let error = st.error.unwrap();
        assert!(
            !error.contains(MARKER),
            "{source}: the error quotes the file: {error}"
        );
        assert!(!error.contains("root:/root"), "{source}: {error}");
        assert!(error.contains(why), "{source}: expected {why:?} in {error}");
    }
}

#[tokio::test]
async fn callers_need_push_on_the_target_and_see_only_what_they_may_pull() {
    let allowed = tempfile::tempdir().unwrap();
    let a = allowed.path();
    transport::testing::write_one_layer_layout(&a.join("l"), &[1u8; 1000], Some("v1"));
    let s = server(confined(&[a])).await;
    let layout = format!("oci:{}:v1", a.join("l").display());
    // An unreachable registry: the job is accepted, then fails; enough to
    // see who may start it.
    let remote = "docker://127.0.0.1:1/x/y:v1";

    let (status, v) = post(&s, Some("anonymous"), remote, "team/app:v1").await;
    assert_eq!(status, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("push"), "{v}");
    let (status, v) = post(&s, Some("dev"), remote, "other/app:v1").await;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("other/app"), "{v}");
    // Push is not enough for a server-side path: that needs an admin.
    let (status, v) = post(&s, Some("dev"), &layout, "team/app:v1").await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("administrator"),
        "{v}"
    );
    assert!(s.importer.list().is_empty(), "nothing queued");

    let (status, dev_job) = post(&s, Some("dev"), remote, "team/app:v1").await;
    assert_eq!(status, 202, "{dev_job}");
    let (status, admin_job) = post(&s, Some("admin"), &layout, "ops/app:v1").await;
    assert_eq!(status, 202, "{admin_job}");

    // Listing and reading: only jobs whose target the caller may pull.
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect()
    };
    let dev_id = dev_job["id"].as_str().unwrap().to_string();
    let admin_id = admin_job["id"].as_str().unwrap().to_string();
    let (_, list) = get(&s, Some("dev"), "/api/v1/imports").await;
    assert_eq!(ids(&list), vec![dev_id.clone()]);
    let (_, list) = get(&s, Some("admin"), "/api/v1/imports").await;
    assert_eq!(ids(&list), vec![admin_id.clone(), dev_id.clone()]);
    let (_, list) = get(&s, Some("anonymous"), "/api/v1/imports").await;
    assert_eq!(list, json!([]));
    let (status, _) = get(&s, Some("dev"), &format!("/api/v1/imports/{admin_id}")).await;
    assert_eq!(status, 404);
    let (status, _) = get(&s, Some("anonymous"), &format!("/api/v1/imports/{dev_id}")).await;
    assert_eq!(status, 404);
    let (status, v) = get(&s, Some("dev"), &format!("/api/v1/imports/{dev_id}")).await;
    assert_eq!((status, v["target"].as_str()), (200, Some("team/app:v1")));
    // Cancelling another's job it cannot see: 404, as for reading.
    let status = reqwest::Client::new()
        .delete(format!("{}/api/v1/imports/{admin_id}", s.base))
        .header("x-test-as", "dev")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
}
