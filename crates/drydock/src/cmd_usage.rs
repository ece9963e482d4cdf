//! `drydock usage`.

use crate::config::Config;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct UsageArgs {}

pub async fn run(_args: UsageArgs, _config: Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`drydock usage` is not built yet")
}
