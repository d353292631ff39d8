//! Access control on chain (PROTOCOL.md, "Access control on chain"): the `OP_RETURN` records,
//! the dataset id, the pure ACL state machine that follows an anchor's spend chain, and the
//! follower that feeds it from a [`ChainView`].
//!
//! Records (at most 80 bytes, one push after `OP_RETURN`):
//!
//! | record | bytes |
//! | --- | --- |
//! | STORE | `"BMPC"` (4) \| version `0x01` \| `0x01` \| receipts_root (32) |
//! | GRANT | `"BMPC"` \| `0x01` \| `0x02` \| service key (33) \| scope (5 to 10) |
//! | REVOKE | `"BMPC"` \| `0x01` \| `0x03` \| service key (33) |
//!
//! Scope: expiry height (4, BE; 0 = none) \| max multiplicative degree (1, at least 1) \|
//! column bitmap (0 to 5 bytes; bit `c % 8` of byte `c / 8` allows column `c`; empty = every
//! column; no trailing zero byte, not all zero). Every other byte string is refused with a
//! [`RecordError`].
//!
//! `dataset_id = sha256(STORE anchor outpoint (36 bytes: txid in internal order, vout LE) ||
//! anchor key (33 bytes))`.
//!
//! The state machine follows ONLY the spend chain from the STORE outpoint, in spend order: a
//! transaction counts only if it spends the current anchor outpoint; a valid extension has the
//! new anchor as output 0, the record as output 1 and no other anchor or `OP_RETURN` output.
//! Outputs merely paid to the anchor script are never looked at. A spend of the anchor without
//! a valid record closes the dataset. A GRANT takes effect at `acl_min_conf` confirmations, a
//! REVOKE as soon as it is seen (mempool included); a grant past its expiry height is expired.

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::hashes::{sha256, Hash};
use bitcoin::opcodes::all::OP_RETURN;
use bitcoin::script::Instruction;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{consensus, Network, OutPoint, Script, ScriptBuf, Transaction, Txid};
use btcmpc_contracts::{Anchor, Contract};

use super::chain::{confirmations, ChainError, ChainView};

/// Record magic.
pub const MAGIC: &[u8; 4] = b"BMPC";
/// Record version.
pub const RECORD_VERSION: u8 = 1;
/// Largest record (Core's standard `OP_RETURN`).
pub const MAX_RECORD_LEN: usize = 80;
/// Largest scope.
pub const MAX_SCOPE_LEN: usize = 10;
/// Largest column bitmap (40 columns).
pub const MAX_BITMAP_LEN: usize = 5;

/// Confirmations a GRANT needs by default before a party honours it.
pub const DEFAULT_ACL_MIN_CONF: u32 = 2;

const TYPE_STORE: u8 = 1;
const TYPE_GRANT: u8 = 2;
const TYPE_REVOKE: u8 = 3;

/// What a service may ask.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The grant ends at this height (the grant holds while `tip < expiry`); `None` = never.
    pub expiry: Option<u32>,
    /// Largest multiplicative degree of a query (1 = linear: sum, count, mean; 2 = var, cov).
    pub max_degree: u8,
    /// Allowed column indices; `None` = every column.
    pub columns: Option<BTreeSet<u8>>,
}

impl Scope {
    /// Every column, degree 2, no expiry.
    pub fn all() -> Scope {
        Scope {
            expiry: None,
            max_degree: 2,
            columns: None,
        }
    }

    fn encode(&self) -> Result<Vec<u8>, RecordError> {
        if self.max_degree == 0 {
            return Err(RecordError::ZeroDegree);
        }
        let mut b = Vec::with_capacity(MAX_SCOPE_LEN);
        b.extend_from_slice(&self.expiry.unwrap_or(0).to_be_bytes());
        b.push(self.max_degree);
        if let Some(cols) = &self.columns {
            let Some(&max) = cols.iter().next_back() else {
                return Err(RecordError::EmptyBitmap);
            };
            if usize::from(max) >= MAX_BITMAP_LEN * 8 {
                return Err(RecordError::ColumnOutOfRange(max));
            }
            let mut bitmap = vec![0u8; usize::from(max) / 8 + 1];
            for c in cols {
                bitmap[usize::from(*c) / 8] |= 1 << (c % 8);
            }
            b.extend_from_slice(&bitmap);
        }
        Ok(b)
    }

