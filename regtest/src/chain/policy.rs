//! Bitcoin Core's mempool policy: constants and the standardness checks that can be done
//! without running scripts (`IsStandardTx`, `AreInputsStandard`, `IsWitnessStandard`).

use bitcoin::script::Instruction;
use bitcoin::{Amount, FeeRate, Script, Transaction, TxOut};

use crate::chain::consensus::Coin;
use crate::types::Reject;

/// Core's `-mempoolexpiry` default (`DEFAULT_MEMPOOL_EXPIRY_HOURS`, 336 hours): an entry older
/// than this is evicted when the next transaction is accepted (`LimitMempoolSize`).
pub const MEMPOOL_EXPIRY_SECS: u64 = 336 * 3600;

/// Minimum relay fee rate: 0.1 sat/vB (100 sat/kvB), Core 30's default.
pub const MIN_RELAY_FEE: FeeRate = FeeRate::from_sat_per_kwu(25);
/// Minimum relay fee in sat per 1000 vB.
pub const MIN_RELAY_FEE_SAT_PER_KVB: u64 = 100;
/// Incremental relay fee in sat per 1000 vB (replacements pay this for their own size).
pub const INCREMENTAL_RELAY_FEE_SAT_PER_KVB: u64 = 100;
/// Dust relay fee in sat per 1000 vB.
pub const DUST_RELAY_FEE_SAT_PER_KVB: u64 = 3000;
/// Largest standard transaction weight.
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
/// Smallest standard transaction size without witness.
pub const MIN_STANDARD_TX_NONWITNESS_SIZE: usize = 65;
/// Largest standard scriptSig.
pub const MAX_STANDARD_SCRIPTSIG_SIZE: usize = 1650;
/// Largest standard sigops cost of a transaction.
pub const MAX_STANDARD_TX_SIGOPS_COST: usize = 16_000;
/// Largest sigops count of a standard P2SH redeem script.
pub const MAX_P2SH_SIGOPS: usize = 15;
/// Largest standard P2WSH witness script.
pub const MAX_STANDARD_P2WSH_SCRIPT_SIZE: usize = 3600;
/// Most standard P2WSH stack items (script excluded).
pub const MAX_STANDARD_P2WSH_STACK_ITEMS: usize = 100;
/// Largest standard P2WSH stack item.
pub const MAX_STANDARD_P2WSH_STACK_ITEM_SIZE: usize = 80;
/// Largest standard tapscript stack item.
pub const MAX_STANDARD_TAPSCRIPT_STACK_ITEM_SIZE: usize = 80;
/// Most transactions in a mempool cluster.
pub const CLUSTER_COUNT_LIMIT: usize = 64;
/// Largest virtual size of a mempool cluster.
pub const CLUSTER_SIZE_LIMIT_VB: u64 = 101_000;
/// Most distinct clusters a replacement may conflict with.
pub const MAX_REPLACEMENT_CANDIDATES: usize = 100;
/// Largest total size of OP_RETURN outputs (Core 30's `-datacarriersize` default).
pub const MAX_DATACARRIER_BYTES: usize = 100_000;
/// TRUC (version 3) limits.
pub const TRUC_MAX_VSIZE: u64 = 10_000;
/// TRUC child limit.
pub const TRUC_CHILD_MAX_VSIZE: u64 = 1_000;

/// Core's `CFeeRate::GetFee` for a fee rate in sat/kvB, rounded up.
pub fn fee_for(sat_per_kvb: u64, vsize: u64) -> Amount {
    Amount::from_sat((sat_per_kvb * vsize).div_ceil(1000))
}

/// Core's dust threshold at the dust relay fee.
pub fn dust_threshold(out: &TxOut) -> Amount {
    let spk = &out.script_pubkey;
    if spk.is_op_return() || spk.len() > 10_000 {
        return Amount::ZERO;
    }
    let mut size = bitcoin::consensus::encode::serialize(out).len() as u64;
    if spk.witness_version().is_some() {
        size += 32 + 4 + 1 + (107 / 4) + 4;
    } else {
        size += 32 + 4 + 1 + 107 + 4;
    }
    fee_for(DUST_RELAY_FEE_SAT_PER_KVB, size)
}

