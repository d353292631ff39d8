//! Transaction builders for every spend path, PSBT signing, and finalization.
//!
//! A builder returns a PSBT whose contract input carries everything a signer and the
//! Miniscript finalizer need: `witness_utxo`, `tap_internal_key`, `tap_merkle_root`, the
//! leaf in `tap_scripts`, the leaf's keys in `tap_key_origins` (with an empty key source: the
//! wallet that derived the key may fill in its own), and the preimage for a claim. Signing and
//! finalizing are per input, so contract inputs can sit in one PSBT beside ordinary wallet
//! inputs that the wallet signs and finalizes itself.

use std::collections::BTreeMap;

use bitcoin::absolute::LockTime;
use bitcoin::bip32::{DerivationPath, Fingerprint};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::psbt::{Input, Psbt};
use bitcoin::secp256k1::{Keypair, Message, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::LeafVersion;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, FeeRate, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Weight, Witness,
};
use miniscript::psbt::PsbtInputSatisfier;

use crate::contract::tweak_keypair;
use crate::keys::{encode_hex, secp};
use crate::verify::verify_with_paths;
use crate::{CompiledContract, Contract, PathKind, SpendError, SpendPath};

/// The largest record an anchor's `OP_RETURN` output carries (Core's standard 83-byte script).
pub const MAX_RECORD_LEN: usize = 80;

/// An output being spent: where it is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utxo {
    /// The outpoint.
    pub outpoint: OutPoint,
    /// The output.
    pub txout: TxOut,
}

/// An ordinary wallet input added to pay a spend's fee (anchor extensions: the anchor itself
/// is dust-sized). The wallet signs and finalizes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeInput {
    /// The wallet output.
    pub utxo: Utxo,
    /// Its witness size in weight units including the stack-item count (Miniscript's
    /// `max_weight_to_satisfy() + 1`; 67 for a BIP86 key spend).
    pub satisfaction_weight: Weight,
}

/// Wallet inputs paying a spend's fee, and where their change goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funding {
    /// The inputs.
    pub inputs: Vec<FeeInput>,
    /// The change output's script.
    pub change: ScriptBuf,
}

/// What a built spend pays, for display and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendSummary {
    /// The fee.
    pub fee: Amount,
    /// The estimated weight of the signed transaction.
    pub weight: Weight,
}

/// Weight of the signed segwit transaction `tx` (built without witnesses) will have once its
/// inputs carry `witness` weight units of witness in total (each input's satisfaction weight
/// with its stack-item count, e.g. [`FeeInput::satisfaction_weight`]): the one estimate every
/// fee of a spend we build is computed from.
pub fn estimated_weight(tx: &Transaction, witness: Weight) -> Weight {
    // `tx` has no witness yet, so its weight is 4 x its legacy size; the segwit marker and
    // flag add 2 weight units.
    tx.weight() + Weight::from_wu(2) + witness
}

fn fee_for(fee_rate: FeeRate, weight: Weight) -> Result<Amount, SpendError> {
    fee_rate.fee_wu(weight).ok_or(SpendError::FeeOverflow {
        fee_rate: fee_rate.to_sat_per_kwu(),
        weight: weight.to_wu(),
    })
}

fn check_dust(output: usize, name: &'static str, out: &TxOut) -> Result<(), SpendError> {
    let min = out.script_pubkey.minimal_non_dust();
    if out.value < min {
        return Err(SpendError::Dust {
            output,
            name,
            value: out.value,
            min,
        });
    }
    Ok(())
}

fn unsigned_tx(inputs: &[&Utxo], outputs: Vec<TxOut>, lock_time: LockTime) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time,
        input: inputs
            .iter()
            .map(|u| TxIn {
                previous_output: u.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs,
    }
}

impl CompiledContract {
    fn require(&self, kind: PathKind) -> Result<&SpendPath, SpendError> {
        self.path(kind).ok_or(SpendError::NoSuchPath {
            kind: self.contract().kind(),
            path: kind.name(),
        })
    }

