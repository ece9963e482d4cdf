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
mod cmd_scan;
mod cmd_serve;
mod cmd_usage;
mod config;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "drydock",
    version,
    about = "Private OCI registry with continuous vulnerability assessment"
)]
struct Cli {
    /// Configuration file (TOML). Values in it are overridden by DRYDOCK_*
    /// environment variables, which are overridden by command-line flags.
    #[arg(long, global = true, env = "DRYDOCK_CONFIG")]
    config: Option<PathBuf>,

    /// Data directory: blobs, metadata database, vulnerability database.
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        restore_sigpipe();
    }
    let config = match config::Config::load(cli.config.as_deref(), cli.data.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drydock: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    config::init_tracing(&config);
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
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drydock: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Let `drydock db query … | head` end quietly, as command-line tools do,
/// instead of panicking on a closed stdout. Not for `serve`, whose sockets
/// must report a gone peer as an error, not end the process.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: resetting a signal disposition to its default before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
