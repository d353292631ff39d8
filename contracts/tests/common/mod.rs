//! Shared test fixtures: deterministic keys, funding outputs and a wallet stand-in.
#![allow(dead_code)]

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, TxOut, Txid};
use btcmpc_contracts::{
    Anchor, Bond, ClaimOrRefund, CompiledContract, Contract, Height, InternalKey, Utxo,
};

pub fn keypair(seed: u8) -> Keypair {
    let secp = Secp256k1::new();
    let mut bytes = [0u8; 32];
    bytes[31] = seed;
    bytes[0] = 0x11;
    Keypair::from_secret_key(&secp, &SecretKey::from_slice(&bytes).expect("valid scalar"))
}

pub fn fee_rate() -> FeeRate {
    FeeRate::from_sat_per_vb(3).expect("small fee rate")
}

pub fn p2tr_of(seed: u8) -> ScriptBuf {
    ScriptBuf::new_p2tr(&Secp256k1::new(), keypair(seed).x_only_public_key().0, None)
}

pub fn utxo_of(contract: &CompiledContract, sats: u64, tag: u8) -> Utxo {
    Utxo {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([tag; 32]),
            vout: u32::from(tag),
        },
        txout: TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: contract.script_pubkey().clone(),
        },
    }
}

pub const PREIMAGE: [u8; 32] = [0x5a; 32];
pub const TIMEOUT: u32 = 1_000;
pub const EXIT: u32 = 5_000;

pub fn r() -> SecretKey {
    SecretKey::from_slice(&[0x33; 32]).expect("valid scalar")
}

/// receiver = key 1, sender = key 2.
pub fn escrow() -> CompiledContract {
    Contract::ClaimOrRefund(ClaimOrRefund {
        receiver: keypair(1).public_key(),
        sender: keypair(2).public_key(),
        hash: sha256::Hash::hash(&PREIMAGE),
        timeout: Height::new(TIMEOUT).expect("valid height"),
        internal_key: InternalKey::NumsTweaked { r: r() },
    })
    .compile()
    .expect("escrow compiles")
}

/// party = key 10, judges = keys 11, 12, 13, k = 2.
pub fn bond() -> CompiledContract {
    Contract::Bond(Bond {
        party: keypair(10).public_key(),
        judges: vec![
            keypair(11).public_key(),
            keypair(12).public_key(),
            keypair(13).public_key(),
        ],
        k: 2,
        exit: Height::new(EXIT).expect("valid height"),
        internal_key: InternalKey::NumsTweaked { r: r() },
    })
    .compile()
    .expect("bond compiles")
}

/// anchor key = key 20.
pub fn anchor() -> CompiledContract {
    Contract::Anchor(Anchor {
        key: keypair(20).public_key(),
    })
    .compile()
    .expect("anchor compiles")
}
