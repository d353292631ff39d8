//! The miner: block templates from the mempool by ancestor fee rate, Core's coinbase, real
//! proof of work at regtest difficulty.

use std::collections::HashSet;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash as _;
use bitcoin::{
    absolute, transaction, Amount, Block, BlockHash, CompactTarget, OutPoint, Script, Sequence,
    Transaction, TxIn, TxMerkleNode, TxOut, Txid, Witness, Wtxid,
};

use super::consensus::{self, Coin};
use super::{ChainState, Events};
use crate::types::{NodeError, Reject};

/// Weight kept free for the coinbase (Core's default `-blockreservedweight`).
const COINBASE_RESERVED_WEIGHT: u64 = 8_000;
/// Sigops cost kept free for the coinbase.
const COINBASE_RESERVED_SIGOPS: usize = 400;

impl ChainState {
    /// Mempool transactions for the next block: by ancestor fee rate, parents first, within
    /// the weight and sigops limits.
    fn select_transactions(&self) -> (Vec<Transaction>, Vec<Txid>, Vec<Wtxid>, Amount) {
        struct Cand {
            txid: Txid,
            seq: u64,
            anc: Vec<Txid>,
            fee: u64,
            vsize: u64,
        }
        let mut cands: Vec<Cand> = self
            .mempool
            .txs
            .values()
            .map(|e| {
                let (anc, fee, vsize) = if e.parents.is_empty() {
                    (vec![e.txid], e.fee.to_sat(), e.vsize)
                } else {
                    let set = self.mempool.ancestors(&e.txid);
                    let (f, v) = set
                        .iter()
                        .filter_map(|t| self.mempool.txs.get(t))
                        .fold((0u64, 0u64), |acc, x| {
                            (acc.0 + x.fee.to_sat(), acc.1 + x.vsize)
                        });
                    let mut anc: Vec<Txid> = set.into_iter().collect();
                    anc.sort_by_key(|t| self.mempool.txs[t].seq);
                    (anc, f, v)
                };
                Cand {
                    txid: e.txid,
                    seq: e.seq,
                    anc,
                    fee,
                    vsize,
                }
            })
            .collect();
        // Highest ancestor fee rate first; entry order breaks ties.
        cands.sort_by(|a, b| {
            (u128::from(b.fee) * u128::from(a.vsize))
                .cmp(&(u128::from(a.fee) * u128::from(b.vsize)))
                .then_with(|| a.seq.cmp(&b.seq))
        });
        let mut included: HashSet<Txid> = HashSet::new();
        let mut out = Vec::new();
        let mut txids = Vec::new();
        let mut wtxids = Vec::new();
        let mut weight = COINBASE_RESERVED_WEIGHT;
        let mut sigops = COINBASE_RESERVED_SIGOPS;
        let mut fees = Amount::ZERO;
        for c in cands {
            if included.contains(&c.txid) {
                continue;
            }
            let new: Vec<&Txid> = c.anc.iter().filter(|t| !included.contains(*t)).collect();
            let w: u64 = new.iter().map(|t| self.mempool.txs[*t].weight).sum();
            let s: usize = new.iter().map(|t| self.mempool.txs[*t].sigops).sum();
            if weight + w > consensus::MAX_BLOCK_WEIGHT
                || sigops + s > consensus::MAX_BLOCK_SIGOPS_COST
            {
                continue;
            }
            weight += w;
            sigops += s;
            for t in new {
                let e = &self.mempool.txs[t];
                fees += e.fee;
                out.push((*e.tx).clone());
                txids.push(e.txid);
                wtxids.push(e.wtxid);
                included.insert(*t);
            }
        }
        (out, txids, wtxids, fees)
    }

