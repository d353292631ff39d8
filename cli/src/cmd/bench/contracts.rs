//! `btcmpc bench contracts`.

use crate::{global::Global, output::Report};

/// Arguments of `btcmpc bench contracts`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `btcmpc bench contracts`.
pub fn run(_args: Args, _global: &Global) -> anyhow::Result<Report> {
    anyhow::bail!("`btcmpc bench contracts` is not built yet")
}
