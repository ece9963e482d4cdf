//! The layering rules of ARCHITECTURE.md, checked against the crates'
//! declared dependencies (`cargo metadata`). A rule broken here is a
//! design change: change ARCHITECTURE.md with it, or move the code.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Workspace crate → its normal, non-optional dependencies (dev and
/// build dependencies and optional test-support features excluded).
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut map = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null() && !d["optional"].as_bool().unwrap_or(false))
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        map.insert(p["name"].as_str().unwrap().to_string(), deps);
    }
    map
}

/// Only `allowed` crates may depend on any of `forbidden`.
fn check(
    deps: &BTreeMap<String, BTreeSet<String>>,
    rule: &str,
    allowed: &[&str],
    forbidden: &[&str],
    failures: &mut Vec<String>,
) {
    for (krate, ds) in deps {
        if allowed.contains(&krate.as_str()) {
            continue;
        }
        for f in forbidden {
            if ds.contains(*f) {
                failures.push(format!("{rule}: crate `{krate}` depends on `{f}`"));
            }
        }
    }
}

/// `crates` never depend on any of `forbidden`.
fn never(
    deps: &BTreeMap<String, BTreeSet<String>>,
    rule: &str,
    crates: &[&str],
    forbidden: &[&str],
    failures: &mut Vec<String>,
) {
    for krate in crates {
        for f in forbidden {
            if deps[*krate].contains(*f) {
                failures.push(format!("{rule}: crate `{krate}` depends on `{f}`"));
            }
        }
    }
}

#[test]
fn crates_keep_to_their_layers() {
    let deps = dependencies();
    for expected in [
        "oci",
        "storage",
        "registry",
        "auth",
        "edge",
        "httpd",
        "egress",
        "inventory",
        "catalog",
        "vulndb",
        "assess",
        "transport",
        "import",
        "web",
        "drydock",
        "report",
        "dbsync",
    ] {
        assert!(deps.contains_key(expected), "no crate {expected}");
    }
    let mut failures = Vec::new();

    // HTTP server types live only in the HTTP crates.
    check(
        &deps,
        "HTTP types only in the HTTP crates",
        &["registry", "web", "import", "edge", "httpd", "drydock"],
        &["axum", "tower", "tower-http", "hyper", "hyper-util"],
        &mut failures,
    );
    // The `http` type crate as well, with one exception: the S3 blob driver
    // names the method of a presigned URL (`object_store` takes an
    // `http::Method`); it serves nothing.
    check(
        &deps,
        "the http crate only in the HTTP crates and the S3 driver",
        &[
            "registry", "web", "import", "edge", "httpd", "drydock", "storage",
        ],
        &["http"],
        &mut failures,
    );
    // SQL lives in the storage layer (the assessor's state too, behind
    // `storage::assess::AssessState`). catalog still holds its own SQLite
    // store (to move behind a storage trait, see the scale-out issue); no
    // other crate may add one.
    check(
        &deps,
        "SQL only in the storage layer",
        &["storage", "catalog"],
        &["rusqlite", "sqlx", "tokio-postgres", "postgres"],
        &mut failures,
    );
    // Indexing and matching are separate stages that do no registry I/O.
    never(
        &deps,
        "catalog and vulndb do no registry I/O",
        &["catalog", "vulndb"],
        &["registry", "storage", "transport", "import", "assess"],
        &mut failures,
    );
    // Database builds move between nodes through the storage layer's
    // traits: no HTTP, no SQL of its own, no registry or assessment.
    never(
        &deps,
        "dbsync moves builds through the storage layer only",
        &["dbsync"],
        &[
            "axum",
            "tower",
            "tower-http",
            "hyper",
            "hyper-util",
            "http",
            "reqwest",
            "rusqlite",
            "tokio-postgres",
            "registry",
            "assess",
            "web",
            "import",
        ],
        &mut failures,
    );
    // The registry only raises events; assessment subscribes.
    never(
        &deps,
        "the registry knows nothing of assessment",
        &["registry", "storage"],
        &["assess", "catalog", "vulndb", "web", "import", "edge"],
        &mut failures,
    );
    // Patching reaches the archive through egress' client policy and
    // images through ports the binary adapts: it serves nothing, keeps no
    // SQL store and does not reach into the registry or the assessor.
    never(
        &deps,
        "patch neither serves nor stores",
        &["patch"],
        &[
            "axum",
            "tower",
            "tower-http",
            "hyper",
            "hyper-util",
            "http",
            "rusqlite",
            "storage",
            "registry",
            "assess",
            "web",
        ],
        &mut failures,
    );
    // The models are pure.
    never(
        &deps,
        "report renders models: no I/O of its own (it writes to a Write it is given)",
        &["report"],
        &[
            "registry",
            "storage",
            "transport",
            "import",
            "assess",
            "catalog",
            "tokio",
            "reqwest",
            "rusqlite",
            "axum",
            "hyper",
        ],
        &mut failures,
    );
    for pure in ["oci", "inventory"] {
        for d in &deps[pure] {
            if [
                "tokio", "reqwest", "rusqlite", "axum", "storage", "registry", "hyper",
            ]
            .contains(&d.as_str())
            {
                failures.push(format!("the model `{pure}` is pure: it depends on `{d}`"));
            }
        }
    }
    // Access control decides; it neither serves nor routes.
    for d in &deps["auth"] {
        if ["registry", "web", "edge", "assess", "import", "reqwest"].contains(&d.as_str()) {
            failures.push(format!("`auth` depends on `{d}`"));
        }
    }
    // Nothing depends on the binary.
    for (k, ds) in &deps {
        if ds.contains("drydock") {
            failures.push(format!("`{k}` depends on the binary crate"));
        }
    }
    assert!(
        failures.is_empty(),
        "layering broken:\n{}",
        failures.join("\n")
    );
}

#[test]
fn only_the_storage_layer_writes_sql() {
    // Beyond dependencies: no SQL text in the HTTP and access crates.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offenders = Vec::new();
    for krate in [
        "registry", "auth", "edge", "web", "import", "httpd", "egress", "assess",
    ] {
        let dir = root.join(krate).join("src");
        let Ok(walk) = walk(&dir) else { continue };
        for file in walk {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for needle in [
                "SELECT ",
                "INSERT INTO",
                "CREATE TABLE",
                "DELETE FROM",
                "UPDATE auth_",
            ] {
                if text.contains(needle) {
                    offenders.push(format!("{} contains {needle:?}", file.display()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

fn walk(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(out)
}
