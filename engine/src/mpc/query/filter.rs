//! Lowering of `where` conditions to 0/1 row expressions, with SQL's three-valued logic.
//!
//! **Comparisons are exact.** Each side is lowered with exact rational coefficients: a value
//! column is `v / 2^16`, a decimal constant `m / 10^k`, and sums and products keep one positive
//! common denominator `D` per side (sums are brought to the least common multiple, products
//! multiply them). The compared value is the difference `D (lhs - rhs)`, an integer on every
//! row, so `lhs < rhs` is exactly `D (lhs - rhs) < 0`: a constant such as `0.1` is never rounded
//! (the other side is multiplied by `10` instead). The operators lower to one secure comparison
//! each, on the difference `d`: `<` is `[d < 0]`, `>` is `[-d < 0]`, `<=` is `1 - [-d < 0]`,
//! `>=` is `1 - [d < 0]`, `=` is `[d = 0]`, `!=` is `1 - [d = 0]`
//! ([`Node::LessThanZero`], [`Node::EqualsZero`]). The difference's worst case over every row
//! (a NULL row holds 0) gives its bit length; more than
//! [`crate::mpc::compare::max_compare_bits`] is refused with [`QueryError::CompareTooWide`] naming
//! the difference. `between` is `>= and <=`; `in (...)` is an `or` of `=`.
//!
//! **NULLs.** A condition is two 0/1 row expressions, *true* and *false* (both 0 where it is
//! unknown). A comparison reading nullable columns `S` has `true = c * P` and `false = P - true`,
//! `P` the product of the validity columns of `S`. Then exactly as SQL: `not` swaps them;
//! `a and b` is true `= Ta Tb`, false `= Fa + Fb - Fa Fb`; `a or b` is true
//! `= Ta + Tb - Ta Tb`, false `= Fa Fb` (when neither side can be unknown, false is `1 - true`,
//! saving a product). The sums are built as `1 - (1 - x)(1 - y)` so that each side appears
//! once in the tree: a chain of `k` conditions is a tree linear in `k`, not `2^k`. A row counts only where the condition is true. `e is null` is
//! `1 - P` (never unknown), `e is not null` is `P`.
//!
//! **Categories.** A category column is one-hot ("c=red" is `2^16` on the rows of level `red`,
//! 0 elsewhere and on NULL rows). `c = 'red'` (or `c = 3` for a level written `3`) is true
//! `= [("c=red") - 2^16 = 0]` and false `= [sum of the other levels - 2^16 = 0]`; `c in (...)`
//! takes the sum of the listed levels; `!=` and `not in` swap the two; `c is null` is
//! `1 - [sum of every level - 2^16 = 0]`. Each is an 18-bit
//! equality test, so the indicator is a 0/1 value at scale 2^0 (the one-hot column itself is at
//! scale 2^16 and no integer polynomial maps `2^16` to 1). Other comparisons of a category are
//! refused.

use std::collections::BTreeSet;

use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, Zero};

use super::ast::{BinOp, CmpOp, Cond, Expr};
use super::num::Rational;
use super::plan::Node;
use super::{caret, QueryError, Span};
use crate::mpc::csv::{ColumnKind, Schema, FRAC_BITS};
use crate::mpc::fixed::{Decimal, Interval};

/// The value of a one-hot level column on the rows of its level: `2^16`.
pub const LEVEL_ONE: i64 = 1 << FRAC_BITS;

/// A condition lowered to two 0/1 row expressions at scale 2^0.
#[derive(Debug, Clone)]
pub struct Truth {
    /// 1 where the condition is true.
    pub t: Node,
    /// 1 where the condition is false (0 where it is true or unknown).
    pub f: Node,
    /// Whether it is never unknown (then `f = 1 - t`).
    pub never_null: bool,
}

/// `a * b`, folding constants 0 and 1.
pub fn mul(a: Node, b: Node) -> Node {
    match (&a, &b) {
        (Node::Const(k), _) if k.is_one() => b,
        (_, Node::Const(k)) if k.is_one() => a,
        (Node::Const(k), _) | (_, Node::Const(k)) if k.is_zero() => Node::Const(BigInt::zero()),
        (Node::Const(x), Node::Const(y)) => Node::Const(x * y),
        (Node::Const(k), _) => Node::Scale(Box::new(b), k.clone()),
        (_, Node::Const(k)) => Node::Scale(Box::new(a), k.clone()),
        _ => Node::Mul(Box::new(a), Box::new(b)),
    }
}

