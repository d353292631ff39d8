//! The chain: block index, UTXO set, indexes, mempool, miner and block store.

pub(crate) mod automine;
pub mod policy;

use std::path::Path;

use bitcoin::block::Header;
use bitcoin::{Block, BlockHash, FeeRate, OutPoint, Script, Transaction, TxMerkleNode, Txid};

use crate::node::{
    AcceptInfo, HistoryItem, MempoolEntry, NodeError, NodeEvent, Reject, ScriptHash, TipInfo,
    TxInfo, Utxo, UtxoEntry,
};

/// The whole chain state behind the node's lock.
#[derive(Debug)]
pub(crate) struct ChainState {
    mocktime: u64,
}

type Events = Vec<NodeEvent>;

impl ChainState {
    pub(crate) fn open(_datadir: Option<&Path>) -> Result<Self, NodeError> {
        Ok(ChainState { mocktime: 0 })
    }
    pub(crate) fn tip_info(&self) -> TipInfo {
        let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest);
        TipInfo {
            height: 0,
            hash: genesis.block_hash(),
            header: genesis.header,
            median_time_past: genesis.header.time,
            time: genesis.header.time,
            chain_work: genesis.header.work(),
        }
    }
    pub(crate) fn block_hash(&self, _height: u32) -> Option<BlockHash> {
        None
    }
    pub(crate) fn header_at(&self, _height: u32) -> Option<Header> {
        None
    }
    pub(crate) fn header_by_hash(&self, _hash: &BlockHash) -> Option<(Header, u32, bool)> {
        None
    }
    pub(crate) fn block(&self, _hash: &BlockHash) -> Option<(Block, Option<u32>)> {
        None
    }
    pub(crate) fn transaction(&self, _txid: &Txid) -> Option<TxInfo> {
        None
    }
    pub(crate) fn merkle_proof(
        &self,
        _txid: &Txid,
        _height: u32,
    ) -> Option<(Vec<TxMerkleNode>, usize)> {
        None
    }
    pub(crate) fn history(&self, _sh: &ScriptHash) -> Vec<HistoryItem> {
        Vec::new()
    }
    pub(crate) fn utxos(&self, _sh: &ScriptHash) -> Vec<Utxo> {
        Vec::new()
    }
    pub(crate) fn balance(&self, _sh: &ScriptHash) -> (i64, i64) {
        (0, 0)
    }
    pub(crate) fn test_accept(&mut self, _tx: &Transaction) -> Result<AcceptInfo, Reject> {
        Err(Reject::rejected("not implemented"))
    }
    pub(crate) fn send(
        &mut self,
        _tx: &Transaction,
        _max: Option<FeeRate>,
    ) -> Result<(Txid, Events), Reject> {
        Err(Reject::rejected("not implemented"))
    }
    pub(crate) fn mempool_entries(&self) -> Vec<MempoolEntry> {
        Vec::new()
    }
    pub(crate) fn mempool_entry(&self, _txid: &Txid) -> Option<MempoolEntry> {
        None
    }
    pub(crate) fn utxo(&self, _op: &OutPoint, _mempool: bool) -> Option<UtxoEntry> {
        None
    }
    pub(crate) fn generate(
        &mut self,
        _n: u32,
        _spk: &Script,
    ) -> Result<(Vec<BlockHash>, Events), NodeError> {
        Ok((Vec::new(), Vec::new()))
    }
    pub(crate) fn generate_block(
        &mut self,
        _spk: &Script,
        _txs: Vec<Transaction>,
    ) -> Result<(BlockHash, Events), Reject> {
        Err(Reject::rejected("not implemented"))
    }
    pub(crate) fn invalidate(&mut self, hash: &BlockHash) -> Result<Events, NodeError> {
        Err(NodeError::BlockNotFound(*hash))
    }
    pub(crate) fn reconsider(&mut self, hash: &BlockHash) -> Result<Events, NodeError> {
        Err(NodeError::BlockNotFound(*hash))
    }
    pub(crate) fn set_mocktime(&mut self, t: u64) {
        self.mocktime = t;
    }
    pub(crate) fn now(&self) -> u64 {
        self.mocktime
    }
    pub(crate) fn estimate_fee(&self, _blocks: u16) -> Option<FeeRate> {
        None
    }
    pub(crate) fn fee_histogram(&self) -> Vec<(f64, u64)> {
        Vec::new()
    }
    pub(crate) fn flush(&mut self) -> Result<(), NodeError> {
        Ok(())
    }
}
