//! Recursive-descent parser of the version-1 query language.
//!
//! ```text
//! query     := item ("," item)* ["group" "by" column]
//! item      := aggregate ["where" cond]
//! aggregate := "sum" "(" expr ")" | "count" "(" [expr] ")" | "mean" "(" expr ")" | "var" "(" expr ")"
//!            | "cov" "(" expr "," expr ")" | "dot" "(" expr "," expr ")" | "hist" "(" column ")"
//! cond      := conj ("or" conj)*
//! conj      := neg ("and" neg)*
//! neg       := "not" neg | pred
//! pred      := "(" cond ")" | expr cmp expr | expr ["not"] "between" expr "and" expr
//!            | expr ["not"] "in" "(" expr ("," expr)* ")" | expr "is" ["not"] "null"
//! cmp       := "<" | "<=" | ">" | ">=" | "=" | "!=" | "<>"
//! expr      := term (("+" | "-") term)*
//! term      := unary ("*" unary)*
//! unary     := "-" unary | atom
//! atom      := number | text | column | "(" expr ")"
//! text      := "'" any text, a quote doubled "'"
//! column    := name | "\"" any text but a quote "\""
//! ```
//!
//! A `where` belongs to the aggregate it follows (`sum(x), mean(y) where z > 1` filters only
//! `mean(y)`); `group by` applies to every aggregate. Keywords (`where and or not between in
//! group by is null`) are not column names unless quoted. A `(` that opens a condition and one that
//! opens an expression (`(x + 1) > 2`) are told apart by trying the condition first.

use super::ast::{Aggregate, BinOp, Cond, Expr, Query, KEYWORDS};
use super::lexer::{lex, Tok, Token};
use super::{QueryError, Span};

/// Deepest nesting of parentheses and unary minus accepted (bounds the recursion).
pub const MAX_DEPTH: usize = 64;

/// Tallest expression or condition tree accepted: every operator counts, so a chain
/// `a + b + c ...` of 129 terms is refused. It bounds the recursion of everything that walks a
/// query after the parser (planner, evaluator, printing): without it one 4 KiB query of
/// chained `+` overflowed a party daemon's stack.
pub const MAX_HEIGHT: usize = 128;

/// Parses a query.
///
/// # Errors
/// [`QueryError::Parse`] pointing at the offending token.
pub fn parse(query: &str) -> Result<Query, QueryError> {
    if query.len() > super::MAX_QUERY_LEN {
        return Err(QueryError::TooLong {
            len: query.len(),
            max: super::MAX_QUERY_LEN,
        });
    }
    let tokens = lex(query)?;
    let mut p = Parser {
        query,
        tokens,
        pos: 0,
        depth: 0,
    };
    let mut aggregates = Vec::new();
    let mut filters = Vec::new();
    loop {
        let (agg, span) = p.aggregate()?;
        for e in agg_exprs(&agg) {
            p.check_height(Tree::Expr(e), span)?;
        }
        aggregates.push((agg, span));
        filters.push(if p.keyword("where") {
            let at = p.next().span;
            let c = p.cond()?;
            p.check_height(
                Tree::Cond(&c),
                Span {
                    start: at.start,
                    end: p.peek().span.start.max(at.end),
                },
            )?;
            Some(c)
        } else {
            None
        });
        if p.peek().tok != Tok::Comma {
            break;
        }
        p.pos += 1;
    }
    let mut group_by = None;
    if p.keyword("group") {
        p.pos += 1;
        let t = p.next();
        if t.tok != Tok::Ident("by".into()) {
            return Err(p.error(
                t.span,
                &format!("expected `by` after `group`, found {}", t.tok.describe()),
            ));
        }
        let c = p.next();
        match c.tok {
            Tok::Ident(name) => group_by = Some((name, c.span)),
            other => {
                return Err(p.error(
                    c.span,
                    &format!("group by takes a column name, found {}", other.describe()),
                ))
            }
        }
    }
    let t = p.peek().clone();
    if t.tok != Tok::End {
        let expected = if group_by.is_some() {
            "end of query"
        } else {
            "`,`, `where`, `group by` or end of query"
        };
        return Err(p.error(
            t.span,
            &format!("expected {expected}, found {}", t.tok.describe()),
        ));
    }
    Ok(Query {
        aggregates,
        filters,
        group_by,
    })
}

