//! The patch service's API (issue 15): starting a patch needs push and
//! reading one needs pull on the repository, and jobs survive a restart.

#[path = "../../patch/tests/support/mod.rs"]
mod archive_support;
mod cli_support;
mod patch_support;

use cli_support::*;
use patch_support::*;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// A patch job's view once it is no longer running.
fn finished(url: &str, id: &str, creds: Option<(&str, &str)>) -> Value {
    let start = Instant::now();
    loop {
        let (code, j) = api("GET", &format!("{url}/api/v1/patches/{id}"), creds, None);
        assert_eq!(code, 200, "{j}");
        if j["state"] != "running" {
            return j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "still running: {j}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn add_user(data: &Path, name: &str, password: &str, permission: &str) {
    let args = [
        "user",
        "add",
        name,
        "--password-stdin",
        "--permission",
        permission,
    ];
    let mut child = drydock(data, &args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn patch_api_needs_push_to_start_and_pull_to_read_and_jobs_survive_a_restart() {
    transport::require_test_images!();
    if !present_or_skip(tool_present("skopeo"), "skopeo", "CI") {
        return;
    }
    let Some(arch_dir) = archive_support::archive() else {
        return;
    };
    let archive_root = arch_dir.path().join("archive");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(archive_support::serve(archive_root.clone()));

    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let layout = work.path().join("layout");
    old_image(&layout);
    import(&data, &[vulndata("")]);
    let cfg = patch_config(work.path(), &archive_root, &srv.url, "");
    let admin_pw = "patch-admin-password";
    let env = [("DRYDOCK_ADMIN_PASSWORD", admin_pw)];
    let log = work.path().join("server.log");
    let server = Server::start_logged(&data, &["--config", &cfg, "--auth"], &env, &log);
    let url = format!("http://{}", server.addr());
    add_user(&data, "pusher", "pusher-password", "team/*:pull,push");
    add_user(&data, "reader", "reader-password", "team/*:pull");
    add_user(
        &data,
        "stranger",
        "stranger-password",
        "elsewhere/*:pull,push",
    );
    let admin = Some(("admin", admin_pw));
    let pusher = Some(("pusher", "pusher-password"));
    let reader = Some(("reader", "reader-password"));
    let stranger = Some(("stranger", "stranger-password"));
    // The server reads users again within a second.
    std::thread::sleep(Duration::from_millis(1500));
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("--dest-creds=admin:{admin_pw}"),
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/team/app:v1", server.addr()),
    ]);
    let original = {
        let start = Instant::now();
        loop {
            let (_, tags) = api(
                "GET",
                &format!("{url}/api/v1/repositories/team/app/tags"),
                admin,
                None,
            );
            let d = tags
                .as_array()
                .and_then(|a| a.iter().find(|t| t["tag"] == "v1"))
                .and_then(|t| t["digest"].as_str())
                .map(str::to_string);
            if let Some(d) = d {
                let (code, v) = api("GET", &format!("{url}/api/v1/images/{d}"), admin, None);
                if code == 200 && v["status"] == "done" {
                    break d;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "not assessed: {tags}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };

    let req = json!({"repository": "team/app", "tag": "v1", "dry_run": true});
    let post = |creds| {
        api(
            "POST",
            &format!("{url}/api/v1/patches"),
            creds,
            Some(req.clone()),
        )
    };
    assert_eq!(post(None).0, 401, "anonymous");
    let (code, body) = post(reader);
    assert_eq!(code, 403, "pull without push: {body}");
    assert!(body.to_string().contains("needs push"), "{body}");
    assert_eq!(
        post(stranger).0,
        404,
        "no access: the repository stays hidden"
    );
    let (code, started) = post(pusher);
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let done = finished(&url, &id, pusher);
    assert_eq!(done["state"], "done", "{done:#}");
    assert_eq!(done["result"]["original_digest"], original.as_str());
    assert!(
        done["created_at"].is_string() && done["finished_at"].is_string(),
        "{done}"
    );
    // Reading a job needs pull on its repository.
    let job_url = format!("{url}/api/v1/patches/{id}");
    assert_eq!(api("GET", &job_url, reader, None).0, 200);
    assert_eq!(api("GET", &job_url, None, None).0, 401);
    assert_eq!(api("GET", &job_url, stranger, None).0, 404);
    assert_eq!(
        api(
            "GET",
            &format!("{url}/api/v1/patches/no-such-job"),
            admin,
            None
        )
        .0,
        404
    );

    // The API document describes the endpoints.
    let (code, doc) = api("GET", &format!("{url}/api/v1/openapi.json"), admin, None);
    assert_eq!(code, 200);
    assert!(
        doc["paths"]["/api/v1/patches"]["post"].is_object(),
        "{:#}",
        doc["paths"]
    );
    assert!(doc["paths"]["/api/v1/patches/{id}"]["get"].is_object());
    assert!(doc["components"]["schemas"]["JobView"].is_object());

    // A job caught mid-way (the archive stalls) when the server dies is
    // failed on restart; the finished one is still there.
    srv.stalled
        .lock()
        .unwrap()
        .insert("dists/bookworm/InRelease".into());
    let real = json!({"repository": "team/app", "tag": "v1"});
    let (code, started) = api("POST", &format!("{url}/api/v1/patches"), pusher, Some(real));
    assert_eq!(code, 202, "{started}");
    let stuck = started["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1000));
    let (_, j) = api(
        "GET",
        &format!("{url}/api/v1/patches/{stuck}"),
        pusher,
        None,
    );
    assert_eq!(j["state"], "running", "{j}");
    drop(server); // SIGKILL
    let server = Server::start_logged(&data, &["--config", &cfg, "--auth"], &env, &log);
    let url = format!("http://{}", server.addr());
    let (code, j) = api(
        "GET",
        &format!("{url}/api/v1/patches/{stuck}"),
        pusher,
        None,
    );
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["state"], "failed", "{j}");
    assert_eq!(j["error"], "interrupted by restart");
    assert!(j["finished_at"].is_string());
    let (code, j) = api("GET", &format!("{url}/api/v1/patches/{id}"), reader, None);
    assert_eq!(code, 200, "{j}");
    assert_eq!(j["state"], "done");
    assert_eq!(j["result"], done["result"]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(admin_pw) && !text.contains("pusher-password"));
    drop(rt);
}
