//! Every spend path of every contract, through Bitcoin Core's interpreter: the rightful
//! spend verifies; a wrong preimage, a missing or wrong signature, too few judges, and a
//! timelocked path one block early are refused with a typed error; the boundary works.

mod common;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid, Witness};
use btcmpc_contracts::{
    combine, finalize_and_verify, finalize_input, sign_input, verify_spend, ClaimOrRefund,
    Contract, FeeInput, Funding, Height, InternalKey, PathKind, SpendError, Utxo, VerifyError,
};
use common::*;

fn script_refusal(err: &SpendError) -> (usize, Option<String>) {
    match err {
        SpendError::Verify(VerifyError::Script {
            input, path, code, ..
        }) => {
            assert_eq!(*code, bitcoinconsensus::Error::ERR_SCRIPT, "{err}");
            (*input, path.clone())
        }
        other => panic!("expected an interpreter refusal, got {other}"),
    }
}

fn spent_of(tx: &Transaction, utxo: &Utxo) -> Vec<TxOut> {
    assert_eq!(tx.input.len(), 1);
    vec![utxo.txout.clone()]
}

#[test]
fn claim_verifies_and_pays_value_less_fee() {
    let c = escrow();
    let utxo = utxo_of(&c, 50_000, 1);
    let (mut psbt, summary) = c
        .build_claim(&utxo, &PREIMAGE, p2tr_of(1), fee_rate())
        .unwrap();
    assert_eq!(psbt.unsigned_tx.lock_time, LockTime::ZERO);
    assert_eq!(psbt.unsigned_tx.input[0].sequence.0, 0xffff_fffd);
    assert_eq!(psbt.unsigned_tx.version.0, 2);
    assert_eq!(sign_input(&mut psbt, 0, &keypair(1)).unwrap(), 1);
    let tx = c.finalize_and_verify(psbt).unwrap();
    assert_eq!(tx.output[0].value, Amount::from_sat(50_000) - summary.fee);
    assert_eq!(
        c.path_of_witness(&tx.input[0].witness),
        Some(PathKind::Claim)
    );
    // The preimage is in the witness for the service to read.
    assert!(tx.input[0].witness.iter().any(|e| e == PREIMAGE));
    // The estimate is an upper bound of the real weight, and not a loose one.
    assert!(
        summary.weight >= tx.weight(),
        "{} < {}",
        summary.weight,
        tx.weight()
    );
    assert!(summary.weight.to_wu() - tx.weight().to_wu() <= 4);
    verify_spend(&tx, &spent_of(&tx, &utxo)).unwrap();
}

#[test]
fn claim_with_wrong_preimage_is_refused_by_builder_and_interpreter() {
    let c = escrow();
    let utxo = utxo_of(&c, 50_000, 1);
    let err = c
        .build_claim(&utxo, &[0u8; 32], p2tr_of(1), fee_rate())
        .unwrap_err();
    assert!(matches!(err, SpendError::WrongPreimage { .. }), "{err}");
    assert!(err.to_string().starts_with("preimage:"));

    // A witness carrying another 32-byte value instead of the preimage: Core refuses it.
    let (mut psbt, _) = c
        .build_claim(&utxo, &PREIMAGE, p2tr_of(1), fee_rate())
        .unwrap();
    sign_input(&mut psbt, 0, &keypair(1)).unwrap();
    let tx = c.finalize_and_verify(psbt).unwrap();
    let mut bad = tx.clone();
    let elements: Vec<Vec<u8>> = bad.input[0]
        .witness
        .iter()
        .map(|e| {
            if e == PREIMAGE {
                vec![7u8; 32]
            } else {
                e.to_vec()
            }
        })
        .collect();
    bad.input[0].witness = Witness::from_slice(&elements);
    let err = verify_spend(&bad, &spent_of(&bad, &utxo)).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Script {
                input: 0,
                path: None,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("ERR_SCRIPT"), "{err}");
}

#[test]
fn claim_without_signature_cannot_be_finalized() {
    let c = escrow();
    let utxo = utxo_of(&c, 50_000, 1);
    let (psbt, _) = c
        .build_claim(&utxo, &PREIMAGE, p2tr_of(1), fee_rate())
        .unwrap();
    let err = c.finalize_and_verify(psbt).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, SpendError::Unsatisfied { index: 0, .. }),
        "{msg}"
    );
    assert!(msg.contains("claim: 0 of 1 signatures"), "{msg}");
    assert!(
        msg.contains("refund: 0 of 1 signatures, nLockTime 0 is before height 1000"),
        "{msg}"
    );
}

