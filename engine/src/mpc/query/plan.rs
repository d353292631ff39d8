//! The planner: scales, worst-case ranges, NULL handling, opened aggregates and the service's
//! finishing step.
//!
//! Version 1 never truncates inside MPC. Every stored value is a signed integer at scale 2^16
//! ([`Scale::UNIT`]); the planner gives every expression node a scale 2^(16 d)
//! (`d` = 1 for a column, the sum of the factors' `d` for a product), lifts the smaller side of a
//! sum by a public power of two, and encodes every constant at the scale of the term it joins:
//! an added constant at the other operand's scale, an integer factor exactly (scale 2^0), a
//! non-integer factor rounded to 16 fractional bits (scale 2^16, relative error at most
//! 2^-17 / |c|; the only rounding the planner introduces). All of it is
//! [`crate::mpc::fixed`]'s arithmetic.
//!
//! **Range analysis** bounds every opened aggregate with interval arithmetic
//! ([`crate::mpc::fixed::Interval`]) from the per-column `[min, max]` of the [`Schema`] and the
//! row count: a nullable column's interval is widened to contain 0 (its value where NULL), a
//! validity column is `[0, 1]` at scale 2^0, and a sum over rows is `rows` times the row interval
//! (with 0). An aggregate whose bound needs `F::MAGNITUDE_LIMIT_BITS` (= log2(p) - 1: 254 for
//! secp256k1, 126 for 2^127-1) bits or more, counting the sign bit, is refused with
//! [`QueryError::Overflow`] naming the term; everything accepted decodes to the exact integer,
//! because field arithmetic agrees with integer arithmetic as long as the result stays below p/2
//! in magnitude.
//!
//! **NULLs** (SQL semantics, PROTOCOL.md "Missing values"). A nullable column `x` is stored as 0
//! where NULL, with a validity column `present(x)` (1 present, 0 NULL). The *support* of an
//! expression is the set of nullable columns it reads; a row counts for an aggregate only where
//! every column of the aggregate's support is present. The planner multiplies the row expression
//! by `present(x)` for every `x` of the support on which the expression is not already 0 when
//! `x` is NULL: `sum(x)` and `sum(x * y)` need no product (they vanish on NULL rows),
//! `sum(x + y)` becomes `sum((x + y) * present(x) * present(y))`, and the `sum(y)` of `cov(x, y)`
//! becomes `sum(y * present(x))`. These are ordinary products (Damgård-Nielsen degree reductions
//! in the evaluator), so nothing about NULLs is revealed beyond the opened sums. The row count
//! of a support is opened as `sum(present(x) * ...)`; without nullable columns it is the public
//! row count.
//!
//! Opened to the service ([`Plan::opened`]) are exactly the row sums the outputs need (`S` is
//! the aggregate's support, `n` its row count):
//!
//! | aggregate | opened | finished by the service |
//! | --- | --- | --- |
//! | `sum(e)` | `sum(e)` over `S(e)` | `S / 2^(16d)` |
//! | `count()` | nothing: the row count is public metadata | `rows` |
//! | `count(e)` | `n` of `S(e)` (nothing if `e` has no nullable column) | `n` |
//! | `mean(e)` | `sum(e)`, `n` of `S(e)` | `S / (2^(16d) n)` |
//! | `var(e)` | `sum(e * e)`, `sum(e)`, `n` | `Q / n - (S / n)^2` (population) |
//! | `cov(a, b)` | `sum(a * b)`, `sum(a)`, `sum(b)`, `n`, all over `S(a) + S(b)` | `P / n - (A / n)(B / n)` (population) |
//! | `dot(a, b)` | `sum(a * b)` over `S(a) + S(b)` | `P / 2^(16d)` |
//! | `hist(c)` | `sum("c=level")` for every level (a NULL is in no level) | each count |
//!
//! Identical sums are opened once. The service finishes in exact rational arithmetic
//! ([`Plan::finish`]) and prints decimals ([`OutputValue`]).
//!
//! **Filters and groups.** `AGG(e) where COND` multiplies every row sum of the aggregate by the
//! condition's *true* indicator, a 0/1 row expression at scale 2^0 built from secure
//! comparisons ([`super::filter`] lowers conditions exactly, with SQL's three-valued logic), so
//! `sum(e) where c` opens `sum(e * present(..) * [c])` and its row count `sum(present(..) * [c])`
//! (a product per row: a Damgård-Nielsen reduction). `group by g` (a category column, at most
//! [`MAX_GROUP_LEVELS`] levels) repeats every aggregate once per level with the level's
//! indicator (an equality test on the one-hot column) joined to its condition: one output per
//! (aggregate, level), named `AGG[g=level]` with [`OutputValue::group`] set. Rows where `g` is
//! NULL are in no group (unlike SQL, which makes them a group of their own).
//!
//! **Leakage rule** ([`plan_with_rule`], PROTOCOL.md "Leakage"). An aggregate can reveal a few
//! rows: a count over one row is the row, and so is `dot(salary, retired)` with one retired
//! row. The *effective supports* of an opened sum are sets of rows where its condition (and
//! group level) is true and its nullable inputs are present, one per monomial of its row
//! expression `e` expanded as a sum of products (the rows where every factor of the monomial is
//! non-zero; a constant monomial rests on all of them), and, when `e` has two monomials of
//! columns or more, the rows where `e` differs from its constant part. A constant added to `e`
//! hides nothing then: `sum(x * (1 - flag) + 10000)` is `sum(x) - sum(x * flag)` plus a public
//! constant, and the sets of `x` and `x * flag` differ by the rows where `flag` is 0. Every
//! opened sum whose effective supports are not provably every row is a *cell*; the plan has one
//! [`Gate`] holding all of them, and the committee opens only the gate's bit (the AND of its
//! tests, never a count). Its tests:
//!
//! - `AtLeast(min_rows)` on each distinct cell support. A factor's `!= 0` indicator is a secret
//!   equality test per row, skipped where the planner can prove it: a factor whose range over
//!   present rows excludes 0 (`salary:int:1000..100000`) is never zero, a constant factor is
//!   non-zero, and a count's row expression (`count(e)`, `count() where c`) is already its own
//!   0/1 support. An aggregate over every row with never-zero inputs is not gated at all, and
//!   `count()` without a filter is the public row count.
//! - Partitions are all-or-nothing: the cells of a `group by` table or of a `hist` are under the
//!   one gate with every other cell of the query, so one small cell withholds the whole table
//!   and no released cell can be subtracted from a total to give away a withheld one. The rows
//!   of a partition's union that are in no level (NULL in the group column) get a
//!   `ZeroOrAtLeast(min_rows)`: otherwise the public total minus the released cells would
//!   reveal them.
//! - Differencing: for every pair of distinct supports of different aggregates of the query,
//!   every pair of one of the query's supports and one of an earlier answered query's on the
//!   same grant ([`LeakageRule::earlier`]), and every support against all rows (the public row
//!   count), a `ZeroOrAtLeast(min_rows)` on their symmetric difference: two cells whose rows
//!   differ by 1 to `min_rows - 1` rows would reveal those rows by subtraction. Pairs that
//!   cannot differ by few rows are skipped: cells of different levels of one column (disjoint,
//!   each at least `min_rows`), a level's cell against all rows when the column has another
//!   level (whose cell, at least `min_rows`, lies in the difference), and a partition's union
//!   against a cell of one of its levels when the column has another level. Two sets of one
//!   aggregate are compared like any others: a mean's sum of a 0/1 column and its count differ
//!   by the column's zeros (their difference is the count of a small cell), a cov's `sum(x)`
//!   and `sum(x * flag)` by the rows where `flag` is 0 (one row's `x`), and a set shared with
//!   other aggregates would tie those together. So `mean(x) where c` is withheld when `x` is 0
//!   on 1 to `min_rows - 1` rows of `c`, every time it is asked.
//!
//! The tests repeat comparison subtrees of the opened sums ([`Node`] is `Hash`, so an evaluator
//! can run each distinct comparison once per row): `mean(meddol) where xage > 60` on the RAND
//! data with one earlier query has 2 opened sums, 7 tests and 3 distinct comparisons per row;
//! `mean(meddol) group by plan` (18 levels) 36 sums and 57 tests.
//!
//! [`Plan::finish_gated`] marks every output reading a withheld sum as withheld
//! ([`OutputValue::withheld`]; its text says "withheld (fewer than N rows)"). **What remains
//! possible:** the rule compares pairs of row sets. A difference spread over three sets or
//! more (`A - B - C` where each pair differs by many rows: a total and two filtered parts, in
//! one query or over several) is not caught, nor is an attack that combines many released
//! cells algebraically (solving for a row from overlapping sums), nor any inference from the
//! released values themselves. A refusal is information too: the
//! gate bit tells whether every test passed, so a query built to be refused exactly when one
//! row has some property (its support equal to an earlier one's unless that row matches)
//! reveals that property by being refused or answered; denials leak (Kenthapadi, Mishra and
//! Nissim, "Simulatable Auditing", PODS 2005). Only adding calibrated noise to every released value
//! (differential privacy) bounds what any sequence of queries reveals; the rule here is cell
//! suppression, as statistical agencies practise it, not a privacy guarantee.

use std::collections::{BTreeMap, BTreeSet};

use num_bigint::BigInt;
use num_traits::{One, Zero};

use super::ast::{Aggregate, BinOp, Expr, Query};
use super::filter::{self, CondLowering};
use super::num::Rational;
use super::{caret, QueryError, Span};
use crate::mpc::compare::max_compare_bits;
use crate::mpc::csv::{ColumnKind, Schema};
use crate::mpc::field::PrimeField;
use crate::mpc::fixed::{check_bits, Decimal, FixedError, Interval, Scale};

/// Fractional digits of the decimal text of a result that does not terminate.
pub const DECIMAL_DIGITS: u32 = 18;

