//! The chain: block index, UTXO set, indexes, mempool, miner and block store.
//!
//! Everything here runs under the [`crate::Node`]'s lock; the node turns the results into
//! events.

mod accept;
pub mod consensus;
pub mod mempool;
pub mod mempool_file;
mod miner;
pub mod policy;
pub mod store;

pub use accept::{PackageVerdict, MAX_PACKAGE_COUNT, MAX_PACKAGE_WEIGHT};

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::block::Header;
use bitcoin::hashes::Hash as _;
use bitcoin::{Amount, Block, BlockHash, FeeRate, OutPoint, Transaction, TxMerkleNode, Txid, Work};
use tracing::{debug, info, warn};

use self::consensus::Coin;
use self::mempool::Mempool;
use self::store::{Record, Store};
use crate::types::{
    Confirmation, HistoryItem, MempoolEntry, NodeError, NodeEvent, Reject, ScriptHash, TipInfo,
    TxInfo, Utxo, UtxoEntry,
};

pub(crate) type Events = Vec<NodeEvent>;

/// Most entries kept in the script-execution cache before it is cleared.
const SCRIPT_CACHE_MAX: usize = 1_000_000;

/// A block known to the node.
#[derive(Debug)]
pub(crate) struct BlockEntry {
    pub block: Arc<Block>,
    /// The block's txids, in order (computed once).
    pub txids: Arc<Vec<Txid>>,
    pub height: u32,
    pub chain_work: Work,
    /// Arrival order, to break ties between chains of equal work (first seen wins).
    pub seq: u64,
    /// Marked invalid (by `invalidateblock` or a failed connection).
    pub invalid: bool,
    /// Median time past of this block (its time and its 10 ancestors').
    pub mtp: u32,
}

/// Wtxids whose scripts passed with the consensus flags (Core's script-execution cache).
#[derive(Debug, Default)]
pub(crate) struct ScriptCache {
    set: HashSet<bitcoin::Wtxid>,
    /// Hits since start (for tests and logs).
    pub hits: u64,
}

impl ScriptCache {
    pub fn insert(&mut self, w: bitcoin::Wtxid) {
        if self.set.len() >= SCRIPT_CACHE_MAX {
            self.set.clear();
        }
        self.set.insert(w);
    }
    pub fn contains(&mut self, w: &bitcoin::Wtxid) -> bool {
        let hit = self.set.contains(w);
        if hit {
            self.hits += 1;
        }
        hit
    }
}

/// The whole chain state behind the node's lock.
#[derive(Debug)]
pub(crate) struct ChainState {
    store: Option<Store>,
    pub blocks: HashMap<BlockHash, BlockEntry>,
    pub chain: Vec<BlockHash>,
    pub utxos: HashMap<OutPoint, Coin>,
    undo: HashMap<BlockHash, Vec<(OutPoint, Coin)>>,
    /// Confirmed txid -> (height, position).
    tx_index: HashMap<Txid, (u32, u32)>,
    /// Confirmed history per script hash: (height, position, txid), in chain order.
    sh_history: HashMap<ScriptHash, Vec<(u32, u32, Txid)>>,
    pub mempool: Mempool,
    pub script_cache: ScriptCache,
    mocktime: u64,
    next_seq: u64,
    /// `DATADIR/mempool.dat`, when the node has a datadir.
    mempool_path: Option<PathBuf>,
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Result of connecting one block.
struct Connected {
    touched: BTreeSet<ScriptHash>,
}

impl ChainState {
    fn empty() -> Self {
        let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest);
        let hash = genesis.block_hash();
        let entry = BlockEntry {
            txids: Arc::new(
                genesis
                    .txdata
                    .iter()
                    .map(Transaction::compute_txid)
                    .collect(),
            ),
            height: 0,
            chain_work: genesis.header.work(),
            seq: 0,
            invalid: false,
            mtp: genesis.header.time,
            block: Arc::new(genesis),
        };
        let mut blocks = HashMap::new();
        blocks.insert(hash, entry);
        ChainState {
            store: None,
            blocks,
            chain: vec![hash],
            utxos: HashMap::new(),
            undo: HashMap::new(),
            tx_index: HashMap::new(),
            sh_history: HashMap::new(),
            mempool: Mempool::default(),
            script_cache: ScriptCache::default(),
            mocktime: 0,
            next_seq: 1,
            mempool_path: None,
        }
    }

