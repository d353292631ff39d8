//! The chain core end to end: mining, mempool acceptance and its reject reasons, indexes,
//! replacement, reorgs, persistence and crash safety.

mod support;

use bitcoin::{Amount, OutPoint, TxOut};
use btcmpc_regtest::{Node, NodeConfig, NodeEvent, ScriptHash};
use support::{coinbase, funded_node, Key};

const FEE: Amount = Amount::from_sat(1_000);

#[test]
fn genesis_and_subsidy_follow_regtest() {
    let node = Node::open(NodeConfig::in_memory()).unwrap();
    let tip = node.tip();
    assert_eq!(
        tip.hash.to_string(),
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    );
    let key = Key::new(1);
    node.generate_to_script(151, &key.spk).unwrap();
    assert_eq!(
        coinbase(&node, 149).1.value,
        Amount::from_btc(50.0).unwrap()
    );
    assert_eq!(
        coinbase(&node, 150).1.value,
        Amount::from_btc(25.0).unwrap()
    );
    // BIP34 height and the witness commitment are in every coinbase.
    let (block, h) = node.block(&node.block_hash(20).unwrap()).unwrap();
    assert_eq!(h, Some(20));
    assert_eq!(
        block.txdata[0].input[0].script_sig.as_bytes()[..2],
        [0x01, 20]
    );
    assert!(
        block.txdata[0].output.len() == 2 && block.txdata[0].output[1].script_pubkey.is_op_return()
    );
}

#[test]
fn spend_confirm_and_index() {
    let key = Key::new(2);
    let other = Key::new(3);
    let node = funded_node(&key);
    let mut events = node.subscribe();
    let (op, out) = coinbase(&node, 1);
    let tx = key.pay(op, out.value, FEE, &other.spk);
    let txid = node.send_raw_transaction(&tx, None).unwrap();
    let sh = ScriptHash::from_script(&other.spk);
    let hist = node.history(&sh);
    assert_eq!(hist.len(), 1);
    assert_eq!(
        (hist[0].txid, hist[0].height, hist[0].fee),
        (txid, 0, Some(FEE))
    );
    assert_eq!(node.balance(&sh), (0, (out.value - FEE).to_sat() as i64));
    assert_eq!(node.utxos(&sh)[0].height, 0);
    let mempool_status = node.status_hash(&sh).unwrap();
    let entry = node.mempool_entry(&txid).unwrap();
    assert_eq!(entry.fee, FEE);
    assert_eq!(entry.vsize, tx.vsize() as u64);
    // A TxAdded event names the script hash.
    let mut saw = false;
    while let Ok(e) = events.try_recv() {
        if let NodeEvent::TxAdded {
            txid: t,
            script_hashes,
        } = e
        {
            saw |= t == txid && script_hashes.contains(&sh);
        }
    }
    assert!(saw);

    let hits = node.script_cache_hits();
    let hash = node.generate_to_script(1, &key.spk).unwrap()[0];
    assert_eq!(
        node.script_cache_hits(),
        hits + 1,
        "the block reused the mempool's script check"
    );
    assert!(node.mempool().is_empty());
    let info = node.transaction(&txid).unwrap();
    let conf = info.confirmation.unwrap();
    assert_eq!(
        (conf.block_hash, conf.height, conf.position),
        (hash, 102, 1)
    );
    let hist = node.history(&sh);
    assert_eq!((hist[0].height, hist[0].fee), (102, None));
    assert_ne!(node.status_hash(&sh).unwrap(), mempool_status);
    assert_eq!(node.balance(&sh), ((out.value - FEE).to_sat() as i64, 0));
    // Merkle proof folds to the header's root.
    let (branch, pos) = node.merkle_proof(&txid, 102).unwrap();
    let (block, _) = node.block(&hash).unwrap();
    let mut acc = bitcoin::TxMerkleNode::from_raw_hash(bitcoin::hashes::Hash::from_byte_array(
        bitcoin::hashes::Hash::to_byte_array(txid),
    ));
    let mut idx = pos;
    for node_hash in branch {
        use bitcoin::hashes::{Hash, HashEngine};
        let mut e = bitcoin::TxMerkleNode::engine();
        if idx & 1 == 0 {
            e.input(acc.as_byte_array());
            e.input(node_hash.as_byte_array());
        } else {
            e.input(node_hash.as_byte_array());
            e.input(acc.as_byte_array());
        }
        acc = bitcoin::TxMerkleNode::from_engine(e);
        idx /= 2;
    }
    assert_eq!(acc, block.header.merkle_root);
    // The spent coinbase is gone, the new output is there.
    assert!(node.utxo(&op, false).is_none());
    assert_eq!(
        node.utxo(&OutPoint::new(txid, 0), true).unwrap().height,
        Some(102)
    );
}

