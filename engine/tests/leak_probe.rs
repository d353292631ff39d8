//! Attacks on the leakage rule (cell suppression against differencing): sequences of queries
//! that are each answered, whose released numbers are then combined. An attack the rule stops
//! asserts that a cell is withheld. What the rule does not catch by design (README, "What remains
//! possible": algebra on the sums of one row set, differences spread over three row sets or
//! more, and the information in a refusal) is asserted as it is: each such test fails if the
//! rule comes to catch it, and is then turned into a test that it is withheld.
//!
//! Two views of what is released: the outputs (the finished values), and the opened sums the
//! service receives to finish them (PROTOCOL.md: `mean`, `var`, `cov` are finished by the
//! service from opened sums and count), which say more than the outputs.

use std::collections::BTreeMap;

use btcmpc_engine::mpc::csv::Dataset;
use btcmpc_engine::mpc::field::Mersenne127;
use btcmpc_engine::mpc::query::num::Rational;
use btcmpc_engine::mpc::query::{parse, plan_with_rule, LeakageRule, OutputValue};
use num_bigint::BigInt;

const MIN_ROWS: u64 = 10;

/// The condition of most attacks: rows 20..40 (20 rows).
const C: &str = "age >= 40";

/// The row whose `flag` is 0 (the only one), inside `C`.
const ZERO_FLAG_ROW: i64 = 25;

/// The row where `v` is `OUTLIER_V` (1 everywhere else).
const OUTLIER_ROW: i64 = 30;
const OUTLIER_V: i64 = 7;

/// Row `i`'s `age`, `x`, `flag`, `dept` and `grp`, the columns [`data`] and [`data2`] share.
fn common(i: i64) -> (i64, i64, u8, &'static str, &'static str) {
    let flag = u8::from(i != ZERO_FLAG_ROW);
    let dept = if i % 2 == 0 { "ops" } else { "sales" };
    let grp = if i == NULL_GRP_ROW {
        ""
    } else if i % 2 == 0 {
        "a"
    } else {
        "b"
    };
    (20 + i, 100 + i, flag, dept, grp)
}

/// 40 rows: `age` 20..59; `x` = 100 + row (never 0); `flag` 1 except on row 25; `v` 1 except
/// 7 on row 30; `y` = row except NULL on row 22; `dept` ops/sales alternating; `grp` a/b
/// alternating except NULL on row 33.
fn data() -> Dataset {
    let mut csv = String::from(
        "age:int:0..200,x:int:1..1000,flag:bool,v:int:0..100,y:int,dept:cat,grp:cat\n",
    );
    for i in 0..40i64 {
        let (age, x, flag, dept, grp) = common(i);
        let v = if i == OUTLIER_ROW { OUTLIER_V } else { 1 };
        let y = if i == 22 {
            String::new()
        } else {
            i.to_string()
        };
        csv.push_str(&format!("{age},{x},{flag},{v},{y},{dept},{grp}\n"));
    }
    Dataset::parse(&csv).unwrap()
}

/// `x` of a row.
fn x_of(row: i64) -> BigInt {
    BigInt::from(100 + row)
}

/// What one query gives away under the rule: its outputs, and the opened sums the service
/// receives (by label, decoded to their real value; none of a closed gate).
struct Answer {
    outputs: Vec<OutputValue>,
    seen: BTreeMap<String, Rational>,
}

impl Answer {
    /// Whether every output is released.
    fn released(&self) -> bool {
        self.outputs.iter().all(|o| !o.withheld)
    }

    /// Output `i` as an exact rational (it must be released).
    fn value(&self, i: usize) -> Rational {
        let o = &self.outputs[i];
        assert!(!o.withheld, "{} is withheld", o.name);
        rational(&o.exact)
    }

    /// The opened sum labelled `label` (it must have been opened).
    fn sum(&self, label: &str) -> Rational {
        self.seen
            .get(label)
            .unwrap_or_else(|| panic!("{label} not opened: {:?}", self.seen.keys()))
            .clone()
    }
}

fn rational(text: &str) -> Rational {
    match text.split_once('/') {
        Some((n, d)) => Rational::new(n.parse().unwrap(), d.parse().unwrap()),
        None => Rational::integer(text.parse().unwrap()),
    }
}