    fn decode(b: &[u8]) -> Result<Scope, RecordError> {
        if b.len() < 5 {
            return Err(RecordError::TooShort {
                len: b.len(),
                need: 5,
                what: "scope",
            });
        }
        if b.len() > MAX_SCOPE_LEN {
            return Err(RecordError::ScopeTooLong(b.len()));
        }
        let expiry = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if expiry >= 500_000_000 {
            return Err(RecordError::BadExpiry(expiry));
        }
        let max_degree = b[4];
        if max_degree == 0 {
            return Err(RecordError::ZeroDegree);
        }
        let bitmap = &b[5..];
        let columns = if bitmap.is_empty() {
            None
        } else {
            if bitmap.last() == Some(&0) {
                return Err(RecordError::NonCanonicalBitmap);
            }
            let mut cols = BTreeSet::new();
            for (i, byte) in bitmap.iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) != 0 {
                        cols.insert((i * 8 + bit) as u8);
                    }
                }
            }
            Some(cols)
        };
        Ok(Scope {
            expiry: (expiry != 0).then_some(expiry),
            max_degree,
            columns,
        })
    }

    /// Whether the scope allows `column` at `degree` at height `tip`.
    pub fn allows(&self, column: u8, degree: u8, tip: u32) -> bool {
        self.expiry.is_none_or(|e| tip < e)
            && degree <= self.max_degree
            && self.columns.as_ref().is_none_or(|c| c.contains(&column))
    }
}

/// An ACL record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A dataset's first record: the root of the parties' signed receipts.
    Store {
        /// The receipts root.
        receipts_root: [u8; 32],
    },
    /// Allow a service.
    Grant {
        /// The service key.
        service: PublicKey,
        /// What it may ask.
        scope: Scope,
    },
    /// Disallow a service.
    Revoke {
        /// The service key.
        service: PublicKey,
    },
}

/// A record that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// More than 80 bytes.
    #[error("record of {0} bytes is longer than 80")]
    TooLong(usize),
    /// Shorter than its type needs.
    #[error("{what} of {len} bytes is shorter than {need}")]
    TooShort {
        /// Its length.
        len: usize,
        /// The least length.
        need: usize,
        /// What is short.
        what: &'static str,
    },
    /// Not `"BMPC"`.
    #[error("record does not start with BMPC (starts with {0})")]
    BadMagic(String),
    /// Unknown version.
    #[error("unknown record version {0}")]
    Version(u8),
    /// Unknown record type.
    #[error("unknown record type {0}")]
    Type(u8),
    /// Bytes after the record.
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
    /// The service key is not a valid compressed key.
    #[error("invalid service key {0}")]
    ServiceKey(String),
    /// The scope is longer than 10 bytes.
    #[error("scope of {0} bytes is longer than 10")]
    ScopeTooLong(usize),
    /// Degree 0.
    #[error("max degree 0 (at least 1)")]
    ZeroDegree,
    /// A bitmap naming no column.
    #[error("column bitmap names no column")]
    EmptyBitmap,
    /// A bitmap with a trailing zero byte.
    #[error("column bitmap ends with a zero byte")]
    NonCanonicalBitmap,
    /// A column past the bitmap's 40.
    #[error("column {0} is past the 40 a scope can name")]
    ColumnOutOfRange(u8),
    /// An expiry that is not a height.
    #[error("expiry {0} is not a block height (below 500000000)")]
    BadExpiry(u32),
    /// The output is not `OP_RETURN <one push>`.
    #[error("output is not OP_RETURN with one push")]
    NotOpReturn,
}

