//! A regtest test environment for the whole workspace, in the style of `bdk_testenv`.
//!
//! [`TestEnv::new`] starts the embedded node in-process, in a temporary datadir, on free
//! loopback ports; with the environment variables `BITCOIND_EXE` and `ELECTRS_EXE` set it
//! starts a real `bitcoind -regtest` (with `-txindex`, `-rest` for electrs, cookie auth, and no
//! wallet: the harness mines to a key it holds and signs faucet payments itself, as the embedded
//! node's faucet does) and `electrs` against it instead. Either way tests reach the chain the same way clients do:
//! Electrum at [`TestEnv::electrum_url`] and Core's RPC at [`TestEnv::rpc_url`], and every
//! helper here (mine, fund, wait, reorg, mocktime) drives the node over that RPC.
//!
//! ```
//! use std::time::Duration;
//! use bitcoin::{Address, Amount, Network};
//! use btcmpc_regtest::harness::TestEnv;
//!
//! let env = TestEnv::new()?;
//! let addr: Address = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk".parse::<Address<_>>()?
//!     .require_network(Network::Regtest)?;
//! let txid = env.fund(&addr, Amount::from_sat(50_000))?;
//! env.wait_for_tx(&txid, Duration::from_secs(10))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use bitcoin::{Address, Amount, BlockHash, Network, Txid};
use serde_json::{json, Value};
use tracing::info;

use crate::ports::PortLease;
use crate::rpc_client::{Auth, RpcClient, RpcClientError};
use crate::server::{Server, ServerConfig, ServerError};

/// Environment variable naming a `bitcoind` binary to test against.
pub const BITCOIND_EXE: &str = "BITCOIND_EXE";
/// Environment variable naming an `electrs` binary to test against.
pub const ELECTRS_EXE: &str = "ELECTRS_EXE";

/// How long starting a real bitcoind or electrs may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of the test environment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// Creating the temporary datadir, spawning a process or a socket failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded node failed to start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// An RPC call failed.
    #[error(transparent)]
    Rpc(#[from] RpcClientError),
    /// An Electrum call failed.
    #[error("electrum call {method} failed: {detail}")]
    Electrum {
        /// The method.
        method: String,
        /// What went wrong.
        detail: String,
    },
    /// A wait ran out of time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The node answered something unexpected.
    #[error("unexpected answer from the node: {0}")]
    Unexpected(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

enum Backend {
    Embedded(Box<Server>),
    Real {
        bitcoind: Child,
        electrs: Option<Child>,
        faucet: RealFaucet,
        setup: Box<RealSetup>,
    },
}

/// How the real processes were started, to start them again ([`TestEnv::restart`]).
struct RealSetup {
    bitcoind_exe: PathBuf,
    rpc_port: u16,
    p2p_port: u16,
    electrs: Option<ElectrsSetup>,
    /// The ports above, held while the environment lives (a restart binds them again).
    leases: Vec<PortLease>,
}

struct ElectrsSetup {
    exe: PathBuf,
    electrum_port: u16,
    monitoring_port: u16,
}

/// A log file in `dir`, appended to (a restarted process continues its log).
fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, HarnessError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map_err(io_err(format!("opening {name}")))
}

/// Start `bitcoind -regtest` on the datadir `dir/bitcoind`: no wallet (the faucet is ours),
/// `-rest` (how electrs 0.12 reads blocks), `-txindex`, loopback ports.
fn spawn_bitcoind(dir: &Path, setup: &RealSetup) -> Result<Child, HarnessError> {
    let datadir = dir.join("bitcoind");
    Command::new(&setup.bitcoind_exe)
        .arg("-regtest")
        .arg(format!("-datadir={}", datadir.display()))
        .arg("-txindex=1")
        .arg("-server=1")
        .arg("-rest=1")
        .arg("-disablewallet=1")
        .arg(format!("-rpcport={}", setup.rpc_port))
        .arg(format!("-port={}", setup.p2p_port))
        .arg("-bind=127.0.0.1")
        .arg("-listen=1")
        .arg("-listenonion=0")
        .arg("-printtoconsole=0")
        .stdout(Stdio::null())
        .stderr(log_file(dir, "bitcoind.stderr")?)
        .spawn()
        .map_err(io_err(format!("starting {}", setup.bitcoind_exe.display())))
}

/// Start electrs against the bitcoind of `setup`, its index in `dir/electrs`.
fn spawn_electrs(dir: &Path, setup: &RealSetup, e: &ElectrsSetup) -> Result<Child, HarnessError> {
    // electrs 0.12: blocks over REST, no P2P address; it polls bitcoind every
    // `--wait-duration-secs` (default 10), so ask for every second; the Prometheus
    // endpoint gets a port of its own so that tests can run side by side.
    Command::new(&e.exe)
        .arg("--skip-default-conf-files")
        .arg("--network=regtest")
        .arg(format!("--daemon-dir={}", dir.join("bitcoind").display()))
        .arg(format!("--daemon-rpc-addr=127.0.0.1:{}", setup.rpc_port))
        .arg(format!("--electrum-rpc-addr=127.0.0.1:{}", e.electrum_port))
        .arg(format!("--monitoring-addr=127.0.0.1:{}", e.monitoring_port))
        .arg("--wait-duration-secs=1")
        .arg("--jsonrpc-timeout-secs=15")
        .arg(format!("--db-dir={}", dir.join("electrs").display()))
        .env("RUST_LOG", "electrs=debug,bindex=info")
        .stdout(Stdio::null())
        .stderr(log_file(dir, "electrs.log")?)
        .spawn()
        .map_err(io_err(format!("starting {}", e.exe.display())))
}

/// How [`TestEnv::restart`] stops the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// A clean stop (Core's `stop` RPC, `regtest down`): the mempool is written and reloaded.
    Clean,
    /// A crash (`kill -9`): the mempool is lost.
    Crash,
}

