//! The Core-style JSON-RPC server: result shapes, error codes and HTTP statuses as Core's,
//! cookie authentication, the mempool methods and reorgs through invalidate/reconsider.

mod netsupport;

use std::str::FromStr;

use bitcoin::consensus::encode::deserialize;
use bitcoin::{Amount, Block, BlockHash, OutPoint, TxOut, Txid};
use btcmpc_regtest::harness::TestEnv;
use btcmpc_regtest::rpc_client::{Auth, RpcClient};
use netsupport::{cookie, funded, http, rpc_addr, tx_hex, txid_of, Key};
use serde_json::{json, Value};

fn env() -> TestEnv {
    TestEnv::new().expect("start a regtest node")
}

fn err_code(r: Result<Value, btcmpc_regtest::rpc_client::RpcClientError>) -> (i64, String) {
    match r {
        Err(btcmpc_regtest::rpc_client::RpcClientError::Rpc { code, message }) => (code, message),
        other => panic!("expected an rpc error, got {other:?}"),
    }
}

#[test]
fn chain_queries_have_cores_shapes() {
    let env = env();
    let rpc = env.rpc();
    let info = rpc.call("getblockchaininfo", &[]).unwrap();
    assert_eq!(info["chain"], "regtest");
    let height = info["blocks"].as_u64().unwrap();
    assert!(height >= 101, "the faucet's first blocks are mined");
    assert_eq!(rpc.call("getblockcount", &[]).unwrap(), json!(height));
    let best = rpc.call("getbestblockhash", &[]).unwrap();
    assert_eq!(info["bestblockhash"], best);
    assert_eq!(rpc.call("getblockhash", &[json!(height)]).unwrap(), best);
    assert_eq!(info["bits"], "207fffff");
    assert!(info["mediantime"].as_u64().unwrap() <= info["time"].as_u64().unwrap());
    assert_eq!(info["chainwork"].as_str().unwrap().len(), 64);

    // Genesis is Core's regtest genesis.
    assert_eq!(
        rpc.call("getblockhash", &[json!(0)]).unwrap(),
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    );

    // getblockheader, verbose and not.
    let h = rpc
        .call("getblockheader", std::slice::from_ref(&best))
        .unwrap();
    assert_eq!(h["hash"], best);
    assert_eq!(h["height"], json!(height));
    assert_eq!(h["confirmations"], 1);
    assert_eq!(h["nTx"], 1);
    assert!(h.get("nextblockhash").is_none());
    assert!(h["previousblockhash"].is_string());
    let raw = rpc
        .call("getblockheader", &[best.clone(), json!(false)])
        .unwrap();
    let header: bitcoin::block::Header =
        deserialize(&hex::decode(raw.as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(header.block_hash().to_string(), best.as_str().unwrap());
    let parent = rpc
        .call("getblockheader", &[h["previousblockhash"].clone()])
        .unwrap();
    assert_eq!(parent["nextblockhash"], best);
    assert_eq!(parent["confirmations"], 2);

    // getblock 0 and 1.
    let raw = rpc.call("getblock", &[best.clone(), json!(0)]).unwrap();
    let block: Block = deserialize(&hex::decode(raw.as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(block.block_hash().to_string(), best.as_str().unwrap());
    let b = rpc.call("getblock", std::slice::from_ref(&best)).unwrap();
    let coinbase = block.txdata[0].compute_txid().to_string();
    assert_eq!(b["tx"], json!([coinbase]));
    assert_eq!(b["weight"], json!(block.weight().to_wu()));
    assert_eq!(b["size"], json!(block.total_size()));

    // getrawtransaction of a confirmed coinbase: a full index.
    let t = rpc
        .call("getrawtransaction", &[json!(coinbase), json!(true)])
        .unwrap();
    assert_eq!(t["txid"], json!(coinbase));
    assert_eq!(t["blockhash"], best);
    assert_eq!(t["confirmations"], 1);
    assert!(t["vin"][0]["coinbase"].is_string());
    assert_eq!(t["vout"][0]["scriptPubKey"]["type"], "witness_v0_keyhash");
    assert_eq!(
        t["vout"][0]["scriptPubKey"]["address"],
        json!(env.mine_address().to_string())
    );
    let hex_only = rpc.call("getrawtransaction", &[json!(coinbase)]).unwrap();
    assert_eq!(hex_only, t["hex"]);
    // Verbosity as a number works too.
    let t1 = rpc
        .call("getrawtransaction", &[json!(coinbase), json!(1)])
        .unwrap();
    assert_eq!(t1["txid"], json!(coinbase));

    // An old coinbase (block 1) is found too, with its confirmations.
    let h1 = rpc.call("getblockhash", &[json!(1)]).unwrap();
    let b1 = rpc.call("getblock", &[h1.clone(), json!(1)]).unwrap();
    let t = rpc
        .call("getrawtransaction", &[b1["tx"][0].clone(), json!(true)])
        .unwrap();
    assert_eq!(t["confirmations"], json!(height));
    assert_eq!(t["blockhash"], h1);
}

#[test]
fn errors_have_cores_codes_and_http_statuses() {
    let env = env();
    let rpc = env.rpc();
    let (code, msg) = err_code(rpc.call("getblockhash", &[json!(100_000)]));
    assert_eq!((code, msg.as_str()), (-8, "Block height out of range"));
    let (code, msg) = err_code(rpc.call("getblockheader", &[json!("00")]));
    assert_eq!(code, -8);
    // Core's own text (getblockheader parses its `blockhash` parameter under the name `hash`),
    // seen against Core v31.99.
    assert_eq!(msg, "hash must be of length 64 (not 2, for '00')");
    let zero = "0".repeat(64);
    let (code, msg) = err_code(rpc.call("getblockheader", &[json!(zero)]));
    assert_eq!((code, msg.as_str()), (-5, "Block not found"));
    let (code, msg) = err_code(rpc.call("getblock", &[json!(zero)]));
    assert_eq!((code, msg.as_str()), (-5, "Block not found"));
    let (code, msg) = err_code(rpc.call("getrawtransaction", &[json!(zero)]));
    assert_eq!(code, -5);
    assert!(msg.starts_with("No such mempool or blockchain transaction"));
    let (code, _) = err_code(rpc.call("getblockhash", &[json!("ten")]));
    assert_eq!(code, -3, "type error");
    let (code, _) = err_code(rpc.call("getblockhash", &[]));
    assert_eq!(code, -1, "missing parameter: usage error");
    let (code, msg) = err_code(rpc.call("nosuchmethod", &[]));
    assert_eq!((code, msg.as_str()), (-32601, "Method not found"));
    let (code, _) = err_code(rpc.call("sendrawtransaction", &[json!("00zz")]));
    assert_eq!(code, -22);
    let (code, _) = err_code(rpc.call("getmempoolentry", &[json!(zero)]));
    assert_eq!(code, -5);
    let (code, _) = err_code(rpc.call("generatetoaddress", &[json!(1), json!("notanaddress")]));
    assert_eq!(code, -5);
    let (code, _) = err_code(rpc.call("estimatesmartfee", &[json!(0)]));
    assert_eq!(code, -8);
    let (code, _) = err_code(rpc.call("setmocktime", &[json!(-1)]));
    assert_eq!(code, -8);
    // Named parameters work, unknown ones are refused.
    let addr = rpc_addr(&env);
    let auth = cookie(&env);
    let (status, body) = http(
        &addr,
        Some(&auth),
        r#"{"id":1,"method":"getblockhash","params":{"height":0}}"#,
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["result"],
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    );
    let (_, body) = http(
        &addr,
        Some(&auth),
        r#"{"id":1,"method":"getblockhash","params":{"heigth":0}}"#,
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -8);

    // HTTP statuses as httprpc.cpp: 404 unknown method, 500 other errors in 1.x requests,
    // 200 with JSON-RPC 2.0, 204 for a 2.0 notification, 500 parse error.
    let (status, body) = http(&addr, Some(&auth), r#"{"id":1,"method":"nope"}"#);
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32601);
    assert_eq!(v["id"], 1);
    assert!(v["result"].is_null());
    let (status, _) = http(
        &addr,
        Some(&auth),
        r#"{"id":1,"method":"getblockhash","params":[-1]}"#,
    );
    assert_eq!(status, 500);
    let (status, body) = http(
        &addr,
        Some(&auth),
        r#"{"jsonrpc":"2.0","id":"a","method":"nope"}"#,
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], "a");
    assert!(v.get("result").is_none());
    let (status, body) = http(
        &addr,
        Some(&auth),
        r#"{"jsonrpc":"2.0","method":"getblockcount"}"#,
    );
    assert_eq!((status, body.as_str()), (204, ""));
    let (status, body) = http(&addr, Some(&auth), "{not json");
    assert_eq!(status, 500);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32700);
    // A batch: always 200, one reply per request, errors inside.
    let (status, body) = http(
        &addr,
        Some(&auth),
        r#"[{"id":1,"method":"getblockcount"},{"id":2,"method":"nope"},7]"#,
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[0]["id"], 1);
    assert!(v[0]["result"].is_u64());
    assert_eq!(v[1]["error"]["code"], -32601);
    assert_eq!(v[2]["error"]["code"], -32600);
}

#[test]
fn cookie_and_basic_auth() {
    let env = env();
    let addr = rpc_addr(&env);
    let body = r#"{"id":1,"method":"getblockcount"}"#;
    let (status, _) = http(&addr, None, body);
    assert_eq!(status, 401, "no credentials");
    let (status, _) = http(&addr, Some("__cookie__:wrong"), body);
    assert_eq!(status, 401, "wrong cookie");
    let (status, _) = http(&addr, Some(&cookie(&env)), body);
    assert_eq!(status, 200);
    let c = cookie(&env);
    let (user, pass) = c.split_once(':').unwrap();
    assert_eq!(user, "__cookie__");
    assert_eq!(pass.len(), 64);
    // The blocking client with explicit user/password and with the cookie file.
    let explicit = RpcClient::new(env.rpc_url(), Auth::UserPass(user.into(), pass.into())).unwrap();
    assert!(explicit.call("getblockcount", &[]).is_ok());
    let wrong = RpcClient::new(env.rpc_url(), Auth::UserPass(user.into(), "x".into())).unwrap();
    assert!(matches!(
        wrong.call("getblockcount", &[]),
        Err(btcmpc_regtest::rpc_client::RpcClientError::Unauthorized(_))
    ));
    // GET is refused as Core does.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
}

#[test]
fn mempool_methods_and_rejections() {
    let env = env();
    let rpc = env.rpc();
    let key = Key::new(7);
    let coin = funded(&env, &key, Amount::from_sat(1_000_000));
    let dest = Key::new(8);
    let spend = key.spend(
        &[(coin, Amount::from_sat(1_000_000))],
        vec![TxOut {
            value: Amount::from_sat(990_000),
            script_pubkey: dest.script_pubkey(),
        }],
    );
    let txid = spend.compute_txid();

    // testmempoolaccept: allowed, with vsize and fees; nothing is added.
    let r = rpc
        .call("testmempoolaccept", &[json!([tx_hex(&spend)])])
        .unwrap();
    assert_eq!(r[0]["allowed"], true, "{r}");
    assert_eq!(r[0]["txid"], json!(txid.to_string()));
    assert_eq!(r[0]["vsize"], json!(spend.vsize()));
    assert_eq!(r[0]["fees"]["base"], json!(0.0001));
    assert_eq!(rpc.call("getrawmempool", &[]).unwrap(), json!([]));
    // A max fee rate below what it pays refuses it.
    let r = rpc
        .call(
            "testmempoolaccept",
            &[json!([tx_hex(&spend)]), json!(0.00001)],
        )
        .unwrap();
    assert_eq!(r[0]["allowed"], false);
    assert_eq!(r[0]["reject-reason"], "max-fee-exceeded");

    // sendrawtransaction, then the mempool views.
    let sent = rpc
        .call("sendrawtransaction", &[json!(tx_hex(&spend))])
        .unwrap();
    assert_eq!(txid_of(&sent), txid);
    // Again: Core answers the txid again.
    let again = rpc
        .call("sendrawtransaction", &[json!(tx_hex(&spend))])
        .unwrap();
    assert_eq!(txid_of(&again), txid);
    assert_eq!(
        rpc.call("getrawmempool", &[]).unwrap(),
        json!([txid.to_string()])
    );
    let verbose = rpc.call("getrawmempool", &[json!(true)]).unwrap();
    let e = &verbose[txid.to_string()];
    assert_eq!(e["vsize"], json!(spend.vsize()));
    assert_eq!(e["fees"]["base"], json!(0.0001));
    assert_eq!(e["ancestorcount"], 1);
    let entry = rpc
        .call("getmempoolentry", &[json!(txid.to_string())])
        .unwrap();
    assert_eq!(entry["wtxid"], json!(spend.compute_wtxid().to_string()));
    assert_eq!(entry["depends"], json!([]));
    // getrawtransaction finds the mempool transaction, without block fields.
    let t = rpc
        .call("getrawtransaction", &[json!(txid.to_string()), json!(true)])
        .unwrap();
    assert!(t.get("blockhash").is_none());
    assert!(t.get("confirmations").is_none());

    // gettxout: the spent coin is gone when the mempool counts, there when it does not.
    let spent = rpc
        .call(
            "gettxout",
            &[json!(coin.txid.to_string()), json!(coin.vout)],
        )
        .unwrap();
    assert!(spent.is_null());
    let confirmed = rpc
        .call(
            "gettxout",
            &[json!(coin.txid.to_string()), json!(coin.vout), json!(false)],
        )
        .unwrap();
    assert_eq!(confirmed["value"], json!(0.01));
    assert_eq!(confirmed["confirmations"], 1);
    assert_eq!(confirmed["coinbase"], false);
    assert_eq!(
        confirmed["scriptPubKey"]["address"],
        json!(key.address.to_string())
    );
    let new_out = rpc
        .call("gettxout", &[json!(txid.to_string()), json!(0)])
        .unwrap();
    assert_eq!(new_out["confirmations"], 0);
    assert_eq!(new_out["value"], json!(0.0099));

    // A conflicting spend paying no more: `insufficient fee`, code -26.
    let low = key.spend(
        &[(coin, Amount::from_sat(1_000_000))],
        vec![TxOut {
            value: Amount::from_sat(990_001),
            script_pubkey: key.script_pubkey(),
        }],
    );
    let (code, msg) = err_code(rpc.call("sendrawtransaction", &[json!(tx_hex(&low))]));
    assert_eq!(code, -26);
    assert!(msg.starts_with("insufficient fee"), "{msg}");

    // Spending a coin that does not exist: -25 `bad-txns-inputs-missingorspent` from
    // sendrawtransaction (Core 31: `state.ToString()`), `missing-inputs` from testmempoolaccept.
    let ghost = OutPoint {
        txid: Txid::from_str(&"11".repeat(32)).unwrap(),
        vout: 0,
    };
    let orphan = key.spend(
        &[(ghost, Amount::from_sat(5_000))],
        vec![TxOut {
            value: Amount::from_sat(4_000),
            script_pubkey: key.script_pubkey(),
        }],
    );
    let (code, msg) = err_code(rpc.call("sendrawtransaction", &[json!(tx_hex(&orphan))]));
    assert_eq!(
        (code, msg.as_str()),
        (-25, "bad-txns-inputs-missingorspent")
    );
    let r = rpc
        .call("testmempoolaccept", &[json!([tx_hex(&orphan)])])
        .unwrap();
    assert_eq!(r[0]["allowed"], false);
    assert_eq!(r[0]["reject-reason"], "missing-inputs");

    // Mining confirms it; sending it again is "already in utxo set" (-27).
    let hashes = env.mine(1).unwrap();
    assert_eq!(rpc.call("getrawmempool", &[]).unwrap(), json!([]));
    let t = rpc
        .call("getrawtransaction", &[json!(txid.to_string()), json!(true)])
        .unwrap();
    assert_eq!(t["blockhash"], json!(hashes[0].to_string()));
    let (code, _) = err_code(rpc.call("sendrawtransaction", &[json!(tx_hex(&spend))]));
    assert_eq!(code, -27);
}

#[test]
fn invalidate_and_reconsider_move_transactions_back_to_the_mempool() {
    let env = env();
    let rpc = env.rpc();
    let key = Key::new(9);
    let coin = funded(&env, &key, Amount::from_sat(500_000));
    let tip = env.tip_hash().unwrap();
    let height = env.tip_height().unwrap();
    // The funding transaction is in the tip block.
    let t = rpc
        .call(
            "getrawtransaction",
            &[json!(coin.txid.to_string()), json!(true)],
        )
        .unwrap();
    assert_eq!(t["blockhash"], json!(tip.to_string()));

    env.invalidate(&tip).unwrap();
    assert_eq!(env.tip_height().unwrap(), height - 1);
    let pool = rpc.call("getrawmempool", &[]).unwrap();
    assert_eq!(pool, json!([coin.txid.to_string()]), "back in the mempool");
    let h = rpc
        .call("getblockheader", &[json!(tip.to_string())])
        .unwrap();
    assert_eq!(h["confirmations"], -1, "no longer in the best chain");
    // The transaction index follows the reorg.
    let t = rpc
        .call(
            "getrawtransaction",
            &[json!(coin.txid.to_string()), json!(true)],
        )
        .unwrap();
    assert!(t.get("blockhash").is_none());

    env.reconsider(&tip).unwrap();
    assert_eq!(env.tip_hash().unwrap(), tip);
    assert_eq!(rpc.call("getrawmempool", &[]).unwrap(), json!([]));

    // A competing chain: invalidate, mine two blocks elsewhere (to another address, so the
    // first one differs from the invalidated block), the funding tx is re-mined.
    env.invalidate(&tip).unwrap();
    let other = env.mine_to(2, &Key::new(10).address).unwrap();
    assert_eq!(env.tip_height().unwrap(), height + 1);
    let t = rpc
        .call(
            "getrawtransaction",
            &[json!(coin.txid.to_string()), json!(true)],
        )
        .unwrap();
    assert_eq!(t["blockhash"], json!(other[0].to_string()));
    let (code, _) = err_code(rpc.call("invalidateblock", &[json!("00".repeat(32))]));
    assert_eq!(code, -5);
}

#[test]
fn generateblock_setmocktime_and_fee_estimates() {
    let env = env();
    let rpc = env.rpc();
    let key = Key::new(11);
    let coin = funded(&env, &key, Amount::from_sat(300_000));
    let tx = key.spend(
        &[(coin, Amount::from_sat(300_000))],
        vec![TxOut {
            value: Amount::from_sat(290_000),
            script_pubkey: key.script_pubkey(),
        }],
    );
    // generateblock with a raw transaction that was never in the mempool.
    let tip_time = rpc.call("getblockchaininfo", &[]).unwrap()["mediantime"]
        .as_u64()
        .unwrap();
    let mock = tip_time + 10_000;
    assert!(rpc.call("setmocktime", &[json!(mock)]).unwrap().is_null());
    let r = rpc
        .call(
            "generateblock",
            &[json!(env.mine_address().to_string()), json!([tx_hex(&tx)])],
        )
        .unwrap();
    let hash = BlockHash::from_str(r["hash"].as_str().unwrap()).unwrap();
    let b = rpc.call("getblock", &[json!(hash.to_string())]).unwrap();
    assert_eq!(b["tx"][1], json!(tx.compute_txid().to_string()));
    assert_eq!(b["time"], json!(mock), "block time follows setmocktime");

    // generateblock with a mempool txid.
    let tx2 = key.spend(
        &[(
            OutPoint {
                txid: tx.compute_txid(),
                vout: 0,
            },
            Amount::from_sat(290_000),
        )],
        vec![TxOut {
            value: Amount::from_sat(280_000),
            script_pubkey: key.script_pubkey(),
        }],
    );
    rpc.call("sendrawtransaction", &[json!(tx_hex(&tx2))])
        .unwrap();
    let r = rpc
        .call(
            "generateblock",
            &[
                json!(format!("addr({})", env.mine_address())),
                json!([tx2.compute_txid().to_string()]),
            ],
        )
        .unwrap();
    let b = rpc.call("getblock", &[r["hash"].clone()]).unwrap();
    assert_eq!(b["tx"][1], json!(tx2.compute_txid().to_string()));
    // An unknown txid is refused with -5.
    let (code, _) = err_code(rpc.call(
        "generateblock",
        &[
            json!(env.mine_address().to_string()),
            json!(["22".repeat(32)]),
        ],
    ));
    assert_eq!(code, -5);

    // No fee data on a fresh regtest chain: Core's "errors" shape.
    let est = rpc.call("estimatesmartfee", &[json!(6)]).unwrap();
    if est.get("feerate").is_none() {
        assert_eq!(est["errors"][0], "Insufficient data or no feerate found");
    } else {
        assert!(est["feerate"].as_f64().unwrap() > 0.0);
        assert!(est["blocks"].as_u64().unwrap() >= 1);
    }
    let mempool = rpc.call("getmempoolinfo", &[]).unwrap();
    assert_eq!(mempool["minrelaytxfee"], json!(0.000001));
}

#[test]
fn automine_on_transaction_and_on_interval() {
    use btcmpc_regtest::server::{Server, ServerConfig};
    use btcmpc_regtest::AutomineMode;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::new(dir.path().join("a")).automine(Some(
        AutomineMode::OnTransaction {
            delay: Duration::from_millis(200),
        },
    )))
    .unwrap();
    let rpc = RpcClient::new(&server.rpc_url(), Auth::CookieFile(server.cookie_path())).unwrap();
    let key = Key::new(61);
    let reply = rpc
        .call("faucet", &[json!(key.address.to_string()), json!(0.01)])
        .unwrap();
    let ftxid = txid_of(&reply["txid"]);
    let height = rpc.call("getblockcount", &[]).unwrap().as_u64().unwrap();
    // Nothing in the mempool: no block appears on its own.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(rpc.call("getblockcount", &[]).unwrap(), json!(height));
    let ftx: bitcoin::Transaction = deserialize(
        &hex::decode(
            rpc.call("getrawtransaction", &[json!(ftxid.to_string())])
                .unwrap()
                .as_str()
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let vout = ftx
        .output
        .iter()
        .position(|o| o.script_pubkey == key.script_pubkey())
        .unwrap();
    let spend = key.spend(
        &[(
            OutPoint {
                txid: ftxid,
                vout: vout as u32,
            },
            Amount::from_sat(1_000_000),
        )],
        vec![TxOut {
            value: Amount::from_sat(990_000),
            script_pubkey: key.script_pubkey(),
        }],
    );
    rpc.call("sendrawtransaction", &[json!(tx_hex(&spend))])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = rpc
            .call(
                "getrawtransaction",
                &[json!(spend.compute_txid().to_string()), json!(true)],
            )
            .unwrap();
        if t.get("blockhash").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "automine did not mine the transaction"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        rpc.call("getblockcount", &[]).unwrap(),
        json!(height + 1),
        "one block for the transaction"
    );
    server.stop();

    // Interval mode mines empty blocks on its own.
    let server = Server::start(
        ServerConfig::new(dir.path().join("b"))
            .automine(Some(AutomineMode::Interval(Duration::from_millis(300)))),
    )
    .unwrap();
    let start = server.node().tip().height;
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.node().tip().height < start + 2 {
        assert!(Instant::now() < deadline, "interval automine did not mine");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Against a real bitcoind (BITCOIND_EXE and ELECTRS_EXE set): the embedded node's error codes
/// equal Core's, and its result fields are a subset of Core's, for the same queries.
#[test]
fn same_codes_and_fields_as_a_real_bitcoind() {
    let Some(real) = TestEnv::real_or_skip("same_codes_and_fields_as_a_real_bitcoind")
        .expect("start bitcoind and electrs")
    else {
        return;
    };
    let ours = TestEnv::embedded().expect("start the embedded node");
    let zero = "0".repeat(64);
    let error_cases: Vec<(&str, Vec<Value>)> = vec![
        ("getblockhash", vec![json!(1_000_000)]),
        ("getblockhash", vec![json!("x")]),
        ("getblockheader", vec![json!("00")]),
        ("getblockheader", vec![json!(zero)]),
        ("getblock", vec![json!(zero)]),
        ("getrawtransaction", vec![json!(zero)]),
        ("getmempoolentry", vec![json!(zero)]),
        ("sendrawtransaction", vec![json!("00zz")]),
        ("estimatesmartfee", vec![json!(0)]),
        ("nosuchmethod", vec![]),
    ];
    for (m, p) in &error_cases {
        let a = err_code(ours.rpc().call(m, p)).0;
        let b = err_code(real.rpc().call(m, p)).0;
        assert_eq!(a, b, "{m} {p:?}");
    }
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (a, b) = (&ours, &real);
    let best_a = a.rpc().call("getbestblockhash", &[]).unwrap();
    let best_b = b.rpc().call("getbestblockhash", &[]).unwrap();
    for (m, pa, pb) in [
        ("getblockheader", vec![best_a.clone()], vec![best_b.clone()]),
        ("getblock", vec![best_a.clone()], vec![best_b.clone()]),
        ("getblockchaininfo", vec![], vec![]),
    ] {
        let ka = keys(&a.rpc().call(m, &pa).unwrap());
        let kb = keys(&b.rpc().call(m, &pb).unwrap());
        let extra: Vec<_> = ka.iter().filter(|k| !kb.contains(k)).collect();
        assert!(
            extra.is_empty(),
            "{m}: fields Core does not have: {extra:?}"
        );
    }
}
