//! `btcmpc demo [honest|filter|withhold|wrong-share|equivocate|revoked|all]`: the whole system on a
//! fresh embedded regtest node, with a committee of four `party run` processes and the RAND
//! Health Insurance Experiment data, in a temporary directory removed at the end.
//!
//! A thin driver: the node runs in this process (`btcmpc_regtest::server`, automining a block
//! shortly after each transaction); the parties are `party run` child processes of this binary;
//! every other role's step is a child invocation of this binary with `--json` (`wallet`,
//! `party`, `network`, `owner`, `service`), so the demo runs exactly the commands a user runs
//! and each role's wallet is opened by one process at a time. The node's RPC gives heights and
//! the fee of every transaction (its inputs less its outputs), so each role's balance change is
//! checked to the satoshi. `all` sets the committee up once and restarts a party daemon with a
//! testing fault for the scenarios that need one.

mod clear;
mod scenarios;
mod world;

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::{json, Value};

use crate::{global::Global, output::Report};
use scenarios::{Outcome, Setup, Step};

/// Arguments of `btcmpc demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The scenario to run (`all`: every one, on one node and one committee).
    #[arg(value_enum, default_value_t = Which::All)]
    scenario: Which,
}

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    /// A granted service pays, gets the answer, checked against the clear data.
    Honest,
    /// A granted service asks about a subset of rows (`where income > 10000`): every row is
    /// compared in secret.
    Filter,
    /// A party never claims: the result is decoded anyway and its escrow refunded after T.
    Withhold,
    /// A party delivers a wrong output share: named, the result still right, its bond slashed.
    WrongShare,
    /// A party signs two conflicting messages in a job: caught, named, its bond slashed.
    Equivocate,
    /// A revoked service is refused and pays nothing.
    Revoked,
    /// Every scenario.
    All,
}

const ORDER: [Which; 6] = [
    Which::Honest,
    Which::Filter,
    Which::Withhold,
    Which::WrongShare,
    Which::Revoked,
    Which::Equivocate,
];

/// Run `btcmpc demo`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<Report> {
    if global.network != crate::global::NetworkArg::Regtest {
        bail!(
            "the demo runs on its own embedded regtest node (got --network {})",
            global.network.name()
        );
    }
    // The demo makes its own node, wallets and datadirs in a temporary directory: an option
    // naming another one would be ignored, so it is refused.
    for (set, what) in [
        (global.datadir.is_some(), "--datadir (or BTCMPC_DATADIR)"),
        (global.electrum.is_some(), "--electrum (or BTCMPC_ELECTRUM)"),
        (global.rpc.is_some(), "--rpc (or BTCMPC_RPC)"),
        (
            global.rpc_cookie.is_some(),
            "--rpc-cookie (or BTCMPC_RPC_COOKIE)",
        ),
    ] {
        if set {
            bail!(
                "the demo runs its own embedded regtest node and datadirs in a temporary directory: {what} does not apply to it"
            );
        }
    }
    match play(args, global) {
        // Ctrl-C or SIGTERM during the set-up or a step: the demo's processes are stopped.
        Err(e) if world::interrupted() => Ok(interrupted(&e.to_string(), Vec::new())),
        r => r,
    }
}

