//! `btcmpc regtest`: start, inspect, mine on and stop the embedded regtest node.
//!
//! `up` runs the node (foreground, or `--detach`ed in the background with its log in the
//! datadir); every other command finds the running node through `DATADIR/node.json` and talks
//! to it over its Core-style RPC, exactly as it would talk to any node.

use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bitcoin::{Address, Network};
use btcmpc_regtest::rpc_client::{Auth, RpcClient};
use btcmpc_regtest::server::{self, NodeInfo, Server, ServerConfig, StopOutcome};
use btcmpc_regtest::AutomineMode;
use serde_json::{json, Value};

use crate::args::parse_amount;
use crate::{global::Global, output::Report};

/// How long `up --detach` waits for the background node to answer.
const DETACH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `down` waits for the node to exit.
const DOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Log file of a detached node, in the datadir.
const LOG_FILE: &str = "node.log";
/// Delay between the first mempool transaction and the block with `--automine`.
const AUTOMINE_DELAY: Duration = Duration::from_millis(500);

/// Arguments of `btcmpc regtest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Start the embedded node and print its Electrum and RPC addresses (mines 101 blocks to
    /// the faucet on first start).
    Up(UpArgs),
    /// Stop the node running on the datadir.
    Down,
    /// Where the node listens and its height.
    Status,
    /// Mine N blocks (to the faucet, or to --to ADDR).
    Mine {
        /// Number of blocks.
        n: u32,
        /// Address receiving the block rewards.
        #[arg(long, value_name = "ADDR")]
        to: Option<String>,
    },
    /// Pay AMOUNT (e.g. `50000sat`, `0.0005btc`) to ADDR from the faucet and mine one block.
    Faucet {
        /// Regtest address to pay.
        address: String,
        /// Amount with its unit: `50000sat`, `0.0005btc`.
        #[arg(value_parser = parse_amount)]
        amount: bitcoin::Amount,
    },
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Run in the background (log in DATADIR/node.log); return once the node answers.
    #[arg(long)]
    detach: bool,
    /// Mine automatically: alone, a block shortly after transactions arrive; `=SECS`, a block
    /// every SECS seconds.
    #[arg(long, value_name = "SECS", num_args = 0..=1, require_equals = true)]
    automine: Option<Option<u64>>,
    /// Electrum port (0: any free port).
    #[arg(long, value_name = "P", default_value_t = 60401)]
    electrum_port: u16,
    /// RPC port (0: any free port).
    #[arg(long, value_name = "P", default_value_t = 18443)]
    rpc_port: u16,
}

/// Run `btcmpc regtest`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<Report> {
    let datadir = global.datadir();
    match args.cmd {
        Cmd::Up(up) => {
            if global.network != crate::global::NetworkArg::Regtest {
                bail!(
                    "the embedded node runs regtest only (got --network {})",
                    global.network.name()
                );
            }
            if up.detach {
                up_detached(&up, &datadir, global)
            } else {
                up_foreground(&up, &datadir)
            }
        }
        Cmd::Down => down(&datadir),
        Cmd::Status if global.rpc.is_some() => status_of_any_node(global),
        Cmd::Status => status(&datadir),
        Cmd::Mine { n, to } if global.rpc.is_some() => {
            let to =
                to.ok_or_else(|| anyhow!("mining on a node given by --rpc needs --to ADDR"))?;
            let rpc = rpc_of_any_node(global)?;
            mine_with(&rpc, n, &parse_address(&to)?.to_string())
        }
        Cmd::Mine { n, to } => mine(&datadir, n, to.as_deref()),
        Cmd::Faucet { address, amount } => faucet(&datadir, &address, amount),
    }
}

fn automine_mode(up: &UpArgs) -> Option<AutomineMode> {
    match up.automine {
        None => None,
        Some(None) | Some(Some(0)) => Some(AutomineMode::OnTransaction {
            delay: AUTOMINE_DELAY,
        }),
        Some(Some(secs)) => Some(AutomineMode::Interval(Duration::from_secs(secs))),
    }
}

fn status_json(info: &NodeInfo, height: u64, datadir: &Path) -> Value {
    json!({
        "electrum": info.electrum,
        "rpc": info.rpc,
        "height": height,
        "pid": info.pid,
        "datadir": datadir.display().to_string(),
        "cookie": info.cookie.display().to_string(),
        "faucet_address": info.faucet_address,
    })
}

