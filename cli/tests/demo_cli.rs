//! `btcmpc demo all --json`: every scenario on one embedded node and one committee of four
//! party processes, checked here against an independent reading of the same JSON: results
//! against the engine's clear evaluation of the query over `data/randhie/randhie.csv`, each
//! role's balance change against the amounts and fees on the timeline, to the satoshi.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use btcmpc_engine::mpc::csv::{Dataset, ReadOptions};
use btcmpc_engine::mpc::field::Secp256k1Scalar;
use btcmpc_engine::mpc::query::{parse, plan};
use serde_json::Value;

/// The demo process: on drop, SIGTERM first (the demo then stops its own children and
/// removes its directory), SIGKILL if it has not exited 10 s later.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `btcmpc ARGS` with its temporary directory in `tmp`, both pipes captured.
fn spawn_demo(args: &[&str], tmp: &std::path::Path) -> Demo {
    let child = Command::new(env!("CARGO_BIN_EXE_btcmpc"))
        .args(args)
        .env_remove("BTCMPC_NETWORK")
        .env_remove("BTCMPC_DATADIR")
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Demo(child)
}

/// Everything the demo made lived in its temporary directory `tmp`, removed at the end.
fn assert_nothing_left(tmp: &std::path::Path) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn run_demo(args: &[&str], limit: Duration) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = spawn_demo(args, dir.path());
    // Read both pipes on threads so a full pipe never blocks the demo.
    let mut out = demo.0.stdout.take().unwrap();
    let mut err = demo.0.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(s) = demo.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < end,
            "the demo did not finish in {} s",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(demo);
    let (out, err) = (out_t.join().unwrap(), err_t.join().unwrap());
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert!(status.success(), "{status}: {err}\n{out}");
    assert_nothing_left(dir.path());
    (v, err)
}

/// The clear answer of `query` over the stored columns of the RAND file.
fn clear(query: &str) -> serde_json::Map<String, Value> {
    let csv = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/randhie/randhie.csv"
    ))
    .unwrap();
    let options = ReadOptions {
        columns: Some(vec!["meddol".into(), "income".into(), "educdec".into()]),
    };
    let data = Dataset::from_bytes_with(&csv, &options).unwrap();
    let p = plan::<Secp256k1Scalar>(&parse(query).unwrap(), &data.schema).unwrap();
    p.finish(&p.eval_clear(&data.values))
        .unwrap()
        .into_iter()
        .map(|o| (o.name, Value::from(o.decimal)))
        .collect()
}

fn scenario<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no scenario {name}: {v}"))
}

fn change(s: &Value, role: &str) -> i64 {
    let b = &s["balances"][role];
    let change = b["after"].as_i64().unwrap() - b["before"].as_i64().unwrap();
    assert_eq!(b["change"].as_i64(), Some(change), "{role}: {b}");
    change
}

