//! Bitcoin Core's `tx_valid.json` through `verify_spend`: our flag set and our way of passing
//! spent outputs to `bitcoinconsensus` give Core's own verdicts.

use bitcoin::consensus::deserialize;
use bitcoin::{Amount, OutPoint, Transaction, TxOut, Txid};
use btcmpc_contracts::verify_spend;
use serde_json::Value;

#[path = "../../testdata/bitcoin-core/vectors.rs"]
mod core_vectors;

/// Flags whose exclusion means the vector is valid only without one of our consensus flags.
const OURS: [&str; 7] = [
    "P2SH",
    "DERSIG",
    "NULLDUMMY",
    "CHECKLOCKTIMEVERIFY",
    "CHECKSEQUENCEVERIFY",
    "WITNESS",
    "TAPROOT",
];

#[test]
fn core_tx_valid_vectors_pass_with_our_flags() {
    let vectors = core_vectors::load("tx_valid.json");
    let ops = core_vectors::op_names();
    let (mut checked, mut skipped) = (0, 0);
    for v in &vectors {
        let Some(prevouts) = v[0].as_array() else {
            continue; // a comment line
        };
        let excluded = v[2].as_str().unwrap();
        if excluded.split(',').any(|f| OURS.contains(&f)) {
            skipped += 1;
            continue;
        }
        let tx_bytes: Vec<u8> = {
            let hex = v[1].as_str().unwrap();
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        };
        let tx: Transaction = deserialize(&tx_bytes).unwrap();
        let known: Vec<(OutPoint, TxOut)> = prevouts
            .iter()
            .map(|p| {
                let outpoint = OutPoint {
                    txid: p[0].as_str().unwrap().parse::<Txid>().unwrap(),
                    vout: p[1].as_i64().unwrap() as u32,
                };
                let txout = TxOut {
                    value: Amount::from_sat(p.get(3).and_then(Value::as_u64).unwrap_or(0)),
                    script_pubkey: core_vectors::parse_script(p[2].as_str().unwrap(), &ops)
                        .unwrap(),
                };
                (outpoint, txout)
            })
            .collect();
        let spent: Vec<TxOut> = tx
            .input
            .iter()
            .map(|i| {
                known
                    .iter()
                    .find(|(o, _)| *o == i.previous_output)
                    .map(|(_, t)| t.clone())
                    .expect("every input's prevout is listed")
            })
            .collect();
        if let Err(e) = verify_spend(&tx, &spent) {
            panic!("Core says valid, we refuse: {e}\n{v}");
        }
        checked += 1;
    }
    assert!(checked > 60, "checked {checked}, skipped {skipped}");
}
