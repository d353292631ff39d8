//! The public face of the embedded regtest node: [`Node`], its configuration and the values it
//! returns.
//!
//! A [`Node`] owns one chain (blocks, UTXO set, indexes, mempool) behind a lock. It is cheap to
//! clone and every method takes `&self`, so the Electrum and RPC servers share one instance
//! across tasks and threads.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use bitcoin::block::Header;
use bitcoin::{Block, BlockHash, FeeRate, OutPoint, Script, Transaction, TxMerkleNode, Txid};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::chain::{self, ChainState};
pub use crate::types::*;

/// How many events a slow [`Node::subscribe`] receiver may lag before it misses some.
const EVENT_CAPACITY: usize = 4096;

/// How to open a [`Node`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The data directory holding the block store; `None` keeps everything in memory.
    pub datadir: Option<PathBuf>,
    /// Mine automatically (a background thread of the node); `None` mines only on request.
    pub automine: Option<Automine>,
}

impl NodeConfig {
    /// A node kept in memory only, mining on request.
    pub fn in_memory() -> Self {
        NodeConfig::default()
    }

    /// A node persisted in `datadir` (created if missing), mining on request.
    pub fn with_datadir(datadir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            datadir: Some(datadir.into()),
            automine: None,
        }
    }

    /// Sets automatic mining.
    pub fn automine(mut self, automine: Option<Automine>) -> Self {
        self.automine = automine;
        self
    }
}

pub(crate) struct Inner {
    pub(crate) state: RwLock<ChainState>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) shut_down: Mutex<bool>,
}

/// A [`Node`] reference that does not keep it alive (for its own background threads).
#[derive(Clone)]
pub(crate) struct WeakNode(Weak<Inner>);

impl WeakNode {
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

/// The embedded regtest node. Cheap to clone; all clones share one chain.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("tip", &self.tip().height)
            .finish()
    }
}

impl Node {
    /// Opens a node: starts from the regtest genesis block in a new (or no) data directory,
    /// or loads the chain stored in `cfg.datadir`.
    ///
    /// # Errors
    /// [`NodeError::Io`] when the data directory cannot be read or written,
    /// [`NodeError::Corrupt`] when its blocks do not form a valid chain.
    pub fn open(cfg: NodeConfig) -> Result<Node, NodeError> {
        let state = ChainState::open(cfg.datadir.as_deref())?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let node = Node {
            inner: Arc::new(Inner {
                state: RwLock::new(state),
                events,
                shut_down: Mutex::new(false),
            }),
        };
        if let Some(automine) = cfg.automine {
            crate::automine::spawn(WeakNode(Arc::downgrade(&node.inner)), automine);
        }
        Ok(node)
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, ChainState> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, ChainState> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, events: Vec<NodeEvent>) {
        for e in events {
            // No receiver is not an error.
            let _ = self.inner.events.send(e);
        }
    }

    /// Whether [`Node::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        *self
            .inner
            .shut_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The best chain's tip.
    pub fn tip(&self) -> TipInfo {
        self.read().tip_info()
    }

    /// Hash of the best chain's block at `height`.
    pub fn block_hash(&self, height: u32) -> Option<BlockHash> {
        self.read().block_hash(height)
    }

    /// Header of the best chain's block at `height`.
    pub fn header(&self, height: u32) -> Option<Header> {
        self.read().header_at(height)
    }

    /// Header of any known block, with its height and whether it is in the best chain.
    pub fn header_by_hash(&self, hash: &BlockHash) -> Option<(Header, u32, bool)> {
        self.read().header_by_hash(hash)
    }

    /// A known block (best chain or not), with its height when it is in the best chain.
    pub fn block(&self, hash: &BlockHash) -> Option<(Block, Option<u32>)> {
        self.read().block(hash)
    }

    /// A transaction of the best chain or the mempool (a full index).
    pub fn transaction(&self, txid: &Txid) -> Option<TxInfo> {
        self.read().transaction(txid)
    }

    /// Merkle branch of a transaction confirmed at `height`, and its position in the block.
    pub fn merkle_proof(&self, txid: &Txid, height: u32) -> Option<(Vec<TxMerkleNode>, usize)> {
        self.read().merkle_proof(txid, height)
    }

    /// Electrum history of a script hash: confirmed transactions by height (then block
    /// order), then mempool ones.
    pub fn history(&self, script_hash: &ScriptHash) -> Vec<HistoryItem> {
        self.read().history(script_hash)
    }

    /// Unspent outputs of a script hash, confirmed and in the mempool (outputs spent by a
    /// mempool transaction are left out).
    pub fn utxos(&self, script_hash: &ScriptHash) -> Vec<Utxo> {
        self.read().utxos(script_hash)
    }

