//! Subscriptions: a snapshot of an output's live view, then every change, as NDJSON, over a TCP
//! connection (`--subscribe`) or a chunked HTTP response (`GET /subscribe/NAME`).
//!
//! ```text
//!  View ── Feed (unbounded, counted; overflow drops the subscriber) ──► pump task
//!        ── NDJSON chunks (bounded channel: a slow client stops the pump) ──► socket / HTTP body
//! ```
//!
//! Lines: `{"row":{COLUMN:VALUE,...},"time":T,"diff":N}` (`T` in epoch ms; the snapshot's rows
//! carry the view's latest time and their count as `diff`), `{"progress":T}` after the snapshot
//! and whenever the output's frontier advances (every change with a time below `T` has been
//! sent; at most one a batch of feed, after its changes), then `{"done":true}` when the output
//! is complete, or `{"error":"..."}` when the subscriber fell too far behind. Accumulating the
//! diffs per row gives the output's current contents.
//!
//! The TCP request is one line: `{"subscribe":"NAME","token":"T","where":{"user_id":123}}`
//! (`token` when the server has one, `where` optional; a `{"token":"T"}` line may come first).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::live::{Change, Feed, Filter, LiveViews, View, ViewError};

/// Bytes of NDJSON gathered into one chunk.
const CHUNK_BYTES: usize = 64 << 10;
/// Chunks queued between a pump and its socket.
const CHUNKS_QUEUED: usize = 16;
/// Longest accepted request line, and how long a client may take to send it.
const REQUEST_BYTES: u64 = 64 << 10;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Open subscriptions; a guard counts one while it lives.
#[derive(Clone, Default)]
pub struct Active(Arc<AtomicUsize>);

impl Active {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    pub fn guard(&self) -> ActiveGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(Arc::clone(&self.0))
    }
}

pub struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Writes changes of one view as NDJSON lines, `{"row":{...},"time":T,"diff":N}`, with the
/// column names escaped once; a flattened payload's rows go through [`View::row_json`].
struct Encoder {
    view: Arc<View>,
    /// `"COLUMN":` for each visible column.
    keys: Vec<String>,
}

impl Encoder {
    fn new(view: Arc<View>) -> Encoder {
        let keys = view
            .spec
            .visible_columns()
            .into_iter()
            .map(|c| format!("{}:", serde_json::Value::String(c)))
            .collect();
        Encoder { view, keys }
    }

    fn line(&self, (row, time, diff): &Change, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"row\":");
        if self.view.spec.flatten {
            let object = serde_json::Value::Object(self.view.row_json(row));
            out.extend_from_slice(object.to_string().as_bytes());
        } else {
            out.push(b'{');
            for (i, (key, value)) in self.keys.iter().zip(row).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(key.as_bytes());
                // Writing JSON into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &value.to_json());
            }
            out.push(b'}');
        }
        out.extend_from_slice(format!(",\"time\":{time},\"diff\":{diff}}}\n").as_bytes());
    }
}

fn message_line(key: &str, value: serde_json::Value) -> Bytes {
    let mut text = serde_json::json!({ key: value }).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Subscribes to `view` and spawns the task that turns its feed into NDJSON chunks; the stream
/// ends after the final line, or as soon as the receiver is dropped.
pub fn start(view: Arc<View>, filter: &Filter) -> Result<mpsc::Receiver<Bytes>, ViewError> {
    let matcher = view.matcher(filter)?;
    let mut sub = view.subscribe(filter)?;
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS_QUEUED);
    tokio::spawn(async move {
        let encoder = Encoder::new(view);
        let mut out = Chunks {
            tx,
            chunk: Vec::new(),
            progress: None,
        };
        let snapshot = std::mem::take(&mut sub.snapshot);
        for change in &snapshot {
            encoder.line(change, &mut out.chunk);
            if out.flush_full().await.is_err() {
                return;
            }
        }
        drop(snapshot);
        // The snapshot ends with its frontier (unless the output is already complete).
        out.progress = sub.frontier;
        if out.flush().await.is_err() {
            return;
        }
        while let Some(first) = sub.feed.recv().await {
            // Whatever else is queued joins this chunk; the latest progress goes after it.
            let mut feed = Some(first);
            let mut last = None;
            while let Some(f) = feed.take() {
                match f {
                    Feed::Changes(batch) => {
                        for change in batch.iter().filter(|c| matcher.matches(&c.0)) {
                            encoder.line(change, &mut out.chunk);
                            if out.flush_full().await.is_err() {
                                return;
                            }
                        }
                        sub.consumed(batch.len());
                    }
                    Feed::Progress(t) => {
                        out.progress = Some(t);
                        sub.consumed(1);
                    }
                    Feed::Done => last = Some(message_line("done", true.into())),
                    Feed::Overflow { limit } => {
                        last = Some(message_line(
                            "error",
                            format!("subscriber too slow: more than {limit} messages unread; disconnected").into(),
                        ))
                    }
                }
                if last.is_none() && out.chunk.len() < CHUNK_BYTES {
                    feed = sub.feed.try_recv().ok();
                }
            }
            if out.flush().await.is_err() {
                return;
            }
            if let Some(line) = last {
                let _ = out.tx.send(line).await;
                return;
            }
        }
    });
    Ok(rx)
}

/// The NDJSON a pump gathers, and the progress it owes the subscriber.
struct Chunks {
    tx: mpsc::Sender<Bytes>,
    chunk: Vec<u8>,
    /// A frontier to announce: every change below it is in `chunk` or was sent before.
    progress: Option<u64>,
}

