//! The node process: a [`Node`] in a data directory with its Electrum and RPC servers.
//!
//! [`Server::start`] opens the node, mines the faucet's first 101 blocks on a new chain, binds
//! both servers on loopback (port 0 picks free ports), writes the RPC cookie (`.cookie`,
//! `__cookie__:HEX` as Core does) and `node.json` (ports, pid) into the datadir so that clients
//! find it, and serves on its own Tokio runtime thread until the `stop` RPC, a signal (when
//! asked for) or [`Server::stop`]. On the way out it flushes the chain, writes the mempool
//! (`mempool.dat`, reloaded at the next start; not after [`Server::kill`]) and removes `node.json`
//! and the cookie.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bitcoin::Address;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::faucet::{self, Faucet, FaucetError};
use crate::limits::Limits;
use crate::node::{Automine, AutomineMode, Node, NodeConfig, NodeError};
use crate::rpc::{RpcContext, RpcCredentials};

/// File in the datadir describing the running node.
pub const NODE_INFO_FILE: &str = "node.json";
/// Core's cookie file name.
pub const COOKIE_FILE: &str = ".cookie";
/// The cookie's user name, as Core's.
pub const COOKIE_USER: &str = "__cookie__";

/// A shutdown signal shared by the servers of one node process.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    started: Instant,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
            started: Instant::now(),
        }
    }

    /// Ask everything to stop (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once triggered.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Time since the signal was created (the process's uptime).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// How to run a node process.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The data directory (created if missing).
    pub datadir: PathBuf,
    /// Address both servers bind to (loopback by default).
    pub bind: IpAddr,
    /// Electrum port; 0 picks a free one.
    pub electrum_port: u16,
    /// RPC port; 0 picks a free one.
    pub rpc_port: u16,
    /// Automatic mining (rewards to the faucet).
    pub automine: Option<AutomineMode>,
    /// Extra RPC credentials besides the cookie.
    pub rpc_user: Option<(String, String)>,
    /// Stop on SIGINT/SIGTERM (for the foreground process; not for in-process test nodes).
    pub handle_signals: bool,
    /// What one client may take from the servers (default: from this process's open-file
    /// limit, see [`Limits::from_fd_limit`]).
    pub limits: Limits,
}

impl ServerConfig {
    /// A node in `datadir` on free loopback ports, mining on request.
    pub fn new(datadir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            datadir: datadir.into(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            electrum_port: 0,
            rpc_port: 0,
            automine: None,
            rpc_user: None,
            handle_signals: false,
            limits: Limits::default(),
        }
    }

    /// Set the ports (0 = any free port).
    pub fn ports(mut self, electrum: u16, rpc: u16) -> Self {
        self.electrum_port = electrum;
        self.rpc_port = rpc;
        self
    }

    /// Set automatic mining.
    pub fn automine(mut self, automine: Option<AutomineMode>) -> Self {
        self.automine = automine;
        self
    }

    /// Stop on SIGINT/SIGTERM.
    pub fn handle_signals(mut self, yes: bool) -> Self {
        self.handle_signals = yes;
        self
    }