/// A lowered row expression, evaluated on shares by [`crate::mpc::eval`]. Equal subtrees are
/// equal values (`Hash` lets an evaluator compute a repeated comparison once).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    /// A field column (index into [`Schema::fields`]).
    Column(usize),
    /// A public constant, already encoded at its scale.
    Const(BigInt),
    /// Sum of two nodes at the same scale.
    Add(Box<Node>, Box<Node>),
    /// Difference of two nodes at the same scale.
    Sub(Box<Node>, Box<Node>),
    /// Negation.
    Neg(Box<Node>),
    /// Multiplication by a public integer (a constant factor or a scale lift).
    Scale(Box<Node>, BigInt),
    /// Product of two secret nodes (needs a degree reduction).
    Mul(Box<Node>, Box<Node>),
    /// `1` where `value` is below zero, else `0`, at scale 2^0: a secure comparison
    /// ([`crate::mpc::eval`] runs it on shares). `value` is a signed integer of at most `bits`
    /// bits, sign bit included, on every row (the planner's range analysis guarantees it).
    LessThanZero {
        /// The compared expression (already the difference of the two sides).
        value: Box<Node>,
        /// Bits of its worst-case magnitude, sign bit included.
        bits: u32,
    },
    /// `1` where `value` is zero, else `0`, at scale 2^0: a secure equality test.
    EqualsZero {
        /// The compared expression (already the difference of the two sides).
        value: Box<Node>,
        /// Bits of its worst-case magnitude, sign bit included.
        bits: u32,
    },
}

impl Node {
    /// Multiplicative degree in the secret values (a column is 1, a constant 0).
    pub fn degree(&self) -> u32 {
        match self {
            Node::Column(_) => 1,
            Node::Const(_) => 0,
            Node::Add(a, b) | Node::Sub(a, b) => a.degree().max(b.degree()),
            Node::Neg(a) | Node::Scale(a, _) => a.degree(),
            Node::Mul(a, b) => a.degree() + b.degree(),
            // A comparison's output is a fresh degree-`t` sharing of a bit.
            Node::LessThanZero { .. } | Node::EqualsZero { .. } => 1,
        }
    }

    /// Evaluates the node on one row of encoded values, exactly.
    pub fn eval_row(&self, row: &dyn Fn(usize) -> i128) -> BigInt {
        match self {
            Node::Column(c) => BigInt::from(row(*c)),
            Node::Const(v) => v.clone(),
            Node::Add(a, b) => a.eval_row(row) + b.eval_row(row),
            Node::Sub(a, b) => a.eval_row(row) - b.eval_row(row),
            Node::Neg(a) => -a.eval_row(row),
            Node::Scale(a, k) => a.eval_row(row) * k,
            Node::Mul(a, b) => a.eval_row(row) * b.eval_row(row),
            Node::LessThanZero { value, .. } => {
                BigInt::from(u8::from(value.eval_row(row) < BigInt::zero()))
            }
            Node::EqualsZero { value, .. } => BigInt::from(u8::from(value.eval_row(row).is_zero())),
        }
    }
}

/// A disclosure rule on some opened sums (the leakage rule of the issue "Filters and groups in
/// queries"): the committee evaluates every [`GateTest`] on shares and opens only one bit, the
/// AND of all of them; the gated sums are withheld (never opened) unless it is 1. Which test
/// failed, and every count, stay secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// What must all hold.
    pub tests: Vec<GateTest>,
    /// Indices into [`Plan::opened`] withheld unless every test holds.
    pub opened: Vec<usize>,
}

/// One secret test of a [`Gate`], on the row sum of a 0/1 row expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateTest {
    /// `sum(rows) >= min_rows`: a cell's support is large enough.
    AtLeast {
        /// Row expression that is `1` on the rows counted and `0` elsewhere (scale 2^0).
        rows: Node,
        /// The least count that passes.
        min_rows: u64,
    },
    /// `sum(rows) == 0 or sum(rows) >= min_rows`: two supports (`rows` is the indicator of
    /// their symmetric difference) are equal or differ by at least `min_rows` rows.
    ZeroOrAtLeast {
        /// Row expression that is `1` on the rows counted and `0` elsewhere (scale 2^0).
        rows: Node,
        /// The least non-zero count that passes.
        min_rows: u64,
    },
}

impl GateTest {
    /// The 0/1 row expression counted.
    pub fn rows(&self) -> &Node {
        match self {
            GateTest::AtLeast { rows, .. } | GateTest::ZeroOrAtLeast { rows, .. } => rows,
        }
    }

    /// Whether the test passes for a support count (the clear oracle).
    pub fn passes(&self, count: u64) -> bool {
        match self {
            GateTest::AtLeast { min_rows, .. } => count >= *min_rows,
            GateTest::ZeroOrAtLeast { min_rows, .. } => count == 0 || count >= *min_rows,
        }
    }
}

/// One row sum opened to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Canonical text, e.g. `sum(x * y)` or `sum(present(x))`.
    pub label: String,
    /// The row expression.
    pub node: Node,
    /// Scale exponent `d`: the opened integer is the real value times 2^(16 d).
    pub scale: u32,
    /// Multiplicative degree of the row expression.
    pub degree: u32,
    /// Bits of the worst-case magnitude of the sum, sign bit included.
    pub bits: u64,
}

/// The number of rows an aggregate runs over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowCount {
    /// Every row: the public row count.
    All,
    /// The rows where every nullable input is present: an opened sum of validity products.
    Opened(usize),
}

/// How the service finishes one output from the opened sums (indices into [`Plan::opened`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// `sum(e)`.
    Sum {
        /// The opened sum.
        sum: usize,
    },
    /// `count()` or `count(e)`.
    Count {
        /// The rows counted.
        rows: RowCount,
    },
    /// `mean(e)`.
    Mean {
        /// `sum(e)`.
        sum: usize,
        /// Rows where `e` is present.
        rows: RowCount,
    },
    /// `var(e)`.
    Var {
        /// `sum(e * e)`.
        sum_sq: usize,
        /// `sum(e)`.
        sum: usize,
        /// Rows where `e` is present.
        rows: RowCount,
    },
    /// `cov(a, b)`.
    Cov {
        /// `sum(a * b)`.
        sum_xy: usize,
        /// `sum(a)` where `b` is present too.
        sum_x: usize,
        /// `sum(b)` where `a` is present too.
        sum_y: usize,
        /// Rows where both are present.
        rows: RowCount,
    },
    /// `dot(a, b)`.
    Dot {
        /// `sum(a * b)`.
        sum: usize,
    },
    /// `hist(c)`: one opened sum per level.
    Hist {
        /// `(level, opened sum)`, in the column's level order.
        levels: Vec<(String, usize)>,
    },
}

impl Finish {
    /// The opened sums it reads.
    pub fn uses(&self) -> Vec<usize> {
        let rows = |r: &RowCount| match r {
            RowCount::All => None,
            RowCount::Opened(i) => Some(*i),
        };
        match self {
            Finish::Sum { sum } | Finish::Dot { sum } => vec![*sum],
            Finish::Count { rows: r } => rows(r).into_iter().collect(),
            Finish::Mean { sum, rows: r } => [Some(*sum), rows(r)].into_iter().flatten().collect(),
            Finish::Var {
                sum_sq,
                sum,
                rows: r,
            } => [Some(*sum_sq), Some(*sum), rows(r)]
                .into_iter()
                .flatten()
                .collect(),
            Finish::Cov {
                sum_xy,
                sum_x,
                sum_y,
                rows: r,
            } => [Some(*sum_xy), Some(*sum_x), Some(*sum_y), rows(r)]
                .into_iter()
                .flatten()
                .collect(),
            Finish::Hist { levels } => levels.iter().map(|(_, i)| *i).collect(),
        }
    }
}

/// One aggregate of the query (one cell of a `group by` table) and how it is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The aggregate's canonical text, with `[column=level]` for a `group by` cell.
    pub name: String,
    /// How to finish it.
    pub finish: Finish,
    /// The `group by` level of this cell.
    pub group: Option<String>,
    /// The canonical text of the aggregate's `where` condition.
    pub filter: Option<String>,
}

/// A finished result value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputValue {
    /// `mean(x)`, `hist(c)[level]` for one level of a histogram, `mean(x)[c=level]` for one
    /// cell of `group by c`, followed by ` where COND` for a filtered aggregate.
    pub name: String,
    /// Exact value, `n` or `n/d`; `withheld` for a withheld cell.
    pub exact: String,
    /// Decimal text (exact when it terminates within [`DECIMAL_DIGITS`] digits);
    /// `withheld (fewer than N rows)` for a withheld cell.
    pub decimal: String,
    /// The `group by` level of this cell (absent for an ungrouped query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Whether the leakage rule withheld the value (absent when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withheld: bool,
}

/// A set of rows some opened sum depends on (its *effective support*), as a 0/1 row expression
/// at scale 2^0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSet {
    /// Canonical text, e.g. `present(a) and where x > 1 and y != 0`.
    pub label: String,
    /// 1 on the rows of the set, 0 elsewhere.
    pub node: Node,
}

/// What the parties compute and the service opens for one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The field's name.
    pub field: &'static str,
    /// Row count of the dataset.
    pub rows: usize,
    /// The sums opened to the service, in order.
    pub opened: Vec<Opened>,
    /// The query's aggregates and how each is finished.
    pub outputs: Vec<Output>,
    /// Multiplicative degree of the query (the grant scope's maximum degree must allow it):
    /// the largest [`deep_degree`] of an opened row expression, so filter products and
    /// products inside compared values count; the gate tests' products do not (a gate opens
    /// one bit, no moment of the data).
    pub degree: u32,
    /// Disclosure gates (none unless planned with a [`LeakageRule`]).
    pub gates: Vec<Gate>,
    /// The leakage rule's `min_rows`, if planned with one.
    pub min_rows: Option<u64>,
    /// The row sets whose aggregates this plan releases (planned with a [`LeakageRule`]); a
    /// later query is compared with them.
    pub supports: Vec<RowSet>,
}

impl Plan {
    /// Whether any opened sum needs a product of secret values (version-1 product caveat).
    pub fn uses_products(&self) -> bool {
        self.degree >= 2
    }

