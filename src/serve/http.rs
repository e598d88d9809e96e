//! The HTTP endpoint of `sluice serve` (`--http`): status, Prometheus metrics, lookups in the
//! outputs' live views, and streamed subscriptions; plus the `--subscribe` TCP listener. Both
//! run on a thread and tokio runtime of their own, so they keep answering while the server
//! drains at shutdown, and subscribers receive the last changes.
//!
//! | request | answer |
//! |---|---|
//! | `GET /status` | JSON: workers, watermark and lag per source, uptime, connections, queues |
//! | `GET /metrics` | Prometheus text exposition (version 0.0.4) |
//! | `GET /collections` | JSON: every output with its columns, rows, updates and frontier |
//! | `GET /collections/NAME?COL=VALUE&...` | JSON: the output's current rows whose columns equal the values |
//! | `GET /subscribe/NAME?COL=VALUE&...` | chunked NDJSON: snapshot, then changes (see [`super::subscribe`]) |
//!
//! With `--auth-token`, every request needs `Authorization: Bearer TOKEN` (the scheme in any
//! case; 401 otherwise). Path segments and query values are percent-decoded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use super::live::{Filter, LiveViews};
use super::metrics::{metrics_text, status_json, Utilization};
use super::state::ServeState;
use super::subscribe::{self, Active, ActiveGuard};
use super::ServeError;

type Body = BoxBody<Bytes, Infallible>;

/// What the HTTP and subscription endpoints serve.
pub struct Endpoint {
    pub http: Option<SocketAddr>,
    pub subscribe: Option<SocketAddr>,
    pub token: Option<String>,
    pub pipeline: String,
}

/// The running endpoints; [`Endpoints::stop`] ends them once the outputs are complete.
pub struct Endpoints {
    pub http: Option<SocketAddr>,
    pub subscribe: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    active: Active,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct App {
    state: Arc<ServeState>,
    live: Arc<LiveViews>,
    token: Option<Arc<str>>,
    pipeline: String,
    utilization: Mutex<Utilization>,
    active: Active,
}

/// Binds the endpoints and starts serving them on a thread of their own.
pub fn start(endpoint: Endpoint, state: Arc<ServeState>, live: Arc<LiveViews>) -> Result<Endpoints, ServeError> {
    let bind = |addr: SocketAddr| subscribe::bind(addr).map_err(|source| ServeError::Bind { addr, source });
    let http = endpoint.http.map(bind).transpose()?;
    let subs = endpoint.subscribe.map(bind).transpose()?;
    let addr = |l: &Option<std::net::TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let (http_addr, subscribe_addr) = (addr(&http), addr(&subs));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let active = Active::default();
    let app = Arc::new(App {
        utilization: Mutex::new(Utilization::new(live.busy_ns.len())),
        state,
        live,
        token: endpoint.token.map(Arc::from),
        pipeline: endpoint.pipeline,
        active: active.clone(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let thread = std::thread::Builder::new()
        .name("sluice-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                if let Some(listener) = http {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => tasks.push(tokio::spawn(serve_http(l, Arc::clone(&app), stopped.clone()))),
                        Err(e) => tracing::error!(error = %e, "http listener"),
                    }
                }
                if let Some(listener) = subs {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => tasks.push(tokio::spawn(subscribe::serve_tcp(
                            l,
                            Arc::clone(&app.live),
                            app.token.clone(),
                            app.active.clone(),
                            stopped.clone(),
                        ))),
                        Err(e) => tracing::error!(error = %e, "subscribe listener"),
                    }
                }
                for task in tasks {
                    let _ = task.await;
                }
                // Subscribers finish their last lines (the outputs are complete by now).
                let deadline = Instant::now() + Duration::from_secs(5);
                while app.active.count() > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        })
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    Ok(Endpoints {
        http: http_addr,
        subscribe: subscribe_addr,
        stop,
        active,
        thread: Some(thread),
    })
}

impl Endpoints {
    /// Stops accepting, lets open subscriptions write their last lines (at most 5 s), and waits.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Subscriptions open now.
    pub fn subscribers(&self) -> usize {
        self.active.count()
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve_http(listener: tokio::net::TcpListener, app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let app = Arc::clone(&app);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let app = Arc::clone(&app);
                        async move { Ok::<_, Infallible>(handle(&app, req)) }
                    });
                    let io = hyper_util::rt::TokioIo::new(socket);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
            _ = stop.changed() => return,
        }
    }
}