    /// Builds and grinds a block on the tip with `txs` after a coinbase paying `reward` to
    /// `script_pubkey`.
    /// With `known` (the txids and wtxids of `txs`), returns them with the coinbase's first.
    #[allow(clippy::type_complexity)]
    fn build_block(
        &self,
        script_pubkey: &Script,
        txs: Vec<Transaction>,
        reward: Amount,
        known: Option<(Vec<Txid>, Vec<Wtxid>)>,
    ) -> (Block, Option<(Vec<Txid>, Vec<Wtxid>)>) {
        let height = self.height() + 1;
        let coinbase = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::from_consensus(height - 1),
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: if height <= 16 {
                    consensus::coinbase_script_sig(height)
                } else {
                    consensus::bip34_prefix(height)
                },
                sequence: Sequence::ENABLE_LOCKTIME_NO_RBF,
                witness: Witness::from_slice(&[[0u8; 32]]),
            }],
            output: vec![TxOut {
                value: reward,
                script_pubkey: script_pubkey.to_owned(),
            }],
        };
        let mut txdata = Vec::with_capacity(txs.len() + 1);
        txdata.push(coinbase);
        txdata.extend(txs);
        let mut block = Block {
            header: Header {
                version: Version::from_consensus(0x2000_0000),
                prev_blockhash: self.tip_hash(),
                merkle_root: TxMerkleNode::all_zeros(),
                time: 0,
                bits: CompactTarget::from_consensus(consensus::POW_BITS),
                nonce: 0,
            },
            txdata,
        };
        let known = known.map(|(mut txids, mut wtxids)| {
            txids.insert(0, Txid::all_zeros());
            wtxids.insert(0, Wtxid::all_zeros());
            (txids, wtxids)
        });
        let witness_root = match &known {
            Some((_, wtxids)) => consensus::witness_root_of(wtxids),
            None => block
                .witness_root()
                .unwrap_or_else(bitcoin::WitnessMerkleNode::all_zeros),
        };
        block.txdata[0].output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: consensus::witness_commitment_script(witness_root),
        });
        let known = known.map(|(mut txids, mut wtxids)| {
            txids[0] = block.txdata[0].compute_txid();
            wtxids[0] = block.txdata[0].compute_wtxid();
            (txids, wtxids)
        });
        block.header.merkle_root = match &known {
            Some((txids, _)) => {
                bitcoin::merkle_tree::calculate_root(txids.iter().map(|t| t.to_raw_hash()))
                    .map(TxMerkleNode::from_raw_hash)
            }
            None => block.compute_merkle_root(),
        }
        .unwrap_or_else(TxMerkleNode::all_zeros);
        let mtp = self.mtp_at(self.height());
        let now = u32::try_from(self.now()).unwrap_or(u32::MAX);
        block.header.time = now.max(mtp.saturating_add(1));
        let target = block.header.target();
        loop {
            while block.header.validate_pow(target).is_err() {
                block.header.nonce = block.header.nonce.wrapping_add(1);
                if block.header.nonce == 0 {
                    block.header.time = block.header.time.saturating_add(1);
                }
            }
            // The same block may exist already (mined again after `invalidateblock` in the
            // same second): grinding on from the next nonce makes a new one.
            if !self.blocks.contains_key(&block.block_hash()) {
                return (block, known);
            }
            block.header.nonce = block.header.nonce.wrapping_add(1);
        }
    }

    /// Mines `n` blocks of mempool transactions; the store is synced once at the end.
    pub(crate) fn generate(
        &mut self,
        n: u32,
        script_pubkey: &Script,
    ) -> Result<(Vec<BlockHash>, Events), NodeError> {
        let mut hashes = Vec::with_capacity(n as usize);
        let mut events = Vec::new();
        for _ in 0..n {
            let (txs, txids, wtxids, fees) = self.select_transactions();
            let reward = consensus::block_subsidy(self.height() + 1) + fees;
            let (block, known) =
                self.build_block(script_pubkey, txs, reward, Some((txids, wtxids)));
            let (hash, ev) = self
                .submit_block(block, true, known)
                .map_err(NodeError::BlockRefused)?;
            hashes.push(hash);
            events.extend(ev);
        }
        self.sync_store()?;
        Ok((hashes, events))
    }

    /// Core's `generateblock`: exactly `txs` after the coinbase.
    pub(crate) fn generate_block(
        &mut self,
        script_pubkey: &Script,
        txs: Vec<Transaction>,
    ) -> Result<(BlockHash, Events), Reject> {
        // Fees: inputs from the chain or from earlier transactions of the block.
        let mut created: std::collections::HashMap<OutPoint, Coin> = Default::default();
        let mut fees = Amount::ZERO;
        for tx in &txs {
            let txid = tx.compute_txid();
            let mut value_in = Amount::ZERO;
            for input in &tx.input {
                let op = input.previous_output;
                let v = created
                    .get(&op)
                    .or_else(|| self.utxos.get(&op))
                    .map(|c| c.txout.value)
                    .ok_or_else(|| Reject {
                        code: Reject::VERIFY_ERROR,
                        reason: "TestBlockValidity failed: bad-txns-inputs-missingorspent".into(),
                        details: Some(format!("inputs of {txid} missing or spent")),
                    })?;
                value_in += v;
            }
            let value_out: Amount = tx.output.iter().map(|o| o.value).sum();
            fees += value_in.checked_sub(value_out).unwrap_or(Amount::ZERO);
            for (vout, out) in tx.output.iter().enumerate() {
                created.insert(
                    OutPoint::new(txid, vout as u32),
                    Coin {
                        txout: out.clone(),
                        height: 0,
                        coinbase: false,
                    },
                );
            }
        }
        let reward = consensus::block_subsidy(self.height() + 1) + fees;
        let (block, _) = self.build_block(script_pubkey, txs, reward, None);
        let (hash, events) = self.submit_block(block, true, None).map_err(|e| Reject {
            code: Reject::VERIFY_ERROR,
            reason: format!("TestBlockValidity failed: {}", e.message()),
            details: None,
        })?;
        self.sync_store().map_err(|e| Reject {
            code: -1,
            reason: e.to_string(),
            details: None,
        })?;
        Ok((hash, events))
    }
}
