//! `btcmpc bench`: end-to-end benchmarks that print a table a person can compare with the
//! README's figures. Statistical micro-benchmarks live in each crate's `benches/` (criterion).

use crate::{global::Global, output::Report};

mod contracts;
mod engine;
mod regtest;
mod wallet;

/// Arguments of `btcmpc bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Contract spends: build, sign, finalize and verify.
    Contracts(contracts::Args),
    /// The MPC engine: dealing, checks, aggregates, products, decoding.
    Engine(engine::Args),
    /// The embedded regtest node: mempool acceptance, mining, restart.
    Regtest(regtest::Args),
    /// The wallet: a full scan of a wallet with many transactions.
    Wallet(wallet::Args),
}

/// Run `btcmpc bench`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<Report> {
    match args.what {
        What::Contracts(a) => contracts::run(a, global),
        What::Engine(a) => engine::run(a, global),
        What::Regtest(a) => regtest::run(a, global),
        What::Wallet(a) => wallet::run(a, global),
    }
}