    fn check_utxo(&self, utxo: &Utxo) -> Result<(), SpendError> {
        if utxo.txout.script_pubkey != *self.script_pubkey() {
            return Err(SpendError::ScriptMismatch {
                index: 0,
                found: encode_hex(utxo.txout.script_pubkey.as_bytes()),
                expected: encode_hex(self.script_pubkey().as_bytes()),
            });
        }
        Ok(())
    }

    /// The PSBT input data for spending `utxo` on `path`.
    /// The PSBT of `tx`, whose input 0 spends the contract output `utxo` along `path`.
    fn contract_psbt(&self, tx: Transaction, path: &SpendPath, utxo: &Utxo) -> Psbt {
        let mut psbt = Psbt::from_unsigned_tx(tx).expect("the transaction has empty witnesses");
        psbt.inputs[0] = self.psbt_input(path, utxo);
        psbt
    }

    fn psbt_input(&self, path: &SpendPath, utxo: &Utxo) -> Input {
        let mut input = Input {
            witness_utxo: Some(utxo.txout.clone()),
            tap_internal_key: Some(self.internal_key()),
            tap_merkle_root: self.merkle_root(),
            ..Input::default()
        };
        let origin = (Fingerprint::default(), DerivationPath::master());
        match &path.leaf {
            Some(leaf) => {
                input.tap_scripts.insert(
                    leaf.control_block.clone(),
                    (leaf.script.clone(), LeafVersion::TapScript),
                );
                for key in &path.signers {
                    input
                        .tap_key_origins
                        .insert(*key, (vec![leaf.leaf_hash], origin.clone()));
                }
            }
            None => {
                input
                    .tap_key_origins
                    .insert(self.internal_key(), (Vec::new(), origin));
            }
        }
        input
    }

    /// A one-input spend of `utxo` on `path` paying everything but the fee to `to`.
    fn sweep(
        &self,
        kind: PathKind,
        utxo: &Utxo,
        to: ScriptBuf,
        fee_rate: FeeRate,
        lock_time: LockTime,
    ) -> Result<(Psbt, SpendSummary), SpendError> {
        let path = self.require(kind)?;
        self.check_utxo(utxo)?;
        let mut tx = unsigned_tx(
            &[utxo],
            vec![TxOut {
                value: Amount::ZERO,
                script_pubkey: to,
            }],
            lock_time,
        );
        let weight = estimated_weight(&tx, path.witness_weight);
        let fee = fee_for(fee_rate, weight)?;
        let value = utxo
            .txout
            .value
            .checked_sub(fee)
            .ok_or(SpendError::InsufficientFunds {
                available: utxo.txout.value,
                fee,
            })?;
        tx.output[0].value = value;
        check_dust(0, kind.name(), &tx.output[0])?;
        let psbt = self.contract_psbt(tx, path, utxo);
        Ok((psbt, SpendSummary { fee, weight }))
    }

    /// Build an escrow claim: the receiver spends `utxo` to `to` with `preimage`, valid at any
    /// height (nLockTime 0, nSequence 0xfffffffd so it can be fee-bumped).
    ///
    /// # Errors
    /// [`SpendError::WrongPreimage`] if `sha256(preimage)` is not the contract's hash;
    /// [`SpendError::NoSuchPath`] on a contract without a claim; [`SpendError::ScriptMismatch`],
    /// [`SpendError::InsufficientFunds`], [`SpendError::Dust`] for a bad amount.
    pub fn build_claim(
        &self,
        utxo: &Utxo,
        preimage: &[u8; 32],
        to: ScriptBuf,
        fee_rate: FeeRate,
    ) -> Result<(Psbt, SpendSummary), SpendError> {
        let want = self.require(PathKind::Claim)?.hash;
        let got = sha256::Hash::hash(preimage);
        if let Some(want) = want.filter(|w| *w != got) {
            return Err(SpendError::WrongPreimage {
                got: got.to_string(),
                want: want.to_string(),
            });
        }
        let (mut psbt, summary) =
            self.sweep(PathKind::Claim, utxo, to, fee_rate, LockTime::ZERO)?;
        psbt.inputs[0]
            .sha256_preimages
            .insert(got, preimage.to_vec());
        Ok((psbt, summary))
    }

