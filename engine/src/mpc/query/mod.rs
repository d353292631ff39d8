//! The query language: lexer, parser, planner with range analysis, filters and groups, the
//! leakage rule, and the service's finishing arithmetic.
//!
//! A query is a comma-separated list of aggregates over the rows of one dataset:
//! `sum(e)`, `count()`, `count(e)`, `mean(e)`, `var(e)`, `cov(e1, e2)`, `dot(e1, e2)` and `hist(col)` over a
//! one-hot (category) column, where `e` is built from columns, decimal constants, `+ - *`,
//! parentheses and unary minus. Column names that are not plain identifiers are written in double
//! quotes (`"color=red"` is the one-hot column of level `red`).
//!
//! ```
//! use btcmpc_engine::mpc::csv::Dataset;
//! use btcmpc_engine::mpc::field::Secp256k1Scalar;
//! use btcmpc_engine::mpc::query::{parse, plan};
//!
//! let data = Dataset::parse("x,y\n1,2\n3,4\n").unwrap();
//! let q = parse("mean(x), cov(x, y)").unwrap();
//! let p = plan::<Secp256k1Scalar>(&q, &data.schema).unwrap();
//! // mean(x) needs sum(x); cov(x, y) needs sum(x * y), sum(x) (shared) and sum(y).
//! let labels: Vec<_> = p.opened.iter().map(|o| o.label.as_str()).collect();
//! assert_eq!(labels, ["sum(x)", "sum(x * y)", "sum(y)"]);
//! assert_eq!(p.degree, 2);
//! let sums = p.eval_clear(&data.values);
//! let out = p.finish(&sums).unwrap();
//! assert_eq!(out[0].decimal, "2");
//! assert_eq!(out[1].decimal, "1");
//! ```
//!
//! An empty cell is NULL with SQL semantics: aggregates skip rows where an input is NULL,
//! `count()` counts rows and `count(e)` the rows where `e`'s columns are present (the
//! [`plan`](mod@plan) module says how the planner turns this into products with validity
//! columns):
//!
//! ```
//! use btcmpc_engine::mpc::csv::Dataset;
//! use btcmpc_engine::mpc::field::Mersenne127;
//! use btcmpc_engine::mpc::query::{parse, plan};
//!
//! let data = Dataset::parse("a,b\n1,10\n,20\n3,\n").unwrap();
//! let q = parse("mean(a), count(), count(a), sum(a + b)").unwrap();
//! let p = plan::<Mersenne127>(&q, &data.schema).unwrap();
//! let out = p.finish(&p.eval_clear(&data.values)).unwrap();
//! let values: Vec<_> = out.iter().map(|v| v.decimal.as_str()).collect();
//! assert_eq!(values, ["2", "3", "2", "11"]); // a + b is present on the first row only
//! ```
//!
//! An aggregate may carry a `where` condition (`<, <=, >, >=, =, !=`, `between A and B`,
//! `in (...)`, `and`, `or`, `not`, parentheses; a category column compared with a level,
//! `plan = 3` or `color in ('red', 'blue')`), with SQL's NULL semantics (a comparison with a NULL
//! is unknown; a row counts only where the condition is true), and the query may end with
//! `group by COL` over a category column (one output per level). The [`filter`] module says
//! how conditions become secure comparisons; [`plan_with_rule`] adds the leakage rule:
//!
//! ```
//! use btcmpc_engine::mpc::csv::Dataset;
//! use btcmpc_engine::mpc::field::Mersenne127;
//! use btcmpc_engine::mpc::query::{parse, plan, plan_with_rule, LeakageRule};
//!
//! let data = Dataset::parse("x:int,c:cat\n1,a\n5,b\n,a\n7,a\n").unwrap();
//! let q = parse("count() where x > 2, mean(x) where x between 1 and 6 group by c").unwrap();
//! let p = plan::<Mersenne127>(&q, &data.schema).unwrap();
//! let out = p.finish(&p.eval_clear(&data.values)).unwrap();
//! let values: Vec<_> = out.iter().map(|v| (v.name.as_str(), v.decimal.as_str())).collect();
//! assert_eq!(values, [
//!     ("count()[c=a] where x > 2", "1"),
//!     ("count()[c=b] where x > 2", "1"),
//!     ("mean(x)[c=a] where x between 1 and 6", "1"),
//!     ("mean(x)[c=b] where x between 1 and 6", "5"),
//! ]);
//! // Under the rule a cell over fewer than min_rows rows is withheld, never opened.
//! let rule = LeakageRule { min_rows: 2, earlier: vec![] };
//! let text = q.to_string();
//! let p = plan_with_rule::<Mersenne127>(&text, &parse(&text).unwrap(), &data.schema, &rule).unwrap();
//! let bits = p.gate_bits_clear(&data.values);
//! let out = p.finish_gated(&p.eval_clear(&data.values), &bits).unwrap();
//! assert!(out.iter().all(|v| v.withheld));
//! assert!(out[0].decimal.starts_with("withheld (fewer than 2 rows"));
//! ```
//!
//! Errors point at the offending token with its byte offset and a caret line:
//!
//! ```
//! let e = btcmpc_engine::mpc::query::parse("sum(x + )").unwrap_err();
//! assert_eq!(e.to_string(), "expected a column, a number or `(`, found `)` at byte 8\n  sum(x + )\n          ^");
//! ```

