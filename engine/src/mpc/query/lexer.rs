//! Tokens of the query language.

use super::ast::CmpOp;
use super::{QueryError, Span};

/// A token kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A bare (`income`) or double-quoted (`"color=red"`) identifier.
    Ident(String),
    /// An unsigned decimal literal (`12`, `0.5`).
    Number(String),
    /// A single-quoted text literal (`'red'`; `''` is a quote inside it).
    Text(String),
    /// A comparison operator (`<`, `<=`, `>`, `>=`, `=`, `!=` or `<>`).
    Cmp(CmpOp),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// End of the query.
    End,
}

impl Tok {
    /// How the token is named in error messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier `{s}`"),
            Tok::Number(s) => format!("number `{s}`"),
            Tok::Text(s) => format!("text '{s}'"),
            Tok::Cmp(op) => format!("`{}`", op.symbol()),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::End => "end of query".into(),
        }
    }
}

/// A token with its byte span in the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Where it is.
    pub span: Span,
}

/// Splits a query into tokens; the last one is always [`Tok::End`].
///
/// # Errors
/// [`QueryError::Parse`] at an unexpected character or an unterminated quoted identifier.
pub fn lex(query: &str) -> Result<Vec<Token>, QueryError> {
    let bytes = query.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let single = |tok| Token {
            tok,
            span: Span {
                start,
                end: start + 1,
            },
        };
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
            }
            b'(' => {
                out.push(single(Tok::LParen));
                i += 1;
            }
            b')' => {
                out.push(single(Tok::RParen));
                i += 1;
            }
            b',' => {
                out.push(single(Tok::Comma));
                i += 1;
            }
            b'+' => {
                out.push(single(Tok::Plus));
                i += 1;
            }
            b'-' => {
                out.push(single(Tok::Minus));
                i += 1;
            }
            b'*' => {
                out.push(single(Tok::Star));
                i += 1;
            }
            b'0'..=b'9' | b'.' => {
                let mut dot = false;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || (bytes[i] == b'.' && !dot)) {
                    dot |= bytes[i] == b'.';
                    i += 1;
                }
                let text = &query[start..i];
                if text == "." {
                    return Err(QueryError::parse(
                        query,
                        Span { start, end: i },
                        "a lone `.` is not a number",
                    ));
                }
                if i < bytes.len() && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
                    return Err(QueryError::parse(
                        query,
                        Span { start, end: i + 1 },
                        "a number may not run into a name",
                    ));
                }
                out.push(Token {
                    tok: Tok::Number(text.to_owned()),
                    span: Span { start, end: i },
                });
            }
            b'<' | b'>' | b'=' | b'!' => {
                let next = bytes.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    (b'<', Some(b'=')) => (CmpOp::Le, 2),
                    (b'<', Some(b'>')) => (CmpOp::Ne, 2),
                    (b'<', _) => (CmpOp::Lt, 1),
                    (b'>', Some(b'=')) => (CmpOp::Ge, 2),
                    (b'>', _) => (CmpOp::Gt, 1),
                    (b'=', _) => (CmpOp::Eq, 1),
                    (b'!', Some(b'=')) => (CmpOp::Ne, 2),
                    _ => {
                        return Err(QueryError::parse(
                            query,
                            Span {
                                start,
                                end: start + 1,
                            },
                            "`!` must be followed by `=`",
                        ))
                    }
                };
                i += len;
                out.push(Token {
                    tok: Tok::Cmp(op),
                    span: Span { start, end: i },
                });
            }
            b'\'' => {
                i += 1;
                let mut text = String::new();
                while let Some(rest) = query.get(i..) {
                    match rest.find('\'') {
                        None => {
                            return Err(QueryError::parse(
                                query,
                                Span {
                                    start,
                                    end: query.len(),
                                },
                                "unterminated text literal",
                            ))
                        }
                        Some(q) => {
                            text.push_str(&rest[..q]);
                            i += q + 1;
                            if bytes.get(i) == Some(&b'\'') {
                                text.push('\'');
                                i += 1;
                            } else {
                                break;
                            }
                        }
                    }
                }
                out.push(Token {
                    tok: Tok::Text(text),
                    span: Span { start, end: i },
                });
            }
            b'"' => {
                i += 1;
                let body = i;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += 1;
                }
                if i >= bytes.len() {
                    return Err(QueryError::parse(
                        query,
                        Span { start, end: i },
                        "unterminated quoted column name",
                    ));
                }
                let name = &query[body..i];
                i += 1;
                if name.is_empty() {
                    return Err(QueryError::parse(
                        query,
                        Span { start, end: i },
                        "empty quoted column name",
                    ));
                }
                out.push(Token {
                    tok: Tok::Ident(name.to_owned()),
                    span: Span { start, end: i },
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(query[start..i].to_owned()),
                    span: Span { start, end: i },
                });
            }
            _ => {
                let ch = query[start..].chars().next().unwrap_or('?');
                return Err(QueryError::parse(
                    query,
                    Span {
                        start,
                        end: start + ch.len_utf8(),
                    },
                    &format!("unexpected character {ch:?}"),
                ));
            }
        }
    }
    out.push(Token {
        tok: Tok::End,
        span: Span {
            start: query.len(),
            end: query.len(),
        },
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_spans() {
        let t = lex("sum(x*2.5) , \"a b\"").unwrap();
        let kinds: Vec<_> = t.iter().map(|t| t.tok.clone()).collect();
        assert_eq!(
            kinds,
            [
                Tok::Ident("sum".into()),
                Tok::LParen,
                Tok::Ident("x".into()),
                Tok::Star,
                Tok::Number("2.5".into()),
                Tok::RParen,
                Tok::Comma,
                Tok::Ident("a b".into()),
                Tok::End
            ]
        );
        assert_eq!(t[4].span, Span { start: 6, end: 9 });
        assert_eq!(t[7].span, Span { start: 13, end: 18 });
    }

    #[test]
    fn bad_characters_are_located() {
        let e = lex("sum(x % 2)").unwrap_err();
        assert_eq!(e.offset(), Some(6));
        let e = lex("sum(\"x)").unwrap_err();
        assert_eq!(e.offset(), Some(4));
        let e = lex("sum(2x)").unwrap_err();
        assert_eq!(e.offset(), Some(4));
        let e = lex("sum(é)").unwrap_err();
        assert_eq!(e.offset(), Some(4));
        let e = lex("sum(x) where c = 'red").unwrap_err();
        assert_eq!(e.offset(), Some(17));
        assert!(e.to_string().contains("unterminated text literal"), "{e}");
        let e = lex("sum(x) where x ! 2").unwrap_err();
        assert_eq!(e.offset(), Some(15));
    }

    #[test]
    fn comparisons_and_text() {
        let t = lex("a<b<=c>d>=e=f!=g<>h 'it''s'").unwrap();
        let kinds: Vec<_> = t.iter().map(|t| t.tok.clone()).collect();
        let id = |s: &str| Tok::Ident(s.into());
        assert_eq!(
            kinds,
            [
                id("a"),
                Tok::Cmp(CmpOp::Lt),
                id("b"),
                Tok::Cmp(CmpOp::Le),
                id("c"),
                Tok::Cmp(CmpOp::Gt),
                id("d"),
                Tok::Cmp(CmpOp::Ge),
                id("e"),
                Tok::Cmp(CmpOp::Eq),
                id("f"),
                Tok::Cmp(CmpOp::Ne),
                id("g"),
                Tok::Cmp(CmpOp::Ne),
                id("h"),
                Tok::Text("it's".into()),
                Tok::End
            ]
        );
        assert_eq!(t[3].span, Span { start: 3, end: 5 });
        assert_eq!(t[15].span, Span { start: 20, end: 27 });
    }
}
