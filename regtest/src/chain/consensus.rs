//! Bitcoin Core's consensus rules on regtest: parameters, context-free transaction and block
//! checks, finality (`IsFinalTx`, BIP68), and script verification through Core's interpreter.

use std::collections::HashSet;

use bitcoin::block::Header;
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash as _;
use bitcoin::script::PushBytesBuf;
use bitcoin::{
    Amount, Block, CompactTarget, OutPoint, Script, ScriptBuf, Transaction, TxMerkleNode, TxOut,
    WitnessMerkleNode,
};

use crate::types::Reject;

/// Regtest proof-of-work limit (`nBits` of every regtest block).
pub const POW_BITS: u32 = 0x207f_ffff;
/// Blocks before a coinbase output can be spent.
pub const COINBASE_MATURITY: u32 = 100;
/// Regtest halving interval.
pub const HALVING_INTERVAL: u32 = 150;
/// Block weight limit.
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;
/// Block sigops cost limit.
pub const MAX_BLOCK_SIGOPS_COST: usize = 80_000;
/// Largest money amount.
pub const MAX_MONEY: u64 = 21_000_000 * 100_000_000;
/// `nLockTime` values below this are heights.
pub const LOCKTIME_THRESHOLD: u32 = 500_000_000;
/// How far in the future a block time may be.
pub const MAX_FUTURE_BLOCK_TIME: u64 = 2 * 60 * 60;

/// BIP68: relative lock disabled.
pub const SEQUENCE_LOCKTIME_DISABLE_FLAG: u32 = 1 << 31;
/// BIP68: relative lock in units of 512 seconds.
pub const SEQUENCE_LOCKTIME_TYPE_FLAG: u32 = 1 << 22;
/// BIP68: the lock value.
pub const SEQUENCE_LOCKTIME_MASK: u32 = 0x0000_ffff;
/// BIP68: time granularity shift.
pub const SEQUENCE_LOCKTIME_GRANULARITY: u32 = 9;

/// The script verification flags Core uses on regtest, all active from genesis: P2SH, DERSIG,
/// NULLDUMMY, CHECKLOCKTIMEVERIFY, CHECKSEQUENCEVERIFY, WITNESS, TAPROOT.
pub const CONSENSUS_FLAGS: u32 =
    bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT;

/// Block subsidy at `height`.
pub fn block_subsidy(height: u32) -> Amount {
    let halvings = height / HALVING_INTERVAL;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat((50 * 100_000_000u64) >> halvings)
}

/// Core's `CheckTransaction`: context-free checks.
///
/// # Errors
/// Core's reject reason (`bad-txns-vin-empty`, `bad-txns-inputs-duplicate`, ...), code -26.
pub fn check_transaction(tx: &Transaction) -> Result<(), Reject> {
    if tx.input.is_empty() {
        return Err(Reject::rejected("bad-txns-vin-empty"));
    }
    if tx.output.is_empty() {
        return Err(Reject::rejected("bad-txns-vout-empty"));
    }
    // Size limit without witness, scaled.
    if tx.base_size() * 4 > MAX_BLOCK_WEIGHT as usize {
        return Err(Reject::rejected("bad-txns-oversize"));
    }
    let mut total: u64 = 0;
    for out in &tx.output {
        let v = out.value.to_sat();
        if v > MAX_MONEY {
            return Err(Reject::rejected("bad-txns-vout-toolarge"));
        }
        total = total.saturating_add(v);
        if total > MAX_MONEY {
            return Err(Reject::rejected("bad-txns-txouttotal-toolarge"));
        }
    }
    let duplicate = if tx.input.len() <= 8 {
        tx.input.iter().enumerate().any(|(i, a)| {
            tx.input[..i]
                .iter()
                .any(|b| b.previous_output == a.previous_output)
        })
    } else {
        let mut seen = HashSet::with_capacity(tx.input.len());
        !tx.input.iter().all(|i| seen.insert(i.previous_output))
    };
    if duplicate {
        return Err(Reject::rejected("bad-txns-inputs-duplicate"));
    }
    if tx.is_coinbase() {
        let len = tx.input[0].script_sig.len();
        if !(2..=100).contains(&len) {
            return Err(Reject::rejected("bad-cb-length"));
        }
    } else if tx
        .input
        .iter()
        .any(|i| i.previous_output == OutPoint::null())
    {
        return Err(Reject::rejected("bad-txns-prevout-null"));
    }
    Ok(())
}

