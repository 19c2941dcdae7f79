//! The web console at `/console` (docs/ecs-local.md §1.9): a page, its
//! script and style, all served from the binary, and the JSON routes under
//! `/console/api/` they use. Who may read and who may act is decided by
//! [`access`]; an operator proves to hold a key pair of `--credentials` by
//! an HMAC of a one-time nonce, so the secret never crosses the network.
//!
//! The session token travels in [`PAGE_HEADER`], never in a cookie: a
//! browser sends a host's cookies to every port of it, so a container
//! publishing a port on the plane's host could read one; the page keeps
//! its token in `sessionStorage`, which belongs to the plane's origin alone.

use crate::Context;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");

/// Nothing the page loads comes from anywhere but the plane.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Every request of the page carries it, with its session token or `page`:
/// a page of another origin cannot add a header without a CORS preflight,
/// which the plane never answers, so state-changing requests need it.
pub const PAGE_HEADER: &str = "x-ecs-local-console";
/// What an operator signs, followed by the nonce.
pub const LOGIN_PREFIX: &str = "ecs-local console login\n";

const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const NONCE_TTL: Duration = Duration::from_secs(300);
const MAX_SESSIONS: usize = 256;
const MAX_NONCES: usize = 1024;

/// The operators signed in and the nonces handed out, in memory: a
/// restarted plane asks everyone to sign in again.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<SessionState>,
}

#[derive(Default)]
struct SessionState {
    /// Token → (access key ID, expiry).
    sessions: HashMap<String, (String, Stamp)>,
    /// Nonce → expiry; each is used at most once.
    nonces: HashMap<String, Stamp>,
    /// Orders entries made within the clock's resolution.
    serial: u64,
}

/// When an entry expires, and the order it was made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stamp {
    expires: Instant,
    serial: u64,
}

impl SessionState {
    fn stamp(&mut self, ttl: Duration) -> Stamp {
        self.serial += 1;
        Stamp {
            expires: Instant::now() + ttl,
            serial: self.serial,
        }
    }
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn operator(&self, token: &str) -> Option<String> {
        let state = self.lock();
        let (id, stamp) = state.sessions.get(token)?;
        (stamp.expires > Instant::now()).then(|| id.clone())
    }

    /// A nonce to sign in with, good once within 5 minutes.
    pub fn new_nonce(&self) -> String {
        let nonce = random_hex();
        let mut state = self.lock();
        let now = Instant::now();
        state.nonces.retain(|_, stamp| stamp.expires > now);
        while state.nonces.len() >= MAX_NONCES {
            let Some(oldest) = first_to_expire(state.nonces.iter().map(|(k, s)| (k, *s))) else {
                break;
            };
            state.nonces.remove(&oldest);
        }
        let stamp = state.stamp(NONCE_TTL);
        state.nonces.insert(nonce.clone(), stamp);
        nonce
    }

    /// Whether `nonce` was handed out and is still fresh; it is spent
    /// either way.
    fn spend_nonce(&self, nonce: &str) -> bool {
        self.lock()
            .nonces
            .remove(nonce)
            .is_some_and(|stamp| stamp.expires > Instant::now())
    }

