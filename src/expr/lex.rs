//! The tokenizer of the expression language.
//!
//! Tokens carry their byte offset; [`Lexer::column`] turns it into the 1-based char column that
//! [`super::ParseError`] reports. Field paths are lexed whole (`` a.b[0].`c d` ``) and checked
//! with [`FieldPath::parse`], so a path means what it means elsewhere in a spec (except that
//! unquoted names never contain `-`, which is minus here).

use super::BinaryOp;
use crate::event::FieldPath;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kw {
    And,
    Or,
    Not,
    In,
    Between,
    Is,
    True,
    False,
    Null,
    Case,
    When,
    Then,
    Else,
    End,
}

const KEYWORDS: [(&str, Kw); 14] = [
    ("and", Kw::And),
    ("or", Kw::Or),
    ("not", Kw::Not),
    ("in", Kw::In),
    ("between", Kw::Between),
    ("is", Kw::Is),
    ("true", Kw::True),
    ("false", Kw::False),
    ("null", Kw::Null),
    ("case", Kw::Case),
    ("when", Kw::When),
    ("then", Kw::Then),
    ("else", Kw::Else),
    ("end", Kw::End),
];

/// The keyword `word` spells, in any case.
pub fn keyword(word: &str) -> Option<Kw> {
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|(_, kw)| *kw)
}

/// Bytes of a name inside a bare path (a subset of `FieldPath`'s: no `-`, which is minus).
pub fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$'
}

/// Whether `name` lexes as one bare name at the start of a path.
pub fn is_plain_ident(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && is_ident_start(b[0]) && b.iter().all(|&c| is_ident_byte(c))
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Int(u64),
    Float(f64),
    Str(String),
    /// A field path. `bare` is its text when it is a single unquoted name (a possible call).
    Path {
        path: FieldPath,
        bare: Option<String>,
    },
    Kw(Kw),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// An operator symbol (`and` and `or` are keywords).
    Op(BinaryOp),
    End,
}

impl Tok {
    /// How the token reads in error messages.
    pub fn describe(&self, text: &str) -> String {
        match self {
            Tok::End => "the end of the expression".to_string(),
            _ => format!("`{}`", text.trim()),
        }
    }
}

/// A token, with its byte range in the source.
#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

/// A lexing error at a byte offset.
pub struct LexError {
    pub offset: usize,
    pub message: String,
}

