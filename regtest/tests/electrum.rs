//! The Electrum server: a real BDK wallet (full scan, sync, broadcast) through `bdk_electrum`
//! unchanged, electrum-client's batches, raw pipelined requests, and notifications.

mod netsupport;

use std::str::FromStr;
use std::time::{Duration, Instant};

use bdk_electrum::electrum_client::{self, ElectrumApi};
use bdk_electrum::BdkElectrumClient;
use bdk_wallet::descriptor::IntoWalletDescriptor;
use bdk_wallet::miniscript::descriptor::KeyMapWrapper;
use bdk_wallet::{KeychainKind, SignOptions, Wallet};
use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::{Amount, FeeRate, Network, TxOut, Txid};
use btcmpc_regtest::harness::TestEnv;
use btcmpc_regtest::ScriptHash;
use netsupport::{funded, tx_hex, Electrum, Key};
use serde_json::{json, Value};

const EXTERNAL: &str = "wpkh(tprv8ZgxMBicQKsPdy6LMhUtFHAgpocR8GC6QmwMSFpZs7h6Eziw3SpThFfczTDh5rW2krkqffa11UpX3XkeTTB2FvzZKWXqPY54Y6Rq4AQ5R8L/84'/1'/0'/0/*)";
const INTERNAL: &str = "wpkh(tprv8ZgxMBicQKsPdy6LMhUtFHAgpocR8GC6QmwMSFpZs7h6Eziw3SpThFfczTDh5rW2krkqffa11UpX3XkeTTB2FvzZKWXqPY54Y6Rq4AQ5R8L/84'/1'/0'/1/*)";

fn env() -> TestEnv {
    TestEnv::new().expect("start a regtest node")
}

fn bdk_client(env: &TestEnv) -> BdkElectrumClient<electrum_client::Client> {
    let client = electrum_client::Client::new(&format!("tcp://{}", env.electrum_url()))
        .expect("connect electrum-client");
    BdkElectrumClient::new(client)
}

