//! `btcmpc bench engine`.

use crate::{global::Global, output::Report};

/// Arguments of `btcmpc bench engine`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `btcmpc bench engine`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<Report> {
    anyhow::bail!("`btcmpc bench engine` is not built yet")
}
