//! `drydock import`.

use crate::config::Config;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ImportArgs {}

pub async fn run(_args: ImportArgs, _config: Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`drydock import` is not built yet")
}