    /// Build an escrow refund: the sender spends `utxo` to `to`, nLockTime = the timeout.
    ///
    /// # Errors
    /// As [`CompiledContract::build_claim`], but no preimage check.
    pub fn build_refund(
        &self,
        utxo: &Utxo,
        to: ScriptBuf,
        fee_rate: FeeRate,
    ) -> Result<(Psbt, SpendSummary), SpendError> {
        let lock = self.lock_of(PathKind::Refund)?;
        self.sweep(PathKind::Refund, utxo, to, fee_rate, lock)
    }

    /// Build a bond exit: the party spends `utxo` to `to`, nLockTime = the exit height.
    ///
    /// # Errors
    /// As [`CompiledContract::build_refund`].
    pub fn build_exit(
        &self,
        utxo: &Utxo,
        to: ScriptBuf,
        fee_rate: FeeRate,
    ) -> Result<(Psbt, SpendSummary), SpendError> {
        let lock = self.lock_of(PathKind::Exit)?;
        self.sweep(PathKind::Exit, utxo, to, fee_rate, lock)
    }

    fn lock_of(&self, kind: PathKind) -> Result<LockTime, SpendError> {
        Ok(self
            .require(kind)?
            .after
            .map(|h| h.lock_time())
            .unwrap_or(LockTime::ZERO))
    }

    /// Build the canonical slash of a bond (PROTOCOL.md, "Party bond"): the bond outpoint is
    /// the only input; output 0 pays the victim `min(penalty, bond - fee)`; output 1 returns the
    /// rest to the same bond script when that rest is at least its dust limit at the
    /// two-output fee (otherwise there is no output 1 and the rest goes to the miners);
    /// version 2, nLockTime 0, nSequence 0xfffffffd; fee from `fee_rate` and the `multi_a`
    /// leaf's satisfaction weight. Every judge who builds it from the same values gets the same
    /// transaction, so judges can sign copies in any order and [`combine`] them.
    ///
    /// # Errors
    /// [`SpendError::ZeroPenalty`]; [`SpendError::Dust`] when the victim's output would be
    /// dust; [`SpendError::InsufficientFunds`] when the bond does not cover the fee; as
    /// [`CompiledContract::build_refund`] otherwise.
    pub fn build_slash(
        &self,
        utxo: &Utxo,
        victim: ScriptBuf,
        penalty: Amount,
        fee_rate: FeeRate,
    ) -> Result<(Psbt, SpendSummary), SpendError> {
        let path = self.require(PathKind::Slash)?;
        self.check_utxo(utxo)?;
        if penalty == Amount::ZERO {
            return Err(SpendError::ZeroPenalty);
        }
        let bond = utxo.txout.value;
        let victim_out = TxOut {
            value: Amount::ZERO,
            script_pubkey: victim,
        };
        let rest_out = TxOut {
            value: Amount::ZERO,
            script_pubkey: self.script_pubkey().clone(),
        };
        let mut tx = unsigned_tx(
            &[utxo],
            vec![victim_out.clone(), rest_out.clone()],
            LockTime::ZERO,
        );
        let weight2 = estimated_weight(&tx, path.witness_weight);
        let fee2 = fee_for(fee_rate, weight2)?;
        let split = bond.checked_sub(fee2).map(|after_fee| {
            let paid = penalty.min(after_fee);
            (paid, after_fee - paid)
        });
        let weight = match split {
            Some((paid, rest)) if rest >= rest_out.script_pubkey.minimal_non_dust() => {
                tx.output[0].value = paid;
                tx.output[1].value = rest;
                weight2
            }
            _ => {
                tx.output.truncate(1);
                let weight1 = estimated_weight(&tx, path.witness_weight);
                let fee1 = fee_for(fee_rate, weight1)?;
                let after_fee = bond
                    .checked_sub(fee1)
                    .ok_or(SpendError::InsufficientFunds {
                        available: bond,
                        fee: fee1,
                    })?;
                tx.output[0].value = penalty.min(after_fee);
                weight1
            }
        };
        check_dust(0, "victim", &tx.output[0])?;
        let fee = bond - tx.output.iter().map(|o| o.value).sum::<Amount>();
        let psbt = self.contract_psbt(tx, path, utxo);
        Ok((psbt, SpendSummary { fee, weight }))
    }