    /// Set the servers' limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// Errors starting or running the node process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The node failed to open or flush.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The faucet key could not be used or its first blocks mined.
    #[error(transparent)]
    Faucet(#[from] FaucetError),
    /// Binding a port, writing a file or starting the runtime failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another node process already serves this datadir.
    #[error("a node is already running on datadir {datadir} (pid {pid})")]
    AlreadyRunning {
        /// The datadir.
        datadir: PathBuf,
        /// Its process id.
        pid: u32,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// What `node.json` holds: where a running node listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Process id of the node.
    pub pid: u32,
    /// Electrum server, `HOST:PORT`.
    pub electrum: String,
    /// RPC server URL, `http://HOST:PORT`.
    pub rpc: String,
    /// The cookie file for RPC authentication.
    pub cookie: PathBuf,
    /// The faucet's address.
    pub faucet_address: String,
    /// Always `regtest`.
    pub network: String,
}

impl NodeInfo {
    /// Read `datadir/node.json`; `Ok(None)` when there is none (no node running there).
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] when it exists but cannot be read or parsed.
    pub fn read(datadir: &Path) -> Result<Option<NodeInfo>, ServerError> {
        let path = datadir.join(NODE_INFO_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ServerError::Io {
                    what: format!("parsing {}", path.display()),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }

    /// The contents of `node.json` describing this node: pretty-printed JSON (two-space
    /// indents, the fields in declaration order, no trailing newline). The format is frozen as
    /// version 1 (`tests/data/node_v1.json`): other processes read it (the `btcmpc regtest`
    /// commands, the CLI looking for a running node).
    ///
    /// # Errors
    /// When the cookie path is not UTF-8 (JSON strings are).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(self)
    }

    /// Whether the process recorded here still exists (Linux: `/proc/PID`).
    pub fn process_alive(&self) -> bool {
        if self.pid == std::process::id() {
            return true;
        }
        let proc_dir = Path::new("/proc");
        if proc_dir.is_dir() {
            proc_dir.join(self.pid.to_string()).exists()
        } else {
            // Without /proc, assume it is; the caller checks that the RPC answers.
            true
        }
    }
}

/// Write a file readable by its owner only, atomically and durably ([`write_atomic`]).
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomic(path, contents, 0o600)
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file in the same directory,
/// `fsync`, rename, `fsync` of the directory (the `atomic-write-file` crate, the same guarantee
/// as `btcmpc_wallet::fs::write_atomic`; this crate depends on no other of the workspace), with
/// Unix permissions `mode`. After a crash the file holds its old contents or the new ones.
///
/// # Errors
/// The I/O error of the step that failed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = atomic_write_file::OpenOptions::new();
    #[cfg(unix)]
    {
        use atomic_write_file::unix::OpenOptionsExt as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        options.preserve_mode(false).mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// A running node process (in this process): the node, its faucet and both servers.
pub struct Server {
    node: Node,
    faucet: Arc<Faucet>,
    datadir: PathBuf,
    electrum_addr: SocketAddr,
    rpc_addr: SocketAddr,
    cookie: (String, String),
    shutdown: Shutdown,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Cleared by [`Server::kill`]: stop without writing the mempool.
    keep_mempool: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("datadir", &self.datadir)
            .field("electrum", &self.electrum_addr)
            .field("rpc", &self.rpc_addr)
            .finish()
    }
}

impl Server {
    /// Open the node in `cfg.datadir`, mine the faucet's first blocks on a new chain, bind
    /// both servers and serve them on a background runtime thread.
    ///
    /// # Errors
    ///
    /// [`ServerError::AlreadyRunning`] when a live node already serves the datadir; node,
    /// faucet and I/O errors (e.g. a port in use) otherwise.
    pub fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        let datadir = cfg.datadir.clone();
        std::fs::create_dir_all(&datadir)
            .map_err(io_err(format!("creating datadir {}", datadir.display())))?;
        if let Some(info) = NodeInfo::read(&datadir).ok().flatten() {
            if info.process_alive() && rpc_answers(&info) {
                return Err(ServerError::AlreadyRunning {
                    datadir,
                    pid: info.pid,
                });
            }
        }
        let key = faucet::load_or_create_key(Some(&datadir))?;
        let faucet_spk = Faucet::script_pubkey_of(&key);
        let automine = cfg.automine.clone().map(|mode| Automine {
            mode,
            script_pubkey: faucet_spk.clone(),
        });
        let node = Node::open(NodeConfig::with_datadir(&datadir).automine(automine))?;
        let faucet = Arc::new(Faucet::new(node.clone(), key));
        faucet.ensure_initial_blocks()?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("btcmpc-regtest")
            .enable_all()
            .build()
            .map_err(io_err("starting the tokio runtime"))?;
        let (electrum_listener, rpc_listener) = runtime.block_on(async {
            let e = tokio::net::TcpListener::bind((cfg.bind, cfg.electrum_port))
                .await
                .map_err(io_err(format!(
                    "binding the electrum port {}:{}",
                    cfg.bind, cfg.electrum_port
                )))?;
            let r = tokio::net::TcpListener::bind((cfg.bind, cfg.rpc_port))
                .await
                .map_err(io_err(format!(
                    "binding the rpc port {}:{}",
                    cfg.bind, cfg.rpc_port
                )))?;
            Ok::<_, ServerError>((e, r))
        })?;
        let electrum_addr = electrum_listener
            .local_addr()
            .map_err(io_err("reading the electrum address"))?;
        let rpc_addr = rpc_listener
            .local_addr()
            .map_err(io_err("reading the rpc address"))?;

        let mut secret = [0u8; 32];
        bitcoin::secp256k1::rand::RngCore::fill_bytes(
            &mut bitcoin::secp256k1::rand::thread_rng(),
            &mut secret,
        );
        let cookie = (COOKIE_USER.to_string(), hex::encode(secret));
        let cookie_path = datadir.join(COOKIE_FILE);
        write_private_file(
            &cookie_path,
            format!("{}:{}", cookie.0, cookie.1).as_bytes(),
        )
        .map_err(io_err(format!("writing {}", cookie_path.display())))?;

        let shutdown = Shutdown::new();
        let mut accepted = vec![cookie.clone()];
        accepted.extend(cfg.rpc_user.clone());
        let creds = RpcCredentials::new(accepted);
        let ctx = RpcContext {
            node: node.clone(),
            faucet: Some(faucet.clone()),
            shutdown: shutdown.clone(),
        };
        let info = NodeInfo {
            pid: std::process::id(),
            electrum: electrum_addr.to_string(),
            rpc: format!("http://{rpc_addr}"),
            cookie: cookie_path.clone(),
            faucet_address: faucet.address().to_string(),
            network: "regtest".into(),
        };
        let info_path = datadir.join(NODE_INFO_FILE);
        let info_json = info.to_json().map_err(|e| ServerError::Io {
            what: "encoding node.json".into(),
            source: std::io::Error::other(e),
        })?;
        write_private_file(&info_path, &info_json)
            .map_err(io_err(format!("writing {}", info_path.display())))?;

        let thread_node = node.clone();
        let thread_shutdown = shutdown.clone();
        let keep_mempool = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let thread_keep_mempool = keep_mempool.clone();
        let handle_signals = cfg.handle_signals;
        let limits = cfg.limits;
        let thread = std::thread::Builder::new()
            .name("btcmpc-regtest-server".into())
            .spawn(move || {
                runtime.block_on(async {
                    if handle_signals {
                        tokio::spawn(wait_for_signal(thread_shutdown.clone()));
                    }
                    let electrum = tokio::spawn(crate::electrum::serve_with(
                        electrum_listener,
                        thread_node.clone(),
                        thread_shutdown.clone(),
                        crate::electrum::Timeouts::default(),
                        limits,
                    ));
                    let rpc =
                        tokio::spawn(crate::rpc::serve_with(rpc_listener, ctx, creds, limits));
                    let _ = electrum.await;
                    let _ = rpc.await;
                    // Let in-flight replies (e.g. to `stop`) reach their clients.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                });
                runtime.shutdown_timeout(Duration::from_secs(2));
                let stopped = if thread_keep_mempool.load(std::sync::atomic::Ordering::SeqCst) {
                    thread_node.shutdown()
                } else {
                    thread_node.crash()
                };
                if let Err(e) = stopped {
                    warn!(target: "btcmpc_regtest::server", "flushing the chain failed: {e}");
                }
                let _ = std::fs::remove_file(&info_path);
                let _ = std::fs::remove_file(&cookie_path);
                info!(target: "btcmpc_regtest::server", "node stopped");
            })
            .map_err(io_err("spawning the server thread"))?;
        info!(target: "btcmpc_regtest::server", electrum = %electrum_addr, rpc = %rpc_addr, datadir = %datadir.display(), "node serving");
        Ok(Server {
            node,
            faucet,
            datadir,
            electrum_addr,
            rpc_addr,
            cookie,
            shutdown,
            thread: Mutex::new(Some(thread)),
            keep_mempool,
        })
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The faucet.
    pub fn faucet(&self) -> &Arc<Faucet> {
        &self.faucet
    }

    /// The faucet's address.
    pub fn faucet_address(&self) -> Address {
        self.faucet.address()
    }

    /// The datadir.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The Electrum server's address.
    pub fn electrum_addr(&self) -> SocketAddr {
        self.electrum_addr
    }

    /// The RPC server's address.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    /// The RPC URL, `http://127.0.0.1:PORT`.
    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    /// The cookie credentials (`__cookie__`, HEX).
    pub fn cookie(&self) -> (&str, &str) {
        (&self.cookie.0, &self.cookie.1)
    }

    /// The cookie file.
    pub fn cookie_path(&self) -> PathBuf {
        self.datadir.join(COOKIE_FILE)
    }

    /// The shutdown signal (triggered by the `stop` RPC).
    pub fn shutdown_signal(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Block until the node stops (the `stop` RPC, a handled signal, or [`Server::stop`] from
    /// another thread), then return once the chain is flushed.
    pub fn wait(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Stop the servers, flush the chain, write the mempool (`mempool.dat`) and remove
    /// `node.json` and the cookie.
    pub fn stop(&self) {
        self.shutdown.trigger();
        self.wait();
    }

    /// Stop as a crash (`kill -9`) would: the servers close and the mempool is not written, so
    /// the next start has lost it. For tests of what clients do when a node forgets.
    pub fn kill(&self) {
        self.keep_mempool
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.stop();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_for_signal(shutdown: Shutdown) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                    _ = shutdown.wait() => return,
                }
            }
            Err(_) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = shutdown.wait() => return,
        }
    }
    info!(target: "btcmpc_regtest::server", "signal received, stopping");
    shutdown.trigger();
}

/// Whether the node described by `info` answers RPC (a quick `getblockcount`).
pub fn rpc_answers(info: &NodeInfo) -> bool {
    crate::rpc_client::RpcClient::new(
        &info.rpc,
        crate::rpc_client::Auth::CookieFile(info.cookie.clone()),
    )
    .map(|c| c.with_timeout(Duration::from_secs(2)))
    .and_then(|c| c.call("getblockcount", &[]))
    .is_ok()
}

/// How [`stop_node`] ended.
#[derive(Debug)]
pub enum StopOutcome {
    /// The node answered `stop`, removed its `node.json` and exited (or the timeout passed
    /// while its pid was still visible, not yet reaped).
    Stopped,
    /// The node of `node.json` did not answer and its process is gone (killed earlier): its
    /// stale `node.json` was removed. The error is the call's.
    Stale(crate::rpc_client::RpcClientError),
}

/// Errors of [`stop_node`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StopError {
    /// No RPC client could be made for the node's URL and cookie.
    #[error(transparent)]
    Client(crate::rpc_client::RpcClientError),
    /// The node's process is alive but the `stop` call failed.
    #[error("asking the node to stop")]
    Refused(#[source] crate::rpc_client::RpcClientError),
    /// The node still ran `timeout` after it was asked to stop.
    #[error("the node (pid {pid}) did not stop within {timeout:?}")]
    Timeout {
        /// Its process id.
        pid: u32,
        /// How long it was given.
        timeout: Duration,
    },
}

/// Stop the node `info` describes (read from `datadir` with [`NodeInfo::read`]): ask it over
/// RPC, then wait up to `timeout` for its `node.json` to go and its process to exit. A node
/// that does not answer and whose process is gone leaves a stale `node.json`, which is removed.
///
/// # Errors
/// [`StopError`]: the client cannot be made, a live node refuses, or it outlives `timeout`.
pub fn stop_node(
    info: &NodeInfo,
    datadir: &Path,
    timeout: Duration,
) -> Result<StopOutcome, StopError> {
    let rpc = crate::rpc_client::RpcClient::new(
        &info.rpc,
        crate::rpc_client::Auth::CookieFile(info.cookie.clone()),
    )
    .map_err(StopError::Client)?
    .with_timeout(Duration::from_secs(120));
    let info_path = datadir.join(NODE_INFO_FILE);
    match rpc.call("stop", &[]) {
        Ok(_) => {}
        Err(e) if !info.process_alive() => {
            let _ = std::fs::remove_file(&info_path);
            return Ok(StopOutcome::Stale(e));
        }
        Err(e) => return Err(StopError::Refused(e)),
    }
    let deadline = Instant::now() + timeout;
    while info_path.exists() && info.process_alive() {
        if Instant::now() >= deadline {
            return Err(StopError::Timeout {
                pid: info.pid,
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The pid disappears once the process is reaped; wait for that too when it can be seen.
    while info.process_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(StopOutcome::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture's path (rewritten by the test when `BTCMPC_UPDATE_FIXTURES` is set).
    const NODE_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/node_v1.json");

    fn fixture_info() -> NodeInfo {
        NodeInfo {
            pid: 4242,
            electrum: "127.0.0.1:50001".into(),
            rpc: "http://127.0.0.1:18443".into(),
            cookie: PathBuf::from("/home/alice/.btcmpc/regtest/.cookie"),
            faucet_address: "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk".into(),
            network: "regtest".into(),
        }
    }

    /// A `node.json` whose node is gone (no such process, nothing listening): `stop_node`
    /// says it was stale and removes it.
    #[test]
    fn stopping_a_dead_node_removes_its_stale_node_json() {
        let dir = tempfile::tempdir().unwrap();
        let info = NodeInfo {
            // Above any Linux pid_max: no such process.
            pid: u32::MAX,
            rpc: "http://127.0.0.1:1".into(),
            cookie: dir.path().join(COOKIE_FILE),
            ..fixture_info()
        };
        let path = dir.path().join(NODE_INFO_FILE);
        std::fs::write(&path, info.to_json().unwrap()).unwrap();
        let outcome = stop_node(&info, dir.path(), Duration::from_secs(5)).unwrap();
        assert!(matches!(outcome, StopOutcome::Stale(_)), "{outcome:?}");
        assert!(!path.exists());
    }

    /// Version 1 of `node.json`, frozen: the fixture reads into today's fields and today's
    /// code writes the same bytes for the same values.
    #[test]
    fn node_json_v1_is_frozen() {
        let info = fixture_info();
        let written = info.to_json().unwrap();
        if std::env::var_os("BTCMPC_UPDATE_FIXTURES").is_some() {
            std::fs::write(NODE_V1, &written).unwrap();
        }
        let frozen = std::fs::read(NODE_V1).unwrap();
        let read: NodeInfo = serde_json::from_slice(&frozen).unwrap();
        assert_eq!(read, info);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            String::from_utf8(frozen).unwrap(),
            "node.json's format changed; other processes read it"
        );
    }

    /// `NodeInfo::read` finds the fixture as `node.json` in a datadir.
    #[test]
    fn read_parses_node_json_in_a_datadir() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NodeInfo::read(dir.path()).unwrap(), None);
        std::fs::copy(NODE_V1, dir.path().join(NODE_INFO_FILE)).unwrap();
        assert_eq!(NodeInfo::read(dir.path()).unwrap(), Some(fixture_info()));
    }

    /// A started node writes exactly [`NodeInfo::to_json`] of what it describes, so the frozen
    /// format above is the one on disk.
    #[test]
    fn a_started_node_writes_node_json_in_the_frozen_format() {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(ServerConfig::new(dir.path().join("node"))).unwrap();
        let bytes = std::fs::read(server.datadir().join(NODE_INFO_FILE)).unwrap();
        let info: NodeInfo = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(info.pid, std::process::id());
        assert_eq!(info.electrum, server.electrum_addr().to_string());
        assert_eq!(info.rpc, server.rpc_url());
        assert_eq!(info.cookie, server.cookie_path());
        assert_eq!(info.faucet_address, server.faucet_address().to_string());
        assert_eq!(info.network, "regtest");
        assert_eq!(info.to_json().unwrap(), bytes);
        server.stop();
    }
}