/// `a + b`, folding constants.
pub fn add(a: Node, b: Node) -> Node {
    match (&a, &b) {
        (Node::Const(x), Node::Const(y)) => Node::Const(x + y),
        (Node::Const(k), _) if k.is_zero() => b,
        (_, Node::Const(k)) if k.is_zero() => a,
        _ => Node::Add(Box::new(a), Box::new(b)),
    }
}

/// `a - b`, folding constants.
pub fn sub(a: Node, b: Node) -> Node {
    match (&a, &b) {
        (Node::Const(x), Node::Const(y)) => Node::Const(x - y),
        (_, Node::Const(k)) if k.is_zero() => a,
        _ => Node::Sub(Box::new(a), Box::new(b)),
    }
}

/// `1 - a`.
pub fn one_minus(a: Node) -> Node {
    sub(Node::Const(BigInt::one()), a)
}

fn scale(node: Node, k: &BigInt) -> Node {
    if k.is_one() {
        node
    } else {
        Node::Scale(Box::new(node), k.clone())
    }
}

impl Truth {
    fn constant(v: bool) -> Truth {
        Truth {
            t: Node::Const(BigInt::from(u8::from(v))),
            f: Node::Const(BigInt::from(u8::from(!v))),
            never_null: true,
        }
    }

    /// `not self`.
    pub fn negate(self) -> Truth {
        Truth {
            t: self.f,
            f: self.t,
            never_null: self.never_null,
        }
    }

    /// `self and other` (SQL: false and unknown is false).
    pub fn and(self, other: Truth) -> Truth {
        let t = mul(self.t, other.t);
        let never_null = self.never_null && other.never_null;
        let f = if never_null {
            one_minus(t.clone())
        } else {
            // Fa + Fb - Fa Fb, written with each side once (De Morgan): a chain of `and`s
            // grows linearly, not doubling at each step.
            one_minus(mul(one_minus(self.f), one_minus(other.f)))
        };
        Truth { t, f, never_null }
    }

    /// `self or other` (SQL: true or unknown is true).
    pub fn or(self, other: Truth) -> Truth {
        // Ta + Tb - Ta Tb, written with each side once (De Morgan): a chain of `or`s (an
        // `in (...)` list) grows linearly, not doubling at each step.
        let t = one_minus(mul(one_minus(self.t), one_minus(other.t)));
        let never_null = self.never_null && other.never_null;
        let f = if never_null {
            one_minus(t.clone())
        } else {
            mul(self.f, other.f)
        };
        Truth { t, f, never_null }
    }
}

/// An exactly lowered side of a comparison: `node / den` on every row.
enum Exact {
    Const(Rational),
    Secret {
        node: Node,
        /// Positive common denominator.
        den: BigInt,
        /// Worst case of `node` over every row (NULL rows hold 0).
        range: Interval,
        /// Nullable value columns read.
        nullable: BTreeSet<usize>,
    },
}

/// Lowers conditions over one schema.
#[derive(Debug)]
pub struct CondLowering<'a> {
    /// The query text, for carets.
    pub query: &'a str,
    /// The dataset's schema.
    pub schema: &'a Schema,
    /// [`crate::mpc::compare::max_compare_bits`] of the field.
    pub max_bits: u32,
    /// The field's name.
    pub field: &'static str,
}

