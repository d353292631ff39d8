//! The claim rule's deadline across processes (PROTOCOL.md, job flow, step 6): an escrow
//! funding that confirms after `T - claim_margin` is never claimed (the parties' keys stay
//! secret), and the service gets every escrow output back once the tip reaches `T`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;
use support::net::Net;

/// A process killed when dropped.
struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn job_record(net: &Net) -> Option<Value> {
    let dir = net.cli.root.join("service").join("jobs");
    let entry = std::fs::read_dir(dir).ok()?.filter_map(Result::ok).next()?;
    serde_json::from_str(&std::fs::read_to_string(entry.path()).ok()?).ok()
}

fn mine_empty(net: &Net, n: u32) {
    let addr = net.env.mine_address().to_string();
    for _ in 0..n {
        net.env
            .rpc()
            .call("generateblock", &[json!(addr), json!([])])
            .expect("an empty block");
    }
    net.settle();
}

#[test]
fn an_escrow_confirming_after_t_minus_the_margin_is_never_claimed_and_is_refunded_at_t() {
    let net = Net::new();
    let card = net.granted_dataset(200);
    let before = net.cli.json("service", &["wallet", "balance"]);
    let tip0 = net.env.tip_height().unwrap();
    // T = tip + 8: the parties quote (they need tip + margin 2 + 1 confirmation + 3 <= T).
    let t = tip0 + 8;
    let mut c = net.command("service");
    c.args([
        "--json",
        "service",
        "query",
        &card,
        "sum(income)",
        "--fee",
        "5000sat",
        "--deadline",
        &t.to_string(),
        "--wait",
        "15",
        "--party-timeout",
        "30",
    ]);
    let mut child = Kill(
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait for the funding broadcast, then let the tip pass T - margin with the funding still
    // in the mempool (empty blocks), and confirm it in the block at height T - 1 + 1 = T.
    let end = Instant::now() + Duration::from_secs(60);
    let funding = loop {
        if let Some(f) =
            job_record(&net).and_then(|j| j["funding"]["funding_txid"].as_str().map(str::to_string))
        {
            break f;
        }
        assert!(Instant::now() < end, "the service never funded the escrow");
        std::thread::sleep(Duration::from_millis(200));
    };
    mine_empty(&net, t - 1 - net.env.tip_height().unwrap());
    net.env.mine(1).unwrap();
    net.settle();
    assert_eq!(net.env.tip_height().unwrap(), t);
    let out = (&mut child.0).wait_with_output_bounded();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    // Nobody claimed: the result is not opened, every output waits for its refund at T.
    assert_eq!(v["result"], json!({}), "{v}");
    let pending = v["pending_refunds"].as_array().unwrap();
    assert_eq!(pending.len(), 4, "{v}");
    assert!(pending.iter().all(|p| p["height"] == t), "{v}");
    for p in v["paid"].as_array().unwrap() {
        assert_eq!(p["escrow_txid"], funding.as_str());
        assert!(p["claim_txid"].is_null(), "{v}");
    }
    for p in ["p1", "p2", "p3", "p4"] {
        let log = std::fs::read_to_string(net.log(p)).unwrap();
        assert!(
            log.contains("never claiming"),
            "{p} refused for good:\n{log}"
        );
    }
    // At T the service takes every escrow output back; no key was ever revealed.
    let s = net
        .cli
        .json("service", &["service", "settle", "--fee-rate", "2"]);
    let refunds = s["jobs"][0]["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 4, "{s}");
    let id = s["jobs"][0]["job"].as_str().unwrap().to_string();
    net.env.mine(1).unwrap();
    net.settle();
    // Settled: `service settle` has no open job left; naming the job shows its report.
    let all = net.cli.json("service", &["service", "settle"]);
    assert_eq!(all["jobs"], json!([]), "{all}");
    let s = net.cli.json("service", &["service", "settle", &id]);
    assert_eq!(s["jobs"][0]["report"]["pending_refunds"], json!([]), "{s}");
    assert_eq!(s["jobs"][0]["report"]["result"], json!({}), "{s}");
    let after = net.cli.json("service", &["wallet", "balance"]);
    let lost = before["confirmed"].as_u64().unwrap() - after["confirmed"].as_u64().unwrap();
    assert_eq!(after["unconfirmed"], 0, "{after}");
    assert!(
        lost < 2_000,
        "the service lost only the funding's and the refunds' fees: {lost} sat"
    );
    for p in ["p1", "p2", "p3", "p4"] {
        let h = net.cli.json(p, &["wallet", "history"]);
        assert!(
            !h["transactions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["net_sat"]
                    .as_i64()
                    .is_some_and(|r| (1..5000).contains(&r))),
            "{p} claimed nothing: {h}"
        );
    }
}

trait WaitBounded {
    fn wait_with_output_bounded(self) -> std::process::Output;
}

impl WaitBounded for &mut std::process::Child {
    /// Waits at most 90 s (the child is killed by its guard otherwise).
    fn wait_with_output_bounded(self) -> std::process::Output {
        let end = Instant::now() + Duration::from_secs(90);
        while self.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "service query did not finish in 90 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        use std::io::Read;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        self.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        self.stderr.take().unwrap().read_to_end(&mut err).unwrap();
        std::process::Output {
            status: self.wait().unwrap(),
            stdout: out,
            stderr: err,
        }
    }
}
