//! `btcmpc wallet` and the chain-facing `btcmpc contract` commands, run as a user runs them,
//! against a regtest chain (the embedded node, or bitcoind + electrs with `BITCOIND_EXE` and
//! `ELECTRS_EXE`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::{Address, Amount, Network};
use btcmpc_regtest::harness::TestEnv;
use serde_json::Value;

mod support;
use support::{output_bounded, Cli};

const WAIT: Duration = Duration::from_secs(30);

fn str_of(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_string()
}

fn setup() -> (TestEnv, Cli, tempfile::TempDir) {
    let env = TestEnv::new().expect("regtest chain starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let cli = Cli {
        electrum: env.electrum_url(),
        root: dir.path().to_path_buf(),
    };
    (env, cli, dir)
}

fn address(cli: &Cli, who: &str) -> Address {
    str_of(&cli.json(who, &["wallet", "address"]), "address")
        .parse::<Address<_>>()
        .unwrap()
        .require_network(Network::Regtest)
        .unwrap()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn settle(env: &TestEnv) {
    env.wait_for_height(env.tip_height().unwrap(), WAIT)
        .unwrap();
}

fn mine(env: &TestEnv, n: u32) {
    env.mine(n).unwrap();
    settle(env);
}

#[test]
fn escrow_fund_claim_status_and_early_refund() {
    let (env, cli, dir) = setup();
    cli.json("service", &["wallet", "create"]);
    cli.json("party", &["wallet", "create"]);
    env.fund(&address(&cli, "service"), Amount::from_sat(1_000_000))
        .unwrap();
    settle(&env);
    let bal = cli.json("service", &["wallet", "balance"]);
    assert_eq!(bal["confirmed"], 1_000_000);

    let s = str_of(&cli.json("service", &["wallet", "key"]), "pubkey");
    let p = str_of(&cli.json("party", &["wallet", "key"]), "pubkey");
    assert_eq!(s.len(), 66);
    let k = [0x5au8; 32];
    let h = sha256::Hash::hash(&k).to_string();
    let timeout = (env.tip_height().unwrap() + 6).to_string();
    let file = dir.path().join("escrow.json");
    let f = file.to_str().unwrap();
    cli.json(
        "service",
        &[
            "contract",
            "new",
            "claim-or-refund",
            "--receiver",
            &p,
            "--sender",
            &s,
            "--hash",
            &h,
            "--timeout",
            &timeout,
            "--out",
            f,
        ],
    );
    let funded = cli.json("service", &["contract", "fund", f, "40000sat"]);
    assert_eq!(funded["txid"].as_str().map(str::len), Some(64));
    assert!(funded["vout"].is_u64());
    mine(&env, 1);

    // One block before the timeout the refund is refused by the node as non-final.
    let tip = env.tip_height().unwrap();
    let t: u32 = timeout.parse().unwrap();
    mine(&env, t - 1 - tip);
    let err = cli.fails("service", &["contract", "refund", f]);
    assert!(err.contains("non-final"), "{err}");

    let outpoint = format!("{}:{}", str_of(&funded, "txid"), funded["vout"]);
    let promised = ["--outpoint", outpoint.as_str(), "--amount", "40000sat"];
    let claim_args = |preimage: &str, extra: &[&str]| -> Vec<String> {
        ["contract", "claim", f, "--preimage", preimage]
            .iter()
            .chain(&promised)
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let run_fails = |args: Vec<String>| {
        cli.fails(
            "party",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    // Bad input: a short preimage, the wrong preimage, a promise of more than the output holds.
    let err = run_fails(claim_args("abcd", &[]));
    assert!(err.contains("32 bytes"), "{err}");
    let err = run_fails(claim_args(&"11".repeat(32), &["--claim-margin", "1"]));
    assert!(err.contains("preimage"), "{err}");
    let mut more = claim_args(&hex::encode(k), &[]);
    more[8] = "40001sat".into();
    let err = run_fails(more);
    assert!(err.contains("less than the promised"), "{err}");
    // One block before the timeout is past `T - claim_margin` (2 on regtest): refused, and
    // nothing is broadcast.
    let err = run_fails(claim_args(&hex::encode(k), &[]));
    assert!(err.contains("claim margin 2"), "{err}");
    let st = cli.json("service", &["contract", "status", f]);
    assert!(st["spend"].is_null(), "{st}");
    // The margin can be lowered on regtest only.
    let err = cli.fails(
        "party",
        &[
            "--network",
            "signet",
            "contract",
            "claim",
            f,
            "--preimage",
            &hex::encode(k),
            "--outpoint",
            &outpoint,
            "--amount",
            "40000sat",
            "--claim-margin",
            "1",
        ],
    );
    assert!(err.contains("regtest only"), "{err}");

    let args = claim_args(&hex::encode(k), &["--claim-margin", "1"]);
    let claim = cli.json(
        "party",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let claim_txid = str_of(&claim, "txid");
    mine(&env, 1);
    let st = cli.json("service", &["contract", "status", f]);
    assert_eq!(st["spend"]["txid"].as_str(), Some(claim_txid.as_str()));
    assert_eq!(st["spend"]["path"], "claim");
    assert_eq!(
        st["spend"]["preimage"].as_str(),
        Some(hex::encode(k).as_str())
    );
    assert_eq!(st["spend"]["confirmations"], 1);
    let bal = cli.json("party", &["wallet", "balance"]);
    let got = bal["confirmed"].as_u64().unwrap();
    assert!(got > 39_000 && got < 40_000, "{bal}");
}

#[test]
fn bond_slash_passes_between_judges_as_a_psbt() {
    let (env, cli, dir) = setup();
    for who in ["party", "j1", "j2", "j3", "victim"] {
        cli.json(who, &["wallet", "create"]);
    }
    env.fund(&address(&cli, "party"), Amount::from_sat(2_000_000))
        .unwrap();
    settle(&env);
    let party = str_of(&cli.json("party", &["wallet", "key"]), "pubkey");
    let judges: Vec<String> = ["j1", "j2", "j3"]
        .iter()
        .map(|j| str_of(&cli.json(j, &["wallet", "key"]), "pubkey"))
        .collect();
    let exit = (env.tip_height().unwrap() + 50).to_string();
    let file = dir.path().join("bond.json");
    let f = file.to_str().unwrap();
    let judges_arg = format!("2,{}", judges.join(","));
    cli.json(
        "party",
        &[
            "contract",
            "new",
            "bond",
            "--party",
            &party,
            "--judges",
            &judges_arg,
            "--exit",
            &exit,
            "--out",
            f,
        ],
    );
    cli.json("party", &["contract", "fund", f, "0.01btc"]);
    mine(&env, 1);

    // Exiting early is refused.
    let err = cli.fails("party", &["contract", "exit", f]);
    assert!(err.contains("non-final"), "{err}");

    let victim = address(&cli, "victim").to_string();
    // The terms every judge gives on its own command line.
    let terms = [
        "--to",
        victim.as_str(),
        "--amount",
        "300000sat",
        "--fee-rate",
        "2",
    ];
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter().chain(tail).map(|s| s.to_string()).collect()
    };

    // The accused party writes a slash of its whole bond paying itself: every judge refuses it.
    let own = address(&cli, "party").to_string();
    let evil = dir.path().join("evil.psbt");
    let e = evil.to_str().unwrap();
    cli.json(
        "party",
        &[
            "contract",
            "slash",
            f,
            "--to",
            &own,
            "--fee-rate",
            "2",
            "--psbt-out",
            e,
        ],
    );
    for j in ["j1", "j3"] {
        let err = cli.fails(
            j,
            &strs(&with(&["contract", "sign-psbt", e, "--bond", f], &terms)),
        );
        assert!(err.contains("not the canonical slash"), "{err}");
    }
    let err = cli.fails(
        "j2",
        &strs(&with(
            &["contract", "broadcast-psbt", e, "--bond", f],
            &terms,
        )),
    );
    assert!(err.contains("not the canonical slash"), "{err}");

    let psbt = dir.path().join("slash.psbt");
    let p = psbt.to_str().unwrap();
    let made = cli.json(
        "j1",
        &strs(&with(&["contract", "slash", f, "--psbt-out", p], &terms)),
    );
    assert_eq!(made["signatures"], 1);
    assert_eq!(made["penalty_sat"], 300_000);
    let sign = with(&["contract", "sign-psbt", p, "--bond", f], &terms);
    let broadcast = with(&["contract", "broadcast-psbt", p, "--bond", f], &terms);
    // One signature of two: refused, nothing broadcast.
    let err = cli.fails("j1", &strs(&broadcast));
    assert!(
        err.to_lowercase().contains("signature") || err.contains("satisf"),
        "{err}"
    );
    // A judge given another fee rate or penalty refuses the same PSBT.
    let mut other = sign.clone();
    other[10] = "3".into();
    let err = cli.fails("j3", &strs(&other));
    assert!(err.contains("not the canonical slash"), "{err}");
    let mut other = sign.clone();
    other[8] = "400000sat".into();
    let err = cli.fails("j3", &strs(&other));
    assert!(err.contains("output 0 pays 300000 sat"), "{err}");
    // The victim holds no judge key.
    // The victim holds no judge key: the checked slash is shown, then the refusal.
    let out = cli.run("victim", &strs(&sign));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim()
            .lines()
            .last()
            .unwrap_or_default()
            .contains("judge"),
        "{err}"
    );
    let out = cli.run("j3", &strs(&sign));
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("300000 sat to {victim}")),
        "where the money goes is printed before signing: {out:?}"
    );
    let sent = cli.json("j2", &strs(&broadcast));
    env.wait_for_tx(&str_of(&sent, "txid").parse().unwrap(), WAIT)
        .unwrap();
    mine(&env, 1);
    assert_eq!(
        cli.json("victim", &["wallet", "balance"])["confirmed"],
        300_000
    );
    let st = cli.json("party", &["contract", "status", f]);
    assert_eq!(st["spend"]["path"], "slash");
    // The remainder is listed as the bond's unspent output.
    let outputs = st["outputs"].as_array().expect("outputs listed");
    assert_eq!(outputs.len(), 2, "{st}");
    assert!(outputs[1]["spend"].is_null(), "{st}");
    assert_eq!(
        outputs[1]["outpoint"].as_str(),
        Some(format!("{}:1", str_of(&sent, "txid")).as_str())
    );
}

#[test]
fn wallet_commands_refuse_bad_input_in_one_line() {
    let (env, cli, _dir) = setup();
    let err = cli.fails("nobody", &["wallet", "balance"]);
    assert!(err.contains("no wallet"), "{err}");
    cli.json("w", &["wallet", "create"]);
    let err = cli.fails("w", &["wallet", "create"]);
    assert!(err.contains("already exists"), "{err}");
    env.fund(&address(&cli, "w"), Amount::from_sat(100_000))
        .unwrap();
    settle(&env);
    let err = cli.fails(
        "w",
        &[
            "wallet",
            "send",
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "1000sat",
        ],
    );
    assert!(err.contains("not valid on regtest"), "{err}");
    let own = address(&cli, "w").to_string();
    let err = cli.fails("w", &["wallet", "send", &own, "5btc"]);
    assert!(err.contains("insufficient funds"), "{err}");
    let err = cli.fails("w", &["wallet", "send", &own, "1000"]);
    assert!(err.contains("needs a unit"), "{err}");
    // An unreachable server is named.
    let lease = btcmpc_regtest::ports::PortLease::new().unwrap();
    let port = lease.port();
    let out = output_bounded(Command::new(env!("CARGO_BIN_EXE_btcmpc")).args([
        "--datadir",
        cli.root.join("w").to_str().unwrap(),
        "--electrum",
        &format!("127.0.0.1:{port}"),
        "wallet",
        "sync",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port}")));
    // A contract file for another network.
    let key = str_of(&cli.json("w", &["wallet", "key"]), "pubkey");
    let file = cli.root.join("signet.json");
    let out = output_bounded(
        Command::new(env!("CARGO_BIN_EXE_btcmpc"))
            .args([
                "--network",
                "signet",
                "--datadir",
                cli.root.join("x").to_str().unwrap(),
            ])
            .args([
                "contract",
                "new",
                "claim-or-refund",
                "--receiver",
                &key,
                "--sender",
                &key,
            ])
            .args([
                "--hash",
                &"00".repeat(32),
                "--timeout",
                "500",
                "--out",
                file.to_str().unwrap(),
            ]),
    );
    assert!(out.status.success(), "{out:?}");
    let err = cli.fails(
        "w",
        &["contract", "fund", file.to_str().unwrap(), "1000sat"],
    );
    assert!(err.contains("signet"), "{err}");
    assert_eq!(
        cli.json("w", &["wallet", "balance"])["confirmed"],
        100_000,
        "nothing was spent"
    );
}

/// Kill `wallet send` at many points of its run; the wallet must always open again, and after
/// a sync its coins are all accounted for: either the payment happened or it did not.
#[test]
fn a_killed_send_leaves_a_consistent_wallet() {
    let (env, cli, _dir) = setup();
    cli.json("w", &["wallet", "create"]);
    cli.json("sink", &["wallet", "create"]);
    env.fund(&address(&cli, "w"), Amount::from_sat(5_000_000))
        .unwrap();
    settle(&env);
    cli.json("w", &["wallet", "sync"]);
    let sink = address(&cli, "sink").to_string();
    let wallet_dir: &Path = &cli.root.join("w");
    for delay_ms in [0u64, 5, 10, 20, 40, 80, 160] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_btcmpc"))
            .args([
                "--datadir",
                wallet_dir.to_str().unwrap(),
                "--electrum",
                &cli.electrum,
            ])
            .args(["wallet", "send", &sink, "10000sat"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // The wallet opens and syncs after every kill.
        cli.json("w", &["wallet", "sync"]);
    }
    // And it still pays: one send runs to completion after the kills.
    cli.json("w", &["wallet", "send", &sink, "10000sat"]);
    mine(&env, 1);
    let w = cli.json("w", &["wallet", "sync"]);
    let sunk = cli.json("sink", &["wallet", "sync"]);
    let fees: u64 = cli.json("w", &["wallet", "history"])["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["net_sat"].as_i64().unwrap() < 0)
        .map(|t| t["fee_sat"].as_u64().unwrap())
        .sum();
    let paid = sunk["confirmed"].as_u64().unwrap();
    assert_eq!(paid % 10_000, 0);
    assert!(paid >= 10_000, "the last send confirmed: {sunk}");
    let sends = cli.json("w", &["wallet", "history"])["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["net_sat"].as_i64().unwrap() < 0)
        .count() as u64;
    assert_eq!(
        paid,
        sends * 10_000,
        "every payment that left the wallet reached the sink"
    );
    assert_eq!(w["unconfirmed"], 0);
    assert_eq!(
        w["confirmed"].as_u64().unwrap() + paid + fees,
        5_000_000,
        "{w} {sunk}"
    );
}

/// `regtest status|mine` against any node given by `--rpc` (the harness's node here; a real
/// bitcoind with `BITCOIND_EXE` and `ELECTRS_EXE`).
#[test]
fn regtest_commands_reach_any_node_by_rpc() {
    let (env, cli, _dir) = setup();
    let cookie = env.cookie_path().expect("the node writes a cookie");
    let rpc = [
        "--rpc",
        env.rpc_url(),
        "--rpc-cookie",
        cookie.to_str().unwrap(),
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        rpc.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let args = with(&["regtest", "status"]);
    let st = cli.json("x", &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        st["height"].as_u64(),
        Some(u64::from(env.tip_height().unwrap()))
    );
    assert_eq!(st["rpc"].as_str(), Some(env.rpc_url()));
    let to = env.mine_address().to_string();
    let args = with(&["regtest", "mine", "2", "--to", &to]);
    let mined = cli.json("x", &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(mined["blocks"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        mined["height"].as_u64(),
        Some(u64::from(env.tip_height().unwrap()))
    );
    let args = with(&["regtest", "mine", "1"]);
    let err = cli.fails("x", &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("--to"), "{err}");
}

/// Issue 11's case as a user runs it: `wallet send ADDR 10000sat --fee-rate 2` and
/// `contract fund escrow.json 50000sat`, the node killed before a block (its mempool lost, as
/// after `kill -9`), then `wallet sync` re-broadcasts both, `wallet balance`, `wallet history`
/// and `contract status` still show them, and they confirm at the next block.
#[test]
fn a_payment_and_a_funding_survive_a_node_crash() {
    use btcmpc_regtest::harness::Restart;
    let (mut env, cli, dir) = setup();
    cli.json("alice", &["wallet", "create"]);
    cli.json("bob", &["wallet", "create"]);
    env.fund(&address(&cli, "alice"), Amount::from_sat(1_000_000))
        .unwrap();
    settle(&env);
    let to = address(&cli, "bob").to_string();
    let sent = cli.json(
        "alice",
        &["wallet", "send", &to, "10000sat", "--fee-rate", "2"],
    );
    let txid = str_of(&sent, "txid");
    let a = str_of(&cli.json("alice", &["wallet", "key"]), "pubkey");
    let b = str_of(&cli.json("bob", &["wallet", "key"]), "pubkey");
    let file = dir.path().join("escrow.json");
    let f = file.to_str().unwrap();
    let h = sha256::Hash::hash(&[1u8; 32]).to_string();
    let timeout = (env.tip_height().unwrap() + 50).to_string();
    cli.json(
        "alice",
        &[
            "contract",
            "new",
            "claim-or-refund",
            "--receiver",
            &b,
            "--sender",
            &a,
            "--hash",
            &h,
            "--timeout",
            &timeout,
            "--out",
            f,
        ],
    );
    let funded = cli.json(
        "alice",
        &["contract", "fund", f, "50000sat", "--fee-rate", "2"],
    );
    let funding = str_of(&funded, "txid");
    let before = cli.json("alice", &["wallet", "balance"]);
    assert!(before["unconfirmed"].as_u64().unwrap() > 0, "{before}");

    env.restart(Restart::Crash).unwrap();
    let pool = env.rpc().call("getrawmempool", &[]).unwrap();
    assert_eq!(pool, serde_json::json!([]), "the crash lost the mempool");
    let sync = cli.json("alice", &["wallet", "sync"]);
    assert_eq!(sync["rebroadcast"], 2, "{sync}");
    let pool = env.rpc().call("getrawmempool", &[]).unwrap();
    assert_eq!(pool.as_array().unwrap().len(), 2, "{pool}");
    let after = cli.json("alice", &["wallet", "balance"]);
    assert_eq!(after, before, "nothing forgotten");
    let history = cli.json("alice", &["wallet", "history"]);
    for t in [&txid, &funding] {
        let item = history["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["txid"] == t.as_str())
            .unwrap_or_else(|| panic!("{t} in {history}"));
        assert!(item["height"].is_null(), "{item}");
    }
    let st = cli.json("alice", &["contract", "status", f]);
    assert_eq!(
        st["funding"]["outpoint"],
        format!("{funding}:{}", funded["vout"]).as_str(),
        "{st}"
    );
    assert_eq!(st["funding"]["confirmations"], 0);

    mine(&env, 1);
    let st = cli.json("alice", &["contract", "status", f]);
    assert_eq!(st["funding"]["confirmations"], 1, "{st}");
    let bob = cli.json("bob", &["wallet", "balance"]);
    assert_eq!(bob["confirmed"], 10_000);
}
