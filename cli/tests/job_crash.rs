//! Crash safety of a paid query (PROTOCOL.md, job flow: "Every step persists its state before
//! it acts"): the service or a party is killed (abort, like `kill -9`) at each step, restarted,
//! and the service still gets the result or its money back, and an honest party still gets
//! paid before the deadline.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;
use support::net::Net;

const QUERY: &str = "sum(income), count()";
const ROWS: usize = 300;

fn jobs(net: &Net) -> BTreeSet<String> {
    std::fs::read_dir(net.cli.root.join("service").join("jobs"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".json")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn query_args(card: &str) -> Vec<&str> {
    vec![
        "--json",
        "service",
        "query",
        card,
        QUERY,
        "--fee",
        "1000sat",
        "--deadline",
        "+60",
        "--wait",
        "20",
        "--party-timeout",
        "20",
    ]
}

/// Runs `service settle JOB` (mining meanwhile) until `done` holds for its report, at most
/// 60 s; returns the last report.
fn settle_until(net: &Net, job: &str, done: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let out = net.run_mining(
            "service",
            &["--json", "service", "settle", job],
            &[],
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "settle failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let report = v["jobs"][0]["report"].clone();
        if done(&report) {
            return report;
        }
        assert!(Instant::now() < end, "settle never got there: {report}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn balance(net: &Net) -> u64 {
    let b = net.cli.json("service", &["wallet", "balance"]);
    b["confirmed"].as_u64().unwrap() + b["unconfirmed"].as_u64().unwrap()
}

/// The clear `sum(income)` of the test CSV, in tenths.
fn clear_sum() -> String {
    let tenths: i64 = (0..ROWS as i64)
        .filter(|r| r % 7 != 3)
        .map(|r| (r % 1000 + 1) * 10 + r % 10)
        .sum();
    format!("{}.{}", tenths / 10, tenths % 10)
}

fn right(report: &Value) -> bool {
    let sum = report["result"]["sum(income)"].as_str().unwrap_or("");
    let want = clear_sum();
    // Fixed point: the decimal text starts with the exact sum to one decimal.
    sum.starts_with(want.trim_end_matches(".0"))
        && report["result"]["count()"].as_str() == Some(ROWS.to_string().as_str())
}

#[test]
fn the_service_killed_at_each_step_still_gets_the_result_or_keeps_its_money() {
    let net = Net::new();
    let card = net.granted_dataset(ROWS);
    for step in [
        "requested",
        "quoted",
        "computed",
        "funded-unsaved",
        "funded",
        "notified",
    ] {
        let before = balance(&net);
        let seen = jobs(&net);
        let out = net.run_mining(
            "service",
            &query_args(&card),
            &[("BTCMPC_TESTING_SERVICE_CRASH", step)],
            Duration::from_secs(90),
        );
        assert!(
            !out.status.success(),
            "{step}: the service should have died"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(step),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let job = jobs(&net)
            .difference(&seen)
            .next()
            .cloned()
            .expect("a job record");
        let paid = !matches!(step, "requested" | "quoted" | "computed");
        if step == "notified" {
            // Restarted as the daemon (`service run`): it finishes the job by itself.
            let mut c = net.command("service");
            c.args(["service", "run", "--poll", "1"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let _daemon = support::net::Daemon {
                child: c.spawn().unwrap(),
            };
            let record = net
                .cli
                .root
                .join("service")
                .join("jobs")
                .join(format!("{job}.json"));
            let end = Instant::now() + Duration::from_secs(60);
            loop {
                let v: Value =
                    serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
                if v["result"].is_array() && v["claims"].as_array().is_some_and(|c| c.len() == 4) {
                    break;
                }
                assert!(
                    Instant::now() < end,
                    "service run never finished the job: {v}"
                );
                net.env.mine(1).unwrap();
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        if paid {
            // Restarted: the funding is found (even unsaved), the parties are told again,
            // they claim, the service opens the result.
            let r = settle_until(&net, &job, |r| {
                r["paid"]
                    .as_array()
                    .is_some_and(|p| p.len() == 4 && p.iter().all(|p| p["claim_txid"].is_string()))
                    && right(r)
            });
            assert_eq!(r["pending_refunds"], json!([]), "{step}: {r}");
            assert_eq!(r["blamed"], json!([]), "{step}: {r}");
            assert_eq!(r["slashed"], json!([]), "{step}: {r}");
            let spent = before - balance(&net);
            assert!(
                (5_000..6_500).contains(&spent),
                "{step}: paid 4 x (1000 sat + a claim fee) and one funding fee, not more: {spent}"
            );
        } else {
            // Killed before paying: nothing was sent, to the satoshi.
            let r = settle_until(&net, &job, |_| true);
            assert_eq!(r["paid"], json!([]), "{step}: {r}");
            assert_eq!(r["result"], Value::Null, "{step}: {r}");
            assert_eq!(balance(&net), before, "{step}: nothing paid");
        }
    }
}

#[test]
fn settle_names_a_job_that_does_not_exist() {
    let net = Net::new();
    net.fund("service");
    net.cli.json("service", &["service", "init"]);
    let err = net
        .cli
        .fails("service", &["service", "settle", "00".repeat(32).as_str()]);
    assert!(err.contains("job 0000"), "{err}");
}

#[test]
fn a_party_killed_at_each_job_step_is_paid_after_restart_when_it_delivered() {
    let mut net = Net::new();
    let card = net.granted_dataset(ROWS);
    for (step, delivered) in [
        ("crash-after:quote", false),
        ("crash-after:deliver", false),
        ("crash-after:paid", true),
        ("crash-after:claim", true),
    ] {
        net.restart(2, Some(step));
        let seen = jobs(&net);
        let before = balance(&net);
        let out = net.run_mining("service", &query_args(&card), &[], Duration::from_secs(90));
        // Party 2 is dead now (or, killed after its quote, the job was refused); bring it
        // back as it was, without the fault.
        let end = Instant::now() + Duration::from_secs(30);
        while net.daemons[1]
            .as_mut()
            .unwrap()
            .child
            .try_wait()
            .unwrap()
            .is_none()
        {
            assert!(Instant::now() < end, "{step}: party 2 did not die");
            std::thread::sleep(Duration::from_millis(100));
        }
        net.restart(2, None);
        if step == "crash-after:quote" {
            // Every party must quote: the job is refused and nothing is paid.
            assert!(!out.status.success(), "{step}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("party 2"), "{step}: {err}");
            assert_eq!(balance(&net), before, "{step}: nothing paid");
            continue;
        }
        assert!(
            out.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let job = jobs(&net).difference(&seen).next().cloned().unwrap();
        let r = settle_until(&net, &job, |r| {
            right(r)
                && r["paid"]
                    .as_array()
                    .is_some_and(|p| p.iter().all(|p| p["claim_txid"].is_string()))
        });
        let paid: Vec<u64> = r["paid"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["party"].as_u64().unwrap())
            .collect();
        if delivered {
            assert_eq!(paid, vec![1, 2, 3, 4], "{step}: {r}");
        } else {
            // Killed before its delivery left: the other three are paid, the result is right.
            assert_eq!(paid, vec![1, 3, 4], "{step}: {r}");
        }
        assert_eq!(r["pending_refunds"], json!([]), "{step}: {r}");
    }
    // Party 2 got its fee for the two jobs it delivered, exactly (the escrow carried the
    // claim's fee).
    net.cli.json("p2", &["wallet", "balance"]);
    let h = net.cli.json("p2", &["wallet", "history"]);
    let claims = h["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["net_sat"] == 1000)
        .count();
    assert_eq!(claims, 2, "{h}");
    // Its own record of the jobs: two claimed, the one it did not deliver never paid.
    let jobs = net.cli.json("p2", &["party", "jobs"]);
    let states: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "claimed").count(),
        2,
        "{jobs}"
    );
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["state"] == "claimed")
            .all(|j| j["claim_txid"].is_string() && j["fee_sat"] == 1000),
        "{jobs}"
    );
}

/// PROTOCOL.md: a REVOKE counts as soon as it is seen. A party releases its key (by claiming)
/// only after the service's first funding notice, and checks the grant on a fresh chain reading
/// then: a service revoked after it computed and funded never gets a key, and its escrow comes
/// back at T.
#[test]
fn a_revoke_seen_before_the_keys_are_released_stops_every_claim_and_refunds_the_service() {
    let net = Net::new();
    let card = net.granted_dataset(ROWS);
    let service = net.cli.json("service", &["service", "init"])["pubkey"]
        .as_str()
        .unwrap()
        .to_string();
    let before = balance(&net);
    let mut args = query_args(&card);
    let d = args.iter().position(|a| *a == "+60").unwrap();
    args[d] = "+12";
    // The service funds the escrow outputs and dies before it tells the parties.
    let out = net.run_mining(
        "service",
        &args,
        &[("BTCMPC_TESTING_SERVICE_CRASH", "funded-unsaved")],
        Duration::from_secs(90),
    );
    assert!(!out.status.success(), "the service should have died");
    let job = jobs(&net).into_iter().next().expect("a job record");
    net.cli
        .json("owner", &["owner", "revoke", "survey", &service]);
    // Restarted, the service recovers its funding and notifies the parties: each refuses to
    // release its key. At T it takes every escrow output back.
    let report = settle_until(&net, &job, |r| {
        r["pending_refunds"] == json!([])
            && r["paid"]
                .as_array()
                .is_some_and(|p| p.len() == 4 && p.iter().all(|o| o["claim_txid"].is_null()))
            && r["result"] == json!({})
    });
    net.env.mine(1).unwrap();
    net.settle();
    let lost = before - balance(&net);
    assert!(lost < 3_000, "only fees were lost: {lost} sat; {report}");
    for p in ["p1", "p2", "p3", "p4"] {
        assert!(
            net.has_failed_job(p, &["revoked", "will not release"]),
            "{p}: {}",
            net.cli.json(p, &["party", "jobs"])
        );
    }
}