#[test]
fn claim_by_wrong_signer_is_refused() {
    let c = escrow();
    let utxo = utxo_of(&c, 50_000, 1);
    let (mut psbt, _) = c
        .build_claim(&utxo, &PREIMAGE, p2tr_of(1), fee_rate())
        .unwrap();
    // The sender is not a signer of the claim leaf this PSBT spends.
    let err = sign_input(&mut psbt, 0, &keypair(2)).unwrap_err();
    assert!(
        matches!(err, SpendError::KeyNotInInput { index: 0, .. }),
        "{err}"
    );

    // A signature by another key filed under the receiver's slot: the finalizer takes it,
    // Core's interpreter refuses it and the error names the input and the path.
    let mut forged = psbt.clone();
    sign_input(&mut forged, 0, &keypair(1)).unwrap();
    let receiver = keypair(1).x_only_public_key().0;
    let slot = *forged.inputs[0].tap_script_sigs.keys().next().unwrap();
    assert_eq!(slot.0, receiver);
    let mut wrong = psbt.clone();
    wrong.inputs[0].tap_key_origins.insert(
        keypair(3).x_only_public_key().0,
        (vec![slot.1], Default::default()),
    );
    sign_input(&mut wrong, 0, &keypair(3)).unwrap();
    let sig = wrong.inputs[0]
        .tap_script_sigs
        .values()
        .next()
        .copied()
        .unwrap();
    forged.inputs[0].tap_script_sigs.insert(slot, sig);
    let err = c.finalize_and_verify(forged).unwrap_err();
    assert_eq!(script_refusal(&err), (0, Some("claim".to_owned())));
    assert!(err.to_string().contains("input 0 (claim path)"), "{err}");
}

/// Sign the single-leaf path `kind` by hand with `lock_time`, bypassing the finalizer's
/// timelock check, so the interpreter is the one that decides.
fn hand_built_timelocked_spend(
    c: &btcmpc_contracts::CompiledContract,
    kind: PathKind,
    utxo: &Utxo,
    mut psbt: Psbt,
    lock_time: LockTime,
    signer: &bitcoin::secp256k1::Keypair,
) -> Transaction {
    psbt.unsigned_tx.lock_time = lock_time;
    let leaf = c.path(kind).unwrap().leaf.clone().unwrap();
    let spent = [utxo.txout.clone()];
    let sighash = SighashCache::new(&psbt.unsigned_tx)
        .taproot_script_spend_signature_hash(
            0,
            &Prevouts::All(&spent),
            leaf.leaf_hash,
            TapSighashType::Default,
        )
        .unwrap();
    let sig = Secp256k1::new()
        .sign_schnorr_no_aux_rand(&Message::from_digest(sighash.to_byte_array()), signer);
    let mut tx = psbt.unsigned_tx;
    tx.input[0].witness = Witness::from_slice(&[
        sig.as_ref().to_vec(),
        leaf.script.to_bytes(),
        leaf.control_block.serialize(),
    ]);
    tx
}

#[test]
fn refund_at_timeout_verifies_and_one_block_early_is_refused() {
    let c = escrow();
    let utxo = utxo_of(&c, 50_000, 2);
    let (psbt, _) = c.build_refund(&utxo, p2tr_of(2), fee_rate()).unwrap();
    assert_eq!(
        psbt.unsigned_tx.lock_time,
        LockTime::from_height(TIMEOUT).unwrap()
    );
    assert_eq!(psbt.unsigned_tx.input[0].sequence.0, 0xffff_fffd);

    // Exactly T: valid.
    let mut at_t = psbt.clone();
    sign_input(&mut at_t, 0, &keypair(2)).unwrap();
    let tx = c.finalize_and_verify(at_t).unwrap();
    assert_eq!(
        c.path_of_witness(&tx.input[0].witness),
        Some(PathKind::Refund)
    );

    // T - 1: the finalizer refuses, saying why.
    let mut early = psbt.clone();
    early.unsigned_tx.lock_time = LockTime::from_height(TIMEOUT - 1).unwrap();
    sign_input(&mut early, 0, &keypair(2)).unwrap();
    let msg = c.finalize_and_verify(early).unwrap_err().to_string();
    assert!(
        msg.contains("refund: nLockTime 999 is before height 1000"),
        "{msg}"
    );

    // T - 1 signed and assembled by hand: after(T) cannot be satisfied by a transaction whose
    // nLockTime is below T, and Core's interpreter refuses it (CHECKLOCKTIMEVERIFY).
    let tx = hand_built_timelocked_spend(
        &c,
        PathKind::Refund,
        &utxo,
        psbt.clone(),
        LockTime::from_height(TIMEOUT - 1).unwrap(),
        &keypair(2),
    );
    let err = verify_spend(&tx, std::slice::from_ref(&utxo.txout)).unwrap_err();
    assert!(matches!(err, VerifyError::Script { input: 0, .. }), "{err}");
    // The same hand-built spend at exactly T passes: the refusal above is the timelock.
    let tx = hand_built_timelocked_spend(
        &c,
        PathKind::Refund,
        &utxo,
        psbt,
        LockTime::from_height(TIMEOUT).unwrap(),
        &keypair(2),
    );
    verify_spend(&tx, std::slice::from_ref(&utxo.txout)).unwrap();
}