impl Record {
    /// The record's bytes.
    ///
    /// # Errors
    /// A scope that cannot be encoded ([`RecordError::ZeroDegree`], an empty bitmap, a column
    /// past 39).
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let mut b = Vec::with_capacity(MAX_RECORD_LEN);
        b.extend_from_slice(MAGIC);
        b.push(RECORD_VERSION);
        match self {
            Record::Store { receipts_root } => {
                b.push(TYPE_STORE);
                b.extend_from_slice(receipts_root);
            }
            Record::Grant { service, scope } => {
                b.push(TYPE_GRANT);
                b.extend_from_slice(&service.serialize());
                b.extend_from_slice(&scope.encode()?);
            }
            Record::Revoke { service } => {
                b.push(TYPE_REVOKE);
                b.extend_from_slice(&service.serialize());
            }
        }
        debug_assert!(b.len() <= MAX_RECORD_LEN);
        Ok(b)
    }

    /// Parse a record.
    ///
    /// # Errors
    /// [`RecordError`] naming what is wrong; never panics.
    pub fn decode(b: &[u8]) -> Result<Record, RecordError> {
        if b.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLong(b.len()));
        }
        if b.len() < 6 {
            return Err(RecordError::TooShort {
                len: b.len(),
                need: 6,
                what: "record",
            });
        }
        if &b[..4] != MAGIC {
            return Err(RecordError::BadMagic(hex::encode(&b[..4])));
        }
        if b[4] != RECORD_VERSION {
            return Err(RecordError::Version(b[4]));
        }
        let body = &b[6..];
        let key = |body: &[u8]| -> Result<PublicKey, RecordError> {
            if body.len() < 33 {
                return Err(RecordError::TooShort {
                    len: b.len(),
                    need: 6 + 33,
                    what: "record",
                });
            }
            let k = &body[..33];
            if k[0] != 2 && k[0] != 3 {
                return Err(RecordError::ServiceKey(hex::encode(k)));
            }
            PublicKey::from_slice(k).map_err(|_| RecordError::ServiceKey(hex::encode(k)))
        };
        match b[5] {
            TYPE_STORE => {
                if body.len() < 32 {
                    return Err(RecordError::TooShort {
                        len: b.len(),
                        need: 38,
                        what: "record",
                    });
                }
                if body.len() > 32 {
                    return Err(RecordError::Trailing(body.len() - 32));
                }
                let mut receipts_root = [0u8; 32];
                receipts_root.copy_from_slice(body);
                Ok(Record::Store { receipts_root })
            }
            TYPE_GRANT => Ok(Record::Grant {
                service: key(body)?,
                scope: Scope::decode(&body[33..])?,
            }),
            TYPE_REVOKE => {
                let service = key(body)?;
                if body.len() > 33 {
                    return Err(RecordError::Trailing(body.len() - 33));
                }
                Ok(Record::Revoke { service })
            }
            t => Err(RecordError::Type(t)),
        }
    }

    /// The `OP_RETURN` script carrying the record.
    ///
    /// # Errors
    /// As [`Record::encode`].
    pub fn script(&self) -> Result<ScriptBuf, RecordError> {
        let push = bitcoin::script::PushBytesBuf::try_from(self.encode()?)
            .expect("a record of at most 80 bytes always fits a push");
        Ok(ScriptBuf::new_op_return(push))
    }

    /// Parse the record in an `OP_RETURN <push>` script.
    ///
    /// # Errors
    /// [`RecordError::NotOpReturn`] and as [`Record::decode`].
    pub fn from_script(script: &Script) -> Result<Record, RecordError> {
        let mut ins = script.instructions();
        match ins.next() {
            Some(Ok(Instruction::Op(op))) if op == OP_RETURN => {}
            _ => return Err(RecordError::NotOpReturn),
        }
        let data = match ins.next() {
            Some(Ok(Instruction::PushBytes(p))) => p.as_bytes().to_vec(),
            _ => return Err(RecordError::NotOpReturn),
        };
        if ins.next().is_some() {
            return Err(RecordError::NotOpReturn);
        }
        Record::decode(&data)
    }
}

/// `sha256(outpoint (36 bytes, consensus encoding) || anchor key (33 bytes))`.
pub fn dataset_id(store_outpoint: &OutPoint, anchor_key: &PublicKey) -> [u8; 32] {
    let mut b = consensus::serialize(store_outpoint);
    b.extend_from_slice(&anchor_key.serialize());
    sha256::Hash::hash(&b).to_byte_array()
}

/// The anchor script of `key`: P2TR key path, `tr(key)`.
pub fn anchor_script(key: &PublicKey) -> ScriptBuf {
    Contract::Anchor(Anchor { key: *key })
        .script_pubkey()
        .expect("an anchor always compiles")
}

/// The anchor address of `key` on `network`.
pub fn anchor_address(key: &PublicKey, network: Network) -> bitcoin::Address {
    bitcoin::Address::from_script(&anchor_script(key), network)
        .expect("a P2TR script always has an address")
}

/// Why a transaction cannot start or extend a dataset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// The STORE transaction is not what it should be.
    #[error("STORE transaction {txid}: {reason}")]
    BadStore {
        /// The transaction.
        txid: Txid,
        /// Why.
        reason: String,
    },
    /// The chain could not be read.
    #[error("{0}")]
    Chain(String),
}

