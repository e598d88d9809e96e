//! The parser: precedence climbing over the tokens of [`super::lex`].
//!
//! [`parse`] reports the first problem as a [`ParseError`] with the 1-based char column where
//! it was found (for a missing operand, the place the operand was expected).

use std::sync::Arc;

use super::func::build_call;
use super::lex::{Kw, LexError, Lexer, Tok, Token};
use super::{prec, BinaryOp, Expr, Field, UnaryOp};
use crate::value::Value;

/// Deepest nesting accepted, so that parsing, evaluation and dropping cannot overflow a stack.
const MAX_DEPTH: usize = 200;
const TOO_DEEP: &str = "expression nested more than 200 levels deep";

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}\n{}", caret(.source_text, .column))]
pub struct ParseError {
    /// 1-based char column in `source_text`.
    pub column: usize,
    pub message: String,
    pub source_text: String,
}

/// The source text, and a caret under `column`.
fn caret(text: &str, column: &usize) -> String {
    let shown: String = text.chars().map(|c| if c.is_whitespace() { ' ' } else { c }).collect();
    format!("  {shown}\n  {}^", " ".repeat(column.saturating_sub(1)))
}

/// Parses an expression (see the module docs of [`crate::expr`] for the language).
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = Lexer::new(text)
        .tokens()
        .map_err(|LexError { offset, message }| ParseError {
            column: Lexer::column(text, offset),
            message,
            source_text: text.to_string(),
        })?;
    let mut p = Parser {
        text,
        tokens,
        pos: 0,
        depth: 0,
    };
    if p.peek() == &Tok::End {
        return Err(p.error(0, "empty expression"));
    }
    let expr = p.expr(0)?;
    match p.peek() {
        Tok::End => {}
        Tok::RParen => return Err(p.error(p.pos, "unmatched `)`")),
        _ => return p.unexpected(p.pos, "expected an operator or the end"),
    }
    if too_deep(&expr, MAX_DEPTH) {
        return Err(p.error(0, TOO_DEEP));
    }
    Ok(expr)
}

fn too_deep(e: &Expr, budget: usize) -> bool {
    budget == 0 || e.children().into_iter().any(|c| too_deep(c, budget - 1))
}