    /// Electrum balance of a script hash in satoshis: (confirmed, unconfirmed change).
    pub fn balance(&self, script_hash: &ScriptHash) -> (i64, i64) {
        self.read().balance(script_hash)
    }

    /// Electrum status of a script hash (SHA-256 of the concatenated `txid:height:`), `None`
    /// when it has no history.
    pub fn status_hash(&self, script_hash: &ScriptHash) -> Option<[u8; 32]> {
        let history = self.history(script_hash);
        if history.is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        for item in &history {
            h.update(format!("{}:{}:", item.txid, item.height).as_bytes());
        }
        Some(h.finalize().into())
    }

    /// Checks whether the mempool would accept `tx` now, without adding it.
    ///
    /// # Errors
    /// The [`Reject`] Core's `testmempoolaccept` reports (`missing-inputs` for unknown or
    /// spent inputs).
    pub fn test_mempool_accept(&self, tx: &Transaction) -> Result<AcceptInfo, Reject> {
        self.write().test_accept(tx)
    }

    /// Checks whether the mempool would accept `txs`, a package with parents first, as Core's
    /// `testmempoolaccept` of several transactions does (`ProcessNewPackage` with
    /// `test_accept`); see [`crate::chain::PackageVerdict`]. Nothing is added.
    pub fn test_mempool_accept_package(&self, txs: &[Transaction]) -> crate::chain::PackageVerdict {
        self.write().test_accept_package(txs)
    }

    /// Adds `tx` to the mempool (Core's `sendrawtransaction`). A transaction already in the
    /// mempool is accepted again without change. `max_fee_rate` (Core's default is
    /// 0.10 BTC/kvB) refuses transactions paying more; `None` allows any fee.
    ///
    /// # Errors
    /// A [`Reject`] as Core 31's `sendrawtransaction` reports it: -25
    /// `bad-txns-inputs-missingorspent` for missing or spent inputs (Core puts the validation
    /// state's text in the message), -25 "Fee exceeds maximum configured by user (e.g.
    /// -maxtxfee, maxfeerate)", -27 "Transaction outputs already in utxo set", -26 with the
    /// reject reason otherwise.
    pub fn send_raw_transaction(
        &self,
        tx: &Transaction,
        max_fee_rate: Option<FeeRate>,
    ) -> Result<Txid, Reject> {
        let (txid, events) = self.write().send(tx, max_fee_rate)?;
        self.emit(events);
        Ok(txid)
    }

    /// All mempool entries.
    pub fn mempool(&self) -> Vec<MempoolEntry> {
        self.read().mempool_entries()
    }

    /// One mempool entry.
    pub fn mempool_entry(&self, txid: &Txid) -> Option<MempoolEntry> {
        self.read().mempool_entry(txid)
    }

    /// An unspent output (Core's `gettxout`); with `include_mempool`, outputs created by mempool
    /// transactions are found and outputs spent by them are not.
    pub fn utxo(&self, outpoint: &OutPoint, include_mempool: bool) -> Option<UtxoEntry> {
        self.read().utxo(outpoint, include_mempool)
    }

    /// Mines `n` blocks paying to `script_pubkey`, each with the best mempool transactions
    /// that fit (Core's `generatetoaddress`).
    ///
    /// # Errors
    /// [`NodeError::Io`] when the block store cannot be written; [`NodeError::ShutDown`].
    pub fn generate_to_script(
        &self,
        n: u32,
        script_pubkey: &Script,
    ) -> Result<Vec<BlockHash>, NodeError> {
        if self.is_shut_down() {
            return Err(NodeError::ShutDown);
        }
        let (hashes, events) = self.write().generate(n, script_pubkey)?;
        self.emit(events);
        Ok(hashes)
    }

    /// Mines one block with exactly `txs` (in this order) after the coinbase (Core's
    /// `generateblock`); the transactions need not be in the mempool.
    ///
    /// # Errors
    /// The [`Reject`] of the first invalid transaction or of the block.
    pub fn generate_block(
        &self,
        script_pubkey: &Script,
        txs: Vec<Transaction>,
    ) -> Result<BlockHash, Reject> {
        if self.is_shut_down() {
            return Err(Reject {
                code: -1,
                reason: "the node is shut down".into(),
                details: None,
            });
        }
        let (hash, events) = self.write().generate_block(script_pubkey, txs)?;
        self.emit(events);
        Ok(hash)
    }