fn status_text(info: &NodeInfo, height: u64, datadir: &Path) -> String {
    format!(
        "regtest node running (pid {})\n  electrum: {}\n  rpc:      {} (cookie {})\n  height:   {}\n  faucet:   {}\n  datadir:  {}",
        info.pid,
        info.electrum,
        info.rpc,
        info.cookie.display(),
        height,
        info.faucet_address,
        datadir.display()
    )
}

fn up_foreground(up: &UpArgs, datadir: &Path) -> anyhow::Result<Report> {
    let cfg = ServerConfig::new(datadir)
        .ports(up.electrum_port, up.rpc_port)
        .automine(automine_mode(up))
        .handle_signals(true);
    let server = Server::start(cfg).context("starting the regtest node")?;
    let height = server.node().tip().height;
    // Progress goes to stderr so that `--json` keeps stdout to one document.
    eprintln!(
        "regtest node running (pid {})\n  electrum: {}\n  rpc:      {} (cookie {})\n  height:   {height}\n  faucet:   {}\n  datadir:  {}\nstop with Ctrl-C or `btcmpc regtest down`",
        std::process::id(),
        server.electrum_addr(),
        server.rpc_url(),
        server.cookie_path().display(),
        server.faucet_address(),
        datadir.display()
    );
    server.wait();
    let height = server.node().tip().height;
    Ok(Report::new(
        format!("regtest node stopped at height {height}"),
        json!({"stopped": true, "height": height, "datadir": datadir.display().to_string()}),
    ))
}

