//! Paid queries across processes on the embedded regtest chain: four `party run` daemons, an
//! owner's dataset with gaps, a granted service paying for a query with one escrow funding
//! and getting the answer from the parties' claims; a party delivering a wrong output share
//! is named and the result is still right.

use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::net::{write_csv, Net, WAIT};

/// A paid query with the tests' deadline and waits; its JSON report.
fn query(net: &Net, card: &str, q: &str, fee: &str) -> Value {
    net.query_json(
        card,
        q,
        &[
            "--fee",
            fee,
            "--deadline",
            "+40",
            "--wait",
            "60",
            "--party-timeout",
            "30",
        ],
        &[],
    )
}

/// The clear answers for the CSV of [`write_csv`]: `sum(income)` over present values (exact
/// decimal text), the row count, the number of present incomes.
fn clear(rows: usize) -> (f64, usize, usize) {
    // income = (r % 1000 + 1) + (r % 10) / 10 where r % 7 != 3, in tenths.
    let mut tenths: i64 = 0;
    let mut present = 0;
    for r in 0..rows {
        if r % 7 == 3 {
            continue;
        }
        present += 1;
        tenths += (r % 1000 + 1) as i64 * 10 + (r % 10) as i64;
    }
    (tenths as f64 / 10.0, rows, present)
}

/// `got` (decimal text) is `want` up to the fixed-point encoding: each of `terms` values is
/// rounded to 16 fractional bits, so the sum is off by at most `terms / 2^17`.
fn close(got: &Value, want: f64, terms: usize) -> bool {
    let got: f64 = got
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    (got - want).abs() <= terms as f64 / 131_072.0
}

