//! The committee set up once, and each scenario: what it does through the CLI's own commands,
//! and what it checks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};

use super::clear::{self, Agg};
use super::world::World;

/// The RAND Health Insurance Experiment file (public domain; see data/randhie/README.md).
pub const RANDHIE: &str = include_str!("../../../../data/randhie/randhie.csv");
/// The columns the owner stores: medical spending, family income, education (4 gaps).
pub const COLUMNS: [&str; 3] = ["meddol", "income", "educdec"];
/// The fee the service offers each party, in sats.
pub const FEE_SAT: u64 = 5_000;
/// Each party's bond, in sats.
pub const BOND_SAT: u64 = 400_000;
/// Fee rate of every transaction the demo's roles make, in sat/vB.
const FEE_RATE: &str = "2";
/// Escrow refund height, blocks from the tip at request time.
const DEADLINE: u32 = 20;
/// Every role's wallet, and what the faucet pays it, in sats.
const START_SAT: u64 = 1_000_000;

const PARTIES: [&str; 4] = ["p1", "p2", "p3", "p4"];

/// One line of a scenario's timeline.
#[derive(Debug, Clone)]
pub struct Step {
    /// The height of the block holding the transaction (or the tip when there is none).
    pub height: u32,
    /// What happened.
    pub step: String,
    /// The transaction, if any.
    pub txid: Option<String>,
    /// Sats moved (signed: from the acting role's view), if any.
    pub sats: Option<i64>,
}

impl Step {
    /// `{"height", "step", "txid", "sats"}`.
    pub fn json(&self) -> Value {
        json!({"height": self.height, "step": self.step, "txid": self.txid, "sats": self.sats})
    }
}

/// A role's wallet before and after a scenario, and the change the scenario's transactions
/// account for, in sats.
#[derive(Debug, Clone, Copy)]
pub struct Balance {
    /// Before the scenario.
    pub before: u64,
    /// After it (every transaction mined).
    pub after: u64,
    /// What the timeline's amounts and fees add up to.
    pub expected: i64,
}

impl Balance {
    /// `after - before`.
    pub fn change(&self) -> i64 {
        self.after as i64 - self.before as i64
    }
}

/// What one scenario did and whether every check passed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The scenario's name.
    pub name: &'static str,
    /// One sentence: what it shows.
    pub title: String,
    /// The question asked (or the action taken).
    pub query: String,
    /// The aggregates in the order asked.
    pub keys: Vec<String>,
    /// The result the service got (aggregate to decimal text), or the store's report.
    pub result: BTreeMap<String, Value>,
    /// The clear computation: aggregate to `{"exact", "float"}`.
    pub clear: BTreeMap<String, Value>,
    /// Who was blamed, `{"party": I, "why": "..."}`.
    pub blamed: Vec<Value>,
    /// Role to balances.
    pub balances: BTreeMap<String, Balance>,
    /// What happened, in order.
    pub timeline: Vec<Step>,
    /// Each check and whether it passed.
    pub checks: Vec<(String, bool)>,
    /// Remarks for the reader.
    pub notes: Vec<String>,
    /// The slashed party's bond on chain before and after, sats.
    pub bond: Option<(u64, u64)>,
    /// The error that stopped the scenario, if one did.
    pub error: Option<String>,
    /// Wall-clock seconds it took (restarts of faulty parties included).
    pub seconds: f64,
}

impl Outcome {
    fn new(name: &'static str, title: &str) -> Outcome {
        Outcome {
            name,
            title: title.into(),
            ..Outcome::default()
        }
    }