/// The faucet of a real bitcoind: a P2WPKH key held by the harness that receives the block
/// rewards of [`TestEnv::mine`]; payments are signed here and sent with
/// `sendrawtransaction` (Core's wallet is not needed, nor built).
struct RealFaucet {
    key: bitcoin::secp256k1::SecretKey,
    pubkey: bitcoin::CompressedPublicKey,
    script_pubkey: bitcoin::ScriptBuf,
    lock: std::sync::Mutex<()>,
}

/// The fee rate of faucet payments, sat/vB (as the embedded faucet).
const FAUCET_SAT_PER_VB: u64 = 2;
/// Change below this is left to the miner.
const FAUCET_MIN_CHANGE: Amount = Amount::from_sat(1_000);
/// Coinbase outputs can be spent in the block this many blocks after theirs.
const COINBASE_MATURITY: u64 = 100;
/// The most coins a faucet payment scans for (bounds what a node's answer can make us do).
const FAUCET_MAX_COINS: usize = 100_000;

impl RealFaucet {
    fn new() -> RealFaucet {
        let secp = bitcoin::secp256k1::Secp256k1::signing_only();
        let key = bitcoin::secp256k1::SecretKey::new(&mut bitcoin::secp256k1::rand::thread_rng());
        let pubkey = bitcoin::CompressedPublicKey(key.public_key(&secp));
        let script_pubkey = bitcoin::ScriptBuf::new_p2wpkh(&pubkey.wpubkey_hash());
        RealFaucet {
            key,
            pubkey,
            script_pubkey,
            lock: std::sync::Mutex::new(()),
        }
    }

    fn address(&self) -> Address {
        Address::p2wpkh(&self.pubkey, Network::Regtest)
    }

    /// Mature coins of the faucet in the node's UTXO set, largest first.
    fn coins(&self, rpc: &RpcClient) -> Result<Vec<(bitcoin::OutPoint, Amount)>, HarnessError> {
        let bad = |what: &str, v: &Value| {
            HarnessError::Unexpected(format!("scantxoutset: {what} in {v}"))
        };
        let desc = format!("raw({})", self.script_pubkey.to_hex_string());
        let scan = rpc.call("scantxoutset", &[json!("start"), json!([desc])])?;
        let tip = scan
            .get("height")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("no height", &scan))?;
        let unspents = scan
            .get("unspents")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no unspents", &scan))?;
        let mut coins = Vec::new();
        for u in unspents.iter().take(FAUCET_MAX_COINS) {
            let txid = u
                .get("txid")
                .and_then(Value::as_str)
                .and_then(|t| Txid::from_str(t).ok())
                .ok_or_else(|| bad("bad txid", u))?;
            let vout = u
                .get("vout")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("bad vout", u))?;
            let amount = u
                .get("amount")
                .and_then(Value::as_f64)
                .and_then(|a| Amount::from_btc(a).ok())
                .ok_or_else(|| bad("bad amount", u))?;
            let height = u
                .get("height")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("bad height", u))?;
            let coinbase = u.get("coinbase").and_then(Value::as_bool).unwrap_or(false);
            // Spendable in the next block (tip + 1).
            if coinbase && tip + 1 < height + COINBASE_MATURITY {
                continue;
            }
            coins.push((bitcoin::OutPoint { txid, vout }, amount));
        }
        coins.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(coins)
    }

    /// Build, sign and send a payment of `amount` to `script_pubkey` (not mined).
    fn pay(
        &self,
        rpc: &RpcClient,
        script_pubkey: &bitcoin::Script,
        amount: Amount,
    ) -> Result<Txid, HarnessError> {
        use bitcoin::hashes::Hash as _;
        use bitcoin::sighash::{EcdsaSighashType, SighashCache};
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let out_size = |spk: &bitcoin::Script| 8 + 1 + spk.len() as u64;
        // vsize: 10.5 overhead (rounded up), 68 per P2WPKH input, outputs as serialized.
        let vsize = |n_in: usize| {
            11 + 68 * n_in as u64 + out_size(script_pubkey) + out_size(&self.script_pubkey)
        };
        let mut selected = Vec::new();
        let mut total = Amount::ZERO;
        for (op, v) in self.coins(rpc)? {
            // Skip coins a faucet payment in the mempool already spends.
            let live = rpc.call(
                "gettxout",
                &[json!(op.txid.to_string()), json!(op.vout), json!(true)],
            )?;
            if live.is_null() {
                continue;
            }
            selected.push((op, v));
            total += v;
            if total >= amount + Amount::from_sat(vsize(selected.len()) * FAUCET_SAT_PER_VB) {
                break;
            }
        }
        let fee = Amount::from_sat(vsize(selected.len()) * FAUCET_SAT_PER_VB);
        if total < amount + fee {
            return Err(HarnessError::Unexpected(format!(
                "the faucet has {total} in mature coins, cannot pay {amount} plus fee {fee}"
            )));
        }
        let change = total - amount - fee;
        let mut output = vec![bitcoin::TxOut {
            value: amount,
            script_pubkey: script_pubkey.to_owned(),
        }];
        if change >= FAUCET_MIN_CHANGE {
            output.push(bitcoin::TxOut {
                value: change,
                script_pubkey: self.script_pubkey.clone(),
            });
        }
        let mut tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: selected
                .iter()
                .map(|(op, _)| bitcoin::TxIn {
                    previous_output: *op,
                    script_sig: bitcoin::ScriptBuf::new(),
                    sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: bitcoin::Witness::new(),
                })
                .collect(),
            output,
        };
        let secp = bitcoin::secp256k1::Secp256k1::signing_only();
        let mut cache = SighashCache::new(&mut tx);
        let mut witnesses = Vec::with_capacity(selected.len());
        for (i, (_, value)) in selected.iter().enumerate() {
            let sighash = cache
                .p2wpkh_signature_hash(i, &self.script_pubkey, *value, EcdsaSighashType::All)
                .map_err(|e| HarnessError::Unexpected(format!("faucet sighash: {e}")))?;
            let msg = bitcoin::secp256k1::Message::from_digest(sighash.to_byte_array());
            let sig = bitcoin::ecdsa::Signature::sighash_all(secp.sign_ecdsa(&msg, &self.key));
            witnesses.push(bitcoin::Witness::p2wpkh(&sig, &self.pubkey.0));
        }
        for (input, w) in tx.input.iter_mut().zip(witnesses) {
            input.witness = w;
        }
        let hex = bitcoin::consensus::encode::serialize_hex(&tx);
        let txid: String = rpc.call_as("sendrawtransaction", &[json!(hex)])?;
        Txid::from_str(&txid).map_err(|e| HarnessError::Unexpected(e.to_string()))
    }
}

