//! `drydock gc`.

use crate::config::Config;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct GcArgs {}

pub async fn run(_args: GcArgs, _config: Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`drydock gc` is not built yet")
}
