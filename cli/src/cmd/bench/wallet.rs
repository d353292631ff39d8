//! `btcmpc bench wallet`: a full scan of a wallet with many transactions against the embedded
//! node, as a wallet restored from its mnemonic does it.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bitcoin::{Amount, Network};
use btcmpc_regtest::rpc_client::{Auth, RpcClient};
use btcmpc_regtest::server::{Server, ServerConfig};
use btcmpc_wallet::{ChainClient, RoleWallet};
use serde_json::json;

use crate::{global::Global, output::Report};

/// Arguments of `btcmpc bench wallet`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Transactions the wallet receives before it is scanned.
    #[arg(long, default_value_t = 500)]
    txs: u32,
    /// Full scans measured (the median is printed).
    #[arg(long, default_value_t = 5)]
    runs: u32,
}

/// Run `btcmpc bench wallet`.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    // Stopped when dropped, before `dir` is removed.
    let server = Server::start(ServerConfig::new(dir.path().join("node")))
        .context("starting the embedded node")?;
    let rpc = RpcClient::new(&server.rpc_url(), Auth::CookieFile(server.cookie_path()))
        .context("connecting to the embedded node's RPC")?;
    let electrum_url = server.electrum_addr().to_string();
    let (source, words) = RoleWallet::create(&dir.path().join("source"), Network::Regtest, None)?;
    let started = Instant::now();
    for i in 0..args.txs {
        // The embedded node's faucet pays and mines a block confirming the payment.
        let address = source.peek_address(i);
        let amount = Amount::from_sat(10_000 + u64::from(i));
        rpc.call(
            "faucet",
            &[json!(address.to_string()), json!(amount.to_btc())],
        )
        .with_context(|| format!("the faucet paying {address}"))?;
    }
    let height: u32 = rpc.call_as("getblockcount", &[])?;
    wait_for_electrum_height(&electrum_url, height, Duration::from_secs(60))?;
    let setup = started.elapsed();
    let mut times = Vec::new();
    let mut found = 0;
    for run in 0..args.runs.max(1) {
        let path = dir.path().join(format!("scan{run}"));
        let (mut w, _) = RoleWallet::create(&path, Network::Regtest, Some(words.clone()))?;
        let chain = ChainClient::connect(&electrum_url, Duration::from_secs(30))?;
        let t = Instant::now();
        w.sync(&chain)?;
        times.push(t.elapsed());
        found = w.history().len();
    }
    anyhow::ensure!(
        found == args.txs as usize,
        "the scan found {found} of {} transactions",
        args.txs
    );
    times.sort();
    let median = times[times.len() / 2];
    let text = format!(
        "wallet full scan (embedded node, {} transactions to {} addresses; setup {:.1} s)\n\
         {:<34} {:>10} {:>10}\n{:<34} {:>10.0} {:>10}\n",
        args.txs,
        args.txs,
        setup.as_secs_f64(),
        "measure",
        "median ms",
        "target",
        format!("full scan of {} txs", args.txs),
        median.as_secs_f64() * 1e3,
        "< 2000"
    );
    Ok(Report::new(
        text,
        json!({"txs": args.txs, "full_scan_ms": median.as_secs_f64() * 1e3,
            "runs_ms": times.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>()}),
    ))
}

/// Waits until the Electrum server at `url` serves a chain of at least `height` blocks.
///
/// # Errors
/// When it does not within `timeout`.
fn wait_for_electrum_height(url: &str, height: u32, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let served = ChainClient::connect(url, Duration::from_secs(5))
            .and_then(|chain| chain.tip())
            .is_ok_and(|(h, _)| h >= height);
        if served {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Electrum server did not reach height {height} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
