//! Bitcoin Core's own transaction and script vectors (`testdata/bitcoin-core`, copied from Core's
//! `src/test/data/`) run through the node's transaction checks (`check_transaction`), its
//! script verification (`verify_scripts`, Core's interpreter via `bitcoinconsensus`) and its
//! flag mapping (`map_script_flag`).
//!
//! `bitcoinconsensus` applies consensus flags only. Vectors are used as far as that is sound:
//! a script valid under a flag set is valid under any subset (every flag only restricts), so
//! valid vectors run with the consensus part of their flags; an invalid vector runs when all
//! the flags it needs are consensus flags, and is counted as skipped (with the reason)
//! otherwise.

use std::collections::BTreeMap;

use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::Hash as _;
use bitcoin::script::Builder;
use bitcoin::{
    absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};
use btcmpc_regtest::chain::consensus::{
    check_transaction, map_script_flag, verify_scripts, FlagMapping, CONSENSUS_FLAGS,
    CORE_FLAG_NAMES,
};
use serde_json::Value;

#[path = "../../testdata/bitcoin-core/vectors.rs"]
mod core_vectors;
use core_vectors::{load, op_names, parse_script};

const P2SH: u32 = bitcoinconsensus::VERIFY_P2SH;
const WITNESS: u32 = bitcoinconsensus::VERIFY_WITNESS;

/// Splits a flag list into (consensus bits, policy-only names); panics on a name Core does not
/// know, which would be a broken mapping.
fn flags(list: &str) -> (u32, Vec<String>) {
    let mut bits = 0;
    let mut policy = Vec::new();
    for name in list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != "NONE")
    {
        match map_script_flag(name) {
            FlagMapping::Consensus(b) => bits |= b,
            FlagMapping::PolicyOnly => policy.push(name.to_owned()),
            _ => panic!("unknown flag {name}"),
        }
    }
    (bits, policy)
}

/// Core's `TrimFlags`: WITNESS needs P2SH.
fn trim(mut f: u32) -> u32 {
    if f & P2SH == 0 {
        f &= !WITNESS;
    }
    f
}

struct TxVector {
    tx: Transaction,
    spent: Vec<TxOut>,
    flags: String,
    text: String,
}

fn tx_vectors(name: &str) -> (Vec<TxVector>, usize) {
    let ops = op_names();
    let mut out = Vec::new();
    let mut undecodable = 0;
    for v in load(name) {
        let Some(arr) = v.as_array() else { continue };
        if !arr[0].is_array() {
            continue; // a comment
        }
        let text = v.to_string();
        let mut prevouts: BTreeMap<OutPoint, TxOut> = BTreeMap::new();
        for input in arr[0].as_array().expect("inputs") {
            let i = input.as_array().expect("input");
            let txid: Txid = i[0].as_str().expect("txid").parse().expect("txid hex");
            let vout = i[1].as_i64().expect("vout") as u32; // -1 is the null prevout
            let spk = parse_script(i[2].as_str().expect("script"), &ops).expect(&text);
            let value = i.get(3).and_then(Value::as_u64).unwrap_or(0);
            prevouts.insert(
                OutPoint::new(txid, vout),
                TxOut {
                    value: Amount::from_sat(value),
                    script_pubkey: spk,
                },
            );
        }
        let raw = hex::decode(arr[1].as_str().expect("tx hex")).expect("hex");
        let Ok(tx) = deserialize::<Transaction>(&raw) else {
            undecodable += 1;
            continue;
        };
        let spent: Vec<TxOut> = tx
            .input
            .iter()
            .map(|i| {
                prevouts
                    .get(&i.previous_output)
                    .cloned()
                    .expect("prevout in vector")
            })
            .collect();
        out.push(TxVector {
            tx,
            spent,
            flags: arr[2].as_str().expect("flags").to_owned(),
            text,
        });
    }
    (out, undecodable)
}