pub mod ast;
pub mod filter;
pub mod lexer;
pub mod num;
pub mod parser;
pub mod plan;

pub use ast::{Aggregate, BinOp, CmpOp, Cond, Expr, Query};
pub use parser::parse;
pub use plan::{
    plan, plan_with_rule, Finish, Gate, GateTest, LeakageRule, Node, Opened, Output, OutputValue,
    Plan, RowCount,
};

/// Longest query accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;

/// A byte range `[start, end)` of the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// Renders `query` with a caret line under `span` (two-space indent).
pub fn caret(query: &str, span: Span) -> String {
    let start = span.start.min(query.len());
    let end = span.end.clamp(start, query.len());
    let pad = query.get(..start).map_or(start, |s| s.chars().count());
    let width = query
        .get(start..end)
        .map_or(1, |s| s.chars().count())
        .max(1);
    let line: String = query
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("  {line}\n  {}{}", " ".repeat(pad), "^".repeat(width))
}

/// Errors of parsing and planning a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The text is not a query; `offset` is the byte of the offending token.
    #[error("{message} at byte {offset}\n{caret}")]
    Parse {
        /// What was wrong.
        message: String,
        /// Byte offset of the offending token.
        offset: usize,
        /// The query with a caret line under the token.
        caret: String,
    },
    /// The query is longer than [`MAX_QUERY_LEN`].
    #[error("query is {len} bytes long, at most {max} are accepted")]
    TooLong {
        /// Its length.
        len: usize,
        /// [`MAX_QUERY_LEN`].
        max: usize,
    },
    /// A column that the dataset does not have.
    #[error("unknown column `{name}` at byte {offset}\n{caret}")]
    UnknownColumn {
        /// The name used.
        name: String,
        /// Byte offset of the name.
        offset: usize,
        /// The query with a caret line under the name.
        caret: String,
    },
    /// A category column used as a number, or `hist` of a column that is not a category.
    #[error("{message} at byte {offset}\n{caret}")]
    WrongColumnKind {
        /// What was wrong.
        message: String,
        /// Byte offset of the name.
        offset: usize,
        /// The query with a caret line under the name.
        caret: String,
    },
    /// The worst case of a term does not fit the field's signed range.
    #[error("term `{term}` (in `{aggregate}`) needs {bits} bits in the worst case over {rows} rows; the {field} field allows at most {max}")]
    Overflow {
        /// The opened aggregate whose range is too large.
        term: String,
        /// The query aggregate it belongs to.
        aggregate: String,
        /// Bits needed (magnitude bits plus a sign bit).
        bits: u64,
        /// Largest number of bits allowed (`log2(p) - 2`, one less than the field's limit).
        max: u32,
        /// The field.
        field: &'static str,
        /// Rows of the dataset.
        rows: usize,
    },
    /// [`plan::Plan::finish`] was given the wrong number of opened values.
    #[error("{got} opened values given, the plan opens {expected}")]
    OpenedCount {
        /// Values given.
        got: usize,
        /// Values the plan opens.
        expected: usize,
    },
    /// A compared expression whose worst case has more bits than a secure comparison takes.
    #[error("compared term `{term}` at byte {offset} needs {bits} bits in the worst case; a comparison in the {field} field takes at most {max}")]
    CompareTooWide {
        /// The difference of the two sides, as compared.
        term: String,
        /// Byte offset of the comparison in the query.
        offset: usize,
        /// Bits needed, sign bit included.
        bits: u64,
        /// [`crate::mpc::compare::max_compare_bits`] of the field.
        max: u32,
        /// The field.
        field: &'static str,
    },
    /// A category level that the column does not have.
    #[error("`{column}` has no level `{level}` (its levels: {levels}) at byte {offset}\n{caret}")]
    UnknownLevel {
        /// The category column.
        column: String,
        /// The level asked for.
        level: String,
        /// The column's levels, comma-separated.
        levels: String,
        /// Byte offset of the literal.
        offset: usize,
        /// The query with a caret line under the literal.
        caret: String,
    },
    /// `group by` over a category with more levels than a table may have.
    #[error("`group by {column}`: the column has {levels} levels, at most {max} are allowed at byte {offset}\n{caret}")]
    TooManyLevels {
        /// The column.
        column: String,
        /// Its number of levels.
        levels: usize,
        /// [`plan::MAX_GROUP_LEVELS`].
        max: usize,
        /// Byte offset of the name.
        offset: usize,
        /// The query with a caret line under the name.
        caret: String,
    },
    /// A query with more outputs than [`plan::MAX_CELLS`].
    #[error("the query has {cells} cells (aggregates times group levels, hist bins), at most {max} are allowed")]
    TooManyCells {
        /// Cells of the query.
        cells: usize,
        /// [`plan::MAX_CELLS`].
        max: usize,
    },
    /// The leakage rule would need more tests than [`plan::MAX_GATE_TESTS`].
    #[error("the leakage rule needs more than {max} tests for this query (too many cells, or too many earlier queries to compare with)")]
    TooManyTests {
        /// [`plan::MAX_GATE_TESTS`].
        max: usize,
    },
    /// An aggregate's row expression expands to more monomials than the leakage rule examines
    /// ([`plan::MAX_MONOMIALS`]).
    #[error("`{expression}` expands to more than {max} products of columns: the leakage rule examines each one's rows; write it as several aggregates")]
    TooManyTerms {
        /// The row expression.
        expression: String,
        /// [`plan::MAX_MONOMIALS`].
        max: usize,
    },
    /// [`plan::Plan::finish_gated`] was given the wrong number of gate bits.
    #[error("{got} gate bits given, the plan has {expected} gates")]
    GateBits {
        /// Bits given.
        got: usize,
        /// Gates of the plan.
        expected: usize,
    },
    /// `mean`, `var` or `cov` over zero rows (an empty dataset, or every row has a NULL input).
    #[error("`{aggregate}` over zero rows (rows with a NULL input are skipped)")]
    NoRows {
        /// The aggregate.
        aggregate: String,
    },
}

impl QueryError {
    pub(crate) fn parse(query: &str, span: Span, message: &str) -> Self {
        QueryError::Parse {
            message: message.to_owned(),
            offset: span.start,
            caret: caret(query, span),
        }
    }

    /// Byte offset of the offending token, for errors that point at one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            QueryError::Parse { offset, .. }
            | QueryError::UnknownColumn { offset, .. }
            | QueryError::WrongColumnKind { offset, .. }
            | QueryError::UnknownLevel { offset, .. }
            | QueryError::CompareTooWide { offset, .. }
            | QueryError::TooManyLevels { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}