#[test]
fn reject_reasons_match_core() {
    let key = Key::new(4);
    let node = funded_node(&key);
    let (op, out) = coinbase(&node, 1);

    // Unknown input.
    let bogus = OutPoint::new(op.txid, 7);
    let tx = key.pay(bogus, out.value, FEE, &key.spk);
    assert_eq!(
        node.test_mempool_accept(&tx).unwrap_err().reason,
        "missing-inputs"
    );
    let e = node.send_raw_transaction(&tx, None).unwrap_err();
    assert_eq!(
        (e.code, e.reason.as_str()),
        (-25, "bad-txns-inputs-missingorspent")
    );

    // Immature coinbase: block 2's coinbase has 99 confirmations at the next block... no:
    // the next block is 102, so block 3's coinbase is at depth 99.
    let (op3, out3) = coinbase(&node, 3);
    let tx = key.pay(op3, out3.value, FEE, &key.spk);
    let e = node.test_mempool_accept(&tx).unwrap_err();
    assert_eq!(e.reason, "bad-txns-premature-spend-of-coinbase");
    assert_eq!(e.code, -26);
    let (op2, out2) = coinbase(&node, 2);
    node.test_mempool_accept(&key.pay(op2, out2.value, FEE, &key.spk))
        .unwrap();

    // Value created.
    let tx = key.spend(
        &[(op, out.clone())],
        vec![TxOut {
            value: out.value + Amount::ONE_SAT,
            script_pubkey: key.spk.clone(),
        }],
    );
    assert_eq!(
        node.test_mempool_accept(&tx).unwrap_err().reason,
        "bad-txns-in-belowout"
    );

    // Fee below 0.1 sat/vB.
    let tx = key.pay(op, out.value, Amount::from_sat(5), &key.spk);
    assert_eq!(
        node.test_mempool_accept(&tx).unwrap_err().reason,
        "min relay fee not met"
    );
    // 0.1 sat/vB exactly is enough (111 vB -> 12 sat rounded up).
    let tx = key.pay(op, out.value, Amount::from_sat(12), &key.spk);
    node.test_mempool_accept(&tx).unwrap();

    // Dust output.
    let tx = key.spend(
        &[(op, out.clone())],
        vec![
            TxOut {
                value: out.value - FEE - Amount::from_sat(100),
                script_pubkey: key.spk.clone(),
            },
            TxOut {
                value: Amount::from_sat(100),
                script_pubkey: key.spk.clone(),
            },
        ],
    );
    assert_eq!(node.test_mempool_accept(&tx).unwrap_err().reason, "dust");

    // Bad signature.
    let mut tx = key.pay(op, out.value, FEE, &key.spk);
    tx.output[0].value -= Amount::ONE_SAT;
    let e = node.test_mempool_accept(&tx).unwrap_err();
    assert_eq!(
        e.reason,
        "mempool-script-verify-flag-failed (Invalid Schnorr signature)"
    );

    // Version 4 is not standard.
    let mut tx = key.pay(op, out.value, FEE, &key.spk);
    tx.version = bitcoin::transaction::Version(4);
    assert_eq!(node.test_mempool_accept(&tx).unwrap_err().reason, "version");

    // Duplicate inputs.
    let mut tx = key.pay(op, out.value, FEE, &key.spk);
    tx.input.push(tx.input[0].clone());
    assert_eq!(
        node.test_mempool_accept(&tx).unwrap_err().reason,
        "bad-txns-inputs-duplicate"
    );

    // Above sendrawtransaction's maxfeerate (1,000 sat on 111 vB is 9 sat/vB).
    let good = key.pay(op, out.value, FEE, &key.spk);
    let e = node
        .send_raw_transaction(&good, Some(bitcoin::FeeRate::from_sat_per_vb_u32(8)))
        .unwrap_err();
    assert_eq!(e.code, -25);
    assert!(e.reason.starts_with("Fee exceeds maximum"), "{}", e.reason);
    assert!(node.mempool().is_empty());

    // Already confirmed: -27.
    node.send_raw_transaction(&good, Some(bitcoin::FeeRate::from_sat_per_vb_u32(10)))
        .unwrap();
    assert_eq!(
        node.test_mempool_accept(&good).unwrap_err().reason,
        "txn-already-in-mempool"
    );
    node.generate_to_script(1, &key.spk).unwrap();
    let e = node.send_raw_transaction(&good, None).unwrap_err();
    assert_eq!(
        (e.code, e.reason.as_str()),
        (-27, "Transaction outputs already in utxo set")
    );
    assert_eq!(
        node.test_mempool_accept(&good).unwrap_err().reason,
        "txn-already-known"
    );
}