#[test]
fn a_service_pays_four_party_processes_and_gets_the_answer_even_with_a_cheater() {
    // Bonds of 300,000 sat over a 50,000 sat minimum: a bond slashed once still backs the
    // committee and the open jobs' penalties, and a second victim is paid from its remainder.
    let mut net = Net::with_bonds("50000sat", "300000sat");
    let csv = net.cli.path("data.csv");
    let rows = 500;
    write_csv(std::path::Path::new(&csv), rows);
    let v = net.store(&csv, "survey");
    assert_eq!(v["holders"], serde_json::json!([1, 2, 3, 4]), "{v}");
    net.fund("service");
    let service = net.cli.json("service", &["service", "init"])["pubkey"]
        .as_str()
        .unwrap()
        .to_string();
    let card = net.cli.path("survey.card.json");
    net.cli
        .json("owner", &["owner", "export", "survey", "--out", &card]);
    // Not granted: every party refuses to quote, nothing is paid.
    let before = net.cli.json("service", &["wallet", "balance"]);
    let err = net.cli.fails(
        "service",
        &["service", "query", &card, "sum(income)", "--fee", "5000sat"],
    );
    assert!(err.contains("not granted"), "{err}");
    net.cli
        .json("owner", &["owner", "grant", "survey", &service]);
    net.env.mine(1).unwrap();
    net.settle();
    // Every party must have read the GRANT before it quotes.
    let end = Instant::now() + WAIT;
    loop {
        let out = net
            .cli
            .run("service", &["--json", "service", "access", &card]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let all = v["parties"]
            .as_array()
            .is_some_and(|a| a.iter().all(|p| p["granted"] == true));
        if all {
            break;
        }
        assert!(Instant::now() < end, "{v}");
        std::thread::sleep(Duration::from_millis(300));
    }

    let (sum, count, present) = clear(rows);
    let v = query(
        &net,
        &card,
        "sum(income), count(), count(income)",
        "5000sat",
    );
    assert!(close(&v["result"]["sum(income)"], sum, present), "{v}");
    assert_eq!(v["result"]["count()"], count.to_string(), "{v}");
    assert_eq!(v["result"]["count(income)"], present.to_string(), "{v}");
    assert_eq!(v["blamed"], serde_json::json!([]), "{v}");
    let paid = v["paid"].as_array().unwrap();
    assert_eq!(paid.len(), 4, "{v}");
    // Each escrow output carries the fee plus the party's claim fee (2 sat/vB assumed).
    let escrow = paid[0]["sats"].as_u64().unwrap();
    assert!((5_100..5_600).contains(&escrow), "{v}");
    for p in paid {
        assert_eq!(p["sats"], escrow, "{v}");
        assert!(p["claim_txid"].is_string(), "every party claimed: {v}");
        assert_eq!(p["escrow_txid"], paid[0]["escrow_txid"], "one funding");
    }
    assert_eq!(v["pending_refunds"], serde_json::json!([]));
    // The phases' wall times (ms), each step once, within the total.
    let phases = [
        "quote",
        "masks",
        "compute",
        "fund",
        "wait_confirmation_and_claims",
        "open",
    ];
    let ms = |k: &str| {
        v["timings"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("timings.{k}: {v}"))
    };
    let phase_ms: u64 = phases.iter().map(|k| ms(k)).sum();
    assert!(phase_ms <= ms("total"), "{v}");
    assert_eq!(
        v["timings"].as_object().unwrap().len(),
        phases.len() + 1,
        "{v}"
    );
    let after = net.cli.json("service", &["wallet", "balance"]);
    let spent = before["confirmed"].as_u64().unwrap() + before["unconfirmed"].as_u64().unwrap()
        - after["confirmed"].as_u64().unwrap()
        - after["unconfirmed"].as_u64().unwrap();
    let funding_fee = spent - 4 * escrow;
    assert!(
        (100..1_000).contains(&funding_fee),
        "the service paid 4 escrow outputs plus one funding fee: {spent}"
    );
    // Each party's claim paid its own wallet its fee: the claim's fee was carried, so the
    // claim nets exactly 5000 sat, or 5000 sat less what the party added when its claim had
    // to be fee-bumped (a slow block on a loaded machine).
    net.settle();
    // The escrow output is the fee plus the quoted claim fee.
    let quoted = escrow as i64 - 5000;
    for p in ["p1", "p2", "p3", "p4"] {
        net.cli.json(p, &["wallet", "balance"]);
        let h = net.cli.json(p, &["wallet", "history"]);
        let claims: Vec<(i64, i64)> = h["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| Some((t["net_sat"].as_i64()?, t["fee_sat"].as_i64()?)))
            .filter(|(net, fee)| *net > 0 && net + fee == escrow as i64)
            .collect();
        assert_eq!(claims.len(), 1, "{p}: one claim of its escrow output: {h}");
        let (net, fee) = claims[0];
        assert!(
            fee >= quoted,
            "{p}: claim fee {fee} below the quoted {quoted}: {h}"
        );
        assert_eq!(
            net,
            5000 - (fee - quoted),
            "{p} received its 5000 sat fee, less any bump: {h}"
        );
    }

    // Party 3 now seals a wrong output share: decoding names it, the result is still right.
    net.restart(3, Some("wrong-output-share"));
    let v = query(&net, &card, "sum(income), mean(age)", "5000sat");
    assert!(close(&v["result"]["sum(income)"], sum, present), "{v}");
    let mean_age: f64 = (0..rows).map(|r| (18 + r % 70) as f64).sum::<f64>() / rows as f64;
    let got: f64 = v["result"]["mean(age)"].as_str().unwrap().parse().unwrap();
    assert!((got - mean_age).abs() < 1e-9, "{got} vs {mean_age}");
    assert_eq!(v["blamed"][0]["party"], 3, "{v}");
    assert_eq!(v["blamed"].as_array().unwrap().len(), 1, "{v}");
    // The judges (two of parties 1, 2, 4) verified the evidence and signed the canonical slash:
    // the penalty, 10 x the 5000 sat fee, is paid to the service from party 3's bond.
    let slash = &v["slashed"][0];
    assert_eq!(slash["party"], 3, "{v}");
    assert_eq!(slash["sats"], 50_000, "{v}");
    assert_eq!(slash["judges"].as_array().unwrap().len(), 2, "{v}");
    assert!(!slash["judges"].as_array().unwrap().contains(&3.into()));
    let evidence = v["blamed"][0]["evidence"].as_str().unwrap().to_string();
    net.env.mine(1).unwrap();
    net.settle();
    let received = |txid: &Value| {
        net.cli.json("service", &["wallet", "balance"]); // syncs
        let h = net.cli.json("service", &["wallet", "history"]);
        h["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["txid"] == *txid)
            .map(|t| (t["net_sat"].as_i64().unwrap(), t["height"].as_u64()))
    };
    let (got, height) = received(&slash["txid"]).expect("the slash pays the service's wallet");
    assert_eq!(got, 50_000, "to the satoshi");
    assert!(height.is_some(), "the slash confirmed");
    // The rest stays in party 3's bond script, and still backs the committee.
    let verify = net.cli.json("p1", &["network", "verify", &net.manifest]);
    let row = &verify["bonds"][2];
    let left = row["value_sat"].as_u64().unwrap();
    assert!(
        (249_000..250_000).contains(&left),
        "300000 - 50000 - the slash fee stays in the bond: {verify}"
    );

    // Judges refuse forged evidence, naming why; none signs a slash of an honest party.
    let text = std::fs::read_to_string(&evidence).unwrap();
    let genuine: Value = serde_json::from_str(&text).unwrap();
    let judge = |who: &str, ev: &Value| {
        let f = net.cli.path(&format!("forged-{who}.json"));
        std::fs::write(&f, ev.to_string()).unwrap();
        net.cli.fails(who, &["party", "judge", &f])
    };
    let rule = "wrong-output-share";
    // Framing honest party 1: its delivery as the accused, party 3's among the witnesses.
    let mut framed = genuine.clone();
    let others = framed["rule"][rule]["others"].as_array().unwrap().clone();
    let p1 = others.iter().position(|o| o["index"] == 1).unwrap();
    let mut new_others = others.clone();
    new_others[p1] = genuine["rule"][rule]["accused"].clone();
    framed["rule"][rule]["accused"] = others[p1].clone();
    framed["rule"][rule]["others"] = Value::Array(new_others);
    let err = judge("p2", &framed);
    assert!(err.contains("does not convict party 1"), "{err}");
    // The accused's delivery signature missing (another party's in its place).
    let mut unsigned = genuine.clone();
    unsigned["rule"][rule]["accused"]["signature"] = others[0]["signature"].clone();
    let err = judge("p2", &unsigned);
    assert!(err.contains("signature"), "{err}");
    // A sealed share swapped by the service: the signature covers its hash.
    let mut swapped = genuine.clone();
    swapped["rule"][rule]["accused"]["ciphertext"] = others[0]["ciphertext"].clone();
    let err = judge("p4", &swapped);
    assert!(err.contains("signature"), "{err}");
    // A key no claim revealed on chain.
    let mut unclaimed = genuine.clone();
    unclaimed["rule"][rule]["accused"]["key"] = Value::String("11".repeat(32));
    let err = judge("p4", &unclaimed);
    assert!(err.contains("does not convict party 3"), "{err}");
    // Another request (the service's signature no longer verifies).
    let mut other_job = genuine.clone();
    other_job["request"]["fee_sat"] = 1_000_000.into();
    let err = judge("p2", &other_job);
    assert!(err.contains("does not verify"), "{err}");
    // The accused does not judge itself; the same evidence never pays twice.
    let err = judge("p3", &genuine);
    assert!(err.contains("does not judge itself"), "{err}");
    let err = judge("p1", &genuine);
    assert!(err.contains("already slashed"), "{err}");
    // A judge that did not sign the first slash refuses too: the chain shows the payout paid.
    let unsigned_judge = [1, 2, 4]
        .into_iter()
        .find(|j| !slash["judges"].as_array().unwrap().contains(&(*j).into()))
        .unwrap();
    let err = judge(&format!("p{unsigned_judge}"), &genuine);
    assert!(err.contains("already slashed"), "{err}");

    // A second job, a second victim: paid from the remainder of party 3's bond.
    let v = query(&net, &card, "sum(income)", "5000sat");
    assert!(close(&v["result"]["sum(income)"], sum, present), "{v}");
    assert_eq!(v["slashed"][0]["party"], 3, "{v}");
    assert_eq!(v["slashed"][0]["sats"], 50_000, "{v}");
    net.env.mine(1).unwrap();
    net.settle();
    let verify = net.cli.json("p1", &["network", "verify", &net.manifest]);
    let left2 = verify["bonds"][2]["value_sat"].as_u64().unwrap();
    assert!(
        left2 < left - 50_000 && left2 > left - 51_000,
        "{left} - 50000 - fee: {verify}"
    );

    // On bitcoin a query with products needs --accept-v1-risks (checked before anything
    // is sent); a sum does not.
    let err = net.cli.fails(
        "service",
        &[
            "--network",
            "bitcoin",
            "service",
            "query",
            &card,
            "var(income)",
            "--fee",
            "1000sat",
        ],
    );
    assert!(err.contains("--accept-v1-risks"), "{err}");
    let out = net.cli.run(
        "service",
        &[
            "--network",
            "bitcoin",
            "service",
            "query",
            &card,
            "sum(income)",
            "--fee",
            "1000sat",
        ],
    );
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("--accept-v1-risks"));

    // Bond exposure: a fee whose penalty (10 x 20,000 sat) the open jobs' penalties and the
    // bonds cannot cover is refused by every party, and nothing is paid.
    let before = net.cli.json("service", &["wallet", "balance"]);
    let err = net.cli.fails(
        "service",
        &[
            "service",
            "query",
            &card,
            "sum(income)",
            "--fee",
            "20000sat",
        ],
    );
    assert!(err.contains("bond exposure"), "{err}");
    let after = net.cli.json("service", &["wallet", "balance"]);
    assert_eq!(before, after, "nothing paid");
}

#[test]
fn an_equivocating_party_is_slashed_and_a_wrong_product_only_aborts() {
    let mut net = Net::with_bonds("50000sat", "300000sat");
    let rows = 200;
    let card = net.granted_dataset(rows);
    // Party 3 signs two different openings in the check of the service's masks, one for
    // each half of the committee.
    net.restart(3, Some("equivocate"));
    let v = query(&net, &card, "sum(income), count()", "5000sat");
    let (sum, count, present) = clear(rows);
    assert!(close(&v["result"]["sum(income)"], sum, present), "{v}");
    assert_eq!(v["result"]["count()"], count.to_string(), "{v}");
    assert_eq!(v["blamed"][0]["party"], 3, "{v}");
    assert_eq!(v["blamed"][0]["rule"], "equivocation", "{v}");
    assert_eq!(v["blamed"].as_array().unwrap().len(), 1, "{v}");
    let slash = &v["slashed"][0];
    assert_eq!(slash["party"], 3, "{v}");
    assert_eq!(slash["sats"], 50_000, "{v}");
    net.env.mine(1).unwrap();
    net.settle();
    net.cli.json("service", &["wallet", "balance"]);
    let h = net.cli.json("service", &["wallet", "history"]);
    let paid = h["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["txid"] == slash["txid"])
        .cloned()
        .unwrap_or_default();
    assert_eq!(paid["net_sat"], 50_000, "{h}");
    assert!(paid["height"].is_u64(), "confirmed: {h}");
    // A forged equivocation (one message's payload changed after signing) convicts nobody.
    let path = v["blamed"][0]["evidence"].as_str().unwrap();
    let mut ev: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    ev["rule"]["equivocation"]["equivocation"]["second"]["payload_hash"] =
        Value::String("22".repeat(32));
    let f = net.cli.path("forged-equivocation.json");
    std::fs::write(&f, ev.to_string()).unwrap();
    let err = net.cli.fails("p4", &["party", "judge", &f]);
    assert!(err.contains("does not convict party 3"), "{err}");
    // Two messages of another session (not this job's): refused.
    ev["rule"]["equivocation"]["mask_receipts_root"] = Value::String("33".repeat(32));
    std::fs::write(&f, ev.to_string()).unwrap();
    let err = net.cli.fails("p4", &["party", "judge", &f]);
    assert!(err.contains("not of job"), "{err}");

    // A party adding an error to its degree-2t values in a product (the wrong-product fault):
    // with n = 3t + 1 the openings are redundant, so the error shows as inconsistent openings:
    // the job stops before any delivery, nobody is paid and nobody can be named (the party is
    // not identified: an abort, not a wrong result). A sum over every row (no gate, so no
    // comparison and no degree reduction) is right.
    net.restart(3, Some("wrong-product"));
    let ask = |q: &str| {
        net.query_output(
            &card,
            q,
            &["--fee", "5000sat", "--wait", "60", "--party-timeout", "20"],
            &[],
        )
    };
    let before = net.cli.json("service", &["wallet", "balance"]);
    let out = ask("var(income)");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("degree-2t openings are inconsistent"), "{err}");
    assert_eq!(
        net.cli.json("service", &["wallet", "balance"]),
        before,
        "nothing paid"
    );
    let v = query(&net, &card, "sum(age)", "5000sat");
    let ages: usize = (0..rows).map(|r| 18 + r % 70).sum();
    assert_eq!(v["result"]["sum(age)"], ages.to_string(), "{v}");
}

#[test]
fn a_row_wise_product_over_ten_thousand_rows_crosses_the_wire_in_one_reduction() {
    // `sum(age * age * age)` multiplies shares row by row before it sums: one degree
    // reduction of 10,000 values per party, a 320 kB binary message to each peer.
    let net = Net::new();
    let rows = 10_000;
    let csv = net.cli.path("data.csv");
    write_csv(std::path::Path::new(&csv), rows);
    let card = net.grant_stored(&csv, &["--max-degree", "3"]);
    let v = query(&net, &card, "sum(age * age * age)", "5000sat");
    let want: i64 = (0..rows)
        .map(|r| (18 + r % 70) as i64)
        .map(|a| a * a * a)
        .sum();
    assert_eq!(v["result"]["sum(age * age * age)"], want.to_string(), "{v}");
}

/// The CSV of [`filters_groups_and_a_withheld_cell_match_the_clear_answers`]: a decimal
/// column with gaps, a category of three large levels, an age with a declared range.
fn filter_csv(rows: usize) -> String {
    let mut s = String::from("id,meddol,plan:cat,age:int:0..120\n");
    for r in 0..rows {
        let meddol = if r % 7 == 3 {
            String::new()
        } else {
            // Never 0: a mean whose sum rests on a few rows fewer than its count (a column
            // with 1 to min_rows - 1 zeros in a cell) is withheld.
            format!("{}.{}", (r * 37) % 2000 + 1, r % 10)
        };
        let plan = ["free", "basic", "full"][r % 3];
        s.push_str(&format!("{r},{meddol},{plan},{}\n", 18 + r % 70));
    }
    s
}

/// The engine's clear answers to `query` under the parties' leakage rule (`min_rows` and the
/// queries answered before), name to decimal text, and the names it withholds.
fn clear_ruled(
    csv: &str,
    query: &str,
    min_rows: u64,
    earlier: &[&str],
) -> (std::collections::BTreeMap<String, String>, Vec<String>) {
    use btcmpc_engine::mpc::csv::Dataset;
    use btcmpc_engine::mpc::field::Secp256k1Scalar;
    use btcmpc_engine::mpc::query::parse;
    use btcmpc_engine::mpc::query::plan::{plan_with_rule, LeakageRule};
    let d = Dataset::parse(csv).unwrap();
    let rule = LeakageRule {
        min_rows,
        earlier: earlier.iter().map(|q| parse(q).unwrap()).collect(),
    };
    let p =
        plan_with_rule::<Secp256k1Scalar>(query, &parse(query).unwrap(), &d.schema, &rule).unwrap();
    let out = p
        .finish_gated(&p.eval_clear(&d.values), &p.gate_bits_clear(&d.values))
        .unwrap();
    let withheld = out
        .iter()
        .filter(|v| v.withheld)
        .map(|v| v.name.clone())
        .collect();
    (
        out.into_iter().map(|v| (v.name, v.decimal)).collect(),
        withheld,
    )
}

/// The `result` object of a report as name to decimal text, and its `withheld` names.
fn answer(v: &Value) -> (std::collections::BTreeMap<String, String>, Vec<String>) {
    let result = v["result"]
        .as_object()
        .unwrap_or_else(|| panic!("no result: {v}"))
        .iter()
        .map(|(k, x)| (k.clone(), x.as_str().unwrap().to_string()))
        .collect();
    let withheld = v["withheld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    (result, withheld)
}

/// The terms of a filtered job: each gate test and comparison is a few rounds between the four
/// processes, so a `T` far enough for the evaluation while a block is mined every half second.
const FILTER_JOB: &[&str] = &[
    "--fee",
    "5000sat",
    "--deadline",
    "+120",
    "--wait",
    "60",
    "--party-timeout",
    "60",
];

#[test]
fn filters_groups_and_a_withheld_cell_match_the_clear_answers() {
    // Filters, comparisons, a group by and the leakage rule evaluated on shares by four party
    // processes: each answer equals the engine's clear evaluation of the same plan (the
    // parties' min_rows of 10 and the queries each answered before, as the quotes name them).
    let rows = 300;
    // Bonds that back the three jobs' penalties at once (each open until T and the dispute
    // window after it).
    let mut net = Net::with_bonds("100000sat", "400000sat");
    let csv_text = filter_csv(rows);
    let csv = net.cli.path("data.csv");
    std::fs::write(&csv, &csv_text).unwrap();
    // A filtered mean multiplies the filter, the presence bit and the value: degree 3.
    let card = net.grant_stored(&csv, &["--max-degree", "3"]);
    let queries = [
        // age 87 only: 4 of 300 rows, fewer than min_rows.
        "count() where age > 86",
        "count() where age > 65, mean(meddol) where age between 30 and 50",
        "mean(meddol) group by plan",
    ];
    let mut earlier: Vec<&str> = Vec::new();
    // Party 4 delivers its gate bit flipped in the first job: the three others agree on the
    // bit, the service takes theirs and names party 4.
    net.restart(4, Some("wrong-gate-bit"));
    for (i, q) in queries.iter().enumerate() {
        if i == 1 {
            net.restart(4, None);
        }
        let v = net.query_json(&card, q, FILTER_JOB, &[]);
        let (got, got_withheld) = answer(&v);
        let (want, want_withheld) = clear_ruled(&csv_text, q, 10, &earlier);
        assert_eq!(got, want, "{q}: {v}");
        assert_eq!(got_withheld, want_withheld, "{q}: {v}");
        match i {
            1 => {
                assert!(want_withheld.is_empty());
                let over_65 = (0..rows).filter(|r| 18 + r % 70 > 65).count();
                assert_eq!(want["count() where age > 65"], over_65.to_string());
            }
            2 => {
                assert!(want_withheld.is_empty());
                assert_eq!(got.len(), 3, "one cell per plan level: {v}");
            }
            _ => {
                assert_eq!(got_withheld, vec!["count() where age > 86".to_string()]);
                // Its gate also holds a difference test (the complement of the cell), so the
                // text names both reasons a closed gate may have.
                assert_eq!(
                    got["count() where age > 86"],
                    "withheld (fewer than 10 rows, or within 10 rows of another cell or an \
                     earlier answer)"
                );
                let named: Vec<u64> = v["gate_dissent"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["party"].as_u64().unwrap())
                    .collect();
                assert_eq!(named, vec![4], "{v}");
                let paid: Vec<u64> = v["paid"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["party"].as_u64().unwrap())
                    .collect();
                assert_eq!(paid, vec![1, 2, 3], "party 4 is not paid: {v}");
            }
        }
        if got.len() > got_withheld.len() {
            earlier.push(q); // it released something: later queries are held against it
        }
    }
}

/// Four parties bonded to back several filtered jobs' penalties at once, the 300-row filter
/// table stored and the service granted degree 3: the net, the CSV text and the card.
fn filter_net() -> (Net, String, String) {
    let net = Net::with_bonds("100000sat", "400000sat");
    let csv_text = filter_csv(300);
    let csv = net.cli.path("data.csv");
    std::fs::write(&csv, &csv_text).unwrap();
    let card = net.grant_stored(&csv, &["--max-degree", "3"]);
    (net, csv_text, card)
}

/// The differencing rule holds a query against the earlier queries that released something,
/// never against one whose every cell was withheld: `age > 51` is withheld (4 rows away from
/// the answered `age > 50`), and `age > 53` is then answered (12 rows away from `age > 50`),
/// though it is only 8 rows away from the withheld one.
#[test]
fn a_withheld_query_does_not_hold_back_the_next_one() {
    let (net, csv_text, card) = filter_net();
    let mut earlier: Vec<&str> = Vec::new();
    for (q, withheld) in [
        ("count() where age > 50", false),
        ("count() where age > 51", true),
        ("count() where age > 53", false),
    ] {
        let v = net.query_json(&card, q, FILTER_JOB, &[]);
        let (got, got_withheld) = answer(&v);
        let (want, want_withheld) = clear_ruled(&csv_text, q, 10, &earlier);
        assert_eq!(got, want, "{q}: {v}");
        assert_eq!(got_withheld, want_withheld, "{q}: {v}");
        assert_eq!(!got_withheld.is_empty(), withheld, "{q}: {v}");
        if !withheld {
            earlier.push(q);
        }
    }
    // Had the withheld query counted, the last one would have been withheld too.
    let (_, counted) = clear_ruled(
        &csv_text,
        "count() where age > 53",
        10,
        &["count() where age > 50", "count() where age > 51"],
    );
    assert_eq!(counted, vec!["count() where age > 53".to_string()]);
}

/// Two queries whose rows differ by one, asked at the same time by one service: at most one
/// releases a number (the other is withheld, or refused at run because the first was answered
/// or started after its quote). A party used to compare a new query only with delivered ones,
/// so both came back and their difference was one row's value.
#[test]
fn two_queries_at_once_never_both_release_a_one_row_difference() {
    let (net, _, card) = filter_net();
    // Two coins, so both escrows can be funded at once.
    net.fund_again("service");
    let pair = ["count() where age > 50", "count() where age > 51"];
    let args: Vec<Vec<&str>> = pair
        .iter()
        .map(|q| {
            let mut a = vec!["--json", "service", "query", card.as_str(), q];
            a.extend_from_slice(FILTER_JOB);
            a
        })
        .collect();
    let runs: Vec<(&str, &[&str])> = args.iter().map(|a| ("service", &a[..])).collect();
    let outs = net.run_all_mining(&runs, &[], Duration::from_secs(150));
    let mut released = Vec::new();
    for (q, out) in pair.iter().zip(&outs) {
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let (got, withheld) = answer(&v);
            if withheld.is_empty() {
                released.push((q, got));
            }
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!err.contains("panicked"), "{q}: {err}");
            assert!(
                text.is_empty() || !text.contains("\"result\""),
                "{q}: {text}"
            );
        }
    }
    assert!(released.len() <= 1, "both released: {released:?}");
    assert_eq!(released.len(), 1, "one of them is answered: {outs:?}");
}