/// Output types Core's `Solver` recognizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    /// Anything else.
    NonStandard,
    /// Pay to public key.
    PubKey,
    /// Pay to public key hash.
    PubKeyHash,
    /// Pay to script hash.
    ScriptHash,
    /// Bare multisig `m`-of-`n`.
    Multisig(u8, u8),
    /// OP_RETURN followed by pushes only.
    NullData,
    /// Witness v0 key hash.
    WitnessV0KeyHash,
    /// Witness v0 script hash.
    WitnessV0ScriptHash,
    /// Taproot.
    WitnessV1Taproot,
    /// Pay to anchor.
    Anchor,
    /// A witness program of a version or length without meaning yet.
    WitnessUnknown,
}

/// Core's `Solver`, as far as standardness needs it.
pub fn solve(spk: &Script) -> OutputType {
    if spk.is_p2sh() {
        return OutputType::ScriptHash;
    }
    if let Some(version) = spk.witness_version() {
        let len = spk.len() - 2;
        return match (version.to_num(), len) {
            (0, 20) => OutputType::WitnessV0KeyHash,
            (0, 32) => OutputType::WitnessV0ScriptHash,
            (0, _) => OutputType::NonStandard,
            (1, 32) => OutputType::WitnessV1Taproot,
            (1, 2) if spk.as_bytes()[2..] == [0x4e, 0x73] => OutputType::Anchor,
            _ => OutputType::WitnessUnknown,
        };
    }
    if spk.is_op_return() {
        let rest = Script::from_bytes(&spk.as_bytes()[1..]);
        return if rest.is_push_only() {
            OutputType::NullData
        } else {
            OutputType::NonStandard
        };
    }
    if spk.is_p2pk() {
        return OutputType::PubKey;
    }
    if spk.is_p2pkh() {
        return OutputType::PubKeyHash;
    }
    if spk.is_multisig() {
        let b = spk.as_bytes();
        let m = b[0].wrapping_sub(0x50);
        let n = b[b.len() - 2].wrapping_sub(0x50);
        return OutputType::Multisig(m, n);
    }
    OutputType::NonStandard
}

/// Core's `IsStandardTx`.
///
/// # Errors
/// `version`, `tx-size`, `scriptsig-size`, `scriptsig-not-pushonly`, `scriptpubkey`,
/// `datacarrier`, `dust` (more than one dust output; one is checked with the fee later).
pub fn check_standard(tx: &Transaction) -> Result<(), Reject> {
    if !(1..=3).contains(&tx.version.0) {
        return Err(Reject::rejected("version"));
    }
    if tx.weight().to_wu() > MAX_STANDARD_TX_WEIGHT {
        return Err(Reject::rejected("tx-size"));
    }
    for input in &tx.input {
        if input.script_sig.len() > MAX_STANDARD_SCRIPTSIG_SIZE {
            return Err(Reject::rejected("scriptsig-size"));
        }
        if !input.script_sig.is_push_only() {
            return Err(Reject::rejected("scriptsig-not-pushonly"));
        }
    }
    let mut datacarrier_left = MAX_DATACARRIER_BYTES;
    for out in &tx.output {
        match solve(&out.script_pubkey) {
            OutputType::NonStandard => return Err(Reject::rejected("scriptpubkey")),
            OutputType::Multisig(m, n) if !(1..=3).contains(&n) || m < 1 || m > n => {
                return Err(Reject::rejected("scriptpubkey"))
            }
            OutputType::NullData => {
                let size = out.script_pubkey.len();
                if size > datacarrier_left {
                    return Err(Reject::rejected("datacarrier"));
                }
                datacarrier_left -= size;
            }
            _ => {}
        }
    }
    if dust_outputs(tx) > 1 {
        return Err(Reject::rejected("dust"));
    }
    Ok(())
}

/// Number of outputs below the dust threshold.
pub fn dust_outputs(tx: &Transaction) -> usize {
    tx.output
        .iter()
        .filter(|o| o.value < dust_threshold(o))
        .count()
}

