//! A regtest test environment for the whole workspace, in the style of `bdk_testenv`.
//!
//! [`TestEnv::new`] starts the embedded node in-process, in a temporary datadir, on free
//! loopback ports; with the environment variables `BITCOIND_EXE` and `ELECTRS_EXE` set it
//! starts a real `bitcoind -regtest` (with `-txindex`, cookie auth, a wallet for the faucet)
//! and `electrs` against it instead. Either way tests reach the chain the same way clients do:
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
    },
}

/// How [`TestEnv::restart`] stops the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// A clean stop (Core's `stop` RPC, `regtest down`): the mempool is written and reloaded.
    Clean,
    /// A crash (`kill -9`): the mempool is lost.
    Crash,
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
        })
    }

    /// Start a real `bitcoind` and `electrs` from the given binaries.
    ///
    /// # Errors
    ///
    /// When either cannot be started or does not answer in time.
    pub fn real(bitcoind_exe: &Path, electrs_exe: &Path) -> Result<TestEnv, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("btcmpc-regtest-real-")
            .tempdir()
            .map_err(io_err("creating a temporary datadir"))?;
        let datadir = dir.path().join("bitcoind");
        std::fs::create_dir_all(&datadir).map_err(io_err("creating the bitcoind datadir"))?;
        let rpc_port = free_port()?;
        let p2p_port = free_port()?;
        let bitcoind = Command::new(bitcoind_exe)
            .arg("-regtest")
            .arg(format!("-datadir={}", datadir.display()))
            .arg("-txindex=1")
            .arg("-server=1")
            .arg("-fallbackfee=0.0001")
            .arg(format!("-rpcport={rpc_port}"))
            .arg(format!("-port={p2p_port}"))
            .arg("-bind=127.0.0.1")
            .arg("-listen=1")
            .arg("-printtoconsole=0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err(format!("starting {}", bitcoind_exe.display())))?;
        let cookie = datadir.join("regtest").join(crate::server::COOKIE_FILE);
        let rpc_url = format!("http://127.0.0.1:{rpc_port}");
        let auth = Auth::CookieFile(cookie);
        let rpc = RpcClient::new(&rpc_url, auth.clone())?.with_timeout(Duration::from_secs(30));
        // From here on, dropping `env` cleans up the processes.
        let placeholder = Address::from_str("bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk")
            .map_err(|e| HarnessError::Unexpected(e.to_string()))?
            .assume_checked();
        let mut env = TestEnv {
            backend: Backend::Real {
                bitcoind,
                electrs: None,
            },
            rpc,
            rpc_url,
            auth,
            electrum: SocketAddr::from(([127, 0, 0, 1], 0)),
            mine_address: placeholder,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match env.rpc.call("getblockcount", &[]) {
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        env.rpc.call("createwallet", &[json!("harness")])?;
        let addr: String = env.rpc.call_as("getnewaddress", &[])?;
        env.mine_address = parse_regtest_address(&addr)?;
        env.mine(101)?;

        let electrum_port = free_port()?;
        let electrs = Command::new(electrs_exe)
            .arg("--network=regtest")
            .arg(format!("--daemon-dir={}", datadir.display()))
            .arg(format!("--daemon-rpc-addr=127.0.0.1:{rpc_port}"))
            .arg(format!("--daemon-p2p-addr=127.0.0.1:{p2p_port}"))
            .arg(format!("--electrum-rpc-addr=127.0.0.1:{electrum_port}"))
            .arg(format!(
                "--db-dir={}",
                env.dir.path().join("electrs").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err(format!("starting {}", electrs_exe.display())))?;
        if let Backend::Real { electrs: slot, .. } = &mut env.backend {
            *slot = Some(electrs);
        }
        env.electrum = SocketAddr::from(([127, 0, 0, 1], electrum_port));
        let height = env.tip_height()?;
        env.wait_for_height(height, START_TIMEOUT)?;
        info!(target: "btcmpc_regtest::harness", rpc = %env.rpc_url, electrum = %env.electrum, "real bitcoind and electrs running");
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

    /// Mine `n` blocks paying to `address`.
    ///
    /// # Errors
    ///
    /// When the RPC call fails.
    pub fn mine_to(&self, n: u32, address: &Address) -> Result<Vec<BlockHash>, HarnessError> {
        let hashes: Vec<String> = self
            .rpc
            .call_as("generatetoaddress", &[json!(n), json!(address.to_string())])?;
        hashes
            .iter()
            .map(|h| BlockHash::from_str(h).map_err(|e| HarnessError::Unexpected(e.to_string())))
            .collect()
    }

    /// Pay `amount` to `address` from the faucet and mine one block confirming it.
    ///
    /// # Errors
    ///
    /// When the faucet cannot pay or the RPC call fails.
    pub fn fund(&self, address: &Address, amount: Amount) -> Result<Txid, HarnessError> {
        let txid = if self.is_real() {
            let txid: String = self.rpc.call_as(
                "sendtoaddress",
                &[json!(address.to_string()), json!(amount.to_btc())],
            )?;
            self.mine(1)?;
            txid
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

    /// Invalidate a block (and its descendants), as Core's `invalidateblock`.
    ///
    /// # Errors
    ///
    /// When the RPC call fails (e.g. unknown block).
    pub fn invalidate(&self, hash: &BlockHash) -> Result<(), HarnessError> {
        self.rpc
            .call("invalidateblock", &[json!(hash.to_string())])?;
        Ok(())
    }

    /// Reconsider an invalidated block, as Core's `reconsiderblock`.
    ///
    /// # Errors
    ///
    /// When the RPC call fails.
    pub fn reconsider(&self, hash: &BlockHash) -> Result<(), HarnessError> {
        self.rpc
            .call("reconsiderblock", &[json!(hash.to_string())])?;
        Ok(())
    }

    /// Stop the node and start it again on the same datadir and ports: [`Restart::Clean`] as
    /// `regtest down`/`regtest up` (Core's `stop`; the mempool is kept in `mempool.dat`),
    /// [`Restart::Crash`] as a `kill -9` (the mempool is lost). Returns once the node and its
    /// Electrum server answer at the old tip. Clients must reconnect.
    ///
    /// # Errors
    /// [`HarnessError::Unexpected`] against a real bitcoind (not supported here); start
    /// failures; [`HarnessError::Timeout`].
    pub fn restart(&mut self, how: Restart) -> Result<(), HarnessError> {
        let Backend::Embedded(server) = &self.backend else {
            return Err(HarnessError::Unexpected(
                "restart is supported on the embedded node only".into(),
            ));
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
            Backend::Real { bitcoind, electrs } => {
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

/// A port that was free a moment ago (bind to port 0, read it, release it).
fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind(("127.0.0.1", 0)).map_err(io_err("finding a free port"))?;
    let port = l
        .local_addr()
        .map_err(io_err("finding a free port"))?
        .port();
    Ok(port)
}

fn parse_regtest_address(s: &str) -> Result<Address, HarnessError> {
    Address::from_str(s)
        .ok()
        .and_then(|a| a.require_network(Network::Regtest).ok())
        .ok_or_else(|| HarnessError::Unexpected(format!("not a regtest address: {s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