    fn open(&self, access_key_id: &str) -> String {
        let token = random_hex();
        let mut state = self.lock();
        let now = Instant::now();
        state.sessions.retain(|_, (_, stamp)| stamp.expires > now);
        while state.sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = first_to_expire(state.sessions.iter().map(|(k, (_, s))| (k, *s)))
            else {
                break;
            };
            state.sessions.remove(&oldest);
        }
        let stamp = state.stamp(SESSION_TTL);
        state
            .sessions
            .insert(token.clone(), (access_key_id.to_owned(), stamp));
        token
    }

    fn close(&self, token: &str) {
        self.lock().sessions.remove(token);
    }

    /// Checks a `POST /console/api/login` body (`{"accessKeyId", "nonce",
    /// "signature"}`) against `keys` and the nonces handed out, spending
    /// its nonce: the access key ID signed in with, or why not.
    pub fn check_login(&self, keys: &crate::auth::Keys, body: &[u8]) -> Result<String, LoginError> {
        let login: Login = serde_json::from_slice(body).map_err(|_| LoginError::Malformed)?;
        let fresh = self.spend_nonce(&login.nonce);
        let valid = keys.secret(&login.access_key_id).is_some_and(|secret| {
            let mut message = LOGIN_PREFIX.as_bytes().to_vec();
            message.extend_from_slice(login.nonce.as_bytes());
            let expected = hex::encode(hmac_sha256(secret.as_bytes(), &message));
            crate::auth::constant_time_eq(expected.as_bytes(), login.signature.as_bytes())
        });
        if fresh && valid {
            Ok(login.access_key_id)
        } else {
            Err(LoginError::Refused {
                access_key_id: login.access_key_id,
                fresh,
            })
        }
    }
}

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("expected {{\"accessKeyId\", \"nonce\", \"signature\"}}")]
    Malformed,
    /// A key not in the file, a wrong signature, or a nonce not handed
    /// out, spent or stale (`fresh` tells which side failed).
    #[error("sign-in refused for {access_key_id}")]
    Refused { access_key_id: String, fresh: bool },
}

/// The key of the entry that expires first.
fn first_to_expire<'a>(entries: impl Iterator<Item = (&'a String, Stamp)>) -> Option<String> {
    entries
        .min_by_key(|(_, stamp)| *stamp)
        .map(|(k, _)| k.clone())
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// HMAC-SHA256 (RFC 2104), as the page computes it.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::hmac::sign(&key, message).as_ref());
    out
}

/// What a caller may do in the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    /// Stop tasks and change services' desired counts: operators only.
    pub act: bool,
    /// Who acts: the access key ID signed in with, or, without
    /// `--require-auth`, a caller on this host.
    pub operator: Option<String>,
}

/// The console's rules. Under `--require-auth`: a signed-in operator reads
/// and acts from anywhere, a caller on this host (loopback) reads without
/// signing in, anyone else gets nothing. Without it the plane
/// authenticates no one and its API is open to every caller that reaches
/// it: every caller reads, and a caller on this host is the operator.
pub fn access(require_auth: bool, loopback: bool, signed_in: Option<String>) -> Access {
    match (require_auth, signed_in) {
        (true, Some(id)) => Access {
            read: true,
            act: true,
            operator: Some(id),
        },
        (true, None) => Access {
            read: loopback,
            act: false,
            operator: None,
        },
        (false, _) => Access {
            read: true,
            act: loopback,
            operator: loopback.then(|| "a caller on this host".to_owned()),
        },
    }
}

fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(PAGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(session_token_of)
}