impl From<ChainError> for AclError {
    fn from(e: ChainError) -> Self {
        AclError::Chain(e.to_string())
    }
}

/// One extension of the anchor chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    /// The transaction that spent the previous anchor.
    pub txid: Txid,
    /// Its confirmation height (`None` in the mempool).
    pub height: Option<u32>,
    /// The GRANT or REVOKE it carries.
    pub record: Record,
}

/// How the chain ended, when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The transaction that spent the anchor without a valid record.
    pub txid: Txid,
    /// Its height (`None` in the mempool).
    pub height: Option<u32>,
    /// Why it does not extend the chain.
    pub reason: String,
}

/// What the chain says about one service right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Granted with this scope.
    Granted(Scope),
    /// A GRANT seen but not yet `acl_min_conf` deep (confirmations so far).
    Pending(u32),
    /// Revoked (by the entry's transaction).
    Revoked(Txid),
    /// Granted until `expiry`, which has passed.
    Expired(u32),
    /// Never granted.
    NotGranted,
    /// The dataset is closed.
    Closed,
}

impl Access {
    /// Whether the service may ask.
    pub fn is_granted(&self) -> bool {
        matches!(self, Access::Granted(_))
    }
}

/// Outcome of feeding a transaction to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// It does not spend the current anchor: ignored.
    Ignored,
    /// It extended the chain.
    Extended,
    /// It spent the anchor without a valid record: the dataset is closed.
    Closed,
}

/// The ACL of one dataset, as its anchor spend chain says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclState {
    /// The dataset id.
    pub dataset_id: [u8; 32],
    /// The anchor key.
    pub anchor_key: PublicKey,
    /// The STORE anchor outpoint.
    pub store_outpoint: OutPoint,
    /// The STORE transaction's height (`None` in the mempool).
    pub store_height: Option<u32>,
    /// The receipts root of the STORE record.
    pub receipts_root: [u8; 32],
    /// GRANTs count from this many confirmations.
    pub acl_min_conf: u32,
    /// The extensions, in spend order.
    pub entries: Vec<AclEntry>,
    /// Set when the chain was closed.
    pub closed: Option<Closed>,
    anchor_script: ScriptBuf,
}

impl AclState {
    /// Start from the STORE transaction: output `vout` must pay the anchor script of
    /// `anchor_key`, and the transaction must carry exactly one `OP_RETURN`, a STORE record.
    ///
    /// # Errors
    /// [`AclError::BadStore`].
    pub fn from_store(
        store_tx: &Transaction,
        vout: u32,
        height: Option<u32>,
        anchor_key: PublicKey,
        acl_min_conf: u32,
    ) -> Result<AclState, AclError> {
        let txid = store_tx.compute_txid();
        let bad = |reason: String| AclError::BadStore { txid, reason };
        let script = anchor_script(&anchor_key);
        let out = store_tx
            .output
            .get(vout as usize)
            .ok_or_else(|| bad(format!("has no output {vout}")))?;
        if out.script_pubkey != script {
            return Err(bad(format!(
                "output {vout} is not the anchor of {anchor_key}"
            )));
        }
        let returns: Vec<_> = store_tx
            .output
            .iter()
            .filter(|o| o.script_pubkey.is_op_return())
            .collect();
        if returns.len() != 1 {
            return Err(bad(format!(
                "{} OP_RETURN outputs (expected 1)",
                returns.len()
            )));
        }
        let receipts_root = match Record::from_script(&returns[0].script_pubkey) {
            Ok(Record::Store { receipts_root }) => receipts_root,
            Ok(other) => return Err(bad(format!("record is not STORE: {other:?}"))),
            Err(e) => return Err(bad(e.to_string())),
        };
        let store_outpoint = OutPoint { txid, vout };
        Ok(AclState {
            dataset_id: dataset_id(&store_outpoint, &anchor_key),
            anchor_key,
            store_outpoint,
            store_height: height,
            receipts_root,
            acl_min_conf: acl_min_conf.max(1),
            entries: Vec::new(),
            closed: None,
            anchor_script: script,
        })
    }

    /// The anchor script.
    pub fn anchor_script(&self) -> &Script {
        &self.anchor_script
    }

    /// The current anchor outpoint (the last extension's output 0, or the STORE outpoint);
    /// `None` once closed.
    pub fn current(&self) -> Option<OutPoint> {
        if self.closed.is_some() {
            return None;
        }
        Some(
            self.entries
                .last()
                .map_or(self.store_outpoint, |e| OutPoint {
                    txid: e.txid,
                    vout: 0,
                }),
        )
    }

