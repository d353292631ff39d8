//! The values the embedded node takes and returns (script hashes, rejections, tips,
//! confirmations, mempool entries, events) and its errors, apart from the [`crate::node::Node`]
//! that produces them, so the chain code and both servers depend on these and not on each
//! other. `crate::node` re-exports every one of them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::{Amount, BlockHash, OutPoint, Script, ScriptBuf, Transaction, TxOut, Txid, Wtxid};
use sha2::{Digest, Sha256};

/// An Electrum script hash: SHA-256 of a `scriptPubKey`.
///
/// It is displayed and parsed as Electrum does, in byte-reversed hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScriptHash(pub [u8; 32]);

impl ScriptHash {
    /// The Electrum script hash of `script_pubkey`.
    pub fn from_script(script_pubkey: &Script) -> Self {
        ScriptHash(Sha256::digest(script_pubkey.as_bytes()).into())
    }
}

impl fmt::Display for ScriptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().rev() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ScriptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScriptHash({self})")
    }
}

/// The text is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid script hash {0:?}: expected 64 hex digits")]
pub struct ParseScriptHashError(pub String);

impl FromStr for ScriptHash {
    type Err = ParseScriptHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| ParseScriptHashError(s.to_owned()))?;
        bytes.reverse();
        Ok(ScriptHash(bytes))
    }
}

/// When the node mines on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutomineMode {
    /// Mine one block whenever the mempool is not empty, `delay` after it stopped being empty.
    OnTransaction {
        /// How long to wait after the first transaction before mining.
        delay: Duration,
    },
    /// Mine one block every `interval`, even an empty one.
    Interval(Duration),
}

/// Automatic mining: when, and to which script the coinbase pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Automine {
    /// When to mine.
    pub mode: AutomineMode,
    /// Where the block rewards go.
    pub script_pubkey: ScriptBuf,
}

/// What went wrong in the node itself (storage, unknown block), as opposed to a refused
/// transaction ([`Reject`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Reading or writing the data directory failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The block store holds data that is not a valid chain.
    #[error("corrupt block store {path}: {reason}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No block with this hash is known.
    #[error("block not found: {0}")]
    BlockNotFound(BlockHash),
    /// The genesis block cannot be invalidated.
    #[error("cannot invalidate the genesis block {0}")]
    Genesis(BlockHash),
    /// A block the node built (or was asked to build) was refused by its own checks.
    #[error("block refused: {0}")]
    BlockRefused(Reject),
    /// The node was shut down.
    #[error("the node is shut down")]
    ShutDown,
}

/// A refused transaction or block, with Bitcoin Core's RPC error code and reject reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct Reject {
    /// Core's RPC error code: -26 (`RPC_VERIFY_REJECTED`) for policy and consensus refusals,
    /// -25 (`RPC_VERIFY_ERROR`) for missing inputs and other verification errors, -27
    /// (`RPC_VERIFY_ALREADY_IN_UTXO_SET`) for a transaction already in the chain.
    pub code: i32,
    /// Core's reject reason, exactly as Core prints it (for example `non-final`,
    /// `missing-inputs`, `mempool-script-verify-flag-failed (...)`).
    pub reason: String,
    /// Core's debug message, if any (shown after a comma in RPC error messages).
    pub details: Option<String>,
}

impl Reject {
    /// `RPC_VERIFY_ERROR`.
    pub const VERIFY_ERROR: i32 = -25;
    /// `RPC_VERIFY_REJECTED`.
    pub const VERIFY_REJECTED: i32 = -26;
    /// `RPC_VERIFY_ALREADY_IN_UTXO_SET`.
    pub const VERIFY_ALREADY_IN_UTXO_SET: i32 = -27;

    /// A refusal with code -26 and `reason`.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Reject {
            code: Self::VERIFY_REJECTED,
            reason: reason.into(),
            details: None,
        }
    }

    /// A refusal with code -26, `reason` and a debug message.
    pub fn rejected_with(reason: impl Into<String>, details: impl Into<String>) -> Self {
        Reject {
            code: Self::VERIFY_REJECTED,
            reason: reason.into(),
            details: Some(details.into()),
        }
    }

    /// The message as Core's `sendrawtransaction` prints it: the reason, then `, details`.
    pub fn message(&self) -> String {
        match &self.details {
            Some(d) if !d.is_empty() => format!("{}, {}", self.reason, d),
            _ => self.reason.clone(),
        }
    }
}

