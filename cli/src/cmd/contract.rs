//! `btcmpc contract`.

use crate::{global::Global, output::Report};

/// Arguments of `btcmpc contract`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `btcmpc contract`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<Report> {
    anyhow::bail!("`btcmpc contract` is not built yet")
}