fn up_detached(up: &UpArgs, datadir: &Path, global: &Global) -> anyhow::Result<Report> {
    std::fs::create_dir_all(datadir)
        .with_context(|| format!("creating datadir {}", datadir.display()))?;
    if let Some(info) = NodeInfo::read(datadir)? {
        if info.process_alive() && server::rpc_answers(&info) {
            bail!(
                "a node is already running on {} (pid {}); stop it with `btcmpc regtest down`",
                datadir.display(),
                info.pid
            );
        }
    }
    let exe = std::env::current_exe().context("finding the btcmpc binary")?;
    let log_path = datadir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let log_err = log.try_clone().context("duplicating the log file handle")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--datadir")
        .arg(datadir)
        .arg("regtest")
        .arg("up")
        .arg("--electrum-port")
        .arg(up.electrum_port.to_string())
        .arg("--rpc-port")
        .arg(up.rpc_port.to_string());
    match up.automine {
        None => {}
        Some(None) => {
            cmd.arg("--automine");
        }
        Some(Some(secs)) => {
            cmd.arg(format!("--automine={secs}"));
        }
    }
    if std::env::var_os("BTCMPC_LOG").is_none() {
        cmd.env("BTCMPC_LOG", if global.quiet { "warn" } else { "info" });
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    #[cfg(unix)]
    {
        // Its own process group: a Ctrl-C meant for this shell does not stop the node.
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().context("starting the background node")?;
    let pid = child.id();
    let deadline = Instant::now() + DETACH_TIMEOUT;
    loop {
        if let Some(exit) = child.try_wait().context("watching the background node")? {
            bail!(
                "the background node exited ({exit}) before answering; last log lines:\n{}",
                tail(&log_path, 10)
            );
        }
        if let Ok(Some(info)) = NodeInfo::read(datadir) {
            if info.pid == pid {
                if let Ok(height) = client(&info)?.call("getblockcount", &[]) {
                    let height = height.as_u64().unwrap_or(0);
                    let mut text = status_text(&info, height, datadir);
                    text.push_str(&format!("\n  log:      {}", log_path.display()));
                    let mut j = status_json(&info, height, datadir);
                    j["log"] = json!(log_path.display().to_string());
                    return Ok(Report::new(text, j));
                }
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the background node did not answer within {DETACH_TIMEOUT:?}; last log lines:\n{}",
                tail(&log_path, 10)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn running(datadir: &Path) -> anyhow::Result<NodeInfo> {
    NodeInfo::read(datadir)?.ok_or_else(|| {
        anyhow!(
            "no regtest node running on {} (start one with `btcmpc regtest up --detach`)",
            datadir.display()
        )
    })
}

fn client(info: &NodeInfo) -> anyhow::Result<RpcClient> {
    Ok(
        RpcClient::new(&info.rpc, Auth::CookieFile(info.cookie.clone()))?
            .with_timeout(Duration::from_secs(120)),
    )
}

/// A client for the node of `--rpc`.
fn rpc_of_any_node(global: &Global) -> anyhow::Result<RpcClient> {
    let url = global.rpc.as_deref().expect("called only with --rpc");
    let auth = match &global.rpc_cookie {
        Some(c) => Auth::CookieFile(c.clone()),
        None => Auth::None,
    };
    Ok(RpcClient::new(url, auth)
        .with_context(|| format!("--rpc {url}"))?
        .with_timeout(Duration::from_secs(120)))
}

/// `status` of the node given by `--rpc` (and `--electrum`): any regtest node, Core included.
fn status_of_any_node(global: &Global) -> anyhow::Result<Report> {
    let url = global.rpc.clone().unwrap_or_default();
    let height = rpc_of_any_node(global)?
        .call("getblockcount", &[])
        .with_context(|| format!("the node at {url} does not answer"))?
        .as_u64()
        .unwrap_or(0);
    let electrum = global.electrum.clone().unwrap_or_default();
    Ok(Report::new(
        format!("node at {url}\n  electrum: {electrum}\n  height:   {height}"),
        json!({"electrum": electrum, "rpc": url, "height": height}),
    ))
}

fn status(datadir: &Path) -> anyhow::Result<Report> {
    let info = running(datadir)?;
    let height = client(&info)?
        .call("getblockcount", &[])
        .with_context(|| format!("the node in {} does not answer", datadir.display()))?
        .as_u64()
        .unwrap_or(0);
    Ok(Report::new(
        status_text(&info, height, datadir),
        status_json(&info, height, datadir),
    ))
}

fn down(datadir: &Path) -> anyhow::Result<Report> {
    let info = running(datadir)?;
    match server::stop_node(&info, datadir, DOWN_TIMEOUT)? {
        StopOutcome::Stale(e) => Ok(Report::new(
            format!("no node was running (removed a stale node.json: {e})"),
            json!({"stopped": false, "stale": true}),
        )),
        StopOutcome::Stopped => Ok(Report::new(
            format!("regtest node stopped (pid {})", info.pid),
            json!({"stopped": true, "pid": info.pid}),
        )),
    }
}

fn parse_address(s: &str) -> anyhow::Result<Address> {
    Address::from_str(s)
        .with_context(|| format!("invalid address {s:?}"))?
        .require_network(Network::Regtest)
        .with_context(|| format!("address {s:?} is not a regtest address"))
}

fn mine(datadir: &Path, n: u32, to: Option<&str>) -> anyhow::Result<Report> {
    let info = running(datadir)?;
    let address = match to {
        Some(a) => parse_address(a)?.to_string(),
        None => info.faucet_address.clone(),
    };
    mine_with(&client(&info)?, n, &address)
}

fn mine_with(rpc: &RpcClient, n: u32, address: &str) -> anyhow::Result<Report> {
    let hashes: Vec<String> = rpc.call_as("generatetoaddress", &[json!(n), json!(address)])?;
    let height = rpc.call("getblockcount", &[])?.as_u64().unwrap_or(0);
    Ok(Report::new(
        format!(
            "mined {} block(s) to {address}; height {height}",
            hashes.len()
        ),
        json!({"blocks": hashes, "height": height, "address": address}),
    ))
}

fn faucet(datadir: &Path, address: &str, amount: bitcoin::Amount) -> anyhow::Result<Report> {
    let address = parse_address(address)?;
    let info = running(datadir)?;
    let rpc = client(&info)?;
    let reply = rpc
        .call(
            "faucet",
            &[json!(address.to_string()), json!(amount.to_btc())],
        )
        .context("the faucet refused")?;
    let txid = reply
        .get("txid")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("unexpected faucet reply {reply}"))?
        .to_string();
    let block = reply
        .get("blockhash")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let height = rpc.call("getblockcount", &[])?.as_u64().unwrap_or(0);
    Ok(Report::new(
        format!("paid {amount} to {address}\n  txid:  {txid}\n  block: {block} (height {height})"),
        json!({"txid": txid, "blockhash": block, "height": height, "amount_sat": amount.to_sat(), "address": address.to_string()}),
    ))
}
