//! The approval console on the admin listener: its pages and assets (served from the binary, no
//! third-party anything), the browser's JSON API, and the management of passkey approvers
//! (invitations, the list, revocation — from this host only).
//!
//! Safety at the edge: a strict Content-Security-Policy (no inline script or style), framing
//! refused, no CORS, state-changing calls only from the console's own origin, sign-in and
//! registration rate-limited per peer, a session cookie that is HttpOnly, SameSite=Strict and
//! Secure under TLS. A session only shows holds: every verdict needs a fresh passkey assertion
//! over the verdict itself.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential, Url};

use super::admin::AdminState;
use super::holds_api::{counted, refusal_status};
use crate::audit::DecisionLog;
use crate::config::ConsoleConfig;
use crate::console::{Console, ConsoleError, ConsoleSettings};
use crate::holds::{Status, Verdict, VerdictStatement, timestamp};
use crate::pipeline::Pipeline;
use crate::state::parse_window;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";
/// Sign-in and registration attempts per peer address per minute.
const ATTEMPTS_PER_MINUTE: u32 = 20;

const CONSOLE_HTML: &str = include_str!("../console/assets/console.html");
const REGISTER_HTML: &str = include_str!("../console/assets/register.html");
const CONSOLE_JS: &str = include_str!("../console/assets/console.js");
const REGISTER_JS: &str = include_str!("../console/assets/register.js");
const PASSKEY_JS: &str = include_str!("../console/assets/passkey.js");
const CONSOLE_CSS: &str = include_str!("../console/assets/console.css");

/// The relying party, with the origin defaulting to `http(s)://localhost:<admin port>`.
pub fn settings(config: ConsoleConfig, admin: SocketAddr, tls: bool) -> Result<ConsoleSettings, String> {
    let scheme = if tls { "https" } else { "http" };
    let origin = match config.origin {
        Some(origin) => origin,
        None => Url::parse(&format!("{scheme}://localhost:{}", admin.port())).map_err(|e| e.to_string())?,
    };
    let rp_id = config.rp_id.unwrap_or_else(|| origin.host_str().unwrap_or("localhost").to_string());
    Ok(ConsoleSettings { rp_id, origin, session_ttl: config.session_ttl })
}

pub fn router() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(|s: State<Arc<AdminState>>| page(s, CONSOLE_HTML)))
        .route("/console/register", get(|s: State<Arc<AdminState>>| page(s, REGISTER_HTML)))
        .route("/console/assets/{name}", get(asset))
        .route("/console/api/register/start", post(register_start))
        .route("/console/api/register/finish", post(register_finish))
        .route("/console/api/signin/start", post(sign_in_start))
        .route("/console/api/signin/finish", post(sign_in_finish))
        .route("/console/api/signout", post(sign_out))
        .route("/console/api/session", get(session))
        .route("/console/api/holds", get(holds))
        .route("/console/api/holds/{id}/options", post(verdict_options))
        .route("/console/api/holds/{id}/verdict", post(verdict))
        .route("/approvers", get(approvers))
        .route("/approvers/invites", post(invite))
        .route("/approvers/{name}", delete(revoke))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::map_response(hardened))
}

/// Every console response: no framing, no sniffing, no caching, no referrer, this CSP.
async fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Per-peer attempts at signing in or registering, in one-minute windows.
#[derive(Default)]
pub struct Limiter(Mutex<HashMap<IpAddr, (Instant, u32)>>);

impl Limiter {
    fn allow(&self, peer: IpAddr) -> bool {
        let now = Instant::now();
        let Ok(mut seen) = self.0.lock() else { return false };
        // Bounded: windows that ended are forgotten whenever the map grows large.
        if seen.len() > 10_000 {
            seen.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = seen.entry(peer).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= ATTEMPTS_PER_MINUTE
    }
}

/// A refused call: its status, code and message, as `{"error", "message"}`.
pub struct Refusal(StatusCode, &'static str, String);

/// Counts a passkey ceremony's outcome (`ok`, or the refusal's code) in the metrics.
fn counted_as(state: &AdminState, event: &'static str, answer: Answer) -> Answer {
    let result = match &answer {
        Ok(_) => "ok",
        Err(Refusal(_, code, _)) => code,
    };
    state.metrics().console_event(event, result);
    answer
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1, "message": self.2}))).into_response()
    }
}

impl From<ConsoleError> for Refusal {
    fn from(e: ConsoleError) -> Self {
        refused(e)
    }
}

type Answer = Result<Response, Refusal>;

fn error(status: StatusCode, code: &'static str, message: impl std::fmt::Display) -> Refusal {
    Refusal(status, code, message.to_string())
}

