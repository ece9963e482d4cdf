//! `drydock serve`.

use crate::config::Config;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ServeArgs {}

pub async fn run(_args: ServeArgs, _config: Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`drydock serve` is not built yet")
}