/// A running regtest chain with an Electrum server and Core's RPC, for tests.
///
/// Dropping it stops the node(s) and deletes the temporary datadir.
pub struct TestEnv {
    backend: Backend,
    rpc: RpcClient,
    rpc_url: String,
    auth: Auth,
    electrum: SocketAddr,
    mine_address: Address,
    dir: tempfile::TempDir,
    /// The clock set with [`TestEnv::set_mocktime`] (0: the system clock).
    mocktime: std::cell::Cell<u64>,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("real", &self.is_real())
            .field("rpc", &self.rpc_url)
            .field("electrum", &self.electrum)
            .finish()
    }
}

impl TestEnv {
    /// Start a chain: the real bitcoind + electrs when `BITCOIND_EXE` and `ELECTRS_EXE` are
    /// set, the embedded node otherwise. The chain has at least 101 blocks and spendable
    /// faucet coins.
    ///
    /// # Errors
    ///
    /// When a node cannot be started or does not answer in time.
    pub fn new() -> Result<TestEnv, HarnessError> {
        match (real_exe(BITCOIND_EXE), real_exe(ELECTRS_EXE)) {
            (Some(b), Some(e)) => Self::real(&b, &e),
            (None, None) => Self::embedded(),
            (b, _) => {
                eprintln!("{}", half_configured_message(b.is_some()));
                Self::embedded()
            }
        }
    }

