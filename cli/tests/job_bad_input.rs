//! A paid query with bad input is refused with one clear line and nothing is paid: a fee below
//! the parties' price, a deadline too close, a wallet that cannot pay, a party offline.

use serde_json::Value;

mod support;
use support::net::Net;

fn balance(net: &Net, who: &str) -> Value {
    net.cli.json(who, &["wallet", "balance"])
}

#[test]
fn bad_queries_are_refused_by_name_and_cost_nothing() {
    let mut net = Net::new();
    let card = net.granted_dataset(120);
    let before = balance(&net, "service");
    let ask = |fee: &str, deadline: &str| {
        net.cli.fails(
            "service",
            &[
                "service",
                "query",
                &card,
                "sum(income)",
                "--fee",
                fee,
                "--deadline",
                deadline,
                "--party-timeout",
                "10",
            ],
        )
    };
    // Below every party's price (party run --min-fee, 1000 sat by default).
    let err = ask("999sat", "+30");
    assert!(err.contains("below this party's fee of 1000 sat"), "{err}");
    // T too close for the claim margin, a confirmation and the computation.
    let err = ask("1000sat", "+3");
    assert!(err.contains("too close"), "{err}");
    // T beyond the roster's deadline horizon (144 blocks): it would hold the escrow and the
    // parties' exposure for that long.
    let err = ask("1000sat", "+145");
    assert!(err.contains("too far"), "{err}");
    // A fee rate out of range is refused before any party computes.
    let err = net.cli.fails(
        "service",
        &[
            "service",
            "query",
            &card,
            "sum(income)",
            "--fee",
            "1000sat",
            "--fee-rate",
            "0",
        ],
    );
    assert!(err.contains("fee rate \"0\" out of range"), "{err}");
    // A chain of 500 `+` (400 overflowed every party's stack in a debug build): refused by
    // name before anyone computes.
    let deep = format!("sum({})", vec!["income"; 500].join("+"));
    let err = net.cli.fails(
        "service",
        &["service", "query", &card, &deep, "--fee", "1000sat"],
    );
    assert!(err.contains("operators deep"), "{err}");
    // More than the wallet holds: refused before any party is asked.
    let err = ask("1btc", "+30");
    assert!(err.contains("this wallet holds"), "{err}");
    assert_eq!(balance(&net, "service"), before, "nothing was paid");
    // A party offline at request time: the job is refused, naming it.
    net.daemons[3] = None;
    let err = ask("1000sat", "+30");
    assert!(err.contains("party 4"), "{err}");
    assert_eq!(balance(&net, "service"), before, "nothing was paid");
    // An unknown job to settle, and a card that is not a dataset card.
    let bogus = net.cli.path("not-a-card.json");
    std::fs::write(&bogus, "{\"name\": 3}").unwrap();
    let err = net.cli.fails(
        "service",
        &[
            "service",
            "query",
            &bogus,
            "sum(income)",
            "--fee",
            "1000sat",
        ],
    );
    assert!(err.contains("not-a-card.json"), "{err}");
}

#[test]
fn a_party_paid_less_than_it_quoted_never_reveals_its_key_and_says_why() {
    let net = Net::new();
    let card = net.granted_dataset(120);
    let v = net.query_json(
        &card,
        "sum(income), count()",
        &[
            "--fee",
            "1000sat",
            "--deadline",
            "+12",
            "--wait",
            "8",
            "--party-timeout",
            "20",
        ],
        &[("BTCMPC_TESTING_SERVICE_UNDERPAY", "2")],
    );
    // The claim rule: a party reveals its key only if the funding pays every party of the
    // delivery set what it quoted. Party 2 is short by one sat, so no party claims: no key is
    // revealed, no result is opened.
    assert_eq!(v["result"], serde_json::json!({}), "{v}");
    assert!(
        v["paid"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["claim_txid"].is_null()),
        "{v}"
    );
    for p in ["p1", "p2", "p3", "p4"] {
        let jobs = net.cli.json(p, &["party", "jobs"]);
        let job = &jobs["jobs"][0];
        assert_eq!(job["state"], "failed", "{p}: {jobs}");
        assert!(
            job["reason"]
                .as_str()
                .unwrap()
                .contains("pays party 2 1308 sat, less than its quoted 1309 sat"),
            "{p} names the shortfall: {jobs}"
        );
        assert!(job["claim_txid"].is_null());
    }
    // At T the service takes every output back.
    let id = v["job"].as_str().unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = net.cli.json("service", &["service", "settle", id]);
        if s["jobs"][0]["report"]["pending_refunds"] == serde_json::json!([]) {
            let refunded: Vec<u64> = s["jobs"][0]["refunds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r[0].as_u64().unwrap())
                .collect();
            assert_eq!(refunded, vec![1, 2, 3, 4], "{s}");
            break;
        }
        assert!(std::time::Instant::now() < end, "never refunded: {s}");
        net.env.mine(1).unwrap();
        net.settle();
    }
}