    pub(crate) fn open(datadir: Option<&Path>) -> Result<Self, NodeError> {
        let mut state = ChainState::empty();
        let Some(dir) = datadir else { return Ok(state) };
        let (store, records) = Store::open(dir)?;
        let n = records.len();
        for record in records {
            match record {
                Record::Block(block) => {
                    let hash = block.block_hash();
                    if state.blocks.contains_key(&hash) {
                        continue;
                    }
                    let txids = block.txdata.iter().map(Transaction::compute_txid).collect();
                    if let Err(e) = state.add_to_index(block, txids) {
                        return Err(NodeError::Corrupt {
                            path: dir.join(store::BLOCKS_FILE),
                            reason: format!("block {hash}: {}", e.message()),
                        });
                    }
                }
                Record::Invalidate(h) => {
                    if let Some(e) = state.blocks.get_mut(&h) {
                        e.invalid = true;
                    }
                }
                Record::Reconsider(h) => state.reset_failure_flags(&h),
            }
        }
        state.activate_best_chain(false);
        state.store = Some(store);
        let mempool_path = dir.join(mempool_file::MEMPOOL_FILE);
        state.load_mempool(&mempool_path);
        state.mempool_path = Some(mempool_path);
        info!(
            target: "btcmpc_regtest::chain",
            records = n,
            height = state.height(),
            tip = %state.tip_hash(),
            "block store loaded"
        );
        Ok(state)
    }

    // ---- small accessors -------------------------------------------------------------

    pub(crate) fn height(&self) -> u32 {
        (self.chain.len() - 1) as u32
    }

    pub(crate) fn tip_hash(&self) -> BlockHash {
        self.chain[self.chain.len() - 1]
    }

    fn tip_entry(&self) -> &BlockEntry {
        &self.blocks[&self.tip_hash()]
    }

    /// Median time past of the best chain's block at `height`.
    pub(crate) fn mtp_at(&self, height: u32) -> u32 {
        self.chain
            .get(height as usize)
            .map_or(0, |h| self.blocks[h].mtp)
    }

    pub(crate) fn now(&self) -> u64 {
        if self.mocktime != 0 {
            self.mocktime
        } else {
            system_now()
        }
    }

    pub(crate) fn set_mocktime(&mut self, t: u64) {
        self.mocktime = t;
    }

    // ---- block index -----------------------------------------------------------------

    fn compute_mtp(&self, header: &Header) -> u32 {
        let mut times = Vec::with_capacity(11);
        times.push(header.time);
        let mut prev = header.prev_blockhash;
        while times.len() < 11 {
            match self.blocks.get(&prev) {
                Some(e) => {
                    times.push(e.block.header.time);
                    if e.height == 0 {
                        break;
                    }
                    prev = e.block.header.prev_blockhash;
                }
                None => break,
            }
        }
        consensus::median_time(&mut times)
    }

    /// Adds a block whose parent is known, after its context-free checks.
    fn add_to_index(&mut self, block: Block, txids: Vec<Txid>) -> Result<BlockHash, Reject> {
        let hash = block.block_hash();
        let prev = block.header.prev_blockhash;
        let Some(parent) = self.blocks.get(&prev) else {
            return Err(Reject::rejected("prev-blk-not-found"));
        };
        let height = parent.height + 1;
        let chain_work = parent.chain_work + block.header.work();
        consensus::check_block(&block, &txids)?;
        let mtp = self.compute_mtp(&block.header);
        let entry = BlockEntry {
            block: Arc::new(block),
            txids: Arc::new(txids),
            height,
            chain_work,
            seq: self.next_seq,
            invalid: false,
            mtp,
        };
        self.next_seq += 1;
        self.blocks.insert(hash, entry);
        Ok(hash)
    }

    /// Whether `hash` and all its ancestors are not marked invalid.
    fn valid_chain(&self, hash: &BlockHash, memo: &mut HashMap<BlockHash, bool>) -> bool {
        let mut path = Vec::new();
        let mut cur = *hash;
        let result = loop {
            if let Some(v) = memo.get(&cur) {
                break *v;
            }
            let Some(e) = self.blocks.get(&cur) else {
                break false;
            };
            if e.invalid {
                break false;
            }
            if e.height == 0 {
                break true;
            }
            path.push(cur);
            cur = e.block.header.prev_blockhash;
        };
        for p in path {
            memo.insert(p, result);
        }
        memo.insert(*hash, result);
        result
    }

    fn best_candidate(&self) -> BlockHash {
        let mut memo = HashMap::new();
        let mut best = self.chain[0];
        let mut best_key = (self.blocks[&best].chain_work, std::cmp::Reverse(0u64));
        for (hash, e) in &self.blocks {
            let key = (e.chain_work, std::cmp::Reverse(e.seq));
            if key > best_key && self.valid_chain(hash, &mut memo) {
                best = *hash;
                best_key = key;
            }
        }
        best
    }

