//! The planner: scales, worst-case ranges, opened aggregates and the service's finishing step.
//!
//! Version 1 never truncates inside MPC. Every stored value is a signed integer at scale 2^16
//! ([`crate::mpc::csv::FRAC_BITS`]); the planner gives every expression node a scale 2^(16 d)
//! (`d` = 1 for a column, the sum of the factors' `d` for a product), lifts the smaller side of a
//! sum by a public power of two, and encodes every constant at the scale of the term it joins:
//! an added constant at the other operand's scale, an integer factor exactly (scale 2^0), a
//! non-integer factor rounded to 16 fractional bits (scale 2^16, relative error at most
//! 2^-17 / |c|; the only rounding the planner introduces).
//!
//! Range analysis bounds the magnitude of every opened aggregate from the per-column
//! `[min, max]` of the [`Schema`] and the row count: `|a + b| <= |a| + |b|`,
//! `|a b| <= |a| |b|`, `|sum over rows| <= rows x |row value|`. An aggregate whose bound needs
//! `F::MAGNITUDE_LIMIT_BITS` (= log2(p) - 1: 254 for secp256k1, 126 for 2^127-1) bits or more,
//! counting the sign bit, is refused with [`QueryError::Overflow`] naming the term; everything
//! accepted decodes to the exact integer, because field arithmetic agrees with integer arithmetic
//! as long as the result stays below p/2 in magnitude.
//!
//! Opened to the service ([`Plan::opened`]) are exactly the row sums the outputs need:
//!
//! | aggregate | opened | finished by the service |
//! | --- | --- | --- |
//! | `sum(e)` | `sum(e)` | `S / 2^(16d)` |
//! | `count()` | nothing: the row count is public metadata | `rows` |
//! | `mean(e)` | `sum(e)` | `S / (2^(16d) rows)` |
//! | `var(e)` | `sum(e * e)`, `sum(e)` | `Q / rows - (S / rows)^2` (population) |
//! | `cov(a, b)` | `sum(a * b)`, `sum(a)`, `sum(b)` | `P / rows - (A / rows)(B / rows)` (population) |
//! | `dot(a, b)` | `sum(a * b)` | `P / 2^(16d)` |
//! | `hist(c)` | `sum("c=level")` for every level | each count |
//!
//! Identical sums are opened once. The service finishes in exact rational arithmetic
//! ([`Plan::finish`]) and prints decimals ([`OutputValue`]).

use std::collections::BTreeMap;

use num_bigint::{BigInt, BigUint};
use num_integer::Integer;
use num_traits::{One, Zero};

use super::ast::{Aggregate, BinOp, Expr, Query};
use super::num::Rational;
use super::{caret, QueryError, Span};
use crate::mpc::csv::{decimal_to_fixed, parse_decimal, ColumnKind, Schema, FRAC_BITS};
use crate::mpc::field::PrimeField;

/// Fractional digits of the decimal text of a result that does not terminate.
pub const DECIMAL_DIGITS: u32 = 18;

/// A lowered row expression, evaluated on shares by [`crate::mpc::eval`].
#[derive(Debug, Clone, PartialEq, Eq)]
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
        }
    }
}

/// One row sum opened to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Canonical text, e.g. `sum(x * y)`.
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

/// How the service finishes one output from the opened sums (indices into [`Plan::opened`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// `sum(e)`.
    Sum {
        /// The opened sum.
        sum: usize,
    },
    /// `count()`: the public row count.
    Count,
    /// `mean(e)`.
    Mean {
        /// `sum(e)`.
        sum: usize,
    },
    /// `var(e)`.
    Var {
        /// `sum(e * e)`.
        sum_sq: usize,
        /// `sum(e)`.
        sum: usize,
    },
    /// `cov(a, b)`.
    Cov {
        /// `sum(a * b)`.
        sum_xy: usize,
        /// `sum(a)`.
        sum_x: usize,
        /// `sum(b)`.
        sum_y: usize,
    },
    /// `dot(a, b)`.
    Dot {
        /// `sum(a * b)`.
        sum: usize,
    },
    /// `hist(c)`: one opened sum per level.
    Hist {
        /// `(level, opened sum)`, levels sorted.
        levels: Vec<(String, usize)>,
    },
}

