//! The syntax tree of a query.

use std::fmt;

use super::Span;

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
}

/// A row expression: evaluated on every row, then aggregated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A decimal constant as written (unsigned; negation is [`Expr::Neg`]).
    Number {
        /// The literal.
        text: String,
        /// Where it is.
        span: Span,
    },
    /// A column (or a `name=level` one-hot column).
    Column {
        /// Its name.
        name: String,
        /// Where it is.
        span: Span,
    },
    /// Unary minus.
    Neg {
        /// The operand.
        expr: Box<Expr>,
        /// Where the whole negation is.
        span: Span,
    },
    /// A binary operation.
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
        /// Where the whole operation is.
        span: Span,
    },
}

impl Expr {
    /// The span of the whole expression.
    pub fn span(&self) -> Span {
        match self {
            Expr::Number { span, .. }
            | Expr::Column { span, .. }
            | Expr::Neg { span, .. }
            | Expr::Binary { span, .. } => *span,
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Expr::Binary {
                op: BinOp::Add | BinOp::Sub,
                ..
            } => 1,
            Expr::Binary { op: BinOp::Mul, .. } => 2,
            Expr::Neg { .. } => 3,
            _ => 4,
        }
    }

    /// Builds `lhs * rhs` (used by the planner for `var` and `cov`).
    pub fn product(lhs: Expr, rhs: Expr) -> Expr {
        let span = Span {
            start: lhs.span().start.min(rhs.span().start),
            end: lhs.span().end.max(rhs.span().end),
        };
        Expr::Binary {
            op: BinOp::Mul,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            span,
        }
    }
}

fn is_bare(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for Expr {
    /// Canonical text: single spaces around binary operators, parentheses only where needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number { text, .. } => f.write_str(text),
            Expr::Column { name, .. } => {
                if is_bare(name) {
                    f.write_str(name)
                } else {
                    write!(f, "\"{name}\"")
                }
            }
            Expr::Neg { expr, .. } => {
                if expr.precedence() < 3 {
                    write!(f, "-({expr})")
                } else {
                    write!(f, "-{expr}")
                }
            }
            Expr::Binary { op, lhs, rhs, .. } => {
                let (p, sym) = match op {
                    BinOp::Add => (1, "+"),
                    BinOp::Sub => (1, "-"),
                    BinOp::Mul => (2, "*"),
                };
                if lhs.precedence() < p {
                    write!(f, "({lhs})")?;
                } else {
                    write!(f, "{lhs}")?;
                }
                write!(f, " {sym} ")?;
                // Left-associative: a right operand of equal precedence needs parentheses
                // unless the operator is associative on both sides (`+` after `+`, `*`).
                let needs = rhs.precedence() < p
                    || (rhs.precedence() == p && matches!(op, BinOp::Sub))
                    || (rhs.precedence() == p
                        && matches!(op, BinOp::Add)
                        && matches!(**rhs, Expr::Binary { op: BinOp::Sub, .. }));
                if needs {
                    write!(f, "({rhs})")
                } else {
                    write!(f, "{rhs}")
                }
            }
        }
    }
}

/// One aggregate of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregate {
    /// `sum(e)`
    Sum(Expr),
    /// `count()`: every row.
    Count,
    /// `count(e)`: the rows where every column of `e` is present (not NULL).
    CountOf(Expr),
    /// `mean(e)`
    Mean(Expr),
    /// `var(e)` (population variance)
    Var(Expr),
    /// `cov(e1, e2)` (population covariance)
    Cov(Expr, Expr),
    /// `dot(e1, e2)` = `sum(e1 * e2)`
    Dot(Expr, Expr),
    /// `hist(col)` over a one-hot (category) column: the count of every level.
    Hist {
        /// The category column.
        column: String,
        /// Where its name is.
        span: Span,
    },
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Sum(e) => write!(f, "sum({e})"),
            Aggregate::Count => write!(f, "count()"),
            Aggregate::CountOf(e) => write!(f, "count({e})"),
            Aggregate::Mean(e) => write!(f, "mean({e})"),
            Aggregate::Var(e) => write!(f, "var({e})"),
            Aggregate::Cov(a, b) => write!(f, "cov({a}, {b})"),
            Aggregate::Dot(a, b) => write!(f, "dot({a}, {b})"),
            Aggregate::Hist { column, .. } => {
                if is_bare(column) {
                    write!(f, "hist({column})")
                } else {
                    write!(f, "hist(\"{column}\")")
                }
            }
        }
    }
}

/// A parsed query: one or more aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The aggregates with the span of each.
    pub aggregates: Vec<(Aggregate, Span)>,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, _)) in self.aggregates.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}
