//! `btcmpc regtest`.

use crate::{global::Global, output::Report};

/// Arguments of `btcmpc regtest`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `btcmpc regtest`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<Report> {
    anyhow::bail!("`btcmpc regtest` is not built yet")
}
