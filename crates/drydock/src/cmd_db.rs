//! `drydock db`.

use crate::config::Config;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DbArgs {}

pub async fn run(_args: DbArgs, _config: Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`drydock db` is not built yet")
}