#[test]
fn full_rbf_follows_core_fee_rules() {
    let key = Key::new(5);
    let node = funded_node(&key);
    let (op, out) = coinbase(&node, 1);
    let a = key.pay(op, out.value, Amount::from_sat(1_000), &key.spk);
    let a_id = node.send_raw_transaction(&a, None).unwrap();
    // Same fee: refused.
    let b = key.pay(op, out.value, Amount::from_sat(1_000), &Key::new(6).spk);
    let e = node.send_raw_transaction(&b, None).unwrap_err();
    assert_eq!(e.reason, "insufficient fee");
    assert!(e
        .details
        .unwrap()
        .contains("not enough additional fees to relay"));
    // Less fee: refused.
    let b = key.pay(op, out.value, Amount::from_sat(900), &Key::new(6).spk);
    let e = node.send_raw_transaction(&b, None).unwrap_err();
    assert!(e
        .details
        .unwrap()
        .contains("less fees than conflicting txs"));
    // Fee + incremental relay fee for its own size (111 vB -> 12 sat): accepted.
    let b = key.pay(op, out.value, Amount::from_sat(1_012), &Key::new(6).spk);
    let b_id = node.send_raw_transaction(&b, None).unwrap();
    assert!(node.mempool_entry(&a_id).is_none());
    assert!(node.mempool_entry(&b_id).is_some());
}

#[test]
fn invalidate_and_reconsider_move_transactions() {
    let key = Key::new(7);
    let node = funded_node(&key);
    let (op, out) = coinbase(&node, 1);
    let tx = key.pay(op, out.value, FEE, &key.spk);
    let txid = node.send_raw_transaction(&tx, None).unwrap();
    let hash = node.generate_to_script(1, &key.spk).unwrap()[0];
    node.generate_to_script(2, &key.spk).unwrap();
    let digest_before = node.utxo_set_digest();
    let tip_before = node.tip();
    node.invalidate_block(&hash).unwrap();
    assert_eq!(node.tip().height, 101);
    assert!(
        node.mempool_entry(&txid).is_some(),
        "the transaction is back in the mempool"
    );
    assert!(node.transaction(&txid).unwrap().confirmation.is_none());
    // A competing chain is mined on the other branch.
    node.generate_to_script(1, &Key::new(8).spk).unwrap();
    assert_eq!(node.tip().height, 102);
    node.reconsider_block(&hash).unwrap();
    assert_eq!(node.tip(), tip_before, "the longer chain wins again");
    assert_eq!(node.utxo_set_digest(), digest_before);
    assert!(node.mempool().is_empty());
    assert_eq!(
        node.transaction(&txid)
            .unwrap()
            .confirmation
            .unwrap()
            .height,
        102
    );
}

#[test]
fn generate_block_mines_given_transactions_and_checks_them() {
    let key = Key::new(9);
    let node = funded_node(&key);
    let (op, out) = coinbase(&node, 1);
    let tx = key.pay(op, out.value, FEE, &key.spk);
    let hash = node.generate_block(&key.spk, vec![tx.clone()]).unwrap();
    let (block, _) = node.block(&hash).unwrap();
    assert_eq!(block.txdata[1], tx);
    assert_eq!(
        block.txdata[0].output[0].value,
        Amount::from_btc(50.0).unwrap() + FEE
    );
    // Spending it again is refused as a block.
    let again = key.pay(op, out.value, Amount::from_sat(2_000), &key.spk);
    let e = node.generate_block(&key.spk, vec![again]).unwrap_err();
    assert_eq!(e.code, -25);
    assert!(
        e.reason.contains("bad-txns-inputs-missingorspent"),
        "{}",
        e.reason
    );
    assert_eq!(node.tip().hash, hash);
}

