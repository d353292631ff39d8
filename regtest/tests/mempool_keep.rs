//! Two behaviours of Core the embedded node matches: `testmempoolaccept` of a package (several
//! transactions, parents first) answers per transaction as Core 31's `rpc/mempool.cpp` does,
//! and the mempool survives a clean stop (`mempool.dat`, re-validated at start) but not a
//! crash.

mod netsupport;

use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut};
use btcmpc_regtest::chain::mempool_file::{self, MEMPOOL_FILE};
use btcmpc_regtest::chain::MAX_PACKAGE_WEIGHT;
use btcmpc_regtest::harness::{Restart, TestEnv};
use btcmpc_regtest::server::{Server, ServerConfig};
use netsupport::{funded, tx_hex, Key};
use serde_json::{json, Value};

fn pay(key: &Key, coin: (OutPoint, Amount), to: &Key, fee: u64) -> Transaction {
    key.spend(
        &[coin],
        vec![TxOut {
            value: coin.1 - Amount::from_sat(fee),
            script_pubkey: to.script_pubkey(),
        }],
    )
}

fn out0(tx: &Transaction) -> (OutPoint, Amount) {
    (OutPoint::new(tx.compute_txid(), 0), tx.output[0].value)
}

fn test_accept(env: &TestEnv, txs: &[&Transaction], extra: &[Value]) -> Vec<Value> {
    let raws: Vec<String> = txs.iter().map(|t| tx_hex(t)).collect();
    let mut params = vec![json!(raws)];
    params.extend_from_slice(extra);
    let r = env.rpc().call("testmempoolaccept", &params).unwrap();
    r.as_array().cloned().expect("an array")
}

/// Only the ids (Core: "not fully validated due to a failure in another tx").
fn ids_only(v: &Value, tx: &Transaction) {
    assert_eq!(v["txid"], json!(tx.compute_txid().to_string()), "{v}");
    assert_eq!(v["wtxid"], json!(tx.compute_wtxid().to_string()), "{v}");
    assert!(v.get("allowed").is_none(), "{v}");
}

fn package_error(v: &[Value], txs: &[&Transaction], error: &str) {
    assert_eq!(v.len(), txs.len());
    for (r, tx) in v.iter().zip(txs) {
        assert_eq!(r["package-error"], json!(error), "{r}");
        ids_only(r, tx);
    }
}

