//! Build + sign + finalize + verify a taproot escrow claim, the descriptor and its spend data
//! compiled once outside the loop. Also the refund, the 2-of-3 slash and the anchor
//! extension, for comparison.

// criterion_group! defines a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, TxOut, Txid};
use btcmpc_contracts::{
    sign_input, Anchor, Bond, ClaimOrRefund, CompiledContract, Contract, Height, InternalKey, Utxo,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

// The test keys of the tests: one helper for every signed spend.
#[path = "../tests/common/mod.rs"]
mod common;
use common::keypair;

fn utxo(c: &CompiledContract) -> Utxo {
    Utxo {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([7; 32]),
            vout: 0,
        },
        txout: TxOut {
            value: Amount::from_sat(100_000),
            script_pubkey: c.script_pubkey().clone(),
        },
    }
}

fn bench(c: &mut Criterion) {
    let preimage = [9u8; 32];
    let receiver = keypair(1);
    let sender = keypair(2);
    let rate = FeeRate::from_sat_per_vb(2).expect("small fee rate");
    let escrow = Contract::ClaimOrRefund(ClaimOrRefund {
        receiver: receiver.public_key(),
        sender: sender.public_key(),
        hash: sha256::Hash::hash(&preimage),
        timeout: Height::new(1_000).expect("valid height"),
        internal_key: InternalKey::NumsTweaked {
            r: SecretKey::from_slice(&[3; 32]).expect("valid scalar"),
        },
    })
    .compile()
    .expect("escrow compiles");
    let escrow_utxo = utxo(&escrow);
    let to = ScriptBuf::new_p2tr(&Secp256k1::new(), receiver.x_only_public_key().0, None);

    let mut group = c.benchmark_group("spend");
    group.throughput(Throughput::Elements(1));
    group.bench_function("claim", |b| {
        b.iter(|| {
            let (mut psbt, _) = escrow
                .build_claim(&escrow_utxo, &preimage, to.clone(), rate)
                .expect("claim builds");
            sign_input(&mut psbt, 0, &receiver).expect("receiver signs");
            black_box(escrow.finalize_and_verify(psbt).expect("claim verifies"))
        })
    });
    group.bench_function("refund", |b| {
        b.iter(|| {
            let (mut psbt, _) = escrow
                .build_refund(&escrow_utxo, to.clone(), rate)
                .expect("refund builds");
            sign_input(&mut psbt, 0, &sender).expect("sender signs");
            black_box(escrow.finalize_and_verify(psbt).expect("refund verifies"))
        })
    });

    let judges = [keypair(11), keypair(12), keypair(13)];
    let bond = Contract::Bond(Bond {
        party: keypair(10).public_key(),
        judges: judges.iter().map(Keypair::public_key).collect(),
        k: 2,
        exit: Height::new(5_000).expect("valid height"),
        internal_key: InternalKey::Nums,
    })
    .compile()
    .expect("bond compiles");
    let bond_utxo = utxo(&bond);
    group.bench_function("slash_2_of_3", |b| {
        b.iter(|| {
            let (mut psbt, _) = bond
                .build_slash(&bond_utxo, to.clone(), Amount::from_sat(40_000), rate)
                .expect("slash builds");
            sign_input(&mut psbt, 0, &judges[0]).expect("judge signs");
            sign_input(&mut psbt, 0, &judges[2]).expect("judge signs");
            black_box(bond.finalize_and_verify(psbt).expect("slash verifies"))
        })
    });

    let owner = keypair(20);
    let anchor = Contract::Anchor(Anchor {
        key: owner.public_key(),
    })
    .compile()
    .expect("anchor compiles");
    let anchor_utxo = utxo(&anchor);
    group.bench_function("anchor_extend", |b| {
        b.iter(|| {
            let (mut psbt, _) = anchor
                .build_anchor_extend(&anchor_utxo, b"BMPC\x01", rate, None)
                .expect("extension builds");
            sign_input(&mut psbt, 0, &owner).expect("owner signs");
            black_box(
                anchor
                    .finalize_and_verify(psbt)
                    .expect("extension verifies"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