#[test]
fn persistence_survives_restart_and_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(10);
    let (tip, digest) = {
        let node = Node::open(NodeConfig::with_datadir(dir.path())).unwrap();
        node.generate_to_script(105, &key.spk).unwrap();
        let (op, out) = coinbase(&node, 1);
        node.send_raw_transaction(&key.pay(op, out.value, FEE, &key.spk), None)
            .unwrap();
        node.generate_to_script(1, &key.spk).unwrap();
        node.shutdown().unwrap();
        (node.tip(), node.utxo_set_digest())
    };
    let node = Node::open(NodeConfig::with_datadir(dir.path())).unwrap();
    assert_eq!(node.tip(), tip);
    assert_eq!(node.utxo_set_digest(), digest);
    drop(node);

    // A torn last record (a crash in the middle of a write) is dropped on load.
    let file = dir.path().join(btcmpc_regtest::chain::store::BLOCKS_FILE);
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len - 10).unwrap();
    drop(f);
    let node = Node::open(NodeConfig::with_datadir(dir.path())).unwrap();
    assert_eq!(node.tip().height, tip.height - 1);
    // And the store keeps working after the cut.
    node.generate_to_script(2, &key.spk).unwrap();
    let tip2 = node.tip();
    drop(node);
    let node = Node::open(NodeConfig::with_datadir(dir.path())).unwrap();
    assert_eq!(node.tip(), tip2);
}

/// Replays the best chain of `node` into a fresh in-memory node with full validation.
fn replay(node: &Node) -> Node {
    let fresh = Node::open(NodeConfig::in_memory()).unwrap();
    for h in 1..=node.tip().height {
        let (block, _) = node.block(&node.block_hash(h).unwrap()).unwrap();
        fresh.submit_block(block).unwrap();
    }
    fresh
}

/// Mines and broadcasts in a loop on `dir`, printing `mined HEIGHT HASH` after each block is
/// reported; stops after `rounds` rounds (never, for the crash child).
fn burst(dir: &std::path::Path, rounds: Option<u32>) {
    use std::io::Write;
    let key = Key::new(11);
    let node = Node::open(NodeConfig::with_datadir(dir)).unwrap();
    if node.tip().height < 101 {
        node.generate_to_script(101 - node.tip().height, &key.spk)
            .unwrap();
    }
    let mut round = 0;
    let mut out = std::io::stdout();
    loop {
        if rounds.is_some_and(|r| round >= r) {
            node.shutdown().unwrap();
            return;
        }
        // Spend the oldest mature coinbase not yet spent, chained a few times.
        let height = node.tip().height;
        let (mut op, mut prev) = coinbase(&node, height - 100);
        if node.utxo(&op, true).is_some() {
            for _ in 0..3 {
                let tx = key.pay(op, prev.value, FEE, &key.spk);
                node.send_raw_transaction(&tx, None).unwrap();
                op = OutPoint::new(tx.compute_txid(), 0);
                prev = tx.output[0].clone();
            }
        }
        let hashes = node.generate_to_script(1, &key.spk).unwrap();
        writeln!(out, "mined {} {}", node.tip().height, hashes[0]).unwrap();
        out.flush().unwrap();
        round += 1;
    }
}

