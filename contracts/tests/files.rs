//! The contract file: frozen fixtures (a test fails when an encoding changes by accident),
//! round trips, and refusal of hand-edited files naming the field.
//!
//! To regenerate the fixtures after a deliberate format change, run with
//! `BTCMPC_UPDATE_FIXTURES=1` and review the diff.

mod common;

use std::path::PathBuf;

use bitcoin::Network;
use btcmpc_contracts::{compile_policy, Contract, ContractFile, FileError, Target};
use common::*;
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn check_fixture(name: &str, text: &str) {
    let path = data(name);
    if std::env::var_os("BTCMPC_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, text).unwrap();
    }
    let frozen = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text, frozen,
        "{name} changed; if deliberate, regenerate with BTCMPC_UPDATE_FIXTURES=1"
    );
}

fn fixtures() -> Vec<(&'static str, ContractFile)> {
    vec![
        (
            "claim_or_refund.json",
            ContractFile::new(escrow().contract().clone(), Network::Regtest).unwrap(),
        ),
        (
            "bond.json",
            ContractFile::new(bond().contract().clone(), Network::Regtest).unwrap(),
        ),
        (
            "anchor.json",
            ContractFile::new(anchor().contract().clone(), Network::Bitcoin).unwrap(),
        ),
    ]
}

#[test]
fn contract_files_are_frozen() {
    for (name, file) in fixtures() {
        check_fixture(name, &file.to_json());
    }
}

#[test]
fn frozen_files_load_to_the_same_contract() {
    for (name, file) in fixtures() {
        let text = std::fs::read_to_string(data(name)).unwrap();
        let loaded = ContractFile::from_json(&text).unwrap();
        assert_eq!(loaded.contract(), file.contract(), "{name}");
        assert_eq!(loaded.network(), file.network(), "{name}");
        assert_eq!(
            loaded.compiled().script_pubkey(),
            file.compiled().script_pubkey()
        );
        assert_eq!(loaded.to_json(), text, "{name}");
    }
}

#[test]
fn user_policy_descriptors_are_frozen() {
    let a = keypair(1).public_key();
    let b = keypair(2).public_key();
    let c = keypair(3).public_key();
    let policies = [
        format!("pk({a})"),
        format!("or(pk({a}),and(pk({b}),older(144)))"),
        format!("thresh(2,pk({a}),pk({b}),pk({c}))"),
        format!(
            "or(and(pk({a}),sha256({})),and(pk({b}),after(1000)))",
            "ab".repeat(32)
        ),
    ];
    let mut out = String::new();
    for p in &policies {
        for target in [Target::Tr, Target::Wsh] {
            let compiled = compile_policy(p, target).unwrap();
            out.push_str(&format!(
                "{p}\n  {target:?} {}\n  {}\n",
                compiled.descriptor,
                compiled.address(Network::Regtest)
            ));
            for path in &compiled.paths {
                out.push_str(&format!(
                    "    {} {} {}\n",
                    path.name,
                    path.miniscript.as_deref().unwrap_or("-"),
                    path.witness_size.to_wu()
                ));
            }
        }
    }
    check_fixture("compiled_policies.txt", &out);
}

fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> Result<ContractFile, FileError> {
    let text = std::fs::read_to_string(data(name)).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    edit(&mut v);
    ContractFile::from_json(&serde_json::to_string(&v).unwrap())
}

fn refusal(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let err = edited(name, edit).unwrap_err().to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    err
}

