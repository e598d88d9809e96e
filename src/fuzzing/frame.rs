//! The line framer and the hello parser, fed a byte stream in random chunks.

use crate::serve::frame::{Framer, Leftover, Piece, PREFIX_BYTES};
use crate::serve::protocol::{
    ack_line, error_line, parse_hello, parse_reply, valid_client_id, Hello, Reply, HELLO_KEYS,
};

/// `data[0]`: the line limit (×4 bytes); `data[1]`: the chunk sizes' seed; the rest: the stream.
pub fn frame(data: &[u8]) {
    let [limit, seed, stream @ ..] = data else {
        return;
    };
    let max = usize::from(*limit) * 4;
    let mut framer = Framer::new(max);
    let mut got: Vec<(Vec<u8>, Option<u64>)> = Vec::new();
    let mut rest = stream;
    let mut state = u32::from(*seed) | 1;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (state >> 16) as usize % 64).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        framer.push(chunk, &mut |piece| {
            got.push(match piece {
                Piece::Line(line) => (line.to_vec(), None),
                Piece::TooLarge { prefix, bytes } => (prefix, Some(bytes)),
            })
        });
        assert!(framer.buffered() <= max, "the framer holds more than a line");
    }
    let left = framer.finish();

    // The oracle: split at newlines.
    let mut lines: Vec<&[u8]> = stream.split(|b| *b == b'\n').collect();
    let last = lines.pop().unwrap_or_default();
    let want: Vec<(Vec<u8>, Option<u64>)> = lines
        .iter()
        .map(|l| match l.len() > max {
            false => (l.to_vec(), None),
            true => (prefix(l), Some(l.len() as u64)),
        })
        .collect();
    assert_eq!(got, want, "framed pieces");
    let want_left = if last.len() > max {
        Some(Leftover::TooLarge {
            prefix: prefix(last),
            bytes: last.len() as u64,
        })
    } else if last.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(Leftover::Truncated {
            prefix: prefix(last),
            bytes: last.len() as u64,
        })
    };
    assert_eq!(left, want_left, "leftover");

    for (line, too_large) in &got {
        if too_large.is_none() {
            hello(line);
        }
        let _ = parse_reply(line);
        let text = String::from_utf8_lossy(line);
        assert_eq!(
            parse_reply(error_line(&text).as_bytes()),
            Some(Reply::Error(text.into_owned()))
        );
    }
    let n = stream.iter().take(8).fold(0u64, |n, b| n << 8 | u64::from(*b));
    assert_eq!(parse_reply(ack_line(n).as_bytes()), Some(Reply::Ack(n)));
}

fn prefix(line: &[u8]) -> Vec<u8> {
    line[..line.len().min(PREFIX_BYTES)].to_vec()
}

/// A line is a hello exactly when it is a JSON object with a `hello` key and no key but the
/// hello keys; a valid one prints and parses back to itself.
fn hello(line: &[u8]) {
    let parsed = parse_hello(line);
    let object = serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.as_object().cloned());
    let is_hello = object
        .as_ref()
        .is_some_and(|o| o.contains_key("hello") && o.keys().all(|k| HELLO_KEYS.contains(&k.as_str())));
    assert_eq!(parsed.is_some(), is_hello, "hello or data: {parsed:?}");
    if let Some(Ok(h)) = parsed {
        assert_eq!(h.hello, 1);
        assert!(h.client.as_deref().is_none_or(valid_client_id));
        let mut printed = serde_json::json!({ "hello": h.hello });
        let fields = [
            ("client", h.client.clone().map(serde_json::Value::from)),
            ("source", h.source.clone().map(serde_json::Value::from)),
            ("token", h.token.clone().map(serde_json::Value::from)),
            ("offset", h.offset.map(serde_json::Value::from)),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                printed[key] = v;
            }
        }
        let again: Option<Result<Hello, String>> = parse_hello(printed.to_string().as_bytes());
        assert_eq!(again, Some(Ok(h)), "a hello printed and parsed again");
    }
}