#[test]
fn burst_then_restart_matches_replay() {
    if let Ok(dir) = std::env::var("BTCMPC_REGTEST_CRASH_CHILD") {
        // Child mode of `kill_9_during_mining_never_corrupts`: run until killed.
        burst(std::path::Path::new(&dir), None);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    burst(dir.path(), Some(20));
    let node = Node::open(NodeConfig::with_datadir(dir.path())).unwrap();
    assert_eq!(node.tip().height, 121);
    let fresh = replay(&node);
    assert_eq!(fresh.tip(), node.tip());
    assert_eq!(fresh.utxo_set_digest(), node.utxo_set_digest());
}

#[test]
fn kill_9_during_mining_never_corrupts() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for (i, wait_blocks) in [30u32, 45, 7].into_iter().enumerate() {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "burst_then_restart_matches_replay",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BTCMPC_REGTEST_CRASH_CHILD", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut reported: Vec<(u32, String)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while reported.len() < wait_blocks as usize {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "round {i}: the child did not mine in time");
            if let Ok(line) = rx.recv_timeout(left) {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let ["mined", h, hash] = parts[..] {
                    reported.push((h.parse().unwrap(), hash.to_owned()));
                }
            }
        }
        // SIGKILL in the middle of the burst.
        child.kill().unwrap();
        child.wait().unwrap();
        let node = Node::open(NodeConfig::with_datadir(dir.path())).unwrap();
        let (last_h, last_hash) = reported.last().unwrap().clone();
        assert!(
            node.tip().height >= last_h,
            "round {i}: a reported block was lost"
        );
        assert_eq!(node.block_hash(last_h).unwrap().to_string(), last_hash);
        let fresh = replay(&node);
        assert_eq!(fresh.tip(), node.tip(), "round {i}");
        assert_eq!(fresh.utxo_set_digest(), node.utxo_set_digest(), "round {i}");
        node.shutdown().unwrap();
    }
}