#[test]
fn package_testmempoolaccept_answers_per_transaction() {
    let env = TestEnv::new().unwrap();
    let (a, b, c) = (Key::new(21), Key::new(22), Key::new(23));
    let coin = funded(&env, &a, Amount::from_sat(1_000_000));
    let parent = pay(&a, (coin, Amount::from_sat(1_000_000)), &b, 10_000);
    let child = pay(&b, out0(&parent), &c, 10_000);

    // Parents first: both allowed, each with its own size and fee; nothing enters the mempool.
    let r = test_accept(&env, &[&parent, &child], &[]);
    for (v, tx) in r.iter().zip([&parent, &child]) {
        assert_eq!(v["allowed"], true, "{v}");
        assert!(v.get("package-error").is_none(), "{v}");
        assert_eq!(v["txid"], json!(tx.compute_txid().to_string()));
        assert_eq!(v["vsize"], json!(tx.vsize()));
        assert_eq!(v["fees"]["base"], json!(0.0001));
        assert_eq!(
            v["fees"]["effective-includes"],
            json!([tx.compute_wtxid().to_string()])
        );
    }
    assert_eq!(env.rpc().call("getrawmempool", &[]).unwrap(), json!([]));
    // The child alone is an orphan.
    let r = test_accept(&env, &[&child], &[]);
    assert_eq!(r[0]["reject-reason"], "missing-inputs");

    // Package errors (Core's IsWellFormedPackage): on every member, no verdicts.
    package_error(
        &test_accept(&env, &[&child, &parent], &[]),
        &[&child, &parent],
        "package-not-sorted",
    );
    package_error(
        &test_accept(&env, &[&parent, &parent], &[]),
        &[&parent, &parent],
        "package-contains-duplicates",
    );
    let rival = pay(&a, (coin, Amount::from_sat(1_000_000)), &c, 20_000);
    package_error(
        &test_accept(&env, &[&parent, &rival], &[]),
        &[&parent, &rival],
        "conflict-in-package",
    );

    // A member failing its pre-checks stops everything: it is refused, the others have only
    // their ids (the parent before it included: scripts are checked after all pre-checks).
    let orphan = pay(
        &b,
        (OutPoint::new(parent.compute_txid(), 5), Amount::from_sat(1)),
        &c,
        0,
    );
    let r = test_accept(&env, &[&parent, &orphan], &[]);
    ids_only(&r[0], &parent);
    assert_eq!(r[1]["allowed"], false, "{}", r[1]);
    assert_eq!(r[1]["reject-reason"], "missing-inputs");
    assert!(r[1].get("package-error").is_none());

    // A member failing its scripts: the members before it are allowed.
    let forged = pay(&c, out0(&parent), &a, 10_000); // signed by c, the output is b's
    let r = test_accept(&env, &[&parent, &forged], &[]);
    assert_eq!(r[0]["allowed"], true, "{}", r[0]);
    assert_eq!(r[1]["allowed"], false, "{}", r[1]);
    assert!(
        r[1]["reject-reason"]
            .as_str()
            .unwrap()
            .starts_with("mempool-script-verify-flag-failed"),
        "{}",
        r[1]
    );

    // maxfeerate: the first member over it is refused and the rest left unvalidated.
    let r = test_accept(&env, &[&parent, &child], &[json!(0.00001)]);
    assert_eq!(r[0]["reject-reason"], "max-fee-exceeded");
    ids_only(&r[1], &child);

    // A member already in the mempool: refused (Core's package test does not allow it).
    env.rpc()
        .call("sendrawtransaction", &[json!(tx_hex(&parent))])
        .unwrap();
    let r = test_accept(&env, &[&parent, &child], &[]);
    assert_eq!(r[0]["reject-reason"], "txn-already-in-mempool", "{}", r[0]);
    ids_only(&r[1], &child);
    // A member conflicting with the mempool: no replacement in a package test.
    let r = test_accept(&env, &[&rival, &pay(&c, out0(&rival), &a, 10_000)], &[]);
    assert_eq!(r[0]["reject-reason"], "bip125-replacement-disallowed");
}

#[test]
fn package_bounds_are_cores() {
    let env = TestEnv::new().unwrap();
    let (a, b) = (Key::new(31), Key::new(32));
    // A chain of 26: 25 is the most a package may hold.
    let coin = funded(&env, &a, Amount::from_sat(10_000_000));
    let mut chain = vec![pay(&a, (coin, Amount::from_sat(10_000_000)), &a, 1_000)];
    while chain.len() < 26 {
        let next = pay(&a, out0(chain.last().unwrap()), &a, 1_000);
        chain.push(next);
    }
    let refs: Vec<&Transaction> = chain.iter().collect();
    let r = test_accept(&env, &refs[..25], &[]);
    assert!(r.iter().all(|v| v["allowed"] == true), "{r:?}");
    let raws: Vec<String> = chain.iter().map(tx_hex).collect();
    let e = env
        .rpc()
        .call("testmempoolaccept", &[json!(raws)])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Array must contain between 1 and 25 transactions."),
        "{e}"
    );

    // Total weight: at most 404,000 WU. Two unrelated transactions carrying OP_RETURN data,
    // the second grown byte by byte until the package passes the bound.
    let coin1 = funded(&env, &a, Amount::from_sat(1_000_000));
    let coin2 = funded(&env, &b, Amount::from_sat(1_000_000));
    let with_data = |key: &Key, coin: OutPoint, bytes: usize| {
        key.spend(
            &[(coin, Amount::from_sat(1_000_000))],
            vec![
                TxOut {
                    value: Amount::from_sat(900_000),
                    script_pubkey: key.script_pubkey(),
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: ScriptBuf::new_op_return(
                        <&bitcoin::script::PushBytes>::try_from(&vec![7u8; bytes][..]).unwrap(),
                    ),
                },
            ],
        )
    };
    let first = with_data(&a, coin1, 50_000);
    let mut n = 49_000;
    let (under, over) = loop {
        let second = with_data(&b, coin2, n);
        let total = first.weight().to_wu() + second.weight().to_wu();
        if total > MAX_PACKAGE_WEIGHT {
            break (with_data(&b, coin2, n - 1), second);
        }
        n += 1;
    };
    let under_total = first.weight().to_wu() + under.weight().to_wu();
    assert!(under_total <= MAX_PACKAGE_WEIGHT && under_total + 8 > MAX_PACKAGE_WEIGHT);
    let r = test_accept(&env, &[&first, &under], &[]);
    assert!(r.iter().all(|v| v["allowed"] == true), "{r:?}");
    package_error(
        &test_accept(&env, &[&first, &over], &[]),
        &[&first, &over],
        "package-too-large",
    );
}