    /// Every check passed and nothing failed.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.1)
    }

    fn check(&mut self, what: impl Into<String>, ok: bool) {
        self.checks.push((what.into(), ok));
    }

    fn step(
        &mut self,
        height: u32,
        step: impl Into<String>,
        txid: Option<&str>,
        sats: Option<i64>,
    ) {
        self.timeline.push(Step {
            height,
            step: step.into(),
            txid: txid.map(str::to_string),
            sats,
        });
    }

    /// Records balances and checks each change against `expected` (roles not named: 0).
    fn account(
        &mut self,
        before: &BTreeMap<String, u64>,
        after: &BTreeMap<String, u64>,
        expected: &BTreeMap<String, i64>,
    ) {
        for (role, b) in before {
            let bal = Balance {
                before: *b,
                after: after.get(role).copied().unwrap_or(0),
                expected: expected.get(role).copied().unwrap_or(0),
            };
            self.check(
                format!(
                    "{role}'s balance changed by {} sat (expected {})",
                    bal.change(),
                    bal.expected
                ),
                bal.change() == bal.expected,
            );
            self.balances.insert(role.clone(), bal);
        }
    }
}

/// The committee and the dataset every scenario uses.
#[derive(Debug)]
pub struct Setup {
    /// The dataset card services query.
    pub card: PathBuf,
    /// The manifest of the committee.
    pub manifest: PathBuf,
    /// The key of the second service (granted, for the revoked scenario), if made.
    pub service_b: Option<String>,
    /// Bonds, STORE and GRANT transactions.
    pub timeline: Vec<Step>,
}