#[test]
fn quotes_alone_never_fill_a_party() {
    let net = Net::new();
    let card = net.granted_dataset(120);
    // A price check (`--quote`) withdraws its quotes at once: no party holds the job.
    let v = net.cli.json(
        "service",
        &[
            "service",
            "query",
            &card,
            "sum(income)",
            "--fee",
            "1000sat",
            "--quote",
        ],
    );
    assert!(v["quotes"].as_array().is_some_and(|q| q.len() == 4), "{v}");
    assert_eq!(v["withdrawn"], true, "{v}");
    assert!(
        net.has_failed_job("p1", &["cancelled"]),
        "the quote was withdrawn"
    );
    // A service dies after nine quotes and runs none: each party keeps two of them waiting
    // and drops the older ones, so the parties still take a real job.
    for _ in 0..9 {
        hold_quote(&net, &card);
    }
    let jobs = net.cli.json("p1", &["party", "jobs"]);
    let superseded = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| {
            j["state"] == "failed"
                && j["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("superseded"))
        })
        .count();
    assert_eq!(superseded, 7, "{jobs}");
    let v = net.query_json(
        &card,
        "count(), count(income)",
        &["--fee", "1000sat", "--wait", "30"],
        &[],
    );
    assert_eq!(v["result"]["count()"], "120", "{v}");
}

#[test]
fn a_service_paying_fewer_than_2t_plus_1_parties_gets_no_key() {
    let net = Net::new();
    let card = net.granted_dataset(120);
    // The service funds only parties 1 and 2 (t + 1 = 2 shares would open the result).
    let v = net.query_json(
        &card,
        "sum(income)",
        &["--fee", "1000sat", "--deadline", "+12", "--wait", "8"],
        &[("BTCMPC_TESTING_SERVICE_PAY_ONLY", "1,2")],
    );
    assert_eq!(v["paid"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["result"], serde_json::json!({}), "no key, no result: {v}");
    for p in ["p1", "p2"] {
        let jobs = net.cli.json(p, &["party", "jobs"]);
        assert_eq!(jobs["jobs"][0]["state"], "failed", "{p}: {jobs}");
        assert!(
            jobs["jobs"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("at least 2t + 1 = 3"),
            "{p}: {jobs}"
        );
    }
}

#[test]
fn a_party_at_its_open_jobs_limit_refuses_more() {
    let mut net = Net::new();
    let card = net.granted_dataset(120);
    net.daemons[0] = None;
    let d = net.spawn_with("p1", None, &["--max-open-jobs", "1"]);
    net.daemons[0] = Some(d);
    net.wait_ready(1);
    // One job quoted and never run (its service died) holds party 1's only slot.
    hold_quote(&net, &card);
    let status = net.status(1);
    assert_eq!(status["jobs_counted"], 1, "{status}");
    assert_eq!(status["max_open_jobs"], 1, "{status}");
    let err = net.cli.fails(
        "service",
        &[
            "service",
            "query",
            &card,
            "sum(income)",
            "--fee",
            "1000sat",
            "--quote",
        ],
    );
    assert!(err.contains("party 1: 1 jobs are open here"), "{err}");
}

/// A service that asks the committee for quotes and dies before it runs the job (the
/// quotes stay with the parties until `T`).
fn hold_quote(net: &Net, card: &str) {
    let out = net
        .command("service")
        .args(["service", "query", card, "sum(income)", "--fee", "1000sat"])
        .env("BTCMPC_TESTING_SERVICE_CRASH", "quoted")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("dies after step quoted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