/// Core's `IsFinalTx`: `height` and `time` of the block that would hold `tx` (time = median
/// time past of its parent, BIP113).
pub fn is_final_tx(tx: &Transaction, height: u32, time: u32) -> bool {
    let lock = tx.lock_time.to_consensus_u32();
    if lock == 0 {
        return true;
    }
    let limit = if lock < LOCKTIME_THRESHOLD {
        height
    } else {
        time
    };
    if lock < limit {
        return true;
    }
    tx.input.iter().all(|i| i.sequence.0 == u32::MAX)
}

/// The lock a transaction's BIP68 relative locks impose: it can be in a block of height
/// `> min_height` whose parent has median time past `> min_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceLock {
    /// Last height at which it is not yet final (-1 = none).
    pub min_height: i64,
    /// Last median time past at which it is not yet final (-1 = none).
    pub min_time: i64,
}

/// Core's `CalculateSequenceLocks`. `coin_heights[i]` is the height of the block that created
/// input `i`'s coin (the next block's height for mempool coins), `mtp_at(h)` the median time
/// past of the best chain's block at height `h`.
pub fn sequence_locks(
    tx: &Transaction,
    coin_heights: &[u32],
    mtp_at: impl Fn(u32) -> i64,
) -> SequenceLock {
    let mut lock = SequenceLock {
        min_height: -1,
        min_time: -1,
    };
    if tx.version.0 < 2 {
        return lock;
    }
    for (input, &coin_height) in tx.input.iter().zip(coin_heights) {
        let seq = input.sequence.0;
        if seq & SEQUENCE_LOCKTIME_DISABLE_FLAG != 0 {
            continue;
        }
        let value = i64::from(seq & SEQUENCE_LOCKTIME_MASK);
        if seq & SEQUENCE_LOCKTIME_TYPE_FLAG != 0 {
            let coin_time = mtp_at(coin_height.saturating_sub(1));
            lock.min_time = lock
                .min_time
                .max(coin_time + (value << SEQUENCE_LOCKTIME_GRANULARITY) - 1);
        } else {
            lock.min_height = lock.min_height.max(i64::from(coin_height) + value - 1);
        }
    }
    lock
}

/// Core's `EvaluateSequenceLocks` for a block at `height` whose parent has median time past
/// `prev_mtp`.
pub fn sequence_lock_ok(lock: SequenceLock, height: u32, prev_mtp: u32) -> bool {
    lock.min_height < i64::from(height) && lock.min_time < i64::from(prev_mtp)
}

/// A coin as Core's UTXO set keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    /// The output.
    pub txout: TxOut,
    /// Height of the block that created it.
    pub height: u32,
    /// Whether a coinbase created it.
    pub coinbase: bool,
}

/// Core's `Consensus::CheckTxInputs` for a transaction to be included at `spend_height`;
/// returns the fee.
///
/// # Errors
/// `bad-txns-premature-spend-of-coinbase`, `bad-txns-inputvalues-outofrange`,
/// `bad-txns-in-belowout`, `bad-txns-fee-outofrange`.
pub fn check_tx_inputs(
    tx: &Transaction,
    coins: &[&Coin],
    spend_height: u32,
) -> Result<Amount, Reject> {
    let mut value_in: u64 = 0;
    for coin in coins {
        if coin.coinbase && spend_height.saturating_sub(coin.height) < COINBASE_MATURITY {
            return Err(Reject::rejected_with(
                "bad-txns-premature-spend-of-coinbase",
                format!(
                    "tried to spend coinbase at depth {}",
                    spend_height.saturating_sub(coin.height)
                ),
            ));
        }
        value_in = value_in.saturating_add(coin.txout.value.to_sat());
        if coin.txout.value.to_sat() > MAX_MONEY || value_in > MAX_MONEY {
            return Err(Reject::rejected("bad-txns-inputvalues-outofrange"));
        }
    }
    let value_out: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    if value_in < value_out {
        return Err(Reject::rejected_with(
            "bad-txns-in-belowout",
            format!(
                "value in ({}) < value out ({})",
                format_money(value_in),
                format_money(value_out)
            ),
        ));
    }
    Ok(Amount::from_sat(value_in - value_out))
}