    /// Evaluates every opened sum in the clear on encoded values (`values[field][row]`),
    /// exactly; the oracle of the evaluation on shares.
    pub fn eval_clear(&self, values: &[Vec<i128>]) -> Vec<BigInt> {
        self.opened
            .iter()
            .map(|o| {
                (0..self.rows)
                    .map(|r| o.node.eval_row(&|c| values[c][r]))
                    .sum()
            })
            .collect()
    }

    /// Finishes every output from the decoded opened sums (signed integers) of a plan without
    /// gates; [`Plan::finish_gated`] with no gate bits.
    ///
    /// # Errors
    /// As [`Plan::finish_gated`].
    pub fn finish(&self, opened: &[BigInt]) -> Result<Vec<OutputValue>, QueryError> {
        self.finish_gated(opened, &[])
    }

    /// Evaluates every gate in the clear on encoded values (`values[field][row]`): the bit the
    /// committee opens for each gate (the oracle of the evaluation on shares).
    pub fn gate_bits_clear(&self, values: &[Vec<i128>]) -> Vec<bool> {
        self.gates
            .iter()
            .map(|g| {
                g.tests.iter().all(|t| {
                    let n: BigInt = (0..self.rows)
                        .map(|r| t.rows().eval_row(&|c| values[c][r]))
                        .sum();
                    u64::try_from(n).is_ok_and(|n| t.passes(n))
                })
            })
            .collect()
    }

    /// The indices (into [`Plan::opened`]) of the sums withheld under `gate_bits` (one bit per
    /// gate of [`Plan::gates`], `true` open): every sum a closed gate names.
    pub fn withheld_sums(&self, gate_bits: &[bool]) -> BTreeSet<usize> {
        self.gates
            .iter()
            .zip(gate_bits)
            .filter(|(_, open)| !**open)
            .flat_map(|(g, _)| g.opened.iter().copied())
            .collect()
    }

    /// Finishes every output from the decoded opened sums and the opened gate bits (one per
    /// [`Plan::gates`], in order): an output reading a sum of a closed gate is withheld
    /// ([`OutputValue::withheld`]); the values at withheld positions of `opened` are ignored.
    ///
    /// # Errors
    /// [`QueryError::OpenedCount`] if `opened` does not match [`Plan::opened`];
    /// [`QueryError::GateBits`] if `gate_bits` does not match [`Plan::gates`];
    /// [`QueryError::NoRows`] for `mean`, `var` or `cov` over zero rows (after skipping NULLs)
    /// that is not withheld.
    pub fn finish_gated(
        &self,
        opened: &[BigInt],
        gate_bits: &[bool],
    ) -> Result<Vec<OutputValue>, QueryError> {
        if gate_bits.len() != self.gates.len() {
            return Err(QueryError::GateBits {
                got: gate_bits.len(),
                expected: self.gates.len(),
            });
        }
        let closed = self.withheld_sums(gate_bits);
        // Only a gate's AND is opened, not which test failed: a closed gate with a difference
        // test (against another cell or an earlier answer) may have closed for either reason.
        let near = self
            .gates
            .iter()
            .zip(gate_bits)
            .filter(|(_, open)| !**open)
            .any(|(g, _)| {
                g.tests
                    .iter()
                    .any(|t| matches!(t, GateTest::ZeroOrAtLeast { .. }))
            });
        let min_rows = self.min_rows.unwrap_or_default();
        let why = if near {
            format!(
                "withheld (fewer than {min_rows} rows, or within {min_rows} rows of another \
                 cell or an earlier answer)"
            )
        } else {
            format!("withheld (fewer than {min_rows} rows)")
        };
        if opened.len() != self.opened.len() {
            return Err(QueryError::OpenedCount {
                got: opened.len(),
                expected: self.opened.len(),
            });
        }
        let real = |i: usize| {
            Rational::new(
                opened[i].clone(),
                BigInt::from(Scale::of_degree(self.opened[i].scale).factor()),
            )
        };
        let count = |rows: &RowCount| match rows {
            RowCount::All => Rational::integer(BigInt::from(self.rows)),
            RowCount::Opened(i) => real(*i),
        };
        let mut out = Vec::new();
        for o in &self.outputs {
            let label = |bin: Option<&str>| {
                let mut n = o.name.clone();
                if let Some(b) = bin {
                    n.push_str(&format!("[{b}]"));
                }
                if let Some(f) = &o.filter {
                    n.push_str(&format!(" where {f}"));
                }
                n
            };
            let value = |name: String, r: Rational| OutputValue {
                name,
                exact: r.to_string(),
                decimal: r.to_decimal(DECIMAL_DIGITS),
                group: o.group.clone(),
                withheld: false,
            };
            let withheld = |name: String| OutputValue {
                name,
                exact: "withheld".into(),
                decimal: why.clone(),
                group: o.group.clone(),
                withheld: true,
            };
            if let Finish::Hist { levels } = &o.finish {
                for (level, i) in levels {
                    out.push(if closed.contains(i) {
                        withheld(label(Some(level)))
                    } else {
                        value(label(Some(level)), real(*i))
                    });
                }
                continue;
            }
            if o.finish.uses().iter().any(|i| closed.contains(i)) {
                out.push(withheld(label(None)));
                continue;
            }
            let per_row = |rows: &RowCount| {
                let n = count(rows);
                if n.numer().is_zero() {
                    return Err(QueryError::NoRows {
                        aggregate: label(None),
                    });
                }
                Ok(move |r: Rational| Rational::new(r.numer() * n.denom(), r.denom() * n.numer()))
            };
            match &o.finish {
                Finish::Sum { sum } | Finish::Dot { sum } => {
                    out.push(value(label(None), real(*sum)));
                }
                Finish::Count { rows } => out.push(value(label(None), count(rows))),
                Finish::Mean { sum, rows } => {
                    let per = per_row(rows)?;
                    out.push(value(label(None), per(real(*sum))));
                }
                Finish::Var { sum_sq, sum, rows } => {
                    let per = per_row(rows)?;
                    let m = per(real(*sum));
                    let v = per(real(*sum_sq)).minus(&m.times(&m));
                    out.push(value(label(None), v));
                }
                Finish::Cov {
                    sum_xy,
                    sum_x,
                    sum_y,
                    rows,
                } => {
                    let per = per_row(rows)?;
                    let c = per(real(*sum_xy)).minus(&per(real(*sum_x)).times(&per(real(*sum_y))));
                    out.push(value(label(None), c));
                }
                // Finished above, bin by bin.
                Finish::Hist { .. } => {}
            }
        }
        Ok(out)
    }
}

/// Nullable value columns (indices into [`Schema::fields`]).
type Support = BTreeSet<usize>;

enum Lowered {
    Const(Decimal),
    Secret(Term),
}

/// A lowered secret expression.
struct Term {
    node: Node,
    /// Scale exponent `d`.
    scale: u32,
    /// Worst-case range of one row's value (scaled integers), NULL rows included.
    range: Interval,
    /// Worst-case range over the rows where every column of `support` is present.
    present_range: Interval,
    /// The nullable columns it reads.
    support: Support,
    /// Those of `support` on which it is 0 whenever the column is NULL.
    zero: Support,
}

struct Planner<'a> {
    query: &'a str,
    schema: &'a Schema,
}

fn lift(t: Term, by: u32) -> Term {
    if by == 0 {
        return t;
    }
    let s = Scale::of_degree(by);
    Term {
        node: Node::Scale(Box::new(t.node), BigInt::from(s.factor())),
        range: t.range.shift(s.bits()),
        present_range: t.present_range.shift(s.bits()),
        scale: t.scale + by,
        ..t
    }
}

impl Planner<'_> {
    fn lower(&self, e: &Expr) -> Result<Lowered, QueryError> {
        match e {
            Expr::Number { text, span } => {
                let d = Decimal::parse(text).map_err(|_| {
                    QueryError::parse(self.query, *span, &format!("`{text}` is not a number"))
                })?;
                Ok(Lowered::Const(d))
            }
            Expr::Column { name, span } => self.column(name, *span),
            Expr::Text { text, span } => Err(QueryError::WrongColumnKind {
                message: format!("text '{text}' can only be compared with a category column"),
                offset: span.start,
                caret: caret(self.query, *span),
            }),
            Expr::Neg { expr, .. } => Ok(match self.lower(expr)? {
                Lowered::Const(d) => Lowered::Const(d.neg()),
                Lowered::Secret(t) => Lowered::Secret(Term {
                    node: Node::Neg(Box::new(t.node)),
                    range: t.range.neg(),
                    present_range: t.present_range.neg(),
                    ..t
                }),
            }),
            Expr::Binary { op, lhs, rhs, .. } => {
                let a = self.lower(lhs)?;
                let b = self.lower(rhs)?;
                Ok(match op {
                    BinOp::Mul => mul(a, b),
                    BinOp::Add | BinOp::Sub => add(*op, a, b),
                })
            }
        }
    }

    fn column(&self, name: &str, span: Span) -> Result<Lowered, QueryError> {
        if let Some(c) = self.schema.column(name) {
            if let ColumnKind::Category { .. } = c.kind {
                return Err(QueryError::WrongColumnKind {
                    message: format!("`{name}` is a category column: use hist({name}) or a level column like \"{name}=LEVEL\""),
                    offset: span.start,
                    caret: caret(self.query, span),
                });
            }
        }
        let index = self
            .schema
            .field_index(name)
            .ok_or_else(|| QueryError::UnknownColumn {
                name: name.to_owned(),
                offset: span.start,
                caret: caret(self.query, span),
            })?;
        let f = &self.schema.fields[index];
        let range = Interval::new(BigInt::from(f.min), BigInt::from(f.max));
        let nullable: Support = f.validity.map(|_| index).into_iter().collect();
        Ok(Lowered::Secret(Term {
            node: Node::Column(index),
            scale: 1,
            present_range: range.clone(),
            range: if nullable.is_empty() {
                range
            } else {
                range.with_zero()
            },
            zero: nullable.clone(),
            support: nullable,
        }))
    }

    /// The validity column of nullable value column `c`.
    fn validity(&self, c: usize) -> usize {
        self.schema.fields[c]
            .validity
            .expect("supports hold nullable columns only")
    }

    fn names(&self, support: &Support) -> Vec<&str> {
        support
            .iter()
            .map(|c| self.schema.fields[*c].name.as_str())
            .collect()
    }
}