pub struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Lexer<'a> {
        Lexer { text, pos: 0 }
    }

    /// 1-based char column of a byte offset.
    pub fn column(text: &str, offset: usize) -> usize {
        text.char_indices().take_while(|(i, _)| *i < offset).count() + 1
    }

    /// All tokens, ending with [`Tok::End`].
    pub fn tokens(mut self) -> Result<Vec<Token>, LexError> {
        let mut out = Vec::new();
        loop {
            let token = self.next_token()?;
            let end = token.tok == Tok::End;
            out.push(token);
            if end {
                return Ok(out);
            }
        }
    }

    fn err<T>(&self, offset: usize, message: impl Into<String>) -> Result<T, LexError> {
        Err(LexError {
            offset,
            message: message.into(),
        })
    }

    fn peek_byte(&self, ahead: usize) -> Option<u8> {
        self.text.as_bytes().get(self.pos + ahead).copied()
    }

    fn next_token(&mut self) -> Result<Token, LexError> {
        while self.peek_byte(0).is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(b) = self.peek_byte(0) else {
            return Ok(Token {
                tok: Tok::End,
                start,
                end: start,
            });
        };
        let two = |this: &mut Self, next: u8, yes: Tok, no: Tok| {
            if this.peek_byte(1) == Some(next) {
                this.pos += 2;
                yes
            } else {
                this.pos += 1;
                no
            }
        };
        let tok = match b {
            b'(' | b')' | b'[' | b']' | b',' | b'+' | b'-' | b'*' | b'/' | b'%' => {
                self.pos += 1;
                match b {
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'[' => Tok::LBracket,
                    b']' => Tok::RBracket,
                    b',' => Tok::Comma,
                    b'+' => Tok::Op(BinaryOp::Add),
                    b'-' => Tok::Op(BinaryOp::Sub),
                    b'*' => Tok::Op(BinaryOp::Mul),
                    b'/' => Tok::Op(BinaryOp::Div),
                    _ => Tok::Op(BinaryOp::Rem),
                }
            }
            b'=' => two(self, b'=', Tok::Op(BinaryOp::Eq), Tok::Op(BinaryOp::Eq)),
            b'!' if self.peek_byte(1) == Some(b'=') => {
                self.pos += 2;
                Tok::Op(BinaryOp::Ne)
            }
            b'<' if self.peek_byte(1) == Some(b'>') => {
                self.pos += 2;
                Tok::Op(BinaryOp::Ne)
            }
            b'<' => two(self, b'=', Tok::Op(BinaryOp::Le), Tok::Op(BinaryOp::Lt)),
            b'>' => two(self, b'=', Tok::Op(BinaryOp::Ge), Tok::Op(BinaryOp::Gt)),
            b'\'' | b'"' => self.string(b)?,
            b'0'..=b'9' => self.number()?,
            b'`' => self.path()?,
            b if is_ident_start(b) => self.path()?,
            _ => {
                let c = self.text[start..].chars().next().unwrap_or('?');
                let hint = match c {
                    '!' => " (use `not`)",
                    '&' => " (use `and`)",
                    '|' => " (use `or`)",
                    _ => "",
                };
                return self.err(start, format!("unexpected character `{c}`{hint}"));
            }
        };
        Ok(Token {
            tok,
            start,
            end: self.pos,
        })
    }

    fn string(&mut self, quote: u8) -> Result<Tok, LexError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(c) = rest.chars().next() else {
                return self.err(start, "unterminated string");
            };
            self.pos += c.len_utf8();
            match c {
                '\\' => {
                    let Some(e) = self.text[self.pos..].chars().next() else {
                        return self.err(start, "unterminated string");
                    };
                    out.push(match e {
                        '\\' | '\'' | '"' => e,
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        _ => {
                            return self.err(
                                self.pos - 1,
                                format!("unknown escape `\\{e}` (use `\\\\` for a backslash)"),
                            )
                        }
                    });
                    self.pos += e.len_utf8();
                }
                c if c as u32 == u32::from(quote) => return Ok(Tok::Str(out)),
                c => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Tok, LexError> {
        let start = self.pos;
        let digits = |this: &mut Self| {
            let from = this.pos;
            while this.peek_byte(0).is_some_and(|b| b.is_ascii_digit()) {
                this.pos += 1;
            }
            this.pos > from
        };
        digits(self);
        let mut float = false;
        if self.peek_byte(0) == Some(b'.') && self.peek_byte(1).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            digits(self);
            float = true;
        }
        if matches!(self.peek_byte(0), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek_byte(0), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                self.pos = save;
            } else {
                float = true;
            }
        }
        if self.peek_byte(0).is_some_and(|b| is_ident_byte(b) || b == b'.') {
            let message = if self.peek_byte(0) == Some(b'.') {
                "invalid number"
            } else {
                "invalid number (field names start with a letter, `_` or `$`)"
            };
            return self.err(start, message);
        }
        let text = &self.text[start..self.pos];
        if float {
            match text.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Tok::Float(x)),
                _ => self.err(start, "number out of range"),
            }
        } else {
            text.parse::<u64>()
                .map(Tok::Int)
                .or_else(|_| self.err(start, "integer out of range"))
        }
    }

    /// A path: a name or backticked name, then any of `.name`, ``.`name` ``, `[index]`. When the
    /// first name is a keyword the token is that keyword alone.
    fn path(&mut self) -> Result<Tok, LexError> {
        let start = self.pos;
        let name = |this: &mut Self, first: bool| -> Result<(), LexError> {
            if this.peek_byte(0) == Some(b'`') {
                match this.text[this.pos + 1..].find('`') {
                    Some(len) => this.pos += len + 2,
                    None => return this.err(this.pos, "unterminated backtick"),
                }
            } else {
                let from = this.pos;
                while this.peek_byte(0).is_some_and(is_ident_byte) {
                    this.pos += 1;
                }
                if this.pos == from || (first && !is_ident_start(this.text.as_bytes()[from])) {
                    return this.err(from, "expected a field name");
                }
            }
            Ok(())
        };
        name(self, true)?;
        let head = &self.text[start..self.pos];
        if let Some(kw) = keyword(head) {
            return Ok(Tok::Kw(kw));
        }
        let mut bare = !head.starts_with('`');
        loop {
            match self.peek_byte(0) {
                Some(b'.') => {
                    self.pos += 1;
                    name(self, false)?;
                }
                Some(b'[') => match self.text[self.pos..].find(']') {
                    Some(len) => self.pos += len + 1,
                    None => return self.err(self.pos, "missing `]`"),
                },
                _ => break,
            }
            bare = false;
        }
        let text = &self.text[start..self.pos];
        let path = FieldPath::parse(text).map_err(|e| LexError {
            offset: start + (e.column - 1).min(text.len()),
            message: e.message,
        })?;
        Ok(Tok::Path {
            path,
            bare: bare.then(|| text.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::expr::parse::tests::check_errors;

    #[test]
    fn lexing_errors_point_at_the_token() {
        let cases: &[(&str, usize, &str)] = &[
            ("'abc", 1, "unterminated string"),
            ("'a\\q'", 3, "unknown escape `\\q`"),
            ("a # b", 3, "unexpected character `#`"),
            ("a && b", 3, "unexpected character `&` (use `and`)"),
            ("!a", 1, "unexpected character `!` (use `not`)"),
            ("1abc", 1, "invalid number"),
            ("1.", 1, "invalid number"),
            ("99999999999999999999", 1, "integer out of range"),
            ("1e999", 1, "number out of range"),
            ("a.", 3, "expected a field name"),
            ("a[x]", 3, "list index must be a non-negative integer"),
            ("a[1", 2, "missing `]`"),
            ("`abc", 1, "unterminated backtick"),
            ("\"a\" == 'b", 8, "unterminated string"),
        ];
        check_errors(cases);
    }
}
