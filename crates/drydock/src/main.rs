//! `drydock`: a private OCI registry with continuous vulnerability assessment.
//!
//! The binary is thin: it parses the command line and the configuration,
//! then hands over to the library crates. Each subcommand lives in its own
//! `cmd_*` module.

mod access;
mod cmd_access;
mod cmd_db;
mod cmd_gc;
mod cmd_import;
mod cmd_patch;
mod cmd_scan;
mod cmd_scan_dir;
mod cmd_serve;
mod cmd_usage;
mod config;
mod out;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// mimalloc, not glibc's malloc: glibc gives each thread that allocates
/// an arena of its own and keeps freed memory in it, so a layer read on an
/// upload thread and then merged on a worker thread counted twice in the
/// server's RSS (issue #10: 244–385 MB peak for a heap peak of ≈130 MB).
/// mimalloc, tuned below, returns freed pages to the system and frees
/// 5,000 findings faster than glibc's consolidation does. Its C source is
/// built with the cc crate (gcc, which CI installs); jemalloc's would also
/// need make and a configure run.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults commit arenas eagerly and keep freed pages for 1 s
/// (arenas ten times longer). Measured on the bench of issue #10 (peak
/// RSS; the image view's median): defaults 224–255 MB, 24–44 ms; purging
/// at once 137–155 MB but 43–48 ms (every request faults its pages in
/// again); arenas committed lazily with a 250 ms purge delay 183–216 MB,
/// 25–35 ms, the balance taken. mimalloc reads its options when it starts,
/// before `main` (set there, they came too late), so they are set from a
/// constructor that runs before any Rust allocation. The options are found
/// by their positions in the bundled mimalloc 3's `mi_option_e` (the sys
/// crate names no constant for them).
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array.00101")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

#[cfg(target_os = "linux")]
extern "C" fn tune_allocator() {
    use libmimalloc_sys as mi;
    // Placed by their neighbours in the enum, which the sys crate names.
    const ARENA_EAGER_COMMIT: mi::mi_option_t = mi::mi_option_large_os_pages - 2;
    const PURGE_DELAY: mi::mi_option_t = mi::mi_option_use_numa_nodes - 1;
    const _: () = assert!(ARENA_EAGER_COMMIT == 4 && PURGE_DELAY == 15);
    const PURGE_DELAY_MS: std::ffi::c_long = 250;
    // SAFETY: plain setters of mimalloc's option table, called while the
    // process is single-threaded (they are not thread safe).
    unsafe {
        mi::mi_option_set(ARENA_EAGER_COMMIT, 0);
        mi::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
    }
}

#[derive(Parser)]
#[command(
    name = "drydock",
    version,
    about = "Private OCI registry with continuous vulnerability assessment"
)]
struct Cli {
    /// Configuration file (TOML). Values in it are overridden by DRYDOCK_*
    /// environment variables, which are overridden by command-line flags.
    #[arg(long, global = true, env = "DRYDOCK_CONFIG", hide_env_values = true)]
    config: Option<PathBuf>,

    /// Data directory: blobs, metadata database, vulnerability database
    /// [default: $DRYDOCK_DATA, else `data` in the configuration file, else
    /// ./drydock-data].
    #[arg(long, global = true)]
    data: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry server.
    Serve(cmd_serve::ServeArgs),
    /// Build, update, inspect and query the vulnerability database.
    Db(cmd_db::DbArgs),
    /// Scan an image from an OCI layout, a docker archive or a registry.
    Scan(cmd_scan::ScanArgs),
    /// Remove blobs and manifests that nothing references.
    Gc(cmd_gc::GcArgs),
    /// Import an image into a running drydock from another registry or an archive.
    Import(cmd_import::ImportArgs),
    /// Show metered usage: distinct images assessed per repository and month.
    Usage(cmd_usage::UsageArgs),
    /// Manage users (in the data directory; a running server follows).
    User(cmd_access::UserArgs),
    /// Manage robot accounts for CI (in the data directory).
    Robot(cmd_access::RobotArgs),
    /// Patch a Debian image's vulnerable packages on a running server.
    Patch(cmd_patch::PatchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match config::Config::load(cli.config.as_deref(), cli.data.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drydock: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    config::init_tracing(&config, default_level);
    let kind = match &cli.command {
        Command::Scan(_) => Kind::Scan,
        Command::Import(_) => Kind::Import,
        Command::Db(_) => Kind::Db,
        _ => Kind::Other,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cmd_serve::run(args, config).await,
            Command::Db(args) => cmd_db::run(args, config).await,
            Command::Scan(args) => cmd_scan::run(args, config).await,
            Command::Gc(args) => cmd_gc::run(args, config).await,
            Command::Import(args) => cmd_import::run(args, config).await,
            Command::Usage(args) => cmd_usage::run(args, config).await,
            Command::User(args) => cmd_access::run_user(args, config).await,
            Command::Robot(args) => cmd_access::run_robot(args, config).await,
            Command::Patch(args) => cmd_patch::run(args, config).await,
        }
    });
    // What stays buffered goes out now, so a closed pipe is seen here too.
    let result = result.and_then(|code| out::flush().map(|()| code));
    match result {
        Ok(code) => code,
        // The reader of standard output went away (`| head`): not a failure.
        Err(e) if e.chain().any(|c| c.is::<out::StdoutClosed>()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let text = message(&e);
            eprintln!("drydock: {text}");
            if let Some(h) = hint(kind, &text) {
                eprintln!("hint: {h}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: many errors
/// already include their cause's text, which `{:#}` would repeat
/// ("No such file or directory (os error 2): No such file or directory (os error 2)").
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Commands whose network errors get a hint.
#[derive(Clone, Copy)]
enum Kind {
    Scan,
    Import,
    Db,
    Other,
}

/// What to do about a network failure, read off the error's text (the
/// HTTP and TLS libraries' errors reach us as a chain of messages).
fn hint(kind: Kind, text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    // rustls reading a plain-HTTP answer as a TLS record.
    let tls_meets_http = t.contains("invalidcontenttype")
        || t.contains("corrupt message")
        || t.contains("wrong version number");
    if tls_meets_http {
        return Some(match kind {
            Kind::Scan => {
                "the registry answered in plain HTTP, not TLS: add --insecure to reach it over HTTP"
            }
            Kind::Import => {
                "a server answered in plain HTTP, not TLS: give a drydock server without TLS as \
                 --server http://HOST:PORT; for a docker:// source served over HTTP, add --insecure"
            }
            Kind::Db => {
                "the server answered in plain HTTP, not TLS: give the source as http://…; \
                 `db update` has no --insecure, plain http:// sources are taken as they are"
            }
            Kind::Other => "the server answered in plain HTTP, not TLS",
        });
    }
    let unresolved = t.contains("dns error")
        || t.contains("failed to lookup address")
        || t.contains("name or service not known")
        || t.contains("temporary failure in name resolution");
    if unresolved {
        return Some(match kind {
            Kind::Db => {
                "the host name could not be resolved (offline?); to build the database without \
                 a network, download the sources elsewhere and run `drydock db import PATH...`"
            }
            _ => "the host name could not be resolved: check the name and the network",
        });
    }
    if t.contains("connection refused") {
        return Some(match kind {
            Kind::Import => {
                "nothing listens at that address: is `drydock serve` running there (see --server)?"
            }
            _ => "nothing listens at that address: check the host and port",
        });
    }
    if t.contains("invalid peer certificate") || t.contains("unknownissuer") {
        return Some(
            "the server's certificate is not trusted by this machine; for registries, \
             DRYDOCK_CA_FILE names a PEM file of extra trusted CAs",
        );
    }
    None
}