    fn reset_failure_flags(&mut self, hash: &BlockHash) {
        let Some(target) = self.blocks.get(hash) else {
            return;
        };
        let target_height = target.height;
        // Ancestors.
        let mut cur = *hash;
        while let Some(e) = self.blocks.get_mut(&cur) {
            e.invalid = false;
            if e.height == 0 {
                break;
            }
            cur = e.block.header.prev_blockhash;
        }
        // Descendants: blocks above whose ancestor at target height is `hash`.
        let above: Vec<BlockHash> = self
            .blocks
            .iter()
            .filter(|(_, e)| e.height > target_height && e.invalid)
            .map(|(h, _)| *h)
            .collect();
        for h in above {
            if self.ancestor_at(&h, target_height) == Some(*hash) {
                if let Some(e) = self.blocks.get_mut(&h) {
                    e.invalid = false;
                }
            }
        }
    }

    fn ancestor_at(&self, hash: &BlockHash, height: u32) -> Option<BlockHash> {
        let mut cur = *hash;
        loop {
            let e = self.blocks.get(&cur)?;
            if e.height == height {
                return Some(cur);
            }
            if e.height < height || e.height == 0 {
                return None;
            }
            cur = e.block.header.prev_blockhash;
        }
    }

    // ---- connecting and disconnecting -----------------------------------------------

    /// Connects the block `hash` on top of the tip with all consensus checks.
    fn connect_block(
        &mut self,
        hash: &BlockHash,
        check_scripts: bool,
        wtxids: Option<&[bitcoin::Wtxid]>,
    ) -> Result<Connected, Reject> {
        let entry = &self.blocks[hash];
        let block = Arc::clone(&entry.block);
        let txids = Arc::clone(&entry.txids);
        let height = entry.height;
        let prev_mtp = self.tip_entry().mtp;
        if block.header.prev_blockhash != self.tip_hash() {
            return Err(Reject::rejected("bad-prevblk"));
        }
        // Contextual header and block checks.
        if block.header.time <= prev_mtp {
            return Err(Reject::rejected_with(
                "time-too-old",
                "block's timestamp is too early",
            ));
        }
        for tx in &block.txdata {
            if !consensus::is_final_tx(tx, height, prev_mtp) {
                return Err(Reject::rejected_with(
                    "bad-txns-nonfinal",
                    "non-final transaction",
                ));
            }
        }
        if !consensus::has_bip34_height(&block.txdata[0].input[0].script_sig, height) {
            return Err(Reject::rejected_with(
                "bad-cb-height",
                "block height mismatch in coinbase",
            ));
        }
        consensus::check_witness_commitment(&block, wtxids)?;
        if block.weight().to_wu() > consensus::MAX_BLOCK_WEIGHT {
            return Err(Reject::rejected_with(
                "bad-blk-weight",
                "weight limit failed",
            ));
        }

        // Inputs, fees, sequence locks, sigops, scripts.
        let mut created: HashMap<OutPoint, Coin> = HashMap::new();
        let mut spent: Vec<(OutPoint, Coin)> = Vec::new();
        let mut spent_set: HashSet<OutPoint> = HashSet::new();
        let mut fees = Amount::ZERO;
        let mut sigops = 0usize;
        let mut touched = BTreeSet::new();
        let mut per_tx_sh: Vec<Vec<ScriptHash>> = Vec::with_capacity(block.txdata.len());
        for (pos, tx) in block.txdata.iter().enumerate() {
            let txid = txids[pos];
            let mut sh: Vec<ScriptHash> = Vec::new();
            if pos > 0 {
                let mut coins: Vec<Coin> = Vec::with_capacity(tx.input.len());
                for input in &tx.input {
                    let op = input.previous_output;
                    let coin = if let Some(c) = created.remove(&op) {
                        c
                    } else if !spent_set.contains(&op) {
                        match self.utxos.get(&op) {
                            Some(c) => {
                                spent_set.insert(op);
                                spent.push((op, c.clone()));
                                c.clone()
                            }
                            None => {
                                return Err(Reject::rejected_with(
                                    "bad-txns-inputs-missingorspent",
                                    "CheckTxInputs: inputs missing/spent",
                                ))
                            }
                        }
                    } else {
                        return Err(Reject::rejected_with(
                            "bad-txns-inputs-missingorspent",
                            "CheckTxInputs: inputs missing/spent",
                        ));
                    };
                    sh.push(ScriptHash::from_script(&coin.txout.script_pubkey));
                    coins.push(coin);
                }
                let coin_refs: Vec<&Coin> = coins.iter().collect();
                let fee = consensus::check_tx_inputs(tx, &coin_refs, height)?;
                fees += fee;
                let heights: Vec<u32> = coins.iter().map(|c| c.height).collect();
                let lock = consensus::sequence_locks(tx, &heights, |h| i64::from(self.mtp_at(h)));
                if !consensus::sequence_lock_ok(lock, height, prev_mtp) {
                    return Err(Reject::rejected_with(
                        "bad-txns-nonfinal",
                        "contains a non-BIP68-final transaction",
                    ));
                }
                let spent_outs: Vec<bitcoin::TxOut> =
                    coins.iter().map(|c| c.txout.clone()).collect();
                sigops += tx.total_sigop_cost(|op| {
                    tx.input
                        .iter()
                        .position(|i| i.previous_output == *op)
                        .map(|i| spent_outs[i].clone())
                });
                if check_scripts {
                    let wtxid = wtxids.map_or_else(|| tx.compute_wtxid(), |w| w[pos]);
                    if !self.script_cache.contains(&wtxid) {
                        if let Err((i, _)) =
                            consensus::verify_scripts(tx, &spent_outs, consensus::CONSENSUS_FLAGS)
                        {
                            return Err(Reject::rejected_with(
                                format!(
                                    "block-script-verify-flag-failed ({})",
                                    consensus::script_error_text(tx, i, &spent_outs[i])
                                ),
                                format!("input {i} of {txid}"),
                            ));
                        }
                    }
                }
            } else {
                sigops += tx.total_sigop_cost(|_| None);
            }
            if sigops > consensus::MAX_BLOCK_SIGOPS_COST {
                return Err(Reject::rejected_with("bad-blk-sigops", "too many sigops"));
            }
            for (vout, out) in tx.output.iter().enumerate() {
                sh.push(ScriptHash::from_script(&out.script_pubkey));
                if out.script_pubkey.is_op_return() || out.script_pubkey.len() > 10_000 {
                    continue;
                }
                created.insert(
                    OutPoint::new(txid, vout as u32),
                    Coin {
                        txout: out.clone(),
                        height,
                        coinbase: pos == 0,
                    },
                );
            }
            sh.sort_unstable();
            sh.dedup();
            per_tx_sh.push(sh);
        }
        let coinbase_value: u64 = block.txdata[0]
            .output
            .iter()
            .map(|o| o.value.to_sat())
            .sum();
        let allowed = fees + consensus::block_subsidy(height);
        if coinbase_value > allowed.to_sat() {
            return Err(Reject::rejected_with(
                "bad-cb-amount",
                format!(
                    "coinbase pays too much (actual={coinbase_value} vs limit={})",
                    allowed.to_sat()
                ),
            ));
        }

        // Apply.
        for (op, _) in &spent {
            self.utxos.remove(op);
        }
        self.utxos.extend(created);
        for (pos, &txid) in txids.iter().enumerate() {
            self.tx_index.insert(txid, (height, pos as u32));
            for sh in &per_tx_sh[pos] {
                self.sh_history
                    .entry(*sh)
                    .or_default()
                    .push((height, pos as u32, txid));
                touched.insert(*sh);
            }
        }
        self.undo.insert(*hash, spent);
        self.chain.push(*hash);
        Ok(Connected { touched })
    }