#[test]
fn hand_edited_files_are_refused_naming_the_field() {
    let e = refusal("claim_or_refund.json", |v| {
        v["descriptor"] = Value::String(
            "tr(0250929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0)".into(),
        )
    });
    assert!(e.starts_with("descriptor: file says"), "{e}");

    let e = refusal("claim_or_refund.json", |v| {
        v["parameters"]["timeout"] = Value::from(1001)
    });
    // The parameters are the truth; every derived field now disagrees, the first one is named.
    assert!(e.starts_with("address: file says"), "{e}");

    let e = refusal("claim_or_refund.json", |v| {
        v["parameters"]["timeout"] = Value::from(0)
    });
    assert!(e.starts_with("parameters.timeout:"), "{e}");
    let e = refusal("claim_or_refund.json", |v| {
        v["parameters"]["timeout"] = Value::from(500_000_000)
    });
    assert!(e.starts_with("parameters.timeout:"), "{e}");

    let e = refusal("claim_or_refund.json", |v| {
        v["parameters"]["hash"] = Value::String("ab".repeat(31))
    });
    assert!(
        e.starts_with("parameters.hash:") && e.contains("31 bytes"),
        "{e}"
    );

    let e = refusal("claim_or_refund.json", |v| {
        v["parameters"]["receiver"] = Value::String("02".to_owned() + &"00".repeat(32))
    });
    assert!(e.starts_with("parameters.receiver:"), "{e}");

    let e = refusal("claim_or_refund.json", |v| {
        v["internal_key"]["r"] = Value::String("44".repeat(32))
    });
    assert!(e.starts_with("internal_key.key:"), "{e}");

    let e = refusal("claim_or_refund.json", |v| {
        v["network"] = Value::from("signet")
    });
    assert!(e.starts_with("address:"), "{e}");

    let e = refusal("claim_or_refund.json", |v| v["version"] = Value::from(2));
    assert!(e.starts_with("version:"), "{e}");

    let e = refusal("claim_or_refund.json", |v| {
        v["descripter"] = Value::from("x")
    });
    assert!(e.contains("descripter: unknown field"), "{e}");

    let e = refusal("claim_or_refund.json", |v| {
        v.as_object_mut().unwrap().remove("policy");
    });
    assert!(e.contains("policy: missing"), "{e}");

    let e = refusal("bond.json", |v| v["parameters"]["k"] = Value::from(4));
    assert!(e.starts_with("k: threshold 4"), "{e}");

    let e = refusal("bond.json", |v| {
        v["parameters"]["judges"][1] = Value::from("zz")
    });
    assert!(e.starts_with("parameters.judges[1]:"), "{e}");

    let e = refusal("bond.json", |v| {
        v["spend_paths"][0]["witness_weight"] = Value::from(1)
    });
    assert!(e.starts_with("spend_paths:"), "{e}");

    let e = refusal("anchor.json", |v| v["kind"] = Value::from("escrow"));
    assert!(e.contains("kind: unknown kind"), "{e}");

    let err = ContractFile::from_json("{not json")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("contract file:"), "{err}");
}

#[test]
fn every_kind_round_trips() {
    for (_, file) in fixtures() {
        let again = ContractFile::from_json(&file.to_json()).unwrap();
        assert_eq!(again.contract(), file.contract());
        let c: &Contract = again.contract();
        assert_eq!(
            c.descriptor().unwrap().to_string(),
            file.compiled().descriptor().to_string()
        );
    }
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any one-byte change to a contract file is either refused with an error or loads to
        /// a file that writes back byte for byte (whitespace, key order); it never panics and
        /// never loads to something else silently.
        #[test]
        fn edited_bytes_are_refused_or_harmless(
            which in 0usize..3,
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let name = ["claim_or_refund.json", "bond.json", "anchor.json"][which];
            let original = std::fs::read_to_string(data(name)).unwrap();
            let mut bytes = original.clone().into_bytes();
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
            if let Ok(file) = ContractFile::from_json(&text) {
                prop_assert_eq!(file.to_json(), original);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = ContractFile::from_json(&text);
        }
    }
}

/// Files written while witness weights were upper bounds (one byte more per signature) still
/// load: the weight is a reader's copy, re-derived on load, and written exact from then on.
#[test]
fn files_with_the_old_witness_weights_still_load() {
    for (name, file) in fixtures().into_iter().take(2) {
        let text = std::fs::read_to_string(data(&format!("before-exact-weights/{name}"))).unwrap();
        let loaded = ContractFile::from_json(&text).unwrap();
        assert_eq!(loaded.contract(), file.contract(), "{name}");
        assert_ne!(
            loaded.to_json(),
            text,
            "{name}: the old weights are rewritten"
        );
        assert_eq!(loaded.to_json(), file.to_json(), "{name}");
    }
}
