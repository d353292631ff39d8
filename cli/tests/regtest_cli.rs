//! `btcmpc regtest` end to end: up --detach, status --json, mine, faucet, down, restart keeps
//! the chain, and a foreground node stopped by SIGTERM. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use btcmpc_regtest::rpc_client::{Auth, RpcClient};
use btcmpc_regtest::server::NodeInfo;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_btcmpc");

/// Run `btcmpc --datadir DIR ARGS...` with a timeout.
fn btcmpc(datadir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("--datadir")
        .arg(datadir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run btcmpc");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("btcmpc {args:?} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document on stdout")
}

/// Stops (or kills) a node left running by a failed test.
struct NodeGuard(PathBuf);

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Ok(Some(info)) = NodeInfo::read(&self.0) {
            let _ = btcmpc(&self.0, &["regtest", "down"]);
            if info.process_alive() && info.pid != std::process::id() {
                let _ = Command::new("kill")
                    .arg("-9")
                    .arg(info.pid.to_string())
                    .status();
            }
        }
    }
}

fn rpc_of(datadir: &Path) -> RpcClient {
    let info = NodeInfo::read(datadir).unwrap().expect("node.json");
    RpcClient::new(&info.rpc, Auth::CookieFile(info.cookie)).unwrap()
}

#[test]
fn up_status_mine_faucet_down_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("regtest");
    let _guard = NodeGuard(datadir.clone());
    let datadir = datadir.as_path();

    // No node yet: status fails with exit code 1 and a one-line reason.
    let out = btcmpc(datadir, &["regtest", "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no regtest node running"));

    let up = json_of(&btcmpc(
        datadir,
        &[
            "--json",
            "regtest",
            "up",
            "--detach",
            "--electrum-port",
            "0",
            "--rpc-port",
            "0",
        ],
    ));
    assert!(
        up["height"].as_u64().unwrap() >= 101,
        "faucet blocks mined: {up}"
    );
    assert!(datadir.join("node.json").exists());
    assert!(datadir.join(".cookie").exists());
    assert!(datadir.join("faucet.key").exists());

    let status = json_of(&btcmpc(datadir, &["--json", "regtest", "status"]));
    let electrum = status["electrum"].as_str().unwrap();
    assert!(electrum.starts_with("127.0.0.1:"), "{status}");
    assert!(status["rpc"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    let h0 = status["height"].as_u64().unwrap();
    assert_eq!(h0, 101);
    // The Electrum port answers.
    {
        use std::io::{BufRead, BufReader, Write};
        let s = std::net::TcpStream::connect(electrum).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        w.write_all(b"{\"id\":1,\"method\":\"blockchain.headers.subscribe\",\"params\":[]}\n")
            .unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["result"]["height"], json!(h0));
    }

    // A second `up` on the same datadir is refused.
    let again = btcmpc(
        datadir,
        &[
            "regtest",
            "up",
            "--detach",
            "--electrum-port",
            "0",
            "--rpc-port",
            "0",
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));

    let mined = json_of(&btcmpc(datadir, &["--json", "regtest", "mine", "3"]));
    assert_eq!(mined["height"], json!(h0 + 3));
    assert_eq!(mined["blocks"].as_array().unwrap().len(), 3);

    let addr = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk";
    let to = json_of(&btcmpc(
        datadir,
        &["--json", "regtest", "mine", "1", "--to", addr],
    ));
    assert_eq!(to["height"], json!(h0 + 4));
    let rpc = rpc_of(datadir);
    let block = rpc
        .call("getblock", &[to["blocks"][0].clone(), json!(2)])
        .unwrap();
    assert_eq!(block["tx"][0]["vout"][0]["scriptPubKey"]["address"], addr);

    let paid = json_of(&btcmpc(
        datadir,
        &["--json", "regtest", "faucet", addr, "50000sat"],
    ));
    assert_eq!(paid["height"], json!(h0 + 5), "the faucet mines one block");
    let tx = rpc
        .call("getrawtransaction", &[paid["txid"].clone(), json!(true)])
        .unwrap();
    assert_eq!(tx["confirmations"], 1);
    let out = tx["vout"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["scriptPubKey"]["address"] == addr)
        .expect("an output to the address");
    assert_eq!(out["value"], json!(0.0005));
    let paid2 = json_of(&btcmpc(
        datadir,
        &["--json", "regtest", "faucet", addr, "0.001btc"],
    ));
    assert_ne!(paid2["txid"], paid["txid"]);

    // Bad input: exit code 1 with a reason; usage errors exit 2.
    let bad = btcmpc(datadir, &["regtest", "faucet", "notanaddress", "1btc"]);
    assert_eq!(bad.status.code(), Some(1));
    let bad = btcmpc(datadir, &["regtest", "faucet", addr, "12"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unit"));
    let too_much = btcmpc(datadir, &["regtest", "faucet", addr, "1000000btc"]);
    assert_eq!(too_much.status.code(), Some(1));
    let usage = btcmpc(datadir, &["regtest", "mine"]);
    assert_eq!(usage.status.code(), Some(2));

    let height_before = rpc.call("getblockcount", &[]).unwrap();
    let down = json_of(&btcmpc(datadir, &["--json", "regtest", "down"]));
    assert_eq!(down["stopped"], true);
    assert!(!datadir.join("node.json").exists());
    assert!(!datadir.join(".cookie").exists());
    let out = btcmpc(datadir, &["regtest", "status"]);
    assert_eq!(out.status.code(), Some(1));

    // Restart: the chain is kept and no new faucet blocks are mined.
    let up = json_of(&btcmpc(
        datadir,
        &[
            "--json",
            "regtest",
            "up",
            "--detach",
            "--electrum-port",
            "0",
            "--rpc-port",
            "0",
        ],
    ));
    assert_eq!(up["height"], height_before);
    let rpc = rpc_of(datadir);
    let tx = rpc
        .call("getrawtransaction", &[paid["txid"].clone(), json!(true)])
        .unwrap();
    assert!(tx["confirmations"].as_u64().unwrap() >= 1);
    let down = btcmpc(datadir, &["regtest", "down"]);
    assert!(down.status.success());
    assert!(datadir.join("node.log").exists());
}

#[test]
fn foreground_node_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("fg");
    let _guard = NodeGuard(datadir.clone());
    let mut child = Command::new(BIN)
        .arg("--datadir")
        .arg(&datadir)
        .args(["regtest", "up", "--electrum-port", "0", "--rpc-port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(info)) = NodeInfo::read(&datadir) {
            if btcmpc_regtest::server::rpc_answers(&info) {
                assert_eq!(info.pid, child.id());
                break;
            }
        }
        assert!(Instant::now() < deadline, "foreground node did not come up");
        assert!(child.try_wait().unwrap().is_none(), "node exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "clean exit on SIGTERM: {exit}");
    assert!(!datadir.join("node.json").exists(), "node.json removed");
}

fn up(datadir: &Path) -> NodeInfo {
    json_of(&btcmpc(
        datadir,
        &[
            "--json",
            "regtest",
            "up",
            "--detach",
            "--electrum-port",
            "0",
            "--rpc-port",
            "0",
        ],
    ));
    NodeInfo::read(datadir).unwrap().expect("node.json")
}

fn mempool_of(datadir: &Path) -> Vec<String> {
    let v = rpc_of(datadir).call("getrawmempool", &[]).unwrap();
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// `regtest down` then `regtest up` keeps the mempool (as Core's `mempool.dat`); a `kill -9`
/// loses what entered since the last clean stop; the wallet's next sync puts its own
/// transactions back either way.
#[test]
fn down_and_up_keep_the_mempool_and_kill_9_loses_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node");
    let wallet = dir.path().join("alice");
    let _guard = NodeGuard(node.clone());
    let info = up(&node);
    let w = |electrum: &str, args: &[&str]| -> Value {
        let mut all = vec!["--electrum", electrum, "--json"];
        all.extend_from_slice(args);
        json_of(&btcmpc(&wallet, &all))
    };
    w(&info.electrum, &["wallet", "create"]);
    let addr = w(&info.electrum, &["wallet", "address"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    json_of(&btcmpc(
        &node,
        &["--json", "regtest", "faucet", &addr, "0.01btc"],
    ));
    let to = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk";
    let first = w(
        &info.electrum,
        &["wallet", "send", to, "10000sat", "--fee-rate", "2"],
    )["txid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(mempool_of(&node), vec![first.clone()]);
    let balance = w(&info.electrum, &["wallet", "balance"]);

    json_of(&btcmpc(&node, &["--json", "regtest", "down"]));
    assert!(node.join("mempool.dat").exists());
    let info = up(&node);
    assert_eq!(
        mempool_of(&node),
        vec![first.clone()],
        "kept across down/up"
    );
    assert_eq!(w(&info.electrum, &["wallet", "balance"]), balance);

    let second = w(
        &info.electrum,
        &["wallet", "send", to, "20000sat", "--fee-rate", "2"],
    )["txid"]
        .as_str()
        .unwrap()
        .to_string();
    let status = Command::new("kill")
        .arg("-9")
        .arg(info.pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while info.process_alive() {
        assert!(Instant::now() < deadline, "the node did not die");
        std::thread::sleep(Duration::from_millis(50));
    }
    let info = up(&node);
    // Core reloads the mempool.dat of the last clean stop: the first payment is back, the
    // second (sent after it) is lost.
    assert_eq!(mempool_of(&node), vec![first.clone()]);
    let sync = w(&info.electrum, &["wallet", "sync"]);
    assert_eq!(sync["rebroadcast"], 2, "{sync}");
    let mut both = vec![first, second];
    both.sort();
    assert_eq!(mempool_of(&node), both, "the wallet put its payment back");
    json_of(&btcmpc(&node, &["--json", "regtest", "down"]));
}
