//! Filters and groups on the real RAND Health Insurance Experiment file (`data/randhie/`):
//! the plan evaluated in the clear against SQLite over the same CSV text (f64 there, so means
//! agree within the 2^-17 rounding of each stored value; counts agree exactly).

use btcmpc_engine::mpc::csv::{Dataset, ReadOptions};
use btcmpc_engine::mpc::field::Mersenne127;
use btcmpc_engine::mpc::query::plan::plan_text;
use btcmpc_engine::mpc::query::{parse, plan_with_rule, LeakageRule, OutputValue};
use rusqlite::Connection;

const COLUMNS: [&str; 6] = ["plan", "xage", "income", "meddol", "lnmeddol", "educdec"];

/// The file with `plan` declared a category (its header cell becomes `plan:cat`).
fn dataset() -> Dataset {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/randhie/randhie.csv");
    let text =
        std::fs::read_to_string(path).expect("data/randhie/randhie.csv ships with the repository");
    let text = text.replacen("plan,", "plan:cat,", 1);
    let opts = ReadOptions {
        columns: Some(COLUMNS.iter().map(|c| (*c).to_owned()).collect()),
    };
    Dataset::from_bytes_with(text.as_bytes(), &opts).unwrap()
}

fn sqlite() -> Connection {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/randhie/randhie.csv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let ix: Vec<usize> = COLUMNS
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap())
        .collect();
    let mut db = Connection::open_in_memory().unwrap();
    db.execute_batch(
        "CREATE TABLE t (plan TEXT, xage REAL, income REAL, meddol REAL, lnmeddol REAL, educdec REAL)",
    )
    .unwrap();
    let tx = db.transaction().unwrap();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let num = |i: usize| -> Option<f64> {
            let c = cells[ix[i]];
            (!c.is_empty()).then(|| c.parse().unwrap())
        };
        tx.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            (cells[ix[0]], num(1), num(2), num(3), num(4), num(5)),
        )
        .unwrap();
    }
    tx.commit().unwrap();
    db
}

fn f64_of(db: &Connection, sql: &str) -> f64 {
    db.query_row(sql, [], |r| r.get::<_, Option<f64>>(0))
        .unwrap()
        .unwrap_or(0.0)
}

fn run(d: &Dataset, q: &str, rule: Option<u64>) -> Vec<OutputValue> {
    let parsed = parse(q).unwrap();
    let p = match rule {
        None => plan_text::<Mersenne127>(q, &parsed, &d.schema).unwrap(),
        Some(min_rows) => plan_with_rule::<Mersenne127>(
            q,
            &parsed,
            &d.schema,
            &LeakageRule {
                min_rows,
                earlier: Vec::new(),
            },
        )
        .unwrap(),
    };
    let bits = p.gate_bits_clear(&d.values);
    p.finish_gated(&p.eval_clear(&d.values), &bits).unwrap()
}

fn num(v: &OutputValue) -> f64 {
    assert!(!v.withheld, "{} withheld", v.name);
    v.decimal.parse().unwrap()
}

#[test]
fn real_queries_match_sqlite() {
    let d = dataset();
    let db = sqlite();
    // Every stored value is within 2^-17 of the text, so a mean is within 2^-17 too.
    let eps = 2f64.powi(-17) + 1e-9;
    for rule in [None, Some(10)] {
        let out = run(
            &d,
            "mean(meddol) where xage > 60, count() where xage > 60",
            rule,
        );
        let want = f64_of(&db, "SELECT AVG(meddol) FROM t WHERE xage > 60");
        assert!(
            (num(&out[0]) - want).abs() <= eps * want.abs().max(1.0),
            "{} vs {want}",
            out[0].decimal
        );
        let n = f64_of(&db, "SELECT COUNT(*) FROM t WHERE xage > 60");
        assert!(n > 10.0);
        assert_eq!(num(&out[1]), n);

        let out = run(&d, "count() where income > 20000", rule);
        assert_eq!(
            num(&out[0]),
            f64_of(&db, "SELECT COUNT(*) FROM t WHERE income > 20000")
        );

        // NULLs on both sides of the filter and in the aggregate.
        let q = "mean(lnmeddol) where educdec >= 12 and xage between 30 and 50";
        let out = run(&d, q, rule);
        let want = f64_of(
            &db,
            "SELECT AVG(lnmeddol) FROM t WHERE educdec >= 12 AND xage BETWEEN 30 AND 50",
        );
        assert!(
            (num(&out[0]) - want).abs() <= eps,
            "{} vs {want}",
            out[0].decimal
        );
    }
    // One table row per plan, in the order of the levels (the plans are numbers: 1, 2, ..., 10).
    let out = run(&d, "mean(meddol) group by plan", Some(10));
    let mut levels: Vec<String> = db
        .prepare("SELECT DISTINCT plan FROM t")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    levels.sort_by_key(|l| l.parse::<u32>().expect("plans are numbers"));
    assert!(levels.len() > 10, "{levels:?}");
    assert_eq!(out.len(), levels.len());
    for (v, l) in out.iter().zip(&levels) {
        assert_eq!(v.group.as_deref(), Some(l.as_str()));
        let want = f64_of(
            &db,
            &format!("SELECT AVG(meddol) FROM t WHERE plan = '{l}'"),
        );
        assert!(
            (num(v) - want).abs() <= eps * want.max(1.0),
            "{}: {} vs {want}",
            v.name,
            v.decimal
        );
    }
}