#[test]
fn receiver_cannot_refund_and_sender_cannot_claim() {
    let c = escrow();
    let utxo = utxo_of(&c, 50_000, 2);
    let (mut psbt, _) = c.build_refund(&utxo, p2tr_of(1), fee_rate()).unwrap();
    assert!(matches!(
        sign_input(&mut psbt, 0, &keypair(1)),
        Err(SpendError::KeyNotInInput { .. })
    ));
    let msg = c.finalize_and_verify(psbt).unwrap_err().to_string();
    assert!(msg.contains("refund: 0 of 1 signatures"), "{msg}");
}

#[test]
fn bond_exit_at_exit_height_verifies_and_one_block_early_is_refused() {
    let c = bond();
    let utxo = utxo_of(&c, 1_000_000, 3);
    let (psbt, summary) = c.build_exit(&utxo, p2tr_of(10), fee_rate()).unwrap();
    assert_eq!(
        psbt.unsigned_tx.lock_time,
        LockTime::from_height(EXIT).unwrap()
    );
    let mut at_t = psbt.clone();
    sign_input(&mut at_t, 0, &keypair(10)).unwrap();
    let tx = c.finalize_and_verify(at_t).unwrap();
    assert_eq!(
        tx.output[0].value,
        Amount::from_sat(1_000_000) - summary.fee
    );
    assert_eq!(
        c.path_of_witness(&tx.input[0].witness),
        Some(PathKind::Exit)
    );

    let mut early = psbt.clone();
    early.unsigned_tx.lock_time = LockTime::from_height(EXIT - 1).unwrap();
    sign_input(&mut early, 0, &keypair(10)).unwrap();
    let msg = c.finalize_and_verify(early).unwrap_err().to_string();
    assert!(
        msg.contains("exit: nLockTime 4999 is before height 5000"),
        "{msg}"
    );

    let tx = hand_built_timelocked_spend(
        &c,
        PathKind::Exit,
        &utxo,
        psbt,
        LockTime::from_height(EXIT - 1).unwrap(),
        &keypair(10),
    );
    assert!(verify_spend(&tx, std::slice::from_ref(&utxo.txout)).is_err());
}