    /// Start the embedded node, whatever the environment says.
    ///
    /// # Errors
    ///
    /// When the node cannot be started.
    pub fn embedded() -> Result<TestEnv, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("btcmpc-regtest-")
            .tempdir()
            .map_err(io_err("creating a temporary datadir"))?;
        let server = Server::start(ServerConfig::new(dir.path().join("node")))?;
        let rpc_url = server.rpc_url();
        let auth = Auth::CookieFile(server.cookie_path());
        let rpc = RpcClient::new(&rpc_url, auth.clone())?;
        let electrum = server.electrum_addr();
        let mine_address = server.faucet_address();
        Ok(TestEnv {
            backend: Backend::Embedded(Box::new(server)),
            rpc,
            rpc_url,
            auth,
            electrum,
            mine_address,
            dir,
            mocktime: std::cell::Cell::new(0),
        })
    }

    /// Start a real `bitcoind` and `electrs` from the given binaries.
    ///
    /// # Errors
    ///
    /// When either cannot be started or does not answer in time.
    pub fn real(bitcoind_exe: &Path, electrs_exe: &Path) -> Result<TestEnv, HarnessError> {
        let mut env = Self::real_bitcoind_only(bitcoind_exe)?;
        let (electrum_lease, monitoring_lease) = (lease_port()?, lease_port()?);
        let (electrum_port, monitoring_port) = (electrum_lease.port(), monitoring_lease.port());
        let es = ElectrsSetup {
            exe: electrs_exe.to_path_buf(),
            electrum_port,
            monitoring_port,
        };
        if let Backend::Real {
            electrs: slot,
            setup,
            ..
        } = &mut env.backend
        {
            *slot = Some(spawn_electrs(env.dir.path(), setup, &es)?);
            setup.electrs = Some(es);
            setup.leases.extend([electrum_lease, monitoring_lease]);
        }
        env.electrum = SocketAddr::from(([127, 0, 0, 1], electrum_port));
        let height = env.tip_height()?;
        // electrs 0.12 panics (electrum.rs:236, `tip_height().unwrap()`) when a
        // `blockchain.headers.subscribe` reaches it before its first index sync: its main loop
        // serves queued requests before syncing. So send nothing until its Prometheus endpoint
        // shows a finished sync pass ("notify" follows each "sync").
        let metrics = SocketAddr::from(([127, 0, 0, 1], monitoring_port));
        if let Err(e) = wait_for_electrs_sync(metrics, START_TIMEOUT) {
            return Err(env.with_electrs_log(e));
        }
        if let Err(e) = env.wait_for_height(height, START_TIMEOUT) {
            return Err(env.with_electrs_log(e));
        }
        info!(target: "btcmpc_regtest::harness", rpc = %env.rpc_url, electrum = %env.electrum, "real bitcoind and electrs running");
        Ok(env)
    }

    /// Wait until the real bitcoind answers RPC (Core answers -28 while it loads).
    fn wait_for_rpc(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.rpc.call("getblockcount", &[]) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// [`TestEnv::restart`] of a real bitcoind (and electrs, which exits when bitcoind goes
    /// away; it is stopped first and started again on its index).
    fn restart_real(&mut self, how: Restart) -> Result<(), HarnessError> {
        let height = self.tip_height()?;
        if how == Restart::Crash {
            // Core flushes its chain state to disk only now and then; `kill -9` would roll a
            // regtest chain back to the last flush (a real node fetches those blocks again
            // from its peers). `gettxoutsetinfo` forces the flush, so that what the crash
            // loses is what it is meant to: the mempool (Core writes `mempool.dat` on a clean
            // stop only).
            self.rpc.call("gettxoutsetinfo", &[json!("none")])?;
        }
        let dir = self.dir.path().to_path_buf();
        let Backend::Real {
            bitcoind,
            electrs,
            setup,
            ..
        } = &mut self.backend
        else {
            return Err(HarnessError::Unexpected("not a real backend".into()));
        };
        if let Some(mut e) = electrs.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
        match how {
            Restart::Crash => {
                let _ = bitcoind.kill(); // SIGKILL
                let _ = bitcoind.wait();
            }
            Restart::Clean => {
                self.rpc.call("stop", &[])?;
                let deadline = Instant::now() + START_TIMEOUT;
                loop {
                    match bitcoind.try_wait() {
                        Ok(Some(_)) => break,
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        _ => {
                            return Err(HarnessError::Timeout {
                                what: "bitcoind to stop".into(),
                                timeout: START_TIMEOUT,
                            })
                        }
                    }
                }
            }
        }
        *bitcoind = spawn_bitcoind(&dir, setup)?;
        if let Some(es) = &setup.electrs {
            // electrs retries its connection to bitcoind while it starts.
            *electrs = Some(spawn_electrs(&dir, setup, es)?);
        }
        let metrics = setup
            .electrs
            .as_ref()
            .map(|es| SocketAddr::from(([127, 0, 0, 1], es.monitoring_port)));
        self.rpc =
            RpcClient::new(&self.rpc_url, self.auth.clone())?.with_timeout(Duration::from_secs(30));
        self.wait_for_rpc()?;
        let Some(metrics) = metrics else {
            return match self.tip_height()? {
                h if h >= height => Ok(()),
                h => Err(HarnessError::Unexpected(format!(
                    "bitcoind restarted at height {h}, below {height}"
                ))),
            };
        };
        if let Err(e) = wait_for_electrs_sync(metrics, START_TIMEOUT) {
            return Err(self.with_electrs_log(e));
        }
        match self.wait_for_height(height, START_TIMEOUT) {
            Ok(()) => self.wait_for_electrs_tip(),
            Err(e) => Err(self.with_electrs_log(e)),
        }
    }

    /// `err` with electrs's exit status (when it has exited) and the last lines of its log
    /// appended: a start that times out says why.
    fn with_electrs_log(&mut self, err: HarnessError) -> HarnessError {
        let status = match &mut self.backend {
            Backend::Real {
                electrs: Some(child),
                ..
            } => match child.try_wait() {
                Ok(Some(status)) => format!("electrs exited: {status}"),
                Ok(None) => "electrs is running".to_string(),
                Err(e) => format!("electrs: {e}"),
            },
            _ => return err,
        };
        let log = std::fs::read_to_string(self.dir.path().join("electrs.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        HarnessError::Unexpected(format!("{err}; {status}; electrs.log ends:\n{tail}"))
    }

    /// Start only a real `bitcoind` (no Electrum server: [`TestEnv::electrum_url`] is not
    /// served and the helpers that wait on Electrum fail), with 101 blocks mined to the
    /// harness's faucet key: for tests of Core's RPC alone.
    ///
    /// # Errors
    ///
    /// When bitcoind cannot be started or does not answer in time.
    pub fn real_bitcoind_only(bitcoind_exe: &Path) -> Result<TestEnv, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("btcmpc-regtest-real-")
            .tempdir()
            .map_err(io_err("creating a temporary datadir"))?;
        let datadir = dir.path().join("bitcoind");
        std::fs::create_dir_all(&datadir).map_err(io_err("creating the bitcoind datadir"))?;
        let (rpc_lease, p2p_lease) = (lease_port()?, lease_port()?);
        let setup = RealSetup {
            bitcoind_exe: bitcoind_exe.to_path_buf(),
            rpc_port: rpc_lease.port(),
            p2p_port: p2p_lease.port(),
            electrs: None,
            leases: vec![rpc_lease, p2p_lease],
        };
        let rpc_port = setup.rpc_port;
        let bitcoind = spawn_bitcoind(dir.path(), &setup)?;
        let cookie = datadir.join("regtest").join(crate::server::COOKIE_FILE);
        let rpc_url = format!("http://127.0.0.1:{rpc_port}");
        let auth = Auth::CookieFile(cookie);
        let rpc = RpcClient::new(&rpc_url, auth.clone())?.with_timeout(Duration::from_secs(30));
        let faucet = RealFaucet::new();
        let mine_address = faucet.address();
        // From here on, dropping `env` cleans up the processes.
        let env = TestEnv {
            backend: Backend::Real {
                bitcoind,
                electrs: None,
                faucet,
                setup: Box::new(setup),
            },
            rpc,
            rpc_url,
            auth,
            electrum: SocketAddr::from(([127, 0, 0, 1], 0)),
            mine_address,
            dir,
            mocktime: std::cell::Cell::new(0),
        };
        env.wait_for_rpc()?;
        env.mine(101)?;
        Ok(env)
    }

    /// A real bitcoind + electrs environment for a test that needs one; `None` (after
    /// printing why, naming `test`) when `BITCOIND_EXE` or `ELECTRS_EXE` is unset.
    ///
    /// # Errors
    ///
    /// When the binaries are set but cannot be started.
    pub fn real_or_skip(test: &str) -> Result<Option<TestEnv>, HarnessError> {
        match (real_exe(BITCOIND_EXE), real_exe(ELECTRS_EXE)) {
            (Some(b), Some(e)) => Self::real(&b, &e).map(Some),
            _ => {
                eprintln!(
                    "skipping {test}: it needs a real node; set {BITCOIND_EXE} and {ELECTRS_EXE}"
                );
                Ok(None)
            }
        }
    }

    /// Whether this runs against a real bitcoind and electrs.
    pub fn is_real(&self) -> bool {
        matches!(self.backend, Backend::Real { .. })
    }

    /// The embedded node's process handle (`None` against a real node).
    pub fn server(&self) -> Option<&Server> {
        match &self.backend {
            Backend::Embedded(s) => Some(s),
            Backend::Real { .. } => None,
        }
    }

    /// The temporary directory holding the datadir(s).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Electrum server, `127.0.0.1:PORT` (what electrum-client and bdk_electrum take).
    pub fn electrum_url(&self) -> String {
        self.electrum.to_string()
    }

    /// The RPC URL, `http://127.0.0.1:PORT`.
    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// RPC credentials (the cookie file).
    pub fn rpc_auth(&self) -> &Auth {
        &self.auth
    }

    /// The cookie file's path.
    pub fn cookie_path(&self) -> Option<PathBuf> {
        match &self.auth {
            Auth::CookieFile(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// The RPC client the helpers use.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// A new RPC client on its own connection.
    ///
    /// # Errors
    ///
    /// Never in practice (the URL is known to be valid).
    pub fn new_rpc_client(&self) -> Result<RpcClient, HarnessError> {
        Ok(RpcClient::new(&self.rpc_url, self.auth.clone())?)
    }

    /// Where [`TestEnv::mine`] sends block rewards (the faucet).
    pub fn mine_address(&self) -> &Address {
        &self.mine_address
    }

    /// Mine `n` blocks to the faucet.
    ///
    /// # Errors
    ///
    /// When the RPC call fails.
    pub fn mine(&self, n: u32) -> Result<Vec<BlockHash>, HarnessError> {
        self.mine_to(n, &self.mine_address)
    }

    /// Mine `n` blocks paying to `address`; against a real electrs, returns once electrs
    /// serves the new tip.
    ///
    /// # Errors
    ///
    /// When the RPC call fails; [`HarnessError::Timeout`] when electrs does not follow.
    pub fn mine_to(&self, n: u32, address: &Address) -> Result<Vec<BlockHash>, HarnessError> {
        let parse = |hashes: Vec<String>| {
            hashes
                .iter()
                .map(|h| {
                    BlockHash::from_str(h).map_err(|e| HarnessError::Unexpected(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let mut hashes = Vec::new();
        let mut retries = 0;
        while hashes.len() < n as usize {
            let left = n as usize - hashes.len();
            let before = self.tip_height()?;
            match self.rpc.call_as::<Vec<String>>(
                "generatetoaddress",
                &[json!(left), json!(address.to_string())],
            ) {
                Ok(h) => hashes.extend(parse(h)?),
                // After `invalidateblock`, Core makes the very block it invalidated again when
                // the template repeats (same parent, transactions and coinbase, and the same
                // time: blocks mined in a burst run ahead of the clock, their time set by the
                // median-time-past rule), and refuses it as known-invalid. A real chain's
                // next block differs; here the node's clock is moved past every block it
                // knows for one block, then set back. (The embedded node never repeats a
                // block.)
                Err(RpcClientError::Rpc {
                    code: -32603,
                    message,
                }) if message.contains("block not accepted") && retries < 5 => {
                    retries += 1;
                    let after = self.tip_height()?;
                    for height in before + 1..=after {
                        let h: String = self.rpc.call_as("getblockhash", &[json!(height)])?;
                        hashes.extend(parse(vec![h])?);
                    }
                    let later = self.latest_block_time()? + retries;
                    self.rpc.call("setmocktime", &[json!(later)])?;
                    let one = self.rpc.call_as::<Vec<String>>(
                        "generatetoaddress",
                        &[json!(1), json!(address.to_string())],
                    );
                    self.rpc
                        .call("setmocktime", &[json!(self.mocktime.get())])?;
                    hashes.extend(parse(one?)?);
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.wait_for_electrs_tip()?;
        Ok(hashes)
    }

    /// The latest block time of every chain tip the node knows (invalid ones included),
    /// unix seconds.
    fn latest_block_time(&self) -> Result<u64, HarnessError> {
        let tips = self.rpc.call("getchaintips", &[])?;
        let mut latest = 0;
        for tip in tips.as_array().into_iter().flatten().take(1_000) {
            let Some(hash) = tip.get("hash").and_then(Value::as_str) else {
                continue;
            };
            let header = self.rpc.call("getblockheader", &[json!(hash)])?;
            let time = header.get("time").and_then(Value::as_u64).ok_or_else(|| {
                HarnessError::Unexpected(format!("getblockheader {hash}: no time in {header}"))
            })?;
            latest = latest.max(time);
        }
        Ok(latest)
    }

    /// Against a real electrs, wait until its tip is the node's (electrs polls bitcoind, here
    /// every second; the embedded Electrum server follows its node as each block is
    /// connected, so nothing is awaited there). Called by every helper that changes the
    /// chain, so that a test sees through Electrum what it just did over RPC.
    fn wait_for_electrs_tip(&self) -> Result<(), HarnessError> {
        if !matches!(
            self.backend,
            Backend::Real {
                electrs: Some(_),
                ..
            }
        ) {
            return Ok(());
        }
        let timeout = START_TIMEOUT;
        let deadline = Instant::now() + timeout;
        loop {
            let node = self.tip_hash()?;
            let served = self
                .electrum_call("blockchain.headers.subscribe", json!([]))
                .ok()
                .and_then(|v| v.get("hex").and_then(Value::as_str).map(str::to_owned))
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| {
                    bitcoin::consensus::encode::deserialize::<bitcoin::block::Header>(&b).ok()
                })
                .map(|h| h.block_hash());
            if served == Some(node) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("electrs to reach the node's tip {node}"),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pay `amount` to `address` from the faucet and mine one block confirming it.
    ///
    /// # Errors
    ///
    /// When the faucet cannot pay or the RPC call fails.
    pub fn fund(&self, address: &Address, amount: Amount) -> Result<Txid, HarnessError> {
        let txid = if let Backend::Real { faucet, .. } = &self.backend {
            let txid = faucet.pay(&self.rpc, &address.script_pubkey(), amount)?;
            self.mine(1)?;
            txid.to_string()
        } else {
            let reply = self.rpc.call(
                "faucet",
                &[json!(address.to_string()), json!(amount.to_btc())],
            )?;
            reply
                .get("txid")
                .and_then(Value::as_str)
                .ok_or_else(|| HarnessError::Unexpected(reply.to_string()))?
                .to_string()
        };
        Txid::from_str(&txid).map_err(|e| HarnessError::Unexpected(e.to_string()))
    }

    /// The best chain's height.
    ///
    /// # Errors
    ///
    /// When the RPC call fails.
    pub fn tip_height(&self) -> Result<u32, HarnessError> {
        Ok(self.rpc.call_as("getblockcount", &[])?)
    }

    /// The best chain's tip hash.
    ///
    /// # Errors
    ///
    /// When the RPC call fails.
    pub fn tip_hash(&self) -> Result<BlockHash, HarnessError> {
        let h: String = self.rpc.call_as("getbestblockhash", &[])?;
        BlockHash::from_str(&h).map_err(|e| HarnessError::Unexpected(e.to_string()))
    }

    /// Wait until the node and its Electrum server know `txid` (mempool or chain).
    ///
    /// # Errors
    ///
    /// [`HarnessError::Timeout`] after `timeout`.
    pub fn wait_for_tx(&self, txid: &Txid, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let known = self
                .rpc
                .call("getrawtransaction", &[json!(txid.to_string())])
                .is_ok()
                && self
                    .electrum_call("blockchain.transaction.get", json!([txid.to_string()]))
                    .is_ok();
            if known {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("transaction {txid}"),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the node and its Electrum server have a chain of at least `height`.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Timeout`] after `timeout`.
    pub fn wait_for_height(&self, height: u32, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let node_ok = self.tip_height().is_ok_and(|h| h >= height);
            let electrum_ok = node_ok
                && self
                    .electrum_call("blockchain.headers.subscribe", json!([]))
                    .ok()
                    .and_then(|v| v.get("height").and_then(Value::as_u64))
                    .is_some_and(|h| h >= u64::from(height));
            if electrum_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("height {height}"),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Invalidate a block (and its descendants), as Core's `invalidateblock`. Against a real electrs,
    /// returns once electrs serves the node's new tip.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Timeout`] when electrs does not follow; when the RPC call fails (e.g. unknown block).
    pub fn invalidate(&self, hash: &BlockHash) -> Result<(), HarnessError> {
        self.rpc
            .call("invalidateblock", &[json!(hash.to_string())])?;
        self.wait_for_electrs_tip()
    }

    /// Reconsider an invalidated block, as Core's `reconsiderblock`. Against a real electrs,
    /// returns once electrs serves the node's new tip.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Timeout`] when electrs does not follow; when the RPC call fails.
    pub fn reconsider(&self, hash: &BlockHash) -> Result<(), HarnessError> {
        self.rpc
            .call("reconsiderblock", &[json!(hash.to_string())])?;
        self.wait_for_electrs_tip()
    }

    /// Stop the node and start it again on the same datadir and ports: [`Restart::Clean`] as
    /// `regtest down`/`regtest up` (Core's `stop`; the mempool is kept in `mempool.dat`),
    /// [`Restart::Crash`] as a `kill -9` (the mempool is lost). Returns once the node and its
    /// Electrum server answer at the old tip. Clients must reconnect.
    ///
    /// # Errors
    /// Start failures; [`HarnessError::Timeout`].
    pub fn restart(&mut self, how: Restart) -> Result<(), HarnessError> {
        let Backend::Embedded(server) = &self.backend else {
            return self.restart_real(how);
        };
        let height = self.tip_height()?;
        let datadir = server.datadir().to_path_buf();
        let (e, r) = (server.electrum_addr().port(), server.rpc_addr().port());
        match how {
            Restart::Clean => server.stop(),
            Restart::Crash => server.kill(),
        }
        // The ports were just released; binding them again may race a lingering socket.
        let deadline = Instant::now() + START_TIMEOUT;
        let started = loop {
            match Server::start(ServerConfig::new(&datadir).ports(e, r)) {
                Ok(s) => break s,
                Err(err) if Instant::now() > deadline => return Err(err.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        self.backend = Backend::Embedded(Box::new(started));
        self.rpc = RpcClient::new(&self.rpc_url, self.auth.clone())?;
        self.wait_for_height(height, START_TIMEOUT)
    }

    /// Set the node's clock (Core's `setmocktime`; 0 returns to the system clock).
    ///
    /// # Errors
    ///
    /// When the RPC call fails.
    pub fn set_mocktime(&self, unix_time: u64) -> Result<(), HarnessError> {
        self.rpc.call("setmocktime", &[json!(unix_time)])?;
        self.mocktime.set(unix_time);
        Ok(())
    }

    /// One Electrum call on a fresh connection (for waits and checks; clients under test
    /// use their own).
    ///
    /// # Errors
    ///
    /// [`HarnessError::Electrum`] when the call fails or returns an error object.
    pub fn electrum_call(&self, method: &str, params: Value) -> Result<Value, HarnessError> {
        let fail = |detail: String| HarnessError::Electrum {
            method: method.to_string(),
            detail,
        };
        let timeout = Duration::from_secs(10);
        let stream =
            TcpStream::connect_timeout(&self.electrum, timeout).map_err(|e| fail(e.to_string()))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| fail(e.to_string()))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| fail(e.to_string()))?;
        let mut w = stream.try_clone().map_err(|e| fail(e.to_string()))?;
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        w.write_all(format!("{req}\n").as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| fail(e.to_string()))?;
            if n == 0 {
                return Err(fail("connection closed".into()));
            }
            let v: Value = serde_json::from_str(&line).map_err(|e| fail(e.to_string()))?;
            if v.get("id") != Some(&json!(1)) {
                continue; // a notification
            }
            if let Some(err) = v.get("error") {
                return Err(fail(err.to_string()));
            }
            return Ok(v.get("result").cloned().unwrap_or(Value::Null));
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        match &mut self.backend {
            Backend::Embedded(server) => server.stop(),
            Backend::Real {
                bitcoind, electrs, ..
            } => {
                if let Some(electrs) = electrs {
                    let _ = electrs.kill();
                    let _ = electrs.wait();
                }
                let _ = self.rpc.call("stop", &[]);
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match bitcoind.try_wait() {
                        Ok(Some(_)) => break,
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        _ => {
                            let _ = bitcoind.kill();
                            let _ = bitcoind.wait();
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// The warning printed when only one of `BITCOIND_EXE` / `ELECTRS_EXE` is set.
fn half_configured_message(bitcoind_set: bool) -> String {
    let (set, missing) = if bitcoind_set {
        (BITCOIND_EXE, ELECTRS_EXE)
    } else {
        (ELECTRS_EXE, BITCOIND_EXE)
    };
    format!(
        "btcmpc-regtest: {set} is set but {missing} is not; using the embedded node \
         (set both to test against a real bitcoind + electrs)"
    )
}

fn real_exe(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Wait until electrs's Prometheus endpoint at `metrics` reports a finished sync pass
/// (`electrs_server_loop_duration_count{step="notify"}` of at least 1).
fn wait_for_electrs_sync(metrics: SocketAddr, timeout: Duration) -> Result<(), HarnessError> {
    let deadline = Instant::now() + timeout;
    loop {
        if electrs_notify_count(metrics).is_some_and(|n| n >= 1) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: format!("electrs's first index sync (metrics at {metrics})"),
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number of finished sync passes electrs reports at `metrics`, `None` while it does not
/// answer or has not finished one.
fn electrs_notify_count(metrics: SocketAddr) -> Option<u64> {
    use std::io::Read as _;
    let timeout = Duration::from_secs(2);
    let mut s = TcpStream::connect_timeout(&metrics, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    // The page is a few hundred kB at most; bound what we read.
    s.take(4 << 20).read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("electrs_server_loop_duration_count{step=\"notify\"} "))
        .and_then(|n| n.trim().parse().ok())
}

/// A loopback port held until the lease is dropped ([`crate::ports`]).
fn lease_port() -> Result<PortLease, HarnessError> {
    PortLease::new().map_err(io_err("leasing a loopback port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The faucet of a real bitcoind works without Core's wallet: payments confirm, several in
    /// one mempool do not conflict, and coinbase outputs are spent only once mature. Runs
    /// when `BITCOIND_EXE` is set (`scripts/build-core`); says so and passes without.
    #[test]
    fn real_faucet_pays_without_cores_wallet() {
        let Some(exe) = real_exe(BITCOIND_EXE) else {
            eprintln!("skipping real_faucet_pays_without_cores_wallet: set {BITCOIND_EXE}");
            return;
        };
        let env = TestEnv::real_bitcoind_only(&exe).expect("bitcoind starts");
        assert_eq!(env.tip_height().unwrap(), 101);
        let Backend::Real { faucet, .. } = &env.backend else {
            panic!("a real backend")
        };
        let to = |seed: u8| {
            let secp = bitcoin::secp256k1::Secp256k1::signing_only();
            let key = bitcoin::secp256k1::SecretKey::from_slice(&[seed; 32]).unwrap();
            Address::p2wpkh(
                &bitcoin::CompressedPublicKey(key.public_key(&secp)),
                Network::Regtest,
            )
        };
        // At height 101 the coinbases of heights 1 and 2 (50 BTC each) are spendable in the
        // next block. After a 1 BTC payment spends one, 60 BTC is more than is left: the coin
        // spent in the mempool is skipped, not offered again (a conflict).
        let first = faucet
            .pay(
                &env.rpc,
                &to(1).script_pubkey(),
                Amount::from_btc(1.0).unwrap(),
            )
            .unwrap();
        let mempool: Vec<String> = env.rpc.call_as("getrawmempool", &[]).unwrap();
        assert_eq!(mempool, vec![first.to_string()]);
        let err = faucet
            .pay(
                &env.rpc,
                &to(2).script_pubkey(),
                Amount::from_btc(60.0).unwrap(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot pay"), "{err}");
        env.mine(1).unwrap();
        for seed in 3..6 {
            let txid = env.fund(&to(seed), Amount::from_sat(50_000)).unwrap();
            let tx = env
                .rpc
                .call("getrawtransaction", &[json!(txid.to_string()), json!(1)])
                .unwrap();
            assert!(tx["confirmations"].as_u64().unwrap() >= 1, "{tx}");
            assert!(tx["vout"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["value"] == json!(0.0005)
                    && o["scriptPubKey"]["address"] == json!(to(seed).to_string())));
        }
        assert_eq!(env.tip_height().unwrap(), 105);
    }

    #[test]
    fn half_configured_message_names_the_missing_variable() {
        let m = half_configured_message(true);
        assert!(
            m.contains("BITCOIND_EXE is set but ELECTRS_EXE is not"),
            "{m}"
        );
        assert!(m.contains("embedded node"), "{m}");
        let m = half_configured_message(false);
        assert!(
            m.contains("ELECTRS_EXE is set but BITCOIND_EXE is not"),
            "{m}"
        );
    }
}

/// A hostile Electrum server for tests: it answers some methods itself with fixed results (a
/// lying `blockchain.estimatefee`, say) and forwards every other line to a real server.
/// Loopback only; at most [`ElectrumProxy::MAX_CLIENTS`] clients at once; stopped (listener
/// and every connection) when dropped.
///
/// Only single requests are answered by the proxy; batches are forwarded as they are.
#[derive(Debug)]
pub struct ElectrumProxy {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ElectrumProxy {
    /// Most clients served at once; further ones are closed at once.
    pub const MAX_CLIENTS: usize = 32;

    /// Start a proxy in front of `upstream` (`HOST:PORT`) answering each method of `answers`
    /// with its value as the result.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when the loopback port cannot be bound.
    pub fn start(
        upstream: &str,
        answers: std::collections::HashMap<String, Value>,
    ) -> Result<ElectrumProxy, HarnessError> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let io = |what: &str| {
            let what = what.to_string();
            move |source| HarnessError::Io { what, source }
        };
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding the proxy"))?;
        let addr = listener.local_addr().map_err(io("proxy address"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let upstream = upstream.trim_start_matches("tcp://").to_string();
        let answers = Arc::new(answers);
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                {
                    let mut c = conns2.lock().unwrap_or_else(|p| p.into_inner());
                    c.retain(|s| s.peer_addr().is_ok());
                    if c.len() >= 2 * Self::MAX_CLIENTS {
                        continue;
                    }
                    for s in [&client, &server] {
                        if let Ok(s) = s.try_clone() {
                            c.push(s);
                        }
                    }
                }
                let (Ok(mut client_w), Ok(mut server_r)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                // Upstream to client.
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_r, &mut client_w);
                    let _ = client_w.shutdown(std::net::Shutdown::Both);
                });
                // Client to upstream, answering the chosen methods here.
                let answers = answers.clone();
                std::thread::spawn(move || {
                    let Ok(mut client_w) = client.try_clone() else {
                        return;
                    };
                    let mut server_w = server;
                    let mut r = BufReader::new(client);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        let v: Option<Value> = serde_json::from_str(&line).ok();
                        let fake = v.as_ref().and_then(|v| {
                            let m = v.get("method")?.as_str()?;
                            let result = answers.get(m)?;
                            Some(json!({"jsonrpc": "2.0", "id": v.get("id").cloned().unwrap_or(Value::Null), "result": result}))
                        });
                        let sent = match fake {
                            Some(reply) => client_w.write_all(format!("{reply}\n").as_bytes()),
                            None => server_w.write_all(line.as_bytes()),
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                    let _ = server_w.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Ok(ElectrumProxy {
            addr,
            stop,
            conns,
            thread: Some(thread),
        })
    }

    /// The proxy's `HOST:PORT`.
    pub fn url(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for ElectrumProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        for s in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