fn mul(a: Lowered, b: Lowered) -> Lowered {
    match (a, b) {
        (Lowered::Const(x), Lowered::Const(y)) => Lowered::Const(x.mul(&y)),
        (Lowered::Const(c), Lowered::Secret(t)) | (Lowered::Secret(t), Lowered::Const(c)) => {
            let (k, scale) = match c.as_integer() {
                Some(k) => (k, t.scale),
                None => (c.scaled(Scale::UNIT), t.scale + 1),
            };
            let zero = if k.is_zero() {
                t.support.clone()
            } else {
                t.zero
            };
            Lowered::Secret(Term {
                range: t.range.mul(&Interval::point(k.clone())),
                present_range: t.present_range.mul(&Interval::point(k.clone())),
                node: Node::Scale(Box::new(t.node), k),
                scale,
                support: t.support,
                zero,
            })
        }
        (Lowered::Secret(x), Lowered::Secret(y)) => Lowered::Secret(Term {
            range: x.range.mul(&y.range),
            present_range: x.present_range.mul(&y.present_range),
            node: Node::Mul(Box::new(x.node), Box::new(y.node)),
            scale: x.scale + y.scale,
            support: x.support.union(&y.support).copied().collect(),
            zero: x.zero.union(&y.zero).copied().collect(),
        }),
    }
}

fn add(op: BinOp, a: Lowered, b: Lowered) -> Lowered {
    let sub = op == BinOp::Sub;
    let combine = |x: Node, y: Node| {
        if sub {
            Node::Sub(Box::new(x), Box::new(y))
        } else {
            Node::Add(Box::new(x), Box::new(y))
        }
    };
    let with_const = |t: Term, c: Decimal, const_first: bool| {
        let k = c.scaled(Scale::of_degree(t.scale));
        let point = Interval::point(k.clone());
        let join = |r: &Interval| {
            if const_first {
                if sub {
                    point.sub(r)
                } else {
                    point.add(r)
                }
            } else if sub {
                r.sub(&point)
            } else {
                r.add(&point)
            }
        };
        let (range, present_range) = (join(&t.range), join(&t.present_range));
        let node = if const_first {
            combine(Node::Const(k.clone()), t.node)
        } else {
            combine(t.node, Node::Const(k.clone()))
        };
        let zero = if k.is_zero() { t.zero } else { Support::new() };
        Lowered::Secret(Term {
            node,
            scale: t.scale,
            range,
            present_range,
            support: t.support,
            zero,
        })
    };
    match (a, b) {
        (Lowered::Const(x), Lowered::Const(y)) => {
            Lowered::Const(if sub { x.add(&y.neg()) } else { x.add(&y) })
        }
        (Lowered::Secret(t), Lowered::Const(c)) => with_const(t, c, false),
        (Lowered::Const(c), Lowered::Secret(t)) => with_const(t, c, true),
        (Lowered::Secret(x), Lowered::Secret(y)) => {
            let scale = x.scale.max(y.scale);
            let (bx, by) = (scale - x.scale, scale - y.scale);
            let x = lift(x, bx);
            let y = lift(y, by);
            let (range, present_range) = if sub {
                (x.range.sub(&y.range), x.present_range.sub(&y.present_range))
            } else {
                (x.range.add(&y.range), x.present_range.add(&y.present_range))
            };
            Lowered::Secret(Term {
                node: combine(x.node, y.node),
                scale,
                range,
                present_range,
                support: x.support.union(&y.support).copied().collect(),
                zero: x.zero.intersection(&y.zero).copied().collect(),
            })
        }
    }
}

/// The leakage rule a query is planned under (the issue "Filters and groups in queries").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakageRule {
    /// The least number of rows a released cell may rest on (the grant's `min_rows`).
    pub min_rows: u64,
    /// The queries answered earlier on the same grant: a new cell whose rows differ from one of
    /// theirs by 1 to `min_rows - 1` rows is withheld.
    pub earlier: Vec<Query>,
}

/// Most levels a `group by` column may have (one table row per level).
pub const MAX_GROUP_LEVELS: usize = 64;

/// Most outputs (cells: aggregates times group levels, hist bins) a query may have.
pub const MAX_CELLS: usize = 1024;

/// Most tests the leakage rule's gate may hold (each is a row sum and a comparison; the pairs
/// grow with the square of the cells and with the earlier queries).
pub const MAX_GATE_TESTS: usize = 4096;

/// Most monomials the leakage rule examines in one aggregate's row expression (each is a set of
/// rows of its own).
pub const MAX_MONOMIALS: usize = 64;

/// A `group by` or `hist` level of a cell.
#[derive(Debug, Clone)]
struct Level {
    column: String,
    level: String,
    /// 1 on the rows of the level (an equality test on the one-hot column).
    node: Node,
}

impl Level {
    fn text(&self) -> String {
        let c = Expr::Column {
            name: self.column.clone(),
            span: Span { start: 0, end: 0 },
        };
        let l = Expr::Text {
            text: self.level.clone(),
            span: Span { start: 0, end: 0 },
        };
        format!("{c} = {l}")
    }
}

/// The rows an aggregate of the query runs over: its `where` condition and its group level.
#[derive(Debug, Clone, Default)]
struct Cell {
    /// Canonical text of the `where` condition and its lowered *true* indicator.
    filter: Option<(String, Node)>,
    level: Option<Level>,
}

impl Cell {
    fn text(&self) -> Option<String> {
        match (&self.filter, &self.level) {
            (None, None) => None,
            (Some((f, _)), None) => Some(f.clone()),
            (None, Some(l)) => Some(l.text()),
            (Some((f, _)), Some(l)) => Some(format!("({f}) and {}", l.text())),
        }
    }

    /// The 0/1 row indicator, `None` for every row.
    fn rows(&self) -> Option<Node> {
        let f = self.filter.as_ref().map(|(_, t)| t.clone());
        let l = self.level.as_ref().map(|l| l.node.clone());
        match (f, l) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a),
            (Some(a), Some(b)) => Some(filter::mul(a, b)),
        }
    }
}

/// The `!= 0` indicators of one monomial's factors, by label.
type Factors = Vec<(String, Node)>;

/// A row set recorded for the leakage rule.
#[derive(Debug, Clone)]
struct SetRec {
    set: RowSet,
    /// Indices of the query aggregates whose sums rest on it.
    aggregates: BTreeSet<usize>,
    /// `(column, level)` of a group or hist cell.
    level: Option<(String, String)>,
    /// Whether it is a cell (tested `>= min_rows`) rather than the union of a partition.
    cell: bool,
}

struct Builder<'a, F: PrimeField> {
    planner: Planner<'a>,
    conds: CondLowering<'a>,
    opened: Vec<Opened>,
    by_label: BTreeMap<String, usize>,
    /// Whether the leakage rule is on (row sets are recorded).
    rule: bool,
    /// The query aggregate being planned.
    aggregate: usize,
    /// Opened sums whose effective support is not every row.
    gated: BTreeSet<usize>,
    sets: Vec<SetRec>,
    /// `ZeroOrAtLeast` tests on the rows of a partition's union in no cell (NULL levels).
    remainders: BTreeMap<String, Node>,
    _field: std::marker::PhantomData<F>,
}

