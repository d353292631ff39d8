//! `btcmpc`: secure multi-party computation paid and policed by Bitcoin.
//!
//! This binary only parses arguments, loads configuration and formats output; the protocol
//! lives in the library crates (`btcmpc-contracts`, `btcmpc-wallet`, `btcmpc-engine`,
//! `btcmpc-regtest`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod cmd;
mod global;
mod output;

use global::Global;

/// Secure computation on secret-shared data, paid and policed by Bitcoin.
#[derive(Debug, Parser)]
#[command(name = "btcmpc", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Miniscript contracts: compile policies, create, fund and spend contract files.
    Contract(cmd::contract::Args),
    /// The wallet every role has.
    Wallet(cmd::wallet::Args),
    /// The embedded Bitcoin regtest node.
    Regtest(cmd::regtest::Args),
    /// A compute party: keys, card, roster signature, bond, and its daemon.
    Party(cmd::party::Args),
    /// A committee: roster, manifest, on-chain check of the bonds.
    Network(cmd::network::Args),
    /// A data owner: store datasets with a committee, access control on chain.
    Owner(cmd::owner::Args),
    /// A service: its key, and whether it may query a dataset.
    Service(cmd::service::Args),
    /// Benchmarks that print a table to compare with the README's figures.
    Bench(cmd::bench::Args),
    /// The whole system on a fresh embedded regtest node: a committee of four party
    /// processes, the RAND health data, a paying service; honest and cheating scenarios.
    Demo(cmd::demo::Args),
}

/// A value refused by its parser, as `error: ARG: REASON` (`error: --timeout: height "0" is not
/// ...`), the shape of the errors the commands give for values they refuse; clap's own first
/// line when the error lacks the argument or the reason.
fn refused_value(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let arg = match e.get(ContextKind::InvalidArg) {
        // `--timeout <TIMEOUT>`: the flag; `<AMOUNT>`: the positional.
        Some(ContextValue::String(a)) => a.split_whitespace().next().map(str::to_owned),
        _ => None,
    };
    match (arg, std::error::Error::source(e)) {
        (Some(arg), Some(reason)) => format!("error: {arg}: {reason}"),
        _ => {
            let text = e.render().to_string();
            text.lines()
                .next()
                .unwrap_or("error: invalid value")
                .to_owned()
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A value its parser refused (an amount without a unit, a fee rate out of range, a
        // height that is not one): one line naming the argument, and exit 1, as for any value
        // refused later.
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            eprintln!("{}", refused_value(&e));
            return ExitCode::from(1);
        }
        // Usage errors, --help and --version: clap's own text and exit code.
        Err(e) => e.exit(),
    };
    // A party daemon says what it does (jobs quoted, refused, delivered) unless told otherwise.
    let daemon = matches!(&cli.command, Command::Party(a) if a.is_daemon());
    global::init_logging(&cli.global, daemon);
    let result = match cli.command {
        Command::Contract(args) => cmd::contract::run(args, &cli.global),
        Command::Wallet(args) => cmd::wallet::run(args, &cli.global),
        Command::Regtest(args) => cmd::regtest::run(args, &cli.global),
        Command::Bench(args) => cmd::bench::run(args, &cli.global),
        Command::Party(args) => cmd::party::run(args, &cli.global),
        Command::Network(args) => cmd::network::run(args, &cli.global),
        Command::Owner(args) => cmd::owner::run(args, &cli.global),
        Command::Service(args) => cmd::service::run(args, &cli.global),
        Command::Demo(args) => cmd::demo::run(args, &cli.global),
    };
    match result {
        Ok(report) => {
            report.print(cli.global.json);
            ExitCode::from(report.exit)
        }
        Err(err) => {
            // One line: the chain of causes, each named once (see `output::one_line`).
            eprintln!("error: {}", output::one_line(&err));
            ExitCode::from(1)
        }
    }
}