    /// Build an anchor extension: spend the anchor `utxo` on its key path into output 0, a new
    /// output to the same anchor script, and output 1, an `OP_RETURN` carrying `record`
    /// (at most 80 bytes). Without `funding` the anchor's own value pays the fee (the new
    /// anchor gets the rest); with it, the new anchor keeps the old value, the wallet inputs
    /// pay the fee and output 2 returns their change.
    ///
    /// # Errors
    /// [`SpendError::RecordTooLong`]; [`SpendError::Dust`] for the anchor or the change;
    /// [`SpendError::InsufficientFunds`]; as [`CompiledContract::build_refund`] otherwise.
    pub fn build_anchor_extend(
        &self,
        utxo: &Utxo,
        record: &[u8],
        fee_rate: FeeRate,
        funding: Option<&Funding>,
    ) -> Result<(Psbt, SpendSummary), SpendError> {
        let path = self.require(PathKind::KeyPath)?;
        self.check_utxo(utxo)?;
        if record.len() > MAX_RECORD_LEN {
            return Err(SpendError::RecordTooLong { len: record.len() });
        }
        let push = bitcoin::script::PushBytesBuf::try_from(record.to_vec())
            .expect("80 bytes always fit a push");
        let record_out = TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::new_op_return(push),
        };
        let anchor_out = TxOut {
            value: utxo.txout.value,
            script_pubkey: self.script_pubkey().clone(),
        };
        let mut inputs = vec![utxo];
        let mut witness = path.witness_weight;
        let mut outputs = vec![anchor_out, record_out];
        if let Some(f) = funding {
            inputs.extend(f.inputs.iter().map(|i| &i.utxo));
            witness += f
                .inputs
                .iter()
                .map(|i| i.satisfaction_weight)
                .sum::<Weight>();
            outputs.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: f.change.clone(),
            });
        }
        let mut tx = unsigned_tx(&inputs, outputs, LockTime::ZERO);
        let weight = estimated_weight(&tx, witness);
        let fee = fee_for(fee_rate, weight)?;
        match funding {
            None => {
                tx.output[0].value =
                    utxo.txout
                        .value
                        .checked_sub(fee)
                        .ok_or(SpendError::InsufficientFunds {
                            available: utxo.txout.value,
                            fee,
                        })?;
                check_dust(0, "anchor", &tx.output[0])?;
            }
            Some(f) => {
                check_dust(0, "anchor", &tx.output[0])?;
                let available = f.inputs.iter().map(|i| i.utxo.txout.value).sum::<Amount>();
                tx.output[2].value = available
                    .checked_sub(fee)
                    .ok_or(SpendError::InsufficientFunds { available, fee })?;
                check_dust(2, "change", &tx.output[2])?;
            }
        }
        let mut psbt = self.contract_psbt(tx, path, utxo);
        if let Some(f) = funding {
            for (slot, fi) in psbt.inputs[1..].iter_mut().zip(&f.inputs) {
                slot.witness_utxo = Some(fi.utxo.txout.clone());
            }
        }
        Ok((psbt, SpendSummary { fee, weight }))
    }
}