#[test]
fn bdk_wallet_full_scan_sync_and_broadcast() {
    let env = env();
    let mut wallet = Wallet::create(EXTERNAL, INTERNAL)
        .network(Network::Regtest)
        .create_wallet_no_persist()
        .expect("a wallet");
    // Coins on the third receive address: full scan must find them through the gap.
    let addrs: Vec<_> = (0..3)
        .map(|_| wallet.reveal_next_address(KeychainKind::External).address)
        .collect();
    let funding = env.fund(&addrs[2], Amount::from_sat(1_000_000)).unwrap();
    let funding_height = env.tip_height().unwrap();

    let mut fresh = Wallet::create(EXTERNAL, INTERNAL)
        .network(Network::Regtest)
        .create_wallet_no_persist()
        .expect("a wallet");
    let client = bdk_client(&env);
    let update = client
        .full_scan(fresh.start_full_scan(), 10, 5, true)
        .expect("full scan");
    fresh.apply_update(update).expect("apply full scan");
    assert_eq!(fresh.balance().confirmed, Amount::from_sat(1_000_000));
    let wtx = fresh.get_tx(funding).expect("the funding tx is known");
    match wtx.chain_position {
        bdk_wallet::chain::ChainPosition::Confirmed { anchor, .. } => {
            assert_eq!(anchor.block_id.height, funding_height);
            assert_eq!(
                anchor.block_id.hash,
                env.tip_hash().unwrap(),
                "anchored in the right block (merkle proof checked by bdk)"
            );
        }
        other => panic!("funding tx should be confirmed, is {other:?}"),
    }
    assert_eq!(fresh.latest_checkpoint().height(), funding_height);

    // Spend from the wallet and broadcast through Electrum.
    let dest = Key::new(21);
    let mut builder = fresh.build_tx();
    builder.add_recipient(dest.script_pubkey(), Amount::from_sat(300_000));
    builder.fee_rate(FeeRate::from_sat_per_vb(2).unwrap());
    let mut psbt = builder.finish().expect("a psbt");
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let (_, mut keymap) = EXTERNAL
        .into_wallet_descriptor(&secp, Network::Regtest.into())
        .unwrap();
    keymap.extend(
        INTERNAL
            .into_wallet_descriptor(&secp, Network::Regtest.into())
            .unwrap()
            .1,
    );
    psbt.sign(&KeyMapWrapper::from(keymap), fresh.secp_ctx())
        .map_err(|(_, e)| format!("{e:?}"))
        .expect("sign");
    assert!(fresh
        .finalize_psbt(&mut psbt, SignOptions::default())
        .expect("finalize"));
    let tx = psbt.extract_tx().expect("a signed tx");
    let txid = client.transaction_broadcast(&tx).expect("broadcast");
    assert_eq!(txid, tx.compute_txid());
    let pool = env.rpc().call("getrawmempool", &[]).unwrap();
    assert_eq!(pool, json!([txid.to_string()]));

    // Sync sees it unconfirmed: the change is pending, nothing confirmed.
    let update = client
        .sync(fresh.start_sync_with_revealed_spks(), 5, true)
        .expect("sync");
    fresh.apply_update(update).unwrap();
    let bal = fresh.balance();
    assert_eq!(bal.confirmed, Amount::ZERO);
    let fee = fresh.calculate_fee(&tx).expect("fee known");
    assert_eq!(
        bal.trusted_pending,
        Amount::from_sat(1_000_000 - 300_000) - fee
    );

    // A conflicting spend paying less (its signature no longer matches either) is refused
    // with Core's reject text: the replacement check or the script check, whichever runs first.
    let mut conflict = tx.clone();
    conflict.output[0].value += Amount::from_sat(1);
    let err = client
        .transaction_broadcast(&conflict)
        .expect_err("refused");
    let text = format!("{err:?}");
    assert!(
        text.contains("bad-txns")
            || text.contains("insufficient fee")
            || text.contains("mempool-script-verify-flag-failed"),
        "carries Core's reject text: {text}"
    );

    // Mined: sync moves it to confirmed.
    env.mine(1).unwrap();
    let update = client
        .sync(fresh.start_sync_with_revealed_spks(), 5, true)
        .expect("sync");
    fresh.apply_update(update).unwrap();
    let bal = fresh.balance();
    assert_eq!(bal.confirmed, Amount::from_sat(700_000) - fee);
    assert_eq!(bal.trusted_pending, Amount::ZERO);
    assert_eq!(fresh.latest_checkpoint().height(), funding_height + 1);
}

