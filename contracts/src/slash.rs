//! What a judge checks before it signs a slash, and the carrier that passes a slash PSBT
//! between judges.
//!
//! A judge never signs what it is handed. It rebuilds the canonical slash of PROTOCOL.md
//! ("Party bond") itself with [`CompiledContract::expected_slash`], from the bond it already
//! holds, a live bond output read from its own chain view, and the victim, penalty and fee rate
//! it was given by the roster (or by its own command line), then requires the PSBT's unsigned
//! transaction to be identical ([`compare_unsigned`] names the first difference), and only then
//! signs its own rebuilt copy. [`CompiledContract::check_slash`] does all of that in one pure
//! call, so the toolkit command and a party daemon's judge share one check.
//!
//! # Carrier format, version 1 (frozen by `contracts/tests/slash.rs`)
//! One line of base64 (RFC 4648, with padding) of a BIP174 PSBT, then a newline. The PSBT's
//! global map holds one proprietary field, prefix `btcmpc`, subtype 1, empty key, whose value is
//! the single byte `0x01` (the carrier version). Input 0 carries what the builders put there
//! (`witness_utxo`, taproot leaf, key origins) and the judges' `tap_script_sigs`. Nothing in
//! the carrier is trusted: the bond, the outpoint's value and the slash terms come from the
//! judge, and signatures are kept only if they verify against the canonical transaction.
//! Version 0 (no version field, the bond's contract file under subtype 0) is refused.

use bitcoin::hashes::Hash;
use bitcoin::psbt::{raw::ProprietaryKey, Psbt};
use bitcoin::secp256k1::Message;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, Transaction};

use crate::keys::{encode_hex, secp};
use crate::spend::Utxo;
use crate::{CompiledContract, PathKind, SpendError};

/// The carrier version written and accepted.
pub const CARRIER_VERSION: u8 = 1;

/// The largest carrier accepted, in bytes of text (a one-input slash with 16 signatures is
/// under 3 KiB).
pub const MAX_CARRIER_LEN: usize = 64 * 1024;

/// What the judge itself fixes about a slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashTerms {
    /// The victim's output script.
    pub victim: ScriptBuf,
    /// The penalty; `None` slashes the whole bond (less the fee).
    pub penalty: Option<Amount>,
    /// The slash fee rate (the roster's, or the judge's own `--fee-rate`).
    pub fee_rate: FeeRate,
}

/// Where the money of a canonical slash goes, for display before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashSummary {
    /// The bond output spent.
    pub outpoint: OutPoint,
    /// Its value.
    pub bond: Amount,
    /// The victim's output script.
    pub victim: ScriptBuf,
    /// What the victim gets: `min(penalty, bond - fee)`.
    pub paid: Amount,
    /// What returns to the bond script (zero when there is no remainder output).
    pub remainder: Amount,
    /// The fee.
    pub fee: Amount,
}

/// The first difference between a transaction and the canonical slash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxDifference {
    /// The version.
    #[error("version is {got}, the canonical slash has {expected}")]
    Version {
        /// Canonical.
        expected: i32,
        /// Found.
        got: i32,
    },
    /// The nLockTime.
    #[error("nLockTime is {got}, the canonical slash has {expected}")]
    LockTime {
        /// Canonical.
        expected: u32,
        /// Found.
        got: u32,
    },
    /// The number of inputs.
    #[error("{got} input(s), the canonical slash has {expected}")]
    InputCount {
        /// Canonical.
        expected: usize,
        /// Found.
        got: usize,
    },
    /// An input's outpoint.
    #[error("input {index} spends {got}, the canonical slash spends {expected}")]
    Outpoint {
        /// The input.
        index: usize,
        /// Canonical.
        expected: OutPoint,
        /// Found.
        got: OutPoint,
    },
    /// An input's nSequence.
    #[error("input {index}: nSequence {got:#010x}, the canonical slash has {expected:#010x}")]
    Sequence {
        /// The input.
        index: usize,
        /// Canonical.
        expected: u32,
        /// Found.
        got: u32,
    },
    /// An unsigned input carrying a scriptSig or witness.
    #[error("input {index}: an unsigned transaction carries a scriptSig or witness")]
    InputData {
        /// The input.
        index: usize,
    },
    /// The number of outputs.
    #[error("{got} output(s), the canonical slash has {expected}")]
    OutputCount {
        /// Canonical.
        expected: usize,
        /// Found.
        got: usize,
    },
    /// An output's script.
    #[error("output {index} pays script {got}, the canonical slash pays {expected}")]
    OutputScript {
        /// The output.
        index: usize,
        /// Canonical, hex.
        expected: String,
        /// Found, hex.
        got: String,
    },
    /// An output's value.
    #[error("output {index} pays {got} sat, the canonical slash pays {expected} sat")]
    OutputValue {
        /// The output.
        index: usize,
        /// Canonical, sats.
        expected: u64,
        /// Found, sats.
        got: u64,
    },
}

