//! The mempool's data: entries indexed by txid, wtxid, spent outpoint and script hash, with
//! parent/child links between in-mempool transactions.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bitcoin::{Amount, OutPoint, Transaction, Txid, Wtxid};

use crate::types::ScriptHash;

/// One mempool transaction.
#[derive(Debug, Clone)]
pub struct MempoolTx {
    /// The transaction.
    pub tx: Arc<Transaction>,
    /// Its txid.
    pub txid: Txid,
    /// Its wtxid.
    pub wtxid: Wtxid,
    /// Fee paid.
    pub fee: Amount,
    /// Virtual size (sigop-adjusted, as Core's).
    pub vsize: u64,
    /// Weight.
    pub weight: u64,
    /// Entry time.
    pub time: u64,
    /// Chain height at entry.
    pub height: u32,
    /// Entry order.
    pub seq: u64,
    /// In-mempool parents.
    pub parents: BTreeSet<Txid>,
    /// In-mempool children.
    pub children: BTreeSet<Txid>,
    /// Script hashes of its outputs and spent outputs.
    pub script_hashes: Vec<ScriptHash>,
    /// Sigops cost.
    pub sigops: usize,
}

/// The mempool.
#[derive(Debug, Default)]
pub struct Mempool {
    /// Entries by txid.
    pub txs: HashMap<Txid, MempoolTx>,
    /// Txid by wtxid.
    pub by_wtxid: HashMap<Wtxid, Txid>,
    /// Which mempool transaction spends an outpoint.
    pub spends: HashMap<OutPoint, Txid>,
    /// Mempool transactions touching a script hash, in entry order.
    pub by_script_hash: HashMap<ScriptHash, BTreeSet<(u64, Txid)>>,
    next_seq: u64,
}

impl Mempool {
    /// Adds an entry (parents must already be linked in `entry.parents`).
    pub fn insert(&mut self, mut entry: MempoolTx) {
        entry.seq = self.next_seq;
        self.next_seq += 1;
        for p in &entry.parents {
            if let Some(parent) = self.txs.get_mut(p) {
                parent.children.insert(entry.txid);
            }
        }
        for input in &entry.tx.input {
            self.spends.insert(input.previous_output, entry.txid);
        }
        for sh in &entry.script_hashes {
            self.by_script_hash
                .entry(*sh)
                .or_default()
                .insert((entry.seq, entry.txid));
        }
        self.by_wtxid.insert(entry.wtxid, entry.txid);
        self.txs.insert(entry.txid, entry);
    }

    /// Removes one entry (its children lose it as a parent).
    pub fn remove(&mut self, txid: &Txid) -> Option<MempoolTx> {
        let entry = self.txs.remove(txid)?;
        for p in &entry.parents {
            if let Some(parent) = self.txs.get_mut(p) {
                parent.children.remove(txid);
            }
        }
        for c in &entry.children {
            if let Some(child) = self.txs.get_mut(c) {
                child.parents.remove(txid);
            }
        }
        for input in &entry.tx.input {
            if self.spends.get(&input.previous_output) == Some(txid) {
                self.spends.remove(&input.previous_output);
            }
        }
        for sh in &entry.script_hashes {
            if let Some(set) = self.by_script_hash.get_mut(sh) {
                set.remove(&(entry.seq, entry.txid));
                if set.is_empty() {
                    self.by_script_hash.remove(sh);
                }
            }
        }
        self.by_wtxid.remove(&entry.wtxid);
        Some(entry)
    }

    /// `txid` and all its in-mempool descendants.
    pub fn descendants(&self, txid: &Txid) -> HashSet<Txid> {
        self.walk(std::iter::once(*txid), |e| &e.children)
    }

    /// `txid` and all its in-mempool ancestors.
    pub fn ancestors(&self, txid: &Txid) -> HashSet<Txid> {
        self.walk(std::iter::once(*txid), |e| &e.parents)
    }

    fn walk(
        &self,
        start: impl Iterator<Item = Txid>,
        next: impl Fn(&MempoolTx) -> &BTreeSet<Txid>,
    ) -> HashSet<Txid> {
        let mut seen = HashSet::new();
        let mut stack: Vec<Txid> = start.collect();
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            if let Some(e) = self.txs.get(&t) {
                stack.extend(next(e).iter().copied());
            }
        }
        seen.retain(|t| self.txs.contains_key(t));
        seen
    }

    /// The cluster (connected component over parent/child links) of the given transactions,
    /// ignoring those in `excluded`.
    pub fn cluster(
        &self,
        start: impl IntoIterator<Item = Txid>,
        excluded: &HashSet<Txid>,
    ) -> HashSet<Txid> {
        let mut seen = HashSet::new();
        let mut stack: Vec<Txid> = start.into_iter().collect();
        while let Some(t) = stack.pop() {
            if excluded.contains(&t) || !self.txs.contains_key(&t) || !seen.insert(t) {
                continue;
            }
            if let Some(e) = self.txs.get(&t) {
                stack.extend(e.parents.iter().copied());
                stack.extend(e.children.iter().copied());
            }
        }
        seen
    }

    /// Removes `txid` and its descendants; returns the removed entries.
    pub fn remove_with_descendants(&mut self, txid: &Txid) -> Vec<MempoolTx> {
        let set = self.descendants(txid);
        let mut out: Vec<MempoolTx> = set.iter().filter_map(|t| self.remove(t)).collect();
        out.sort_by_key(|e| e.seq);
        out
    }

    /// Entries in entry order (parents before children).
    pub fn in_order(&self) -> Vec<&MempoolTx> {
        let mut v: Vec<&MempoolTx> = self.txs.values().collect();
        v.sort_by_key(|e| e.seq);
        v
    }

    /// A copy of every entry and index (a scratch mempool for package checks).
    pub fn clone_entries(&self) -> Mempool {
        Mempool {
            txs: self.txs.clone(),
            by_wtxid: self.by_wtxid.clone(),
            spends: self.spends.clone(),
            by_script_hash: self.by_script_hash.clone(),
            next_seq: self.next_seq,
        }
    }

    /// Empties the mempool, returning entries in entry order.
    pub fn drain(&mut self) -> Vec<MempoolTx> {
        let mut v: Vec<MempoolTx> = self.txs.drain().map(|(_, e)| e).collect();
        v.sort_by_key(|e| e.seq);
        self.by_wtxid.clear();
        self.spends.clear();
        self.by_script_hash.clear();
        v
    }
}