struct Parser<'a> {
    query: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The lexer always ends the list with `End`, and `pos` never passes it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn error(&self, span: Span, message: &str) -> QueryError {
        QueryError::parse(self.query, span, message)
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<Token, QueryError> {
        let t = self.next();
        if &t.tok == want {
            Ok(t)
        } else {
            Err(self.error(
                t.span,
                &format!("expected {what}, found {}", t.tok.describe()),
            ))
        }
    }

    fn aggregate(&mut self) -> Result<(Aggregate, Span), QueryError> {
        let t = self.next();
        let name = match &t.tok {
            Tok::Ident(n) => n.clone(),
            other => {
                return Err(self.error(
                    t.span,
                    &format!(
                        "expected an aggregate (sum, count, mean, var, cov, dot, hist), found {}",
                        other.describe()
                    ),
                ))
            }
        };
        self.expect(&Tok::LParen, "`(`")?;
        let agg = match name.as_str() {
            "sum" => Aggregate::Sum(self.expr()?),
            "count" if self.peek().tok == Tok::RParen => Aggregate::Count,
            "count" => Aggregate::CountOf(self.expr()?),
            "mean" => Aggregate::Mean(self.expr()?),
            "var" => Aggregate::Var(self.expr()?),
            "cov" | "dot" => {
                let a = self.expr()?;
                self.expect(&Tok::Comma, "`,` between the two expressions")?;
                let b = self.expr()?;
                if name == "cov" {
                    Aggregate::Cov(a, b)
                } else {
                    Aggregate::Dot(a, b)
                }
            }
            "hist" => {
                let c = self.next();
                match c.tok {
                    Tok::Ident(column) => Aggregate::Hist {
                        column,
                        span: c.span,
                    },
                    other => {
                        return Err(self.error(
                            c.span,
                            &format!("hist takes a column name, found {}", other.describe()),
                        ))
                    }
                }
            }
            _ => {
                return Err(self.error(
                    t.span,
                    &format!(
                    "unknown aggregate `{name}` (expected sum, count, mean, var, cov, dot, hist)"
                ),
                ))
            }
        };
        let close = self.expect(&Tok::RParen, "`)`")?;
        Ok((
            agg,
            Span {
                start: t.span.start,
                end: close.span.end,
            },
        ))
    }

    /// Whether the next token is the bare word `word` (a quoted name never is: the lexer keeps
    /// quotes out of the token text, so keywords are checked on the source).
    fn keyword(&self, word: &str) -> bool {
        let t = self.peek();
        matches!(&t.tok, Tok::Ident(n) if n == word)
            && self.query.get(t.span.start..t.span.end) == Some(word)
    }

    fn cond(&mut self) -> Result<Cond, QueryError> {
        let mut lhs = self.conj()?;
        while self.keyword("or") {
            self.pos += 1;
            let rhs = self.conj()?;
            lhs = Cond::Or(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn conj(&mut self) -> Result<Cond, QueryError> {
        let mut lhs = self.neg()?;
        while self.keyword("and") {
            self.pos += 1;
            let rhs = self.neg()?;
            lhs = Cond::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn neg(&mut self) -> Result<Cond, QueryError> {
        if self.keyword("not") {
            let t = self.next();
            self.enter(t.span)?;
            let c = self.neg()?;
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(c)));
        }
        self.pred()
    }

    fn pred(&mut self) -> Result<Cond, QueryError> {
        if self.peek().tok == Tok::LParen {
            let save = self.pos;
            let open = self.next();
            self.enter(open.span)?;
            let inner = self.cond().and_then(|c| {
                self.expect(&Tok::RParen, "`)`")?;
                Ok(c)
            });
            self.depth -= 1;
            match inner {
                Ok(c) => return Ok(c),
                Err(as_cond) => {
                    // Maybe `(x + 1) > 2`: an expression in parentheses starting a comparison.
                    self.pos = save;
                    return self.comparison().map_err(|as_expr| {
                        if as_cond.offset() > as_expr.offset() {
                            as_cond
                        } else {
                            as_expr
                        }
                    });
                }
            }
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Cond, QueryError> {
        let lhs = self.expr()?;
        let t = self.peek().clone();
        if let Tok::Cmp(op) = t.tok {
            self.pos += 1;
            let rhs = self.expr()?;
            return Ok(Cond::Compare {
                op,
                lhs,
                rhs,
                span: t.span,
            });
        }
        if self.keyword("is") {
            let k = self.next();
            let negated = self.keyword("not");
            if negated {
                self.pos += 1;
            }
            let n = self.next();
            if !matches!(&n.tok, Tok::Ident(w) if w == "null") {
                return Err(self.error(
                    n.span,
                    &format!("expected `null` after `is`, found {}", n.tok.describe()),
                ));
            }
            return Ok(Cond::IsNull {
                expr: lhs,
                negated,
                span: k.span,
            });
        }
        let negated = self.keyword("not");
        if negated {
            self.pos += 1;
        }
        let k = self.peek().clone();
        if self.keyword("between") {
            self.pos += 1;
            let low = self.expr()?;
            let a = self.next();
            if !matches!(&a.tok, Tok::Ident(w) if w == "and") {
                return Err(self.error(
                    a.span,
                    &format!(
                        "expected `and` in `between ... and ...`, found {}",
                        a.tok.describe()
                    ),
                ));
            }
            let high = self.expr()?;
            return Ok(Cond::Between {
                expr: lhs,
                low,
                high,
                negated,
                span: k.span,
            });
        }
        if self.keyword("in") {
            self.pos += 1;
            self.expect(&Tok::LParen, "`(` after `in`")?;
            let mut list = vec![self.expr()?];
            while self.peek().tok == Tok::Comma {
                self.pos += 1;
                list.push(self.expr()?);
            }
            self.expect(&Tok::RParen, "`,` or `)`")?;
            return Ok(Cond::In {
                expr: lhs,
                list,
                negated,
                span: k.span,
            });
        }
        let what = if negated {
            "expected `between` or `in` after `not`"
        } else {
            "expected a comparison (<, <=, >, >=, =, !=, between, in, is null)"
        };
        Err(self.error(k.span, &format!("{what}, found {}", k.tok.describe())))
    }

    /// Refuses a tree taller than [`MAX_HEIGHT`], measured without recursion.
    fn check_height(&self, root: Tree<'_>, span: Span) -> Result<(), QueryError> {
        let mut stack = vec![(root, 1usize)];
        while let Some((node, h)) = stack.pop() {
            if h > MAX_HEIGHT {
                return Err(self.error(
                    span,
                    &format!(
                        "expression more than {MAX_HEIGHT} operators deep (each operator of a chain like a + b + c counts); split it into several aggregates"
                    ),
                ));
            }
            match node {
                Tree::Expr(e) => match e {
                    Expr::Neg { expr, .. } => stack.push((Tree::Expr(expr), h + 1)),
                    Expr::Binary { lhs, rhs, .. } => {
                        stack.push((Tree::Expr(lhs), h + 1));
                        stack.push((Tree::Expr(rhs), h + 1));
                    }
                    _ => {}
                },
                Tree::Cond(c) => match c {
                    Cond::Compare { lhs, rhs, .. } => {
                        stack.push((Tree::Expr(lhs), h + 1));
                        stack.push((Tree::Expr(rhs), h + 1));
                    }
                    Cond::Between {
                        expr, low, high, ..
                    } => {
                        for e in [expr, low, high] {
                            stack.push((Tree::Expr(e), h + 1));
                        }
                    }
                    Cond::In { expr, list, .. } => {
                        stack.push((Tree::Expr(expr), h + 1));
                        for e in list {
                            stack.push((Tree::Expr(e), h + 1));
                        }
                    }
                    Cond::IsNull { expr, .. } => stack.push((Tree::Expr(expr), h + 1)),
                    Cond::Not(c) => stack.push((Tree::Cond(c), h + 1)),
                    Cond::And(a, b) | Cond::Or(a, b) => {
                        stack.push((Tree::Cond(a), h + 1));
                        stack.push((Tree::Cond(b), h + 1));
                    }
                },
            }
        }
        Ok(())
    }

    fn enter(&mut self, span: Span) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(
                span,
                &format!("expression nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        let mut lhs = self.term()?;
        loop {
            let op = match self.peek().tok {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(lhs),
            };
            self.pos += 1;
            let rhs = self.term()?;
            lhs = binary(op, lhs, rhs);
        }
    }

    fn term(&mut self) -> Result<Expr, QueryError> {
        let mut lhs = self.unary()?;
        while self.peek().tok == Tok::Star {
            self.pos += 1;
            let rhs = self.unary()?;
            lhs = binary(BinOp::Mul, lhs, rhs);
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        if self.peek().tok == Tok::Minus {
            let t = self.next();
            self.enter(t.span)?;
            let e = self.unary()?;
            self.depth -= 1;
            let span = Span {
                start: t.span.start,
                end: e.span().end,
            };
            return Ok(Expr::Neg {
                expr: Box::new(e),
                span,
            });
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, QueryError> {
        let t = self.next();
        match t.tok {
            Tok::Number(text) => Ok(Expr::Number { text, span: t.span }),
            Tok::Text(text) => Ok(Expr::Text { text, span: t.span }),
            Tok::Ident(name)
                if KEYWORDS.contains(&name.as_str())
                    && self.query.get(t.span.start..t.span.end) == Some(name.as_str()) =>
            {
                Err(self.error(
                    t.span,
                    &format!("`{name}` is a keyword; write a column of that name as \"{name}\""),
                ))
            }
            Tok::Ident(name) => {
                if self.peek().tok == Tok::LParen {
                    return Err(self.error(
                        t.span,
                        &format!("`{name}(...)` cannot be used inside an expression; aggregates go at the top level"),
                    ));
                }
                Ok(Expr::Column { name, span: t.span })
            }
            Tok::LParen => {
                self.enter(t.span)?;
                let e = self.expr()?;
                self.depth -= 1;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(e)
            }
            other => Err(self.error(
                t.span,
                &format!(
                    "expected a column, a number or `(`, found {}",
                    other.describe()
                ),
            )),
        }
    }
}

/// The expressions an aggregate reads.
fn agg_exprs(agg: &Aggregate) -> Vec<&Expr> {
    match agg {
        Aggregate::Sum(e) | Aggregate::CountOf(e) | Aggregate::Mean(e) | Aggregate::Var(e) => {
            vec![e]
        }
        Aggregate::Cov(a, b) | Aggregate::Dot(a, b) => vec![a, b],
        Aggregate::Count | Aggregate::Hist { .. } => Vec::new(),
    }
}

/// A node of either tree kind, for [`Parser::check_height`].
#[derive(Clone, Copy)]
enum Tree<'a> {
    Expr(&'a Expr),
    Cond(&'a Cond),
}

fn binary(op: BinOp, lhs: Expr, rhs: Expr) -> Expr {
    let span = Span {
        start: lhs.span().start,
        end: rhs.span().end,
    };
    Expr::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
        span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_of_operators_are_bounded_by_height_without_recursion() {
        let chain = |n: usize, op: &str| vec!["a"; n].join(op);
        // 128 terms make 127 operators under the aggregate: accepted.
        assert!(parse(&format!("sum({})", chain(MAX_HEIGHT, " + "))).is_ok());
        // One more operator, or the 2,000-term chain that overflowed a daemon: refused by name.
        for n in [MAX_HEIGHT + 1, 2_000] {
            let e = parse(&format!("sum({})", chain(n, "+")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("operators deep"), "{n}: {e}");
        }
        let conds = vec!["a > 0"; 300].join(" and ");
        let e = parse(&format!("count() where {conds}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("operators deep"), "{e}");
        let e = parse(&format!("cov(a, {})", chain(700, "*")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("operators deep"), "{e}");
    }

    fn round_trip(q: &str) -> String {
        parse(q).unwrap().to_string()
    }

    #[test]
    fn precedence_and_printing() {
        assert_eq!(round_trip("sum(a+b*c)"), "sum(a + b * c)");
        assert_eq!(round_trip("sum((a+b)*c)"), "sum((a + b) * c)");
        assert_eq!(round_trip("sum(a-(b-c))"), "sum(a - (b - c))");
        assert_eq!(round_trip("sum(a-b-c)"), "sum(a - b - c)");
        assert_eq!(round_trip("sum(-a*-(b+1))"), "sum(-a * -(b + 1))");
        assert_eq!(
            round_trip(" count( ) ,mean(x), var(x),cov(x,y),dot(x , y), hist(\"my col\")"),
            "count(), mean(x), var(x), cov(x, y), dot(x, y), hist(\"my col\")"
        );
        // Printing then parsing gives the same tree (up to spans).
        for q in ["sum(a - (b + c) * 2.5)", "sum(-(-a))", "dot(a * b, c - -1)"] {
            let once = round_trip(q);
            assert_eq!(round_trip(&once), once);
        }
    }

    #[test]
    fn errors_point_at_the_token() {
        let cases = [
            ("sum(x + )", 8, "expected a column"),
            ("sum(x", 5, "expected `)`"),
            ("summ(x)", 0, "unknown aggregate `summ`"),
            (
                "sum(x) mean(y)",
                7,
                "expected `,`, `where`, `group by` or end of query",
            ),
            ("cov(x)", 5, "expected `,` between"),
            ("sum(sum(x))", 4, "cannot be used inside an expression"),
            ("hist(1)", 5, "hist takes a column name"),
            ("", 0, "expected an aggregate"),
            ("sum(x,)", 5, "expected `)`"),
        ];
        for (q, offset, msg) in cases {
            let e = parse(q).unwrap_err();
            assert_eq!(e.offset(), Some(offset), "{q}: {e}");
            let text = e.to_string();
            assert!(text.contains(msg), "{q}: {text}");
            // The caret line puts `^` under the offending byte.
            let caret = text.lines().last().unwrap();
            assert_eq!(caret.find('^'), Some(offset + 2), "{q}: {text}");
        }
    }

    #[test]
    fn conditions_and_groups_round_trip() {
        let cases = [
            ("mean(y) where x>1", "mean(y) where x > 1"),
            ("count() where x<=2*y", "count() where x <= 2 * y"),
            (
                "sum(x) where a>=1 and b<2 or c=3",
                "sum(x) where a >= 1 and b < 2 or c = 3",
            ),
            (
                "sum(x) where a>=1 and (b<2 or c=3)",
                "sum(x) where a >= 1 and (b < 2 or c = 3)",
            ),
            ("sum(x) where not a<>1", "sum(x) where not a != 1"),
            (
                "sum(x) where not (a=1 or b=2)",
                "sum(x) where not (a = 1 or b = 2)",
            ),
            (
                "sum(x) where (x + 1) * 2 > 3",
                "sum(x) where (x + 1) * 2 > 3",
            ),
            ("sum(x) where ((x)) > 3", "sum(x) where x > 3"),
            ("sum(x) where ((x > 3))", "sum(x) where x > 3"),
            (
                "sum(x) where x between -1 and 2.5 and y > 0",
                "sum(x) where x between -1 and 2.5 and y > 0",
            ),
            (
                "sum(x) where x not between 1 and 2",
                "sum(x) where x not between 1 and 2",
            ),
            (
                "sum(x) where c in ('a', 'it''s') ",
                "sum(x) where c in ('a', 'it''s')",
            ),
            (
                "sum(x) where x not in (1,2 ,3)",
                "sum(x) where x not in (1, 2, 3)",
            ),
            (
                "sum(x) where a = 1 and (b = 2 and c = 3)",
                "sum(x) where a = 1 and (b = 2 and c = 3)",
            ),
            (
                "sum(x) where a = 1 or (b = 2 or c = 3)",
                "sum(x) where a = 1 or (b = 2 or c = 3)",
            ),
            ("sum(x) where not not a = 1", "sum(x) where not not a = 1"),
            (
                "sum(x) where a is null or b+1 is not  null",
                "sum(x) where a is null or b + 1 is not null",
            ),
            ("mean(y) group by c", "mean(y) group by c"),
            (
                "mean(y) where x > 0, count() group by \"my col\"",
                "mean(y) where x > 0, count() group by \"my col\"",
            ),
            (
                "sum(x) where x > 1, mean(y), count() where \"and\" = 2",
                "sum(x) where x > 1, mean(y), count() where \"and\" = 2",
            ),
        ];
        for (q, want) in cases {
            let once = round_trip(q);
            assert_eq!(once, want, "{q}");
            // Printing then parsing gives the same tree (up to spans): print again, same text.
            assert_eq!(round_trip(&once), once, "{q}");
        }
        let q = parse("sum(x) where x > 1, mean(y) group by c").unwrap();
        assert!(q.filter(0).is_some());
        assert!(q.filter(1).is_none());
        assert_eq!(q.group_by.as_ref().map(|g| g.0.as_str()), Some("c"));
        // `and` binds tighter than `or`.
        let q = parse("sum(x) where a = 1 or b = 2 and c = 3").unwrap();
        assert!(matches!(q.filter(0), Some(Cond::Or(_, r)) if matches!(**r, Cond::And(..))));
    }

    #[test]
    fn condition_errors_point_at_the_token() {
        let cases = [
            ("sum(x) where", 12, "expected a column, a number or `(`"),
            ("sum(x) where x", 14, "expected a comparison"),
            ("sum(x) where x >", 16, "expected a column"),
            ("sum(x) where x between 1", 24, "expected `and` in `between"),
            (
                "sum(x) where x between 1 or 2",
                25,
                "expected `and` in `between",
            ),
            ("sum(x) where x in 1", 18, "expected `(` after `in`"),
            ("sum(x) where x in (1 2)", 21, "expected `,` or `)`"),
            ("sum(x) where x in ()", 19, "expected a column"),
            (
                "sum(x) where x not 1",
                19,
                "expected `between` or `in` after `not`",
            ),
            ("sum(x) where (x > 1", 19, "expected `)`"),
            ("sum(x) where x > 1 and", 22, "expected a column"),
            (
                "sum(x) where x > 1 y",
                19,
                "expected `,`, `where`, `group by` or end",
            ),
            ("sum(x) where and > 1", 13, "`and` is a keyword"),
            ("sum(where)", 4, "`where` is a keyword"),
            ("sum(x) group x", 13, "expected `by` after `group`"),
            ("sum(x) group by 1", 16, "group by takes a column name"),
            ("sum(x) group by c, sum(y)", 17, "expected end of query"),
            ("sum(x) where c = 'red", 17, "unterminated text literal"),
            ("sum(x) where x is 1", 18, "expected `null` after `is`"),
            ("sum(x) where x is not", 21, "expected `null` after `is`"),
            ("sum(null)", 4, "`null` is a keyword"),
            (
                "sum(x) where x > 1 where y > 2",
                19,
                "expected `,`, `where`",
            ),
        ];
        for (q, offset, msg) in cases {
            let e = parse(q).unwrap_err();
            let text = e.to_string();
            assert_eq!(e.offset(), Some(offset), "{q}: {text}");
            assert!(text.contains(msg), "{q}: {text}");
            let caret = text.lines().last().unwrap();
            assert_eq!(caret.find('^'), Some(offset + 2), "{q}: {text}");
            // One line of message, then the query and the caret.
            assert_eq!(text.lines().count(), 3, "{q}: {text}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let q = format!("sum({}x{})", "(".repeat(1_000), ")".repeat(1_000));
        let e = parse(&q).unwrap_err();
        assert!(e.to_string().contains("nested more than"));
        let q = format!("sum({}x)", "-".repeat(1_000));
        assert!(parse(&q)
            .unwrap_err()
            .to_string()
            .contains("nested more than"));
        let q = format!("sum(x) where {}x > 1", "not ".repeat(100));
        assert!(parse(&q)
            .unwrap_err()
            .to_string()
            .contains("nested more than"));
        let q = format!("sum(x) where {}x > 1{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&q)
            .unwrap_err()
            .to_string()
            .contains("nested more than"));
        let q = format!("sum({}x)", "-".repeat(5_000));
        assert!(matches!(parse(&q), Err(QueryError::TooLong { .. })));
    }
}