#[test]
fn electrum_client_batches_and_merkle_proofs() {
    let env = env();
    let key = Key::new(31);
    let coin1 = funded(&env, &key, Amount::from_sat(200_000));
    let coin2 = funded(&env, &key, Amount::from_sat(300_000));
    let client = electrum_client::Client::new(&format!("tcp://{}", env.electrum_url())).unwrap();

    let spk = key.script_pubkey();
    let other = Key::new(32).script_pubkey();
    let histories = client
        .batch_script_get_history([spk.as_script(), other.as_script()])
        .unwrap();
    assert_eq!(histories.len(), 2);
    let txids: Vec<Txid> = histories[0].iter().map(|h| h.tx_hash).collect();
    assert_eq!(txids, vec![coin1.txid, coin2.txid], "by height");
    assert!(histories[1].is_empty());

    let heights: Vec<u32> = histories[0].iter().map(|h| h.height as u32).collect();
    let headers = client.batch_block_header(heights.clone()).unwrap();
    let proofs = client
        .batch_transaction_get_merkle(
            &histories[0]
                .iter()
                .map(|h| (h.tx_hash, h.height as usize))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    for ((h, header), proof) in histories[0].iter().zip(&headers).zip(&proofs) {
        assert!(electrum_client::utils::validate_merkle_proof(
            &h.tx_hash,
            &header.merkle_root,
            proof
        ));
        assert_eq!(proof.block_height, h.height as usize);
        assert!(proof.pos >= 1, "after the coinbase");
    }
    // A proof checked against the wrong block fails.
    let wrong = client.block_header(0).unwrap();
    assert!(!electrum_client::utils::validate_merkle_proof(
        &coin1.txid,
        &wrong.merkle_root,
        &proofs[0]
    ));

    let unspent = client.script_list_unspent(&spk).unwrap();
    assert_eq!(unspent.len(), 2);
    let balance = client.script_get_balance(&spk).unwrap();
    assert_eq!(balance.confirmed, 500_000);
    assert_eq!(balance.unconfirmed, 0);

    let tx = client.transaction_get(&coin1.txid).unwrap();
    assert_eq!(tx.compute_txid(), coin1.txid);
    let txs = client
        .batch_transaction_get([&coin1.txid, &coin2.txid])
        .unwrap();
    assert_eq!(txs[1].compute_txid(), coin2.txid);

    let tip = client.block_headers_subscribe().unwrap();
    assert_eq!(tip.height as u32, env.tip_height().unwrap());
    let hs = client.block_headers(0, 3000).unwrap();
    assert_eq!(hs.count, hs.headers.len());
    assert_eq!(hs.count, 2016.min(tip.height + 1));
    assert_eq!(
        hs.headers[0].block_hash().to_string(),
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    );
    let features = client.server_features().unwrap();
    // Sent in display order, as electrs does.
    assert_eq!(
        hex::encode(features.genesis_hash),
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    );
    assert_eq!(features.protocol_max, "1.4");
    assert_eq!(client.relay_fee().unwrap(), 0.000001);
    let est = client.estimate_fee(6, None).unwrap();
    assert!(est == -1.0 || est > 0.0);
    client.ping().unwrap();
}

#[test]
fn pipelined_lines_and_array_batches_are_answered_by_id() {
    let env = env();
    let mut e = Electrum::connect(&env);
    // Three requests in one write, as electrum-client pipelines them.
    e.send_raw(
        concat!(
            r#"{"jsonrpc":"2.0","id":1,"method":"server.ping","params":[]}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":2,"method":"blockchain.block.header","params":[0]}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":3,"method":"server.version","params":["test","1.4"]}"#,
            "\n"
        )
        .as_bytes(),
    );
    let replies: Vec<Value> = (0..3).map(|_| e.read()).collect();
    assert_eq!(replies[0]["id"], 1);
    assert!(replies[0]["result"].is_null());
    assert_eq!(replies[1]["id"], 2);
    assert_eq!(replies[1]["result"].as_str().unwrap().len(), 160);
    assert_eq!(replies[2]["id"], 3);
    assert_eq!(replies[2]["result"][1], "1.4");

    // A JSON array batch: one line with one reply per request, in order.
    e.send_raw(
        concat!(
            r#"[{"jsonrpc":"2.0","id":"a","method":"blockchain.relayfee","params":[]},"#,
            r#"{"jsonrpc":"2.0","id":"b","method":"no.such.method","params":[]},"#,
            r#"{"jsonrpc":"2.0","id":"c","method":"blockchain.block.header","params":[1]}]"#,
            "\n"
        )
        .as_bytes(),
    );
    let batch = e.read();
    let batch = batch.as_array().expect("an array reply");
    assert_eq!(batch.len(), 3);
    assert_eq!(batch[0]["id"], "a");
    assert_eq!(batch[1]["error"]["code"], -32601);
    assert_eq!(batch[2]["id"], "c");
    assert_eq!(
        batch[2]["result"].as_str().map(str::len),
        Some(160),
        "a plain header"
    );

    // A request split over two writes is one request.
    e.send_raw(br#"{"jsonrpc":"2.0","id":9,"method":"#);
    std::thread::sleep(Duration::from_millis(50));
    e.send_raw(b"\"server.banner\",\"params\":[]}\n");
    let r = e.read();
    assert_eq!(r["id"], 9);
    assert!(r["result"].is_string());

    // Unsupported protocol versions are refused.
    let r = e.call(10, "server.version", json!(["test", "1.2"]));
    assert!(r["error"].is_object());
}

fn status_of(history: &Value) -> String {
    let mut s = String::new();
    for item in history.as_array().unwrap() {
        s.push_str(&format!(
            "{}:{}:",
            item["tx_hash"].as_str().unwrap(),
            item["height"]
        ));
    }
    hex::encode(sha256::Hash::hash(s.as_bytes()).to_byte_array())
}

/// Read until a notification of `method` arrives (bounded).
fn next_notification(e: &mut Electrum, method: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(v) = e.try_read(Duration::from_secs(5)) {
            if v["method"] == method {
                return v;
            }
        }
    }
    panic!("no {method} notification within 20 s");
}

/// Read until a new-tip and a script-hash-status notification have both arrived (bounded),
/// in either order: the Electrum protocol does not order notifications, and the servers
/// differ: electrs 0.12 sends the statuses before the header (electrum.rs, `update_client`),
/// ours the header first. A second header notification fails the test.
fn tip_and_status_notifications(e: &mut Electrum) -> (Value, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut tip, mut status) = (None, None);
    while Instant::now() < deadline {
        if let (Some(_), Some(_)) = (&tip, &status) {
            break;
        }
        let Some(v) = e.try_read(Duration::from_secs(5)) else {
            continue;
        };
        match v["method"].as_str() {
            Some("blockchain.headers.subscribe") => {
                assert!(tip.is_none(), "a second header notification: {v}");
                tip = Some(v);
            }
            Some("blockchain.scripthash.subscribe") => status = Some(v),
            _ => {}
        }
    }
    match (tip, status) {
        (Some(t), Some(s)) => (t, s),
        (t, s) => panic!("within 20 s: header {t:?}, status {s:?}"),
    }
}