/// Core's `FormatMoney`: at least 8 decimals trimmed to at least 2... Core keeps 8 digits.
pub fn format_money(sat: u64) -> String {
    format!("{}.{:08}", sat / 100_000_000, sat % 100_000_000)
}

/// Runs every input's script through Core's interpreter with `flags`.
///
/// # Errors
/// The index of the first failing input and the interpreter's error.
pub fn verify_scripts(
    tx: &Transaction,
    spent: &[TxOut],
    flags: u32,
) -> Result<(), (usize, bitcoinconsensus::Error)> {
    let bytes = serialize(tx);
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .map(|o| bitcoinconsensus::Utxo {
            script_pubkey: o.script_pubkey.as_bytes().as_ptr(),
            script_pubkey_len: o.script_pubkey.len() as u32,
            value: o.value.to_sat() as i64,
        })
        .collect();
    for (i, out) in spent.iter().enumerate() {
        bitcoinconsensus::verify_with_flags(
            out.script_pubkey.as_bytes(),
            out.value.to_sat(),
            &bytes,
            Some(&utxos),
            i,
            flags,
        )
        .map_err(|e| (i, e))?;
    }
    Ok(())
}

/// A best-effort text for a script failure, in the words of Core's `ScriptErrorString`
/// (`bitcoinconsensus` returns a verdict without the interpreter's error).
pub fn script_error_text(tx: &Transaction, index: usize, spent: &TxOut) -> String {
    let spk = &spent.script_pubkey;
    let input = &tx.input[index];
    let witness = &input.witness;
    let text = if spk.is_p2tr() {
        if witness.is_empty() {
            "Witness program was passed an empty witness"
        } else if witness.len() == 1 {
            match witness.nth(0).map_or(0, <[u8]>::len) {
                64 => "Invalid Schnorr signature",
                65 if witness.nth(0).is_some_and(|s| {
                    s[64] == 0 || s[64] > 0x83 || (0x04..0x81).contains(&s[64])
                }) =>
                {
                    "Invalid Schnorr signature hash type"
                }
                65 => "Invalid Schnorr signature",
                _ => "Invalid Schnorr signature size",
            }
        } else {
            "Script evaluated without error but finished with a false/empty top stack element"
        }
    } else if spk.is_p2wpkh() {
        if witness.len() != 2 {
            "Witness program hash mismatch"
        } else {
            "Signature must be zero for failed CHECK(MULTI)SIG operation"
        }
    } else if spk.is_p2wsh() {
        if witness.is_empty() {
            "Witness program was passed an empty witness"
        } else {
            "Script evaluated without error but finished with a false/empty top stack element"
        }
    } else if spk.is_p2pkh() || spk.is_p2pk() {
        "Signature must be zero for failed CHECK(MULTI)SIG operation"
    } else {
        "Script evaluated without error but finished with a false/empty top stack element"
    };
    text.to_owned()
}

/// Median of the last (up to) 11 block times.
pub fn median_time(times: &mut [u32]) -> u32 {
    times.sort_unstable();
    times[times.len() / 2]
}

/// The BIP34 coinbase `scriptSig` prefix for `height` (`CScript() << height`).
pub fn bip34_prefix(height: u32) -> ScriptBuf {
    bitcoin::script::Builder::new()
        .push_int(i64::from(height))
        .into_script()
}

/// The coinbase `scriptSig` Core's miner writes: `CScript() << height << OP_0`.
pub fn coinbase_script_sig(height: u32) -> ScriptBuf {
    bitcoin::script::Builder::new()
        .push_int(i64::from(height))
        .push_opcode(bitcoin::opcodes::OP_0)
        .into_script()
}

/// The witness commitment output script for `witness_root` with a zero reserved value.
pub fn witness_commitment_script(witness_root: WitnessMerkleNode) -> ScriptBuf {
    let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
    let mut data = PushBytesBuf::from([0xaa, 0x21, 0xa9, 0xed]);
    // 36 bytes always fit a push.
    let _ = data.extend_from_slice(commitment.as_byte_array());
    ScriptBuf::new_op_return(data)
}

/// Index of the witness commitment output of a coinbase (the last matching one), as Core's
/// `GetWitnessCommitmentIndex`.
pub fn witness_commitment_index(coinbase: &Transaction) -> Option<usize> {
    coinbase.output.iter().rposition(|o| {
        let b = o.script_pubkey.as_bytes();
        b.len() >= 38 && b[0..6] == [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed]
    })
}