/// Core's `ValidateInputsStandardness` (`AreInputsStandard`).
///
/// # Errors
/// `bad-txns-nonstandard-inputs` with Core's debug message.
pub fn check_inputs_standard(tx: &Transaction, coins: &[&Coin]) -> Result<(), Reject> {
    let mut legacy_sigops = 0usize;
    for (i, (input, coin)) in tx.input.iter().zip(coins).enumerate() {
        let spk = &coin.txout.script_pubkey;
        legacy_sigops += input.script_sig.count_sigops();
        legacy_sigops += accurate_p2sh_aware_sigops(spk, &input.script_sig);
        match solve(spk) {
            OutputType::NonStandard => {
                return Err(Reject::rejected_with(
                    "bad-txns-nonstandard-inputs",
                    format!("input {i} script unknown"),
                ))
            }
            OutputType::WitnessUnknown => {
                return Err(Reject::rejected_with(
                    "bad-txns-nonstandard-inputs",
                    format!("input {i} witness program is undefined"),
                ))
            }
            OutputType::ScriptHash => {
                let Some(redeem) = last_push(&input.script_sig) else {
                    return Err(Reject::rejected_with(
                        "bad-txns-nonstandard-inputs",
                        format!("input {i} P2SH redeemscript missing"),
                    ));
                };
                let count = Script::from_bytes(&redeem).count_sigops();
                if count > MAX_P2SH_SIGOPS {
                    return Err(Reject::rejected_with(
                        "bad-txns-nonstandard-inputs",
                        format!(
                            "p2sh redeemscript sigops exceed limit (input {i}: {count} > {MAX_P2SH_SIGOPS})"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    if legacy_sigops > 2500 {
        return Err(Reject::rejected_with(
            "bad-txns-nonstandard-inputs",
            "non-witness sigops exceed bip54 limit",
        ));
    }
    Ok(())
}

fn accurate_p2sh_aware_sigops(spk: &Script, script_sig: &Script) -> usize {
    if !spk.is_p2sh() {
        return spk.count_sigops();
    }
    last_push(script_sig).map_or(0, |r| Script::from_bytes(&r).count_sigops())
}

/// The last push of a push-only script (a P2SH redeem script), `None` when the script is not
/// push-only or empty.
pub fn last_push(script: &Script) -> Option<Vec<u8>> {
    let mut last = None;
    for ins in script.instructions() {
        match ins.ok()? {
            Instruction::PushBytes(p) => last = Some(p.as_bytes().to_vec()),
            Instruction::Op(op) => {
                let n = op.to_u8();
                // OP_0 / OP_1NEGATE / OP_1..OP_16 push numbers.
                if n == 0x4f || (0x51..=0x60).contains(&n) {
                    last = Some(vec![]);
                } else {
                    return None;
                }
            }
        }
    }
    last
}

/// Core's `IsWitnessStandard`.
pub fn witness_standard(tx: &Transaction, coins: &[&Coin]) -> bool {
    for (input, coin) in tx.input.iter().zip(coins) {
        if input.witness.is_empty() {
            continue;
        }
        let mut spk = coin.txout.script_pubkey.clone();
        let mut p2sh = false;
        if spk.is_p2anchor() {
            return false;
        }
        if spk.is_p2sh() {
            match last_push(&input.script_sig) {
                Some(r) => spk = bitcoin::ScriptBuf::from_bytes(r),
                None => return false,
            }
            p2sh = true;
        }
        let Some(version) = spk.witness_version() else {
            return false;
        };
        let program_len = spk.len() - 2;
        let stack: Vec<&[u8]> = input.witness.iter().collect();
        if version.to_num() == 0 && program_len == 32 {
            let Some(script) = stack.last() else {
                return false;
            };
            if script.len() > MAX_STANDARD_P2WSH_SCRIPT_SIZE {
                return false;
            }
            if stack.len() - 1 > MAX_STANDARD_P2WSH_STACK_ITEMS {
                return false;
            }
            if stack[..stack.len() - 1]
                .iter()
                .any(|i| i.len() > MAX_STANDARD_P2WSH_STACK_ITEM_SIZE)
            {
                return false;
            }
        }
        if version.to_num() == 1 && program_len == 32 && !p2sh {
            let mut items = stack.clone();
            if items.len() >= 2 && items.last().is_some_and(|a| a.first() == Some(&0x50)) {
                // An annex is not standard.
                return false;
            }
            if items.len() >= 2 {
                let control = items.pop().unwrap_or_default();
                items.pop(); // the script
                if control.is_empty() {
                    return false;
                }
                if control[0] & 0xfe == 0xc0
                    && items
                        .iter()
                        .any(|i| i.len() > MAX_STANDARD_TAPSCRIPT_STACK_ITEM_SIZE)
                {
                    return false;
                }
            }
        }
    }
    true
}

trait AnchorExt {
    fn is_p2anchor(&self) -> bool;
}

impl AnchorExt for bitcoin::ScriptBuf {
    fn is_p2anchor(&self) -> bool {
        self.as_bytes() == [0x51, 0x02, 0x4e, 0x73]
    }
}

/// Core's text for a signature with a high S value.
pub const ERR_SIG_HIGH_S: &str = "Non-canonical signature: S value is unnecessarily high";
/// Core's text for a signature that is not strict DER.
pub const ERR_SIG_DER: &str = "Non-canonical DER signature";
/// Core's text for an undefined sighash type.
pub const ERR_SIG_HASHTYPE: &str = "Signature hash type missing or not understood";
/// Core's text for a badly encoded public key.
pub const ERR_PUBKEYTYPE: &str = "Public key is neither compressed or uncompressed";
/// Core's text for an uncompressed key in segwit v0.
pub const ERR_WITNESS_PUBKEYTYPE: &str = "Using non-compressed keys in segwit";

/// The signature and key of a P2WPKH or P2PKH input, with whether it is segwit.
fn sig_and_key<'a>(
    input: &'a bitcoin::TxIn,
    spk: &Script,
    pushes: &'a mut Vec<Vec<u8>>,
) -> Option<(&'a [u8], &'a [u8], bool)> {
    if spk.is_p2wpkh() {
        if input.witness.len() != 2 {
            return None;
        }
        return Some((input.witness.nth(0)?, input.witness.nth(1)?, true));
    }
    if spk.is_p2pkh() {
        for ins in input.script_sig.instructions() {
            match ins.ok()? {
                Instruction::PushBytes(p) => pushes.push(p.as_bytes().to_vec()),
                Instruction::Op(_) => return None,
            }
        }
        if pushes.len() != 2 {
            return None;
        }
        return Some((&pushes[0], &pushes[1], false));
    }
    None
}

/// Core's ECDSA signature and key encoding rules of its standard script flags (DERSIG,
/// LOW_S, STRICTENC, WITNESS_PUBKEYTYPE) for P2WPKH and P2PKH inputs, the ones
/// `bitcoinconsensus` cannot apply. An empty signature is left to the interpreter.
///
/// # Errors
/// The index of the first offending input and Core's error text.
pub fn check_ecdsa_encodings(
    tx: &Transaction,
    spent: &[TxOut],
) -> Result<(), (usize, &'static str)> {
    use bitcoin::secp256k1::ecdsa::Signature;
    for (i, (input, out)) in tx.input.iter().zip(spent).enumerate() {
        let mut pushes = Vec::new();
        let Some((sig, key, segwit)) = sig_and_key(input, &out.script_pubkey, &mut pushes) else {
            continue;
        };
        if sig.is_empty() {
            continue;
        }
        let (der, hashtype) = sig.split_at(sig.len() - 1);
        let Ok(parsed) = Signature::from_der(der) else {
            return Err((i, ERR_SIG_DER));
        };
        let mut normalized = parsed;
        normalized.normalize_s();
        if normalized != parsed {
            return Err((i, ERR_SIG_HIGH_S));
        }
        let base = hashtype[0] & !0x80;
        if !(1..=3).contains(&base) {
            return Err((i, ERR_SIG_HASHTYPE));
        }
        let key_ok = match key.first() {
            Some(0x02 | 0x03) => key.len() == 33,
            Some(0x04) => key.len() == 65,
            _ => false,
        };
        if !key_ok {
            return Err((i, ERR_PUBKEYTYPE));
        }
        if segwit && key.len() != 33 {
            return Err((i, ERR_WITNESS_PUBKEYTYPE));
        }
    }
    Ok(())
}
