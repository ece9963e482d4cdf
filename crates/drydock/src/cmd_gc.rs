//! `drydock gc`: remove manifests and blobs nothing references. Safe while
//! the server runs (see `registry::gc` for the protocol).

use crate::config::Config;
use crate::out::outln;
use registry::GcOptions;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct GcArgs {
    /// Report what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Never remove content younger than this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub grace: u64,
}

pub async fn run(args: GcArgs, config: Config) -> anyhow::Result<ExitCode> {
    // Collecting garbage in a directory that is not there would create it.
    crate::config::require_data_dir(&config)?;
    let report = registry::gc_stores(
        &config.data,
        &config.storage.blobs(),
        &config.metadata.storage(),
        GcOptions {
            dry_run: args.dry_run,
            grace: Duration::from_secs(args.grace),
        },
    )
    .await?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    outln!(
        "{verb} {} manifests, {} blob links, {} blobs ({} bytes); kept {} blobs ({} bytes)",
        report.manifests_removed,
        report.links_removed,
        report.blobs_removed,
        report.bytes_freed,
        report.blobs_kept,
        report.bytes_kept
    )?;
    Ok(ExitCode::SUCCESS)
}
