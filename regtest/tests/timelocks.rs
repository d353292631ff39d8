//! Timelock boundaries in the style of Bitcoin Core's `feature_cltv.py` and
//! `feature_csv_activation.py`, with block times driven by `set_mocktime`: each lock is refused
//! one block (or one second of median time past) short and accepted exactly at the lock, by
//! the mempool (`test_mempool_accept`) and in a mined block (`generate_block`).

mod support;

use bitcoin::opcodes::all::{OP_CLTV, OP_CSV, OP_DROP};
use bitcoin::script::Builder;
use bitcoin::{
    absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use btcmpc_regtest::Node;
use support::{coinbase, funded_node, Key};

const VALUE: Amount = Amount::from_sat(100_000_000);
const FEE: Amount = Amount::from_sat(2_000);

/// `<lock> OP_CHECKLOCKTIMEVERIFY OP_DROP OP_TRUE` or the CSV equivalent.
fn lock_script(lock: i64, csv: bool) -> ScriptBuf {
    Builder::new()
        .push_int(lock)
        .push_opcode(if csv { OP_CSV } else { OP_CLTV })
        .push_opcode(OP_DROP)
        .push_int(1)
        .into_script()
}

/// A time a day after the tip: mocktime must not go below the chain's median time past.
fn base_time(node: &Node) -> u32 {
    node.tip().time + 86_400
}

/// Mines one block at exactly `time`.
fn mine_at(node: &Node, key: &Key, time: u32) {
    node.set_mocktime(u64::from(time));
    node.generate_to_script(1, &key.spk).unwrap();
    assert_eq!(node.tip().time, time);
}

/// Mines 11 blocks one second apart so that the tip's median time past is `target`.
fn set_mtp(node: &Node, key: &Key, target: u32) {
    for t in target - 5..=target + 5 {
        mine_at(node, key, t);
    }
    assert_eq!(node.tip().median_time_past, target);
}

/// Pays a mature coinbase into a P2WSH output with `script`, mined in the next block (at
/// `time` if given); returns the output and the height of its block.
fn fund(node: &Node, key: &Key, script: &ScriptBuf, time: Option<u32>) -> (OutPoint, TxOut, u32) {
    let height = node.tip().height;
    let (op, out) = coinbase(node, height - 100);
    let wsh = ScriptBuf::new_p2wsh(&script.wscript_hash());
    let tx = key.spend(
        &[(op, out.clone())],
        vec![
            TxOut {
                value: VALUE,
                script_pubkey: wsh.clone(),
            },
            TxOut {
                value: out.value - VALUE - FEE,
                script_pubkey: key.spk.clone(),
            },
        ],
    );
    node.send_raw_transaction(&tx, None).unwrap();
    match time {
        Some(t) => mine_at(node, key, t),
        None => {
            node.generate_to_script(1, &key.spk).unwrap();
        }
    }
    assert!(node.mempool().is_empty());
    (
        OutPoint::new(tx.compute_txid(), 0),
        tx.output[0].clone(),
        node.tip().height,
    )
}

/// Spends the P2WSH `script` output with the given version, nLockTime and nSequence.
fn spend(
    op: OutPoint,
    script: &ScriptBuf,
    to: &ScriptBuf,
    version: i32,
    lock_time: u32,
    sequence: u32,
) -> Transaction {
    Transaction {
        version: transaction::Version(version),
        lock_time: absolute::LockTime::from_consensus(lock_time),
        input: vec![TxIn {
            previous_output: op,
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::from_slice(&[script.as_bytes()]),
        }],
        output: vec![TxOut {
            value: VALUE - FEE,
            script_pubkey: to.clone(),
        }],
    }
}

/// Asserts the mempool and a block both refuse `tx`, the mempool with `mempool_reason`.
fn refused(node: &Node, key: &Key, tx: &Transaction, mempool_reason: &str, block_reason: &str) {
    let tip = node.tip();
    let e = node.test_mempool_accept(tx).unwrap_err();
    assert_eq!(
        e.reason, mempool_reason,
        "at height {} mtp {}",
        tip.height, tip.median_time_past
    );
    assert_eq!(e.code, -26);
    let e = node.generate_block(&key.spk, vec![tx.clone()]).unwrap_err();
    assert!(
        e.reason.contains(block_reason),
        "{} does not name {block_reason}",
        e.reason
    );
    assert_eq!(node.tip(), tip, "a refused block changes nothing");
}

/// Asserts the mempool accepts `tx` and a block with it connects.
fn accepted(node: &Node, key: &Key, tx: &Transaction) {
    node.test_mempool_accept(tx).unwrap();
    let hash = node.generate_block(&key.spk, vec![tx.clone()]).unwrap();
    assert_eq!(node.tip().hash, hash);
    assert!(node
        .transaction(&tx.compute_txid())
        .unwrap()
        .confirmation
        .is_some());
}

#[test]
fn cltv_height_boundary() {
    let key = Key::new(40);
    let node = funded_node(&key);
    let lock = i64::from(node.tip().height + 10);
    let script = lock_script(lock, false);
    let (op, _, _) = fund(&node, &key, &script, None);
    let tx = spend(op, &script, &key.spk, 2, lock as u32, 0xffff_fffe);
    // Mine to one block short: the next block would have height `lock`, and nLockTime = lock
    // is final only in blocks above it.
    while i64::from(node.tip().height) < lock - 1 {
        node.generate_to_script(1, &key.spk).unwrap();
    }
    refused(&node, &key, &tx, "non-final", "bad-txns-nonfinal");
    // The script's CLTV also checks nLockTime: one less than the script's lock fails the
    // interpreter even where the transaction is final.
    node.generate_to_script(1, &key.spk).unwrap();
    let short = spend(op, &script, &key.spk, 2, lock as u32 - 1, 0xffff_fffe);
    refused(
        &node,
        &key,
        &short,
        "mempool-script-verify-flag-failed (Script evaluated without error but finished with a false/empty top stack element)",
        "block-script-verify-flag-failed",
    );
    // Exactly at the lock.
    accepted(&node, &key, &tx);
}

#[test]
fn cltv_time_boundary() {
    let key = Key::new(41);
    let node = funded_node(&key);
    let base = base_time(&node);
    set_mtp(&node, &key, base);
    let lock = base + 1_000;
    let script = lock_script(i64::from(lock), false);
    let (op, _, _) = fund(&node, &key, &script, Some(base + 6));
    let tx = spend(op, &script, &key.spk, 2, lock, 0xffff_fffe);
    // Median time past equal to the lock: not yet final (BIP113 needs lock < MTP).
    set_mtp(&node, &key, lock);
    refused(&node, &key, &tx, "non-final", "bad-txns-nonfinal");
    // One second later.
    mine_at(&node, &key, lock + 6);
    assert_eq!(node.tip().median_time_past, lock + 1);
    accepted(&node, &key, &tx);
}

#[test]
fn csv_height_boundary() {
    let key = Key::new(42);
    let node = funded_node(&key);
    let blocks = 5u32;
    let script = lock_script(i64::from(blocks), true);
    let (op, _, coin_height) = fund(&node, &key, &script, None);
    let tx = spend(op, &script, &key.spk, 2, 0, blocks);
    // The spend may be in block coin_height + blocks, i.e. with the tip at
    // coin_height + blocks - 1; one block short is a tip at coin_height + blocks - 2.
    while node.tip().height < coin_height + blocks - 2 {
        node.generate_to_script(1, &key.spk).unwrap();
    }
    refused(&node, &key, &tx, "non-BIP68-final", "bad-txns-nonfinal");
    node.generate_to_script(1, &key.spk).unwrap();
    accepted(&node, &key, &tx);
}

#[test]
fn csv_time_boundary() {
    let key = Key::new(43);
    let node = funded_node(&key);
    let base = base_time(&node);
    // The coin's block's parent has median time past base: relative time counts from it.
    set_mtp(&node, &key, base);
    let units = 2u32; // 2 * 512 seconds
    let seq = (1 << 22) | units;
    let script = lock_script(i64::from(seq), true);
    let (op, _, _) = fund(&node, &key, &script, Some(base + 6));
    let tx = spend(op, &script, &key.spk, 2, 0, seq);
    let unlock = base + units * 512;
    set_mtp(&node, &key, unlock - 1);
    refused(&node, &key, &tx, "non-BIP68-final", "bad-txns-nonfinal");
    mine_at(&node, &key, unlock + 5);
    assert_eq!(node.tip().median_time_past, unlock);
    accepted(&node, &key, &tx);
}

#[test]
fn csv_in_version_1_fails_at_every_height() {
    let key = Key::new(44);
    let node = funded_node(&key);
    let blocks = 3u32;
    let script = lock_script(i64::from(blocks), true);
    let (op, _, coin_height) = fund(&node, &key, &script, None);
    let tx = spend(op, &script, &key.spk, 1, 0, blocks);
    let v2 = spend(op, &script, &key.spk, 2, 0, blocks);
    for _ in 0..blocks + 3 {
        // Version 1 carries no relative lock (no BIP68 refusal) but its CSV always fails.
        refused(
            &node,
            &key,
            &tx,
            "mempool-script-verify-flag-failed (Script evaluated without error but finished with a false/empty top stack element)",
            "block-script-verify-flag-failed",
        );
        node.generate_to_script(1, &key.spk).unwrap();
    }
    assert!(node.tip().height >= coin_height + blocks + 2);
    // The same spend as version 2 is fine by then.
    accepted(&node, &key, &v2);
}