    /// Disconnects the tip; returns its non-coinbase transactions and touched script hashes.
    fn disconnect_tip(&mut self) -> (Vec<Transaction>, BTreeSet<ScriptHash>) {
        let hash = self.tip_hash();
        let entry = &self.blocks[&hash];
        let block = Arc::clone(&entry.block);
        let txids = Arc::clone(&entry.txids);
        let height = entry.height;
        let undo = self.undo.remove(&hash).unwrap_or_default();
        let mut touched = BTreeSet::new();
        for (tx, &txid) in block.txdata.iter().zip(txids.iter()).rev() {
            for (vout, out) in tx.output.iter().enumerate() {
                self.utxos.remove(&OutPoint::new(txid, vout as u32));
                touched.insert(ScriptHash::from_script(&out.script_pubkey));
            }
            if self.tx_index.get(&txid).is_some_and(|(h, _)| *h == height) {
                self.tx_index.remove(&txid);
            }
        }
        for (op, coin) in undo {
            touched.insert(ScriptHash::from_script(&coin.txout.script_pubkey));
            self.utxos.insert(op, coin);
        }
        for sh in &touched {
            if let Some(v) = self.sh_history.get_mut(sh) {
                while v.last().is_some_and(|(h, _, _)| *h == height) {
                    v.pop();
                }
                if v.is_empty() {
                    self.sh_history.remove(sh);
                }
            }
        }
        self.chain.pop();
        (block.txdata[1..].to_vec(), touched)
    }

    /// Moves the best chain to the valid block with the most work. Returns the transactions
    /// of disconnected blocks (oldest first) and all touched script hashes.
    fn activate_best_chain(
        &mut self,
        check_scripts: bool,
    ) -> (Vec<Transaction>, BTreeSet<ScriptHash>) {
        let mut disconnected: Vec<Vec<Transaction>> = Vec::new();
        let mut touched = BTreeSet::new();
        loop {
            let best = self.best_candidate();
            if best == self.tip_hash() {
                break;
            }
            // Path from best down to the fork point with the active chain.
            let mut path = Vec::new();
            let mut cur = best;
            loop {
                let e = &self.blocks[&cur];
                if self.chain.get(e.height as usize) == Some(&cur) {
                    break;
                }
                path.push(cur);
                cur = e.block.header.prev_blockhash;
            }
            let fork_height = self.blocks[&cur].height;
            while self.height() > fork_height {
                let (txs, sh) = self.disconnect_tip();
                disconnected.push(txs);
                touched.extend(sh);
            }
            for h in path.into_iter().rev() {
                match self.connect_block(&h, check_scripts, None) {
                    Ok(c) => touched.extend(c.touched),
                    Err(e) => {
                        debug!(target: "btcmpc_regtest::chain", block = %h, reason = %e, "block failed to connect");
                        if let Some(entry) = self.blocks.get_mut(&h) {
                            entry.invalid = true;
                        }
                        break;
                    }
                }
            }
        }
        disconnected.reverse();
        (disconnected.into_iter().flatten().collect(), touched)
    }