    /// Feed a transaction seen at `height` (`None` = mempool). Only a spend of the current
    /// anchor counts.
    pub fn apply(&mut self, tx: &Transaction, height: Option<u32>) -> Step {
        let Some(current) = self.current() else {
            return Step::Ignored;
        };
        if !tx.input.iter().any(|i| i.previous_output == current) {
            return Step::Ignored;
        }
        let txid = tx.compute_txid();
        match self.extension_record(tx) {
            Ok(record) => {
                self.entries.push(AclEntry {
                    txid,
                    height,
                    record,
                });
                Step::Extended
            }
            Err(reason) => {
                tracing::warn!(target: "btcmpc_engine::node::acl", %txid, "anchor spent without a valid record: {reason}");
                self.closed = Some(Closed {
                    txid,
                    height,
                    reason,
                });
                Step::Closed
            }
        }
    }

    fn extension_record(&self, tx: &Transaction) -> Result<Record, String> {
        if tx.input.is_empty() || tx.output.len() < 2 {
            return Err("fewer than two outputs".into());
        }
        if tx.output[0].script_pubkey != self.anchor_script {
            return Err("output 0 is not the anchor".into());
        }
        let anchors = tx
            .output
            .iter()
            .filter(|o| o.script_pubkey == self.anchor_script)
            .count();
        let returns = tx
            .output
            .iter()
            .filter(|o| o.script_pubkey.is_op_return())
            .count();
        if anchors != 1 || returns != 1 {
            return Err(format!(
                "{anchors} anchor outputs and {returns} OP_RETURN outputs (expected 1 and 1)"
            ));
        }
        match Record::from_script(&tx.output[1].script_pubkey) {
            Ok(r @ (Record::Grant { .. } | Record::Revoke { .. })) => Ok(r),
            Ok(Record::Store { .. }) => Err("a STORE record extends no chain".into()),
            Err(e) => Err(format!("output 1: {e}")),
        }
    }

    /// Drop every extension from `index` on (a reorg or an eviction removed it), reopening a
    /// chain closed at or after it.
    pub fn truncate(&mut self, index: usize) {
        if index <= self.entries.len() {
            self.entries.truncate(index);
            self.closed = None;
        }
    }

    /// What the chain says about `service` with the tip at `tip`: the records are walked in
    /// spend order; a GRANT counts from `acl_min_conf` confirmations, a REVOKE at once.
    pub fn access(&self, service: &PublicKey, tip: u32) -> Access {
        if self.closed.is_some() {
            return Access::Closed;
        }
        let mut state = Access::NotGranted;
        for e in &self.entries {
            match &e.record {
                Record::Grant { service: s, scope } if s == service => {
                    let confs = confirmations(tip, e.height);
                    if confs >= self.acl_min_conf {
                        state = Access::Granted(scope.clone());
                    } else if !state.is_granted() {
                        state = Access::Pending(confs);
                    }
                }
                Record::Revoke { service: s } if s == service => {
                    state = Access::Revoked(e.txid);
                }
                _ => {}
            }
        }
        match state {
            Access::Granted(scope) => match scope.expiry {
                Some(exp) if tip >= exp => Access::Expired(exp),
                _ => Access::Granted(scope),
            },
            other => other,
        }
    }

    /// Why `record` would change nothing at tip `tip` (so it must not be published and paid
    /// for): a REVOKE of a service never granted or already revoked, a GRANT whose expiry is
    /// not above the tip. `None` when the record does something.
    pub fn unchanged_by(&self, record: &Record, tip: u32) -> Option<String> {
        match record {
            Record::Revoke { service } => match self.table(tip).get(service) {
                None => Some(format!("{service} was never granted this dataset: nothing to revoke")),
                Some(Access::Revoked(txid)) => Some(format!(
                    "{service} is already revoked by {txid}: nothing to revoke"
                )),
                Some(_) => None,
            },
            Record::Grant { scope, .. } => scope.expiry.filter(|h| *h <= tip).map(|h| {
                format!("expiry {h} is not above the tip {tip}: the grant would be expired before it counts")
            }),
            _ => None,
        }
    }

