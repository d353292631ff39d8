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
    /// A single-quoted text literal (`'red'`): only compared with a category column.
    Text {
        /// The text, quotes removed and `''` unescaped.
        text: String,
        /// Where it is.
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
            | Expr::Text { span, .. }
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

/// Words of the condition and grouping syntax: a column with one of these names is written in
/// double quotes.
pub const KEYWORDS: [&str; 10] = [
    "where", "and", "or", "not", "between", "in", "group", "by", "is", "null",
];

/// Whether `name` can be written without quotes (an identifier that is not a keyword).
pub fn is_bare(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&name)
}

fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if is_bare(name) {
        f.write_str(name)
    } else {
        write!(f, "\"{name}\"")
    }
}

impl fmt::Display for Expr {
    /// Canonical text: single spaces around binary operators, parentheses only where needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number { text, .. } => f.write_str(text),
            Expr::Column { name, .. } => write_name(f, name),
            Expr::Text { text, .. } => write!(f, "'{}'", text.replace('\'', "''")),
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
                f.write_str("hist(")?;
                write_name(f, column)?;
                f.write_str(")")
            }
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=`
    Eq,
    /// `!=` (also written `<>`)
    Ne,
}

impl CmpOp {
    /// The operator's canonical text.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
        }
    }
}

/// A row condition of `where`, with SQL's three-valued logic (a comparison with a NULL is
/// unknown; a row counts only where the condition is true).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// `lhs OP rhs`.
    Compare {
        /// The operator.
        op: CmpOp,
        /// Left side.
        lhs: Expr,
        /// Right side.
        rhs: Expr,
        /// Where the operator is.
        span: Span,
    },
    /// `expr [not] between low and high` (both ends included).
    Between {
        /// The tested expression.
        expr: Expr,
        /// Lower end.
        low: Expr,
        /// Upper end.
        high: Expr,
        /// `not between`.
        negated: bool,
        /// Where the `between` keyword is.
        span: Span,
    },
    /// `expr [not] in (item, ...)`.
    In {
        /// The tested expression.
        expr: Expr,
        /// The items (at least one).
        list: Vec<Expr>,
        /// `not in`.
        negated: bool,
        /// Where the `in` keyword is.
        span: Span,
    },
    /// `expr is [not] null`: never unknown.
    IsNull {
        /// The tested expression (NULL where any column it reads is NULL).
        expr: Expr,
        /// `is not null`.
        negated: bool,
        /// Where the `is` keyword is.
        span: Span,
    },
    /// `not c`.
    Not(Box<Cond>),
    /// `a and b`.
    And(Box<Cond>, Box<Cond>),
    /// `a or b`.
    Or(Box<Cond>, Box<Cond>),
}

impl Cond {
    fn precedence(&self) -> u8 {
        match self {
            Cond::Or(..) => 1,
            Cond::And(..) => 2,
            Cond::Not(_) => 3,
            _ => 4,
        }
    }

    fn write_at(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            f.write_str("(")?;
            self.write_at(f, 0)?;
            return f.write_str(")");
        }
        match self {
            Cond::Compare { op, lhs, rhs, .. } => write!(f, "{lhs} {} {rhs}", op.symbol()),
            Cond::Between {
                expr,
                low,
                high,
                negated,
                ..
            } => {
                let not = if *negated { "not " } else { "" };
                write!(f, "{expr} {not}between {low} and {high}")
            }
            Cond::In {
                expr,
                list,
                negated,
                ..
            } => {
                let not = if *negated { "not " } else { "" };
                write!(f, "{expr} {not}in (")?;
                for (i, e) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str(")")
            }
            Cond::IsNull { expr, negated, .. } => {
                let not = if *negated { "not " } else { "" };
                write!(f, "{expr} is {not}null")
            }
            Cond::Not(c) => {
                f.write_str("not ")?;
                c.write_at(f, 3)
            }
            // Left-associative: the right operand of `and`/`or` is parenthesized when it is the
            // same operator, so the tree survives a round trip.
            Cond::And(a, b) => {
                a.write_at(f, 2)?;
                f.write_str(" and ")?;
                b.write_at(f, 3)
            }
            Cond::Or(a, b) => {
                a.write_at(f, 1)?;
                f.write_str(" or ")?;
                b.write_at(f, 2)
            }
        }
    }
}

impl fmt::Display for Cond {
    /// Canonical text: `and` binds tighter than `or`, `not` tighter than both; parentheses only
    /// where needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_at(f, 0)
    }
}

/// A parsed query: one or more aggregates, each with an optional `where` condition, and an
/// optional `group by` over all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The aggregates with the span of each.
    pub aggregates: Vec<(Aggregate, Span)>,
    /// The `where` condition of each aggregate (same length and order as `aggregates`).
    pub filters: Vec<Option<Cond>>,
    /// `group by COLUMN`: a category column and where its name is.
    pub group_by: Option<(String, Span)>,
}

impl Query {
    /// The `where` condition of aggregate `i`, if any.
    pub fn filter(&self, i: usize) -> Option<&Cond> {
        self.filters.get(i).and_then(Option::as_ref)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, _)) in self.aggregates.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
            if let Some(c) = self.filter(i) {
                write!(f, " where {c}")?;
            }
        }
        if let Some((column, _)) = &self.group_by {
            f.write_str(" group by ")?;
            write_name(f, column)?;
        }
        Ok(())
    }
}
