//! `where`, `group by` and the leakage rule against an independent oracle: SQLite evaluates the
//! same queries (its own three-valued logic, NULLs, `between`, `in`) on the same random tables,
//! and the plan evaluated in the clear (`Plan::eval_clear`, gate bits from `GateTest::passes`)
//! must give exactly the same numbers.

use btcmpc_engine::mpc::csv::Dataset;
use btcmpc_engine::mpc::field::{Mersenne127, Secp256k1Scalar};
use btcmpc_engine::mpc::query::num::Rational;
use btcmpc_engine::mpc::query::{parse, plan_with_rule, LeakageRule, OutputValue, QueryError};
use num_bigint::BigInt;
use proptest::prelude::*;
use rusqlite::Connection;

/// One row: a, b (small integers, NULL sometimes), c (a category, NULL sometimes).
type Row = (Option<i64>, Option<i64>, Option<&'static str>);

const LEVELS: [&str; 3] = ["x", "y", "z"];

fn csv_of(rows: &[Row]) -> String {
    let mut s = String::from("a:int,b:int,c:cat\n");
    for (a, b, c) in rows {
        let cell = |v: &Option<i64>| v.map_or(String::new(), |v| v.to_string());
        s.push_str(&format!("{},{},{}\n", cell(a), cell(b), c.unwrap_or("")));
    }
    s
}

fn sqlite_of(rows: &[Row]) -> Connection {
    let db = Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE t (a INTEGER, b INTEGER, c TEXT)")
        .unwrap();
    for (a, b, c) in rows {
        db.execute("INSERT INTO t VALUES (?1, ?2, ?3)", (a, b, c))
            .unwrap();
    }
    db
}

/// `SELECT expr FROM t WHERE cond` as one integer.
fn one(db: &Connection, expr: &str, cond: &str) -> i64 {
    let sql = format!("SELECT {expr} FROM t WHERE {cond}");
    db.query_row(&sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The aggregates of the random queries, with their SQL row expression (None: `count()`).
const AGGS: [(&str, Option<&str>); 8] = [
    ("sum", Some("a")),
    ("sum", Some("a + b")),
    ("mean", Some("b")),
    ("mean", Some("2 * a - b")),
    ("count", None),
    ("count", Some("b")),
    ("dot", Some("a * b")),
    ("sum", Some("a * 0.5 + 1.5")),
];

fn agg_text(i: usize) -> String {
    match AGGS[i] {
        ("count", None) => "count()".into(),
        ("dot", _) => "dot(a, b)".into(),
        (f, Some(e)) => format!("{f}({e})"),
        _ => unreachable!(),
    }
}

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a < b".to_owned()),
        Just("a >= 2".to_owned()),
        Just("b = -1".to_owned()),
        Just("a != b".to_owned()),
        Just("a + b > 0.5".to_owned()),
        Just("2 * a <= b - 1.5".to_owned()),
        Just("a between -2 and 1".to_owned()),
        Just("b not between 0 and 2".to_owned()),
        Just("b in (1, 2, -3)".to_owned()),
        Just("a not in (0, 3)".to_owned()),
        Just("c = 'x'".to_owned()),
        Just("c in ('x', 'z')".to_owned()),
        Just("c != 'y'".to_owned()),
        Just("c not in ('z')".to_owned()),
        Just("a * b >= -2".to_owned()),
        Just("-a > b * b - 4".to_owned()),
        Just("1 < 2".to_owned()),
        Just("a > 100".to_owned()),
    ]
}

fn cond() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| format!("({l}) and ({r})")),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| format!("({l}) or ({r})")),
            inner.prop_map(|c| format!("not ({c})")),
        ]
    })
}

fn row() -> impl Strategy<Value = Row> {
    (
        prop::option::weighted(0.8, -3i64..=3),
        prop::option::weighted(0.8, -3i64..=3),
        prop::option::weighted(0.85, prop::sample::select(&LEVELS[..])),
    )
}

