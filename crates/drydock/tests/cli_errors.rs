//! The command line never ends without a message: a TLS client meeting a
//! plain-HTTP server fails with an explanation and the way out (it used to
//! die of SIGPIPE, silently, with status 141), and a closed standard output
//! ends a command quietly instead of killing or panicking it.

mod cli_support;

use cli_support::*;
use std::process::{Output, Stdio};

/// A normal failure: an exit status (not a signal), not 141, not a panic,
/// and something on standard error.
fn assert_explained_failure(out: &Output, what: &str) -> String {
    let err = stderr(out);
    assert_no_panic(out, &[what]);
    let code = out.status.code();
    assert!(
        code.is_some(),
        "{what}: ended by a signal ({}), stderr: {err}",
        out.status
    );
    assert_ne!(code, Some(0), "{what} succeeded: {err}");
    assert_ne!(code, Some(141), "{what}: 141 is SIGPIPE's status");
    assert!(!err.trim().is_empty(), "{what}: failed without a message");
    err
}

/// One data directory holding a small vulnerability database.
fn data_with_db() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    import(data.path(), &[vulndata("alpine/v3.20/main.json")]);
    data
}

#[test]
fn tls_against_plain_http_explains_itself_and_names_the_fix() {
    // drydock serve is a real plain-HTTP server.
    let served = tempfile::tempdir().unwrap();
    let server = Server::start(served.path());
    let addr = server.addr();
    let data = tempfile::tempdir().unwrap();
    let d = data.path();

    // scan docker:// speaks HTTPS unless told --insecure.
    let target = format!("docker://{addr}/team/app:v1");
    let out = run(d, &["scan", &target]);
    let err = assert_explained_failure(&out, "scan");
    assert!(err.contains("plain HTTP"), "{err}");
    assert!(err.contains("--insecure"), "{err}");
    // A retry cannot change a handshake with a plain-HTTP server.
    assert!(!err.contains("retrying"), "retried in vain: {err}");

    // import to a server given as https:// that has no TLS.
    let https = format!("https://{addr}");
    let out = run(
        d,
        &[
            "import",
            "--server",
            &https,
            "docker://127.0.0.1:9/library/debian:12",
            "library/debian:12",
        ],
    );
    let err = assert_explained_failure(&out, "import");
    assert!(err.contains("plain HTTP"), "{err}");
    assert!(err.contains(&"--server http://".to_string()), "{err}");
    assert!(err.contains("--insecure"), "{err}");

    // db update from an https:// source that is plain HTTP.
    let source = format!("https://{addr}/all.zip");
    let out = run(d, &["db", "update", "--source", &source]);
    let err = assert_explained_failure(&out, "db update");
    assert!(err.contains("plain HTTP"), "{err}");
    assert!(err.contains("http://"), "{err}");
    assert!(err.contains("--insecure"), "{err}");
    // The failed update changed nothing.
    assert!(!d.join("vulndb/CURRENT").exists());
}

#[test]
fn an_unreachable_source_says_so_and_points_at_db_import() {
    let data = tempfile::tempdir().unwrap();
    // A port nothing listens on (bound a moment ago, then released).
    let url = format!("http://127.0.0.1:{}/all.zip", free_port());
    let out = run(data.path(), &["db", "update", "--source", &url]);
    let err = assert_explained_failure(&out, "db update");
    assert!(err.contains("nothing listens"), "{err}");
}