fn prevouts(psbt: &Psbt) -> Result<Vec<TxOut>, SpendError> {
    psbt.inputs
        .iter()
        .enumerate()
        .map(|(index, i)| {
            i.witness_utxo
                .clone()
                .ok_or(SpendError::MissingUtxo { index })
        })
        .collect()
}

/// Sign input `index` of `psbt` with `keypair` wherever the key can sign: the key path when
/// it is the input's internal key (tweaked by the merkle root as BIP341 says), and every leaf
/// `tap_key_origins` lists for it. Signatures use `SIGHASH_DEFAULT`. Other inputs (wallet
/// inputs included) are left alone, but every input needs its `witness_utxo`: taproot
/// signatures commit to all spent outputs.
///
/// Returns the number of signatures added.
///
/// # Errors
/// [`SpendError::NoSuchInput`]; [`SpendError::MissingUtxo`] naming an input without
/// `witness_utxo`; [`SpendError::KeyNotInInput`] when the key signs nothing in this input.
pub fn sign_input(psbt: &mut Psbt, index: usize, keypair: &Keypair) -> Result<usize, SpendError> {
    let inputs = psbt.inputs.len();
    if index >= inputs {
        return Err(SpendError::NoSuchInput { index, inputs });
    }
    let spent = prevouts(psbt)?;
    let prevouts = Prevouts::All(&spent);
    let mut cache = SighashCache::new(&psbt.unsigned_tx);
    let (x_only, _) = keypair.x_only_public_key();
    let input = &psbt.inputs[index];
    let sighash_err = |e: &dyn std::fmt::Display| SpendError::Sighash {
        index,
        reason: e.to_string(),
    };
    let mut key_sig = None;
    let mut script_sigs = Vec::new();
    if input.tap_internal_key == Some(x_only) {
        let tweaked = tweak_keypair(keypair, input.tap_merkle_root);
        let sighash = cache
            .taproot_key_spend_signature_hash(index, &prevouts, TapSighashType::Default)
            .map_err(|e| sighash_err(&e))?;
        let msg = Message::from_digest(sighash.to_byte_array());
        key_sig = Some(secp().sign_schnorr_no_aux_rand(&msg, &tweaked));
    }
    if let Some((leaves, _)) = input.tap_key_origins.get(&x_only) {
        for leaf in leaves {
            let sighash = cache
                .taproot_script_spend_signature_hash(
                    index,
                    &prevouts,
                    *leaf,
                    TapSighashType::Default,
                )
                .map_err(|e| sighash_err(&e))?;
            let msg = Message::from_digest(sighash.to_byte_array());
            script_sigs.push((*leaf, secp().sign_schnorr_no_aux_rand(&msg, keypair)));
        }
    }
    let input = &mut psbt.inputs[index];
    let mut added = 0;
    if let Some(signature) = key_sig {
        input.tap_key_sig = Some(bitcoin::taproot::Signature {
            signature,
            sighash_type: TapSighashType::Default,
        });
        added += 1;
    }
    for (leaf, signature) in script_sigs {
        input.tap_script_sigs.insert(
            (x_only, leaf),
            bitcoin::taproot::Signature {
                signature,
                sighash_type: TapSighashType::Default,
            },
        );
        added += 1;
    }
    if added == 0 {
        return Err(SpendError::KeyNotInInput {
            index,
            key: x_only.to_string(),
        });
    }
    Ok(added)
}

/// [`sign_input`] with a secret key.
///
/// # Errors
/// As [`sign_input`].
pub fn sign_input_with_secret_key(
    psbt: &mut Psbt,
    index: usize,
    secret_key: &SecretKey,
) -> Result<usize, SpendError> {
    sign_input(psbt, index, &Keypair::from_secret_key(secp(), secret_key))
}