/// From the status notification `n` for `sh` on, read status notifications until one
/// carries the status of the history the server now returns (bounded: each round needs a
/// new notification within 20 s), and return that history. A server may notify a status
/// it passes through: electrs 0.12 notifies once after indexing a block (the block's
/// transactions still in its mempool copy) and again after its next mempool poll; the
/// protocol asks only that the last status notified be the current one.
fn settled_history(e: &mut Electrum, sh: &str, mut n: Value, id: u64) -> Value {
    for _ in 0..10 {
        assert_eq!(n["params"][0], json!(sh));
        let history = e.call(id, "blockchain.scripthash.get_history", json!([sh]));
        if n["params"][1] == json!(status_of(&history["result"])) {
            return history;
        }
        n = next_notification(e, "blockchain.scripthash.subscribe");
    }
    panic!("the notified status of {sh} never matched its history");
}

#[test]
fn notifications_for_new_tips_and_script_hash_statuses() {
    let env = env();
    let key = Key::new(41);
    let coin = funded(&env, &key, Amount::from_sat(400_000));
    let sh = ScriptHash::from_script(&key.script_pubkey()).to_string();
    let mut e = Electrum::connect(&env);

    let tip = e.call(1, "blockchain.headers.subscribe", json!([]));
    let height = tip["result"]["height"].as_u64().unwrap();
    let sub = e.call(2, "blockchain.scripthash.subscribe", json!([sh]));
    let history = e.call(3, "blockchain.scripthash.get_history", json!([sh]));
    assert_eq!(sub["result"], json!(status_of(&history["result"])));
    // A script hash without history has a null status.
    let empty = ScriptHash::from_script(&Key::new(42).script_pubkey()).to_string();
    let none = e.call(4, "blockchain.scripthash.subscribe", json!([empty]));
    assert!(none["result"].is_null());

    // A mempool spend changes the status: notified with the new status.
    let spend = key.spend(
        &[(coin, Amount::from_sat(400_000))],
        vec![TxOut {
            value: Amount::from_sat(390_000),
            script_pubkey: key.script_pubkey(),
        }],
    );
    let b = e.call(
        5,
        "blockchain.transaction.broadcast",
        json!([tx_hex(&spend)]),
    );
    assert_eq!(b["result"], json!(spend.compute_txid().to_string()));
    let n = next_notification(&mut e, "blockchain.scripthash.subscribe");
    let history = settled_history(&mut e, &sh, n, 6);
    let last = history["result"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["tx_hash"], json!(spend.compute_txid().to_string()));
    assert_eq!(last["height"], 0, "mempool, confirmed inputs");
    assert!(last["fee"].as_u64().unwrap() == 10_000);
    let bal = e.call(7, "blockchain.scripthash.get_balance", json!([sh]));
    assert_eq!(bal["result"]["confirmed"], 400_000);
    assert_eq!(bal["result"]["unconfirmed"], -10_000);
    let hist = e.call(8, "mempool.get_fee_histogram", json!([]));
    assert!(!hist["result"].as_array().unwrap().is_empty());

    // A new block: a header notification and a new status (the spend is now confirmed).
    env.mine(1).unwrap();
    let (h, n) = tip_and_status_notifications(&mut e);
    assert_eq!(h["params"][0]["height"], json!(height + 1));
    let header_hex = h["params"][0]["hex"].as_str().unwrap();
    let header: bitcoin::block::Header =
        bitcoin::consensus::encode::deserialize(&hex::decode(header_hex).unwrap()).unwrap();
    assert_eq!(header.block_hash(), env.tip_hash().unwrap());
    let history = settled_history(&mut e, &sh, n, 9);
    let last = history["result"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["tx_hash"], json!(spend.compute_txid().to_string()));
    assert_eq!(
        last["height"],
        json!(height + 1),
        "confirmed in the new block"
    );

    // A reorg that unconfirms the spend notifies again.
    let tip = env.tip_hash().unwrap();
    env.invalidate(&tip).unwrap();
    let (h, n) = tip_and_status_notifications(&mut e);
    assert_eq!(h["params"][0]["height"], json!(height));
    let history = settled_history(&mut e, &sh, n, 10);
    let last = history["result"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["height"], 0, "back in the mempool");

    // Unsubscribed: no more notifications for it.
    let u = e.call(11, "blockchain.scripthash.unsubscribe", json!([sh]));
    assert_eq!(u["result"], true);
    let u = e.call(12, "blockchain.scripthash.unsubscribe", json!([sh]));
    assert_eq!(u["result"], false);
}