/// One aggregate of the query and how it is finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The aggregate's canonical text.
    pub name: String,
    /// How to finish it.
    pub finish: Finish,
}

/// A finished result value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputValue {
    /// `mean(x)`, or `hist(c)[level]` for one level of a histogram.
    pub name: String,
    /// Exact value, `n` or `n/d`.
    pub exact: String,
    /// Decimal text (exact when it terminates within [`DECIMAL_DIGITS`] digits).
    pub decimal: String,
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
    /// Multiplicative degree of the query (the grant scope's maximum degree must allow it).
    pub degree: u32,
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

    /// Finishes every output from the decoded opened sums (signed integers).
    ///
    /// # Errors
    /// [`QueryError::OpenedCount`] if `opened` does not match [`Plan::opened`];
    /// [`QueryError::NoRows`] for `mean`, `var` or `cov` of zero rows.
    pub fn finish(&self, opened: &[BigInt]) -> Result<Vec<OutputValue>, QueryError> {
        if opened.len() != self.opened.len() {
            return Err(QueryError::OpenedCount {
                got: opened.len(),
                expected: self.opened.len(),
            });
        }
        let real = |i: usize| {
            Rational::new(
                opened[i].clone(),
                BigInt::one() << (FRAC_BITS * self.opened[i].scale),
            )
        };
        let rows = BigInt::from(self.rows);
        let per_row = |r: Rational| Rational::new(r.numer().clone(), r.denom() * &rows);
        let value = |name: String, r: Rational| OutputValue {
            name,
            exact: r.to_string(),
            decimal: r.to_decimal(DECIMAL_DIGITS),
        };
        let mut out = Vec::new();
        for o in &self.outputs {
            let needs_rows = matches!(
                o.finish,
                Finish::Mean { .. } | Finish::Var { .. } | Finish::Cov { .. }
            );
            if needs_rows && self.rows == 0 {
                return Err(QueryError::NoRows {
                    aggregate: o.name.clone(),
                });
            }
            match &o.finish {
                Finish::Sum { sum } | Finish::Dot { sum } => {
                    out.push(value(o.name.clone(), real(*sum)));
                }
                Finish::Count => out.push(value(o.name.clone(), Rational::integer(rows.clone()))),
                Finish::Mean { sum } => out.push(value(o.name.clone(), per_row(real(*sum)))),
                Finish::Var { sum_sq, sum } => {
                    let m = per_row(real(*sum));
                    let v = per_row(real(*sum_sq)).minus(&m.times(&m));
                    out.push(value(o.name.clone(), v));
                }
                Finish::Cov {
                    sum_xy,
                    sum_x,
                    sum_y,
                } => {
                    let c = per_row(real(*sum_xy))
                        .minus(&per_row(real(*sum_x)).times(&per_row(real(*sum_y))));
                    out.push(value(o.name.clone(), c));
                }
                Finish::Hist { levels } => {
                    for (level, i) in levels {
                        out.push(value(format!("{}[{level}]", o.name), real(*i)));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A constant `m / 10^e`.
#[derive(Debug, Clone)]
struct Dec {
    m: BigInt,
    e: u32,
}

impl Dec {
    fn align(&self, other: &Dec) -> (BigInt, BigInt, u32) {
        let e = self.e.max(other.e);
        let a = &self.m * BigInt::from(10u32).pow(e - self.e);
        let b = &other.m * BigInt::from(10u32).pow(e - other.e);
        (a, b, e)
    }

    fn integer(&self) -> Option<BigInt> {
        let (q, r) = self.m.div_rem(&BigInt::from(10u32).pow(self.e));
        r.is_zero().then_some(q)
    }

    fn encode(&self, scale: u32) -> BigInt {
        decimal_to_fixed(&self.m, self.e, FRAC_BITS * scale)
    }
}

enum Lowered {
    Const(Dec),
    Secret {
        node: Node,
        scale: u32,
        mag: BigUint,
    },
}

struct Planner<'a> {
    query: &'a str,
    schema: &'a Schema,
}

fn lift(node: Node, mag: BigUint, by: u32) -> (Node, BigUint) {
    if by == 0 {
        return (node, mag);
    }
    let k = BigInt::one() << (FRAC_BITS * by);
    (Node::Scale(Box::new(node), k), mag << (FRAC_BITS * by))
}

impl Planner<'_> {
    fn lower(&self, e: &Expr) -> Result<Lowered, QueryError> {
        match e {
            Expr::Number { text, span } => {
                let (m, e) = parse_decimal(text).ok_or_else(|| {
                    QueryError::parse(self.query, *span, &format!("`{text}` is not a number"))
                })?;
                Ok(Lowered::Const(Dec { m, e }))
            }
            Expr::Column { name, span } => self.column(name, *span),
            Expr::Neg { expr, .. } => Ok(match self.lower(expr)? {
                Lowered::Const(d) => Lowered::Const(Dec { m: -d.m, e: d.e }),
                Lowered::Secret { node, scale, mag } => Lowered::Secret {
                    node: Node::Neg(Box::new(node)),
                    scale,
                    mag,
                },
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
        Ok(Lowered::Secret {
            node: Node::Column(index),
            scale: 1,
            mag: BigUint::from(self.schema.fields[index].magnitude()),
        })
    }
}

fn mul(a: Lowered, b: Lowered) -> Lowered {
    match (a, b) {
        (Lowered::Const(x), Lowered::Const(y)) => Lowered::Const(Dec {
            m: x.m * y.m,
            e: x.e + y.e,
        }),
        (Lowered::Const(c), Lowered::Secret { node, scale, mag })
        | (Lowered::Secret { node, scale, mag }, Lowered::Const(c)) => {
            let (k, scale) = match c.integer() {
                Some(k) => (k, scale),
                None => (c.encode(1), scale + 1),
            };
            let mag = mag * k.magnitude();
            Lowered::Secret {
                node: Node::Scale(Box::new(node), k),
                scale,
                mag,
            }
        }
        (
            Lowered::Secret {
                node: n1,
                scale: s1,
                mag: m1,
            },
            Lowered::Secret {
                node: n2,
                scale: s2,
                mag: m2,
            },
        ) => Lowered::Secret {
            node: Node::Mul(Box::new(n1), Box::new(n2)),
            scale: s1 + s2,
            mag: m1 * m2,
        },
    }
}

fn add(op: BinOp, a: Lowered, b: Lowered) -> Lowered {
    let combine = |x: Node, y: Node| match op {
        BinOp::Sub => Node::Sub(Box::new(x), Box::new(y)),
        _ => Node::Add(Box::new(x), Box::new(y)),
    };
    match (a, b) {
        (Lowered::Const(x), Lowered::Const(y)) => {
            let (p, q, e) = x.align(&y);
            let m = if op == BinOp::Sub { p - q } else { p + q };
            Lowered::Const(Dec { m, e })
        }
        (Lowered::Secret { node, scale, mag }, Lowered::Const(c)) => {
            let k = c.encode(scale);
            let mag = mag + k.magnitude();
            Lowered::Secret {
                node: combine(node, Node::Const(k)),
                scale,
                mag,
            }
        }
        (Lowered::Const(c), Lowered::Secret { node, scale, mag }) => {
            let k = c.encode(scale);
            let mag = mag + k.magnitude();
            Lowered::Secret {
                node: combine(Node::Const(k), node),
                scale,
                mag,
            }
        }
        (
            Lowered::Secret {
                node: n1,
                scale: s1,
                mag: m1,
            },
            Lowered::Secret {
                node: n2,
                scale: s2,
                mag: m2,
            },
        ) => {
            let scale = s1.max(s2);
            let (n1, m1) = lift(n1, m1, scale - s1);
            let (n2, m2) = lift(n2, m2, scale - s2);
            Lowered::Secret {
                node: combine(n1, n2),
                scale,
                mag: m1 + m2,
            }
        }
    }
}

struct Builder<'a, F: PrimeField> {
    planner: Planner<'a>,
    opened: Vec<Opened>,
    by_label: BTreeMap<String, usize>,
    _field: std::marker::PhantomData<F>,
}

impl<F: PrimeField> Builder<'_, F> {
    fn open(&mut self, e: &Expr, aggregate: &str) -> Result<usize, QueryError> {
        let label = format!("sum({e})");
        if let Some(i) = self.by_label.get(&label) {
            return Ok(*i);
        }
        let (node, scale, mag) = match self.planner.lower(e)? {
            Lowered::Secret { node, scale, mag } => (node, scale, mag),
            Lowered::Const(c) => {
                let k = c.encode(1);
                let mag = k.magnitude().clone();
                (Node::Const(k), 1, mag)
            }
        };
        let worst = mag * BigUint::from(self.planner.schema.rows.max(1));
        let bits = worst.bits() + 1;
        if bits >= u64::from(F::MAGNITUDE_LIMIT_BITS) {
            return Err(QueryError::Overflow {
                term: label,
                aggregate: aggregate.to_owned(),
                bits,
                max: F::MAGNITUDE_LIMIT_BITS - 1,
                field: F::NAME,
                rows: self.planner.schema.rows,
            });
        }
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
}

/// Plans `query` over a dataset with `schema` in the field `F`.
///
/// `query_text` is only used to point at tokens in errors; pass the text the query was parsed
/// from (or its canonical text).
///
/// # Errors
/// [`QueryError::UnknownColumn`], [`QueryError::WrongColumnKind`] (a category used as a number,
/// `hist` of a non-category), [`QueryError::Overflow`] naming the term whose worst case does not
/// fit the field.
pub fn plan_text<F: PrimeField>(
    query_text: &str,
    query: &Query,
    schema: &Schema,
) -> Result<Plan, QueryError> {
    let mut b = Builder::<F> {
        planner: Planner {
            query: query_text,
            schema,
        },
        opened: Vec::new(),
        by_label: BTreeMap::new(),
        _field: std::marker::PhantomData,
    };
    let mut outputs = Vec::new();
    for (agg, _) in &query.aggregates {
        let name = agg.to_string();
        let finish = match agg {
            Aggregate::Sum(e) => Finish::Sum {
                sum: b.open(e, &name)?,
            },
            Aggregate::Count => Finish::Count,
            Aggregate::Mean(e) => Finish::Mean {
                sum: b.open(e, &name)?,
            },
            Aggregate::Var(e) => {
                let sum = b.open(e, &name)?;
                let sum_sq = b.open(&Expr::product(e.clone(), e.clone()), &name)?;
                Finish::Var { sum_sq, sum }
            }
            Aggregate::Cov(x, y) => {
                let sum_xy = b.open(&Expr::product(x.clone(), y.clone()), &name)?;
                let sum_x = b.open(x, &name)?;
                let sum_y = b.open(y, &name)?;
                Finish::Cov {
                    sum_xy,
                    sum_x,
                    sum_y,
                }
            }
            Aggregate::Dot(x, y) => Finish::Dot {
                sum: b.open(&Expr::product(x.clone(), y.clone()), &name)?,
            },
            Aggregate::Hist { column, span } => {
                let levels = match schema.column(column).map(|c| &c.kind) {
                    Some(ColumnKind::Category { levels }) => levels.clone(),
                    Some(_) => {
                        return Err(QueryError::WrongColumnKind {
                            message: format!("hist needs a category column, `{column}` is not one"),
                            offset: span.start,
                            caret: caret(query_text, *span),
                        })
                    }
                    None => {
                        return Err(QueryError::UnknownColumn {
                            name: column.clone(),
                            offset: span.start,
                            caret: caret(query_text, *span),
                        })
                    }
                };
                let mut out = Vec::with_capacity(levels.len());
                for level in levels {
                    let e = Expr::Column {
                        name: format!("{column}={level}"),
                        span: *span,
                    };
                    out.push((level, b.open(&e, &name)?));
                }
                Finish::Hist { levels: out }
            }
        };
        outputs.push(Output { name, finish });
    }
    let degree = b.opened.iter().map(|o| o.degree).max().unwrap_or(0);
    Ok(Plan {
        field: F::NAME,
        rows: schema.rows,
        opened: b.opened,
        outputs,
        degree,
    })
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
}