/// Merge the signatures of `other` into `psbt` (judges sign copies of the same canonical
/// slash in any order).
///
/// # Errors
/// [`SpendError::Combine`] when the two PSBTs are not for the same transaction.
pub fn combine(psbt: &mut Psbt, other: Psbt) -> Result<(), SpendError> {
    psbt.combine(other).map_err(|e| SpendError::Combine {
        reason: e.to_string(),
    })
}

/// Finalize the contract input `index` of `psbt` with rust-miniscript's PSBT satisfier on the
/// contract's descriptor: the cheapest path whose signatures, preimage and timelock the PSBT
/// satisfies (checked against the PSBT's own nLockTime and nSequence). The finalizer's own
/// interpreter pass is not run; [`finalize_and_verify`] runs Bitcoin Core's instead.
///
/// Returns the path taken.
///
/// # Errors
/// [`SpendError::NoSuchInput`], [`SpendError::MissingUtxo`], [`SpendError::ScriptMismatch`]
/// (the input does not spend this contract), [`SpendError::Unsatisfied`] saying, path by
/// path, what is missing (signatures, the preimage, or an nLockTime before the path's height).
pub fn finalize_input(
    psbt: &mut Psbt,
    index: usize,
    contract: &CompiledContract,
) -> Result<PathKind, SpendError> {
    let inputs = psbt.inputs.len();
    if index >= inputs {
        return Err(SpendError::NoSuchInput { index, inputs });
    }
    let input = &psbt.inputs[index];
    let utxo = input
        .witness_utxo
        .clone()
        .ok_or(SpendError::MissingUtxo { index })?;
    if utxo.script_pubkey != *contract.script_pubkey() {
        return Err(SpendError::ScriptMismatch {
            index,
            found: encode_hex(utxo.script_pubkey.as_bytes()),
            expected: encode_hex(contract.script_pubkey().as_bytes()),
        });
    }
    // A key-path signature on a contract without a key path (an unspendable internal key)
    // can only be junk from whoever made the PSBT; the satisfier would prefer it to every
    // leaf, so set it aside while satisfying.
    let stray = if contract.path(PathKind::KeyPath).is_none() {
        psbt.inputs[index].tap_key_sig.take()
    } else {
        None
    };
    let satisfier = PsbtInputSatisfier::new(psbt, index);
    let satisfied = contract.descriptor().get_satisfaction(satisfier);
    let (stack, _script_sig) = match satisfied {
        Ok(s) => s,
        Err(e) => {
            let missing = diagnose(psbt, index, contract).unwrap_or_else(|| e.to_string());
            psbt.inputs[index].tap_key_sig = stray;
            return Err(SpendError::Unsatisfied { index, missing });
        }
    };
    let witness = Witness::from_slice(&stack);
    let Some(path) = contract.path_of_witness(&witness) else {
        psbt.inputs[index].tap_key_sig = stray;
        return Err(SpendError::Unsatisfied {
            index,
            missing: "the satisfaction matches no spend path of the contract".to_owned(),
        });
    };
    let old = std::mem::take(&mut psbt.inputs[index]);
    psbt.inputs[index] = Input {
        witness_utxo: old.witness_utxo,
        non_witness_utxo: old.non_witness_utxo,
        final_script_witness: Some(witness),
        unknown: old.unknown,
        proprietary: old.proprietary,
        ..Input::default()
    };
    Ok(path)
}

