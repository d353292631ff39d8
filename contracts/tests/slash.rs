//! A judge signs only the canonical slash: every field of a handed-in slash PSBT that differs
//! from the one the judge rebuilds is refused and named; the carrier format between judges is
//! frozen.
//!
//! To regenerate the carrier fixture after a deliberate format change, run with
//! `BTCMPC_UPDATE_FIXTURES=1` and review the diff.

mod common;

use std::path::PathBuf;

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::psbt::{raw::ProprietaryKey, Psbt};
use bitcoin::{Amount, FeeRate, OutPoint, Sequence, TxIn, TxOut, Txid};
use btcmpc_contracts::{
    compare_unsigned, decode_carrier, encode_carrier, sign_input, PathKind, SlashTerms, SpendError,
    TxDifference, CARRIER_VERSION,
};
use common::*;

fn terms() -> SlashTerms {
    SlashTerms {
        victim: p2tr_of(2),
        penalty: Some(Amount::from_sat(300_000)),
        fee_rate: fee_rate(),
    }
}

/// The honest slash of the fixture bond's 1,000,000-sat output, signed by judge 11.
fn honest() -> (Psbt, btcmpc_contracts::Utxo) {
    let c = bond();
    let live = utxo_of(&c, 1_000_000, 7);
    let (mut psbt, _) = c.expected_slash(&live, &terms()).unwrap();
    sign_input(&mut psbt, 0, &keypair(11)).unwrap();
    (psbt, live)
}

/// The first difference named when `edit` is applied to the honest slash.
fn refusal(edit: impl FnOnce(&mut Psbt)) -> SpendError {
    let (mut psbt, live) = honest();
    edit(&mut psbt);
    bond()
        .check_slash(&[live], &terms(), &psbt)
        .expect_err("an edited slash is refused")
}

#[test]
fn the_canonical_slash_passes_and_keeps_valid_signatures() {
    let c = bond();
    let (psbt, live) = honest();
    let (mut ours, summary) = c
        .check_slash(std::slice::from_ref(&live), &terms(), &psbt)
        .unwrap();
    assert_eq!(ours.unsigned_tx, psbt.unsigned_tx);
    assert_eq!(summary.outpoint, live.outpoint);
    assert_eq!(summary.paid, Amount::from_sat(300_000));
    assert_eq!(summary.victim, p2tr_of(2));
    assert_eq!(
        summary.paid + summary.remainder + summary.fee,
        Amount::from_sat(1_000_000)
    );
    assert_eq!(ours.inputs[0].tap_script_sigs.len(), 1, "judge 11 kept");
    sign_input(&mut ours, 0, &keypair(13)).unwrap();
    let tx = c.finalize_and_verify(ours).unwrap();
    assert_eq!(
        c.path_of_witness(&tx.input[0].witness),
        Some(PathKind::Slash)
    );

    // The whole bond: the victim gets everything but the fee, one output.
    let whole = SlashTerms {
        penalty: None,
        ..terms()
    };
    let (psbt, s) = c.expected_slash(&live, &whole).unwrap();
    assert_eq!(psbt.unsigned_tx.output.len(), 1);
    assert_eq!(
        (s.paid + s.fee, s.remainder),
        (Amount::from_sat(1_000_000), Amount::ZERO)
    );
}

#[test]
fn a_slash_paying_someone_else_is_refused() {
    // The accused party builds a slash of its whole bond paying itself.
    let c = bond();
    let live = utxo_of(&c, 1_000_000, 7);
    let evil_terms = SlashTerms {
        victim: p2tr_of(10),
        penalty: None,
        fee_rate: fee_rate(),
    };
    let (evil, _) = c.expected_slash(&live, &evil_terms).unwrap();
    let err = c.check_slash(&[live], &terms(), &evil).unwrap_err();
    assert!(
        matches!(
            err,
            SpendError::NotCanonical(TxDifference::OutputCount {
                expected: 2,
                got: 1
            })
        ),
        "{err}"
    );
    // Same shape, other destination.
    let err = refusal(|p| p.unsigned_tx.output[0].script_pubkey = p2tr_of(10));
    assert!(
        matches!(
            err,
            SpendError::NotCanonical(TxDifference::OutputScript { index: 0, .. })
        ),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("not the canonical slash: output 0 pays script"));
}