/// What an interrupted demo reports: the scenarios it finished, and exit code 130 (the
/// shell's code for a process ended by SIGINT).
fn interrupted(why: &str, done: Vec<Outcome>) -> Report {
    let names: Vec<&str> = done.iter().map(|o| o.name).collect();
    Report::new(
        format!(
            "interrupted ({why}); scenarios finished before: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ),
        json!({
            "interrupted": true,
            "ok": false,
            "scenarios": done.iter().map(outcome_json).collect::<Vec<_>>(),
        }),
    )
    .with_exit(130)
}

fn play(args: Args, global: &Global) -> anyhow::Result<Report> {
    let list: Vec<Which> = match args.scenario {
        Which::All => ORDER.to_vec(),
        one => vec![one],
    };
    let started = std::time::Instant::now();
    let mut w = world::World::start(!global.quiet)?;
    let setup = scenarios::setup(&mut w, list.contains(&Which::Revoked))?;
    let setup_secs = started.elapsed().as_secs_f64();
    let mut outcomes = Vec::new();
    for which in list {
        w.say(&format!("scenario {}", name(which)));
        let t0 = std::time::Instant::now();
        let r = match which {
            Which::Honest => scenarios::honest(&mut w, &setup),
            Which::Filter => scenarios::filter(&mut w, &setup),
            Which::Withhold => scenarios::withhold(&mut w, &setup),
            Which::WrongShare => scenarios::wrong_share(&mut w, &setup),
            Which::Revoked => scenarios::revoked(&mut w, &setup),
            Which::Equivocate => scenarios::equivocate(&mut w, &setup),
            Which::All => continue,
        };
        if let Err(e) = world::check_interrupted() {
            drop(w);
            return Ok(interrupted(&e.to_string(), outcomes));
        }
        let mut o = r.unwrap_or_else(|e| Outcome {
            name: name(which),
            error: Some(crate::output::one_line(&e)),
            ..Outcome::default()
        });
        o.seconds = t0.elapsed().as_secs_f64();
        // In chain order (a stable sort keeps the order of steps at one height).
        o.timeline.sort_by_key(|s| s.height);
        outcomes.push(o);
    }
    let secs = started.elapsed().as_secs_f64();
    drop(w);
    let ok = outcomes.iter().all(Outcome::ok);
    let report = Report::new(
        text(&setup, &outcomes, setup_secs, secs),
        json!({
            "scenarios": outcomes.iter().map(outcome_json).collect::<Vec<_>>(),
            "setup": {"timeline": setup.timeline.iter().map(Step::json).collect::<Vec<_>>(),
                      "seconds": setup_secs},
            "ok": ok,
            "seconds": secs,
        }),
    );
    Ok(if ok { report } else { report.with_exit(1) })
}

fn name(w: Which) -> &'static str {
    match w {
        Which::Honest => "honest",
        Which::Filter => "filter",
        Which::Withhold => "withhold",
        Which::WrongShare => "wrong-share",
        Which::Equivocate => "equivocate",
        Which::Revoked => "revoked",
        Which::All => "all",
    }
}

fn outcome_json(o: &Outcome) -> Value {
    let balances: BTreeMap<&String, Value> = o
        .balances
        .iter()
        .map(|(r, b)| {
            (
                r,
                json!({"before": b.before, "after": b.after, "change": b.change(),
                       "expected_change": b.expected}),
            )
        })
        .collect();
    json!({
        "name": o.name,
        "ok": o.ok(),
        "title": o.title,
        "query": o.query,
        "result": o.result,
        "clear": o.clear,
        "blamed": o.blamed,
        "balances": balances,
        "timeline": o.timeline.iter().map(Step::json).collect::<Vec<_>>(),
        "checks": o.checks.iter().map(|(w, ok)| json!({"check": w, "ok": ok})).collect::<Vec<_>>(),
        "notes": o.notes,
        "bond": o.bond.map(|(b, a)| json!({"party": 3, "before": b, "after": a})),
        "error": o.error,
        "seconds": o.seconds,
    })
}

fn short(txid: &Option<String>) -> String {
    txid.as_deref().map_or_else(
        || "-".to_string(),
        |t| {
            format!(
                "{}..{}",
                &t[..8.min(t.len())],
                &t[t.len().saturating_sub(4)..]
            )
        },
    )
}

fn timeline_text(out: &mut String, steps: &[Step]) {
    let mut steps: Vec<&Step> = steps.iter().collect();
    steps.sort_by_key(|s| s.height);
    for s in steps {
        out.push_str(&format!(
            "    {:>4}  {:14}  {:>9}  {}\n",
            s.height,
            short(&s.txid),
            s.sats.map_or(String::new(), |v| format!("{v:+}")),
            s.step
        ));
    }
}