/// Say, path by path, why input `index` satisfies no path.
fn diagnose(psbt: &Psbt, index: usize, contract: &CompiledContract) -> Option<String> {
    let input = &psbt.inputs[index];
    let tx = &psbt.unsigned_tx;
    let mut parts = Vec::new();
    for path in contract.spend_paths() {
        let mut missing = Vec::new();
        match &path.leaf {
            None => {
                if input.tap_key_sig.is_none() {
                    missing.push("no key-path signature".to_owned());
                }
            }
            Some(leaf) => {
                let have = path
                    .signers
                    .iter()
                    .filter(|k| input.tap_script_sigs.contains_key(&(**k, leaf.leaf_hash)))
                    .count();
                if have < path.threshold {
                    missing.push(format!("{have} of {} signatures", path.threshold));
                }
            }
        }
        if let Some(hash) = path.hash {
            match input.sha256_preimages.get(&hash) {
                None => missing.push("no preimage".to_owned()),
                Some(p) if p.len() != 32 => missing.push("preimage is not 32 bytes".to_owned()),
                Some(_) => {}
            }
        }
        if let Some(after) = path.after {
            if !tx.input[index].enables_lock_time() {
                missing.push(format!(
                    "nSequence {} disables nLockTime",
                    tx.input[index].sequence
                ));
            }
            let ok =
                tx.lock_time.is_block_height() && tx.lock_time.to_consensus_u32() >= after.to_u32();
            if !ok {
                missing.push(format!(
                    "nLockTime {} is before height {after}",
                    tx.lock_time.to_consensus_u32()
                ));
            }
        }
        if !missing.is_empty() {
            parts.push(format!("{}: {}", path.kind, missing.join(", ")));
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Finalize the contract inputs `contracts` (input index, its contract) of `psbt`, then
/// require every input to be final (finalize wallet inputs first, with the wallet), extract the
/// transaction and run it through Bitcoin Core's script interpreter with all spent outputs.
/// A transaction is returned only if the interpreter accepts every input.
///
/// # Errors
/// As [`finalize_input`]; [`SpendError::NotFinalized`] for an input left unfinalized;
/// [`SpendError::MissingUtxo`]; [`SpendError::Verify`] naming the input, its path and the
/// interpreter's error code.
pub fn finalize_and_verify(
    mut psbt: Psbt,
    contracts: &[(usize, &CompiledContract)],
) -> Result<Transaction, SpendError> {
    let mut paths = BTreeMap::new();
    for (index, contract) in contracts {
        let done = psbt
            .inputs
            .get(*index)
            .is_some_and(|i| i.final_script_witness.is_some());
        if !done {
            let path = finalize_input(&mut psbt, *index, contract)?;
            paths.insert(*index, path);
        }
    }
    let spent = prevouts(&psbt)?;
    let mut tx = psbt.unsigned_tx;
    for (index, (txin, input)) in tx.input.iter_mut().zip(psbt.inputs).enumerate() {
        if input.final_script_witness.is_none() && input.final_script_sig.is_none() {
            return Err(SpendError::NotFinalized { index });
        }
        txin.witness = input.final_script_witness.unwrap_or_default();
        txin.script_sig = input.final_script_sig.unwrap_or_default();
    }
    for (index, contract) in contracts {
        if let (None, Some(txin)) = (paths.get(index), tx.input.get(*index)) {
            if let Some(p) = contract.path_of_witness(&txin.witness) {
                paths.insert(*index, p);
            }
        }
    }
    verify_with_paths(&tx, &spent, |i| paths.get(&i).map(|p| p.name().to_owned()))?;
    tracing::debug!(target: "btcmpc_contracts::spend", txid = %tx.compute_txid(), "spend verified");
    Ok(tx)
}

impl CompiledContract {
    /// Finalize and verify a PSBT whose only input spends this contract (what every builder
    /// here returns, except an anchor extension with wallet inputs).
    ///
    /// # Errors
    /// As [`finalize_and_verify`].
    pub fn finalize_and_verify(&self, psbt: Psbt) -> Result<Transaction, SpendError> {
        finalize_and_verify(psbt, &[(0, self)])
    }
}

impl Contract {
    /// Every spend path of the contract (compiles it; keep a [`CompiledContract`] instead when
    /// spending).
    ///
    /// # Errors
    /// As [`Contract::compile`].
    pub fn spend_paths(&self) -> Result<Vec<SpendPath>, crate::Error> {
        Ok(self.compile()?.spend_paths().to_vec())
    }
}
