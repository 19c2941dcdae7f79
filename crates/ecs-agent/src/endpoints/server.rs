//! The HTTP/1.1 server both local endpoints run on (docs/endpoints.md
//! §5): a listener that retries binding with
//! backoff, per-connection timeouts, and a handler that sees a small
//! request view and returns a [`Reply`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request as HyperRequest, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::backoff::Backoff;

/// What a handler needs from a request. Bodies are not read: no route
/// served here takes one.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path as sent, not decoded.
    pub path: String,
    pub query: Option<String>,
    pub peer: SocketAddr,
    pub user_agent: String,
    pub forwarded_for: String,
}

impl Request {
    /// The first value of a query parameter (decoded); `Some("")` when the
    /// parameter is present without a value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// A request for `target` (path and query) from `peer`.
    pub fn new(method: &str, target: &str, peer: SocketAddr) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.to_string(), None),
        };
        Self {
            method: method.into(),
            path,
            query,
            peer,
            user_agent: String::new(),
            forwarded_for: String::new(),
        }
    }

    #[cfg(test)]
    pub fn get(target: &str) -> Self {
        Self::new("GET", target, SocketAddr::from(([127, 0, 0, 1], 40000)))
    }
}

/// A complete response.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Compact JSON the way Go's encoder writes it.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        Self::new(status)
            .header("Content-Type", "application/json")
            .body(super::json::go_json(value))
    }

    pub fn text(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self::new(status)
            .header("Content-Type", content_type)
            .body(body)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Go's `http.Redirect` for a path that is not clean.
    pub fn moved_to(location: &str) -> Self {
        Self::new(301).header("Location", location)
    }

    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How long a connection may take to send its request, and a handler to
/// answer it.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub read: Duration,
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            read: Duration::from_secs(5),
            write: Duration::from_secs(5),
        }
    }
}

/// Binds `addr` (retrying with the Go agent's backoff: 1 s to 1 min, ×2,
/// 20 % jitter) and serves until `stop` turns true.
pub async fn serve<H, F>(
    name: &'static str,
    addr: SocketAddr,
    timeouts: Timeouts,
    handler: H,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let handler = Arc::new(handler);
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 2.0, 0.2);
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::error!(server = name, %addr, error = %e, ?delay, "cannot listen; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    tracing::info!(server = name, %addr, "serving");
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(server = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: HyperRequest<Incoming>| {
                let handler = handler.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(answer(&*handler, req, peer, timeouts).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeouts.read)
                .serve_connection(TokioIo::new(stream), service);
            // A connection that stalls (a slow reader, say) is dropped.
            let limit = timeouts.read + timeouts.write + Duration::from_secs(55);
            match tokio::time::timeout(limit, conn).await {
                Ok(Err(e)) => tracing::debug!(server = name, %peer, error = %e, "connection ended"),
                Err(_) => tracing::debug!(server = name, %peer, "connection timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

async fn answer<H, F>(
    handler: &H,
    req: HyperRequest<Incoming>,
    peer: SocketAddr,
    timeouts: Timeouts,
) -> Response<Full<Bytes>>
where
    H: Fn(Request) -> F,
    F: Future<Output = Reply> + Send + 'static,
{
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let request = Request {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        peer,
        user_agent: header("user-agent"),
        forwarded_for: header("x-forwarded-for"),
    };
    tracing::debug!(method = request.method, from = %peer, "Handling http request");
    // A handler that panics costs its request, not the server (Go's
    // net/http answers 500 and closes).
    let reply = match tokio::time::timeout(timeouts.write, tokio::spawn(handler(request))).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) | Err(_) => Reply::new(500).header("Connection", "close"),
    };
    into_response(reply)
}

fn into_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        let Ok(value) = HeaderValue::from_str(&value) else {
            continue;
        };
        let name = match name {
            "Content-Type" => CONTENT_TYPE,
            "Connection" => CONNECTION,
            other => match HeaderName::from_bytes(other.as_bytes()) {
                Ok(n) => n,
                Err(_) => continue,
            },
        };
        headers.append(name, value);
    }
    response
}