/// Compare `got` with the `expected` unsigned transaction field by field; `Ok` only if they
/// are identical byte for byte (consensus encoding).
///
/// # Errors
/// The first [`TxDifference`], in the order version, nLockTime, inputs (count, outpoint,
/// nSequence, empty scriptSig and witness), outputs (count, script, value).
pub fn compare_unsigned(expected: &Transaction, got: &Transaction) -> Result<(), TxDifference> {
    if expected.version != got.version {
        return Err(TxDifference::Version {
            expected: expected.version.0,
            got: got.version.0,
        });
    }
    if expected.lock_time != got.lock_time {
        return Err(TxDifference::LockTime {
            expected: expected.lock_time.to_consensus_u32(),
            got: got.lock_time.to_consensus_u32(),
        });
    }
    if expected.input.len() != got.input.len() {
        return Err(TxDifference::InputCount {
            expected: expected.input.len(),
            got: got.input.len(),
        });
    }
    for (index, (e, g)) in expected.input.iter().zip(&got.input).enumerate() {
        if e.previous_output != g.previous_output {
            return Err(TxDifference::Outpoint {
                index,
                expected: e.previous_output,
                got: g.previous_output,
            });
        }
        if e.sequence != g.sequence {
            return Err(TxDifference::Sequence {
                index,
                expected: e.sequence.0,
                got: g.sequence.0,
            });
        }
        if e.script_sig != g.script_sig || e.witness != g.witness {
            return Err(TxDifference::InputData { index });
        }
    }
    if expected.output.len() != got.output.len() {
        return Err(TxDifference::OutputCount {
            expected: expected.output.len(),
            got: got.output.len(),
        });
    }
    for (index, (e, g)) in expected.output.iter().zip(&got.output).enumerate() {
        if e.script_pubkey != g.script_pubkey {
            return Err(TxDifference::OutputScript {
                index,
                expected: encode_hex(e.script_pubkey.as_bytes()),
                got: encode_hex(g.script_pubkey.as_bytes()),
            });
        }
        if e.value != g.value {
            return Err(TxDifference::OutputValue {
                index,
                expected: e.value.to_sat(),
                got: g.value.to_sat(),
            });
        }
    }
    // Every field is compared above; this is the byte-for-byte guarantee itself.
    debug_assert_eq!(
        bitcoin::consensus::serialize(expected),
        bitcoin::consensus::serialize(got)
    );
    Ok(())
}

impl CompiledContract {
    /// The canonical slash of this bond spending `live` on `terms`, unsigned, and where its
    /// money goes: [`CompiledContract::build_slash`] with the penalty defaulting to the whole
    /// bond.
    ///
    /// # Errors
    /// As [`CompiledContract::build_slash`].
    pub fn expected_slash(
        &self,
        live: &Utxo,
        terms: &SlashTerms,
    ) -> Result<(Psbt, SlashSummary), SpendError> {
        let penalty = terms.penalty.unwrap_or(live.txout.value);
        let (psbt, spend) =
            self.build_slash(live, terms.victim.clone(), penalty, terms.fee_rate)?;
        let out = &psbt.unsigned_tx.output;
        let summary = SlashSummary {
            outpoint: live.outpoint,
            bond: live.txout.value,
            victim: terms.victim.clone(),
            paid: out[0].value,
            remainder: out.get(1).map_or(Amount::ZERO, |o| o.value),
            fee: spend.fee,
        };
        Ok((psbt, summary))
    }

