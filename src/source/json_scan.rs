//! A pass over JSON text without parsing it: nesting depth and object keys, so that a nesting
//! bomb costs no stack and a line's field names can be counted before anything is interned.
//! Every JSON line (NDJSON files and TCP) is checked against its source's `max_depth` this way.

/// Whether JSON text nests arrays and objects deeper than `max`, found by one pass over the bytes
/// (strings skipped) without parsing, so a nesting bomb costs no stack.
pub fn depth_exceeds(line: &[u8], max: usize) -> bool {
    // Each level opens a bracket: most lines have fewer than the limit, and counting them is
    // cheaper than the scan.
    let opening = line.iter().filter(|&&b| b == b'{' || b == b'[').count();
    opening > max && scan(line, max, &mut Vec::new())
}

/// One pass over JSON text without parsing it: whether it nests deeper than `max_depth`, and
/// the byte ranges of its object keys (between the quotes, escapes left as they are) in `keys`.
pub fn scan(line: &[u8], max_depth: usize, keys: &mut Vec<std::ops::Range<usize>>) -> bool {
    let mut depth = 0usize;
    let mut string_start = None;
    let mut escaped = false;
    // The last string token, while only whitespace follows it: a key if a colon comes next.
    let mut last_string = None;
    for (i, &b) in line.iter().enumerate() {
        if let Some(start) = string_start {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                string_start = None;
                last_string = Some(start..i);
            }
            continue;
        }
        match b {
            b'"' => string_start = Some(i + 1),
            b':' => {
                if let Some(key) = last_string.take() {
                    keys.push(key);
                }
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'[' | b'{' => {
                last_string = None;
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => {
                last_string = None;
                depth = depth.saturating_sub(1);
            }
            _ => last_string = None,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let line = br#"{"a":1, "b" : {"c\"d":[{"e":"f:"}]}, "g":"h"}"#;
        let mut keys = Vec::new();
        assert!(!scan(line, 8, &mut keys));
        let names: Vec<&[u8]> = keys.into_iter().map(|r| &line[r]).collect();
        assert_eq!(names, [&b"a"[..], b"b", br#"c\"d"#, b"e", b"g"]);
    }

    #[test]
    fn depth() {
        assert!(!depth_exceeds(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(depth_exceeds(br#"{"a":[1,{"b":[2]}]}"#, 3));
        assert!(!depth_exceeds(br#"{"a":"[[[[[[[[\"[[[["}"#, 1));
        let bomb = vec![b'['; 10_000_000];
        assert!(depth_exceeds(&bomb, 64));
    }
}