/// Core's `CheckBlock` (context free): proof of work, merkle root, size, coinbase placement,
/// every transaction's `CheckTransaction`, legacy sigops. `txids` are the block's txids in
/// order.
///
/// # Errors
/// Core's reject reason (`high-hash`, `bad-txnmrklroot`, `bad-cb-missing`, ...).
pub fn check_block(block: &Block, txids: &[bitcoin::Txid]) -> Result<(), Reject> {
    check_pow(&block.header)?;
    let root = bitcoin::merkle_tree::calculate_root(txids.iter().map(|t| t.to_raw_hash()))
        .map(TxMerkleNode::from_raw_hash);
    if root != Some(block.header.merkle_root) {
        return Err(Reject::rejected_with(
            "bad-txnmrklroot",
            "hashMerkleRoot mismatch",
        ));
    }
    // Mutation (CVE-2012-2459): duplicate transactions.
    let mut seen = HashSet::with_capacity(txids.len());
    if !txids.iter().all(|t| seen.insert(*t)) {
        return Err(Reject::rejected_with(
            "bad-txns-duplicate",
            "duplicate transaction",
        ));
    }
    if block.txdata.is_empty() || block.txdata.len() * 4 > MAX_BLOCK_WEIGHT as usize {
        return Err(Reject::rejected_with(
            "bad-blk-length",
            "size limits failed",
        ));
    }
    let stripped: usize = 80
        + bitcoin::VarInt(block.txdata.len() as u64).size()
        + block.txdata.iter().map(|t| t.base_size()).sum::<usize>();
    if stripped * 4 > MAX_BLOCK_WEIGHT as usize {
        return Err(Reject::rejected_with(
            "bad-blk-length",
            "size limits failed",
        ));
    }
    if !block.txdata[0].is_coinbase() {
        return Err(Reject::rejected_with(
            "bad-cb-missing",
            "first tx is not coinbase",
        ));
    }
    if block.txdata[1..].iter().any(|t| t.is_coinbase()) {
        return Err(Reject::rejected_with(
            "bad-cb-multiple",
            "more than one coinbase",
        ));
    }
    let mut legacy_sigops = 0usize;
    for tx in &block.txdata {
        check_transaction(tx)?;
        legacy_sigops += legacy_sigop_count(tx);
    }
    if legacy_sigops * 4 > MAX_BLOCK_SIGOPS_COST {
        return Err(Reject::rejected_with(
            "bad-blk-sigops",
            "out-of-bounds SigOpCount",
        ));
    }
    Ok(())
}

/// Legacy (non-accurate) sigop count of scriptSigs and scriptPubKeys.
pub fn legacy_sigop_count(tx: &Transaction) -> usize {
    tx.input
        .iter()
        .map(|i| i.script_sig.count_sigops_legacy())
        .sum::<usize>()
        + tx.output
            .iter()
            .map(|o| o.script_pubkey.count_sigops_legacy())
            .sum::<usize>()
}

/// Checks that the header's hash meets its target and its bits are regtest's.
///
/// # Errors
/// `bad-diffbits`, `high-hash`.
pub fn check_pow(header: &Header) -> Result<(), Reject> {
    if header.bits != CompactTarget::from_consensus(POW_BITS) {
        return Err(Reject::rejected_with(
            "bad-diffbits",
            "incorrect proof of work",
        ));
    }
    header
        .validate_pow(header.target())
        .map(|_| ())
        .map_err(|_| Reject::rejected_with("high-hash", "proof of work failed"))
}

