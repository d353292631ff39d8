//! `btcmpc bench regtest`.

use crate::{global::Global, output::Report};

/// Arguments of `btcmpc bench regtest`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `btcmpc bench regtest`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<Report> {
    anyhow::bail!("`btcmpc bench regtest` is not built yet")
}