/// Run with standard output a pipe whose reader is already gone, as in
/// `drydock db status | head -0`.
fn run_to_closed_stdout(data: &std::path::Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    drydock(data, args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run drydock")
}

#[test]
fn a_closed_stdout_ends_commands_quietly() {
    let data = data_with_db();
    let d = data.path();
    for args in [
        &["db", "status"][..],
        &["db", "status", "--json"],
        &["db", "query", "alpine:3.20", "zlib", "1.2.12-r1"],
        &["usage"],
    ] {
        let out = run_to_closed_stdout(d, args);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "drydock {args:?} ({}): {err}",
            out.status
        );
        assert!(!err.contains("panicked"), "drydock {args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "drydock {args:?}: {err}");
    }
}

#[test]
fn logs_to_a_file_or_pipe_carry_no_colour_codes() {
    let data = tempfile::tempdir().unwrap();
    // A warning is logged for every retry of an unreachable registry.
    let target = format!("docker://127.0.0.1:{}/team/app:v1", free_port());
    let out = drydock(data.path(), &["scan", &target, "--insecure"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let err = assert_explained_failure(&out, "scan");
    assert!(err.contains("WARN"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI escape in piped log: {err:?}");
}

#[test]
fn a_missing_data_directory_is_an_error_and_is_not_created() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("no-such-dir");
    for args in [&["usage"][..], &["gc", "--dry-run"]] {
        let out = run(&missing, args);
        let err = assert_explained_failure(&out, args[0]);
        assert!(err.contains("no data directory at"), "{err}");
        assert!(err.contains("--data"), "{err}");
        assert!(!missing.exists(), "drydock {args:?} created {missing:?}");
    }
}

#[test]
fn an_unknown_ecosystem_lists_the_valid_ones() {
    let data = data_with_db();
    let out = run(data.path(), &["db", "query", "foo", "x", "1"]);
    let err = assert_explained_failure(&out, "db query");
    assert!(err.contains("unknown ecosystem \"foo\""), "{err}");
    assert!(err.contains("pypi") && err.contains("debian:12"), "{err}");
}

#[test]
fn an_error_names_its_cause_once() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("nothing-here");
    let out = run(data.path(), &["db", "import", missing.to_str().unwrap()]);
    let err = assert_explained_failure(&out, "db import");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    for args in [
        vec!["db", "import", missing.to_str().unwrap()],
        vec!["scan", &format!("oci:{}:v1", missing.display())],
    ] {
        let out = run(data.path(), &args);
        let err = assert_explained_failure(&out, args[0]);
        assert!(err.contains("nothing-here"), "{err}");
        assert!(err.matches("os error 2").count() <= 1, "{err}");
    }
}

#[test]
fn help_describes_every_option_and_hides_no_default() {
    let data = tempfile::tempdir().unwrap();
    let help = run_ok(data.path(), &["--help"]);
    assert!(help.contains("./drydock-data"), "{help}");
    assert!(help.contains("DRYDOCK_DATA"), "{help}");
    assert!(!help.contains("DRYDOCK_CONFIG="), "{help}");
    let help = run_ok(data.path(), &["db", "query", "--help"]);
    for line in help.lines() {
        let l = line.trim();
        // An option or argument line with nothing after its name.
        let bare = (l.starts_with("--json") || l.starts_with("<VERSION>"))
            && l.split_whitespace().count() == 1;
        assert!(!bare, "undescribed: {line:?} in\n{help}");
    }
}

#[test]
fn a_one_shot_command_prints_its_result_without_log_lines() {
    let data = tempfile::tempdir().unwrap();
    let out = drydock(data.path(), &["gc", "--dry-run"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("would remove 0 manifests"), "{text}");
    let err = stderr(&out);
    assert!(
        !err.contains("GcReport"),
        "a Debug dump beside the summary: {err}"
    );
}

#[test]
fn a_taken_port_is_reported_before_anything_starts() {
    let data = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let out = drydock(data.path(), &["serve", "--listen", &listen])
        // With no database, serve would start an update at once.
        .env("DRYDOCK_VULNDB_UPDATE_HOURS", "24")
        .env("DRYDOCK_VULNDB_SOURCES", "http://127.0.0.1:1/none.zip")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_no_panic(&out, &["serve"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot listen on {listen}")), "{err}");
    assert!(
        !err.contains("updating the vulnerability database"),
        "an update started before the bind failed: {err}"
    );
    drop(taken);
}