fn str_of(v: &Value, key: &str, what: &str) -> anyhow::Result<String> {
    v[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{what}: no {key:?} in {v}"))
}

/// Polls `service access` as `who` until every party grants (`want = true`) or every party
/// refuses (`want = false`); returns the last answer.
fn wait_access(w: &World, who: &str, card: &str, want: bool) -> anyhow::Result<Value> {
    let cols = COLUMNS.join(",");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        super::world::check_interrupted()?;
        let r = w.run(
            who,
            &[
                "service",
                "access",
                card,
                "--columns",
                &cols,
                "--degree",
                "2",
            ],
            super::world::STEP,
        )?;
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or_default();
        if let Some(parties) = v["parties"].as_array() {
            if parties.len() == 4 && parties.iter().all(|p| p["granted"] == want) {
                return Ok(v);
            }
        } else if !r.ok && r.code != Some(3) {
            bail!("`service access` ({who}) failed: {}", r.error_line());
        }
        if Instant::now() >= end {
            bail!(
                "the parties did not all {} the service within 30 s: {v}",
                if want { "grant" } else { "refuse" }
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Wallets, four bonded party daemons, the RAND data stored, the card exported, the service
/// (and, with `service_b`, a second service) granted and seen as granted by every party.
///
/// # Errors
/// The first step that fails, named.
pub fn setup(w: &mut World, service_b: bool) -> anyhow::Result<Setup> {
    let mut roles: Vec<&str> = vec!["p1", "p2", "p3", "p4", "owner", "service"];
    if service_b {
        roles.push("service-b");
    }
    w.say("setting up: embedded regtest node, wallets, four bonded party daemons");
    let world: &World = w;
    std::thread::scope(|s| -> anyhow::Result<()> {
        let hs: Vec<_> = roles
            .iter()
            .map(|r| s.spawn(move || world.funded_wallet(r, START_SAT)))
            .collect();
        for h in hs {
            h.join()
                .map_err(|_| anyhow!("a wallet thread panicked"))??;
        }
        Ok(())
    })?;
    let mut cards = Vec::new();
    for p in PARTIES {
        let endpoint = w.lease_endpoint()?;
        let v = w.json(p, &["party", "init", "--endpoint", &endpoint])?;
        cards.push(str_of(&v, "card", "party init")?);
    }
    let roster = w.path("roster.json").display().to_string();
    let mut args = vec![
        "network",
        "roster",
        "--t",
        "1",
        "--min-bond",
        "100000sat",
        "--out",
    ];
    args.push(&roster);
    args.extend(cards.iter().map(String::as_str));
    w.json("p1", &args)?;
    for p in PARTIES {
        w.json(p, &["party", "sign-roster", &roster])?;
    }
    let bond = format!("{BOND_SAT}sat");
    let world: &World = w;
    let bonds: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = PARTIES
            .iter()
            .map(|p| {
                let (roster, bond) = (&roster, &bond);
                s.spawn(move || {
                    world.json(
                        p,
                        &[
                            "party",
                            "bond",
                            bond,
                            "--exit",
                            "+1000",
                            "--roster",
                            roster,
                            "--fee-rate",
                            FEE_RATE,
                        ],
                    )
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a bond thread panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    w.mined()?;
    let mut timeline = Vec::new();
    for (i, b) in bonds.iter().enumerate() {
        let txid = str_of(b, "txid", "party bond")?;
        timeline.push(Step {
            height: w.tx_height(&txid)?,
            step: format!(
                "party {} bonds {BOND_SAT} sat (judges: the other parties)",
                i + 1
            ),
            txid: Some(txid),
            sats: Some(-(BOND_SAT as i64)),
        });
    }
    let manifest = w.path("manifest.json");
    let m = manifest.display().to_string();
    let mut args = vec!["network", "manifest", "--roster", &roster, "--out", &m];
    args.extend(cards.iter().map(String::as_str));
    w.json("p1", &args)?;
    for (i, p) in PARTIES.iter().enumerate() {
        std::fs::copy(&manifest, w.datadir(p).join("manifest.json"))
            .context("copying the manifest")?;
        w.start_party(i + 1, None)?;
    }

    w.say("the owner stores the RAND Health Insurance Experiment data (20,190 rows)");
    let csv = w.path("randhie.csv");
    std::fs::write(&csv, RANDHIE).context("writing the CSV")?;
    let csv = csv.display().to_string();
    let cols = COLUMNS.join(",");
    let v = w.json_within(
        "owner",
        &[
            "owner",
            "store",
            &csv,
            "--name",
            "randhie",
            "--columns",
            &cols,
            // The 127-bit field: filters compare every row in secret, six times faster than
            // in secp256k1.
            "--field",
            "m127",
            "--manifest",
            &m,
            "--fee-rate",
            FEE_RATE,
            "--party-timeout",
            "60",
        ],
        Duration::from_secs(300),
    )?;
    w.mined()?;
    let store_txid = str_of(&v, "store_outpoint", "owner store")?
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let (sfee, anchor) = (w.fee(&store_txid)?, w.output_value(&store_txid, 0)?);
    timeline.push(Step {
        height: w.tx_height(&store_txid)?,
        step: format!(
            "owner stores randhie ({} rows; {cols}) with parties {}: STORE record (fee {sfee} sat, anchor output {anchor} sat)",
            v["rows"], v["holders"]
        ),
        sats: Some(-((sfee + anchor) as i64)),
        txid: Some(store_txid),
    });
    let card = w.path("randhie.card.json");
    let c = card.display().to_string();
    w.json("owner", &["owner", "export", "randhie", "--out", &c])?;

    let mut keys = vec![(
        "service",
        str_of(
            &w.json("service", &["service", "init"])?,
            "pubkey",
            "service init",
        )?,
    )];
    if service_b {
        let k = str_of(
            &w.json("service-b", &["service", "init"])?,
            "pubkey",
            "service init",
        )?;
        keys.push(("service-b", k));
    }
    for (who, key) in &keys {
        let g = w.json(
            "owner",
            &[
                "owner",
                "grant",
                "randhie",
                key,
                "--columns",
                &cols,
                "--max-degree",
                "2",
                "--fee-rate",
                FEE_RATE,
            ],
        )?;
        w.mined()?;
        let txid = str_of(&g, "txid", "owner grant")?;
        timeline.push(Step {
            height: w.tx_height(&txid)?,
            step: format!("owner grants {who} ({cols}, degree 2): GRANT record"),
            sats: Some(-(w.fee(&txid)? as i64)),
            txid: Some(txid),
        });
    }
    for (who, _) in &keys {
        wait_access(w, who, &c, true)?;
    }
    Ok(Setup {
        card,
        manifest,
        service_b: keys.get(1).map(|k| k.1.clone()),
        timeline,
    })
}

/// `service query` as `who`; its JSON report.
fn query(w: &World, who: &str, card: &str, q: &str, wait: u64) -> anyhow::Result<Value> {
    w.say(&format!(
        "{who} asks `{q}`: quotes, output masks, the parties compute, escrow funding, claims"
    ));
    let (fee, wait_s, deadline) = (
        format!("{FEE_SAT}sat"),
        wait.to_string(),
        format!("+{DEADLINE}"),
    );
    let r = w.json_within(
        who,
        &[
            "service",
            "query",
            card,
            q,
            "--fee",
            &fee,
            "--deadline",
            &deadline,
            "--wait",
            &wait_s,
            "--party-timeout",
            "60",
            "--fee-rate",
            FEE_RATE,
        ],
        Duration::from_secs(wait + 240),
    );
    if r.is_ok() {
        w.say(&format!(
            "{who} has its answer; checking it against the clear data and the chain"
        ));
    }
    r
}

impl Setup {
    /// Every role with a wallet: the owner, the service(s), the four parties.
    fn roles(&self) -> Vec<&'static str> {
        let mut r = vec!["owner", "service"];
        if self.service_b.is_some() {
            r.push("service-b");
        }
        r.extend(PARTIES);
        r
    }
}

/// Compares the service's result with both clear computations.
fn check_result(o: &mut Outcome, v: &Value, aggs: &[Agg]) -> anyhow::Result<()> {
    let q = clear::query_text(aggs);
    let cols: Vec<&str> = COLUMNS.to_vec();
    let exact = clear::exact(RANDHIE.as_bytes(), &cols, &q)?;
    let float = clear::float(RANDHIE, aggs)?;
    o.query = q;
    for a in aggs {
        let k = a.text();
        o.keys.push(k.clone());
        let got = v["result"][&k].as_str().map(str::to_string);
        let e = exact.get(&k).cloned().unwrap_or_default();
        let f = float.get(&k).copied().unwrap_or(f64::NAN);
        o.result
            .insert(k.clone(), got.clone().map_or(Value::Null, Value::from));
        o.clear.insert(k.clone(), json!({"exact": e, "float": f}));
        match got {
            Some(g) => {
                o.check(format!("{k} = {g} equals the clear computation"), g == e);
                o.check(
                    format!("{k} is the CSV's value in floating point ({f})"),
                    clear::close(&g, f),
                );
            }
            None => o.check(format!("{k}: the service got a result"), false),
        }
    }
    Ok(())
}

/// The funding and each claim on the timeline; returns the expected change of each role
/// (service: escrow outputs and the funding's fee; each claiming party: its fee less its
/// claim's fee) and the escrow txid.
fn account_payments(
    w: &World,
    o: &mut Outcome,
    v: &Value,
    service: &str,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut expected = BTreeMap::new();
    let paid = v["paid"].as_array().cloned().unwrap_or_default();
    let Some(first) = paid.first() else {
        o.check("the service funded the escrow outputs", false);
        return Ok(expected);
    };
    let funding = str_of(first, "escrow_txid", "service query")?;
    let total: u64 = paid.iter().filter_map(|p| p["sats"].as_u64()).sum();
    let ffee = w.fee(&funding)?;
    o.step(
        w.tx_height(&funding)?,
        format!(
            "{service} funds {} escrow outputs of {} sat ({FEE_SAT} sat fee + the claim's fee) in one transaction (fee {ffee} sat)",
            paid.len(),
            paid.first().and_then(|p| p["sats"].as_u64()).unwrap_or(0)
        ),
        Some(&funding),
        Some(-((total + ffee) as i64)),
    );
    *expected.entry(service.to_string()).or_insert(0) -= (total + ffee) as i64;
    for p in &paid {
        let party = p["party"].as_u64().unwrap_or(0);
        let sats = p["sats"].as_u64().unwrap_or(0);
        if let Some(claim) = p["claim_txid"].as_str() {
            let cfee = w.fee(claim)?;
            o.step(
                w.tx_height(claim)?,
                format!("party {party} claims its {sats} sat, revealing k_{party} (claim fee {cfee} sat)"),
                Some(claim),
                Some(sats as i64 - cfee as i64),
            );
            expected.insert(format!("p{party}"), sats as i64 - cfee as i64);
        }
    }
    Ok(expected)
}

fn blamed_from(v: &Value, why: &str) -> Vec<Value> {
    v["blamed"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| json!({"party": b["party"], "why": why, "evidence": b["evidence"]}))
                .collect()
        })
        .unwrap_or_default()
}

fn blamed_parties(v: &Value) -> Vec<u64> {
    v["blamed"]
        .as_array()
        .map(|a| a.iter().filter_map(|b| b["party"].as_u64()).collect())
        .unwrap_or_default()
}

/// A granted service pays every party and gets the answer.
pub fn honest(w: &mut World, s: &Setup) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(
        "honest",
        "a granted service pays four parties and learns medical spending statistics, checked against the clear data",
    );
    w.set_fault(3, None)?;
    w.set_fault(4, None)?;
    let aggs = [
        Agg::Count,
        Agg::Mean("meddol"),
        Agg::Var("meddol"),
        Agg::Mean("income"),
        Agg::Cov("meddol", "income"),
        Agg::CountOf("educdec"),
        Agg::Mean("educdec"),
    ];
    honest_query(w, s, &mut o, &aggs)?;
    Ok(o)
}

/// A paid query with every party honest: the result equals both clear computations, nothing
/// is withheld, nobody is blamed, all four parties claim, every balance as accounted.
fn honest_query(w: &mut World, s: &Setup, o: &mut Outcome, aggs: &[Agg]) -> anyhow::Result<()> {
    let before = w.balances(&s.roles())?;
    let card = s.card.display().to_string();
    let v = query(w, "service", &card, &clear::query_text(aggs), 60)?;
    check_result(o, &v, aggs)?;
    let withheld = v["withheld"].as_array().map_or(0, Vec::len);
    o.check(
        format!("no aggregate is withheld by the leakage rule ({withheld})"),
        withheld == 0,
    );
    o.blamed = blamed_from(&v, "");
    o.check("nobody is blamed", o.blamed.is_empty());
    let after = w.balances(&s.roles())?;
    let expected = account_payments(w, o, &v, "service")?;
    let claimed = v["paid"].as_array().map_or(0, |a| {
        a.iter().filter(|p| p["claim_txid"].is_string()).count()
    });
    o.check(
        format!("all four parties claimed their fee ({claimed})"),
        claimed == 4,
    );
    o.account(&before, &after, &expected);
    Ok(())
}

/// The income above which the filter scenario asks (5,799 of the 20,190 rows).
const INCOME_ABOVE: u32 = 10_000;

/// A query over a subset of rows: the parties compare every row's income with the bound in
/// secret (a 32-bit comparison per row), and only the aggregates come out.
pub fn filter(w: &mut World, s: &Setup) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(
        "filter",
        "a granted service asks about the families with an income above 10,000: every row is compared in secret, only the aggregates come out, checked against the clear data",
    );
    w.set_fault(3, None)?;
    w.set_fault(4, None)?;
    let aggs = [
        Agg::CountAbove("income", INCOME_ABOVE),
        Agg::MeanAbove("meddol", "income", INCOME_ABOVE),
        Agg::MeanAbove("income", "income", INCOME_ABOVE),
    ];
    honest_query(w, s, &mut o, &aggs)?;
    Ok(o)
}

/// Party 4 never reveals its key: the result comes from the others and its escrow output is
/// refunded after `T`.
pub fn withhold(w: &mut World, s: &Setup) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(
        "withhold",
        "party 4 never claims (its key stays secret): the result is decoded from the other three and its escrow is refunded after the deadline",
    );
    w.set_fault(3, None)?;
    w.set_fault(4, Some("withhold-key"))?;
    let aggs = [Agg::Mean("income"), Agg::Var("income"), Agg::Mean("meddol")];
    let before = w.balances(&s.roles())?;
    let card = s.card.display().to_string();
    // The service waits 6 s for the claims, then returns with party 4's output pending
    // (a claim later than that is still read by `service settle`).
    let v = query(w, "service", &card, &clear::query_text(&aggs), 6)?;
    let job = str_of(&v, "job", "service query")?;
    let pending: Vec<(u64, u64)> = v["pending_refunds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p["party"].as_u64()?, p["height"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    o.check(
        format!("party 4's escrow output is pending a refund ({pending:?})"),
        pending.iter().any(|p| p.0 == 4),
    );
    let t = pending.first().map_or(0, |p| p.1) as u32;
    let h = w.height()?;
    if t > h {
        w.mine(t - h)?;
    }
    o.step(
        w.height()?,
        format!(
            "mined {} blocks: the tip reaches the deadline T = {t}",
            t.saturating_sub(h)
        ),
        None,
        None,
    );
    let mut refunds = Vec::new();
    let mut report = Value::Null;
    for _ in 0..3 {
        let r = w.json(
            "service",
            &["service", "settle", &job, "--fee-rate", FEE_RATE],
        )?;
        report = r["jobs"][0]["report"].clone();
        refunds = r["jobs"][0]["refunds"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !refunds.is_empty() {
            break;
        }
        w.mine(1)?;
    }
    w.mined()?;
    // The payments as `service settle` read them at T (every claim by then, even one that
    // came after `service query` returned).
    let mut expected = account_payments(w, &mut o, &report, "service")?;
    // The result as `service query` opened it, or (if too few claims had come when it
    // returned) as `service settle` did.
    let result_src = if v["result"].as_object().is_some_and(|m| !m.is_empty()) {
        v.clone()
    } else {
        o.notes
            .push("the result was opened by `service settle` from the three claims".into());
        report.clone()
    };
    check_result(&mut o, &result_src, &aggs)?;
    let refunded: Vec<u64> = refunds.iter().filter_map(|r| r[0].as_u64()).collect();
    o.check(
        format!("only party 4's output was refunded ({refunded:?})"),
        refunded == [4],
    );
    for r in &refunds {
        let txid = r[1].as_str().unwrap_or_default();
        let rfee = w.fee(txid)?;
        let escrow = report["paid"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["party"] == r[0]))
            .and_then(|p| p["sats"].as_u64())
            .unwrap_or(0);
        let back = escrow as i64 - rfee as i64;
        o.step(
            w.tx_height(txid)?,
            format!(
                "service settle refunds party {}'s unclaimed {escrow} sat (refund fee {rfee} sat)",
                r[0]
            ),
            Some(txid),
            Some(back),
        );
        *expected.entry("service".into()).or_insert(0) += back;
    }
    o.blamed = vec![
        json!({"party": 4, "why": "never claimed: its key was withheld, its escrow refunded"}),
    ];
    o.check("party 4 was paid nothing", !expected.contains_key("p4"));
    let after = w.balances(&s.roles())?;
    o.account(&before, &after, &expected);
    Ok(o)
}

/// The value of party `party`'s bond on chain (followed through slash remainders), sats.
fn bond_value(w: &World, s: &Setup, party: usize) -> anyhow::Result<u64> {
    let m = s.manifest.display().to_string();
    let v = w.json("p1", &["network", "verify", &m])?;
    v["bonds"][party - 1]["value_sat"]
        .as_u64()
        .ok_or_else(|| anyhow!("network verify shows no value for party {party}'s bond: {v}"))
}

/// A paid query with party 3 committing `fault`: the result is still right, party 3 is named,
/// two judges verify the evidence and sign the canonical slash, and the penalty (10 x the fee)
/// moves from party 3's bond to the service on chain; the rest stays in the bond script.
fn cheater(
    w: &mut World,
    s: &Setup,
    o: &mut Outcome,
    fault: &str,
    aggs: &[Agg],
    why: &str,
) -> anyhow::Result<()> {
    w.set_fault(3, Some(fault))?;
    w.set_fault(4, None)?;
    let before = w.balances(&s.roles())?;
    let bond_before = bond_value(w, s, 3)?;
    let card = s.card.display().to_string();
    let v = query(w, "service", &card, &clear::query_text(aggs), 60)?;
    check_result(o, &v, aggs)?;
    o.blamed = blamed_from(&v, why);
    let named = blamed_parties(&v);
    o.check(
        format!("party 3, and only party 3, is named ({named:?})"),
        named == [3],
    );
    w.mined()?;
    let mut expected = account_payments(w, o, &v, "service")?;
    let slashed = v["slashed"].as_array().cloned().unwrap_or_default();
    o.check(
        format!("party 3's bond was slashed ({} slash)", slashed.len()),
        slashed.len() == 1 && slashed[0]["party"] == 3,
    );
    for sl in &slashed {
        let txid = sl["txid"].as_str().unwrap_or_default();
        let sats = sl["sats"].as_u64().unwrap_or(0);
        let judges = sl["judges"].clone();
        let sfee = w.fee(txid)?;
        o.step(
            w.tx_height(txid)?,
            format!(
                "judges {judges} verified the evidence and signed: party {}'s bond pays {sats} sat to the service (slash fee {sfee} sat)",
                sl["party"]
            ),
            Some(txid),
            Some(sats as i64),
        );
        o.check(
            format!("the penalty is 10 x the fee ({sats} sat)"),
            sats == 10 * FEE_SAT,
        );
        *expected.entry("service".into()).or_insert(0) += sats as i64;
        let bond_after = bond_value(w, s, 3)?;
        o.check(
            format!(
                "party 3's bond went from {bond_before} to {bond_after} sat: the penalty and the slash fee, the rest still in the bond script"
            ),
            bond_before - bond_after == sats + sfee,
        );
        o.bond = Some((bond_before, bond_after));
        o.notes.push(format!(
            "party 3's bond on chain: {bond_before} -> {bond_after} sat; the rest stays in the bond script, where a later victim can still be paid from"
        ));
    }
    let after = w.balances(&s.roles())?;
    o.account(&before, &after, &expected);
    // The cheater's loss, beside its wallet (which still got its fee): its bond on chain.
    if let (Some((b, a)), Some(sl)) = (o.bond, slashed.first()) {
        let lost =
            sl["sats"].as_u64().unwrap_or(0) + w.fee(sl["txid"].as_str().unwrap_or_default())?;
        let bal = Balance {
            before: b,
            after: a,
            expected: -(lost as i64),
        };
        o.check(
            format!(
                "p3's bond changed by {} sat (expected {})",
                bal.change(),
                bal.expected
            ),
            bal.change() == bal.expected,
        );
        o.balances.insert("p3 bond".into(), bal);
        let fee = o.balances.get("p3").map_or(0, Balance::change);
        o.notes.push(format!(
            "party 3 still claimed its fee ({fee:+} sat to its wallet: its escrow output pays for a delivery, and the other parties' keys open the result), but its bond lost {lost} sat: {:+} sat in all",
            fee - lost as i64
        ));
    }
    Ok(())
}

/// Party 3 seals a wrong output share: decoding names it, the result is still right, and the
/// judges slash its bond to the service.
pub fn wrong_share(w: &mut World, s: &Setup) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(
        "wrong-share",
        "party 3 delivers a wrong output share: the result is still right, party 3 is named and its bond is slashed to the service",
    );
    let aggs = [Agg::Mean("meddol"), Agg::Cov("meddol", "income")];
    cheater(
        w,
        s,
        &mut o,
        "wrong-output-share",
        &aggs,
        "wrong output share (named by Berlekamp-Welch decoding; evidence verified by the judges)",
    )?;
    Ok(o)
}

/// Party 3 signs two different messages for one slot of the check of the service's masks: the
/// honest parties catch it, the service takes both signed messages to the judges, and the
/// judges slash its bond to the service.
pub fn equivocate(w: &mut World, s: &Setup) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(
        "equivocate",
        "party 3 signs two conflicting messages in a paid job: caught, named and its bond slashed to the service",
    );
    let aggs = [Agg::Mean("income"), Agg::CountOf("educdec")];
    cheater(
        w,
        s,
        &mut o,
        "equivocate",
        &aggs,
        "equivocation: two different signed openings for one slot of the mask check",
    )?;
    Ok(o)
}