fn refused(e: ConsoleError) -> Refusal {
    let (status, code) = match &e {
        ConsoleError::BadInvite => (StatusCode::FORBIDDEN, "bad_invite"),
        ConsoleError::NoCeremony => (StatusCode::BAD_REQUEST, "no_ceremony"),
        ConsoleError::Passkey(_) => (StatusCode::FORBIDDEN, "passkey_refused"),
        ConsoleError::UnknownCredential => (StatusCode::FORBIDDEN, "unknown_credential"),
        ConsoleError::AlreadyEnrolled => (StatusCode::CONFLICT, "already_enrolled"),
        ConsoleError::BadName => (StatusCode::BAD_REQUEST, "bad_name"),
        ConsoleError::State(_) => (StatusCode::SERVICE_UNAVAILABLE, "state_unavailable"),
    };
    tracing::warn!(code, error = %e, "console request refused");
    error(status, code, e)
}

fn console(state: &AdminState) -> Result<Arc<Console>, Refusal> {
    state.console().cloned().ok_or_else(|| error(StatusCode::NOT_FOUND, "no_console", "[console] is not enabled"))
}

async fn page(State(state): State<Arc<AdminState>>, html: &'static str) -> Answer {
    console(&state)?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

async fn asset(State(state): State<Arc<AdminState>>, Path(name): Path<String>) -> Answer {
    console(&state)?;
    let (kind, body) = match name.as_str() {
        "console.js" => ("text/javascript; charset=utf-8", CONSOLE_JS),
        "register.js" => ("text/javascript; charset=utf-8", REGISTER_JS),
        "passkey.js" => ("text/javascript; charset=utf-8", PASSKEY_JS),
        "console.css" => ("text/css; charset=utf-8", CONSOLE_CSS),
        _ => return Err(error(StatusCode::NOT_FOUND, "no_such_asset", name)),
    };
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}

/// A state-changing call from the browser: the console's own origin, a JSON body.
fn from_console<T: serde::de::DeserializeOwned>(
    console: &Console,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Refusal> {
    let origin = console.settings().origin.origin().ascii_serialization();
    if headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) != Some(origin.as_str()) {
        return Err(error(StatusCode::FORBIDDEN, "cross_origin", format!("only {origin} may call the console API")));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return Err(error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json", "the body must be application/json"));
    }
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_request", e))
}

/// The session cookie's name: `__Host-` under TLS, so no other origin can set it.
fn cookie_name(console: &Console) -> &'static str {
    if console.settings().origin.scheme() == "https" { "__Host-cg_session" } else { "cg_session" }
}

fn session_token<'a>(console: &Console, headers: &'a HeaderMap) -> Option<&'a str> {
    let name = cookie_name(console);
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// The signed-in approver, or 401.
async fn signed_in(state: &AdminState, headers: &HeaderMap) -> Result<(Arc<Console>, String), Refusal> {
    let console = console(state)?;
    let Some(token) = session_token(&console, headers) else {
        return Err(error(StatusCode::UNAUTHORIZED, "signed_out", "sign in with a passkey"));
    };
    match console.session(token).await {
        Ok(Some(approver)) => Ok((console, approver)),
        Ok(None) => Err(error(StatusCode::UNAUTHORIZED, "signed_out", "the session ended: sign in with a passkey")),
        Err(e) => Err(refused(e)),
    }
}

fn limited(state: &AdminState, peer: SocketAddr) -> Result<(), Refusal> {
    match state.console_limiter().allow(peer.ip()) {
        true => Ok(()),
        false => Err(error(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", "too many attempts; wait a minute")),
    }
}

fn ok(body: Value) -> Answer {
    Ok(axum::Json(body).into_response())
}

fn loaded(state: &AdminState) -> Result<&(Arc<Pipeline>, Arc<DecisionLog>), Refusal> {
    state.loaded().ok_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "policies not loaded yet"))
}

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    error(StatusCode::SERVICE_UNAVAILABLE, "state_unavailable", e)
}

/// Writes an approver-management record to the decision log (reported, never undone, if the
/// log refuses it).
async fn log_event(state: &AdminState, record: Value) {
    if let Some((_, log)) = state.loaded()
        && let Err(e) = log.append(&record).await
    {
        tracing::error!(error = %e, event = record["event"].as_str(), "not recorded in the decision log");
    }
}