#[test]
fn a_corrupt_judges_rewritten_outputs_are_refused() {
    // The victim gets 1,000 sat and the corrupt judge the rest, in place of the remainder.
    let err = refusal(|p| {
        let total = p.unsigned_tx.output[0].value + p.unsigned_tx.output[1].value;
        p.unsigned_tx.output[0].value = Amount::from_sat(1_000);
        p.unsigned_tx.output[1] = TxOut {
            value: total - Amount::from_sat(1_000),
            script_pubkey: p2tr_of(11),
        };
    });
    assert!(
        matches!(
            err,
            SpendError::NotCanonical(TxDifference::OutputValue {
                index: 0,
                expected: 300_000,
                got: 1_000
            })
        ),
        "{err}"
    );
    // Only the remainder moved elsewhere.
    let err = refusal(|p| p.unsigned_tx.output[1].script_pubkey = p2tr_of(11));
    assert!(
        matches!(
            err,
            SpendError::NotCanonical(TxDifference::OutputScript { index: 1, .. })
        ),
        "{err}"
    );
}

#[test]
fn every_other_field_is_checked() {
    let err = refusal(|p| p.unsigned_tx.lock_time = LockTime::from_height(100).unwrap());
    assert!(
        matches!(
            err,
            SpendError::NotCanonical(TxDifference::LockTime {
                expected: 0,
                got: 100
            })
        ),
        "{err}"
    );
    let err = refusal(|p| p.unsigned_tx.input[0].sequence = Sequence::MAX);
    assert!(
        matches!(
            err,
            SpendError::NotCanonical(TxDifference::Sequence { index: 0, .. })
        ),
        "{err}"
    );
    let err = refusal(|p| p.unsigned_tx.version = bitcoin::transaction::Version::ONE);
    assert!(
        matches!(err, SpendError::NotCanonical(TxDifference::Version { .. })),
        "{err}"
    );
    // A higher fee: the remainder is smaller than the judge's fee rate makes it.
    let err = refusal(|p| p.unsigned_tx.output[1].value -= Amount::from_sat(5_000));
    assert!(
        matches!(
            err,
            SpendError::NotCanonical(TxDifference::OutputValue { index: 1, .. })
        ),
        "{err}"
    );
    // The same slash at another fee rate than the judge's.
    let c = bond();
    let live = utxo_of(&c, 1_000_000, 7);
    let (other_fee, _) = c
        .expected_slash(
            &live,
            &SlashTerms {
                fee_rate: FeeRate::from_sat_per_vb(50).unwrap(),
                ..terms()
            },
        )
        .unwrap();
    assert!(matches!(
        c.check_slash(std::slice::from_ref(&live), &terms(), &other_fee),
        Err(SpendError::NotCanonical(TxDifference::OutputValue {
            index: 1,
            ..
        }))
    ));
    // Another outpoint: not a live output of the bond in our chain view.
    let other = OutPoint {
        txid: Txid::from_byte_array([9; 32]),
        vout: 0,
    };
    let err = refusal(|p| p.unsigned_tx.input[0].previous_output = other);
    assert!(
        matches!(err, SpendError::NotLiveOutput { outpoint, .. } if outpoint == other),
        "{err}"
    );
    // An extra input (a wallet input of the slasher, say).
    let err = refusal(|p| {
        p.unsigned_tx.input.push(TxIn {
            previous_output: other,
            ..TxIn::default()
        });
        p.inputs.push(Default::default());
    });
    assert!(
        matches!(
            err,
            SpendError::NotCanonical(TxDifference::InputCount {
                expected: 1,
                got: 2
            })
        ),
        "{err}"
    );
    // A witness_utxo lying about the bond's value.
    let err = refusal(|p| {
        if let Some(o) = p.inputs[0].witness_utxo.as_mut() {
            o.value = Amount::from_sat(2_000_000);
        }
    });
    assert!(matches!(err, SpendError::PrevoutMismatch { .. }), "{err}");
    // A live output that is another one than the slash spends, with the right outpoint list.
    let live2 = utxo_of(&c, 5_000, 8);
    let (psbt, _) = honest();
    assert!(c.check_slash(&[live2, live], &terms(), &psbt).is_ok());
}