impl<F: PrimeField> Builder<'_, F> {
    /// Lowers `e` to a term (a constant becomes a public term at scale 2^16).
    fn term(&self, e: &Expr) -> Result<Term, QueryError> {
        Ok(match self.planner.lower(e)? {
            Lowered::Secret(t) => t,
            Lowered::Const(c) => {
                let k = c.scaled(Scale::UNIT);
                Term {
                    range: Interval::point(k.clone()),
                    present_range: Interval::point(k.clone()),
                    node: Node::Const(k),
                    scale: 1,
                    support: Support::new(),
                    zero: Support::new(),
                }
            }
        })
    }

    /// The nullable columns `e` reads.
    fn support(&self, e: &Expr) -> Result<Support, QueryError> {
        Ok(self.term(e)?.support)
    }

    /// Opens `sum(e)` over the rows where every column of `support` (a superset of `e`'s own)
    /// is present and the cell's condition holds.
    fn open(
        &mut self,
        e: &Expr,
        support: &Support,
        aggregate: &str,
        cell: &Cell,
    ) -> Result<usize, QueryError> {
        let i = self.open_rows(e, support, aggregate, cell)?;
        self.record(i, Some(e), support, cell)?;
        Ok(i)
    }

    fn open_rows(
        &mut self,
        e: &Expr,
        support: &Support,
        aggregate: &str,
        cell: &Cell,
    ) -> Result<usize, QueryError> {
        let mut t = self.term(e)?;
        let masks: Vec<usize> = support.difference(&t.zero).copied().collect();
        let mut label = if masks.is_empty() {
            format!("sum({e})")
        } else {
            let text = e.to_string();
            let text = match e {
                Expr::Binary {
                    op: BinOp::Add | BinOp::Sub,
                    ..
                } => format!("({text})"),
                _ => text,
            };
            let present: Vec<String> = self
                .planner
                .names(&masks.iter().copied().collect())
                .iter()
                .map(|n| format!(" * present({n})"))
                .collect();
            format!("sum({text}{})", present.concat())
        };
        for c in masks {
            let v = self.planner.validity(c);
            t.node = Node::Mul(Box::new(t.node), Box::new(Node::Column(v)));
            t.range = t.range.with_zero();
        }
        if let (Some(text), Some(rows)) = (cell.text(), cell.rows()) {
            label = format!("{label} where {text}");
            t.node = filter::mul(t.node, rows);
            t.range = t.range.with_zero();
        }
        self.push(label, t.node, t.scale, &t.range, aggregate)
    }

    /// The number of rows where every column of `support` is present and the cell's condition
    /// holds.
    fn count(
        &mut self,
        support: &Support,
        aggregate: &str,
        cell: &Cell,
    ) -> Result<RowCount, QueryError> {
        if support.is_empty() && cell.rows().is_none() {
            return Ok(RowCount::All);
        }
        let node = self.conds.present(support);
        let present: Vec<String> = self
            .planner
            .names(support)
            .iter()
            .map(|n| format!("present({n})"))
            .collect();
        let mut label = if present.is_empty() {
            "sum(1)".to_owned()
        } else {
            format!("sum({})", present.join(" * "))
        };
        let node = match (cell.text(), cell.rows()) {
            (Some(text), Some(rows)) => {
                label = format!("{label} where {text}");
                filter::mul(node, rows)
            }
            _ => node,
        };
        let range = Interval::new(BigInt::zero(), BigInt::one());
        let i = self.push(label, node, 0, &range, aggregate)?;
        self.record(i, None, support, cell)?;
        Ok(RowCount::Opened(i))
    }

    /// The monomials of `e` (it expanded as a sum of products of columns and constants), each
    /// as the factors whose zero makes it zero, with their `!= 0` indicators; `None` if every
    /// monomial has a zero constant factor. Factors whose range over present rows excludes 0
    /// are left out (never zero), so are non-zero constants: a monomial of constants alone has
    /// no factor (its sum is a constant times the cell's row count).
    ///
    /// Each monomial is its own set for the leakage rule: `sum(x * (1 - flag) + 10000)` never
    /// is 0, but it is `sum(x) - sum(x * flag)` plus a constant, and the rows of `x` and of
    /// `x * flag` differ by those where `flag` is 0.
    ///
    /// # Errors
    /// [`QueryError::TooManyTerms`] past [`MAX_MONOMIALS`]; the errors of lowering a factor.
    fn monomial_factors(&self, e: &Expr) -> Result<Option<Vec<Factors>>, QueryError> {
        fn expand(e: &Expr, max: usize) -> Option<Vec<Vec<&Expr>>> {
            match e {
                Expr::Binary {
                    op: BinOp::Add | BinOp::Sub,
                    lhs,
                    rhs,
                    ..
                } => {
                    let mut l = expand(lhs, max)?;
                    l.extend(expand(rhs, max)?);
                    (l.len() <= max).then_some(l)
                }
                Expr::Binary {
                    op: BinOp::Mul,
                    lhs,
                    rhs,
                    ..
                } => {
                    let (l, r) = (expand(lhs, max)?, expand(rhs, max)?);
                    if l.len().saturating_mul(r.len()) > max {
                        return None;
                    }
                    Some(
                        l.iter()
                            .flat_map(|a| {
                                r.iter().map(move |b| a.iter().chain(b).copied().collect())
                            })
                            .collect(),
                    )
                }
                Expr::Neg { expr, .. } => expand(expr, max),
                other => Some(vec![vec![other]]),
            }
        }
        let monomials = expand(e, MAX_MONOMIALS).ok_or_else(|| QueryError::TooManyTerms {
            expression: e.to_string(),
            max: MAX_MONOMIALS,
        })?;
        let mut out: Vec<Factors> = Vec::new();
        let mut secret = 0;
        'monomials: for m in monomials {
            let mut factors: BTreeMap<String, Node> = BTreeMap::new();
            let mut has_secret = false;
            for f in m {
                match self.planner.lower(f)? {
                    Lowered::Const(d) if d.is_zero() => continue 'monomials,
                    Lowered::Const(_) => {}
                    Lowered::Secret(t) => {
                        has_secret = true;
                        let r = &t.present_range;
                        if r.lo > BigInt::zero() || r.hi < BigInt::zero() {
                            continue;
                        }
                        let label = format!("{f} != 0");
                        if let std::collections::btree_map::Entry::Vacant(v) = factors.entry(label)
                        {
                            v.insert(self.conds.nonzero(f, t.node, &t.range)?);
                        }
                    }
                }
            }
            secret += usize::from(has_secret);
            let factors: Vec<(String, Node)> = factors.into_iter().collect();
            if !out.contains(&factors) {
                out.push(factors);
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        // Monomials of different columns can cancel on most rows (`sum(x - y + 10000)` where
        // `x = y` but on one row): the rows where `e` differs from its constant part are a set
        // too, unless they are provably every row.
        if secret >= 2 {
            if let Lowered::Secret(t) = self.planner.lower(e)? {
                let c = t.node.eval_row(&|_| 0);
                let shift = |r: &Interval| Interval {
                    lo: &r.lo - &c,
                    hi: &r.hi - &c,
                };
                let present = shift(&t.present_range);
                if !(present.lo > BigInt::zero() || present.hi < BigInt::zero()) {
                    let node = filter::sub(t.node.clone(), Node::Const(c.clone()));
                    let label = if c.is_zero() {
                        format!("{e} != 0")
                    } else {
                        format!("{e} != its constant part")
                    };
                    let whole = vec![(label, self.conds.nonzero(e, node, &shift(&t.range))?)];
                    if !out.contains(&whole) {
                        out.push(whole);
                    }
                }
            }
        }
        Ok(Some(out))
    }

    /// Records the effective support of opened sum `i` (the rows where its row expression can
    /// be non-zero): the cell's condition, the presence of `support`, and `e != 0` factor by
    /// factor. Nothing is recorded for every row or for a sum that is 0 whatever the data.
    fn record(
        &mut self,
        i: usize,
        e: Option<&Expr>,
        support: &Support,
        cell: &Cell,
    ) -> Result<(), QueryError> {
        if !self.rule {
            return Ok(());
        }
        let mut base_parts: Vec<(String, Node)> = Vec::new();
        if let Some((text, t)) = &cell.filter {
            base_parts.push((format!("where {text}"), t.clone()));
        }
        for c in support {
            let name = &self.planner.schema.fields[*c].name;
            base_parts.push((
                format!("present({name})"),
                Node::Column(self.planner.validity(*c)),
            ));
        }
        let monomials = match e {
            None => vec![Vec::new()],
            Some(e) => match self.monomial_factors(e)? {
                None => return Ok(()),
                Some(m) => m,
            },
        };
        for factors in monomials {
            let mut parts = base_parts.clone();
            parts.extend(factors);
            self.record_set(i, parts, cell)?;
        }
        Ok(())
    }

    /// Records one set of opened sum `i` (see [`Builder::record`]): `parts` joined, and the
    /// partition's union and remainder when `cell` is a level.
    fn record_set(
        &mut self,
        i: usize,
        mut parts: Vec<(String, Node)>,
        cell: &Cell,
    ) -> Result<(), QueryError> {
        // A condition that is constant true is every row; constant false leaves the 0 part,
        // so the cell is empty and withheld.
        parts.retain(|(_, n)| !matches!(n, Node::Const(k) if k.is_one()));
        let base = join(&parts);
        if let Some(l) = &cell.level {
            // The union of the partition's cells: the same rows without the level. Its rows in
            // no level (NULL in the group column) must number 0 or at least min_rows, or the
            // released cells subtracted from the union's total would give them away.
            let all = match self.planner.schema.column(&l.column).map(|c| &c.kind) {
                Some(ColumnKind::Category { levels }) => levels.clone(),
                _ => unreachable!("levels come from category columns"),
            };
            let present = self
                .conds
                .level_set(&l.column, &all, &all.iter().cloned().collect())?;
            let (base_label, base_node) = base
                .clone()
                .unwrap_or_else(|| ("all rows".to_owned(), Node::Const(BigInt::one())));
            self.remainders
                .entry(format!("{base_label} and {} is null", l.column))
                .or_insert_with(|| filter::mul(base_node.clone(), filter::one_minus(present.t)));
            if let Some((label, node)) = base.clone() {
                self.sets.push(SetRec {
                    set: RowSet { label, node },
                    aggregates: BTreeSet::from([self.aggregate]),
                    level: None,
                    cell: false,
                });
            }
            parts.push((l.text(), l.node.clone()));
        }
        let Some((label, node)) = join(&parts) else {
            return Ok(());
        };
        self.gated.insert(i);
        self.sets.push(SetRec {
            set: RowSet { label, node },
            aggregates: BTreeSet::from([self.aggregate]),
            level: cell
                .level
                .as_ref()
                .map(|l| (l.column.clone(), l.level.clone())),
            cell: true,
        });
        Ok(())
    }

    fn push(
        &mut self,
        label: String,
        node: Node,
        scale: u32,
        range: &Interval,
        aggregate: &str,
    ) -> Result<usize, QueryError> {
        if let Some(i) = self.by_label.get(&label) {
            return Ok(*i);
        }
        let rows = self.planner.schema.rows;
        let total = range.sum_rows(rows.max(1) as u64);
        let bits = check_bits::<F>(&label, &total).map_err(|e| match e {
            FixedError::Overflow { bits, .. } => QueryError::Overflow {
                term: label.clone(),
                aggregate: aggregate.to_owned(),
                bits,
                max: F::MAGNITUDE_LIMIT_BITS - 1,
                field: F::NAME,
                rows,
            },
            other => unreachable!("check_bits only reports overflows, got {other}"),
        })?;
        let degree = node.degree();
        self.opened.push(Opened {
            label: label.clone(),
            node,
            scale,
            degree,
            bits,
        });
        let i = self.opened.len() - 1;
        self.by_label.insert(label, i);
        Ok(i)
    }

    /// Plans one aggregate over one cell.
    fn aggregate(
        &mut self,
        agg: &Aggregate,
        name: &str,
        cell: &Cell,
        query_text: &str,
    ) -> Result<Finish, QueryError> {
        Ok(match agg {
            Aggregate::Sum(e) => {
                let s = self.support(e)?;
                Finish::Sum {
                    sum: self.open(e, &s, name, cell)?,
                }
            }
            Aggregate::Count => Finish::Count {
                rows: self.count(&Support::new(), name, cell)?,
            },
            Aggregate::CountOf(e) => {
                let s = self.support(e)?;
                Finish::Count {
                    rows: self.count(&s, name, cell)?,
                }
            }
            Aggregate::Mean(e) => {
                let s = self.support(e)?;
                let sum = self.open(e, &s, name, cell)?;
                Finish::Mean {
                    sum,
                    rows: self.count(&s, name, cell)?,
                }
            }
            Aggregate::Var(e) => {
                let s = self.support(e)?;
                let sum = self.open(e, &s, name, cell)?;
                let sum_sq = self.open(&Expr::product(e.clone(), e.clone()), &s, name, cell)?;
                Finish::Var {
                    sum_sq,
                    sum,
                    rows: self.count(&s, name, cell)?,
                }
            }
            Aggregate::Cov(x, y) => {
                let s: Support = self.support(x)?.union(&self.support(y)?).copied().collect();
                let sum_xy = self.open(&Expr::product(x.clone(), y.clone()), &s, name, cell)?;
                let sum_x = self.open(x, &s, name, cell)?;
                let sum_y = self.open(y, &s, name, cell)?;
                Finish::Cov {
                    sum_xy,
                    sum_x,
                    sum_y,
                    rows: self.count(&s, name, cell)?,
                }
            }
            Aggregate::Dot(x, y) => {
                let p = Expr::product(x.clone(), y.clone());
                let s = self.support(&p)?;
                Finish::Dot {
                    sum: self.open(&p, &s, name, cell)?,
                }
            }
            Aggregate::Hist { column, span } => {
                let levels = self.category_levels(column, *span, query_text, "hist")?;
                let mut out = Vec::with_capacity(levels.len());
                for level in &levels {
                    let e = Expr::Column {
                        name: format!("{column}={level}"),
                        span: *span,
                    };
                    let i = self.open_rows(&e, &Support::new(), name, cell)?;
                    // A bin is a cell of the partition of the rows by level.
                    let node = self
                        .conds
                        .level_set(column, &levels, &BTreeSet::from([level.clone()]))?
                        .t;
                    let bin = Cell {
                        filter: cell.filter.clone(),
                        level: Some(Level {
                            column: column.clone(),
                            level: level.clone(),
                            node,
                        }),
                    };
                    self.record(i, None, &Support::new(), &bin)?;
                    out.push((level.clone(), i));
                }
                Finish::Hist { levels: out }
            }
        })
    }

    /// The levels of category column `column`.
    fn category_levels(
        &self,
        column: &str,
        span: Span,
        query_text: &str,
        what: &str,
    ) -> Result<Vec<String>, QueryError> {
        match self.planner.schema.column(column).map(|c| &c.kind) {
            Some(ColumnKind::Category { levels }) => Ok(levels.clone()),
            Some(_) => Err(QueryError::WrongColumnKind {
                message: format!("{what} needs a category column, `{column}` is not one"),
                offset: span.start,
                caret: caret(query_text, span),
            }),
            None => Err(QueryError::UnknownColumn {
                name: column.to_owned(),
                offset: span.start,
                caret: caret(query_text, span),
            }),
        }
    }
}