impl CondLowering<'_> {
    fn wrong_kind(&self, span: Span, message: String) -> QueryError {
        QueryError::WrongColumnKind {
            message,
            offset: span.start,
            caret: caret(self.query, span),
        }
    }

    /// The category levels of `e` if it is the bare name of a category column.
    fn category(&self, e: &Expr) -> Option<(String, Vec<String>, Span)> {
        match e {
            Expr::Column { name, span } => match self.schema.column(name).map(|c| &c.kind) {
                Some(ColumnKind::Category { levels }) => {
                    Some((name.clone(), levels.clone(), *span))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Lowers a condition.
    ///
    /// # Errors
    /// Unknown columns or levels, a category compared other than by `=`, `!=`, `in`, a text
    /// literal outside such a comparison, and [`QueryError::CompareTooWide`].
    pub fn cond(&self, c: &Cond) -> Result<Truth, QueryError> {
        Ok(match c {
            Cond::Not(c) => self.cond(c)?.negate(),
            Cond::IsNull { expr, negated, .. } => {
                let present = match self.category(expr) {
                    Some((name, levels, _)) => {
                        let all = levels.iter().cloned().collect();
                        self.level_set(&name, &levels, &all)?.t
                    }
                    None => match self.exact(expr)? {
                        Exact::Const(_) => Node::Const(BigInt::one()),
                        Exact::Secret { nullable, .. } => self.present(&nullable),
                    },
                };
                let t = Truth {
                    f: present.clone(),
                    t: one_minus(present),
                    never_null: true,
                };
                if *negated {
                    t.negate()
                } else {
                    t
                }
            }
            Cond::And(a, b) => self.cond(a)?.and(self.cond(b)?),
            Cond::Or(a, b) => self.cond(a)?.or(self.cond(b)?),
            Cond::Compare { op, lhs, rhs, span } => self.compare(*op, lhs, rhs, *span)?,
            Cond::Between {
                expr,
                low,
                high,
                negated,
                span,
            } => {
                if let Some((name, _, s)) = self.category(expr) {
                    return Err(self.wrong_kind(
                        s,
                        format!("`{name}` is a category column: compare it with `=`, `!=` or `in`"),
                    ));
                }
                let t = self.compare(CmpOp::Ge, expr, low, *span)?.and(self.compare(
                    CmpOp::Le,
                    expr,
                    high,
                    *span,
                )?);
                if *negated {
                    t.negate()
                } else {
                    t
                }
            }
            Cond::In {
                expr,
                list,
                negated,
                span,
            } => {
                let t = if let Some((name, levels, _)) = self.category(expr) {
                    let mut set = BTreeSet::new();
                    for item in list {
                        set.insert(self.level(&name, &levels, item)?);
                    }
                    self.level_set(&name, &levels, &set)?
                } else {
                    let mut acc: Option<Truth> = None;
                    for item in list {
                        let eq = self.compare(CmpOp::Eq, expr, item, *span)?;
                        acc = Some(match acc {
                            None => eq,
                            Some(a) => a.or(eq),
                        });
                    }
                    acc.unwrap_or_else(|| Truth::constant(false))
                };
                if *negated {
                    t.negate()
                } else {
                    t
                }
            }
        })
    }

    /// The level named by a literal `item` of category `name`.
    fn level(&self, name: &str, levels: &[String], item: &Expr) -> Result<String, QueryError> {
        let (text, span) = match item {
            Expr::Text { text, span } | Expr::Number { text, span } => (text.clone(), *span),
            other => {
                return Err(self.wrong_kind(
                    other.span(),
                    format!(
                        "`{name}` is a category column: compare it with a level, as '{}'",
                        levels.first().map_or("LEVEL", String::as_str)
                    ),
                ))
            }
        };
        if levels.contains(&text) {
            Ok(text)
        } else {
            Err(QueryError::UnknownLevel {
                column: name.to_owned(),
                level: text,
                levels: levels.join(", "),
                offset: span.start,
                caret: caret(self.query, span),
            })
        }
    }

    /// The node of the sum of the one-hot columns of `set`.
    fn level_sum(&self, name: &str, set: &BTreeSet<String>) -> Node {
        let mut acc = Node::Const(BigInt::zero());
        for l in set {
            let i = self
                .schema
                .field_index(&format!("{name}={l}"))
                .expect("a category has one field per level");
            acc = add(acc, Node::Column(i));
        }
        acc
    }

    /// 1 where category `name` holds one of `set` (an equality test per row), as a condition:
    /// false where it holds another level, unknown where it is NULL.
    ///
    /// # Errors
    /// [`QueryError::CompareTooWide`] if the field cannot compare 18-bit values (never for the
    /// supported fields).
    pub fn level_set(
        &self,
        name: &str,
        levels: &[String],
        set: &BTreeSet<String>,
    ) -> Result<Truth, QueryError> {
        let others: BTreeSet<String> = levels
            .iter()
            .filter(|l| !set.contains(*l))
            .cloned()
            .collect();
        let one = BigInt::from(LEVEL_ONE);
        // One-hot: the sum of any set of levels is 0 or 2^16.
        let bits = Interval::new(-one.clone(), BigInt::zero()).bits() + 1;
        let bits = self.check_bits(
            &format!("{name} in levels"),
            bits,
            Span { start: 0, end: 0 },
        )?;
        let test = |s: &BTreeSet<String>| {
            if s.is_empty() {
                Node::Const(BigInt::zero())
            } else {
                Node::EqualsZero {
                    value: Box::new(sub(self.level_sum(name, s), Node::Const(one.clone()))),
                    bits,
                }
            }
        };
        Ok(Truth {
            t: test(set),
            f: test(&others),
            never_null: false,
        })
    }

    fn check_bits(&self, term: &str, bits: u64, span: Span) -> Result<u32, QueryError> {
        if bits > u64::from(self.max_bits) {
            return Err(QueryError::CompareTooWide {
                term: term.to_owned(),
                offset: span.start,
                bits,
                max: self.max_bits,
                field: self.field,
            });
        }
        Ok(u32::try_from(bits).unwrap_or(u32::MAX))
    }

    /// The 0/1 indicator `[node != 0]` for a row expression with worst case `range`.
    ///
    /// # Errors
    /// [`QueryError::CompareTooWide`] naming `term != 0` and pointing at it.
    pub fn nonzero(&self, term: &Expr, node: Node, range: &Interval) -> Result<Node, QueryError> {
        let bits = self.check_bits(&format!("{term} != 0"), range.bits() + 1, term.span())?;
        Ok(one_minus(Node::EqualsZero {
            value: Box::new(node),
            bits,
        }))
    }

    fn compare(&self, op: CmpOp, lhs: &Expr, rhs: &Expr, span: Span) -> Result<Truth, QueryError> {
        let cat = self
            .category(lhs)
            .map(|c| (c, rhs))
            .or_else(|| self.category(rhs).map(|c| (c, lhs)));
        if let Some(((name, levels, cspan), other)) = cat {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(self.wrong_kind(
                    cspan,
                    format!("`{name}` is a category column: compare it with `=`, `!=` or `in`"),
                ));
            }
            let level = self.level(&name, &levels, other)?;
            let t = self.level_set(&name, &levels, &BTreeSet::from([level]))?;
            return Ok(if op == CmpOp::Ne { t.negate() } else { t });
        }
        let a = self.exact(lhs)?;
        let b = self.exact(rhs)?;
        let (node, range, nullable) = match combine(BinOp::Sub, a, b) {
            Exact::Const(d) => {
                let s = d.numer().sign();
                use num_bigint::Sign;
                let v = match op {
                    CmpOp::Lt => s == Sign::Minus,
                    CmpOp::Le => s != Sign::Plus,
                    CmpOp::Gt => s == Sign::Plus,
                    CmpOp::Ge => s != Sign::Minus,
                    CmpOp::Eq => s == Sign::NoSign,
                    CmpOp::Ne => s != Sign::NoSign,
                };
                return Ok(Truth::constant(v));
            }
            Exact::Secret {
                node,
                range,
                nullable,
                ..
            } => (node, range, nullable),
        };
        let term = Expr::Binary {
            op: BinOp::Sub,
            lhs: Box::new(lhs.clone()),
            rhs: Box::new(rhs.clone()),
            span,
        }
        .to_string();
        let whole = Span {
            start: lhs.span().start.min(rhs.span().start),
            end: lhs.span().end.max(rhs.span().end),
        };
        let bits = self.check_bits(&term, range.bits() + 1, whole)?;
        let lt = |v: Node| Node::LessThanZero {
            value: Box::new(v),
            bits,
        };
        let neg = |v: Node| Node::Neg(Box::new(v));
        let raw = match op {
            CmpOp::Lt => lt(node),
            CmpOp::Gt => lt(neg(node)),
            CmpOp::Le => one_minus(lt(neg(node))),
            CmpOp::Ge => one_minus(lt(node)),
            CmpOp::Eq => Node::EqualsZero {
                value: Box::new(node),
                bits,
            },
            CmpOp::Ne => one_minus(Node::EqualsZero {
                value: Box::new(node),
                bits,
            }),
        };
        if nullable.is_empty() {
            return Ok(Truth {
                f: one_minus(raw.clone()),
                t: raw,
                never_null: true,
            });
        }
        let present = self.present(&nullable);
        let t = mul(raw, present.clone());
        Ok(Truth {
            f: sub(present, t.clone()),
            t,
            never_null: false,
        })
    }

    /// The product of the validity columns of `nullable` (1 where every one is present).
    pub fn present(&self, nullable: &BTreeSet<usize>) -> Node {
        nullable.iter().fold(Node::Const(BigInt::one()), |acc, c| {
            let v = self.schema.fields[*c]
                .validity
                .expect("nullable columns have a validity column");
            mul(acc, Node::Column(v))
        })
    }

    fn exact(&self, e: &Expr) -> Result<Exact, QueryError> {
        Ok(match e {
            Expr::Number { text, span } => {
                let d = Decimal::parse(text).map_err(|_| {
                    QueryError::parse(self.query, *span, &format!("`{text}` is not a number"))
                })?;
                Exact::Const(Rational::new(
                    d.mantissa,
                    BigInt::from(10u32).pow(d.decimals),
                ))
            }
            Expr::Text { text, span } => {
                return Err(self.wrong_kind(
                    *span,
                    format!("text '{text}' can only be compared with a category column"),
                ))
            }
            Expr::Column { name, span } => {
                if let Some((_, levels, _)) = self.category(e) {
                    return Err(self.wrong_kind(
                        *span,
                        format!(
                            "`{name}` is a category column: compare it with a level, as {name} = '{}'",
                            levels.first().map_or("LEVEL", String::as_str)
                        ),
                    ));
                }
                let index =
                    self.schema
                        .field_index(name)
                        .ok_or_else(|| QueryError::UnknownColumn {
                            name: name.clone(),
                            offset: span.start,
                            caret: caret(self.query, *span),
                        })?;
                let f = &self.schema.fields[index];
                let range = Interval::new(BigInt::from(f.min), BigInt::from(f.max));
                let nullable: BTreeSet<usize> = f.validity.map(|_| index).into_iter().collect();
                Exact::Secret {
                    node: Node::Column(index),
                    den: BigInt::from(f.scale().factor()),
                    range: if nullable.is_empty() {
                        range
                    } else {
                        range.with_zero()
                    },
                    nullable,
                }
            }
            Expr::Neg { expr, .. } => match self.exact(expr)? {
                Exact::Const(c) => Exact::Const(Rational::new(-c.numer(), c.denom().clone())),
                Exact::Secret {
                    node,
                    den,
                    range,
                    nullable,
                } => Exact::Secret {
                    node: Node::Neg(Box::new(node)),
                    den,
                    range: range.neg(),
                    nullable,
                },
            },
            Expr::Binary { op, lhs, rhs, .. } => combine(*op, self.exact(lhs)?, self.exact(rhs)?),
        })
    }
}

fn combine(op: BinOp, a: Exact, b: Exact) -> Exact {
    match (op, a, b) {
        (BinOp::Mul, Exact::Const(x), Exact::Const(y)) => Exact::Const(x.times(&y)),
        (BinOp::Add, Exact::Const(x), Exact::Const(y)) => {
            Exact::Const(x.minus(&Rational::new(-y.numer(), y.denom().clone())))
        }
        (BinOp::Sub, Exact::Const(x), Exact::Const(y)) => Exact::Const(x.minus(&y)),
        (
            BinOp::Mul,
            Exact::Const(c),
            Exact::Secret {
                node,
                den,
                range,
                nullable,
            },
        )
        | (
            BinOp::Mul,
            Exact::Secret {
                node,
                den,
                range,
                nullable,
            },
            Exact::Const(c),
        ) => Exact::Secret {
            range: range.mul(&Interval::point(c.numer().clone())),
            node: scale(node, c.numer()),
            den: den * c.denom(),
            nullable,
        },
        (
            BinOp::Mul,
            Exact::Secret {
                node: n1,
                den: d1,
                range: r1,
                nullable: s1,
            },
            Exact::Secret {
                node: n2,
                den: d2,
                range: r2,
                nullable: s2,
            },
        ) => Exact::Secret {
            node: Node::Mul(Box::new(n1), Box::new(n2)),
            den: d1 * d2,
            range: r1.mul(&r2),
            nullable: s1.union(&s2).copied().collect(),
        },
        (op, a, b) => {
            // Sums: bring both sides to the least common denominator (exact integers).
            let parts = |e: Exact| match e {
                Exact::Const(c) => (
                    Node::Const(c.numer().clone()),
                    c.denom().clone(),
                    Interval::point(c.numer().clone()),
                    BTreeSet::new(),
                ),
                Exact::Secret {
                    node,
                    den,
                    range,
                    nullable,
                } => (node, den, range, nullable),
            };
            let (n1, d1, r1, s1) = parts(a);
            let (n2, d2, r2, s2) = parts(b);
            let l = d1.lcm(&d2);
            let (k1, k2) = (&l / &d1, &l / &d2);
            let scaled = |n: Node, k: &BigInt| match n {
                Node::Const(v) => Node::Const(v * k),
                n => scale(n, k),
            };
            let (n1, n2) = (scaled(n1, &k1), scaled(n2, &k2));
            let (r1, r2) = (r1.mul(&Interval::point(k1)), r2.mul(&Interval::point(k2)));
            let (node, range) = if op == BinOp::Sub {
                (Node::Sub(Box::new(n1), Box::new(n2)), r1.sub(&r2))
            } else {
                (Node::Add(Box::new(n1), Box::new(n2)), r1.add(&r2))
            };
            debug_assert!(l.is_positive());
            Exact::Secret {
                node,
                den: l,
                range,
                nullable: s1.union(&s2).copied().collect(),
            }
        }
    }
}