    /// After blocks were disconnected: puts their transactions and the previous mempool back
    /// through acceptance (without fee limits), dropping what is no longer valid.
    fn resurrect(&mut self, txs: Vec<Transaction>, touched: &mut BTreeSet<ScriptHash>) {
        let old = self.mempool.drain();
        for e in &old {
            touched.extend(e.script_hashes.iter().copied());
        }
        let all = txs
            .into_iter()
            .chain(old.into_iter().map(|e| (*e.tx).clone()));
        for tx in all {
            if let Ok(a) = self.accept(&tx, true, false, None) {
                touched.extend(a.entry.script_hashes.iter().copied());
            }
        }
    }

    fn tip_events(&self, touched: BTreeSet<ScriptHash>, extra: Events) -> Events {
        let mut events = extra;
        events.push(NodeEvent::NewTip {
            height: self.height(),
            hash: self.tip_hash(),
        });
        if !touched.is_empty() {
            events.push(NodeEvent::ScriptHashesChanged(
                touched.into_iter().collect(),
            ));
        }
        events
    }

    /// Removes mempool transactions confirmed by the new tip block or conflicting with it.
    fn update_mempool_for_block(
        &mut self,
        block: &Block,
        txids: &[Txid],
        touched: &mut BTreeSet<ScriptHash>,
    ) -> Events {
        let mut events = Vec::new();
        for (tx, &txid) in block.txdata.iter().zip(txids).skip(1) {
            if let Some(e) = self.mempool.remove(&txid) {
                touched.extend(e.script_hashes.iter().copied());
                events.push(NodeEvent::TxRemoved {
                    txid,
                    script_hashes: e.script_hashes,
                });
            }
            for input in &tx.input {
                if let Some(conflict) = self.mempool.spends.get(&input.previous_output).copied() {
                    for e in self.mempool.remove_with_descendants(&conflict) {
                        touched.extend(e.script_hashes.iter().copied());
                        events.push(NodeEvent::TxRemoved {
                            txid: e.txid,
                            script_hashes: e.script_hashes,
                        });
                    }
                }
            }
        }
        events
    }