fn mempool(env: &TestEnv) -> Vec<String> {
    let v = env.rpc().call("getrawmempool", &[]).unwrap();
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn a_clean_restart_keeps_the_mempool_and_a_crash_loses_it() {
    let mut env = TestEnv::new().unwrap();
    let (a, b, c) = (Key::new(41), Key::new(42), Key::new(43));
    let coin = funded(&env, &a, Amount::from_sat(1_000_000));
    let parent = pay(&a, (coin, Amount::from_sat(1_000_000)), &b, 10_000);
    let child = pay(&b, out0(&parent), &c, 10_000);
    let send = |env: &TestEnv, tx: &Transaction| {
        env.rpc()
            .call("sendrawtransaction", &[json!(tx_hex(tx))])
            .unwrap();
    };

    // A crash (no clean stop ever wrote a mempool file): the mempool is gone, the chain is not.
    send(&env, &parent);
    env.restart(Restart::Crash).unwrap();
    assert!(mempool(&env).is_empty(), "a crash loses the mempool");
    send(&env, &parent);
    send(&env, &child);
    let mut both = vec![
        parent.compute_txid().to_string(),
        child.compute_txid().to_string(),
    ];
    both.sort();
    let entry_time = env
        .rpc()
        .call(
            "getmempoolentry",
            &[json!(parent.compute_txid().to_string())],
        )
        .unwrap()["time"]
        .clone();

    env.restart(Restart::Clean).unwrap();
    assert_eq!(mempool(&env), both, "a clean stop keeps parent and child");
    let e = env
        .rpc()
        .call(
            "getmempoolentry",
            &[json!(parent.compute_txid().to_string())],
        )
        .unwrap();
    assert_eq!(e["time"], entry_time, "entry times are kept");
    // Electrum sees them again too.
    let h = env
        .electrum_call(
            "blockchain.scripthash.get_history",
            json!([btcmpc_regtest::ScriptHash::from_script(&c.script_pubkey()).to_string()]),
        )
        .unwrap();
    assert_eq!(
        h[0]["tx_hash"],
        json!(child.compute_txid().to_string()),
        "{h}"
    );
    // They confirm from the reloaded mempool.
    env.mine(1).unwrap();
    assert!(mempool(&env).is_empty());
    assert_eq!(
        env.rpc()
            .call(
                "getrawtransaction",
                &[json!(child.compute_txid().to_string()), json!(true)]
            )
            .unwrap()["confirmations"],
        1
    );
}

#[test]
fn a_reloaded_mempool_is_validated_again_and_a_damaged_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("node");
    let server = Server::start(ServerConfig::new(&datadir)).unwrap();
    let env_rpc = |s: &Server| {
        btcmpc_regtest::rpc_client::RpcClient::new(
            &s.rpc_url(),
            btcmpc_regtest::rpc_client::Auth::CookieFile(s.cookie_path()),
        )
        .unwrap()
    };
    let (a, b) = (Key::new(51), Key::new(52));
    let rpc = env_rpc(&server);
    let r = rpc
        .call("faucet", &[json!(a.address.to_string()), json!(0.01)])
        .unwrap();
    let funding: bitcoin::Txid = r["txid"].as_str().unwrap().parse().unwrap();
    let ftx = server.node().transaction(&funding).unwrap().tx;
    let vout = ftx
        .output
        .iter()
        .position(|o| o.script_pubkey == a.script_pubkey())
        .unwrap();
    let coin = (OutPoint::new(funding, vout as u32), ftx.output[vout].value);
    if server.node().mempool_entry(&funding).is_some() {
        rpc.call(
            "generatetoaddress",
            &[json!(1), json!(a.address.to_string())],
        )
        .unwrap();
    }
    let good = pay(&a, coin, &b, 10_000);
    let double = pay(&a, coin, &a, 5_000); // pays less: no replacement
    let forged = pay(&b, coin, &b, 30_000);
    let orphan = pay(
        &b,
        (OutPoint::new(funding, 99), Amount::from_sat(5_000)),
        &a,
        1_000,
    );
    server.stop();
    drop(server);

    // A file holding an entry past the 336-hour expiry, a valid transaction, then a double
    // spend of it, a forged spend and an orphan: only the valid one survives the reload.
    let path = datadir.join(MEMPOOL_FILE);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = pay(&a, coin, &b, 40_000); // would replace `good`, but too old to load
    let bytes = mempool_file::encode([
        (now - 336 * 3600, &expired),
        (now, &good),
        (now, &double),
        (now, &forged),
        (now, &orphan),
    ]);
    mempool_file::write(&path, &bytes).unwrap();
    let server = Server::start(ServerConfig::new(&datadir)).unwrap();
    let pool = env_rpc(&server).call("getrawmempool", &[]).unwrap();
    assert_eq!(pool, json!([good.compute_txid().to_string()]));
    server.stop();
    drop(server);

    // A damaged file: ignored as a whole, the node starts with an empty mempool.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.is_empty(), "the clean stop wrote the mempool");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let server = Server::start(ServerConfig::new(&datadir)).unwrap();
    assert_eq!(
        env_rpc(&server).call("getrawmempool", &[]).unwrap(),
        json!([])
    );
}