/// The `sats` of the timeline steps whose text contains `what`.
fn steps(s: &Value, what: &str) -> Vec<i64> {
    s["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["step"].as_str().unwrap().contains(what))
        .map(|t| t["sats"].as_i64().unwrap())
        .collect()
}

/// The claim fees (sat) of the timeline steps whose text contains `what`, read from the
/// step's "(claim fee N sat)".
fn claim_fees(s: &Value, what: &str) -> Vec<i64> {
    s["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["step"].as_str())
        .filter(|t| t.contains(what))
        .map(|t| {
            let tail = t
                .split("(claim fee ")
                .nth(1)
                .expect("claim fee in the step");
            tail.split(' ').next().unwrap().parse().unwrap()
        })
        .collect()
}

/// The claim fee the escrow output carries on top of the party's 5000 sat (sat).
const QUOTED_CLAIM_FEE: i64 = 309;

/// The service paid one funding of four outputs of 5000 sat plus the claim's fee, plus a
/// funding fee; each claiming party got its 5000 sat exactly when its claim confirmed at the
/// quoted fee, and 5000 sat less what it added to bump its claim when the claim had to be
/// fee-bumped (a slow block under load): never more, and the balance matches to the satoshi.
fn check_payments(s: &Value, claimers: &[usize]) -> i64 {
    let funding = steps(s, "escrow outputs of");
    assert_eq!(funding.len(), 1, "{s}");
    let fee = -funding[0] - 4 * (5_000 + QUOTED_CLAIM_FEE);
    assert!((1..2_000).contains(&fee), "funding fee {fee}: {s}");
    for p in 1..=4 {
        let what = format!("party {p} claims");
        let claims = steps(s, &what);
        if claimers.contains(&p) {
            assert_eq!(claims.len(), 1, "party {p}: {s}");
            let cfee = claim_fees(s, &what)[0];
            assert!(cfee >= QUOTED_CLAIM_FEE, "party {p} claim fee {cfee}: {s}");
            assert!(cfee < 2_000, "party {p} claim fee {cfee} is bounded: {s}");
            assert_eq!(
                claims[0],
                5_000 + QUOTED_CLAIM_FEE - cfee,
                "party {p} is paid its fee less any bump: {s}"
            );
            assert_eq!(change(s, &format!("p{p}")), claims[0], "party {p}: {s}");
        } else {
            assert!(claims.is_empty(), "party {p} claimed: {s}");
            assert_eq!(change(s, &format!("p{p}")), 0, "party {p}: {s}");
        }
    }
    funding[0]
}

fn check_result(s: &Value) {
    let want = clear(s["query"].as_str().unwrap());
    assert!(!want.is_empty());
    assert_eq!(s["result"].as_object().unwrap(), &want, "{s}");
}

#[test]
fn demo_all_runs_every_scenario_with_results_and_balances_to_the_satoshi() {
    let (v, _) = run_demo(&["demo", "all", "--json"], Duration::from_secs(110));
    assert_eq!(v["ok"], true, "{v}");
    let names: Vec<&str> = v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "honest",
            "filter",
            "withhold",
            "wrong-share",
            "revoked",
            "equivocate"
        ]
    );
    for s in v["scenarios"].as_array().unwrap() {
        assert_eq!(s["ok"], true, "{s}");
        // Every role's change is what the scenario's own accounting expected.
        for (role, b) in s["balances"].as_object().unwrap() {
            assert_eq!(b["change"], b["expected_change"], "{role}: {s}");
        }
    }

    // honest: the right answer, four claims, the service paid exactly funding + fee.
    let s = scenario(&v, "honest");
    check_result(s);
    assert_eq!(s["result"]["count()"], "20190");
    assert_eq!(s["result"]["count(educdec)"], "20186", "4 gaps: {s}");
    assert_eq!(s["blamed"], serde_json::json!([]));
    let funding = check_payments(s, &[1, 2, 3, 4]);
    assert_eq!(change(s, "service"), funding);
    assert_eq!(change(s, "owner"), 0);

    // filter: every row compared in secret; the answer is the clear one, nothing withheld,
    // four claims. 5,799 of the 20,190 families have an income above 10,000.
    let s = scenario(&v, "filter");
    check_result(s);
    assert_eq!(s["result"]["count() where income > 10000"], "5799", "{s}");
    assert_eq!(s["blamed"], serde_json::json!([]));
    let funding = check_payments(s, &[1, 2, 3, 4]);
    assert_eq!(change(s, "service"), funding);

    // withhold: party 4 is paid nothing, its output comes back to the service less the
    // refund's fee.
    let s = scenario(&v, "withhold");
    check_result(s);
    let funding = check_payments(s, &[1, 2, 3]);
    let refund = steps(s, "refunds party 4");
    assert_eq!(refund.len(), 1, "{s}");
    assert!((5_000..5_309).contains(&refund[0]), "{s}");
    assert_eq!(change(s, "service"), funding + refund[0]);

    // wrong-share and equivocate: still right, party 3 named, its bond slashed: 50,000 sat
    // (10 x the fee) to the service, the bond down by that and the slash fee.
    for name in ["wrong-share", "equivocate"] {
        let s = scenario(&v, name);
        check_result(s);
        let blamed: Vec<i64> = s["blamed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["party"].as_i64().unwrap())
            .collect();
        assert_eq!(blamed, [3], "{s}");
        let funding = check_payments(s, &[1, 2, 3, 4]);
        let slashed = steps(s, "bond pays");
        assert_eq!(slashed, [50_000], "{s}");
        assert_eq!(change(s, "service"), funding + 50_000, "{s}");
        let (before, after) = (
            s["bond"]["before"].as_i64().unwrap(),
            s["bond"]["after"].as_i64().unwrap(),
        );
        assert!(
            (50_001..51_000).contains(&(before - after)),
            "the penalty and a slash fee: {s}"
        );
    }

    // revoked: refused, the revoked service's balance unchanged, the owner paid the REVOKE.
    let s = scenario(&v, "revoked");
    assert!(
        s["result"]["refused"].as_str().unwrap().contains("revoked"),
        "{s}"
    );
    assert_eq!(change(s, "service-b"), 0, "{s}");
    assert_eq!(
        steps(s, "refused by 4 parties (revoked)").len(),
        1,
        "every party refused, and the timeline says so: {s}"
    );
    let revoke = steps(s, "REVOKE record");
    assert_eq!(revoke.len(), 1);
    assert!((-2_000..0).contains(&revoke[0]), "{s}");
    assert_eq!(change(s, "owner"), revoke[0]);
    for p in ["p1", "p2", "p3", "p4"] {
        assert_eq!(change(s, p), 0, "{p}: {s}");
    }
}

#[test]
fn demo_refuses_another_network_in_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_btcmpc"))
        .args(["--network", "signet", "demo", "honest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("regtest"), "{err}");
    // Options naming another chain or datadir would be ignored: refused, each by name.
    for (opt, value) in [
        ("--datadir", "/nonexistent/demo-datadir"),
        ("--electrum", "127.0.0.1:1"),
        ("--rpc", "http://127.0.0.1:1"),
        ("--rpc-cookie", "/nonexistent/.cookie"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_btcmpc"))
            .args([opt, value, "demo", "honest"])
            .env_remove("BTCMPC_NETWORK")
            .env_remove("BTCMPC_DATADIR")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{opt}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(opt) && err.contains("does not apply"), "{err}");
        assert!(!std::path::Path::new("/nonexistent/demo-datadir").exists());
    }
}

#[test]
fn ctrl_c_stops_the_demo_with_code_130_a_json_report_and_nothing_left_behind() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut demo = spawn_demo(&["demo", "honest", "--json"], dir.path());
    let mut out = demo.0.stdout.take().unwrap();
    let err = demo.0.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    // Wait for the scenario to start (the committee is up, a query is on its way).
    let (tx, rx) = std::sync::mpsc::channel();
    let err_t = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("scenario honest") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(100)).is_ok(),
        "the honest scenario did not start"
    );
    let pid = demo.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = demo.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the demo did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(demo);
    let (out, err) = (out_t.join().unwrap(), err_t.join().unwrap());
    assert_eq!(status.code(), Some(130), "{status}: {err}\n{out}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(v["interrupted"], true, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert!(err.contains("interrupted"), "{err}");
    assert_nothing_left(dir.path());
}