    /// Adds a freshly built block on top of the tip, connects it and stores it (not synced).
    pub(crate) fn submit_block(
        &mut self,
        block: Block,
        check_scripts: bool,
        known: Option<(Vec<Txid>, Vec<bitcoin::Wtxid>)>,
    ) -> Result<(BlockHash, Events), Reject> {
        if block.header.prev_blockhash != self.tip_hash() {
            return Err(Reject::rejected("inconclusive-not-best-prevblk"));
        }
        if u64::from(block.header.time)
            > self.now().saturating_add(consensus::MAX_FUTURE_BLOCK_TIME)
        {
            return Err(Reject::rejected_with(
                "time-too-new",
                "block timestamp too far in the future",
            ));
        }
        let hash = block.block_hash();
        if self.blocks.contains_key(&hash) {
            return Err(Reject::rejected("duplicate"));
        }
        let bytes = self
            .store
            .is_some()
            .then(|| bitcoin::consensus::serialize(&block));
        let (txids, wtxids) = match known {
            Some((t, w)) => (t, Some(w)),
            None => (
                block.txdata.iter().map(Transaction::compute_txid).collect(),
                None,
            ),
        };
        self.add_to_index(block, txids)?;
        let connected = match self.connect_block(&hash, check_scripts, wtxids.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                self.blocks.remove(&hash);
                return Err(e);
            }
        };
        if let Some(store) = &mut self.store {
            if let Err(e) = store.append_block_bytes(bytes.as_deref().unwrap_or_default()) {
                // Keep memory and disk in agreement: undo the connection.
                self.disconnect_tip();
                self.blocks.remove(&hash);
                return Err(Reject {
                    code: -1,
                    reason: e.to_string(),
                    details: None,
                });
            }
        }
        let mut touched = connected.touched;
        let block = Arc::clone(&self.blocks[&hash].block);
        let txids = Arc::clone(&self.blocks[&hash].txids);
        let events = self.update_mempool_for_block(&block, &txids, &mut touched);
        Ok((hash, self.tip_events(touched, events)))
    }

    fn sync_store(&mut self) -> Result<(), NodeError> {
        match &mut self.store {
            Some(s) => s.sync(),
            None => Ok(()),
        }
    }

    pub(crate) fn flush(&mut self) -> Result<(), NodeError> {
        self.sync_store()
    }

    /// Core's `LoadMempool`: every transaction of `path` goes through acceptance again (with
    /// the fee and cluster limits), in the order written; what no longer fits the chain is
    /// dropped. A damaged file is ignored with a warning (Core: "Failed to deserialize mempool
    /// data on disk ... Continuing anyway").
    fn load_mempool(&mut self, path: &Path) {
        let entries = match mempool_file::read(path) {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(e) => {
                warn!(target: "btcmpc_regtest::chain", "mempool file ignored: {e}");
                return;
            }
        };
        let (mut loaded, mut failed) = (0usize, 0usize);
        let cutoff = self.now().saturating_sub(policy::MEMPOOL_EXPIRY_SECS);
        for (time, tx) in entries {
            // Core's LoadMempool skips entries already past the expiry.
            if time <= cutoff {
                failed += 1;
                continue;
            }
            match self.accept(&tx, false, false, None) {
                Ok(a) => {
                    if let Some(e) = self.mempool.txs.get_mut(&a.entry.txid) {
                        e.time = time;
                    }
                    loaded += 1;
                }
                Err(r) => {
                    debug!(target: "btcmpc_regtest::chain", txid = %tx.compute_txid(), reason = %r.message(), "mempool entry not reloaded");
                    failed += 1;
                }
            }
        }
        info!(target: "btcmpc_regtest::chain", loaded, failed, "mempool reloaded from {}", path.display());
    }

    /// Core's `DumpMempool`: write the mempool, parents before children, to `mempool.dat`
    /// atomically. Nothing to do without a datadir.
    pub(crate) fn dump_mempool(&self) -> Result<(), NodeError> {
        let Some(path) = &self.mempool_path else {
            return Ok(());
        };
        let entries = self.mempool.in_order();
        let bytes = mempool_file::encode(entries.iter().map(|e| (e.time, &*e.tx)));
        mempool_file::write(path, &bytes).map_err(|e| match e {
            mempool_file::MempoolFileError::Io { path, source } => NodeError::Io { path, source },
            other => NodeError::Io {
                path: path.clone(),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
        info!(target: "btcmpc_regtest::chain", entries = entries.len(), "mempool written to {}", path.display());
        Ok(())
    }

    // ---- reorgs ----------------------------------------------------------------------

    pub(crate) fn invalidate(&mut self, hash: &BlockHash) -> Result<Events, NodeError> {
        let Some(entry) = self.blocks.get_mut(hash) else {
            return Err(NodeError::BlockNotFound(*hash));
        };
        if entry.height == 0 {
            return Err(NodeError::Genesis(*hash));
        }
        entry.invalid = true;
        let height = entry.height;
        if let Some(store) = &mut self.store {
            store.append(&Record::Invalidate(*hash))?;
        }
        self.sync_store()?;
        let mut touched = BTreeSet::new();
        let mut disconnected = Vec::new();
        if self.chain.get(height as usize) == Some(hash) {
            while self.height() >= height {
                let (txs, sh) = self.disconnect_tip();
                disconnected.push(txs);
                touched.extend(sh);
            }
        }
        disconnected.reverse();
        let (more, sh) = self.activate_best_chain(true);
        touched.extend(sh);
        let mut txs: Vec<Transaction> = disconnected.into_iter().flatten().collect();
        txs.extend(more);
        self.resurrect(txs, &mut touched);
        Ok(self.tip_events(touched, Vec::new()))
    }

    pub(crate) fn reconsider(&mut self, hash: &BlockHash) -> Result<Events, NodeError> {
        if !self.blocks.contains_key(hash) {
            return Err(NodeError::BlockNotFound(*hash));
        }
        self.reset_failure_flags(hash);
        if let Some(store) = &mut self.store {
            store.append(&Record::Reconsider(*hash))?;
        }
        self.sync_store()?;
        let (txs, mut touched) = self.activate_best_chain(true);
        self.resurrect(txs, &mut touched);
        Ok(self.tip_events(touched, Vec::new()))
    }

    // ---- queries ---------------------------------------------------------------------

    pub(crate) fn tip_info(&self) -> TipInfo {
        let e = self.tip_entry();
        TipInfo {
            height: e.height,
            hash: self.tip_hash(),
            header: e.block.header,
            median_time_past: e.mtp,
            time: e.block.header.time,
            chain_work: e.chain_work,
        }
    }

    pub(crate) fn block_hash(&self, height: u32) -> Option<BlockHash> {
        self.chain.get(height as usize).copied()
    }

    pub(crate) fn header_at(&self, height: u32) -> Option<Header> {
        self.block_hash(height)
            .map(|h| self.blocks[&h].block.header)
    }

    pub(crate) fn header_by_hash(&self, hash: &BlockHash) -> Option<(Header, u32, bool)> {
        let e = self.blocks.get(hash)?;
        let in_chain = self.chain.get(e.height as usize) == Some(hash);
        Some((e.block.header, e.height, in_chain))
    }

    pub(crate) fn block(&self, hash: &BlockHash) -> Option<(Block, Option<u32>)> {
        let e = self.blocks.get(hash)?;
        let in_chain = self.chain.get(e.height as usize) == Some(hash);
        Some(((*e.block).clone(), in_chain.then_some(e.height)))
    }

    fn confirmed_tx(&self, height: u32, pos: u32) -> Option<&Transaction> {
        let hash = self.chain.get(height as usize)?;
        self.blocks[hash].block.txdata.get(pos as usize)
    }

    pub(crate) fn transaction(&self, txid: &Txid) -> Option<TxInfo> {
        if let Some(&(height, pos)) = self.tx_index.get(txid) {
            let hash = self.chain[height as usize];
            let block = &self.blocks[&hash].block;
            return Some(TxInfo {
                tx: block.txdata[pos as usize].clone(),
                confirmation: Some(Confirmation {
                    block_hash: hash,
                    height,
                    time: block.header.time,
                    position: pos as usize,
                }),
            });
        }
        self.mempool.txs.get(txid).map(|e| TxInfo {
            tx: (*e.tx).clone(),
            confirmation: None,
        })
    }

    pub(crate) fn merkle_proof(
        &self,
        txid: &Txid,
        height: u32,
    ) -> Option<(Vec<TxMerkleNode>, usize)> {
        let &(h, pos) = self.tx_index.get(txid)?;
        if h != height {
            return None;
        }
        let txids = &self.blocks[&self.chain[h as usize]].txids;
        let mut level: Vec<TxMerkleNode> = txids
            .iter()
            .map(|t| TxMerkleNode::from_raw_hash(t.to_raw_hash()))
            .collect();
        let mut index = pos as usize;
        let mut branch = Vec::new();
        while level.len() > 1 {
            if level.len() % 2 == 1 {
                let last = level[level.len() - 1];
                level.push(last);
            }
            branch.push(level[index ^ 1]);
            level = level
                .chunks(2)
                .map(|pair| {
                    let mut engine = TxMerkleNode::engine();
                    std::io::Write::write_all(&mut engine, pair[0].as_byte_array()).ok();
                    std::io::Write::write_all(&mut engine, pair[1].as_byte_array()).ok();
                    TxMerkleNode::from_engine(engine)
                })
                .collect();
            index /= 2;
        }
        Some((branch, pos as usize))
    }

    pub(crate) fn history(&self, sh: &ScriptHash) -> Vec<HistoryItem> {
        let mut out: Vec<HistoryItem> = self
            .sh_history
            .get(sh)
            .map(|v| {
                v.iter()
                    .map(|(h, _, txid)| HistoryItem {
                        txid: *txid,
                        height: *h as i32,
                        fee: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(set) = self.mempool.by_script_hash.get(sh) {
            for (_, txid) in set {
                if let Some(e) = self.mempool.txs.get(txid) {
                    let height = if e.parents.is_empty() { 0 } else { -1 };
                    out.push(HistoryItem {
                        txid: *txid,
                        height,
                        fee: Some(e.fee),
                    });
                }
            }
        }
        out
    }

    /// Confirmed unspent outputs paying to `sh` (from the history index).
    fn confirmed_utxos(&self, sh: &ScriptHash) -> Vec<(OutPoint, &Coin)> {
        let mut out = Vec::new();
        let Some(v) = self.sh_history.get(sh) else {
            return out;
        };
        let mut seen = HashSet::new();
        for (h, pos, txid) in v {
            if !seen.insert(*txid) {
                continue;
            }
            let Some(tx) = self.confirmed_tx(*h, *pos) else {
                continue;
            };
            for (vout, o) in tx.output.iter().enumerate() {
                if ScriptHash::from_script(&o.script_pubkey) != *sh {
                    continue;
                }
                let op = OutPoint::new(*txid, vout as u32);
                if let Some(c) = self.utxos.get(&op) {
                    out.push((op, c));
                }
            }
        }
        out
    }

    pub(crate) fn utxos(&self, sh: &ScriptHash) -> Vec<Utxo> {
        let mut out: Vec<Utxo> = self
            .confirmed_utxos(sh)
            .into_iter()
            .filter(|(op, _)| !self.mempool.spends.contains_key(op))
            .map(|(op, c)| Utxo {
                outpoint: op,
                value: c.txout.value,
                height: c.height,
            })
            .collect();
        if let Some(set) = self.mempool.by_script_hash.get(sh) {
            for (_, txid) in set {
                let Some(e) = self.mempool.txs.get(txid) else {
                    continue;
                };
                for (vout, o) in e.tx.output.iter().enumerate() {
                    let op = OutPoint::new(*txid, vout as u32);
                    if ScriptHash::from_script(&o.script_pubkey) == *sh
                        && !self.mempool.spends.contains_key(&op)
                    {
                        out.push(Utxo {
                            outpoint: op,
                            value: o.value,
                            height: 0,
                        });
                    }
                }
            }
        }
        out
    }

    pub(crate) fn balance(&self, sh: &ScriptHash) -> (i64, i64) {
        let mut confirmed = 0i64;
        let mut unconfirmed = 0i64;
        for (op, c) in self.confirmed_utxos(sh) {
            let v = c.txout.value.to_sat() as i64;
            confirmed += v;
            if self.mempool.spends.contains_key(&op) {
                unconfirmed -= v;
            }
        }
        if let Some(set) = self.mempool.by_script_hash.get(sh) {
            for (_, txid) in set {
                let Some(e) = self.mempool.txs.get(txid) else {
                    continue;
                };
                for (vout, o) in e.tx.output.iter().enumerate() {
                    if ScriptHash::from_script(&o.script_pubkey) != *sh {
                        continue;
                    }
                    let op = OutPoint::new(*txid, vout as u32);
                    unconfirmed += o.value.to_sat() as i64;
                    if self.mempool.spends.contains_key(&op) {
                        unconfirmed -= o.value.to_sat() as i64;
                    }
                }
            }
        }
        (confirmed, unconfirmed)
    }

    pub(crate) fn utxo(
        &self,
        op: &OutPoint,
        include_mempool: bool,
    ) -> Option<crate::types::UtxoEntry> {
        if include_mempool {
            if self.mempool.spends.contains_key(op) {
                return None;
            }
            if let Some(e) = self.mempool.txs.get(&op.txid) {
                let out = e.tx.output.get(op.vout as usize)?;
                return Some(UtxoEntry {
                    txout: out.clone(),
                    height: None,
                    is_coinbase: false,
                });
            }
        }
        self.utxos.get(op).map(|c| UtxoEntry {
            txout: c.txout.clone(),
            height: Some(c.height),
            is_coinbase: c.coinbase,
        })
    }

    pub(crate) fn mempool_entry(&self, txid: &Txid) -> Option<MempoolEntry> {
        let e = self.mempool.txs.get(txid)?;
        let anc = self.mempool.ancestors(txid);
        let desc = self.mempool.descendants(txid);
        let sum = |set: &HashSet<Txid>| {
            set.iter()
                .filter_map(|t| self.mempool.txs.get(t))
                .fold((0u64, Amount::ZERO), |acc, x| {
                    (acc.0 + x.vsize, acc.1 + x.fee)
                })
        };
        let (anc_size, anc_fees) = sum(&anc);
        let (desc_size, desc_fees) = sum(&desc);
        Some(MempoolEntry {
            txid: e.txid,
            wtxid: e.wtxid,
            vsize: e.vsize,
            weight: e.weight,
            fee: e.fee,
            time: e.time,
            height: e.height,
            ancestor_count: anc.len() as u64,
            ancestor_size: anc_size,
            ancestor_fees: anc_fees,
            descendant_count: desc.len() as u64,
            descendant_size: desc_size,
            descendant_fees: desc_fees,
            depends: e.parents.iter().copied().collect(),
            spent_by: e.children.iter().copied().collect(),
        })
    }

    pub(crate) fn mempool_entries(&self) -> Vec<MempoolEntry> {
        self.mempool
            .in_order()
            .iter()
            .filter_map(|e| self.mempool_entry(&e.txid))
            .collect()
    }

    pub(crate) fn estimate_fee(&self, _blocks: u16) -> Option<FeeRate> {
        None
    }

    pub(crate) fn fee_histogram(&self) -> Vec<(f64, u64)> {
        let mut rates: Vec<(f64, u64)> = self
            .mempool
            .txs
            .values()
            .map(|e| (e.fee.to_sat() as f64 / e.vsize.max(1) as f64, e.vsize))
            .collect();
        rates.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Bins as electrs: close a bin once it holds at least 100,000 vB... or at every
        // distinct rate for a small mempool.
        let mut out: Vec<(f64, u64)> = Vec::new();
        let mut bin_size = 0u64;
        let mut last_rate = None;
        for (rate, vsize) in rates {
            let floor = rate.floor();
            if let Some(r) = last_rate {
                if floor != r && bin_size > 0 {
                    out.push((r, bin_size));
                    bin_size = 0;
                }
            }
            last_rate = Some(floor);
            bin_size += vsize;
        }
        if let (Some(r), true) = (last_rate, bin_size > 0) {
            out.push((r, bin_size));
        }
        out
    }
}