#[test]
fn automine_mines_pending_transactions() {
    use btcmpc_regtest::{Automine, AutomineMode};
    use std::time::{Duration, Instant};
    let key = Key::new(12);
    let node = funded_node(&key);
    drop(node);
    let node = Node::open(NodeConfig::in_memory().automine(Some(Automine {
        mode: AutomineMode::OnTransaction {
            delay: Duration::from_millis(100),
        },
        script_pubkey: key.spk.clone(),
    })))
    .unwrap();
    node.generate_to_script(101, &key.spk).unwrap();
    let (op, out) = coinbase(&node, 1);
    let txid = node
        .send_raw_transaction(&key.pay(op, out.value, FEE, &key.spk), None)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.transaction(&txid).unwrap().confirmation.is_none() {
        assert!(Instant::now() < deadline, "automine did not mine");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(node.tip().height, 102);
}

#[test]
fn cluster_limit_is_64_transactions() {
    let key = Key::new(13);
    let node = funded_node(&key);
    let (mut op, mut out) = coinbase(&node, 1);
    for i in 0..65 {
        let tx = key.pay(op, out.value, FEE, &key.spk);
        let r = node.send_raw_transaction(&tx, None);
        if i < 64 {
            r.unwrap();
        } else {
            assert_eq!(r.unwrap_err().reason, "too-large-cluster");
        }
        op = OutPoint::new(tx.compute_txid(), 0);
        out = tx.output[0].clone();
    }
    assert_eq!(node.mempool().len(), 64);
    // Electrum marks mempool transactions with unconfirmed parents as height -1.
    let hist = node.history(&ScriptHash::from_script(&key.spk));
    let mempool: Vec<i32> = hist
        .iter()
        .filter(|h| h.height <= 0)
        .map(|h| h.height)
        .collect();
    assert_eq!(mempool.len(), 64);
    assert_eq!(mempool[0], 0);
    assert!(mempool[1..].iter().all(|h| *h == -1));
    // The miner takes the whole chain, parents first.
    node.generate_to_script(1, &key.spk).unwrap();
    assert!(node.mempool().is_empty());
    let (block, _) = node.block(&node.tip().hash).unwrap();
    assert_eq!(block.txdata.len(), 65);
}

#[test]
fn replacement_must_improve_the_feerate_diagram() {
    let key = Key::new(14);
    let node = funded_node(&key);
    let (op1, out1) = coinbase(&node, 1);
    let (op2, out2) = coinbase(&node, 2);
    let a = key.pay(op1, out1.value, Amount::from_sat(1_000), &key.spk);
    node.send_raw_transaction(&a, None).unwrap();
    // More absolute fee (enough for rules 3 and 4) at a lower fee rate: a worse diagram.
    let total = out1.value + out2.value;
    let b = key.spend(
        &[(op1, out1.clone()), (op2, out2.clone())],
        vec![TxOut {
            value: total - Amount::from_sat(1_100),
            script_pubkey: key.spk.clone(),
        }],
    );
    let e = node.send_raw_transaction(&b, None).unwrap_err();
    assert_eq!(e.reason, "replacement-failed");
    assert_eq!(
        e.details.as_deref(),
        Some("insufficient feerate: does not improve feerate diagram")
    );
    // The same replacement at a higher fee rate goes through.
    let c = key.spend(
        &[(op1, out1), (op2, out2)],
        vec![TxOut {
            value: total - Amount::from_sat(3_000),
            script_pubkey: key.spk.clone(),
        }],
    );
    node.send_raw_transaction(&c, None).unwrap();
    assert!(node.mempool_entry(&a.compute_txid()).is_none());
}

#[test]
fn truc_transactions_follow_bip431() {
    let key = Key::new(15);
    let node = funded_node(&key);
    let (op, out) = coinbase(&node, 1);
    let mut parent = key.spend(
        &[(op, out.clone())],
        vec![
            TxOut {
                value: Amount::from_btc(10.0).unwrap(),
                script_pubkey: key.spk.clone(),
            },
            TxOut {
                value: out.value - Amount::from_btc(10.0).unwrap() - FEE,
                script_pubkey: key.spk.clone(),
            },
        ],
    );
    parent.version = bitcoin::transaction::Version(3);
    key.sign(&mut parent, &[out]);
    let pid = node.send_raw_transaction(&parent, None).unwrap();
    let child_with_fee = |vout: u32, version: i32, fee: Amount| {
        let prev = parent.output[vout as usize].clone();
        let mut tx = key.pay(OutPoint::new(pid, vout), prev.value, fee, &key.spk);
        tx.version = bitcoin::transaction::Version(version);
        key.sign(&mut tx, &[prev]);
        tx
    };
    let child_of = |vout: u32, version: i32| child_with_fee(vout, version, FEE);
    // A non-TRUC child of a TRUC parent.
    let e = node.test_mempool_accept(&child_of(0, 2)).unwrap_err();
    assert_eq!(e.reason, "TRUC-violation");
    assert!(e.details.unwrap().starts_with("non-version=3 tx"));
    // One TRUC child is fine; a second one must replace it under the RBF rules (sibling
    // eviction).
    let first = node.send_raw_transaction(&child_of(0, 3), None).unwrap();
    let e = node.test_mempool_accept(&child_of(1, 3)).unwrap_err();
    assert_eq!(e.reason, "insufficient fee (including sibling eviction)");
    let second = node
        .send_raw_transaction(&child_with_fee(1, 3, FEE * 2), None)
        .unwrap();
    assert!(
        node.mempool_entry(&first).is_none(),
        "the sibling was evicted"
    );
    assert_eq!(node.mempool_entry(&pid).unwrap().spent_by, vec![second]);
    // A TRUC grandchild would have too many ancestors.
    let prev = TxOut {
        value: parent.output[1].value - FEE * 2,
        script_pubkey: key.spk.clone(),
    };
    let mut grandchild = key.pay(OutPoint::new(second, 0), prev.value, FEE, &key.spk);
    grandchild.version = bitcoin::transaction::Version(3);
    key.sign(&mut grandchild, &[prev]);
    let e = node.test_mempool_accept(&grandchild).unwrap_err();
    assert_eq!(e.reason, "TRUC-violation");
    assert!(e
        .details
        .unwrap()
        .ends_with("would have too many ancestors"));
}

/// `n - s` for a 32-byte big-endian `s` (secp256k1's group order `n`).
fn negate_s(s: &[u8]) -> [u8; 32] {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

#[test]
fn high_s_ecdsa_is_refused_by_policy_but_valid_in_a_block() {
    use bitcoin::secp256k1::{ecdsa::Signature, Message, Secp256k1, SecretKey};
    use bitcoin::sighash::{EcdsaSighashType, SighashCache};
    use bitcoin::{CompressedPublicKey, ScriptBuf, Witness};

    let key = Key::new(16);
    let node = funded_node(&key);
    let secp = Secp256k1::new();
    let sk = SecretKey::from_slice(&[0x23; 32]).unwrap();
    let pk = CompressedPublicKey(sk.public_key(&secp));
    let wpkh = ScriptBuf::new_p2wpkh(&pk.wpubkey_hash());
    // Fund a P2WPKH output.
    let (op, out) = coinbase(&node, 1);
    let fund = key.pay(op, out.value, FEE, &wpkh);
    node.send_raw_transaction(&fund, None).unwrap();
    node.generate_to_script(1, &key.spk).unwrap();
    let prev = fund.output[0].clone();
    let sign = |high_s: bool| {
        let mut tx = key.pay(
            OutPoint::new(fund.compute_txid(), 0),
            prev.value,
            FEE,
            &key.spk,
        );
        let sighash = SighashCache::new(&tx)
            .p2wpkh_signature_hash(0, &wpkh, prev.value, EcdsaSighashType::All)
            .unwrap();
        let mut sig = secp.sign_ecdsa(&Message::from(sighash), &sk);
        if high_s {
            let c = sig.serialize_compact();
            let mut compact = [0u8; 64];
            compact[..32].copy_from_slice(&c[..32]);
            compact[32..].copy_from_slice(&negate_s(&c[32..]));
            sig = Signature::from_compact(&compact).unwrap();
        }
        let mut der = sig.serialize_der().to_vec();
        der.push(EcdsaSighashType::All as u8);
        tx.input[0].witness = Witness::from_slice(&[der, pk.to_bytes().to_vec()]);
        tx
    };
    let high = sign(true);
    let e = node.test_mempool_accept(&high).unwrap_err();
    assert_eq!(
        e.reason,
        "mempool-script-verify-flag-failed (Non-canonical signature: S value is unnecessarily high)"
    );
    node.test_mempool_accept(&sign(false)).unwrap();
    // LOW_S is policy, not consensus: a block may hold it.
    node.generate_block(&key.spk, vec![high]).unwrap();
}

#[test]
fn a_store_cut_at_any_byte_of_its_last_record_loads_the_chain_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::new(17);
    let file = dir.path().join(btcmpc_regtest::chain::store::BLOCKS_FILE);
    let (before_len, before_tip) = {
        let node = Node::open(NodeConfig::with_datadir(dir.path())).unwrap();
        node.generate_to_script(101, &key.spk).unwrap();
        let (op, out) = coinbase(&node, 1);
        node.send_raw_transaction(&key.pay(op, out.value, FEE, &key.spk), None)
            .unwrap();
        let len = std::fs::metadata(&file).unwrap().len();
        let tip = node.tip();
        node.generate_to_script(1, &key.spk).unwrap();
        node.shutdown().unwrap();
        (len, tip)
    };
    let full = std::fs::read(&file).unwrap();
    let copy = tempfile::tempdir().unwrap();
    let copy_file = copy.path().join(btcmpc_regtest::chain::store::BLOCKS_FILE);
    for cut in before_len..full.len() as u64 {
        std::fs::write(&copy_file, &full[..cut as usize]).unwrap();
        let node = Node::open(NodeConfig::with_datadir(copy.path())).unwrap();
        assert_eq!(node.tip(), before_tip, "cut at byte {cut}");
        // The damaged tail was cut off the file.
        assert_eq!(std::fs::metadata(&copy_file).unwrap().len(), before_len);
    }
    // A flipped byte in the last record drops that record too.
    let mut flipped = full.clone();
    let at = (before_len as usize + full.len()) / 2;
    flipped[at] ^= 0x40;
    std::fs::write(&copy_file, &flipped).unwrap();
    let node = Node::open(NodeConfig::with_datadir(copy.path())).unwrap();
    assert_eq!(node.tip(), before_tip);
}

#[test]
fn concurrent_clients_share_one_chain() {
    let key = Key::new(18);
    let node = funded_node(&key);
    node.generate_to_script(40, &key.spk).unwrap();
    let handles: Vec<_> = (0..4u32)
        .map(|t| {
            let node = node.clone();
            std::thread::spawn(move || {
                let key = Key::new(18);
                for h in (1 + t * 10)..(11 + t * 10) {
                    let (op, out) = coinbase(&node, h);
                    node.send_raw_transaction(&key.pay(op, out.value, FEE, &key.spk), None)
                        .unwrap();
                    let _ = node.history(&ScriptHash::from_script(&key.spk));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(node.mempool().len(), 40);
    node.generate_to_script(1, &key.spk).unwrap();
    assert!(node.mempool().is_empty());
    assert_eq!(node.block(&node.tip().hash).unwrap().0.txdata.len(), 41);
}

#[test]
fn reorg_drops_coinbase_spends_that_become_immature() {
    let key = Key::new(19);
    let node = funded_node(&key);
    // Block 2's coinbase can be spent in block 102 (depth 100), not in block 101.
    let (op, out) = coinbase(&node, 2);
    let txid = node
        .send_raw_transaction(&key.pay(op, out.value, FEE, &key.spk), None)
        .unwrap();
    let (op1, out1) = coinbase(&node, 1);
    let other = node
        .send_raw_transaction(&key.pay(op1, out1.value, FEE, &key.spk), None)
        .unwrap();
    let tip = node.tip();
    node.invalidate_block(&tip.hash).unwrap();
    assert_eq!(node.tip().height, 100);
    assert!(
        node.mempool_entry(&txid).is_none(),
        "immature coinbase spend left the mempool"
    );
    assert!(
        node.mempool_entry(&other).is_some(),
        "a still valid spend stays"
    );
    node.reconsider_block(&tip.hash).unwrap();
    assert_eq!(node.tip(), tip);
    assert!(node.mempool_entry(&other).is_some());
}

#[test]
fn replacing_a_parent_evicts_its_children() {
    let key = Key::new(20);
    let node = funded_node(&key);
    let mut events = node.subscribe();
    let (op, out) = coinbase(&node, 1);
    let parent = key.pay(op, out.value, FEE, &key.spk);
    let pid = node.send_raw_transaction(&parent, None).unwrap();
    let child = key.pay(OutPoint::new(pid, 0), parent.output[0].value, FEE, &key.spk);
    let cid = node.send_raw_transaction(&child, None).unwrap();
    assert_eq!(node.mempool_entry(&pid).unwrap().spent_by, vec![cid]);
    assert_eq!(node.mempool_entry(&cid).unwrap().ancestor_count, 2);
    // The replacement must pay for both evicted transactions and its own relay.
    let low = key.pay(op, out.value, FEE * 2, &Key::new(21).spk);
    assert_eq!(
        node.send_raw_transaction(&low, None).unwrap_err().reason,
        "insufficient fee"
    );
    let high = key.pay(
        op,
        out.value,
        FEE * 2 + Amount::from_sat(12),
        &Key::new(21).spk,
    );
    let hid = node.send_raw_transaction(&high, None).unwrap();
    let ids: Vec<_> = node.mempool().iter().map(|e| e.txid).collect();
    assert_eq!(ids, vec![hid]);
    let mut removed = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let NodeEvent::TxRemoved { txid, .. } = e {
            removed.push(txid);
        }
    }
    removed.sort();
    let mut expected = vec![pid, cid];
    expected.sort();
    assert_eq!(removed, expected);
}

#[test]
fn mining_again_after_invalidate_makes_a_new_block() {
    let key = Key::new(22);
    let node = funded_node(&key);
    node.set_mocktime(u64::from(node.tip().time) + 1_000);
    let first = node.generate_to_script(1, &key.spk).unwrap()[0];
    node.invalidate_block(&first).unwrap();
    // Same script, same (empty) mempool, same mocktime: the miner must not rebuild `first`.
    let second = node.generate_to_script(1, &key.spk).unwrap()[0];
    assert_ne!(first, second);
    assert_eq!(node.tip().hash, second);
    // A huge mocktime from a client saturates instead of overflowing.
    node.set_mocktime(u64::MAX);
    let r = node.generate_to_script(8, &key.spk);
    assert!(r.is_ok() || matches!(r, Err(btcmpc_regtest::NodeError::BlockRefused(_))));
}

#[test]
fn blocks_verify_scripts_the_mempool_did_not() {
    let key = Key::new(23);
    let node = funded_node(&key);
    let (op, out) = coinbase(&node, 1);
    let mut bad = key.pay(op, out.value, FEE, &key.spk);
    bad.output[0].value -= Amount::ONE_SAT; // the signature no longer matches
    let hits = node.script_cache_hits();
    let e = node.generate_block(&key.spk, vec![bad]).unwrap_err();
    assert_eq!(e.code, -25);
    assert!(
        e.reason.starts_with(
            "TestBlockValidity failed: block-script-verify-flag-failed (Invalid Schnorr signature)"
        ),
        "{}",
        e.reason
    );
    assert_eq!(node.script_cache_hits(), hits);
    assert_eq!(node.tip().height, 101);
    // A valid transaction never seen by the mempool is verified and mined.
    let good = key.pay(op, out.value, FEE, &key.spk);
    node.generate_block(&key.spk, vec![good]).unwrap();
    assert_eq!(
        node.script_cache_hits(),
        hits,
        "no cache entry existed for it"
    );
}