/// The exact value of `agg` over the rows where `cond` holds, from SQLite.
fn sqlite_value(db: &Connection, agg: usize, cond: &str) -> Option<Rational> {
    let big = |v: i64| BigInt::from(v);
    Some(match AGGS[agg] {
        ("count", None) => Rational::integer(big(one(db, "COUNT(*)", cond))),
        ("count", Some(e)) => Rational::integer(big(one(db, &format!("COUNT({e})"), cond))),
        ("mean", Some(e)) => {
            let n = one(db, &format!("COUNT({e})"), cond);
            if n == 0 {
                return None;
            }
            Rational::new(
                big(one(db, &format!("COALESCE(SUM({e}), 0)"), cond)),
                big(n),
            )
        }
        // Exact for these: the only fraction is halves, summed as reals by SQLite, so sum
        // twice the expression as integers.
        ("sum", Some("a * 0.5 + 1.5")) => {
            Rational::new(big(one(db, "COALESCE(SUM(a + 3), 0)", cond)), big(2))
        }
        (_, Some(e)) => Rational::integer(big(one(db, &format!("COALESCE(SUM({e}), 0)"), cond))),
        _ => unreachable!(),
    })
}

/// Effective supports of aggregate `agg` over `cond` (the rows where an opened sum can be
/// non-zero): each must reach `min_rows` for the output to be released.
fn sqlite_supports(db: &Connection, agg: usize, cond: &str) -> Vec<i64> {
    match AGGS[agg] {
        ("count", None) => vec![one(db, "COUNT(*)", cond)],
        ("count", Some(e)) => vec![one(db, &format!("COUNT({e})"), cond)],
        ("mean", Some(e)) => vec![
            one(db, &format!("COUNT({e})"), cond),
            one(db, "COUNT(*)", &format!("({cond}) AND ({e}) != 0")),
        ],
        (_, Some(e)) => vec![one(db, "COUNT(*)", &format!("({cond}) AND ({e}) != 0"))],
        _ => unreachable!(),
    }
}

struct Case {
    query: String,
    /// Per output: (aggregate index, SQL condition of its cell, whether it is filtered/grouped).
    cells: Vec<(usize, String, bool)>,
}

fn case(aggs: &[(usize, Option<String>)], group: bool) -> Case {
    let mut parts = Vec::new();
    let mut cells = Vec::new();
    for (i, c) in aggs {
        let text = agg_text(*i);
        parts.push(match c {
            Some(c) => format!("{text} where {c}"),
            None => text,
        });
    }
    let levels: Vec<Option<&str>> = if group {
        LEVELS.iter().copied().map(Some).collect()
    } else {
        vec![None]
    };
    for (i, c) in aggs {
        for l in &levels {
            let mut sql = c.clone().unwrap_or_else(|| "1".into());
            if let Some(l) = l {
                sql = format!("({sql}) AND c = '{l}'");
            }
            cells.push((*i, sql, c.is_some() || l.is_some()));
        }
    }
    let mut query = parts.join(", ");
    if group {
        query.push_str(" group by c");
    }
    Case { query, cells }
}