#[test]
fn slash_with_k_judges_in_any_order_verifies_and_k_minus_1_is_refused() {
    let c = bond();
    let utxo = utxo_of(&c, 1_000_000, 4);
    let victim = p2tr_of(2);
    let penalty = Amount::from_sat(300_000);
    let build = || {
        c.build_slash(&utxo, victim.clone(), penalty, fee_rate())
            .unwrap()
    };
    let (base, summary) = build();
    let tx = &base.unsigned_tx;
    assert_eq!(tx.input.len(), 1);
    assert_eq!(
        (tx.version.0, tx.lock_time, tx.input[0].sequence.0),
        (2, LockTime::ZERO, 0xffff_fffd)
    );
    assert_eq!(tx.output[0].value, penalty);
    assert_eq!(tx.output[0].script_pubkey, victim);
    assert_eq!(tx.output[1].script_pubkey, *c.script_pubkey());
    assert_eq!(
        tx.output[1].value,
        Amount::from_sat(1_000_000) - penalty - summary.fee
    );

    // Judges 13 and 11 each sign their own copy, in that order; the copies combine.
    let (mut first, _) = build();
    sign_input(&mut first, 0, &keypair(13)).unwrap();
    let only_one = first.clone();
    let (mut second, _) = build();
    sign_input(&mut second, 0, &keypair(11)).unwrap();
    combine(&mut first, second).unwrap();
    let slashed = c.finalize_and_verify(first).unwrap();
    assert_eq!(
        c.path_of_witness(&slashed.input[0].witness),
        Some(PathKind::Slash)
    );

    // All three judges: still valid (the finalizer uses k of them).
    let (mut all, _) = build();
    for j in [11, 12, 13] {
        sign_input(&mut all, 0, &keypair(j)).unwrap();
    }
    c.finalize_and_verify(all).unwrap();

    // A copy for another victim is another transaction: it does not combine.
    let (mut other, _) = c
        .build_slash(&utxo, p2tr_of(3), penalty, fee_rate())
        .unwrap();
    sign_input(&mut other, 0, &keypair(12)).unwrap();
    let (mut mine, _) = build();
    assert!(matches!(
        combine(&mut mine, other),
        Err(SpendError::Combine { .. })
    ));

    // k - 1 judges: refused.
    let msg = c.finalize_and_verify(only_one).unwrap_err().to_string();
    assert!(msg.contains("slash: 1 of 2 signatures"), "{msg}");

    // The party cannot sign a slash, and a non-member cannot either.
    let (mut p, _) = build();
    assert!(sign_input(&mut p, 0, &keypair(10)).is_err());
    assert!(sign_input(&mut p, 0, &keypair(99)).is_err());
}