/// The best chain's tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TipInfo {
    /// Height of the tip (0 = genesis).
    pub height: u32,
    /// Hash of the tip.
    pub hash: BlockHash,
    /// Header of the tip.
    pub header: Header,
    /// Median time past of the tip (median of its and its 10 ancestors' times).
    pub median_time_past: u32,
    /// The tip's own timestamp.
    pub time: u32,
    /// Total work of the chain, as Core's `chainwork` (big-endian).
    pub chain_work: bitcoin::Work,
}

/// Where a confirmed transaction is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// The block holding it.
    pub block_hash: BlockHash,
    /// That block's height.
    pub height: u32,
    /// That block's timestamp.
    pub time: u32,
    /// Position of the transaction in the block (0 = coinbase).
    pub position: usize,
}

/// A transaction the node knows (confirmed in the best chain or in the mempool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxInfo {
    /// The transaction.
    pub tx: Transaction,
    /// Where it is confirmed; `None` when it is in the mempool.
    pub confirmation: Option<Confirmation>,
}

/// One entry of a script hash's history, as Electrum's `get_history` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// The transaction.
    pub txid: Txid,
    /// Block height; 0 for a mempool transaction whose inputs are all confirmed, -1 for one
    /// with an unconfirmed input.
    pub height: i32,
    /// The fee, for mempool transactions.
    pub fee: Option<Amount>,
}

/// An unspent output of a script hash, as Electrum's `listunspent` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utxo {
    /// The output.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// The height of the block that created it; 0 for a mempool output.
    pub height: u32,
}

/// An output as `gettxout` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtxoEntry {
    /// The output.
    pub txout: TxOut,
    /// Height of the block that created it; `None` for a mempool output.
    pub height: Option<u32>,
    /// Whether it is a coinbase output.
    pub is_coinbase: bool,
}

/// What `testmempoolaccept` reports for an accepted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptInfo {
    /// Its txid.
    pub txid: Txid,
    /// Its wtxid.
    pub wtxid: Wtxid,
    /// Its virtual size.
    pub vsize: u64,
    /// The fee it pays.
    pub fee: Amount,
}

/// A mempool transaction, as `getmempoolentry` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolEntry {
    /// Txid.
    pub txid: Txid,
    /// Wtxid.
    pub wtxid: Wtxid,
    /// Virtual size.
    pub vsize: u64,
    /// Weight.
    pub weight: u64,
    /// Fee.
    pub fee: Amount,
    /// Unix time it entered the mempool (mocktime if set).
    pub time: u64,
    /// Chain height when it entered.
    pub height: u32,
    /// Number of in-mempool ancestors, itself included.
    pub ancestor_count: u64,
    /// Virtual size of those.
    pub ancestor_size: u64,
    /// Fees of those.
    pub ancestor_fees: Amount,
    /// Number of in-mempool descendants, itself included.
    pub descendant_count: u64,
    /// Virtual size of those.
    pub descendant_size: u64,
    /// Fees of those.
    pub descendant_fees: Amount,
    /// In-mempool parents.
    pub depends: Vec<Txid>,
    /// In-mempool children.
    pub spent_by: Vec<Txid>,
}

/// Something that changed in the node, for subscribers ([`crate::node::Node::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// The best chain has a new tip (after mining, a reorg, an invalidation).
    NewTip {
        /// Its height.
        height: u32,
        /// Its hash.
        hash: BlockHash,
    },
    /// A transaction entered the mempool.
    TxAdded {
        /// The transaction.
        txid: Txid,
        /// Script hashes of its outputs and of the outputs it spends.
        script_hashes: Vec<ScriptHash>,
    },
    /// A transaction left the mempool (mined, replaced, evicted by a reorg).
    TxRemoved {
        /// The transaction.
        txid: Txid,
        /// Script hashes of its outputs and of the outputs it spends.
        script_hashes: Vec<ScriptHash>,
    },
    /// The history (confirmed or mempool) of these script hashes changed. Sent after every
    /// change, mempool or block: an Electrum server needs only this one to notify subscribers.
    ScriptHashesChanged(Vec<ScriptHash>),
}