impl Chunks {
    /// Sends the chunk once it is large enough.
    async fn flush_full(&mut self) -> Result<(), mpsc::error::SendError<Bytes>> {
        if self.chunk.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends what is gathered, ending with the progress owed, if any.
    async fn flush(&mut self) -> Result<(), mpsc::error::SendError<Bytes>> {
        if let Some(t) = self.progress.take() {
            self.chunk.extend_from_slice(progress_line(t).as_bytes());
        }
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.tx.send(Bytes::from(std::mem::take(&mut self.chunk))).await
    }
}

/// `{"progress":T}` and a newline.
pub fn progress_line(t: u64) -> String {
    format!("{{\"progress\":{t}}}\n")
}

/// What a TCP subscriber asks for.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub name: String,
    pub token: Option<String>,
    pub filter: Filter,
}

/// Parses a request line; a line with only a token gives a request without a name.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| format!("not a JSON object: {e}"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let text = |key: &str| object.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let mut filter = Filter::new();
    if let Some(w) = object.get("where") {
        let w = w.as_object().ok_or("`where` must be an object of column values")?;
        for (column, value) in w {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            filter.push((column.clone(), text));
        }
    }
    Ok(Request {
        name: text("subscribe").unwrap_or_default(),
        token: text("token"),
        filter,
    })
}

/// Accepts subscribers on `listener` until `stop` turns true.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    live: Arc<LiveViews>,
    token: Option<Arc<str>>,
    active: Active,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, peer)) = accepted else { continue };
                let (live, token, guard) = (Arc::clone(&live), token.clone(), active.guard());
                tokio::spawn(async move {
                    if let Err(e) = subscriber(socket, &live, token.as_deref()).await {
                        tracing::debug!(%peer, error = %e, "subscriber closed");
                    }
                    drop(guard);
                });
            }
            _ = stop.changed() => return,
        }
    }
}

async fn subscriber(socket: tokio::net::TcpStream, live: &LiveViews, token: Option<&str>) -> std::io::Result<()> {
    let (rd, mut wr) = socket.into_split();
    let mut rd = BufReader::new(rd.take(REQUEST_BYTES));
    let request = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut presented = None;
        loop {
            let mut line = String::new();
            if rd.read_line(&mut line).await? == 0 {
                return Ok::<_, std::io::Error>(Err("expected {\"subscribe\":\"NAME\"}".to_string()));
            }
            match parse_request(&line) {
                Ok(r) if r.name.is_empty() && r.token.is_some() && presented.is_none() => presented = r.token,
                Ok(mut r) => {
                    r.token = r.token.or(presented);
                    return Ok(Ok(r));
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Ok(Err("no request within 10s".into())))?;
    let found = request.and_then(|r| {
        let authorized = |secret| {
            r.token
                .as_deref()
                .is_some_and(|t| super::protocol::same_secret(t, secret))
        };
        if token.is_some_and(|secret| !authorized(secret)) {
            return Err("unauthorized: send {\"subscribe\":\"NAME\",\"token\":\"...\"}".into());
        }
        let view = live
            .get(&r.name)
            .ok_or_else(|| format!("unknown collection `{}`", r.name))?;
        start(view, &r.filter).map_err(|e| e.to_string())
    });
    let mut rx = match found {
        Ok(rx) => rx,
        Err(message) => {
            wr.write_all(&message_line("error", message.into())).await?;
            return wr.shutdown().await;
        }
    };
    while let Some(chunk) = rx.recv().await {
        wr.write_all(&chunk).await?;
    }
    wr.shutdown().await
}

/// Binds `addr` for subscribers (before the runtime starts, so errors surface at start-up).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_a_collection_with_a_token_and_a_filter() {
        let r = parse_request(r#"{"subscribe":"counts","token":"t","where":{"user_id":123,"plan":"free"}}"#).unwrap();
        assert_eq!(r.name, "counts");
        assert_eq!(r.token.as_deref(), Some("t"));
        assert_eq!(
            r.filter,
            vec![
                ("plan".to_string(), "free".to_string()),
                ("user_id".to_string(), "123".to_string())
            ]
        );
        let t = parse_request(r#"{"token":"t"}"#).unwrap();
        assert!(t.name.is_empty() && t.token.is_some());
        assert!(parse_request("nope").is_err());
        assert!(parse_request(r#"{"subscribe":"x","where":[1]}"#).is_err());
    }

    #[tokio::test]
    async fn the_snapshot_and_each_batch_of_changes_end_with_progress() {
        use crate::serve::live::{LiveViews, ViewSpec};
        use crate::value::Value;
        let live = LiveViews::new(1, 100, 100);
        let view = live.register(ViewSpec {
            name: "counts".into(),
            columns: vec!["user_id".into()],
            changelog: true,
            snapshot: false,
            flatten: false,
            tally: None,
        });
        view.apply(vec![(vec![Value::Int(1)], 3, 1)], Some(4));
        let mut rx = start(Arc::clone(&view), &Filter::new()).unwrap();
        view.apply(vec![(vec![Value::Int(2)], 5, 1), (vec![Value::Int(3)], 7, 1)], Some(6));
        view.apply(Vec::new(), Some(6));
        view.apply(Vec::new(), None);
        let mut text = String::new();
        while let Some(chunk) = rx.recv().await {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let change = |user: i64, time: u64| serde_json::json!({"row": {"user_id": user}, "time": time, "diff": 1});
        assert_eq!(
            lines,
            [
                change(1, 3),
                serde_json::json!({"progress": 4}),
                change(2, 5),
                change(3, 7),
                serde_json::json!({"progress": 6}),
                serde_json::json!({"done": true}),
            ]
        );
    }
}