fn text(setup: &Setup, outcomes: &[Outcome], setup_secs: f64, secs: f64) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "btcmpc demo: a fresh embedded regtest node, 4 party processes (t = 1) bonded {} sat each, \
         the RAND Health Insurance Experiment data; services pay {} sat per party per query \
         (setup {setup_secs:.1} s)\n",
        scenarios::BOND_SAT,
        scenarios::FEE_SAT
    ));
    t.push_str("  height  txid            sats       step\n");
    timeline_text(&mut t, &setup.timeline);
    for o in outcomes {
        t.push_str(&format!(
            "\n== {} [{}, {:.1} s]: {}\n",
            o.name,
            if o.ok() { "ok" } else { "FAILED" },
            o.seconds,
            o.title
        ));
        if let Some(e) = &o.error {
            t.push_str(&format!("  error: {e}\n"));
            continue;
        }
        if !o.query.is_empty() {
            t.push_str(&format!("  query: {}\n", o.query));
        }
        if !o.clear.is_empty() {
            let width = o.result.keys().map(String::len).max().unwrap_or(0).max(9);
            t.push_str(&format!(
                "  {:width$}  {:>28}  {:>28}\n",
                "aggregate", "service got (MPC)", "clear (from the CSV)"
            ));
            for k in &o.keys {
                let v = o.result.get(k).unwrap_or(&Value::Null);
                let c = o.clear.get(k).map_or(String::new(), |c| {
                    c["exact"].as_str().unwrap_or_default().to_string()
                });
                t.push_str(&format!(
                    "  {k:width$}  {:>28}  {:>28}\n",
                    v.as_str().unwrap_or("(none)"),
                    c
                ));
            }
        } else {
            for (k, v) in &o.result {
                // Keys and txids are shortened so that the reason after them stays on the line.
                let s = shorten_hex(&v.as_str().map_or(v.to_string(), str::to_string));
                t.push_str(&format!("  {k}: {s}\n"));
            }
        }
        t.push_str("  timeline (height, txid, sats, step):\n");
        timeline_text(&mut t, &o.timeline);
        if o.blamed.is_empty() {
            t.push_str("  blamed: none\n");
        }
        for b in &o.blamed {
            t.push_str(&format!(
                "  blamed: party {}: {}\n",
                b["party"],
                b["why"].as_str().unwrap_or_default()
            ));
        }
        t.push_str("  balances (sat):   before      after     change  expected\n");
        for (r, b) in &o.balances {
            t.push_str(&format!(
                "    {r:10} {:>10} {:>10} {:>+10} {:>+9}\n",
                b.before,
                b.after,
                b.change(),
                b.expected
            ));
        }
        for n in &o.notes {
            t.push_str(&format!("  note: {n}\n"));
        }
        for (what, ok) in &o.checks {
            if !ok {
                t.push_str(&format!("  CHECK FAILED: {what}\n"));
            }
        }
    }
    let passed = outcomes.iter().filter(|o| o.ok()).count();
    t.push_str(&format!(
        "\n{passed} of {} scenarios passed every check, in {secs:.1} s",
        outcomes.len()
    ));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use scenarios::Balance;

    fn setup() -> Setup {
        Setup {
            card: "card.json".into(),
            manifest: "manifest.json".into(),
            service_b: None,
            timeline: vec![Step {
                height: 101,
                step: "party 1 bonds".into(),
                txid: Some("ab".repeat(32)),
                sats: Some(-100_000),
            }],
        }
    }

    #[test]
    fn a_failed_check_or_an_error_fails_the_scenario_in_text_and_json() {
        let mut bad = Outcome {
            name: "honest",
            ..Outcome::default()
        };
        bad.balances.insert(
            "service".into(),
            Balance {
                before: 10,
                after: 5,
                expected: -4,
            },
        );
        bad.checks.push((
            "service's balance changed by -5 sat (expected -4)".into(),
            false,
        ));
        let broken = Outcome {
            name: "revoked",
            error: Some("`btcmpc owner revoke` (owner) failed: no funds".into()),
            ..Outcome::default()
        };
        let good = Outcome {
            name: "withhold",
            checks: vec![("fine".into(), true)],
            ..Outcome::default()
        };
        assert!(!bad.ok() && !broken.ok() && good.ok());
        let j = outcome_json(&bad);
        assert_eq!(j["ok"], false);
        assert_eq!(j["balances"]["service"]["change"], -5);
        assert_eq!(j["balances"]["service"]["expected_change"], -4);
        assert_eq!(
            outcome_json(&broken)["error"],
            broken.error.clone().unwrap()
        );
        let t = text(&setup(), &[bad, broken, good], 1.0, 2.0);
        assert!(t.contains("== honest [FAILED"), "{t}");
        assert!(
            t.contains("CHECK FAILED: service's balance changed by -5 sat"),
            "{t}"
        );
        assert!(
            t.contains("error: `btcmpc owner revoke` (owner) failed: no funds"),
            "{t}"
        );
        assert!(t.contains("== withhold [ok"), "{t}");
        assert!(t.contains("1 of 3 scenarios passed every check"), "{t}");
        assert!(t.contains("abababab..abab"), "{t}");
    }
}

/// `text` with every run of more than 16 hex digits (a key, a txid) cut to its first 8 and `…`.
fn shorten_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() > 16 {
            out.push_str(&run[..8]);
            out.push('…');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod shorten_tests {
    #[test]
    fn long_hex_runs_are_cut_and_the_rest_kept() {
        let key = "025d6b687bf1cc3ced0fafbba5bb7e070743549380bfbf691a34cfcd0011223344";
        let text = format!("parties 1, 2: {key} was revoked by {}", "ab".repeat(32));
        assert_eq!(
            super::shorten_hex(&text),
            "parties 1, 2: 025d6b68… was revoked by abababab…"
        );
        assert_eq!(
            super::shorten_hex("mean 12.5 of 20190 rows"),
            "mean 12.5 of 20190 rows"
        );
    }
}