#[test]
fn signatures_that_do_not_sign_the_canonical_slash_are_dropped() {
    let c = bond();
    let live = utxo_of(&c, 1_000_000, 7);
    // Judge 12 signed a slash paying someone else; its signature is moved onto the honest one.
    let (mut evil, _) = c
        .expected_slash(
            &live,
            &SlashTerms {
                victim: p2tr_of(10),
                ..terms()
            },
        )
        .unwrap();
    sign_input(&mut evil, 0, &keypair(12)).unwrap();
    let (mut psbt, _) = honest();
    let stolen = evil.inputs[0].tap_script_sigs.clone();
    psbt.inputs[0].tap_script_sigs.extend(stolen);
    assert_eq!(psbt.inputs[0].tap_script_sigs.len(), 2);
    let (ours, _) = c.check_slash(&[live], &terms(), &psbt).unwrap();
    assert_eq!(
        ours.inputs[0].tap_script_sigs.len(),
        1,
        "only judge 11's valid signature is kept"
    );
    let err = c.finalize_and_verify(ours).unwrap_err().to_string();
    assert!(err.contains("1 of 2 signatures"), "{err}");
}

#[test]
fn compare_accepts_only_identical_transactions() {
    let (psbt, _) = honest();
    assert_eq!(
        compare_unsigned(&psbt.unsigned_tx, &psbt.unsigned_tx),
        Ok(())
    );
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn carrier_v1_is_frozen() {
    let (psbt, live) = honest();
    let text = encode_carrier(&psbt);
    let path = data("slash_carrier_v1.psbt");
    if std::env::var_os("BTCMPC_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let frozen = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text, frozen,
        "the slash carrier changed; if deliberate, bump CARRIER_VERSION and regenerate with BTCMPC_UPDATE_FIXTURES=1"
    );
    assert!(frozen.ends_with('\n') && frozen.lines().count() == 1);
    // The frozen file reads back to the same PSBT, and a judge accepts it.
    let read = decode_carrier(&frozen).unwrap();
    let key = ProprietaryKey {
        prefix: b"btcmpc".to_vec(),
        subtype: 1,
        key: Vec::new(),
    };
    assert_eq!(read.proprietary.get(&key), Some(&vec![CARRIER_VERSION]));
    let (ours, _) = bond().check_slash(&[live], &terms(), &read).unwrap();
    assert_eq!(ours.inputs[0].tap_script_sigs.len(), 1);
}

#[test]
fn other_carrier_versions_and_junk_are_refused() {
    let (psbt, _) = honest();
    // Version 0: no version field, the contract file under subtype 0.
    let mut v0 = psbt.clone();
    v0.proprietary.insert(
        ProprietaryKey {
            prefix: b"btcmpc".to_vec(),
            subtype: 0,
            key: Vec::new(),
        },
        b"{}".to_vec(),
    );
    let err = decode_carrier(&v0.to_string()).unwrap_err().to_string();
    assert!(err.contains("no btcmpc carrier version"), "{err}");
    let mut v2 = psbt.clone();
    v2.proprietary.insert(
        ProprietaryKey {
            prefix: b"btcmpc".to_vec(),
            subtype: 1,
            key: Vec::new(),
        },
        vec![2],
    );
    let err = decode_carrier(&v2.to_string()).unwrap_err().to_string();
    assert!(err.contains("carrier version 02"), "{err}");
    let err = decode_carrier("not base64!").unwrap_err().to_string();
    assert!(err.contains("not a base64 PSBT"), "{err}");
    let big = "A".repeat(btcmpc_contracts::MAX_CARRIER_LEN + 1);
    let err = decode_carrier(&big).unwrap_err().to_string();
    assert!(err.contains("more than"), "{err}");
    // Encoding drops any other btcmpc field and writes the version.
    let again = decode_carrier(&encode_carrier(&v0)).unwrap();
    assert_eq!(again.proprietary.len(), 1);
}