/// The conjunction of labelled 0/1 parts (sorted by label), `None` for no part.
fn join(parts: &[(String, Node)]) -> Option<(String, Node)> {
    if parts.is_empty() {
        return None;
    }
    let mut sorted: Vec<&(String, Node)> = parts.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.dedup_by(|a, b| a.0 == b.0);
    let label = sorted
        .iter()
        .map(|p| p.0.as_str())
        .collect::<Vec<_>>()
        .join(" and ");
    let node = sorted.iter().fold(Node::Const(BigInt::one()), |acc, p| {
        filter::mul(acc, p.1.clone())
    });
    Some((label, node))
}

/// The multiplicative degree of a row expression, counting the inputs of comparisons (their
/// compared values are computed, products included, before the comparison runs).
pub fn deep_degree(node: &Node) -> u32 {
    match node {
        Node::Column(_) | Node::Const(_) => node.degree(),
        Node::Add(a, b) | Node::Sub(a, b) => deep_degree(a).max(deep_degree(b)),
        Node::Neg(a) | Node::Scale(a, _) => deep_degree(a),
        Node::Mul(a, b) => {
            let inner = deep_degree(a).max(deep_degree(b));
            inner.max(a.degree() + b.degree())
        }
        Node::LessThanZero { value, .. } | Node::EqualsZero { value, .. } => {
            deep_degree(value).max(1)
        }
    }
}

/// Plans `query` over a dataset with `schema` in the field `F`, without the leakage rule (no
/// gates: every cell is opened). The clear oracle and the version-1 queries use it; a party
/// answering a service plans with [`plan_with_rule`].
///
/// `query_text` is only used to point at tokens in errors; pass the text the query was parsed
/// from (or its canonical text).
///
/// # Errors
/// [`QueryError::UnknownColumn`], [`QueryError::WrongColumnKind`] (a category used as a number,
/// `hist` or `group by` of a non-category), [`QueryError::UnknownLevel`],
/// [`QueryError::TooManyLevels`], [`QueryError::Overflow`] naming the term whose worst case does
/// not fit the field, [`QueryError::CompareTooWide`] naming a compared difference too long for a
/// secure comparison.
pub fn plan_text<F: PrimeField>(
    query_text: &str,
    query: &Query,
    schema: &Schema,
) -> Result<Plan, QueryError> {
    build::<F>(query_text, query, schema, None)
}

/// Plans `query` under the leakage rule (see the module documentation): every cell whose
/// effective support is not every row is gated, one gate per query.
///
/// # Errors
/// As [`plan_text`], and the errors of planning an earlier query of `rule`.
pub fn plan_with_rule<F: PrimeField>(
    query_text: &str,
    query: &Query,
    schema: &Schema,
    rule: &LeakageRule,
) -> Result<Plan, QueryError> {
    build::<F>(query_text, query, schema, Some(rule))
}

fn build<F: PrimeField>(
    query_text: &str,
    query: &Query,
    schema: &Schema,
    rule: Option<&LeakageRule>,
) -> Result<Plan, QueryError> {
    let mut b = Builder::<F> {
        planner: Planner {
            query: query_text,
            schema,
        },
        conds: CondLowering {
            query: query_text,
            schema,
            max_bits: max_compare_bits::<F>(),
            field: F::NAME,
        },
        opened: Vec::new(),
        by_label: BTreeMap::new(),
        rule: rule.is_some(),
        aggregate: 0,
        gated: BTreeSet::new(),
        sets: Vec::new(),
        remainders: BTreeMap::new(),
        _field: std::marker::PhantomData,
    };
    // The group levels, each with its 0/1 indicator.
    let groups: Vec<Option<Level>> = match &query.group_by {
        None => vec![None],
        Some((column, span)) => {
            let levels = b.category_levels(column, *span, query_text, "group by")?;
            if levels.len() > MAX_GROUP_LEVELS {
                return Err(QueryError::TooManyLevels {
                    column: column.clone(),
                    levels: levels.len(),
                    max: MAX_GROUP_LEVELS,
                    offset: span.start,
                    caret: caret(query_text, *span),
                });
            }
            let mut out = Vec::with_capacity(levels.len());
            for level in &levels {
                let node = b
                    .conds
                    .level_set(column, &levels, &BTreeSet::from([level.clone()]))?
                    .t;
                out.push(Some(Level {
                    column: column.clone(),
                    level: level.clone(),
                    node,
                }));
            }
            out
        }
    };
    let cells: usize = query
        .aggregates
        .iter()
        .map(|(a, _)| match a {
            Aggregate::Hist { column, .. } => match schema.column(column).map(|c| &c.kind) {
                Some(ColumnKind::Category { levels }) => levels.len(),
                _ => 1,
            },
            _ => 1,
        })
        .sum::<usize>()
        .saturating_mul(groups.len());
    if cells > MAX_CELLS {
        return Err(QueryError::TooManyCells {
            cells,
            max: MAX_CELLS,
        });
    }
    let mut outputs = Vec::new();
    for (ai, (agg, span)) in query.aggregates.iter().enumerate() {
        b.aggregate = ai;
        if let (Aggregate::Hist { .. }, Some(_)) = (agg, &query.group_by) {
            return Err(QueryError::WrongColumnKind {
                message: "hist cannot be combined with group by".into(),
                offset: span.start,
                caret: caret(query_text, *span),
            });
        }
        let filter = match query.filter(ai) {
            Some(c) => Some((c.to_string(), b.conds.cond(c)?.t)),
            None => None,
        };
        for level in &groups {
            let cell = Cell {
                filter: filter.clone(),
                level: level.clone(),
            };
            let mut name = agg.to_string();
            if let Some(l) = level {
                name.push_str(&format!("[{}={}]", l.column, l.level));
            }
            let finish = b.aggregate(agg, &name, &cell, query_text)?;
            outputs.push(Output {
                name,
                finish,
                group: level.as_ref().map(|l| l.level.clone()),
                filter: filter.as_ref().map(|f| f.0.clone()),
            });
        }
    }
    let (gates, supports) = match rule {
        None => (Vec::new(), Vec::new()),
        Some(rule) => gate::<F>(&mut b, rule, schema)?,
    };
    // The gates' products are left out: a gate opens one bit, no moment of the data.
    let degree = b
        .opened
        .iter()
        .map(|o| deep_degree(&o.node))
        .max()
        .unwrap_or(0);
    Ok(Plan {
        field: F::NAME,
        rows: schema.rows,
        opened: b.opened,
        outputs,
        degree,
        gates,
        min_rows: rule.map(|r| r.min_rows),
        supports,
    })
}