#[test]
fn flag_mapping_covers_core_flags() {
    let consensus: Vec<&str> = CORE_FLAG_NAMES
        .iter()
        .copied()
        .filter(|n| matches!(map_script_flag(n), FlagMapping::Consensus(_)))
        .collect();
    assert_eq!(
        consensus,
        [
            "P2SH",
            "DERSIG",
            "NULLDUMMY",
            "CHECKLOCKTIMEVERIFY",
            "CHECKSEQUENCEVERIFY",
            "WITNESS",
            "TAPROOT"
        ]
    );
    let all: u32 = consensus
        .iter()
        .map(|n| match map_script_flag(n) {
            FlagMapping::Consensus(b) => b,
            _ => 0,
        })
        .sum();
    assert_eq!(
        all, CONSENSUS_FLAGS,
        "the node verifies with every consensus flag"
    );
    assert_eq!(map_script_flag("LOW_S"), FlagMapping::PolicyOnly);
    assert_eq!(map_script_flag("NOT_A_FLAG"), FlagMapping::Unknown);
}

#[test]
fn core_tx_valid_vectors() {
    let (vectors, undecodable) = tx_vectors("tx_valid.json");
    assert_eq!(undecodable, 0, "every valid transaction decodes");
    let (mut run, mut maximal_checked, mut maximal_skipped) = (0, 0, 0);
    for v in &vectors {
        check_transaction(&v.tx).unwrap_or_else(|e| panic!("{e}: {}", v.text));
        // Verify with every flag except the excluded ones: the consensus part of that set.
        let (excluded, _) = flags(&v.flags);
        let verify = trim(CONSENSUS_FLAGS & !excluded);
        verify_scripts(&v.tx, &v.spent, verify).unwrap_or_else(|e| {
            panic!(
                "valid vector failed with flags {verify:#x}: {e:?}: {}",
                v.text
            )
        });
        // Removing any flag keeps it valid.
        for bit in (0..32).map(|b| 1u32 << b).filter(|b| verify & b != 0) {
            verify_scripts(&v.tx, &v.spent, trim(verify & !bit)).unwrap_or_else(|e| {
                panic!(
                    "valid vector failed with flag {bit:#x} unset: {e:?}: {}",
                    v.text
                )
            });
        }
        // Flags are maximal: adding back an excluded consensus flag makes it fail, unless the
        // failure needs a policy flag too (then Core's check cannot be reproduced here).
        for bit in (0..32).map(|b| 1u32 << b).filter(|b| excluded & b != 0) {
            let with = verify | bit | if bit == WITNESS { P2SH } else { 0 };
            if verify_scripts(&v.tx, &v.spent, with).is_err() {
                maximal_checked += 1;
            } else {
                maximal_skipped += 1;
            }
        }
        run += 1;
    }
    println!(
        "tx_valid: {run} vectors run; flag maximality: {maximal_checked} checked, \
         {maximal_skipped} skipped (the failure needs a policy flag bitcoinconsensus lacks)"
    );
    assert!(run > 100);
}

#[test]
fn core_tx_invalid_vectors() {
    let (vectors, undecodable) = tx_vectors("tx_invalid.json");
    let (mut badtx, mut run, mut subset_fail) = (0, 0, 0);
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for v in &vectors {
        if v.flags == "BADTX" {
            assert!(
                check_transaction(&v.tx).is_err(),
                "BADTX passed the node's checks: {}",
                v.text
            );
            badtx += 1;
            continue;
        }
        check_transaction(&v.tx).unwrap_or_else(|e| panic!("{e}: {}", v.text));
        let (needed, policy) = flags(&v.flags);
        // Core's FillFlags: WITNESS implies P2SH.
        let needed = if needed & WITNESS != 0 {
            needed | P2SH
        } else {
            needed
        };
        if policy.is_empty() {
            assert!(
                verify_scripts(&v.tx, &v.spent, needed).is_err(),
                "invalid vector passed with {needed:#x}: {}",
                v.text
            );
            // Adding flags never makes it valid.
            for bit in (0..32)
                .map(|b| 1u32 << b)
                .filter(|b| CONSENSUS_FLAGS & b != 0)
            {
                let more = needed | bit | if bit == WITNESS { P2SH } else { 0 };
                assert!(verify_scripts(&v.tx, &v.spent, more).is_err(), "{}", v.text);
            }
            run += 1;
        } else if verify_scripts(&v.tx, &v.spent, trim(needed)).is_err() {
            // Already invalid under the consensus part of its flags.
            subset_fail += 1;
        } else {
            *skipped
                .entry(format!("needs policy flag(s) {}", policy.join(",")))
                .or_default() += 1;
        }
    }
    let total_skipped: usize = skipped.values().sum();
    println!(
        "tx_invalid: {badtx} BADTX refused by check_transaction, {run} run with their flags, \
         {subset_fail} invalid already under the consensus part of their flags, \
         {undecodable} not decodable (refused at deserialization), {total_skipped} skipped:"
    );
    for (reason, n) in &skipped {
        println!("  skipped {n}: {reason}");
    }
    assert!(badtx > 0 && run > 50);
    // Every tx_invalid vector deserializes; a decoding regression must not pass as "refused".
    assert_eq!(
        undecodable, 0,
        "tx_invalid vectors refused at deserialization"
    );
}

