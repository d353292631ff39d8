//! Bitcoin Core's `tx_valid.json` through `verify_spend`: our flag set and our way of passing
//! spent outputs to `bitcoinconsensus` give Core's own verdicts.

use bitcoin::consensus::deserialize;
use bitcoin::script::Builder;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use btcmpc_contracts::verify_spend;
use serde_json::Value;

/// Core's asm-like script notation (`ParseScript` in `core_read.cpp`), for the opcodes the
/// vectors use.
fn parse_script(asm: &str) -> ScriptBuf {
    let mut bytes = Vec::new();
    for token in asm.split_whitespace() {
        if let Some(hex) = token.strip_prefix("0x") {
            bytes.extend(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex byte")),
            );
        } else if let Ok(n) = token.parse::<i64>() {
            bytes.extend(Builder::new().push_int(n).into_bytes());
        } else {
            let name = token.strip_prefix("OP_").unwrap_or(token);
            let op: u8 = match name {
                "IF" => 0x63,
                "ENDIF" => 0x68,
                "DROP" => 0x75,
                "DUP" => 0x76,
                "EQUAL" => 0x87,
                "EQUALVERIFY" => 0x88,
                "1ADD" => 0x8b,
                "1SUB" => 0x8c,
                "NOT" => 0x91,
                "ADD" => 0x93,
                "HASH160" => 0xa9,
                "CODESEPARATOR" => 0xab,
                "CHECKSIG" => 0xac,
                "CHECKSIGVERIFY" => 0xad,
                "CHECKMULTISIG" => 0xae,
                "CHECKLOCKTIMEVERIFY" => 0xb1,
                "CHECKSEQUENCEVERIFY" => 0xb2,
                other => panic!("opcode {other} is not in this parser's table"),
            };
            bytes.push(op);
        }
    }
    ScriptBuf::from_bytes(bytes)
}

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
    let text = include_str!("data/bitcoin-core/tx_valid.json");
    let vectors: Vec<Value> = serde_json::from_str(text).unwrap();
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
                    script_pubkey: parse_script(p[2].as_str().unwrap()),
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