/// The session token in a [`PAGE_HEADER`] value: 64 lowercase hex digits,
/// as [`Sessions`] makes them; anything else (`page`) is none.
pub fn session_token_of(value: &str) -> Option<&str> {
    let value = value.trim();
    (value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    .then_some(value)
}

/// Whether the request is addressed to this plane by a name a DNS
/// rebinding attack cannot use: an IP address, `localhost`, or a name the
/// plane was given. A page of another site whose name was made to resolve
/// to this host would otherwise be same-origin with the console, and read
/// it as a caller on loopback. Requests without `Host` are not browsers'.
pub fn host_allowed(host_header: Option<&str>, names: &[String]) -> bool {
    let Some(host) = host_header else {
        return true;
    };
    let host = host.trim();
    // `[v6]:port`, `[v6]`, `name:port`, `name`, `v4:port`, `v4`.
    let name = match host.strip_prefix('[') {
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The refusal for a request [`host_allowed`] turns away, if it does.
fn wrong_host(ctx: &Context, headers: &HeaderMap) -> Option<Response> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if host_allowed(host, &ctx.host_names) {
        return None;
    }
    tracing::warn!(
        host,
        "console request for a host name the plane was not given; refused"
    );
    Some(refuse(
        StatusCode::FORBIDDEN,
        "The console answers requests addressed to this host by IP address, localhost or a name it was given (--host-name, --tls-name).",
    ))
}

fn caller_access(ctx: &Context, peer: &crate::Peer, headers: &HeaderMap) -> Access {
    let signed_in = session_token(headers).and_then(|t| ctx.console.operator(t));
    access(ctx.auth.is_some(), peer.0.ip().is_loopback(), signed_in)
}

fn json_answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    json_answer(status, &json!({ "message": message }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /console`.
pub(crate) async fn page(State(ctx): State<Arc<Context>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = wrong_host(&ctx, &headers) {
        return refusal;
    }
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /console/app.js`.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /console/app.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /console/api/session`: what this caller may do, and a nonce to
/// sign in with when the plane requires it.
pub(crate) async fn session(
    State(ctx): State<Arc<Context>>,
    ConnectInfo(peer): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = wrong_host(&ctx, &headers) {
        return refusal;
    }
    let access = caller_access(&ctx, &peer, &headers);
    let require_auth = ctx.auth.is_some();
    let nonce = (require_auth && !access.act).then(|| ctx.console.new_nonce());
    json_answer(
        StatusCode::OK,
        &json!({
            "requireAuth": require_auth,
            "canRead": access.read,
            "canAct": access.act,
            "operator": access.operator,
            "nonce": nonce,
        }),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    access_key_id: String,
    nonce: String,
    /// Lowercase hex of HMAC-SHA256(secret, LOGIN_PREFIX + nonce).
    signature: String,
}

/// The refusal of a state-changing request that does not come from the
/// page at an allowed host, if it does not.
fn not_from_the_page(ctx: &Context, headers: &HeaderMap) -> Option<Response> {
    if headers.get(PAGE_HEADER).is_none() {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "Missing the console's request header.",
        ));
    }
    wrong_host(ctx, headers)
}

/// `POST /console/api/login`.
pub(crate) async fn login(
    State(ctx): State<Arc<Context>>,
    ConnectInfo(peer): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = not_from_the_page(&ctx, &headers) {
        return refusal;
    }
    let Some(keys) = &ctx.auth else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "This plane does not require signing in (it runs without --require-auth).",
        );
    };
    let operator = match ctx.console.check_login(keys, &body) {
        Ok(operator) => operator,
        Err(LoginError::Malformed) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Expected {\"accessKeyId\", \"nonce\", \"signature\"}.",
            )
        }
        Err(LoginError::Refused {
            access_key_id,
            fresh,
        }) => {
            tracing::warn!(peer = %peer.0, access_key_id, fresh, "console sign-in refused");
            return refuse(
                StatusCode::FORBIDDEN,
                "That key pair is not one of the plane's, or the sign-in expired; try again.",
            );
        }
    };
    let token = ctx.console.open(&operator);
    tracing::info!(peer = %peer.0, access_key_id = operator, "console sign-in");
    json_answer(
        StatusCode::OK,
        &json!({ "operator": operator, "token": token }),
    )
}

/// `POST /console/api/logout`.
pub(crate) async fn logout(State(ctx): State<Arc<Context>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = not_from_the_page(&ctx, &headers) {
        return refusal;
    }
    if let Some(token) = session_token(&headers) {
        ctx.console.close(token);
    }
    json_answer(StatusCode::OK, &json!({}))
}

#[derive(Deserialize)]
pub(crate) struct StateQuery {
    cluster: Option<String>,
}

/// `GET /console/api/state?cluster=NAME`.
pub(crate) async fn state(
    State(ctx): State<Arc<Context>>,
    ConnectInfo(peer): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
    Query(query): Query<StateQuery>,
) -> Response {
    if let Some(refusal) = wrong_host(&ctx, &headers) {
        return refusal;
    }
    if !caller_access(&ctx, &peer, &headers).read {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Sign in with a key pair of the plane.",
        );
    }
    let snapshot = ctx
        .blocking(move |ctx| {
            ctx.store
                .read(|st| crate::api::console::snapshot(st, query.cluster.as_deref()))
        })
        .await;
    match snapshot {
        Some(body) => json_answer(StatusCode::OK, &body),
        None => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The state could not be read.",
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StopTask {
    cluster: String,
    task: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DesiredCount {
    cluster: String,
    service: String,
    desired_count: i64,
}

/// The operator behind an action request from the page, if the caller is
/// one.
fn operator(ctx: &Context, peer: &crate::Peer, headers: &HeaderMap) -> Option<String> {
    let access = caller_access(ctx, peer, headers);
    access.operator.filter(|_| access.act)
}

const NOT_AN_OPERATOR: &str = "Only a signed-in operator can change tasks and services.";

/// The API's answer to the page: its body, or `{"code", "message"}`.
fn api_answer(result: Option<Result<Value, crate::api::ApiError>>) -> Response {
    match result {
        Some(Ok(body)) => json_answer(StatusCode::OK, &body),
        Some(Err(e)) => json_answer(
            e.status(),
            &json!({"code": e.code(), "message": e.to_string()}),
        ),
        None => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The request handler failed.",
        ),
    }
}

/// An operator's change from the page: checks who asks and decodes the
/// body (`usage` says what it should be), then runs `change` on the
/// blocking pool and answers with the API's answer.
async fn operator_change<T: serde::de::DeserializeOwned + Send + 'static>(
    ctx: Arc<Context>,
    peer: crate::Peer,
    headers: HeaderMap,
    body: &[u8],
    usage: &'static str,
    change: impl FnOnce(&Context, &str, T) -> Result<Value, crate::api::ApiError> + Send + 'static,
) -> Response {
    if let Some(refusal) = not_from_the_page(&ctx, &headers) {
        return refusal;
    }
    let Some(who) = operator(&ctx, &peer, &headers) else {
        return refuse(StatusCode::FORBIDDEN, NOT_AN_OPERATOR);
    };
    let Ok(req) = serde_json::from_slice::<T>(body) else {
        return refuse(StatusCode::BAD_REQUEST, usage);
    };
    api_answer(ctx.blocking(move |ctx| change(ctx, &who, req)).await)
}

/// `POST /console/api/stop-task`.
pub(crate) async fn stop_task(
    State(ctx): State<Arc<Context>>,
    ConnectInfo(peer): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    operator_change(
        ctx,
        peer,
        headers,
        &body,
        "Expected {\"cluster\", \"task\"}.",
        |ctx, who, req: StopTask| {
            tracing::info!(operator = who, task = req.task, "console: stop task");
            crate::api::console::stop_task(ctx, &req.cluster, &req.task, who)
        },
    )
    .await
}

/// `POST /console/api/desired-count`.
pub(crate) async fn desired_count(
    State(ctx): State<Arc<Context>>,
    ConnectInfo(peer): ConnectInfo<crate::Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    operator_change(
        ctx,
        peer,
        headers,
        &body,
        "Expected {\"cluster\", \"service\", \"desiredCount\"}.",
        |ctx, who, req: DesiredCount| {
            tracing::info!(
                operator = who,
                service = req.service,
                desired_count = req.desired_count,
                "console: desired count"
            );
            crate::api::console::set_desired_count(
                ctx,
                &req.cluster,
                &req.service,
                req.desired_count,
            )
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn who_may_read_and_act() {
        let op = || Some("AKID".to_owned());
        // Under --require-auth.
        assert_eq!(access(true, true, op()), access(true, false, op()));
        assert!(access(true, false, op()).act);
        assert_eq!(access(true, false, op()).operator.as_deref(), Some("AKID"));
        let local = access(true, true, None);
        assert!(local.read && !local.act && local.operator.is_none());
        let stranger = access(true, false, None);
        assert!(!stranger.read && !stranger.act);
        // Without it.
        let local = access(false, true, None);
        assert!(local.read && local.act && local.operator.is_some());
        let remote = access(false, false, None);
        assert!(remote.read && !remote.act && remote.operator.is_none());
    }

    #[test]
    fn nonces_are_spent_once_and_sessions_are_bounded() {
        let sessions = Sessions::default();
        let nonce = sessions.new_nonce();
        assert!(sessions.spend_nonce(&nonce));
        assert!(!sessions.spend_nonce(&nonce));
        assert!(!sessions.spend_nonce("made-up"));
        let first = sessions.open("AKID");
        assert_eq!(sessions.operator(&first).as_deref(), Some("AKID"));
        for _ in 0..MAX_SESSIONS {
            sessions.open("AKID");
        }
        assert_eq!(sessions.lock().sessions.len(), MAX_SESSIONS);
        assert!(sessions.operator(&first).is_none(), "the oldest was kept");
        sessions.close(&first);
        for _ in 0..2 * MAX_NONCES {
            sessions.new_nonce();
        }
        assert!(sessions.lock().nonces.len() <= MAX_NONCES);
    }

    #[test]
    fn a_sign_in_needs_a_fresh_nonce_and_the_right_secret_once() {
        let keys = crate::auth::Keys::from_credentials_file(
            "[default]\naws_access_key_id = AKID\naws_secret_access_key = secret\n",
        )
        .unwrap();
        let sessions = Sessions::default();
        let body = |nonce: &str, secret: &str| {
            let mut message = LOGIN_PREFIX.as_bytes().to_vec();
            message.extend_from_slice(nonce.as_bytes());
            let signature = hex::encode(hmac_sha256(secret.as_bytes(), &message));
            json!({"accessKeyId": "AKID", "nonce": nonce, "signature": signature}).to_string()
        };
        let nonce = sessions.new_nonce();
        let good = body(&nonce, "secret");
        assert_eq!(
            sessions.check_login(&keys, good.as_bytes()).unwrap(),
            "AKID"
        );
        let Err(LoginError::Refused { fresh, .. }) = sessions.check_login(&keys, good.as_bytes())
        else {
            panic!("a replayed sign-in passed");
        };
        assert!(!fresh);
        let nonce = sessions.new_nonce();
        let Err(LoginError::Refused { fresh, .. }) =
            sessions.check_login(&keys, body(&nonce, "wrong").as_bytes())
        else {
            panic!("a wrong secret passed");
        };
        assert!(fresh);
        assert!(matches!(
            sessions.check_login(&keys, b"{"),
            Err(LoginError::Malformed)
        ));
    }

    #[test]
    fn only_a_token_as_sessions_make_them_is_a_token() {
        let token = random_hex();
        assert_eq!(session_token_of(&token), Some(token.as_str()));
        assert_eq!(
            session_token_of(&format!(" {token} ")),
            Some(token.as_str())
        );
        for value in [
            "page",
            "",
            "1",
            &token[1..],
            &token.to_uppercase(),
            &format!("{token}0"),
        ] {
            assert_eq!(session_token_of(value), None, "{value}");
        }
    }

    #[test]
    fn hosts_a_rebinding_attack_cannot_name_are_allowed() {
        let names = vec!["plane.internal".to_owned()];
        for host in [
            "127.0.0.1:8000",
            "127.0.0.1",
            "172.17.0.1:8000",
            "[::1]:8000",
            "[::1]",
            "localhost:8000",
            "LOCALHOST",
            "plane.internal:8000",
        ] {
            assert!(host_allowed(Some(host), &names), "{host}");
        }
        for host in [
            "evil.example:8000",
            "evil.example",
            "[evil]:80",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!host_allowed(Some(host), &names), "{host}");
        }
        assert!(host_allowed(None, &names));
    }
}