/// An operator that can follow a complete operand.
enum Infix {
    Bin(BinaryOp),
    In(bool),
    Between(bool),
    Is,
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + ahead).min(last)].tok
    }

    fn bump(&mut self) -> Tok {
        let tok = self.tokens[self.pos].tok.clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        tok
    }

    fn token_text(&self, index: usize) -> &str {
        let t = &self.tokens[index];
        &self.text[t.start..t.end]
    }

    fn describe(&self, index: usize) -> String {
        self.tokens[index].tok.describe(self.token_text(index))
    }

    fn error(&self, index: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            column: Lexer::column(self.text, self.tokens[index].start),
            message: message.into(),
            source_text: self.text.to_string(),
        }
    }

    /// Fails at token `index` with `expected`, followed by what was found there.
    fn unexpected<T>(&self, index: usize, expected: &str) -> Result<T, ParseError> {
        Err(self.error(index, format!("{expected}, found {}", self.describe(index))))
    }

    /// Consumes `want`, or fails with `expected` at the current token.
    fn expect(&mut self, want: &Tok, expected: &str) -> Result<(), ParseError> {
        if self.peek() != want {
            return self.unexpected(self.pos, expected);
        }
        self.bump();
        Ok(())
    }

    /// Parses an expression whose operators all bind at least as tightly as `min`.
    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(self.pos, TOO_DEEP));
        }
        let result = self.climb(min);
        self.depth -= 1;
        result
    }

    fn climb(&mut self, min: u8) -> Result<Expr, ParseError> {
        let mut left = self.prefix(min)?;
        loop {
            let (infix, width) = match self.peek() {
                Tok::Kw(Kw::Or) => (Infix::Bin(BinaryOp::Or), 1),
                Tok::Kw(Kw::And) => (Infix::Bin(BinaryOp::And), 1),
                Tok::Op(op) => (Infix::Bin(*op), 1),
                Tok::Kw(Kw::In) => (Infix::In(false), 1),
                Tok::Kw(Kw::Between) => (Infix::Between(false), 1),
                Tok::Kw(Kw::Is) => (Infix::Is, 1),
                Tok::Kw(Kw::Not) => match self.peek_at(1) {
                    Tok::Kw(Kw::In) => (Infix::In(true), 2),
                    Tok::Kw(Kw::Between) => (Infix::Between(true), 2),
                    _ if min <= prec::CMP => {
                        return self.unexpected(self.pos + 1, "expected `in` or `between` after `not`")
                    }
                    _ => break,
                },
                _ => break,
            };
            let p = match infix {
                Infix::Bin(op) => op.precedence(),
                _ => prec::CMP,
            };
            if p < min {
                break;
            }
            let op_at = self.pos;
            self.pos += width;
            left = match infix {
                Infix::Bin(op) => Expr::Binary(op, Box::new(left), Box::new(self.expr(p + 1)?)),
                Infix::In(negated) => {
                    let word = if negated { "not in" } else { "in" };
                    self.expect(&Tok::LBracket, &format!("expected a list `[...]` after `{word}`"))?;
                    let list = self.items(&Tok::RBracket, "`]`")?.0;
                    Expr::In {
                        expr: Box::new(left),
                        list,
                        negated,
                    }
                }
                Infix::Between(negated) => {
                    let low = self.expr(prec::ADD)?;
                    self.expect(&Tok::Kw(Kw::And), "expected `and` in `between ... and ...`")?;
                    let high = self.expr(prec::ADD)?;
                    Expr::Between {
                        expr: Box::new(left),
                        low: Box::new(low),
                        high: Box::new(high),
                        negated,
                    }
                }
                Infix::Is => {
                    let negated = self.peek() == &Tok::Kw(Kw::Not);
                    if negated {
                        self.bump();
                    }
                    self.expect(&Tok::Kw(Kw::Null), "expected `null` or `not null` after `is`")?;
                    Expr::IsNull {
                        expr: Box::new(left),
                        negated,
                    }
                }
            };
            if p == prec::CMP && self.at_comparison() {
                let first = self.token_text(op_at).to_string();
                return Err(self.error(
                    self.pos,
                    format!(
                        "comparisons do not chain: add parentheses around the `{first}` comparison \
                         or combine them with `and`"
                    ),
                ));
            }
        }
        Ok(left)
    }

    fn at_comparison(&self) -> bool {
        match self.peek() {
            Tok::Op(op) => op.precedence() == prec::CMP,
            Tok::Kw(Kw::In | Kw::Between | Kw::Is) => true,
            Tok::Kw(Kw::Not) => matches!(self.peek_at(1), Tok::Kw(Kw::In | Kw::Between)),
            _ => false,
        }
    }

    fn prefix(&mut self, min: u8) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Kw(Kw::Not) => {
                if min > prec::NOT {
                    return Err(self.error(self.pos, "`not` needs parentheses here: `(not ...)`"));
                }
                self.bump();
                Ok(Expr::Unary(UnaryOp::Not, Box::new(self.expr(prec::NOT)?)))
            }
            Tok::Op(BinaryOp::Sub) => {
                self.bump();
                // A minus directly before a number is part of the literal, so that i64::MIN
                // and negative constants read back from `Display` as literals.
                match *self.peek() {
                    Tok::Int(n) if n <= i64::MAX as u64 + 1 => {
                        self.bump();
                        Ok(Expr::Literal(Value::Int(0i64.wrapping_sub_unsigned(n))))
                    }
                    Tok::Float(x) => {
                        self.bump();
                        Ok(Expr::Literal(Value::float(-x)))
                    }
                    _ => Ok(Expr::Unary(UnaryOp::Neg, Box::new(self.expr(prec::NEG)?))),
                }
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let at = self.pos;
        let expr = match self.bump() {
            Tok::Int(n) => match i64::try_from(n) {
                Ok(i) => Expr::Literal(Value::Int(i)),
                Err(_) => return Err(self.error(at, "integer out of range")),
            },
            Tok::Float(x) => Expr::Literal(Value::float(x)),
            Tok::Str(s) => Expr::Literal(Value::Str(Arc::from(s))),
            Tok::Kw(Kw::True) => Expr::Literal(Value::Bool(true)),
            Tok::Kw(Kw::False) => Expr::Literal(Value::Bool(false)),
            Tok::Kw(Kw::Null) => Expr::Literal(Value::Null),
            Tok::LParen => {
                let inner = self.expr(0)?;
                let column = Lexer::column(self.text, self.tokens[at].start);
                self.expect(
                    &Tok::RParen,
                    &format!("expected `)` to close the `(` at column {column}"),
                )?;
                inner
            }
            Tok::LBracket => Expr::List(self.items(&Tok::RBracket, "`]`")?.0),
            Tok::Kw(Kw::Case) => self.case(at)?,
            Tok::Path { bare: Some(name), .. } if self.peek() == &Tok::LParen => {
                self.bump();
                return self.call(&name, at);
            }
            Tok::Path { path, .. } => Expr::Field(Field::new(path)),
            _ => {
                let mut message = match at {
                    0 => "expected an expression".to_string(),
                    _ => format!("expected an expression after `{}`", self.token_text(at - 1)),
                };
                if self.tokens[at].tok != Tok::End {
                    message = format!("{message}, found {}", self.describe(at));
                }
                return Err(self.error(at, message));
            }
        };
        Ok(expr)
    }

    /// Comma-separated expressions up to `close` (the opening token is consumed already).
    /// Returns them with the token index where each starts.
    fn items(&mut self, close: &Tok, close_name: &str) -> Result<(Vec<Expr>, Vec<usize>), ParseError> {
        let (mut items, mut starts) = (Vec::new(), Vec::new());
        if self.peek() == close {
            self.bump();
            return Ok((items, starts));
        }
        loop {
            starts.push(self.pos);
            items.push(self.expr(0)?);
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                t if t == close => {
                    self.bump();
                    return Ok((items, starts));
                }
                _ => return self.unexpected(self.pos, &format!("expected `,` or {close_name}")),
            }
        }
    }

    /// `case when c then r ... [else e] end`; the `case` (token `at`) is consumed already.
    fn case(&mut self, at: usize) -> Result<Expr, ParseError> {
        let column = Lexer::column(self.text, self.tokens[at].start);
        let close = format!("to close the `case` at column {column}");
        self.expect(&Tok::Kw(Kw::When), "expected `when` after `case`")?;
        let mut branches = Vec::new();
        loop {
            let condition = self.expr(0)?;
            self.expect(&Tok::Kw(Kw::Then), "expected `then` after the `when` condition")?;
            branches.push((condition, self.expr(0)?));
            let otherwise = match self.peek() {
                Tok::Kw(Kw::When) => {
                    self.bump();
                    continue;
                }
                Tok::Kw(Kw::Else) => {
                    self.bump();
                    let e = self.expr(0)?;
                    self.expect(&Tok::Kw(Kw::End), &format!("expected `end` {close}"))?;
                    Some(Box::new(e))
                }
                Tok::Kw(Kw::End) => {
                    self.bump();
                    None
                }
                _ => return self.unexpected(self.pos, &format!("expected `when`, `else` or `end` {close}")),
            };
            return Ok(Expr::Case { branches, otherwise });
        }
    }

    /// A call of `name` (at token `at`); the `(` is consumed already.
    fn call(&mut self, name: &str, at: usize) -> Result<Expr, ParseError> {
        let (args, starts) = self.items(&Tok::RParen, "`)`")?;
        build_call(name, args).map_err(|(arg, message)| self.error(arg.map_or(at, |i| starts[i]), message))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn errors_point_at_the_problem() {
        let deep = format!("{}1{}", "(".repeat(300), ")".repeat(300));
        let long = format!("1{}", " + 1".repeat(300));
        let cases: &[(&str, usize, &str)] = &[
            ("a == 1 and", 11, "expected an expression after `and`"),
            ("a == 1 and ", 12, "expected an expression after `and`"),
            ("", 1, "empty expression"),
            ("a == )", 6, "expected an expression after `==`, found `)`"),
            ("not", 4, "expected an expression after `not`"),
            ("(a", 3, "expected `)` to close the `(` at column 1, found the end"),
            ("a)", 2, "unmatched `)`"),
            ("a b", 3, "expected an operator or the end, found `b`"),
            ("1 < 2 < 3", 7, "comparisons do not chain"),
            ("a is null == true", 11, "comparisons do not chain"),
            ("a is 1", 6, "expected `null` or `not null` after `is`"),
            ("a in 1", 6, "expected a list `[...]` after `in`"),
            ("a between 1 or 2", 13, "expected `and` in `between ... and ...`"),
            ("a not b", 7, "expected `in` or `between` after `not`"),
            ("a == not b", 6, "`not` needs parentheses"),
            ("[1, 2", 6, "expected `,` or `]`"),
            ("f(1 2)", 5, "expected `,` or `)`"),
            ("9223372036854775808", 1, "integer out of range"),
            ("'é' == and", 8, "expected an expression after `==`, found `and`"),
            ("case 1 then 2 end", 6, "expected `when` after `case`, found `1`"),
            (
                "case when a 1 end",
                13,
                "expected `then` after the `when` condition, found `1`",
            ),
            (
                "case when a then 1",
                19,
                "expected `when`, `else` or `end` to close the `case` at column 1",
            ),
            (
                "x + case when a then 1 else 2",
                30,
                "expected `end` to close the `case` at column 5, found the end",
            ),
            (
                "case when a then 1 else 2 else 3 end",
                27,
                "expected `end` to close the `case`",
            ),
            (
                "case when then 1 end",
                11,
                "expected an expression after `when`, found `then`",
            ),
            (
                "case when a then end",
                18,
                "expected an expression after `then`, found `end`",
            ),
            ("case end", 6, "expected `when` after `case`"),
            (
                "case when a then 1 else end",
                25,
                "expected an expression after `else`, found `end`",
            ),
            ("a when b", 3, "expected an operator or the end, found `when`"),
            ("end == 1", 1, "expected an expression, found `end`"),
            (&deep, 201, "nested more than 200 levels"),
            (&long, 1, "nested more than 200 levels"),
        ];
        check_errors(cases);
    }

    /// Checks that each text fails to parse at `column` with a message containing the text.
    pub fn check_errors(cases: &[(&str, usize, &str)]) {
        for (text, column, message) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.message.contains(message), "{text}: {}", e.message);
            assert_eq!(e.column, *column, "{text}: {}", e.message);
            assert_eq!(e.source_text, *text);
        }
    }

    #[test]
    fn error_display_has_a_caret() {
        let e = parse("a == 1 and").unwrap_err();
        let want = "column 11: expected an expression after `and`\n  a == 1 and\n            ^";
        assert_eq!(e.to_string(), want);
    }

    #[test]
    fn extreme_literals() {
        assert_eq!(parse("-9223372036854775808"), Ok(Expr::Literal(Value::Int(i64::MIN))));
        let neg = Expr::Unary(UnaryOp::Neg, Box::new(Expr::Literal(Value::Int(5))));
        assert_eq!(parse("-(5)"), Ok(neg));
        assert_eq!(parse("- 2.5"), Ok(Expr::Literal(Value::float(-2.5))));
    }
}