    /// Adds a block built elsewhere on top of the tip after all consensus checks (Core's
    /// `submitblock`, limited to extending the best chain), and stores it durably.
    ///
    /// # Errors
    /// The block's [`Reject`] (Core's reason, e.g. `bad-cb-amount`, `high-hash`), or
    /// `inconclusive-not-best-prevblk` when it does not extend the tip.
    pub fn submit_block(&self, block: Block) -> Result<BlockHash, Reject> {
        let (hash, events) = {
            let mut state = self.write();
            let r = state.submit_block(block, true, None)?;
            state.flush().map_err(|e| Reject {
                code: -1,
                reason: e.to_string(),
                details: None,
            })?;
            r
        };
        self.emit(events);
        Ok(hash)
    }

    /// A digest of the whole UTXO set (every outpoint with its output, height and coinbase
    /// flag, in outpoint order), to compare two nodes' states.
    pub fn utxo_set_digest(&self) -> [u8; 32] {
        let state = self.read();
        let mut items: Vec<_> = state.utxos.iter().collect();
        items.sort_by(|a, b| a.0.cmp(b.0));
        let mut h = Sha256::new();
        for (op, coin) in items {
            h.update(bitcoin::consensus::serialize(op));
            h.update(bitcoin::consensus::serialize(&coin.txout));
            h.update(coin.height.to_le_bytes());
            h.update([u8::from(coin.coinbase)]);
        }
        h.finalize().into()
    }

    /// Number of coins in the UTXO set.
    pub fn utxo_set_size(&self) -> usize {
        self.read().utxos.len()
    }

    /// How many transactions' script checks the script-execution cache saved so far.
    pub fn script_cache_hits(&self) -> u64 {
        self.read().script_cache.hits
    }

    /// Marks a block and its descendants invalid and reorganizes to the best remaining chain;
    /// transactions of disconnected blocks return to the mempool when still valid.
    ///
    /// # Errors
    /// [`NodeError::BlockNotFound`], [`NodeError::Genesis`], [`NodeError::Io`].
    pub fn invalidate_block(&self, hash: &BlockHash) -> Result<(), NodeError> {
        let events = self.write().invalidate(hash)?;
        self.emit(events);
        Ok(())
    }

    /// Removes the invalid mark of a block (and its ancestors and descendants) and
    /// reorganizes to the chain with the most work.
    ///
    /// # Errors
    /// [`NodeError::BlockNotFound`], [`NodeError::Io`].
    pub fn reconsider_block(&self, hash: &BlockHash) -> Result<(), NodeError> {
        let events = self.write().reconsider(hash)?;
        self.emit(events);
        Ok(())
    }

    /// Sets the node's clock (Core's `setmocktime`); 0 returns to the system clock. It drives
    /// the times of mined blocks (never below median time past + 1) and mempool entry times.
    pub fn set_mocktime(&self, unix_time: u64) {
        self.write().set_mocktime(unix_time);
    }

    /// The node's current time: mocktime when set, else the system clock.
    pub fn now(&self) -> u64 {
        self.read().now()
    }

    /// A fee rate estimate to confirm within `blocks` blocks, `None` when there is no data
    /// (as Core on a fresh regtest chain).
    pub fn estimate_fee(&self, blocks: u16) -> Option<FeeRate> {
        self.read().estimate_fee(blocks)
    }

    /// The minimum relay fee rate (0.1 sat/vB, Core 30's default).
    pub fn relay_fee(&self) -> FeeRate {
        chain::policy::MIN_RELAY_FEE
    }

    /// Electrum's `mempool.get_fee_histogram`: (fee rate in sat/vB, total vsize) pairs from
    /// the highest fee rate down.
    pub fn fee_histogram(&self) -> Vec<(f64, u64)> {
        self.read().fee_histogram()
    }

    /// Events from now on (new tips, mempool changes, touched script hashes).
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Flushes the block store, writes the mempool to `DATADIR/mempool.dat` (reloaded by the
    /// next [`Node::open`], as Core's `-persistmempool`) and stops mining; further mining calls
    /// fail.
    ///
    /// # Errors
    /// [`NodeError::Io`] when the flush or the mempool file fails.
    pub fn shutdown(&self) -> Result<(), NodeError> {
        *self
            .inner
            .shut_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        let mut state = self.write();
        state.flush()?;
        state.dump_mempool()
    }

    /// Stops as a `kill -9` would leave it: mining stops, the block store (already durable
    /// block by block) is flushed, and the mempool is not written, so the next [`Node::open`]
    /// starts without it (or with an older `mempool.dat`), as Core after a crash.
    ///
    /// # Errors
    /// [`NodeError::Io`] when the flush fails.
    pub fn crash(&self) -> Result<(), NodeError> {
        *self
            .inner
            .shut_down
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.write().flush()
    }
}