#[test]
fn slash_penalty_above_bond_pays_everything_and_dust_victim_is_refused() {
    let c = bond();
    let utxo = utxo_of(&c, 100_000, 5);
    let (mut psbt, summary) = c
        .build_slash(&utxo, p2tr_of(2), Amount::from_sat(1_000_000), fee_rate())
        .unwrap();
    assert_eq!(psbt.unsigned_tx.output.len(), 1);
    assert_eq!(
        psbt.unsigned_tx.output[0].value,
        Amount::from_sat(100_000) - summary.fee
    );
    sign_input(&mut psbt, 0, &keypair(11)).unwrap();
    sign_input(&mut psbt, 0, &keypair(12)).unwrap();
    c.finalize_and_verify(psbt).unwrap();

    let err = c
        .build_slash(&utxo, p2tr_of(2), Amount::from_sat(100), fee_rate())
        .unwrap_err();
    assert!(
        matches!(
            err,
            SpendError::Dust {
                output: 0,
                name: "victim",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("100 sat"), "{err}");
    assert!(matches!(
        c.build_slash(&utxo, p2tr_of(2), Amount::ZERO, fee_rate()),
        Err(SpendError::ZeroPenalty)
    ));
    // A remainder below dust is left to the miners instead of making a dust output.
    let (psbt, summary) = c
        .build_slash(&utxo, p2tr_of(2), Amount::from_sat(99_300), fee_rate())
        .unwrap();
    assert_eq!(psbt.unsigned_tx.output.len(), 1);
    assert_eq!(psbt.unsigned_tx.output[0].value, Amount::from_sat(99_300));
    assert_eq!(summary.fee, Amount::from_sat(700));
}

#[test]
fn anchor_extend_self_funded_verifies_with_its_record() {
    let c = anchor();
    let utxo = utxo_of(&c, 10_000, 6);
    let record = b"BMPC\x01GRANT and a scope";
    let (mut psbt, summary) = c
        .build_anchor_extend(&utxo, record, fee_rate(), None)
        .unwrap();
    assert_eq!(sign_input(&mut psbt, 0, &keypair(20)).unwrap(), 1);
    let tx = c.finalize_and_verify(psbt).unwrap();
    assert_eq!(tx.output.len(), 2);
    assert_eq!(tx.output[0].script_pubkey, *c.script_pubkey());
    assert_eq!(tx.output[0].value, Amount::from_sat(10_000) - summary.fee);
    assert!(tx.output[1].script_pubkey.is_op_return());
    assert!(tx.output[1]
        .script_pubkey
        .as_bytes()
        .ends_with(record.as_slice()));
    assert_eq!(
        c.path_of_witness(&tx.input[0].witness),
        Some(PathKind::KeyPath)
    );

    let err = c
        .build_anchor_extend(&utxo, &[0u8; 81], fee_rate(), None)
        .unwrap_err();
    assert!(
        matches!(err, SpendError::RecordTooLong { len: 81 }),
        "{err}"
    );
    c.build_anchor_extend(&utxo, &[0u8; 80], fee_rate(), None)
        .unwrap();
    // A dust-sized anchor cannot pay its own fee.
    let err = c
        .build_anchor_extend(&utxo_of(&c, 400, 7), record, fee_rate(), None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SpendError::InsufficientFunds { .. } | SpendError::Dust { output: 0, .. }
        ),
        "{err}"
    );
    // Another key cannot sign it.
    let (mut psbt, _) = c
        .build_anchor_extend(&utxo, record, fee_rate(), None)
        .unwrap();
    assert!(sign_input(&mut psbt, 0, &keypair(21)).is_err());
    let msg = c.finalize_and_verify(psbt).unwrap_err().to_string();
    assert!(msg.contains("key: no key-path signature"), "{msg}");
}

#[test]
fn anchor_extend_funded_by_a_wallet_input_signs_and_finalizes_per_input() {
    let c = anchor();
    let utxo = utxo_of(&c, 330, 8);
    let wallet_key = keypair(30);
    let wallet_utxo = Utxo {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([9; 32]),
            vout: 1,
        },
        txout: TxOut {
            value: Amount::from_sat(20_000),
            script_pubkey: p2tr_of(30),
        },
    };
    let funding = Funding {
        inputs: vec![FeeInput {
            utxo: wallet_utxo,
            satisfaction_weight: bitcoin::Weight::from_wu(67),
        }],
        change: p2tr_of(31),
    };
    let (mut psbt, summary) = c
        .build_anchor_extend(&utxo, b"BMPC", fee_rate(), Some(&funding))
        .unwrap();
    assert_eq!(psbt.unsigned_tx.output[0].value, Amount::from_sat(330));
    assert_eq!(
        psbt.unsigned_tx.output[2].value,
        Amount::from_sat(20_000) - summary.fee
    );
    // The contract key signs its input only.
    sign_input(&mut psbt, 0, &keypair(20)).unwrap();
    assert!(psbt.inputs[1].tap_key_sig.is_none());
    // Leaving the wallet input unfinalized is refused, naming it.
    let err = finalize_and_verify(psbt.clone(), &[(0, &c)]).unwrap_err();
    assert!(
        matches!(err, SpendError::NotFinalized { index: 1 }),
        "{err}"
    );

    // The wallet's part, as a BIP86 wallet does it: key-path sign and finalize input 1.
    psbt.inputs[1].tap_internal_key = Some(wallet_key.x_only_public_key().0);
    sign_input(&mut psbt, 1, &wallet_key).unwrap();
    let sig = psbt.inputs[1].tap_key_sig.unwrap();
    psbt.inputs[1].final_script_witness = Some(Witness::from_slice(&[sig.to_vec()]));
    // Finalizing the contract input alone, then everything.
    let mut step = psbt.clone();
    assert_eq!(finalize_input(&mut step, 0, &c).unwrap(), PathKind::KeyPath);
    let tx = finalize_and_verify(psbt, &[(0, &c)]).unwrap();
    assert_eq!(tx.input.len(), 2);
    assert!(summary.weight >= tx.weight());
}

#[test]
fn dust_and_unaffordable_outputs_are_refused_naming_them() {
    let c = escrow();
    let err = c
        .build_claim(&utxo_of(&c, 600, 1), &PREIMAGE, p2tr_of(1), fee_rate())
        .unwrap_err();
    assert!(
        matches!(
            err,
            SpendError::Dust {
                output: 0,
                name: "claim",
                ..
            }
        ),
        "{err}"
    );
    let err = c
        .build_refund(&utxo_of(&c, 100, 1), p2tr_of(1), fee_rate())
        .unwrap_err();
    assert!(matches!(err, SpendError::InsufficientFunds { .. }), "{err}");
    assert!(err.to_string().starts_with("amount:"), "{err}");
}