/// The query's one gate under `rule`, and the row sets it releases.
fn gate<F: PrimeField>(
    b: &mut Builder<'_, F>,
    rule: &LeakageRule,
    schema: &Schema,
) -> Result<(Vec<Gate>, Vec<RowSet>), QueryError> {
    // Distinct row sets of this query, first occurrence kept.
    let mut sets: Vec<SetRec> = Vec::new();
    for s in &b.sets {
        match sets.iter_mut().find(|t| t.set.label == s.set.label) {
            Some(t) => {
                t.aggregates.extend(s.aggregates.iter().copied());
                t.cell |= s.cell;
            }
            None => sets.push(s.clone()),
        }
    }
    let supports: Vec<RowSet> = sets.iter().map(|s| s.set.clone()).collect();
    if b.gated.is_empty() {
        return Ok((Vec::new(), supports));
    }
    let min_rows = rule.min_rows;
    let mut tests = Vec::new();
    for s in sets.iter().filter(|s| s.cell) {
        tests.push(GateTest::AtLeast {
            rows: s.set.node.clone(),
            min_rows,
        });
    }
    for node in b.remainders.values() {
        tests.push(GateTest::ZeroOrAtLeast {
            rows: node.clone(),
            min_rows,
        });
    }
    // Differencing: pairs of distinct row sets, within the query (across aggregates), with
    // every earlier query's, and with all rows (the public row count).
    let mut others: Vec<RowSet> = vec![RowSet {
        label: "all rows".into(),
        node: Node::Const(BigInt::one()),
    }];
    for q in &rule.earlier {
        let text = q.to_string();
        let canonical = super::parse(&text).unwrap_or_else(|_| q.clone());
        let earlier = plan_with_rule::<F>(
            &text,
            &canonical,
            schema,
            &LeakageRule {
                min_rows,
                earlier: Vec::new(),
            },
        )?;
        others.extend(earlier.supports);
    }
    let mut pairs = BTreeSet::new();
    let mut pair = |u: &RowSet, v: &RowSet, tests: &mut Vec<GateTest>| {
        if u.label == v.label {
            return Ok(());
        }
        let key = if u.label < v.label {
            (u.label.clone(), v.label.clone())
        } else {
            (v.label.clone(), u.label.clone())
        };
        if !pairs.insert(key) {
            return Ok(());
        }
        if tests.len() >= MAX_GATE_TESTS {
            return Err(QueryError::TooManyTests {
                max: MAX_GATE_TESTS,
            });
        }
        let rows = if matches!(&v.node, Node::Const(k) if k.is_one()) {
            filter::one_minus(u.node.clone())
        } else {
            let both = filter::mul(u.node.clone(), v.node.clone());
            filter::sub(
                filter::add(u.node.clone(), v.node.clone()),
                filter::mul(Node::Const(BigInt::from(2)), both),
            )
        };
        tests.push(GateTest::ZeroOrAtLeast { rows, min_rows });
        Ok(())
    };
    let levels = |c: &str| match schema.column(c).map(|c| &c.kind) {
        Some(ColumnKind::Category { levels }) => levels.len(),
        _ => 0,
    };
    for (i, u) in sets.iter().enumerate() {
        for v in &sets[i + 1..] {
            // Cells of different levels of one column are disjoint, and each is tested
            // `>= min_rows`: their difference is their union.
            let disjoint = matches!((&u.level, &v.level), (Some((c1, l1)), Some((c2, l2))) if c1 == c2 && l1 != l2)
                && u.cell
                && v.cell;
            // A partition's union (no cell) and a cell of one of its levels, of one aggregate,
            // when the column has another level: the union holds that level's cells too (at
            // least min_rows if the gate opens).
            let union_of_cell = !u.aggregates.is_disjoint(&v.aggregates)
                && u.cell != v.cell
                && [u, v]
                    .iter()
                    .any(|s| s.cell && matches!(&s.level, Some((c, _)) if levels(c) >= 2));
            // Two sets of one aggregate are compared like any others: a mean's count and its
            // sum of a 0/1 column differ by its zeros (the count of a small cell), and a set
            // shared with another aggregate ties them together (`sum(x) where c` and
            // `dot(x, flag) where c` beside `mean(flag) where c`).
            if !disjoint && !union_of_cell {
                pair(&u.set, &v.set, &mut tests)?;
            }
        }
        // A cell of one level of a column with two levels or more differs from all rows by at
        // least another level's cell of the same gate (at least min_rows if the gate opens).
        let implied = u.cell && matches!(&u.level, Some((c, _)) if levels(c) >= 2);
        for (k, v) in others.iter().enumerate() {
            if k == 0 && implied {
                continue;
            }
            pair(&u.set, v, &mut tests)?;
        }
    }
    let gate = Gate {
        tests,
        opened: b.gated.iter().copied().collect(),
    };
    Ok((vec![gate], supports))
}

