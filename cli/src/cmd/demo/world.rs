//! The demo's driver: an embedded regtest node run in this process, the committee's
//! `party run` daemons and every other role's steps as child invocations of this same binary,
//! all in one temporary directory.
//!
//! Every child is registered in [`CHILDREN`] while it runs: its guard kills it when dropped
//! (normal exit, error, panic). On Ctrl-C or SIGTERM the signal thread marks the demo as
//! stopping (no child is started after that: the mark and the registry share one lock), kills
//! every registered child, and the main thread's next wait fails with "interrupted", so the
//! demo unwinds through its guards (node stopped, temporary directory removed). A second
//! signal exits at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bitcoin::{Amount, Transaction, Txid};
use btcmpc_regtest::ports::PortLease;
use btcmpc_regtest::rpc_client::{Auth, RpcClient};
use btcmpc_regtest::server::{Server, ServerConfig};
use btcmpc_regtest::AutomineMode;
use serde_json::{json, Value};

/// Every running child process, by guard id.
static CHILDREN: Mutex<Option<HashMap<u64, Child>>> = Mutex::new(None);
/// The demo's temporary directory, removed by the signal thread on a second signal.
static WORKDIR: Mutex<Option<PathBuf>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Set by the signal thread (under the [`CHILDREN`] lock): start nothing more.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Fails once Ctrl-C or SIGTERM was received.
///
/// # Errors
/// "interrupted".
pub fn check_interrupted() -> anyhow::Result<()> {
    if interrupted() {
        bail!("interrupted: the demo's processes were stopped");
    }
    Ok(())
}

/// Whether Ctrl-C or SIGTERM was received.
pub fn interrupted() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// How long one short command may take.
pub const STEP: Duration = Duration::from_secs(60);
/// How long a daemon may take to answer `party status`.
const READY: Duration = Duration::from_secs(30);
/// How long the mempool may take to be mined (automine mines shortly after a transaction).
const MINED: Duration = Duration::from_secs(30);
/// Delay between a transaction and the block the node mines for it.
const AUTOMINE_DELAY: Duration = Duration::from_millis(200);

fn children() -> std::sync::MutexGuard<'static, Option<HashMap<u64, Child>>> {
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A registered child process, killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Proc(u64);

impl Proc {
    fn spawn(cmd: &mut Command) -> anyhow::Result<Proc> {
        let mut g = children();
        check_interrupted()?;
        let child = cmd.spawn().context("starting a btcmpc child process")?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        g.get_or_insert_with(HashMap::new).insert(id, child);
        Ok(Proc(id))
    }

    /// The exit status once the child exited, `None` while it runs.
    fn try_wait(&self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let mut g = children();
        check_interrupted()?;
        let child = g
            .as_mut()
            .and_then(|m| m.get_mut(&self.0))
            .ok_or_else(|| anyhow!("child process {} was already stopped", self.0))?;
        Ok(child.try_wait()?)
    }