/// Core's witness checks of `ContextualCheckBlock`: a witness commitment matching the
/// transactions' witnesses when one is present, no witness data without one.
///
/// # Errors
/// `bad-witness-nonce-size`, `bad-witness-merkle-match`, `unexpected-witness`.
pub fn check_witness_commitment(
    block: &Block,
    wtxids: Option<&[bitcoin::Wtxid]>,
) -> Result<(), Reject> {
    let coinbase = &block.txdata[0];
    if let Some(idx) = witness_commitment_index(coinbase) {
        let witness = &coinbase.input[0].witness;
        if witness.len() != 1 || witness.nth(0).map(<[u8]>::len) != Some(32) {
            return Err(Reject::rejected_with(
                "bad-witness-nonce-size",
                "invalid witness reserved value size",
            ));
        }
        let reserved = witness.nth(0).unwrap_or(&[]);
        let root = match wtxids {
            Some(w) => witness_root_of(w),
            None => block
                .witness_root()
                .unwrap_or_else(WitnessMerkleNode::all_zeros),
        };
        let commitment = Block::compute_witness_commitment(&root, reserved);
        if coinbase.output[idx].script_pubkey.as_bytes()[6..38] != commitment[..] {
            return Err(Reject::rejected_with(
                "bad-witness-merkle-match",
                "witness merkle commitment mismatch",
            ));
        }
        return Ok(());
    }
    if block
        .txdata
        .iter()
        .any(|t| t.input.iter().any(|i| !i.witness.is_empty()))
    {
        return Err(Reject::rejected_with(
            "unexpected-witness",
            "unexpected witness data found",
        ));
    }
    Ok(())
}

/// The witness merkle root from the block's wtxids (the coinbase's counts as zero).
pub fn witness_root_of(wtxids: &[bitcoin::Wtxid]) -> WitnessMerkleNode {
    let hashes = wtxids.iter().enumerate().map(|(i, w)| {
        if i == 0 {
            bitcoin::hashes::sha256d::Hash::all_zeros()
        } else {
            w.to_raw_hash()
        }
    });
    bitcoin::merkle_tree::calculate_root(hashes)
        .map(WitnessMerkleNode::from_raw_hash)
        .unwrap_or_else(WitnessMerkleNode::all_zeros)
}

/// Whether a script begins with the BIP34 height push.
pub fn has_bip34_height(script_sig: &Script, height: u32) -> bool {
    let prefix = bip34_prefix(height);
    script_sig.as_bytes().starts_with(prefix.as_bytes())
}

/// Every script verification flag name Bitcoin Core knows (`mapFlagNames`).
pub const CORE_FLAG_NAMES: [&str; 21] = [
    "P2SH",
    "STRICTENC",
    "DERSIG",
    "LOW_S",
    "SIGPUSHONLY",
    "MINIMALDATA",
    "NULLDUMMY",
    "DISCOURAGE_UPGRADABLE_NOPS",
    "CLEANSTACK",
    "MINIMALIF",
    "NULLFAIL",
    "CHECKLOCKTIMEVERIFY",
    "CHECKSEQUENCEVERIFY",
    "WITNESS",
    "DISCOURAGE_UPGRADABLE_WITNESS_PROGRAM",
    "WITNESS_PUBKEYTYPE",
    "CONST_SCRIPTCODE",
    "TAPROOT",
    "DISCOURAGE_UPGRADABLE_PUBKEYTYPE",
    "DISCOURAGE_OP_SUCCESS",
    "DISCOURAGE_UPGRADABLE_TAPROOT_VERSION",
];

/// How a Core script flag name maps onto the interpreter this node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagMapping {
    /// A consensus flag `bitcoinconsensus` takes, with its bit.
    Consensus(u32),
    /// A policy-only flag of Core's mempool that `bitcoinconsensus` cannot apply.
    PolicyOnly,
    /// Not a flag name Core knows.
    Unknown,
}

/// Maps a Core script verification flag name (as in Core's test vectors) to this node's
/// interpreter flags.
pub fn map_script_flag(name: &str) -> FlagMapping {
    match name {
        "P2SH" => FlagMapping::Consensus(bitcoinconsensus::VERIFY_P2SH),
        "DERSIG" => FlagMapping::Consensus(bitcoinconsensus::VERIFY_DERSIG),
        "NULLDUMMY" => FlagMapping::Consensus(bitcoinconsensus::VERIFY_NULLDUMMY),
        "CHECKLOCKTIMEVERIFY" => {
            FlagMapping::Consensus(bitcoinconsensus::VERIFY_CHECKLOCKTIMEVERIFY)
        }
        "CHECKSEQUENCEVERIFY" => {
            FlagMapping::Consensus(bitcoinconsensus::VERIFY_CHECKSEQUENCEVERIFY)
        }
        "WITNESS" => FlagMapping::Consensus(bitcoinconsensus::VERIFY_WITNESS),
        "TAPROOT" => FlagMapping::Consensus(bitcoinconsensus::VERIFY_TAPROOT),
        n if CORE_FLAG_NAMES.contains(&n) => FlagMapping::PolicyOnly,
        _ => FlagMapping::Unknown,
    }
}
