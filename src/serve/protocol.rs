//! The line protocol of `sluice serve` (see the README's "Serving over TCP"): the optional
//! hello line, acknowledgements and errors, and the cheap checks done on untrusted lines before
//! they are parsed.
//!
//! ```text
//! client → {"hello":1,"client":"c1","source":"events","token":"T","offset":0}   (optional)
//! server → {"ack":N}        N: lines of client c1 already durable (0 for a new client)
//! client → one event per line ...
//! server → {"ack":N}        after each group commit: lines of c1 durable up to N
//! server → {"error":"..."}  then closes (bad hello, wrong token, too many connections)
//! ```
//!
//! A first line is a hello only when its keys are all hello keys; any other first line is the
//! client's first line of data, even with a `hello` field.

use serde::Deserialize;

/// The optional first line of a connection.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Protocol version; must be 1.
    pub hello: u32,
    /// Stable client id: lines are numbered per client, across connections and restarts, so
    /// resent lines already in the log are skipped. Without one, lines are numbered per
    /// connection and never deduplicated.
    #[serde(default)]
    pub client: Option<String>,
    /// The TCP source the lines feed (default: the spec's first TCP source).
    #[serde(default)]
    pub source: Option<String>,
    /// The server's `--auth-token`, when it has one.
    #[serde(default)]
    pub token: Option<String>,
    /// How many of this client's lines precede the first line sent on this connection
    /// (default: the server's acknowledgement in reply to the hello, i.e. resume after it).
    #[serde(default)]
    pub offset: Option<u64>,
}

/// Whether a presented token is the secret, in time that does not depend on where they first
/// differ.
pub fn same_secret(presented: &str, secret: &str) -> bool {
    let (a, b) = (presented.as_bytes(), secret.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Longest client id.
pub const MAX_CLIENT_ID: usize = 128;

/// Largest `offset` a hello may give. Line numbers past it would wrap around 2^64 long before
/// a client could send that many lines, and the log refuses a record whose offsets do (it
/// would not start again), so such a hello is refused instead.
pub const MAX_OFFSET: u64 = 1 << 63;

/// The keys of a hello line.
pub const HELLO_KEYS: [&str; 5] = ["hello", "client", "source", "token", "offset"];

/// `Some` when `line` is a hello line (a JSON object with a `hello` key and no key but
/// [`HELLO_KEYS`]), with the hello or why it is invalid; `None` when it is an ordinary line,
/// which is data: an event that happens to have a `hello` field is never taken for a hello.
pub fn parse_hello(line: &[u8]) -> Option<Result<Hello, String>> {
    // Cheap tests first: most lines are events. A key may be spelled with escapes.
    let trimmed = line.trim_ascii_start();
    if !trimmed.starts_with(b"{") || (memchr::memmem::find(line, b"\"hello\"").is_none() && !line.contains(&b'\\')) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let object = value.as_object()?;
    if !object.contains_key("hello") || object.keys().any(|k| !HELLO_KEYS.contains(&k.as_str())) {
        return None;
    }
    Some(
        serde_json::from_value::<Hello>(value)
            .map_err(|e| format!("bad hello: {e}"))
            .and_then(|h| {
                if h.hello != 1 {
                    return Err(format!("unsupported protocol version {}", h.hello));
                }
                if h.offset.is_some_and(|k| k > MAX_OFFSET) {
                    return Err(format!("offset must be at most 2^63 ({MAX_OFFSET})"));
                }
                if let Some(c) = &h.client {
                    if !valid_client_id(c) {
                        return Err(format!(
                            "client id must be 1 to {MAX_CLIENT_ID} characters of A-Z a-z 0-9 _ . : -"
                        ));
                    }
                }
                Ok(h)
            }),
    )
}

pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

pub fn ack_line(n: u64) -> String {
    format!("{{\"ack\":{n}}}\n")
}

pub fn error_line(message: &str) -> String {
    format!("{}\n", serde_json::json!({ "error": message }))
}

/// What a server line says to a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Ack(u64),
    Error(String),
}

/// Parses a server line (for `sluice send` and tests).
pub fn parse_reply(line: &[u8]) -> Option<Reply> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    if let Some(n) = value.get("ack").and_then(|n| n.as_u64()) {
        return Some(Reply::Ack(n));
    }
    value
        .get("error")
        .and_then(|e| e.as_str())
        .map(|e| Reply::Error(e.to_string()))
}

pub use crate::source::json_scan::{depth_exceeds, scan};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("abcd", "abc"));
        assert!(!same_secret("", "abc"));
    }

    #[test]
    fn hello_lines() {
        assert_eq!(parse_hello(br#"{"event_time":1,"event_type":"a"}"#), None);
        assert_eq!(parse_hello(br#"{"hello" "#), None);
        let h = parse_hello(br#"{"hello":1,"client":"c-1","source":"events","token":"t"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(h.client.as_deref(), Some("c-1"));
        assert_eq!(h.offset, None);
        assert!(parse_hello(br#"{"hello":2}"#).unwrap().is_err());
        assert!(parse_hello(br#"{"hello":1,"client":"a b"}"#).unwrap().is_err());
        assert!(parse_hello(br#"{"hello":"x","client":"c"}"#).unwrap().is_err());
        // Offsets that would wrap line numbers around 2^64 are refused, not acknowledged.
        let offset = |k: u64| parse_hello(format!(r#"{{"hello":1,"client":"c","offset":{k}}}"#).as_bytes()).unwrap();
        assert_eq!(offset(MAX_OFFSET).unwrap().offset, Some(1 << 63));
        for k in [MAX_OFFSET + 1, u64::MAX] {
            assert!(offset(k).unwrap_err().contains("at most 2^63"), "{k}");
        }
        // A line with any other key is data, whatever its `hello` field holds.
        assert_eq!(parse_hello(br#"{"hello":1,"extra":1}"#), None);
        assert_eq!(parse_hello(br#"{"ts":1,"type":"a","hello":"world"}"#), None);
        assert_eq!(parse_hello(br#"{"hello":{"nested":1},"ts":1}"#), None);
    }

    /// Fuzzing found that a hello whose `hello` key is spelled with an escape was data (`frame`).
    #[test]
    fn escaped_hello_keys() {
        let h = parse_hello(br#"{"hell\u006f":1,"\u0063lient":"c"}"#).unwrap().unwrap();
        assert_eq!(h.client.as_deref(), Some("c"));
        assert_eq!(parse_hello(br#"{"hell\u006f":1,"x\n":1}"#), None);
    }

    #[test]
    fn replies_round_trip() {
        assert_eq!(parse_reply(ack_line(42).as_bytes()), Some(Reply::Ack(42)));
        assert_eq!(
            parse_reply(error_line("no \"such\" source").as_bytes()),
            Some(Reply::Error("no \"such\" source".into()))
        );
    }
}