    /// Check a slash PSBT someone handed us against the canonical slash rebuilt from `terms`
    /// and the bond outputs `live` that our own chain view says are unspent.
    ///
    /// Returns our rebuilt PSBT, carrying only those judge signatures of `psbt` that verify
    /// against it (others are dropped), and where its money goes. Sign the returned PSBT, never
    /// the one handed in.
    ///
    /// # Errors
    /// [`SpendError::NotLiveOutput`] when the PSBT's input is none of `live`;
    /// [`SpendError::NotCanonical`] naming the first difference from the rebuilt slash;
    /// [`SpendError::PrevoutMismatch`] when its `witness_utxo` disagrees with our chain view;
    /// as [`CompiledContract::build_slash`] otherwise.
    pub fn check_slash(
        &self,
        live: &[Utxo],
        terms: &SlashTerms,
        psbt: &Psbt,
    ) -> Result<(Psbt, SlashSummary), SpendError> {
        let got = &psbt.unsigned_tx;
        let Some(first) = got.input.first() else {
            return Err(SpendError::NotCanonical(TxDifference::InputCount {
                expected: 1,
                got: 0,
            }));
        };
        let utxo = live
            .iter()
            .find(|u| u.outpoint == first.previous_output)
            .ok_or_else(|| SpendError::NotLiveOutput {
                outpoint: first.previous_output,
                live: if live.is_empty() {
                    "none".to_owned()
                } else {
                    live.iter()
                        .map(|u| u.outpoint.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })?;
        let (mut ours, summary) = self.expected_slash(utxo, terms)?;
        compare_unsigned(&ours.unsigned_tx, got).map_err(SpendError::NotCanonical)?;
        if let Some(claimed) = psbt.inputs.first().and_then(|i| i.witness_utxo.as_ref()) {
            if *claimed != utxo.txout {
                return Err(SpendError::PrevoutMismatch {
                    outpoint: utxo.outpoint,
                    claimed: claimed.value,
                    chain: utxo.txout.value,
                });
            }
        }
        let kept = copy_valid_judge_signatures(self, &mut ours, psbt, utxo)?;
        tracing::debug!(target: "btcmpc_contracts::slash", kept, "slash PSBT matches the canonical slash");
        Ok((ours, summary))
    }
}

/// Copy into `ours` the slash-leaf signatures of `theirs` by the bond's judges that verify
/// against `ours`; returns how many were kept.
fn copy_valid_judge_signatures(
    contract: &CompiledContract,
    ours: &mut Psbt,
    theirs: &Psbt,
    utxo: &Utxo,
) -> Result<usize, SpendError> {
    let path = contract
        .path(PathKind::Slash)
        .ok_or(SpendError::NoSuchPath {
            kind: contract.contract().kind(),
            path: PathKind::Slash.name(),
        })?;
    let Some(leaf) = &path.leaf else {
        return Ok(0);
    };
    let Some(input) = theirs.inputs.first() else {
        return Ok(0);
    };
    let spent = [utxo.txout.clone()];
    let sighash = SighashCache::new(&ours.unsigned_tx)
        .taproot_script_spend_signature_hash(
            0,
            &Prevouts::All(&spent),
            leaf.leaf_hash,
            TapSighashType::Default,
        )
        .map_err(|e| SpendError::Sighash {
            index: 0,
            reason: e.to_string(),
        })?;
    let msg = Message::from_digest(sighash.to_byte_array());
    let mut kept = 0;
    for ((key, leaf_hash), sig) in &input.tap_script_sigs {
        let valid = *leaf_hash == leaf.leaf_hash
            && path.signers.contains(key)
            && sig.sighash_type == TapSighashType::Default
            && secp().verify_schnorr(&sig.signature, &msg, key).is_ok();
        if valid {
            ours.inputs[0]
                .tap_script_sigs
                .insert((*key, *leaf_hash), *sig);
            kept += 1;
        } else {
            tracing::warn!(target: "btcmpc_contracts::slash", %key, "dropped a signature that does not sign the canonical slash");
        }
    }
    Ok(kept)
}

fn version_key() -> ProprietaryKey {
    ProprietaryKey {
        prefix: b"btcmpc".to_vec(),
        subtype: 1,
        key: Vec::new(),
    }
}

/// Encode a slash PSBT as a version-1 carrier (see the module docs): base64 and a newline.
pub fn encode_carrier(psbt: &Psbt) -> String {
    let mut psbt = psbt.clone();
    psbt.proprietary.retain(|k, _| k.prefix != b"btcmpc");
    psbt.proprietary
        .insert(version_key(), vec![CARRIER_VERSION]);
    format!("{psbt}\n")
}

/// Decode a carrier written by [`encode_carrier`].
///
/// # Errors
/// [`SpendError::Carrier`] for text over [`MAX_CARRIER_LEN`], bad base64 or PSBT, a missing
/// version field (version 0) or another version.
pub fn decode_carrier(text: &str) -> Result<Psbt, SpendError> {
    let bad = |reason: String| SpendError::Carrier { reason };
    if text.len() > MAX_CARRIER_LEN {
        return Err(bad(format!(
            "{} bytes is more than the {MAX_CARRIER_LEN} a slash carrier may have",
            text.len()
        )));
    }
    let psbt: Psbt = text
        .trim()
        .parse()
        .map_err(|e| bad(format!("not a base64 PSBT: {e}")))?;
    match psbt.proprietary.get(&version_key()).map(Vec::as_slice) {
        Some([CARRIER_VERSION]) => Ok(psbt),
        Some(v) => Err(bad(format!(
            "carrier version {} is not the supported {CARRIER_VERSION}",
            encode_hex(v)
        ))),
        None => Err(bad(format!(
            "no btcmpc carrier version field (a version-0 file?); this build reads version {CARRIER_VERSION}"
        ))),
    }
}
