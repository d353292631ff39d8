//! Bitcoin Core's test vectors (this folder, copied from Core's `src/test/data/`) and Core's
//! asm-like script notation, read once for every crate's tests: include this file with
//! `#[path = "../../testdata/bitcoin-core/vectors.rs"] mod core_vectors;`.

#![allow(dead_code)] // each including test uses part of it

use std::collections::BTreeMap;

use bitcoin::opcodes::Opcode;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::ScriptBuf;
use serde_json::Value;

/// The vectors of `name` (`tx_valid.json`, `tx_invalid.json`, `script_tests.json`), comments
/// included.
pub fn load(name: &str) -> Vec<Value> {
    let path = format!(
        "{}/../testdata/bitcoin-core/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("test data present");
    serde_json::from_str::<Value>(&text)
        .expect("valid json")
        .as_array()
        .cloned()
        .expect("array")
}

/// Core's `GetOpName` names accepted by `ParseScript` (OP_RESERVED and OP_NOP..OP_CHECKSIGADD).
pub fn op_names() -> BTreeMap<String, u8> {
    let names = [
        "NOP",
        "VER",
        "IF",
        "NOTIF",
        "VERIF",
        "VERNOTIF",
        "ELSE",
        "ENDIF",
        "VERIFY",
        "RETURN",
        "TOALTSTACK",
        "FROMALTSTACK",
        "2DROP",
        "2DUP",
        "3DUP",
        "2OVER",
        "2ROT",
        "2SWAP",
        "IFDUP",
        "DEPTH",
        "DROP",
        "DUP",
        "NIP",
        "OVER",
        "PICK",
        "ROLL",
        "ROT",
        "SWAP",
        "TUCK",
        "CAT",
        "SUBSTR",
        "LEFT",
        "RIGHT",
        "SIZE",
        "INVERT",
        "AND",
        "OR",
        "XOR",
        "EQUAL",
        "EQUALVERIFY",
        "RESERVED1",
        "RESERVED2",
        "1ADD",
        "1SUB",
        "2MUL",
        "2DIV",
        "NEGATE",
        "ABS",
        "NOT",
        "0NOTEQUAL",
        "ADD",
        "SUB",
        "MUL",
        "DIV",
        "MOD",
        "LSHIFT",
        "RSHIFT",
        "BOOLAND",
        "BOOLOR",
        "NUMEQUAL",
        "NUMEQUALVERIFY",
        "NUMNOTEQUAL",
        "LESSTHAN",
        "GREATERTHAN",
        "LESSTHANOREQUAL",
        "GREATERTHANOREQUAL",
        "MIN",
        "MAX",
        "WITHIN",
        "RIPEMD160",
        "SHA1",
        "SHA256",
        "HASH160",
        "HASH256",
        "CODESEPARATOR",
        "CHECKSIG",
        "CHECKSIGVERIFY",
        "CHECKMULTISIG",
        "CHECKMULTISIGVERIFY",
        "NOP1",
        "CHECKLOCKTIMEVERIFY",
        "CHECKSEQUENCEVERIFY",
        "NOP4",
        "NOP5",
        "NOP6",
        "NOP7",
        "NOP8",
        "NOP9",
        "NOP10",
        "CHECKSIGADD",
    ];
    let mut map = BTreeMap::new();
    map.insert("RESERVED".to_owned(), 0x50);
    map.insert("OP_RESERVED".to_owned(), 0x50);
    for (i, n) in names.iter().enumerate() {
        let code = 0x61 + i as u8;
        map.insert((*n).to_owned(), code);
        map.insert(format!("OP_{n}"), code);
    }
    map
}

/// Core's `ParseScript` (core_read.cpp).
pub fn parse_script(s: &str, ops: &BTreeMap<String, u8>) -> Result<ScriptBuf, String> {
    let mut bytes: Vec<u8> = Vec::new();
    for w in s.split([' ', '\t', '\n']).filter(|w| !w.is_empty()) {
        let is_num = {
            let d = w.strip_prefix('-').unwrap_or(w);
            !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
        };
        if is_num {
            let n: i64 = w.parse().map_err(|_| format!("bad number {w}"))?;
            if !(-0xffff_ffff..=0xffff_ffff).contains(&n) {
                return Err(format!("number out of range {w}"));
            }
            bytes.extend_from_slice(Builder::new().push_int(n).as_script().as_bytes());
        } else if let Some(h) = w.strip_prefix("0x").filter(|h| !h.is_empty()) {
            bytes.extend(decode_hex(h).ok_or_else(|| format!("bad hex {w}"))?);
        } else if w.len() >= 2 && w.starts_with('\'') && w.ends_with('\'') {
            let data = PushBytesBuf::try_from(w.as_bytes()[1..w.len() - 1].to_vec())
                .map_err(|_| "push too large".to_owned())?;
            bytes.extend_from_slice(Builder::new().push_slice(data).as_script().as_bytes());
        } else if let Some(code) = ops.get(w) {
            bytes.push(Opcode::from(*code).to_u8());
        } else {
            return Err(format!("script parse error: unknown token {w:?}"));
        }
    }
    Ok(ScriptBuf::from_bytes(bytes))
}

fn decode_hex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}