fn plus(a: &Rational, b: &Rational) -> Rational {
    Rational::new(
        a.numer() * b.denom() + b.numer() * a.denom(),
        a.denom() * b.denom(),
    )
}

fn int(v: i64) -> Rational {
    Rational::integer(BigInt::from(v))
}

/// Plans `q` under the rule with `earlier` answered before, evaluates it in the clear (gate
/// bits included) and returns what is released.
fn ask(d: &Dataset, q: &str, earlier: &[&str]) -> Answer {
    ask_with(d, q, earlier, MIN_ROWS)
}

/// [`ask`] under another `min_rows` (1 releases every non-empty cell).
fn ask_with(d: &Dataset, q: &str, earlier: &[&str], min_rows: u64) -> Answer {
    let rule = LeakageRule {
        min_rows,
        earlier: earlier.iter().map(|e| parse(e).unwrap()).collect(),
    };
    let p = plan_with_rule::<Mersenne127>(q, &parse(q).unwrap(), &d.schema, &rule)
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let bits = p.gate_bits_clear(&d.values);
    let opened = p.eval_clear(&d.values);
    let outputs = p
        .finish_gated(&opened, &bits)
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let closed = p.withheld_sums(&bits);
    let seen = p
        .opened
        .iter()
        .enumerate()
        .filter(|(i, _)| !closed.contains(i))
        .map(|(i, o)| {
            let unit = BigInt::from(1) << (16 * o.scale);
            (o.label.clone(), Rational::new(opened[i].clone(), unit))
        })
        .collect();
    Answer { outputs, seen }
}

