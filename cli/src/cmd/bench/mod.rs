//! `btcmpc bench`: end-to-end benchmarks that print a table a person can compare with the
//! README's figures. Statistical micro-benchmarks live in each crate's `benches/` (criterion).

use crate::{global::Global, output::Report};

mod committee;
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
    /// The committee across separate party processes on loopback over the parties' Noise
    /// channels: products, a dot product, an owner's input summed and opened, beside MP-SPDZ.
    Committee(committee::Args),
    /// One party of `bench committee` (started by it).
    #[command(hide = true)]
    CommitteeParty(committee::PartyArgs),
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
        What::Committee(a) => committee::run(a, global),
        What::CommitteeParty(a) => committee::party(a, global),
        What::Contracts(a) => contracts::run(a, global),
        What::Engine(a) => engine::run(a, global),
        What::Regtest(a) => regtest::run(a, global),
        What::Wallet(a) => wallet::run(a, global),
    }
}