    /// Waits for the child to exit, killing it after `timeout`.
    fn wait(&self, timeout: Duration, what: &str) -> anyhow::Result<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            if Instant::now() >= end {
                bail!("{what} did not finish in {} s", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = children().as_mut().and_then(|m| m.remove(&self.0));
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Ctrl-C and SIGTERM: stop starting children, kill every registered one; a second signal
/// removes the work directory and exits with 130 at once.
fn install_signal_handler() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            rt.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                for round in 0..2 {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                    if round == 0 {
                        eprintln!("\ninterrupted: stopping the demo's processes");
                        kill_all();
                    }
                }
            });
            kill_all();
            if let Some(dir) = WORKDIR
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
            {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(130);
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Marks the demo as stopping and kills (and reaps) every registered child.
fn kill_all() {
    let all: Vec<Child> = {
        let mut g = children();
        STOPPING.store(true, Ordering::SeqCst);
        g.as_mut()
            .map(|m| m.drain().map(|(_, c)| c).collect())
            .unwrap_or_default()
    };
    for mut c in all {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The chain, the work directory and the committee's daemons.
pub struct World {
    /// Where every role's datadir, the logs and the node live (removed on drop).
    pub dir: tempfile::TempDir,
    server: Server,
    rpc: RpcClient,
    electrum: String,
    exe: PathBuf,
    daemons: Vec<Option<Proc>>,
    faults: Vec<Option<String>>,
    /// The daemons' endpoints, held while the world lives ([`PortLease`]).
    ports: Vec<PortLease>,
    /// Print progress on stderr.
    pub verbose: bool,
    started: Instant,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Daemons first (they talk to the node), then the node (dropped with the fields).
        self.daemons.clear();
        self.server.stop();
        *WORKDIR
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// What a child invocation printed.
#[derive(Debug)]
pub struct Ran {
    /// Whether it exited with 0.
    pub ok: bool,
    /// Its exit code.
    pub code: Option<i32>,
    /// Its stdout (the `--json` document).
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Ran {
    /// The last line of stderr (the command's one-line error).
    pub fn error_line(&self) -> String {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error message")
            .trim()
            .trim_start_matches("error: ")
            .to_string()
    }
}

impl World {
    /// A loopback endpoint for a daemon, held by this world until it is dropped: no other
    /// process (a parallel demo, a test) is handed the same port before the daemon binds it.
    ///
    /// # Errors
    /// When no port can be leased.
    pub fn lease_endpoint(&mut self) -> anyhow::Result<String> {
        let lease = PortLease::new().context("leasing a loopback port for a party")?;
        let endpoint = format!("127.0.0.1:{}", lease.port());
        self.ports.push(lease);
        Ok(endpoint)
    }

    /// Starts the embedded node (any free ports, automine a moment after each transaction)
    /// in a new temporary directory.
    ///
    /// # Errors
    /// When the directory or the node cannot be made.
    pub fn start(verbose: bool) -> anyhow::Result<World> {
        let dir = tempfile::Builder::new()
            .prefix("btcmpc-demo-")
            .tempdir()
            .context("creating the demo's temporary directory")?;
        *WORKDIR
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dir.path().to_path_buf());
        install_signal_handler()?;
        let cfg = ServerConfig::new(dir.path().join("node"))
            .ports(0, 0)
            .automine(Some(AutomineMode::OnTransaction {
                delay: AUTOMINE_DELAY,
            }));
        let server = Server::start(cfg).context("starting the embedded regtest node")?;
        let rpc = RpcClient::new(&server.rpc_url(), Auth::CookieFile(server.cookie_path()))
            .context("connecting to the node's RPC")?;
        let electrum = server.electrum_addr().to_string();
        let exe = std::env::current_exe().context("finding the btcmpc binary")?;
        Ok(World {
            dir,
            server,
            rpc,
            electrum,
            exe,
            daemons: (0..4).map(|_| None).collect(),
            faults: vec![None; 4],
            ports: Vec::new(),
            verbose,
            started: Instant::now(),
        })
    }

    /// Prints a progress line on stderr (unless quiet).
    pub fn say(&self, line: &str) {
        if self.verbose {
            eprintln!("[{:5.1} s] {line}", self.started.elapsed().as_secs_f64());
        }
    }

    /// `DIR/who`.
    pub fn datadir(&self, who: &str) -> PathBuf {
        self.dir.path().join(who)
    }

    /// A path in the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, who: &str) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--datadir")
            .arg(self.datadir(who))
            .arg("--electrum")
            .arg(&self.electrum)
            .env_remove("BTCMPC_DATADIR")
            .env_remove("BTCMPC_NETWORK")
            .env_remove("BTCMPC_ELECTRUM")
            .env_remove("BTCMPC_TESTING_FAULT")
            .env_remove("BTCMPC_LOG")
            .stdin(Stdio::null());
        c
    }

    /// Runs `btcmpc --datadir DIR/who --json ARGS` to its end (killed after `timeout`).
    ///
    /// # Errors
    /// When it cannot be started or does not finish in time (a failing exit is in [`Ran`]).
    pub fn run(&self, who: &str, args: &[&str], timeout: Duration) -> anyhow::Result<Ran> {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let logs = self.path("logs");
        std::fs::create_dir_all(&logs)?;
        let (out, err) = (logs.join(format!("{n}.out")), logs.join(format!("{n}.err")));
        let mut c = self.command(who);
        c.arg("--json")
            .args(args)
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?);
        let what = format!("`btcmpc {}` ({who})", args.join(" "));
        let proc = Proc::spawn(&mut c)?;
        let status = proc.wait(timeout, &what)?;
        drop(proc);
        Ok(Ran {
            ok: status.success(),
            code: status.code(),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        })
    }

    /// Runs a command that must succeed and returns its JSON document.
    ///
    /// # Errors
    /// Its one-line error, naming the command and the role.
    pub fn json(&self, who: &str, args: &[&str]) -> anyhow::Result<Value> {
        self.json_within(who, args, STEP)
    }

    /// As [`World::json`] with a time bound.
    ///
    /// # Errors
    /// As [`World::json`].
    pub fn json_within(
        &self,
        who: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let r = self.run(who, args, timeout)?;
        if !r.ok {
            let name: Vec<&str> = args.iter().take(2).copied().collect();
            bail!(
                "`btcmpc {}` ({who}) failed: {}",
                name.join(" "),
                r.error_line()
            );
        }
        serde_json::from_str(&r.stdout).with_context(|| {
            format!(
                "`btcmpc {}` ({who}) printed no JSON document",
                args.join(" ")
            )
        })
    }

    /// A new wallet for `who`, paid `sats` by the faucet.
    ///
    /// # Errors
    /// A failing command or RPC.
    pub fn funded_wallet(&self, who: &str, sats: u64) -> anyhow::Result<()> {
        self.json(who, &["wallet", "create"])?;
        let addr = self.json(who, &["wallet", "address"])?["address"]
            .as_str()
            .ok_or_else(|| anyhow!("`wallet address` printed no address"))?
            .to_string();
        self.rpc
            .call(
                "faucet",
                &[json!(addr), json!(Amount::from_sat(sats).to_btc())],
            )
            .with_context(|| format!("the faucet paying {who}"))?;
        Ok(())
    }

    /// The node's height.
    ///
    /// # Errors
    /// A failing RPC.
    pub fn height(&self) -> anyhow::Result<u32> {
        Ok(self.rpc.call_as("getblockcount", &[])?)
    }

    /// Mines `n` blocks to the faucet.
    ///
    /// # Errors
    /// A failing RPC.
    pub fn mine(&self, n: u32) -> anyhow::Result<()> {
        let to = self.server.faucet_address().to_string();
        self.rpc
            .call("generatetoaddress", &[json!(n), json!(to)])
            .context("mining")?;
        Ok(())
    }

    /// Waits until the mempool is empty (automine mines a block shortly after a transaction).
    ///
    /// # Errors
    /// When it is not mined in time.
    pub fn mined(&self) -> anyhow::Result<()> {
        let end = Instant::now() + MINED;
        loop {
            check_interrupted()?;
            let pool: Vec<String> = self.rpc.call_as("getrawmempool", &[])?;
            if pool.is_empty() {
                return Ok(());
            }
            if Instant::now() >= end {
                // The automine tick may have been missed: mine by hand once more.
                self.mine(1)?;
                let pool: Vec<String> = self.rpc.call_as("getrawmempool", &[])?;
                if pool.is_empty() {
                    return Ok(());
                }
                bail!("{} transactions were not mined in time", pool.len());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn transaction(&self, txid: &Txid) -> anyhow::Result<Transaction> {
        let hex: String = self
            .rpc
            .call_as("getrawtransaction", &[json!(txid.to_string())])
            .with_context(|| format!("transaction {txid}"))?;
        let bytes = hex::decode(hex).with_context(|| format!("transaction {txid}: bad hex"))?;
        bitcoin::consensus::deserialize(&bytes).with_context(|| format!("transaction {txid}"))
    }

    /// The fee a transaction paid (its inputs less its outputs), in sats.
    ///
    /// # Errors
    /// A transaction the node does not know, or a bad txid.
    pub fn fee(&self, txid: &str) -> anyhow::Result<u64> {
        let txid = Txid::from_str(txid).with_context(|| format!("bad txid {txid:?}"))?;
        let tx = self.transaction(&txid)?;
        let mut inputs = 0u64;
        for i in &tx.input {
            let prev = self.transaction(&i.previous_output.txid)?;
            let out = prev
                .output
                .get(i.previous_output.vout as usize)
                .ok_or_else(|| anyhow!("{txid} spends a missing output"))?;
            inputs += out.value.to_sat();
        }
        let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
        inputs
            .checked_sub(outputs)
            .ok_or_else(|| anyhow!("{txid} pays more than it spends"))
    }

    /// The value of output `vout` of `txid`, in sats.
    ///
    /// # Errors
    /// A transaction the node does not know, or no such output.
    pub fn output_value(&self, txid: &str, vout: usize) -> anyhow::Result<u64> {
        let id = Txid::from_str(txid).with_context(|| format!("bad txid {txid:?}"))?;
        self.transaction(&id)?
            .output
            .get(vout)
            .map(|o| o.value.to_sat())
            .ok_or_else(|| anyhow!("{txid} has no output {vout}"))
    }

    /// The height of the block that holds `txid` (0 while unconfirmed).
    ///
    /// # Errors
    /// A failing RPC.
    pub fn tx_height(&self, txid: &str) -> anyhow::Result<u32> {
        let v = self
            .rpc
            .call("getrawtransaction", &[json!(txid), json!(1)])
            .with_context(|| format!("transaction {txid}"))?;
        let conf = v["confirmations"].as_u64().unwrap_or(0);
        if conf == 0 {
            return Ok(0);
        }
        let tip = u64::from(self.height()?);
        Ok(u32::try_from(tip + 1 - conf.min(tip + 1)).unwrap_or(0))
    }

    /// Each role's wallet balance (confirmed + unconfirmed), in sats, after the mempool is
    /// mined.
    ///
    /// # Errors
    /// A failing `wallet balance`.
    pub fn balances(&self, roles: &[&str]) -> anyhow::Result<BTreeMap<String, u64>> {
        self.mined()?;
        std::thread::scope(|s| {
            let handles: Vec<_> = roles
                .iter()
                .map(|r| {
                    s.spawn(move || -> anyhow::Result<(String, u64)> {
                        let v = self.json(r, &["wallet", "balance"])?;
                        let sats = v["confirmed"].as_u64().unwrap_or(0)
                            + v["unconfirmed"].as_u64().unwrap_or(0);
                        Ok((r.to_string(), sats))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| anyhow!("a balance thread panicked"))?)
                .collect()
        })
    }

    /// Starts party `i`'s daemon (1-based), with a testing fault or none, and waits until it
    /// answers `party status`.
    ///
    /// # Errors
    /// When it does not start or answer in time (the end of its log is in the error).
    pub fn start_party(&mut self, i: usize, fault: Option<&str>) -> anyhow::Result<()> {
        self.daemons[i - 1] = None;
        let who = format!("p{i}");
        let log = self.path(&format!("{who}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut c = self.command(&who);
        c.args([
            "-v",
            "party",
            "run",
            "--round-timeout",
            "10",
            "--acl-poll",
            "1",
            "--acl-min-conf",
            "1",
        ]);
        if let Some(f) = fault {
            c.args(["--testing-fault", f]);
        }
        c.stdout(f.try_clone()?).stderr(f);
        let proc = Proc::spawn(&mut c)?;
        let end = Instant::now() + READY;
        loop {
            if let Some(s) = proc.try_wait()? {
                bail!("party {i}'s daemon exited ({s}): {}", last_lines(&log, 3));
            }
            if self.run(&who, &["party", "status"], STEP)?.ok {
                break;
            }
            if Instant::now() >= end {
                bail!(
                    "party {i}'s daemon did not answer in {} s: {}",
                    READY.as_secs(),
                    last_lines(&log, 3)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.daemons[i - 1] = Some(proc);
        self.faults[i - 1] = fault.map(str::to_string);
        Ok(())
    }

    /// Restarts party `i` only if its fault differs from `fault`.
    ///
    /// # Errors
    /// As [`World::start_party`].
    pub fn set_fault(&mut self, i: usize, fault: Option<&str>) -> anyhow::Result<()> {
        if self.daemons[i - 1].is_some() && self.faults[i - 1].as_deref() == fault {
            return Ok(());
        }
        self.say(&format!(
            "  restarting party {i} {}",
            fault.map_or("honest".to_string(), |f| format!(
                "with --testing-fault {f}"
            ))
        ));
        self.start_party(i, fault)
    }
}

/// The last `n` non-empty lines of a log file, joined.
fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