    /// Every service named by a record, with its access at `tip`.
    pub fn table(&self, tip: u32) -> BTreeMap<PublicKey, Access> {
        let mut keys = BTreeSet::new();
        for e in &self.entries {
            match &e.record {
                Record::Grant { service, .. } | Record::Revoke { service } => {
                    keys.insert(*service);
                }
                Record::Store { .. } => {}
            }
        }
        keys.into_iter()
            .map(|k| (k, self.access(&k, tip)))
            .collect()
    }
}

/// Most extensions a follower reads in one call.
pub const MAX_STEPS_PER_CALL: usize = 1_000;

/// Start following a dataset: fetch the STORE transaction and build the state.
///
/// # Errors
/// [`AclError::BadStore`] when the transaction is unknown or is not a STORE for `anchor_key`;
/// [`AclError::Chain`].
pub fn start(
    chain: &impl ChainView,
    store_outpoint: OutPoint,
    anchor_key: PublicKey,
    acl_min_conf: u32,
) -> Result<AclState, AclError> {
    let script = anchor_script(&anchor_key);
    let hist = chain.history(&script)?;
    let height = hist
        .iter()
        .find(|h| h.txid == store_outpoint.txid)
        .ok_or_else(|| AclError::BadStore {
            txid: store_outpoint.txid,
            reason: "not in the anchor script's history".into(),
        })?
        .height;
    let tx = chain
        .transaction(&store_outpoint.txid)?
        .ok_or_else(|| AclError::BadStore {
            txid: store_outpoint.txid,
            reason: "unknown to the server".into(),
        })?;
    AclState::from_store(&tx, store_outpoint.vout, height, anchor_key, acl_min_conf)
}

