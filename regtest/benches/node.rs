//! Node benchmarks: mempool acceptance of 1-input taproot key-path spends
//! (`send_raw_transaction`, `test_mempool_accept`), mining a block of 2,000 of them, and
//! restarting a node with 10,000 blocks.
//!
//! `cargo bench -p btcmpc-regtest --bench node -- --warm-up-time 1 --measurement-time 3`

// criterion_group! defines a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use bitcoin::hashes::Hash as _;
use bitcoin::key::{Keypair, Secp256k1, TapTweak, XOnlyPublicKey};
use bitcoin::secp256k1::{All, Message, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use btcmpc_regtest::{Node, NodeConfig};
use criterion::{criterion_group, criterion_main, Criterion};

struct Key {
    secp: Secp256k1<All>,
    keypair: Keypair,
    spk: ScriptBuf,
}

impl Key {
    fn new() -> Key {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&[0x42; 32]).expect("valid key");
        let keypair = Keypair::from_secret_key(&secp, &sk);
        let (xonly, _) = XOnlyPublicKey::from_keypair(&keypair);
        let spk = ScriptBuf::new_p2tr(&secp, xonly, None);
        Key { secp, keypair, spk }
    }

    fn sign(&self, tx: &mut Transaction, prevouts: &[TxOut]) {
        let tweaked = self.keypair.tap_tweak(&self.secp, None).to_keypair();
        for i in 0..tx.input.len() {
            let sighash = SighashCache::new(&*tx)
                .taproot_key_spend_signature_hash(
                    i,
                    &Prevouts::All(prevouts),
                    TapSighashType::Default,
                )
                .expect("sighash");
            let sig = self
                .secp
                .sign_schnorr_no_aux_rand(&Message::from_digest(sighash.to_byte_array()), &tweaked);
            tx.input[i].witness = Witness::from_slice(&[sig.as_ref()]);
        }
    }
}

/// A node holding at least `n` confirmed key-path outputs, and one signed 1-in-1-out spend
/// of each.
fn fixture(key: &Key, n: usize, datadir: Option<&std::path::Path>) -> (Node, Vec<Transaction>) {
    let cfg = match datadir {
        Some(d) => NodeConfig::with_datadir(d),
        None => NodeConfig::in_memory(),
    };
    let node = Node::open(cfg).expect("node");
    let per_fanout = 5_000usize;
    let fanouts = n.div_ceil(per_fanout).max(1);
    node.generate_to_script(100 + fanouts as u32, &key.spk)
        .expect("mine");
    let mut spends = Vec::with_capacity(n);
    let mut fan_txs = Vec::new();
    for f in 0..fanouts {
        let cb_hash = node.block_hash(1 + f as u32).expect("block");
        let (block, _) = node.block(&cb_hash).expect("block");
        let cb = &block.txdata[0];
        let value = cb.output[0].value;
        let each = Amount::from_sat((value.to_sat() - 1_000_000) / per_fanout as u64);
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(cb.compute_txid(), 0),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output: vec![
                TxOut {
                    value: each,
                    script_pubkey: key.spk.clone()
                };
                per_fanout
            ],
        };
        key.sign(&mut tx, &[cb.output[0].clone()]);
        fan_txs.push(tx);
    }
    node.generate_block(&key.spk, fan_txs.clone())
        .expect("fan-out block");
    'outer: for tx in &fan_txs {
        let txid = tx.compute_txid();
        for (vout, out) in tx.output.iter().enumerate() {
            if spends.len() == n {
                break 'outer;
            }
            let mut spend = Transaction {
                version: transaction::Version::TWO,
                lock_time: absolute::LockTime::ZERO,
                input: vec![TxIn {
                    previous_output: OutPoint::new(txid, vout as u32),
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                }],
                output: vec![TxOut {
                    value: out.value - Amount::from_sat(500),
                    script_pubkey: key.spk.clone(),
                }],
            };
            key.sign(&mut spend, std::slice::from_ref(out));
            spends.push(spend);
        }
    }
    (node, spends)
}

fn mempool_acceptance(c: &mut Criterion) {
    let key = Key::new();
    let mut g = c.benchmark_group("mempool");
    g.sample_size(10);
    g.bench_function("send_raw_transaction 1-in taproot key path", |b| {
        b.iter_custom(|iters| {
            let (node, txs) = fixture(&key, iters as usize, None);
            let start = Instant::now();
            for tx in &txs {
                node.send_raw_transaction(tx, None).expect("accepted");
            }
            start.elapsed()
        })
    });
    g.bench_function("test_mempool_accept 1-in taproot key path", |b| {
        b.iter_custom(|iters| {
            let (node, txs) = fixture(&key, iters as usize, None);
            let start = Instant::now();
            for tx in &txs {
                node.test_mempool_accept(tx).expect("acceptable");
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn mining(c: &mut Criterion) {
    let key = Key::new();
    let (node, txs) = fixture(&key, 2_000, None);
    for tx in &txs {
        node.send_raw_transaction(tx, None).expect("accepted");
    }
    let mut g = c.benchmark_group("miner");
    g.sample_size(10);
    g.bench_function("mine a block of 2,000 txs", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                assert_eq!(node.mempool().len(), 2_000);
                let start = Instant::now();
                let hash = node.generate_to_script(1, &key.spk).expect("mine")[0];
                total += start.elapsed();
                // Put the transactions back for the next round.
                node.invalidate_block(&hash).expect("invalidate");
            }
            total
        })
    });
    g.finish();
}

fn restart(c: &mut Criterion) {
    let key = Key::new();
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = Node::open(NodeConfig::with_datadir(dir.path())).expect("node");
        node.generate_to_script(10_000, &key.spk).expect("mine");
        node.shutdown().expect("flush");
    }
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.bench_function("restart with 10,000 blocks", |b| {
        b.iter(|| {
            let node = Node::open(NodeConfig::with_datadir(dir.path())).expect("reopen");
            assert_eq!(node.tip().height, 10_000);
        })
    });
    g.finish();
}

criterion_group!(benches, mempool_acceptance, mining, restart);
criterion_main!(benches);