fn handle(app: &App, req: Request<Incoming>) -> Response<Body> {
    if let Some(token) = &app.token {
        let presented = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        if !presented.is_some_and(|p| super::protocol::same_secret(p, token)) {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized: send Authorization: Bearer TOKEN",
            );
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    if req.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET");
    }
    let filter = query(req.uri().query());
    let segments = path_segments(req.uri().path());
    let segments: Vec<&str> = segments.iter().map(|s| &**s).collect();
    match segments.as_slice() {
        ["status"] => {
            let now = wall_clock_ms();
            let util = lock(&app.utilization).sample(&app.live, app.state.uptime());
            json(
                StatusCode::OK,
                &status_json(&app.pipeline, &app.state, &app.live, &util, now),
            )
        }
        ["metrics"] => {
            let util = lock(&app.utilization).sample(&app.live, app.state.uptime());
            let text = metrics_text(&app.state, &app.live, &util, wall_clock_ms(), app.active.count());
            let mut response = Response::new(full(text));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        ["collections"] => {
            let stats: Vec<_> = app.live.all().iter().map(|v| v.stats()).collect();
            json(StatusCode::OK, &serde_json::json!({ "collections": stats }))
        }
        ["collections", name] => {
            let Some(view) = app.live.get(name) else {
                return error(StatusCode::NOT_FOUND, &format!("unknown collection `{name}`"));
            };
            match view.lookup(&filter) {
                Ok((rows, frontier)) => {
                    let rows: Vec<serde_json::Value> = rows
                        .iter()
                        .flat_map(|(row, n)| {
                            let object = serde_json::Value::Object(view.row_json(row));
                            std::iter::repeat_n(object, (*n).max(0) as usize)
                        })
                        .collect();
                    let body = serde_json::json!({
                        "name": name,
                        "columns": view.spec.visible_columns(),
                        "frontier": frontier,
                        "rows": rows,
                    });
                    json(StatusCode::OK, &body)
                }
                Err(e @ super::live::ViewError::UnknownColumn { .. }) => error(StatusCode::BAD_REQUEST, &e.to_string()),
                Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
            }
        }
        ["subscribe", name] => {
            let Some(view) = app.live.get(name) else {
                return error(StatusCode::NOT_FOUND, &format!("unknown collection `{name}`"));
            };
            match subscribe::start(view, &filter) {
                Ok(rx) => {
                    let body = Stream {
                        rx,
                        _guard: app.active.guard(),
                    };
                    let mut response = Response::new(BodyExt::boxed(body));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/x-ndjson"),
                    );
                    response
                }
                Err(e @ super::live::ViewError::UnknownColumn { .. }) => error(StatusCode::BAD_REQUEST, &e.to_string()),
                Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not found: GET /status, /metrics, /collections, /collections/NAME, /subscribe/NAME",
        ),
    }
}

/// A streamed response body: the chunks of a subscription, while it lasts.
struct Stream {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    _guard: ActiveGuard,
}

impl hyper::body::Body for Stream {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// The token of an `Authorization` header's value: the scheme `Bearer` in any case (RFC 9110
/// makes schemes case-insensitive), then one or more spaces.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("Bearer").then(|| token.trim_start())
}

/// A path's segments, percent-decoded (`/collections/user%5Fhourly` names `user_hourly`);
/// bytes that do not decode to UTF-8 are replaced, so they name nothing.
pub fn path_segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// `a=1&b=x%20y` as (column, value) pairs.
pub fn query(query: Option<&str>) -> Filter {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn full(text: String) -> Body {
    Full::new(Bytes::from(text)).boxed()
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_to_column_values() {
        assert_eq!(
            query(Some("user_id=123&window_start=2024-03-04T01%3A00%3A00Z&plan=a+b")),
            vec![
                ("user_id".to_string(), "123".to_string()),
                ("window_start".to_string(), "2024-03-04T01:00:00Z".to_string()),
                ("plan".to_string(), "a b".to_string()),
            ]
        );
        assert!(query(None).is_empty());
    }

    #[test]
    fn bearer_schemes_match_in_any_case_and_tokens_exactly() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(
            path_segments("/collections/user%5Fhourly"),
            ["collections", "user_hourly"]
        );
        assert_eq!(path_segments("/subscribe/a%2Fb/"), ["subscribe", "a/b"]);
        assert_eq!(path_segments("/status"), ["status"]);
        assert_eq!(path_segments("/collections/%FF"), ["collections", "\u{fffd}"]);
    }
}