#[test]
fn core_script_tests() {
    let ops = op_names();
    let (mut ok_run, mut fail_run, mut ok_subset) = (0, 0, 0);
    let mut unparsable = 0usize;
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut skip = |why: &str| *skipped.entry(why.to_owned()).or_default() += 1;
    for v in load("script_tests.json") {
        let Some(arr) = v.as_array() else { continue };
        if arr.len() < 4 {
            continue; // a comment
        }
        let text = v.to_string();
        let (witness, amount, rest) = match arr[0].as_array() {
            Some(w) => {
                let (last, items) = w.split_last().expect("witness with amount");
                let amount = Amount::from_btc(last.as_f64().expect("amount")).expect("amount");
                let items: Option<Vec<Vec<u8>>> = items
                    .iter()
                    .map(|i| i.as_str().and_then(|s| hex::decode(s).ok()))
                    .collect();
                (items, amount, &arr[1..])
            }
            None => (Some(vec![]), Amount::ZERO, &arr[..]),
        };
        let Some(witness) = witness else {
            skip("taproot placeholder (#SCRIPT#/#CONTROLBLOCK#) in the witness");
            continue;
        };
        let (sig, spk) = match (
            parse_script(rest[0].as_str().expect("scriptSig"), &ops),
            parse_script(rest[1].as_str().expect("scriptPubKey"), &ops),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            _ => {
                unparsable += 1;
                skip("script text Core's ParseScript also refuses");
                continue;
            }
        };
        let (bits, policy) = flags(rest[2].as_str().expect("flags"));
        let expect_ok = rest[3].as_str() == Some("OK");
        if bits & WITNESS != 0 && bits & P2SH == 0 {
            skip("WITNESS without P2SH (an invalid combination for the library)");
            continue;
        }
        if !policy.is_empty() && !expect_ok {
            skip("failure needs a policy flag bitcoinconsensus lacks");
            continue;
        }
        // Core's BuildCreditingTransaction / BuildSpendingTransaction.
        let credit = Transaction {
            version: transaction::Version::ONE,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: Builder::new().push_int(0).push_int(0).into_script(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: amount,
                script_pubkey: spk,
            }],
        };
        let spend = Transaction {
            version: transaction::Version::ONE,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(credit.compute_txid(), 0),
                script_sig: sig,
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&witness),
            }],
            output: vec![TxOut {
                value: amount,
                script_pubkey: ScriptBuf::new(),
            }],
        };
        let result = verify_scripts(&spend, &credit.output, bits);
        if expect_ok {
            assert!(
                result.is_ok(),
                "script test failed with flags {bits:#x}: {text}"
            );
            if policy.is_empty() {
                ok_run += 1;
            } else {
                ok_subset += 1;
            }
        } else {
            assert!(
                result.is_err(),
                "script test passed but Core says it fails: {text}"
            );
            fail_run += 1;
        }
    }
    let total_skipped: usize = skipped.values().sum();
    println!(
        "script_tests: {ok_run} OK and {fail_run} failing vectors run with their flags, \
         {ok_subset} OK vectors run with the consensus part of their flags, \
         {unparsable} with script text the local parser refuses, {total_skipped} skipped:"
    );
    for (reason, n) in &skipped {
        println!("  skipped {n}: {reason}");
    }
    let _ = Txid::all_zeros();
    assert!(ok_run + fail_run > 100);
    // The local parser reads every script text of script_tests.json; a parser regression must
    // fail here rather than be counted as a vector Core's ParseScript refuses too.
    assert_eq!(unparsable, 0, "script texts the local parser refuses");
}