/// The session cookie: set (`token` with its lifetime) or cleared.
fn with_cookie(console: &Console, mut response: Response, token: Option<&str>) -> Response {
    let secure = if console.settings().origin.scheme() == "https" { "; Secure" } else { "" };
    let max_age = token.map_or(0, |_| console.settings().session_ttl.as_secs());
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
        cookie_name(console),
        token.unwrap_or_default()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterStart {
    token: String,
}

async fn register_start(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    limited(&state, peer)?;
    let console = console(&state)?;
    let request: RegisterStart = from_console(&console, &headers, &body)?;
    let name = console.invited(&request.token).await?;
    let (ceremony, options) = console.register_start(&request.token).await?;
    ok(json!({"ceremony": ceremony, "name": name, "options": options}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterFinish {
    ceremony: String,
    credential: RegisterPublicKeyCredential,
}

async fn register_finish(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let answer = async {
        limited(&state, peer)?;
        let console = console(&state)?;
        let request: RegisterFinish = from_console(&console, &headers, &body)?;
        let now = Utc::now();
        let enrolment = console.register_finish(&request.ceremony, &request.credential, now).await?;
        tracing::info!(approver = enrolment.approver, credential = enrolment.credential, "passkey enrolled");
        let mut record = serde_json::to_value(&enrolment).unwrap_or_default();
        record["event"] = json!("approver_enrolled");
        record["timestamp"] = json!(timestamp(now));
        log_event(&state, record).await;
        ok(json!({"registered": true, "approver": enrolment.approver, "credential": enrolment.credential}))
    }
    .await;
    counted_as(&state, "register", answer)
}

async fn sign_in_start(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    limited(&state, peer)?;
    let console = console(&state)?;
    from_console::<Value>(&console, &headers, &body)?;
    let (ceremony, options) = console.sign_in_start().await?;
    ok(json!({"ceremony": ceremony, "options": options}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInFinish {
    ceremony: String,
    credential: PublicKeyCredential,
}

async fn sign_in_finish(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let answer = async {
        limited(&state, peer)?;
        let console = console(&state)?;
        let request: SignInFinish = from_console(&console, &headers, &body)?;
        let (token, approver, expires) =
            console.sign_in_finish(&request.ceremony, &request.credential, Utc::now()).await?;
        tracing::info!(approver, "console sign-in");
        let response = axum::Json(json!({"approver": approver, "expires_at": timestamp(expires)})).into_response();
        Ok(with_cookie(&console, response, Some(&token)))
    }
    .await;
    counted_as(&state, "sign_in", answer)
}

async fn sign_out(State(state): State<Arc<AdminState>>, headers: HeaderMap, body: axum::body::Bytes) -> Answer {
    let console = console(&state)?;
    from_console::<Value>(&console, &headers, &body)?;
    if let Some(token) = session_token(&console, &headers) {
        console.sign_out(token).await?;
    }
    Ok(with_cookie(&console, axum::Json(json!({"signed_out": true})).into_response(), None))
}

async fn session(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Answer {
    let (_, approver) = signed_in(&state, &headers).await?;
    ok(json!({"approver": approver}))
}

/// The pending holds, oldest first, with what an approver needs to decide each.
async fn holds(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Answer {
    let (_, approver) = signed_in(&state, &headers).await?;
    let (pipeline, _) = loaded(&state)?;
    let now = Utc::now();
    let holds = pipeline.holds().list().await.map_err(unavailable)?;
    let pending: Vec<Value> = holds
        .iter()
        .filter(|hold| hold.status(now) == Status::Pending)
        .map(|hold| {
            let mut view = hold.view(now);
            view["seconds_left"] = json!(seconds_left(&hold.expires_at, now));
            let decided = hold.approvals.iter().map(|a| &a.approver).chain(hold.rejections.iter().map(|r| &r.approver));
            view["you_decided"] = json!(decided.into_iter().any(|name| *name == approver));
            view
        })
        .collect();
    ok(json!({"approver": approver, "now": timestamp(now), "holds": pending}))
}

fn seconds_left(expires_at: &str, now: DateTime<Utc>) -> i64 {
    DateTime::parse_from_rfc3339(expires_at).map_or(0, |t| (t.with_timezone(&Utc) - now).num_seconds().max(0))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsRequest {
    verdict: Verdict,
    #[serde(default)]
    reason: String,
}

/// The statement of a verdict and the options that ask the approver's authenticator to sign it.
async fn verdict_options(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let (console, approver) = signed_in(&state, &headers).await?;
    let request: OptionsRequest = from_console(&console, &headers, &body)?;
    if request.verdict == Verdict::Reject && request.reason.trim().is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "no_reason", "a rejection needs a reason"));
    }
    let (pipeline, _) = loaded(&state)?;
    let now = Utc::now();
    let hold = pipeline
        .holds()
        .get(&id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no_such_hold", format!("no hold {id}")))?;
    if hold.status(now) != Status::Pending {
        return Err(error(StatusCode::CONFLICT, "not_pending", format!("the hold is {}", hold.status(now).as_str())));
    }
    let statement = VerdictStatement::new(&hold, request.verdict, request.reason.trim(), now);
    let options = console.verdict_options(&approver, &statement).await?;
    ok(json!({"statement": statement, "options": options}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictRequest {
    statement: VerdictStatement,
    credential: PublicKeyCredential,
}

/// A verdict proven by a passkey assertion over its statement, counted like a key-signed one.
async fn verdict(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let answer = async {
        let (console, approver) = signed_in(&state, &headers).await?;
        let request: VerdictRequest = from_console(&console, &headers, &body)?;
        let (pipeline, log) = loaded(&state)?;
        let now = Utc::now();
        let proof = console.prove(&approver, &request.statement, &request.credential, now).await.map_err(|e| {
            state.metrics().verdict("passkey_refused");
            refused(e)
        })?;
        let hold = pipeline.holds().count(&id, &request.statement, &approver, now).await.map_err(|refusal| {
            let (status, code) = refusal_status(&refusal);
            tracing::warn!(hold = id, code, error = %refusal, "hold verdict refused");
            state.metrics().verdict(code);
            error(status, code, refusal)
        })?;
        let proof = serde_json::to_value(&proof).ok();
        counted(&state, log, &hold, &approver, &request.statement, "", proof, now).await;
        ok(json!({"approver": approver, "hold": hold.view(now)}))
    }
    .await;
    counted_as(&state, "verdict", answer)
}

/// Managing approvers changes who can release money: by an operator on this host only (the CLI on
/// the machine, or through `kubectl port-forward` / an SSH tunnel), never from a web page.
fn local_only(peer: SocketAddr, headers: &HeaderMap) -> Result<(), Refusal> {
    match super::admin::from_operator(peer, headers) {
        true => Ok(()),
        false => Err(error(StatusCode::FORBIDDEN, "not_local", "approvers are managed from the handler's host only")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    name: String,
    #[serde(default)]
    ttl: Option<String>,
}

/// `POST /approvers/invites {name, ttl}`: a one-time registration link.
async fn invite(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    local_only(peer, &headers)?;
    let console = console(&state)?;
    let request: InviteRequest =
        serde_json::from_slice(&body).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_request", e))?;
    let ttl = request.ttl.as_deref().map(parse_window).transpose();
    let ttl = ttl.map_err(|e| error(StatusCode::BAD_REQUEST, "bad_ttl", e))?.unwrap_or(Duration::from_secs(3600));
    let now = Utc::now();
    let (token, expires_at) = console.invite(&request.name, ttl, now).await?;
    let mut link = console.settings().origin.clone();
    link.set_path("/console/register");
    link.query_pairs_mut().append_pair("token", &token);
    let record = json!({"event": "approver_invited", "timestamp": timestamp(now), "approver": request.name, "expires_at": expires_at});
    log_event(&state, record).await;
    ok(json!({"name": request.name, "link": link.to_string(), "expires_at": expires_at}))
}

/// `GET /approvers`: every approver, by key (configured) or by passkey (enrolled), one name each.
async fn approvers(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Answer {
    local_only(peer, &headers)?;
    let mut names: BTreeMap<String, Value> = BTreeMap::new();
    if let Some((pipeline, _)) = state.loaded() {
        for key in &pipeline.holds().settings().approvers {
            names.insert(key.name.clone(), json!({"name": key.name, "key": key.fingerprint, "passkeys": []}));
        }
    }
    if let Some(console) = state.console() {
        for approver in console.approvers().await? {
            let entry = names
                .entry(approver.name.clone())
                .or_insert_with(|| json!({"name": approver.name, "key": null, "passkeys": []}));
            entry["passkeys"] = approver.credentials.iter().map(|c| c.view()).collect();
        }
    }
    ok(json!({"approvers": names.into_values().collect::<Vec<_>>()}))
}

/// `DELETE /approvers/{name}`: the approver's passkeys and sessions end now (verdicts already
/// counted stay counted). A configured key is removed from the configuration, not here.
async fn revoke(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Answer {
    local_only(peer, &headers)?;
    let console = console(&state)?;
    if !console.revoke(&name).await? {
        return Err(error(StatusCode::NOT_FOUND, "no_such_approver", format!("no passkey approver {name}")));
    }
    tracing::warn!(approver = name, "passkey approver revoked");
    log_event(&state, json!({"event": "approver_revoked", "timestamp": timestamp(Utc::now()), "approver": name})).await;
    ok(json!({"name": name, "revoked": true}))
}
