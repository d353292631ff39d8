//! Recursive-descent parser of the version-1 query language.
//!
//! ```text
//! query     := aggregate ("," aggregate)*
//! aggregate := "sum" "(" expr ")" | "count" "(" [expr] ")" | "mean" "(" expr ")" | "var" "(" expr ")"
//!            | "cov" "(" expr "," expr ")" | "dot" "(" expr "," expr ")" | "hist" "(" column ")"
//! expr      := term (("+" | "-") term)*
//! term      := unary ("*" unary)*
//! unary     := "-" unary | atom
//! atom      := number | column | "(" expr ")"
//! column    := name | "\"" any text but a quote "\""
//! ```

use super::ast::{Aggregate, BinOp, Expr, Query};
use super::lexer::{lex, Tok, Token};
use super::{QueryError, Span};

/// Deepest nesting of parentheses and unary minus accepted (bounds the recursion).
pub const MAX_DEPTH: usize = 64;

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
    let mut aggregates = vec![p.aggregate()?];
    while p.peek().tok == Tok::Comma {
        p.pos += 1;
        aggregates.push(p.aggregate()?);
    }
    let t = p.peek().clone();
    if t.tok != Tok::End {
        return Err(p.error(
            t.span,
            &format!("expected `,` or end of query, found {}", t.tok.describe()),
        ));
    }
    Ok(Query { aggregates })
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
            ("sum(x) mean(y)", 7, "expected `,` or end of query"),
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
    fn deep_nesting_is_refused_not_overflowed() {
        let q = format!("sum({}x{})", "(".repeat(1_000), ")".repeat(1_000));
        let e = parse(&q).unwrap_err();
        assert!(e.to_string().contains("nested more than"));
        let q = format!("sum({}x)", "-".repeat(1_000));
        assert!(parse(&q)
            .unwrap_err()
            .to_string()
            .contains("nested more than"));
        let q = format!("sum({}x)", "-".repeat(5_000));
        assert!(matches!(parse(&q), Err(QueryError::TooLong { .. })));
    }
}