fn check(rows: &[Row], case: &Case, min_rows: Option<u64>) -> Result<(), TestCaseError> {
    let d = Dataset::parse(&csv_of(rows)).unwrap();
    let db = sqlite_of(rows);
    let q = parse(&case.query).unwrap();
    let rule = LeakageRule {
        min_rows: min_rows.unwrap_or(1),
        earlier: Vec::new(),
    };
    let p = if min_rows.is_some() {
        plan_with_rule::<Mersenne127>(&case.query, &q, &d.schema, &rule).unwrap()
    } else {
        btcmpc_engine::mpc::query::plan::plan_text::<Mersenne127>(&case.query, &q, &d.schema)
            .unwrap()
    };
    let bits = p.gate_bits_clear(&d.values);
    let out = p.finish_gated(&p.eval_clear(&d.values), &bits);
    let want: Vec<Option<Rational>> = case
        .cells
        .iter()
        .map(|(i, sql, _)| sqlite_value(&db, *i, sql))
        .collect();
    let out: Vec<OutputValue> = match out {
        Ok(o) => o,
        Err(QueryError::NoRows { .. }) => {
            // Without the rule a mean over zero rows is an error: SQLite must agree that some
            // mean has no rows.
            prop_assert!(min_rows.is_none(), "NoRows under the rule: {}", case.query);
            prop_assert!(want.iter().any(Option::is_none), "{}", case.query);
            return Ok(());
        }
        Err(e) => panic!("{}: {e}", case.query),
    };
    prop_assert_eq!(out.len(), case.cells.len());
    for (k, ((v, w), (agg, sql, gated))) in out.iter().zip(&want).zip(&case.cells).enumerate() {
        if v.withheld {
            prop_assert!(min_rows.is_some(), "withheld without a rule");
            continue;
        }
        let w = match w {
            Some(w) => w,
            None => {
                prop_assert!(
                    false,
                    "{}: output {k} has a value over zero rows",
                    case.query
                );
                unreachable!()
            }
        };
        prop_assert_eq!(
            &v.exact,
            &w.to_string(),
            "{}: output {} ({})",
            case.query,
            k,
            v.name
        );
        if let Some(m) = min_rows {
            if *gated || AGGS[*agg].1.is_some() {
                for s in sqlite_supports(&db, *agg, sql) {
                    // Released: every effective support reaches min_rows, or is every row.
                    prop_assert!(
                        s >= m as i64 || s == rows.len() as i64,
                        "{}: output {} released over {} rows (min {})",
                        case.query,
                        v.name,
                        s,
                        m
                    );
                }
            }
        }
    }
    Ok(())
}

fn table() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(row(), 5..25).prop_map(|mut rows| {
        // Every level and both numeric columns appear at least once.
        for (i, l) in LEVELS.iter().enumerate() {
            rows[i].2 = Some(l);
        }
        rows[0].0 = Some(1);
        rows[0].1 = Some(-1);
        rows
    })
}

fn aggs() -> impl Strategy<Value = Vec<(usize, Option<String>)>> {
    prop::collection::vec((0..AGGS.len(), prop::option::weighted(0.8, cond())), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Without the leakage rule every cell equals SQLite's, exactly.
    #[test]
    fn filters_and_groups_match_sqlite(rows in table(), aggs in aggs(), group in prop::bool::weighted(0.3)) {
        check(&rows, &case(&aggs, group), None)?;
    }

    /// Under the rule a released cell equals SQLite's, and a cell whose effective support
    /// (counted by SQLite) is below min_rows is never released.
    #[test]
    fn released_cells_match_sqlite_and_rest_on_enough_rows(
        rows in table(),
        aggs in aggs(),
        group in prop::bool::weighted(0.3),
        min_rows in 1u64..5,
    ) {
        check(&rows, &case(&aggs, group), Some(min_rows))?;
    }
}

#[test]
fn secp256k1_agrees_with_m127() {
    let rows: Vec<Row> = vec![
        (Some(1), Some(-1), Some("x")),
        (Some(-3), None, Some("y")),
        (None, Some(2), Some("z")),
        (Some(3), Some(3), None),
        (Some(0), Some(-2), Some("x")),
    ];
    let d = Dataset::parse(&csv_of(&rows)).unwrap();
    let q = "mean(a + b) where a between -3 and 3 or c = 'z', count() where not b > 0";
    let parsed = parse(q).unwrap();
    let a =
        btcmpc_engine::mpc::query::plan::plan_text::<Mersenne127>(q, &parsed, &d.schema).unwrap();
    let b = btcmpc_engine::mpc::query::plan::plan_text::<Secp256k1Scalar>(q, &parsed, &d.schema)
        .unwrap();
    assert_eq!(
        a.finish(&a.eval_clear(&d.values)).unwrap(),
        b.finish(&b.eval_clear(&d.values)).unwrap()
    );
}