#[test]
fn spending_another_contracts_output_is_refused() {
    let c = escrow();
    let other = bond();
    let utxo = utxo_of(&other, 50_000, 1);
    let err = c.build_refund(&utxo, p2tr_of(1), fee_rate()).unwrap_err();
    assert!(matches!(err, SpendError::ScriptMismatch { .. }), "{err}");
    let err = c
        .build_slash(
            &utxo_of(&c, 50_000, 1),
            p2tr_of(1),
            Amount::ONE_SAT,
            fee_rate(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("has no slash path"), "{err}");
}

#[test]
fn cooperative_internal_key_allows_a_key_path_spend() {
    let coop = keypair(40);
    let c = Contract::ClaimOrRefund(ClaimOrRefund {
        receiver: keypair(1).public_key(),
        sender: keypair(2).public_key(),
        hash: sha256::Hash::hash(&PREIMAGE),
        timeout: Height::new(TIMEOUT).unwrap(),
        internal_key: InternalKey::Cooperative(coop.public_key()),
    })
    .compile()
    .unwrap();
    assert_eq!(c.spend_paths().len(), 3);
    // The claim builder still works on a cooperative escrow; the cooperative key signs the
    // key path of the same transaction.
    let utxo = utxo_of(&c, 50_000, 1);
    let (mut psbt, _) = c
        .build_claim(&utxo, &PREIMAGE, p2tr_of(1), fee_rate())
        .unwrap();
    sign_input(&mut psbt, 0, &coop).unwrap();
    let tx = c.finalize_and_verify(psbt).unwrap();
    assert_eq!(tx.input[0].witness.len(), 1);
}

#[test]
fn verify_spend_wants_every_spent_output() {
    let c = escrow();
    let utxo = utxo_of(&c, 50_000, 1);
    let (mut psbt, _) = c
        .build_claim(&utxo, &PREIMAGE, p2tr_of(1), fee_rate())
        .unwrap();
    sign_input(&mut psbt, 0, &keypair(1)).unwrap();
    let tx = c.finalize_and_verify(psbt).unwrap();
    assert_eq!(
        verify_spend(&tx, &[]).unwrap_err(),
        VerifyError::SpentCount {
            inputs: 1,
            spent: 0
        }
    );
    // A different amount changes the taproot sighash: refused.
    let mut wrong = utxo.txout.clone();
    wrong.value = Amount::from_sat(50_001);
    assert!(verify_spend(&tx, &[wrong]).is_err());
}

#[test]
fn a_stray_key_path_signature_does_not_derail_the_finalizer() {
    // The escrow's internal key is unspendable; a key-path signature in a PSBT from someone
    // else must not be used (nor make the finalizer panic).
    let c = escrow();
    let utxo = utxo_of(&c, 50_000, 1);
    let (mut psbt, _) = c
        .build_claim(&utxo, &PREIMAGE, p2tr_of(1), fee_rate())
        .unwrap();
    sign_input(&mut psbt, 0, &keypair(1)).unwrap();
    let junk = *psbt.inputs[0].tap_script_sigs.values().next().unwrap();
    psbt.inputs[0].tap_key_sig = Some(junk);
    let tx = c.finalize_and_verify(psbt.clone()).unwrap();
    assert_eq!(
        c.path_of_witness(&tx.input[0].witness),
        Some(PathKind::Claim)
    );
    // Without the receiver's signature, the junk is not used either.
    psbt.inputs[0].tap_script_sigs.clear();
    let err = finalize_input(&mut psbt, 0, &c).unwrap_err();
    assert!(
        matches!(err, SpendError::Unsatisfied { index: 0, .. }),
        "{err}"
    );
    assert!(
        psbt.inputs[0].tap_key_sig.is_some(),
        "the PSBT is left as it was"
    );
}

/// A path's signer keys are the contract's own keys, parity included, in the order of its
/// signers: what a wallet signs a contract input with.
#[test]
fn signer_keys_are_the_contracts_keys() {
    let escrow = escrow();
    let keys = |c: &btcmpc_contracts::CompiledContract, kind| {
        c.path(kind).expect("the path").signer_keys()
    };
    assert_eq!(keys(&escrow, PathKind::Claim), [keypair(1).public_key()]);
    assert_eq!(keys(&escrow, PathKind::Refund), [keypair(2).public_key()]);
    let bond = bond();
    assert_eq!(keys(&bond, PathKind::Exit), [keypair(10).public_key()]);
    assert_eq!(
        keys(&bond, PathKind::Slash),
        [11, 12, 13].map(|i| keypair(i).public_key())
    );
    for p in anchor().spend_paths() {
        assert!(p.signer_keys().is_empty(), "{:?}", p.kind);
    }
}