/// The owner revokes the second service; its next query is refused and it pays nothing.
pub fn revoked(w: &mut World, s: &Setup) -> anyhow::Result<Outcome> {
    let mut o = Outcome::new(
        "revoked",
        "the owner revokes a service on chain: its next query is refused by every party and it pays nothing",
    );
    let key = s
        .service_b
        .clone()
        .ok_or_else(|| anyhow!("the second service was not set up"))?;
    let roles = s.roles();
    let before = w.balances(&roles)?;
    let card = s.card.display().to_string();
    let r = w.json(
        "owner",
        &["owner", "revoke", "randhie", &key, "--fee-rate", FEE_RATE],
    )?;
    let txid = str_of(&r, "txid", "owner revoke")?;
    w.mined()?;
    let rfee = w.fee(&txid)?;
    o.step(
        w.tx_height(&txid)?,
        format!("owner revokes service-b: REVOKE record (fee {rfee} sat)"),
        Some(&txid),
        Some(-(rfee as i64)),
    );
    let access = wait_access(w, "service-b", &card, false)?;
    let revoked_all = access["parties"].as_array().is_some_and(|a| {
        a.iter()
            .all(|p| p["reason"].as_str().is_some_and(|r| r.contains("revoked")))
    });
    o.check("every party's access answer says revoked", revoked_all);
    o.step(
        w.height()?,
        "every party read the REVOKE from the chain and refuses service-b: revoked",
        None,
        None,
    );
    let aggs = [Agg::Mean("meddol")];
    o.query = clear::query_text(&aggs);
    let fee = format!("{FEE_SAT}sat");
    let q = w.run(
        "service-b",
        &[
            "service",
            "query",
            &card,
            &o.query,
            "--fee",
            &fee,
            "--party-timeout",
            "30",
            "--fee-rate",
            FEE_RATE,
        ],
        Duration::from_secs(120),
    )?;
    let err = q.error_line();
    o.check("service-b's query is refused", !q.ok);
    o.check(
        format!("the refusal says why: {err}"),
        err.contains("revoked"),
    );
    // "parties 1, 2, 3, 4: ... was revoked ...; party 5: ...": the parties named before each
    // reason that says so.
    let parties: usize = err
        .split("; ")
        .filter(|part| part.contains("was revoked"))
        .filter_map(|part| {
            let at = part.find("parties ").or_else(|| part.find("party "))?;
            let (who, _) = part[at..].split_once(':')?;
            Some(who.split(',').count())
        })
        .sum();
    o.step(
        w.height()?,
        format!(
            "service-b's query is refused by {parties} parties (revoked): no quote, nothing paid"
        ),
        None,
        Some(0),
    );
    o.result.insert("refused".into(), Value::from(err));
    let after = w.balances(&roles)?;
    let expected = BTreeMap::from([("owner".to_string(), -(rfee as i64))]);
    o.account(&before, &after, &expected);
    Ok(o)
}
