//! `drydock usage`: metered usage, read from the assessor's database in the
//! data directory (safe while the server runs). Each distinct image digest
//! is counted once, in the month of its first assessment; re-scans are free.

use crate::config::Config;
use crate::out::outln;
use anyhow::{Context, bail};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct UsageArgs {
    /// First month, `YYYY-MM` (a date `YYYY-MM-DD` counts as its month).
    #[arg(long)]
    pub from: Option<String>,
    /// Last month, `YYYY-MM` (a date `YYYY-MM-DD` counts as its month).
    #[arg(long)]
    pub to: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn month(flag: &str, s: &str) -> anyhow::Result<String> {
    assess::clock::parse_month(s).map_err(|e| anyhow::anyhow!("--{flag} {e}"))
}

pub async fn run(args: UsageArgs, config: Config) -> anyhow::Result<ExitCode> {
    let from = match &args.from {
        Some(s) => month("from", s)?,
        None => "0000-01".to_string(),
    };
    let to = match &args.to {
        Some(s) => month("to", s)?,
        None => "9999-12".to_string(),
    };
    if from > to {
        bail!("--from ({from}) is after --to ({to})");
    }
    crate::config::require_data_dir(&config)?;
    let metadata = config.metadata.storage();
    let path = config.data.join("assess.db");
    // On SQLite a data directory never assessed has nothing to count (and
    // gets no database from asking).
    let rows = if path.exists() || !matches!(metadata, registry::MetadataStorage::Sqlite) {
        let store = assess::store::Store::open_where(&config.data, &metadata)
            .with_context(|| format!("cannot open the assessor's state ({})", path.display()))?;
        store.usage(&from, &to)?
    } else {
        Vec::new()
    };
    let total: u64 = rows.iter().map(|r| r.images).sum();
    if args.json {
        let report = serde_json::json!({ "from": from, "to": to, "rows": rows, "total": total });
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let lines = rows
        .iter()
        .map(|r| vec![r.month.clone(), r.repository.clone(), r.images.to_string()])
        .chain([vec!["total".into(), String::new(), total.to_string()]]);
    let text = report::table::columns(&["MONTH", "REPOSITORY", "IMAGES"], lines, &[2]);
    crate::out::write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