/// Core's mempool expiry (336 hours): an entry exactly at the cutoff stays, one second older
/// goes (with its child) when the next transaction is accepted.
#[test]
fn mempool_entries_expire_after_336_hours() {
    let env = TestEnv::new().unwrap();
    let (a, b, c) = (Key::new(61), Key::new(62), Key::new(63));
    let coin = funded(&env, &a, Amount::from_sat(1_000_000));
    let coin2 = funded(&env, &c, Amount::from_sat(1_000_000));
    let t0: u64 = env.rpc().call("getblockchaininfo", &[]).unwrap()["time"]
        .as_u64()
        .unwrap()
        + 10;
    env.set_mocktime(t0).unwrap();
    let parent = pay(&a, (coin, Amount::from_sat(1_000_000)), &b, 10_000);
    let child = pay(&b, out0(&parent), &c, 10_000);
    for tx in [&parent, &child] {
        env.rpc()
            .call("sendrawtransaction", &[json!(tx_hex(tx))])
            .unwrap();
    }
    let expiry = 336 * 3600;
    // At the cutoff: kept.
    env.set_mocktime(t0 + expiry).unwrap();
    let first = pay(&c, (coin2, Amount::from_sat(1_000_000)), &c, 10_000);
    env.rpc()
        .call("sendrawtransaction", &[json!(tx_hex(&first))])
        .unwrap();
    assert_eq!(mempool(&env).len(), 3);
    // One second later, the next acceptance expires parent and child, not the newer one.
    env.set_mocktime(t0 + expiry + 1).unwrap();
    let second = pay(&c, out0(&first), &c, 10_000);
    env.rpc()
        .call("sendrawtransaction", &[json!(tx_hex(&second))])
        .unwrap();
    let mut left = vec![
        first.compute_txid().to_string(),
        second.compute_txid().to_string(),
    ];
    left.sort();
    assert_eq!(mempool(&env), left);
    // Sent again, the expired parent is accepted with a new entry time.
    env.rpc()
        .call("sendrawtransaction", &[json!(tx_hex(&parent))])
        .unwrap();
    assert_eq!(mempool(&env).len(), 3);
}