#[test]
fn transaction_methods_and_broadcast_errors() {
    let env = env();
    let key = Key::new(51);
    let coin = funded(&env, &key, Amount::from_sat(100_000));
    let mut e = Electrum::connect(&env);
    let raw = e.call(
        1,
        "blockchain.transaction.get",
        json!([coin.txid.to_string()]),
    );
    let tx: bitcoin::Transaction = bitcoin::consensus::encode::deserialize(
        &hex::decode(raw["result"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(tx.compute_txid(), coin.txid);
    let verbose = e.call(
        2,
        "blockchain.transaction.get",
        json!([coin.txid.to_string(), true]),
    );
    assert_eq!(verbose["result"]["txid"], json!(coin.txid.to_string()));
    assert_eq!(verbose["result"]["confirmations"], 1);
    assert_eq!(
        verbose["result"]["blockhash"],
        json!(env.tip_hash().unwrap().to_string())
    );
    assert_eq!(verbose["result"]["hex"], raw["result"]);

    let unknown = e.call(3, "blockchain.transaction.get", json!(["11".repeat(32)]));
    assert!(unknown["error"].is_object());
    let bad = e.call(4, "blockchain.transaction.broadcast", json!(["zz"]));
    assert_eq!(bad["error"]["code"], 1);
    // Spending an immature coinbase: Core's reason in the error message, code 2 as electrs.
    let h1 = env.tip_height().unwrap();
    let cb_hash = env.rpc().call("getblockhash", &[json!(h1)]).unwrap();
    let block = env.rpc().call("getblock", &[cb_hash]).unwrap();
    let cb_txid = Txid::from_str(block["tx"][0].as_str().unwrap()).unwrap();
    let cb = netsupport::get_tx(&env, &cb_txid);
    let premature = key.spend(
        &[(
            bitcoin::OutPoint {
                txid: cb_txid,
                vout: 0,
            },
            cb.output[0].value,
        )],
        vec![TxOut {
            value: Amount::from_sat(1_000_000),
            script_pubkey: key.script_pubkey(),
        }],
    );
    let r = e.call(
        5,
        "blockchain.transaction.broadcast",
        json!([tx_hex(&premature)]),
    );
    assert_eq!(r["error"]["code"], 2);
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("bad-txns-premature-spend-of-coinbase"),
        "Core's reject reason: {msg}"
    );
    let merkle = e.call(
        6,
        "blockchain.transaction.get_merkle",
        json!([coin.txid.to_string(), 1]),
    );
    assert!(merkle["error"].is_object(), "not in block 1");
    let bad_params = e.call(7, "blockchain.scripthash.get_history", json!(["xyz"]));
    assert_eq!(bad_params["error"]["code"], -32602);
    let listunspent = e.call(
        8,
        "blockchain.scripthash.listunspent",
        json!([ScriptHash::from_script(&key.script_pubkey()).to_string()]),
    );
    assert_eq!(
        listunspent["result"][0]["tx_hash"],
        json!(coin.txid.to_string())
    );
    assert_eq!(listunspent["result"][0]["value"], 100_000);
}

/// Checkpoint proofs (`cp_height`, Electrum protocol 1.4) of our embedded Electrum server.
/// Always the embedded server, also under `scripts/build-core`: electrs 0.12 does not
/// implement `cp_height` (its `blockchain.block.header` and `blockchain.block.headers` take
/// no third parameter and answer -32602 "invalid params" to one, even to `cp_height` 0), so
/// no client of ours may send it (none does: the wallet goes through `bdk_electrum`, which
/// checks merkle proofs against headers it fetches without `cp_height`).
#[test]
fn checkpoint_proofs_verify_against_their_root() {
    use bitcoin::hashes::sha256d;
    let env = TestEnv::embedded().expect("start the embedded node");
    let mut e = Electrum::connect(&env);
    // cp_height 0 is the plain header, as without it.
    let plain = e.call(5, "blockchain.block.header", json!([1]));
    let zero = e.call(6, "blockchain.block.header", json!([1, 0]));
    assert_eq!(plain["result"].as_str().map(str::len), Some(160));
    assert_eq!(
        zero["result"], plain["result"],
        "cp_height 0 is a plain header"
    );
    let tip = env.tip_height().unwrap();
    let cp = tip - 1;
    for height in [0, 1, 37, cp] {
        let r = e.call(1, "blockchain.block.header", json!([height, cp]));
        let res = &r["result"];
        let header: bitcoin::block::Header = bitcoin::consensus::encode::deserialize(
            &hex::decode(res["header"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        // Fold the branch from the block hash up to the root.
        let mut cur = header.block_hash().to_raw_hash();
        let mut index = height;
        for b in res["branch"].as_array().unwrap() {
            let mut sib = hex::decode(b.as_str().unwrap()).unwrap();
            sib.reverse();
            let mut eng = sha256d::Hash::engine();
            if index % 2 == 0 {
                eng.input(cur.as_byte_array());
                eng.input(&sib);
            } else {
                eng.input(&sib);
                eng.input(cur.as_byte_array());
            }
            cur = sha256d::Hash::from_engine(eng);
            index /= 2;
        }
        let mut root = cur.to_byte_array();
        root.reverse();
        assert_eq!(json!(hex::encode(root)), res["root"], "height {height}");
    }
    let bad = e.call(2, "blockchain.block.header", json!([tip, cp]));
    assert!(bad["error"].is_object(), "height above cp_height");
    let hs = e.call(3, "blockchain.block.headers", json!([0, 5, cp]));
    assert_eq!(hs["result"]["count"], 5);
    let one = e.call(4, "blockchain.block.header", json!([4, cp]));
    assert_eq!(hs["result"]["root"], one["result"]["root"]);
    assert_eq!(hs["result"]["branch"], one["result"]["branch"]);
}
