//! `drydock scan`.

use crate::config::Config;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ScanArgs {}

pub async fn run(_args: ScanArgs, _config: Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`drydock scan` is not built yet")
}