/// Plans a parsed query; errors point into the query's canonical text.
///
/// # Errors
/// As [`plan_text`].
pub fn plan<F: PrimeField>(query: &Query, schema: &Schema) -> Result<Plan, QueryError> {
    let text = query.to_string();
    // Spans refer to the original text; re-parse the canonical text so carets line up.
    let canonical = super::parse(&text).unwrap_or_else(|_| query.clone());
    plan_text::<F>(&text, &canonical, schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::csv::Dataset;
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};
    use crate::mpc::query::parse;

    fn data() -> Dataset {
        Dataset::parse("x:int,y:dec,c:cat,b:bool\n1,0.5,red,true\n2,-1.25,blue,false\n-3,2,red,1\n4,0,green,0\n")
            .unwrap()
    }

    fn run(q: &str) -> Vec<OutputValue> {
        let d = data();
        let p = plan_text::<Secp256k1Scalar>(q, &parse(q).unwrap(), &d.schema).unwrap();
        p.finish(&p.eval_clear(&d.values)).unwrap()
    }

    fn decimals(q: &str) -> Vec<String> {
        run(q).into_iter().map(|v| v.decimal).collect()
    }

    #[test]
    fn finishes_every_aggregate_exactly() {
        // x = 1, 2, -3, 4; y = 0.5, -1.25, 2, 0.
        assert_eq!(decimals("sum(x)"), ["4"]);
        assert_eq!(decimals("count()"), ["4"]);
        assert_eq!(decimals("mean(y)"), ["0.3125"]);
        // var(x) = (1+4+9+16)/4 - 1 = 6.5
        assert_eq!(decimals("var(x)"), ["6.5"]);
        // sum(xy) = 0.5 - 2.5 - 6 + 0 = -8; cov = -8/4 - 1 * 0.3125 = -2.3125
        assert_eq!(decimals("cov(x, y)"), ["-2.3125"]);
        assert_eq!(decimals("dot(x, y)"), ["-8"]);
        assert_eq!(decimals("hist(c)"), ["1", "1", "2"],);
        let h = run("hist(c)");
        assert_eq!(h[2].name, "hist(c)[red]");
        assert_eq!(decimals("sum(2 * x + 1)"), ["12"]);
        assert_eq!(decimals("sum(0.5 * x - y * x)"), ["10"]);
        assert_eq!(decimals("sum(x * x * x)"), ["46"]);
        assert_eq!(decimals("sum(-(x - 1) * (x + 1))"), ["-26"]);
        assert_eq!(decimals("sum(3)"), ["12"]);
        assert_eq!(decimals("sum(\"c=red\" * x)"), ["-2"]);
        // 0.1 is encoded at the scale of x: round(0.1 * 2^16) / 2^16 = 0.100006103515625.
        assert_eq!(decimals("mean(x + 0.1)"), ["1.100006103515625"]);
    }

    #[test]
    fn mean_that_does_not_terminate() {
        let d = Dataset::parse("x\n1\n1\n2\n").unwrap();
        let q = parse("mean(x)").unwrap();
        let p = plan::<Mersenne127>(&q, &d.schema).unwrap();
        let v = p.finish(&p.eval_clear(&d.values)).unwrap();
        assert_eq!(v[0].exact, "4/3");
        assert_eq!(v[0].decimal, "1.333333333333333333");
    }

    #[test]
    fn opened_sums_are_shared_and_scaled() {
        let d = data();
        let q = "mean(x), var(x), cov(x, y), sum(x * y)";
        let p = plan_text::<Secp256k1Scalar>(q, &parse(q).unwrap(), &d.schema).unwrap();
        let labels: Vec<_> = p.opened.iter().map(|o| o.label.as_str()).collect();
        assert_eq!(labels, ["sum(x)", "sum(x * x)", "sum(x * y)", "sum(y)"]);
        let scales: Vec<_> = p.opened.iter().map(|o| o.scale).collect();
        assert_eq!(scales, [1, 2, 2, 1]);
        assert_eq!(p.degree, 2);
        assert!(p.uses_products());
        let linear = parse("sum(x + 2 * y), mean(y), hist(c), count()").unwrap();
        let p = plan::<Secp256k1Scalar>(&linear, &d.schema).unwrap();
        assert_eq!(p.degree, 1);
        assert!(!p.uses_products());
        // A decimal factor raises the scale; an integer one does not.
        let p = plan::<Secp256k1Scalar>(&parse("sum(2 * x), sum(0.5 * x)").unwrap(), &d.schema)
            .unwrap();
        assert_eq!(p.opened[0].scale, 1);
        assert_eq!(p.opened[1].scale, 2);
        // x + x * y lifts x to scale 2.
        let p = plan::<Secp256k1Scalar>(&parse("sum(x + x * y)").unwrap(), &d.schema).unwrap();
        assert_eq!(p.opened[0].scale, 2);
        assert_eq!(p.degree, 2);
        let p = plan::<Secp256k1Scalar>(&parse("sum(x * y * b)").unwrap(), &d.schema).unwrap();
        assert_eq!(p.degree, 3);
    }

    #[test]
    fn overflow_names_the_term_and_bits() {
        // Each value < 2^60 at scale 2^16: magnitude 2^76 per value.
        let big = 1u64 << 59;
        let d = Dataset::parse(&format!("a:int\n{big}\n-{big}\n")).unwrap();
        // sum(a): 2^75 * 2 rows -> 77 bits + sign = 78: fine in both fields.
        let q = parse("sum(a)").unwrap();
        assert_eq!(
            plan::<Mersenne127>(&q, &d.schema).unwrap().opened[0].bits,
            78
        );
        // sum(a * a): 2^150 * 2 = 2^151 -> 152 bits + sign = 153: too large for 2^127-1, fine for secp256k1.
        let q = parse("mean(a), var(a)").unwrap();
        let e = plan::<Mersenne127>(&q, &d.schema).unwrap_err();
        match &e {
            QueryError::Overflow {
                term,
                aggregate,
                bits,
                max,
                field,
                rows,
            } => {
                assert_eq!(term, "sum(a * a)");
                assert_eq!(aggregate, "var(a)");
                assert_eq!(*bits, 153);
                assert_eq!(*max, 125);
                assert_eq!(*field, "m127");
                assert_eq!(*rows, 2);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(e.to_string().contains("sum(a * a)"));
        assert!(plan::<Secp256k1Scalar>(&q, &d.schema).is_ok());
        // Cubes need 227 + 1 bits: fine for secp256k1; the fourth power is refused.
        let q = parse("sum(a * a * a)").unwrap();
        assert!(plan::<Secp256k1Scalar>(&q, &d.schema).is_ok());
        let q = parse("sum(a * a * a * a)").unwrap();
        let e = plan::<Secp256k1Scalar>(&q, &d.schema).unwrap_err();
        assert!(
            matches!(
                e,
                QueryError::Overflow {
                    bits: 303,
                    max: 253,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn boundary_of_the_range_check() {
        // One row of value v at scale 2^16: sum(a^k) has magnitude (v 2^16)^k exactly.
        // v = 2^47 -> 2^63 per value; the square is 2^126: 127 bits + sign = 128 >= 126: refused
        // in m127. v = 2^45 -> 2^61, square 2^122: 123 + 1 = 124 < 126: accepted.
        let ok = Dataset::parse(&format!("a:int\n{}\n", 1u64 << 45)).unwrap();
        let q = parse("sum(a * a)").unwrap();
        assert_eq!(
            plan::<Mersenne127>(&q, &ok.schema).unwrap().opened[0].bits,
            124
        );
        // 2^46 -> square 2^124: 125 + 1 = 126: refused (needs 126 bits or more).
        let edge = Dataset::parse(&format!("a:int\n{}\n", 1u64 << 46)).unwrap();
        assert!(matches!(
            plan::<Mersenne127>(&q, &edge.schema),
            Err(QueryError::Overflow { bits: 126, .. })
        ));
    }

    #[test]
    fn column_errors_point_at_the_name() {
        let d = data();
        let q = "sum(x), mean(z + 1)";
        let e = plan_text::<Secp256k1Scalar>(q, &parse(q).unwrap(), &d.schema).unwrap_err();
        assert!(matches!(e, QueryError::UnknownColumn { ref name, offset: 13, .. } if name == "z"));
        assert!(e
            .to_string()
            .ends_with("  sum(x), mean(z + 1)\n               ^"));
        let q = "sum(c)";
        let e = plan_text::<Secp256k1Scalar>(q, &parse(q).unwrap(), &d.schema).unwrap_err();
        assert!(matches!(e, QueryError::WrongColumnKind { offset: 4, .. }));
        let q = "hist(x)";
        let e = plan_text::<Secp256k1Scalar>(q, &parse(q).unwrap(), &d.schema).unwrap_err();
        assert!(matches!(e, QueryError::WrongColumnKind { offset: 5, .. }));
        let q = "hist(nope)";
        let e = plan_text::<Secp256k1Scalar>(q, &parse(q).unwrap(), &d.schema).unwrap_err();
        assert!(matches!(e, QueryError::UnknownColumn { offset: 5, .. }));
    }

    #[test]
    fn finish_checks_its_input() {
        let d = data();
        let p = plan::<Secp256k1Scalar>(&parse("sum(x), mean(y)").unwrap(), &d.schema).unwrap();
        assert_eq!(
            p.finish(&[BigInt::from(1)]),
            Err(QueryError::OpenedCount {
                got: 1,
                expected: 2
            })
        );
    }

    fn run_on(d: &Dataset, q: &str) -> (Plan, Vec<String>) {
        let p = plan_text::<Mersenne127>(q, &parse(q).unwrap(), &d.schema).unwrap();
        let out = p.finish(&p.eval_clear(&d.values)).unwrap();
        (p, out.into_iter().map(|v| v.decimal).collect())
    }

    #[test]
    fn nulls_are_skipped_with_sql_semantics() {
        // a = 1, NULL, 3, 4; b = 10, 20, NULL, 40.
        let d = Dataset::parse("a,b\n1,10\n,20\n3,NA\n4,40\n").unwrap();
        let q = "sum(a), count(), count(a), count(b), count(a + b), mean(a), var(a), sum(a + b), \
                 sum(a * b), dot(a, b), cov(a, b), mean(a + b), sum(a + 1), mean(2), count(2)";
        let (p, got) = run_on(&d, q);
        assert_eq!(
            got,
            [
                "8",
                "4",
                "3",
                "3",
                "2",
                "2.666666666666666667",
                "1.555555555555555556",
                "55",
                "170",
                "170",
                "22.5",
                "27.5",
                "11",
                "2",
                "4"
            ]
        );
        let labels: Vec<_> = p.opened.iter().map(|o| o.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "sum(a)",
                "sum(present(a))",
                "sum(present(b))",
                "sum(present(a) * present(b))",
                "sum(a * a)",
                "sum((a + b) * present(a) * present(b))",
                "sum(a * b)",
                "sum(a * present(b))",
                "sum(b * present(a))",
                "sum((a + 1) * present(a))",
                "sum(2)",
            ]
        );
        // `sum(a + 1)` alone is masked: a + 1 is 1, not 0, where a is NULL.
        let (p, _) = run_on(&d, "sum(a + 1)");
        assert_eq!(p.opened[0].degree, 2);
        // Linear aggregates of one nullable column stay linear (no product, no reduction).
        let (p, _) = run_on(&d, "sum(a), mean(a), count(b)");
        assert_eq!(p.degree, 1);
        // Every row NULL for a pair of inputs: mean refuses, count says 0.
        let d = Dataset::parse("a,b\n1,\n,2\n").unwrap();
        let (_, got) = run_on(&d, "count(a * b), sum(a + b)");
        assert_eq!(got, ["0", "0"]);
        let p = plan::<Mersenne127>(&parse("mean(a * b)").unwrap(), &d.schema).unwrap();
        assert!(matches!(
            p.finish(&p.eval_clear(&d.values)),
            Err(QueryError::NoRows { .. })
        ));
    }

    #[test]
    fn range_analysis_counts_the_zero_of_null_rows() {
        // x in [5, 7] where present: x - 6 spans [-1, 1] on present rows, but a NULL row holds
        // 0, so the unmasked x - 6 reaches -6; the bound must cover it.
        let d = Dataset::parse("x:int\n5\nNA\n7\n").unwrap();
        let (p, got) = run_on(&d, "sum(x - 6), mean(x)");
        assert_eq!(got, ["0", "6"]);
        // |x - 6| <= 6 * 2^16 < 2^19, times 3 rows < 2^21: 21 bits + sign.
        assert_eq!(p.opened[0].bits, 22);
        let full = Dataset::parse("x:int\n5\n6\n7\n").unwrap();
        let (p, _) = run_on(&full, "sum(x - 6)");
        // Without NULLs the interval is [-1, 1] * 2^16 over 3 rows: 18 bits + sign.
        assert_eq!(p.opened[0].bits, 19);
    }

    proptest::proptest! {
        /// Every aggregate on integer data with random gaps against a naive oracle over the
        /// rows where the inputs are present (exact i128 sums, f64 for the finished ratios).
        #[test]
        fn random_gaps_match_a_naive_oracle(
            rows in proptest::collection::vec(
                (proptest::option::weighted(0.7, -1000i64..1000), proptest::option::weighted(0.7, -50i64..50)),
                1..40,
            ),
        ) {
            let mut csv = String::from("a:int,b:int\n");
            for (a, b) in &rows {
                let cell = |v: &Option<i64>| v.map_or(String::new(), |v| v.to_string());
                csv.push_str(&format!("{},{}\n", cell(a), cell(b)));
            }
            let d = match Dataset::parse(&csv) {
                Ok(d) => d,
                // An entirely empty column is refused; that is tested elsewhere.
                Err(crate::mpc::csv::CsvError::Unusable { .. }) => return Ok(()),
                Err(e) => panic!("{e}"),
            };
            let q = "sum(a), count(), count(a), count(b), mean(a), var(b), sum(a + b), \
                     sum(a * b), cov(a, b), dot(a, b - 1), mean(3 * a - b + 2)";
            let p = plan::<Mersenne127>(&parse(q).unwrap(), &d.schema).unwrap();
            let out = p.finish(&p.eval_clear(&d.values));
            let a: Vec<i128> = rows.iter().filter_map(|r| r.0).map(i128::from).collect();
            let b: Vec<i128> = rows.iter().filter_map(|r| r.1).map(i128::from).collect();
            let both: Vec<(i128, i128)> = rows
                .iter()
                .filter_map(|r| Some((i128::from(r.0?), i128::from(r.1?))))
                .collect();
            let n = |v: usize| v as f64;
            let sum = |v: &[i128]| v.iter().sum::<i128>();
            let mean = |v: &[i128]| sum(v) as f64 / n(v.len());
            let var = |v: &[i128]| {
                let m = mean(v);
                v.iter().map(|x| (*x as f64 - m).powi(2)).sum::<f64>() / n(v.len())
            };
            if both.is_empty() {
                // cov and mean over zero rows are refused, never a number.
                let refused = matches!(out, Err(QueryError::NoRows { .. }));
                proptest::prop_assert!(refused, "zero rows not refused");
                return Ok(());
            }
            let out = out.unwrap();
            let got: Vec<f64> = out.iter().map(|v| v.decimal.parse().unwrap()).collect();
            let (xa, xb): (Vec<i128>, Vec<i128>) = both.iter().copied().unzip();
            let ma = mean(&xa);
            let mb = mean(&xb);
            let cov = both.iter().map(|(x, y)| (*x as f64 - ma) * (*y as f64 - mb)).sum::<f64>() / n(both.len());
            let want = [
                sum(&a) as f64,
                n(rows.len()),
                n(a.len()),
                n(b.len()),
                mean(&a),
                var(&b),
                both.iter().map(|(x, y)| x + y).sum::<i128>() as f64,
                both.iter().map(|(x, y)| x * y).sum::<i128>() as f64,
                cov,
                both.iter().map(|(x, y)| x * (y - 1)).sum::<i128>() as f64,
                both.iter().map(|(x, y)| 3 * x - y + 2).sum::<i128>() as f64 / n(both.len()),
            ];
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                proptest::prop_assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{}: {} vs {}", out[i].name, g, w);
            }
        }
    }
}