/// Bring `state` up to date with `chain`: refresh the heights of known extensions (dropping
/// those the chain no longer has, from the first one on), then follow the spend chain from the
/// current anchor for at most `max_steps` extensions (capped at [`MAX_STEPS_PER_CALL`]).
/// Transactions merely paying the anchor script are fetched once and ignored. Returns how many
/// extensions were added; call again while it returns `max_steps`.
///
/// # Errors
/// [`AclError::Chain`].
pub fn follow(
    state: &mut AclState,
    chain: &impl ChainView,
    max_steps: usize,
) -> Result<usize, AclError> {
    let max_steps = max_steps.min(MAX_STEPS_PER_CALL);
    let hist = chain.history(state.anchor_script())?;
    let heights: BTreeMap<Txid, Option<u32>> = hist.iter().map(|h| (h.txid, h.height)).collect();
    // The STORE itself may have been reorged out: then nothing after it holds either.
    match heights.get(&state.store_outpoint.txid) {
        Some(h) => state.store_height = *h,
        None => {
            state.truncate(0);
            return Err(AclError::Chain(format!(
                "STORE transaction {} is no longer in the chain view",
                state.store_outpoint.txid
            )));
        }
    }
    if let Some(gone) = state
        .entries
        .iter()
        .position(|e| !heights.contains_key(&e.txid))
    {
        state.truncate(gone);
    }
    for e in &mut state.entries {
        e.height = heights[&e.txid];
    }
    if let Some(c) = &state.closed {
        if !heights.contains_key(&c.txid) {
            state.closed = None;
        }
    }
    let known: BTreeSet<Txid> = state
        .entries
        .iter()
        .map(|e| e.txid)
        .chain(std::iter::once(state.store_outpoint.txid))
        .chain(state.closed.iter().map(|c| c.txid))
        .collect();
    // Fetch each unknown transaction once, then walk the spend chain through them.
    let mut candidates: Vec<(Transaction, Option<u32>)> = Vec::new();
    for h in hist.iter().filter(|h| !known.contains(&h.txid)) {
        if let Some(tx) = chain.transaction(&h.txid)? {
            candidates.push((tx, h.height));
        }
    }
    let mut added = 0;
    while added < max_steps {
        let Some(current) = state.current() else {
            break;
        };
        let Some(pos) = candidates
            .iter()
            .position(|(tx, _)| tx.input.iter().any(|i| i.previous_output == current))
        else {
            break;
        };
        let (tx, height) = candidates.swap_remove(pos);
        match state.apply(&tx, height) {
            Step::Extended => added += 1,
            Step::Closed | Step::Ignored => break,
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, Sequence, TxIn, TxOut, Witness};
    use proptest::prelude::*;

    fn key(seed: u8) -> PublicKey {
        crate::node::card::tests::keypair(seed).public_key()
    }

    fn tx(inputs: &[OutPoint], outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: inputs
                .iter()
                .map(|o| TxIn {
                    previous_output: *o,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        }
    }

    fn out(script: ScriptBuf) -> TxOut {
        TxOut {
            value: Amount::from_sat(330),
            script_pubkey: script,
        }
    }

    fn grant(s: u8) -> Record {
        Record::Grant {
            service: key(s),
            scope: Scope {
                expiry: Some(900),
                max_degree: 1,
                columns: Some([0, 2, 9].into()),
            },
        }
    }

    #[test]
    fn records_are_frozen() {
        let store = Record::Store {
            receipts_root: [7; 32],
        };
        let revoke = Record::Revoke { service: key(5) };
        let all = Record::Grant {
            service: key(5),
            scope: Scope::all(),
        };
        let lines: Vec<String> = [&store, &grant(5), &revoke, &all]
            .iter()
            .map(|r| hex::encode(r.encode().unwrap()))
            .collect();
        let text = lines.join("\n") + "\n";
        if std::env::var_os("BTCMPC_WRITE_FIXTURES").is_some() {
            std::fs::write(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/node/records.hex"
                ),
                &text,
            )
            .unwrap();
        }
        assert_eq!(text, include_str!("../../tests/fixtures/node/records.hex"));
        for (line, r) in lines.iter().zip([&store, &grant(5), &revoke, &all]) {
            let bytes = hex::decode(line).unwrap();
            assert!(bytes.len() <= MAX_RECORD_LEN);
            assert_eq!(Record::decode(&bytes).unwrap(), *r);
            assert_eq!(Record::from_script(&r.script().unwrap()).unwrap(), *r);
        }
    }

    #[test]
    fn malformed_records_are_refused_with_their_reason() {
        let g = grant(5).encode().unwrap();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = g.clone();
            f(&mut b);
            Record::decode(&b).unwrap_err()
        };
        assert!(matches!(with(&|b| b[0] = b'X'), RecordError::BadMagic(_)));
        assert_eq!(with(&|b| b[4] = 2), RecordError::Version(2));
        assert_eq!(with(&|b| b[5] = 9), RecordError::Type(9));
        assert!(matches!(with(&|b| b[6] = 4), RecordError::ServiceKey(_)));
        assert!(matches!(
            with(&|b| b.truncate(20)),
            RecordError::TooShort { .. }
        ));
        assert!(matches!(
            with(&|b| b.truncate(6 + 33 + 4)),
            RecordError::TooShort { .. }
        ));
        assert_eq!(with(&|b| b.extend([1; 5])), RecordError::ScopeTooLong(12));
        assert_eq!(with(&|b| b[6 + 33 + 4] = 0), RecordError::ZeroDegree);
        assert_eq!(with(&|b| b.push(0)), RecordError::NonCanonicalBitmap);
        assert_eq!(
            with(&|b| b[6 + 33] = 0xff),
            RecordError::BadExpiry(0xff00_0384)
        );
        assert_eq!(
            Record::decode(&[0; 81]).unwrap_err(),
            RecordError::TooLong(81)
        );
        let mut r = Record::Revoke { service: key(5) }.encode().unwrap();
        r.push(1);
        assert_eq!(Record::decode(&r).unwrap_err(), RecordError::Trailing(1));
        let mut s = Record::Store {
            receipts_root: [1; 32],
        }
        .encode()
        .unwrap();
        s.push(1);
        assert_eq!(Record::decode(&s).unwrap_err(), RecordError::Trailing(1));
        let bad_scope = Record::Grant {
            service: key(1),
            scope: Scope {
                expiry: None,
                max_degree: 1,
                columns: Some([40].into()),
            },
        };
        assert_eq!(
            bad_scope.encode().unwrap_err(),
            RecordError::ColumnOutOfRange(40)
        );
        assert_eq!(
            Record::from_script(&ScriptBuf::new_p2tr(
                &bitcoin::secp256k1::Secp256k1::new(),
                key(1).x_only_public_key().0,
                None
            ))
            .unwrap_err(),
            RecordError::NotOpReturn
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Record::decode(&bytes);
        }

        #[test]
        fn decode_of_mutated_records_never_panics(i in 0usize..49, v in any::<u8>(), cut in 0usize..50) {
            let mut b = grant(3).encode().unwrap();
            let i = i % b.len();
            b[i] = v;
            b.truncate(cut.max(1));
            if let Ok(r) = Record::decode(&b) {
                // Whatever decodes re-encodes to the same bytes (one encoding per record).
                prop_assert_eq!(r.encode().unwrap(), b);
            }
        }

        #[test]
        fn scopes_round_trip(cols in proptest::collection::btree_set(0u8..40, 1..10),
                             degree in 1u8..5, expiry in 0u32..1000) {
            let r = Record::Grant { service: key(2), scope: Scope {
                expiry: (expiry != 0).then_some(expiry), max_degree: degree, columns: Some(cols) } };
            prop_assert_eq!(Record::decode(&r.encode().unwrap()).unwrap(), r);
        }
    }

    fn store_state() -> (AclState, ScriptBuf) {
        let ak = key(1);
        let a = anchor_script(&ak);
        let store = tx(
            &[OutPoint::null()],
            vec![
                out(a.clone()),
                out(Record::Store {
                    receipts_root: [3; 32],
                }
                .script()
                .unwrap()),
            ],
        );
        let st = AclState::from_store(&store, 0, Some(100), ak, 2).unwrap();
        assert_eq!(
            st.dataset_id,
            dataset_id(&OutPoint::new(store.compute_txid(), 0), &ak)
        );
        (st, a)
    }

    #[test]
    fn grant_counts_at_min_conf_and_revoke_at_once() {
        let (mut st, a) = store_state();
        let s = key(5);
        let g = tx(
            &[st.current().unwrap()],
            vec![out(a.clone()), out(grant(5).script().unwrap())],
        );
        assert_eq!(st.apply(&g, None), Step::Extended);
        assert_eq!(st.access(&s, 110), Access::Pending(0));
        st.entries[0].height = Some(110);
        assert_eq!(st.access(&s, 110), Access::Pending(1));
        assert!(st.access(&s, 111).is_granted());
        assert_eq!(st.access(&s, 900), Access::Expired(900));
        assert_eq!(st.access(&key(6), 111), Access::NotGranted);
        let r = tx(
            &[st.current().unwrap()],
            vec![out(a), out(Record::Revoke { service: s }.script().unwrap())],
        );
        assert_eq!(st.apply(&r, None), Step::Extended);
        assert_eq!(st.access(&s, 111), Access::Revoked(r.compute_txid()));
    }

    #[test]
    fn forged_grant_is_ignored_and_bad_spend_closes() {
        let (mut st, a) = store_state();
        // Paid to the anchor script with a GRANT record, but not spending the anchor.
        let forged = tx(
            &[OutPoint::new(Txid::all_zeros(), 7)],
            vec![out(a.clone()), out(grant(5).script().unwrap())],
        );
        assert_eq!(st.apply(&forged, Some(101)), Step::Ignored);
        assert!(st.entries.is_empty());
        assert_eq!(st.access(&key(5), 200), Access::NotGranted);
        // A spend of the anchor with no record closes the dataset.
        let bad = tx(&[st.current().unwrap()], vec![out(a.clone())]);
        assert_eq!(st.apply(&bad, Some(102)), Step::Closed);
        assert_eq!(st.access(&key(5), 200), Access::Closed);
        assert_eq!(st.current(), None);
        // A later GRANT-looking spend is ignored.
        let late = tx(
            &[OutPoint::new(bad.compute_txid(), 0)],
            vec![out(a), out(grant(5).script().unwrap())],
        );
        assert_eq!(st.apply(&late, Some(103)), Step::Ignored);
        st.truncate(0);
        assert!(st.current().is_some());
    }

    #[test]
    fn store_must_be_a_store() {
        let ak = key(1);
        let a = anchor_script(&ak);
        let no_record = tx(&[OutPoint::null()], vec![out(a.clone())]);
        assert!(AclState::from_store(&no_record, 0, None, ak, 1).is_err());
        let grant_record = tx(
            &[OutPoint::null()],
            vec![out(a.clone()), out(grant(2).script().unwrap())],
        );
        assert!(AclState::from_store(&grant_record, 0, None, ak, 1).is_err());
        let wrong_key = tx(
            &[OutPoint::null()],
            vec![
                out(a),
                out(Record::Store {
                    receipts_root: [0; 32],
                }
                .script()
                .unwrap()),
            ],
        );
        assert!(AclState::from_store(&wrong_key, 0, None, key(2), 1).is_err());
        assert!(AclState::from_store(&wrong_key, 5, None, ak, 1).is_err());
    }
}