/// Asks `queries` in order, each with the released ones before it as earlier queries; returns
/// every answer (a withheld one is not passed on as earlier).
fn session(d: &Dataset, queries: &[&str]) -> Vec<Answer> {
    let mut earlier: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for q in queries {
        let a = ask(d, q, &earlier);
        if a.released() {
            earlier.push(q);
        }
        out.push(a);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Attacks the rule stops.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_small_cells_are_withheld_when_asked_directly() {
    let d = data();
    // The targets of the attacks below, asked directly: withheld.
    for q in [
        format!("count() where {C} and flag = 0"),
        format!("sum(x) where {C} and flag = 0"),
        format!("sum(v) where {C} and v > 1"),
        format!("count() where {C} and y is null"),
    ] {
        let a = ask(&d, &q, &[]);
        assert!(!a.released(), "{q}: {:?}", a.outputs);
    }
    // Their controls, without the small part, are released.
    for q in [
        format!("count() where {C} and flag = 1"),
        format!("sum(x) where {C}"),
    ] {
        assert!(ask(&d, &q, &[]).released(), "{q}");
    }
}

#[test]
fn two_sums_one_row_apart_are_withheld_in_one_query_and_across_queries() {
    let d = data();
    let sum = format!("sum(x) where {C}");
    let dot = format!("dot(x, flag) where {C}");
    assert!(!ask(&d, &format!("{sum}, {dot}"), &[]).released());
    assert!(ask(&d, &sum, &[]).released());
    assert!(!ask(&d, &dot, &[&sum]).released());
    // A mean of x (never 0) is released, and asked again it is answered again, the same.
    let mean = format!("mean(x) where {C}");
    let first = ask(&d, &mean, &[]);
    assert!(first.released());
    let again = ask(&d, &mean, &[&mean]);
    assert!(again.released());
    assert_eq!(again.value(0), first.value(0));
}

#[test]
fn a_group_by_table_and_its_total() {
    let d = data();
    // Rows 10..40: 15 per dept. The sales cell holds the zero flag, so its sum of flag rests on
    // one row fewer than its count: the whole table is withheld.
    assert!(!ask(&d, "mean(flag) where age >= 30 group by dept", &[]).released());
    // Of x (never 0) the table is released, then its counts and its total.
    let grouped = "mean(x) where age >= 30 group by dept";
    assert!(ask(&d, grouped, &[]).released());
    let counts = "count() where age >= 30 group by dept";
    assert!(ask(&d, counts, &[grouped]).released());
    let whole = "mean(x) where age >= 30";
    assert!(ask(&d, whole, &[grouped, counts]).released());
    // One row fewer than the table's rows is a difference.
    let near = "mean(x) where age >= 31";
    assert!(!ask(&d, near, &[grouped]).released());
}

#[test]
fn the_same_aggregate_with_another_filter_is_compared() {
    let d = data();
    // Ages 40 and 41 are rows 20 and 21: the conditions differ by one row.
    let a = "mean(x) where age >= 40";
    let b = "mean(x) where age >= 41";
    assert!(!ask(&d, &format!("{a}, {b}"), &[]).released());
    assert!(ask(&d, a, &[]).released());
    assert!(!ask(&d, b, &[a]).released());
    // The same with an `in` list leaving one row out.
    let c = "count() where age in (40, 42, 44, 46, 48, 50, 52, 54, 56, 58, 59)";
    let e = "count() where age in (40, 42, 44, 46, 48, 50, 52, 54, 56, 58)";
    assert!(ask(&d, c, &[]).released());
    assert!(!ask(&d, e, &[c]).released());
}

#[test]
fn nulls_cannot_be_counted_by_difference() {
    let d = data();
    // y is NULL on one row of C: count(y) and count() differ by it.
    let all = format!("count() where {C}");
    let present = format!("count(y) where {C}");
    assert!(!ask(&d, &format!("{all}, {present}"), &[]).released());
    assert!(ask(&d, &all, &[]).released());
    assert!(!ask(&d, &present, &[&all]).released());
    // Through a mean of y (its sets are all within present(y)), in one query and across.
    let mean = format!("mean(y) where {C}");
    assert!(!ask(&d, &format!("{all}, {mean}"), &[]).released());
    assert!(!ask(&d, &mean, &[&all]).released());
    // var and cov of y rest on present(y) as well.
    assert!(!ask(&d, &format!("var(y) where {C}"), &[&all]).released());
    assert!(!ask(&d, &format!("cov(x, y) where {C}"), &[&all]).released());
}

#[test]
fn a_constant_filter_is_every_row() {
    let d = data();
    // flag is 0 on one row of all: the mean's sum rests on 39 rows, the count on 40 (public).
    let a = ask(&d, "mean(flag) where 1 = 1", &[]);
    assert!(!a.released(), "{:?}", a.outputs);
    assert!(!ask(&d, "mean(flag)", &[]).released());
}

#[test]
fn rows_in_no_level_are_not_revealed_by_a_partition() {
    let d = data();
    // grp is NULL on one row of C: the count minus the hist's bins would be that row.
    assert!(!ask(&d, &format!("hist(grp) where {C}, count() where {C}"), &[]).released());
    let all = format!("count() where {C}");
    assert!(!ask(&d, &format!("hist(grp) where {C}"), &[&all]).released());
    assert!(!ask(&d, &format!("count() where {C} group by grp"), &[&all]).released());
    // A hist on rows one apart from an earlier one, bin by bin.
    let h40 = "hist(dept) where age >= 40";
    let h41 = "hist(dept) where age >= 41";
    assert!(ask(&d, h40, &[]).released());
    assert!(!ask(&d, h41, &[h40]).released());
}

// ---------------------------------------------------------------------------------------------
// Attacks through the two sums of one aggregate (a mean's sum and count, a cov's sums): they
// got through while two sets of one aggregate were never compared.
// ---------------------------------------------------------------------------------------------

/// The count of the rows of `C` where flag is 0, from a mean's own two opened sums: the mean is
/// withheld, nothing is opened.
#[test]
fn a_mean_of_a_01_column_does_not_open_the_count_of_its_zeros() {
    let d = data();
    let a = ask(&d, &format!("mean(flag) where {C}"), &[]);
    assert!(!a.released(), "{:?}", a.outputs);
    assert!(a.seen.is_empty(), "{:?}", a.seen.keys());
    // With a count beside it as well.
    let a = ask(&d, &format!("mean(flag) where {C}, count() where {C}"), &[]);
    assert!(a.outputs.iter().all(|o| o.withheld), "{:?}", a.outputs);
    // Where flag has no 0 (rows 26..40), or many, the mean is answered.
    assert!(ask(&d, "mean(flag) where age >= 46", &[]).released());
    assert!(ask(&d, "mean(flag) where age >= 46 and age < 60", &[]).released());
}

/// One row's x: a mean of the 0/1 column bridging a sum and a dot product one row apart, in one
/// query or split over two (each harmless by its own outputs).
#[test]
fn a_mean_does_not_bridge_a_sum_and_a_dot_product() {
    let d = data();
    let q = format!("sum(x) where {C}, dot(x, flag) where {C}, mean(flag) where {C}");
    assert!(ask(&d, &q, &[]).outputs.iter().all(|o| o.withheld));
    for bridge in ["mean(flag)", "mean(flag * 1)"] {
        let q1 = format!("sum(x) where {C}, {bridge} where {C}");
        let q2 = format!("dot(x, flag) where {C}, mean(flag) where {C}");
        let answers = session(&d, &[&q1, &q2]);
        let sums = answers[0].seen.contains_key(&format!("sum(x) where {C}"));
        let dots = answers[1]
            .seen
            .contains_key(&format!("sum(x * flag) where {C}"));
        assert!(!(sums && dots), "{bridge}: both opened");
    }
    // Without the bridging mean, the dot product after the sum is withheld.
    let answers = session(
        &d,
        &[
            &format!("sum(x) where {C}"),
            &format!("dot(x, flag) where {C}"),
        ],
    );
    assert!(answers[0].released());
    assert!(!answers[1].released());
}

/// One row's x from a cov's own opened sums: withheld.
#[test]
fn a_cov_with_a_01_column_does_not_open_one_rows_value() {
    let d = data();
    let q = format!("cov(x, flag) where {C}");
    // The attack is real: with every cell released, the two sums differ by that row's x.
    let open = ask_with(&d, &q, &[], 1);
    let sum_x = open.sum(&format!("sum(x) where {C}"));
    let sum_xf = open.sum(&format!("sum(x * flag) where {C}"));
    assert_eq!(sum_x.minus(&sum_xf), Rational::integer(x_of(ZERO_FLAG_ROW)));
    let a = ask(&d, &q, &[]);
    assert!(!a.released(), "{:?}", a.outputs);
    assert!(a.seen.is_empty(), "{:?}", a.seen.keys());
    // cov of two never-zero columns is answered.
    assert!(ask(&d, &format!("cov(x, age) where {C}"), &[]).released());
}

// ---------------------------------------------------------------------------------------------
// What the rule does not catch (README, "What remains possible").
// ---------------------------------------------------------------------------------------------

/// The outlier of a mostly-1 column from a var's opened sums: sum(v * v) - sum(v) is
/// v_r (v_r - 1) for the one row where v is not 1. Both sums rest on the same rows, so no pair
/// of row sets differs: the rule compares row sets, and the module documentation lists such
/// algebra on released values as out of its reach. This test fails if that changes.
#[test]
fn the_rule_does_not_catch_algebra_on_one_row_set() {
    let d = data();
    let a = ask(
        &d,
        &format!("var(v) where {C}, mean(v) where {C}, count() where {C}"),
        &[],
    );
    assert!(a.released(), "{:?}", a.outputs);
    // From the outputs: var = Q/n - m^2, so Q = n (var + m^2) and S = n m.
    let (var, mean, n) = (a.value(0), a.value(1), a.value(2));
    let q = n.times(&plus(&var, &mean.times(&mean)));
    let s = n.times(&mean);
    // v_r (v_r - 1) = 7 * 6.
    assert_eq!(q.minus(&s), int(OUTLIER_V * (OUTLIER_V - 1)));
    // The service sees the same two sums opened.
    let q = a.sum(&format!("sum(v * v) where {C}"));
    let s = a.sum(&format!("sum(v) where {C}"));
    assert_eq!(q.minus(&s), int(42));
}

// ---------------------------------------------------------------------------------------------
// Second round: partitions and their exemptions (disjoint levels, a union against a cell of
// one aggregate, a level cell against all rows), NULLs in a group column, refusals.
// ---------------------------------------------------------------------------------------------

/// The row where `tier` is `gold` inside `C` (gold rows: 3, 17, 31).
const GOLD_ROW_IN_C: i64 = 31;

/// The row where `grp` is NULL.
const NULL_GRP_ROW: i64 = 33;

/// 40 rows as [`data`] for `age`, `x`, `flag`, `dept` and `grp`; `y` = row + 1 declared
/// `1..100` (never 0) and NULL on row 22; `tier` silver except gold on rows 3, 17, 31 (two
/// levels, one small); `half` early on rows 0..20, late on 20..40.
fn data2() -> Dataset {
    let mut csv = String::from(
        "age:int:0..200,x:int:1..1000,flag:bool,y:int:1..100,dept:cat,grp:cat,tier:cat,half:cat\n",
    );
    for i in 0..40i64 {
        let (age, x, flag, dept, grp) = common(i);
        let y = if i == 22 {
            String::new()
        } else {
            (i + 1).to_string()
        };
        let tier = if [3, 17, GOLD_ROW_IN_C].contains(&i) {
            "gold"
        } else {
            "silver"
        };
        let half = if i < 20 { "early" } else { "late" };
        csv.push_str(&format!(
            "{age},{x},{flag},{y},{dept},{grp},{tier},{half}\n"
        ));
    }
    Dataset::parse(&csv).unwrap()
}

fn withheld(d: &Dataset, q: &str, earlier: &[&str]) {
    let a = ask(d, q, earlier);
    assert!(!a.released(), "{q} after {earlier:?}: {:?}", a.outputs);
}

fn released(d: &Dataset, q: &str, earlier: &[&str]) -> Answer {
    let a = ask(d, q, earlier);
    assert!(a.released(), "{q} after {earlier:?}: {:?}", a.outputs);
    a
}

/// A column with two levels, one of 3 rows: the level-against-all-rows and union-against-cell
/// exemptions apply to its cells, and the small cell's own `>= min_rows` test withholds the
/// table; the big level alone is 3 rows from all rows.
#[test]
fn a_two_level_column_with_a_small_level() {
    let d = data2();
    for q in [
        "hist(tier)",
        "count() group by tier",
        "mean(x) group by tier",
        "mean(flag) group by tier",
        "hist(tier), count()",
        "hist(tier) where age >= 30",
        "mean(x) where age >= 30 group by tier",
        "count() where tier = 'silver'",
        "count() where tier != 'gold'",
        "count() where not tier = 'gold'",
        "sum(x) where tier in ('silver')",
        // The level's one-hot column as a number.
        "sum(\"tier=gold\")",
        "mean(\"tier=gold\")",
        "dot(x, \"tier=gold\")",
        "cov(x, \"tier=gold\")",
    ] {
        withheld(&d, q, &[]);
    }
    // Against an earlier total: the silver rows of a range are the range but its gold row.
    withheld(
        &d,
        "count() where age >= 40 and tier = 'silver'",
        &["count() where age >= 40"],
    );
    withheld(
        &d,
        "count() where age >= 40, count() where age >= 40 and tier = 'silver'",
        &[],
    );
    // The control: a two-level column with big levels is released.
    released(&d, "hist(dept)", &[]);
    released(&d, "mean(x) group by dept", &[]);
}

/// A level with no row inside the filter: its cell is empty, and the table is withheld (an
/// empty cell is below min_rows), so the other level's cell is not the filter's total given
/// away under a level's name.
#[test]
fn a_level_with_no_rows_in_the_filter() {
    let d = data2();
    let c = "age >= 40";
    for q in [
        format!("count() where {c} group by half"),
        format!("hist(half) where {c}"),
        format!("mean(x) where {c} group by half"),
        format!("hist(half) where {c}, sum(x) where {c}"),
    ] {
        withheld(&d, &q, &[]);
    }
    // With both levels present, released; the late cell (rows 20..40) then equals the earlier
    // answer `where age >= 40` by rows, which is no difference.
    released(&d, "count() where age >= 30 group by half", &[]);
    released(
        &d,
        "count() where age >= 30 group by half",
        &["count() where age >= 40"],
    );
    // One row fewer than the late cell is withheld.
    withheld(
        &d,
        "count() where age >= 41",
        &["count() where age >= 30 group by half"],
    );
}

/// NULLs in the group column: the rows of the union in no level, and the union against an
/// earlier answer, in both orders.
#[test]
fn a_null_in_the_group_column_under_group_by_and_hist() {
    let d = data2();
    for q in [
        "sum(x) group by grp",
        "mean(x) where age >= 30 group by grp",
        "hist(grp)",
        "hist(grp) where age >= 30, sum(x) where age >= 30",
        "count(y) where age >= 30 group by grp",
        "mean(y) group by grp",
        "var(y) where age >= 30 group by grp",
    ] {
        withheld(&d, q, &[]);
    }
    // Without the NULL row the table is released; the whole range after it is one row apart
    // from its union.
    let table = "sum(x) where age >= 30 and grp is not null group by grp";
    released(&d, table, &[]);
    withheld(&d, "sum(x) where age >= 30", &[table]);
    withheld(&d, "count() where age >= 30", &[table]);
    // The other order.
    withheld(&d, table, &["sum(x) where age >= 30"]);
    let hist = "hist(grp) where age >= 30 and grp is not null";
    released(&d, hist, &[]);
    withheld(&d, &format!("{hist}, count() where age >= 30"), &[]);
    withheld(&d, "count() where age >= 30", &[hist]);
}

/// A hist beside a count, a sum or a dot product over the same filter, and a hist of a
/// sub-filter after them.
#[test]
fn hist_beside_count_and_sum_over_the_same_filter() {
    let d = data2();
    let a = "age >= 30";
    // No NULL in dept: hist, count and sum of one filter are released together.
    let q = format!("hist(dept) where {a}, count() where {a}, sum(x) where {a}");
    let ans = released(&d, &q, &[]);
    assert_eq!(plus(&ans.value(0), &ans.value(1)), ans.value(2));
    // The count or dot product one row apart from the hist's union.
    withheld(
        &d,
        &format!("hist(dept) where {a}, count() where {a} and flag = 1"),
        &[],
    );
    withheld(
        &d,
        &format!("hist(dept) where {a}, dot(x, flag) where {a}"),
        &[],
    );
    withheld(
        &d,
        &format!("hist(dept) where {a}, mean(flag) where {a}"),
        &[],
    );
    // A hist of the rows where flag is 1, after the hist or the count of the range.
    let sub = format!("hist(dept) where {a} and flag = 1");
    withheld(&d, &sub, &[&format!("hist(dept) where {a}")]);
    withheld(&d, &sub, &[&format!("count() where {a}")]);
    withheld(&d, &format!("hist(dept) where {a}"), &[&sub]);
    // Two hists of one column one row apart, in one query: the sales bins differ by row 25.
    withheld(&d, &format!("hist(dept) where {a}, {sub}"), &[]);
}

/// mean, var and cov over a nullable column under group by: the cells rest on the present
/// rows, one fewer than the level's rows in ops (row 22); every way of asking the level's rows
/// beside them is withheld.
#[test]
fn mean_var_cov_of_a_nullable_column_under_group_by() {
    let d = data2();
    let a = "age >= 30";
    let mean = format!("mean(y) where {a} group by dept");
    released(&d, &mean, &[]);
    withheld(&d, &format!("count() where {a} group by dept"), &[&mean]);
    withheld(&d, &format!("mean(x) where {a} group by dept"), &[&mean]);
    withheld(&d, &format!("sum(x) where {a}"), &[&mean]);
    withheld(&d, &format!("hist(dept) where {a}"), &[&mean]);
    withheld(&d, &mean, &[&format!("count() where {a} group by dept")]);
    for q in [
        format!("var(y) where {a}, count() where {a} group by dept"),
        format!("cov(x, y) where {a}, mean(x) where {a} group by dept"),
        format!("mean(x) where {a}, mean(y) where {a} group by dept"),
        format!("mean(y) where {a}, hist(dept) where {a}"),
    ] {
        withheld(&d, &q, &[]);
    }
}

/// A withheld query is not recorded as an earlier answer; asking it again, or a near copy,
/// is compared with the released ones all the same.
#[test]
fn a_withheld_query_then_its_repeats_and_near_repeats() {
    let d = data2();
    let answers = session(
        &d,
        &[
            "sum(x) where age >= 40",
            "sum(x) where age >= 41",
            "sum(x) where age >= 41",
            "mean(x) where age >= 41",
            "sum(x) where age in (41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59)",
            "sum(x) where age >= 40 and age not in (40)",
            "sum(x) where not (age < 40 or age = 45)",
            "sum(x) where age >= 40 and not flag = 0",
            "sum(x) where age between 40 and 59",
        ],
    );
    assert!(answers[0].released());
    for a in &answers[1..8] {
        assert!(!a.released(), "{:?}", a.outputs);
    }
    // The same rows as the first answer under another spelling: no difference, released.
    assert!(answers[8].released());
    assert_eq!(answers[8].value(0), answers[0].value(0));
}

/// `not` and `in` over a nullable column (three-valued logic drops its NULL row) against all
/// rows and against earlier answers.
#[test]
fn not_and_in_over_a_nullable_column() {
    let d = data2();
    for q in [
        "count() where y is not null",
        "count() where not y is null",
        "count() where y between 1 and 100",
        "count() where not y in (5)",
        "count() where y not in (5)",
        "sum(x) where y > 0",
        "sum(x) where not y < 0",
    ] {
        withheld(&d, q, &[]);
    }
    let base = "count() where age >= 30";
    withheld(&d, "count() where age >= 30 and not y = 0", &[base]);
    withheld(&d, "count() where age >= 30 and y not in (0)", &[base]);
}

// ---------------------------------------------------------------------------------------------
// Second round: a constant offset (now caught), and the documented limits.
// ---------------------------------------------------------------------------------------------

/// A constant added to a row expression keeps it away from 0 on every row, so as one factor
/// its support was every row (not gated at all) and the sum was one row's value plus a public
/// constant. Each monomial is now a set of its own (`x` and `x * flag` differ by one row), and
/// so are the rows where a sum of monomials differs from its constant part.
#[test]
fn a_constant_offset_does_not_hide_one_row_inside_every_row() {
    let d = data2();
    // The attack is real: with every cell released, the sum is that row's x plus 10000 * 40.
    let open = ask_with(&d, "sum(x * (1 - flag) + 10000)", &[], 1);
    assert_eq!(
        open.value(0).minus(&int(10000 * 40)),
        Rational::integer(x_of(ZERO_FLAG_ROW))
    );
    withheld(&d, "sum(x * (1 - flag) + 10000)", &[]);
    withheld(&d, "sum((x + 10000) * (2 - flag))", &[]);
    // The count of a small cell the same way: 2 - flag is 1 or 2, never 0.
    withheld(&d, "sum(2 - flag) where age >= 40", &[]);
    // The size of the small level of a withheld hist.
    withheld(&d, "hist(tier)", &[]);
    withheld(&d, "sum(\"tier=gold\" + 1)", &[]);
    // Two columns equal but on one row, behind a constant: their monomials rest on every row,
    // the rows where the sum differs from its constant on one.
    let mut csv = String::from("x:int:1..1000,y:int:1..1000\n");
    for i in 0..40 {
        csv.push_str(&format!(
            "{},{}\n",
            100 + i,
            if i == 7 { 500 } else { 100 + i }
        ));
    }
    let twins = Dataset::parse(&csv).unwrap();
    let open = ask_with(&twins, "sum(x - y + 10000)", &[], 1);
    assert_eq!(open.value(0).minus(&int(400_000)), int(107 - 500));
    withheld(&twins, "sum(x - y + 10000)", &[]);
    // A constant offset on a column that varies on every row is answered.
    assert!(ask(&d, "sum(x + 10000), mean(2 * x + 1)", &[]).released());
}

/// A group by the NULL-holding column is withheld (its union's NULL row), but the same
/// partition written as two filters beside the all-rows sum is released in one query: no
/// pair of its row sets is close (each level is 15-20 rows from all rows, the levels are
/// disjoint), and the all-rows sum minus the two levels is the NULL row's x.
#[test]
fn a_partition_written_as_filters_gives_away_the_null_level() {
    let d = data2();
    withheld(&d, "sum(x) group by grp", &[]);
    for q in [
        "sum(x), sum(x) where grp = 'a', sum(x) where grp = 'b'",
        "sum(x), sum(x) where grp = 'a', sum(x) where not grp = 'a'",
    ] {
        let a = ask(&d, q, &[]);
        assert!(a.released(), "{q}: {:?}", a.outputs);
        let rest = a.value(0).minus(&a.value(1)).minus(&a.value(2));
        assert_eq!(rest, Rational::integer(x_of(NULL_GRP_ROW)), "{q}");
    }
}

/// The table refused (NULL row in no level), then its levels one per query, then the range:
/// each new query is compared with the released ones only, and none is close to another.
#[test]
fn a_withheld_group_by_then_its_levels_one_by_one() {
    let d = data2();
    let answers = session(
        &d,
        &[
            "sum(x) where age >= 30 group by grp",
            "sum(x) where age >= 30 and grp = 'a'",
            "sum(x) where age >= 30 and grp = 'b'",
            "sum(x) where age >= 30",
        ],
    );
    assert!(!answers[0].released());
    assert!(answers[1..].iter().all(Answer::released));
    let rest = answers[3]
        .value(0)
        .minus(&answers[1].value(0))
        .minus(&answers[2].value(0));
    assert_eq!(rest, Rational::integer(x_of(NULL_GRP_ROW)));
}

/// A range split around one row by `<`, `>` or a `not in` list: the halves and the whole are
/// each far from one another, and the whole minus the halves is the row.
#[test]
fn a_range_split_around_one_row() {
    let d = data2();
    let a = ask(
        &d,
        "sum(x) where age >= 30, sum(x) where age >= 30 and age < 45, sum(x) where age > 45",
        &[],
    );
    assert!(a.released(), "{:?}", a.outputs);
    let row = a.value(0).minus(&a.value(1)).minus(&a.value(2));
    assert_eq!(row, Rational::integer(x_of(ZERO_FLAG_ROW)));
    // With `not in`: the range but the row, and the two halves.
    let answers = session(
        &d,
        &[
            "sum(x) where age >= 30 and age not in (45)",
            "sum(x) where age between 30 and 45",
            "sum(x) where age between 46 and 59",
        ],
    );
    assert!(answers.iter().all(Answer::released));
    let row = plus(&answers[1].value(0), &answers[2].value(0)).minus(&answers[0].value(0));
    assert_eq!(row, Rational::integer(x_of(ZERO_FLAG_ROW)));
}

/// A refusal is one bit: a query equal by rows to an earlier answer unless one row has a
/// property is refused exactly when that row has it (module documentation: denials leak).
#[test]
fn a_refusal_tells_each_rows_flag() {
    let d = data2();
    let base = "count() where age >= 40";
    released(&d, base, &[]);
    for age in 40..60i64 {
        let q = format!("count() where age >= 40 and not (age = {age} and flag = 0)");
        let flag = u8::from(age - 20 != ZERO_FLAG_ROW);
        assert_eq!(ask(&d, &q, &[base]).released(), flag == 1, "age {age}");
    }
}

/// An expression that expands to more monomials than the rule examines is refused, naming it.
#[test]
fn an_expression_of_too_many_monomials_is_refused() {
    let d = data();
    let eight = "(x + age + v + flag + x + age + v + flag)";
    let q = format!("sum({eight} * {eight} * (x + v))");
    let rule = LeakageRule {
        min_rows: MIN_ROWS,
        earlier: Vec::new(),
    };
    let e = plan_with_rule::<Mersenne127>(&q, &parse(&q).unwrap(), &d.schema, &rule)
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than 64 products"), "{e}");
    // Within the bound it plans.
    let q = format!("sum({eight} * {eight})");
    assert!(plan_with_rule::<Mersenne127>(&q, &parse(&q).unwrap(), &d.schema, &rule).is_ok());
}
