//! The server's routes. Every request must carry the token: in the URL (`?token=`,
//! as the printed URL has it) or in the cookie the page gets with it; anything else is
//! refused with 403, whatever the address the server listens on.
//!
//! - `/`: the page; `/assets/NAME`: its scripts, styles and the libraries' licences
//! - `/api/view`: the drawing now; `/api/events`: server-sent events (`snapshot` at
//!   first, then `patch` for each change and `rates` every second)
//! - `/api/ns/NAME`: a namespace's links, addresses, routes and firewall rules
//! - `POST /api/pingall`: the reachability matrix of the lab's namespaces
//! - `POST /api/trace?from=NS&to=IP[&proto=icmp|tcp|udp&port=N]`: `trace` (issue 17)
//!   of one probe, its steps
//! - `POST /api/capture?targets=T,T[&filter=F]`: start a capture (T as `nsscript
//!   capture` takes it: NS, NS:LINK, a bridge); `/api/capture/ID/events`: its packets
//!   as they come (server-sent events `packet`, `counts`, `end`);
//!   `POST /api/capture/ID/stop`; `/api/capture/ID/pcapng`: the file so far

use super::watch::Hub;
use crate::backend::Backend;
use crate::ops::check::{PingAll, PingNode};
use crate::ops::{NsRef, Op, Outcome};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

#[derive(Clone)]
struct App {
    hub: Arc<Hub>,
    token: Arc<str>,
    /// Cookies are per host, not per port: each server names its own.
    cookie: Arc<str>,
}

pub fn router(hub: Arc<Hub>, token: String, port: u16) -> Router {
    let app = App { hub, token: token.into(), cookie: format!("nsscript_token_{port}").into() };
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        .route("/api/view", get(view))
        .route("/api/events", get(events))
        .route("/api/ns/{name}", get(details))
        .route("/api/pingall", post(pingall))
        .route("/api/trace", post(trace))
        .route("/api/capture", post(capture_start))
        .route("/api/capture/{id}/events", get(capture_events))
        .route("/api/capture/{id}/stop", post(capture_stop))
        .route("/api/capture/{id}/pcapng", get(capture_file))
        .layer(middleware::from_fn_with_state(app.clone(), require_token))
        .with_state(app)
}

/// Equal in time whatever the first difference (the token is a secret).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented<'r>(req: &'r Request, cookie: &str) -> Vec<&'r str> {
    let mut found = Vec::new();
    if let Some(q) = req.uri().query() {
        found.extend(q.split('&').filter_map(|kv| kv.strip_prefix("token=")));
    }
    for h in req.headers().get_all(header::COOKIE) {
        let Ok(h) = h.to_str() else { continue };
        found.extend(h.split(';').filter_map(|c| c.trim().strip_prefix(cookie)?.strip_prefix('=')));
    }
    found
}

async fn require_token(State(app): State<App>, req: Request, next: Next) -> Response {
    if presented(&req, &app.cookie).iter().any(|t| same(t, &app.token)) {
        let mut res = next.run(req).await;
        if !res.headers().contains_key(header::CACHE_CONTROL) {
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        return res;
    }
    (StatusCode::FORBIDDEN, "403 Forbidden: open the URL nsscript printed, with its ?token=\n").into_response()
}

async fn index(State(app): State<App>) -> Response {
    let cookie = format!("{}={}; Path=/; HttpOnly; SameSite=Strict", app.cookie, app.token);
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()), (header::SET_COOKIE, cookie)],
        super::live_page(&app.hub.lab, &app.token),
    )
        .into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    match super::ASSETS.iter().find(|(n, ..)| *n == name) {
        Some((_, mime, body)) => ([(header::CONTENT_TYPE, *mime), (header::CACHE_CONTROL, "private, max-age=3600")], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

async fn view(State(app): State<App>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], app.hub.snapshot()).into_response()
}

async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribed before the snapshot is taken: no change falls between the two (the
    // page skips patches its snapshot already holds, by version).
    let rx = app.hub.pushes.subscribe();
    let mut first = vec![Event::default().event("snapshot").data(app.hub.snapshot())];
    if let Some(rates) = app.hub.rates() {
        first.push(Event::default().event("rates").data(rates.as_str()));
    }
    let hub = app.hub.clone();
    let rest = stream::unfold((rx, hub), |(mut rx, hub)| async move {
        let event = match rx.recv().await {
            Ok(p) => Event::default().event(p.event).data(p.data.as_str()),
            // A page that fell behind gets the whole drawing again.
            Err(RecvError::Lagged(_)) => Event::default().event("snapshot").data(hub.snapshot()),
            Err(RecvError::Closed) => return None,
        };
        Some((event, (rx, hub)))
    });
    Sse::new(stream::iter(first).chain(rest).map(Ok)).keep_alive(KeepAlive::default())
}

/// The lab's namespace named `name` (`host` for nsscript's own), if the drawing has it.
fn lab_ns(app: &App, name: &str) -> Option<NsRef> {
    let c = app.hub.current.lock().unwrap_or_else(|p| p.into_inner());
    c.view.nodes.iter().any(|n| n.ns.as_deref() == Some(name)).then(|| if name == "host" { NsRef::Host } else { NsRef::named(name) })
}

async fn details(State(app): State<App>, Path(name): Path<String>) -> Response {
    let Some(ns) = lab_ns(&app, &name) else {
        return (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("lab {} has no namespace {name:?}", app.hub.lab) })))
            .into_response();
    };
    let reader = app.hub.reader.clone();
    let text = tokio::task::spawn_blocking(move || reader.lock().unwrap_or_else(|p| p.into_inner()).details(&ns)).await;
    match text {
        Ok(Ok(text)) => Json(serde_json::json!({ "text": text })).into_response(),
        Ok(Err(e)) => Json(serde_json::json!({ "error": error_text(&e) })).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({ "error": "reading the namespace failed" }))).into_response(),
    }
}

/// An error as the page shows it: its code, what happened and why, and the help line.
fn error_text(e: &crate::error::Error) -> String {
    let help = e.help.as_deref().unwrap_or(e.code.help());
    format!("{}: {e}\nhelp: {help}", e.code.qualified())
}

/// Every namespace of the drawing with an IPv4 address, by its first one.
fn ping_nodes(app: &App) -> Vec<(String, PingNode)> {
    let c = app.hub.current.lock().unwrap_or_else(|p| p.into_inner());
    let first_v4 = |ns: &str| {
        c.view
            .nodes
            .iter()
            .filter(|n| n.ns.as_deref() == Some(ns))
            .flat_map(|n| n.ifaces.iter().flat_map(|i| i.addrs.iter()))
            .filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok())
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
    };
    let mut names: Vec<String> = c.view.nodes.iter().filter(|n| n.kind == "netns").filter_map(|n| n.ns.clone()).collect();
    names.sort_by_key(|a| natural(a));
    names.push("host".into());
    names
        .into_iter()
        .filter_map(|name| {
            let addr = first_v4(&name)?;
            let ns = if name == "host" { NsRef::Host } else { NsRef::named(&name) };
            Some((name, PingNode { ns, addr }))
        })
        .collect()
}

/// Names with numbers in them sort as people count (n2 before n10).
fn natural(s: &str) -> (String, u64, String) {
    let cut = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
    let digits: String = s[cut..].chars().take_while(|c| c.is_ascii_digit()).collect();
    (s[..cut].to_string(), digits.parse().unwrap_or(0), s[cut + digits.len()..].to_string())
}

async fn pingall(State(app): State<App>) -> Response {
    let nodes = ping_nodes(&app);
    let lab = app.hub.lab.clone();
    let spec = PingAll { nodes: nodes.iter().map(|(_, n)| n.clone()).collect(), timeout_ms: 1000, static_arp: false };
    // The live backend's pingall, as a script's: it only sends probes (no ledger is
    // opened: nothing is created).
    let run = tokio::task::spawn_blocking(move || {
        let mut live = crate::backend::live::LiveBackend::new(&lab, "nsscript ui")?;
        live.apply(Op::PingAll(spec))
    })
    .await;
    let listed: Vec<serde_json::Value> = nodes.iter().map(|(name, n)| serde_json::json!({ "name": name, "addr": n.addr })).collect();
    match run {
        Ok(Ok(Outcome::PingAll(r))) => {
            let pairs = nodes.len() * nodes.len().saturating_sub(1);
            let reached = r.rtt_ms.iter().flatten().filter(|v| v.is_some()).count();
            Json(serde_json::json!({ "nodes": listed, "rtt_ms": r.rtt_ms, "elapsed_ms": r.elapsed_ms, "pairs": pairs, "reached": reached }))
                .into_response()
        }
        Ok(Ok(_)) => Json(serde_json::json!({ "error": "pingall gave no matrix" })).into_response(),
        Ok(Err(e)) => Json(serde_json::json!({ "error": error_text(&e), "nodes": listed })).into_response(),
        Err(_) => Json(serde_json::json!({ "error": "pingall failed" })).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct TraceQuery {
    from: String,
    to: String,
    /// icmp (the default), tcp or udp: TCP and UDP probes need `port`.
    proto: Option<String>,
    port: Option<String>,
}

/// The probe a trace form asks for, read as the script's trace() reads it (ops::trace).
fn probe_of(q: &TraceQuery) -> crate::error::Result<crate::ops::trace::Probe> {
    use crate::error::{Code, Error};
    let port =
        match q.port.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            None => None,
            Some(text) => Some(text.parse::<i64>().map_err(|_| {
                Error::new(Code::BadValue, format!("trace: invalid port {text:?}")).help("a port is a number from 1 to 65535")
            })?),
        };
    crate::ops::trace::Probe::parse(q.proto.as_deref().filter(|p| !p.is_empty()), port)
}

/// One probe (ICMP echo, TCP SYN or UDP) from a lab namespace, followed on every link of the lab by the live
/// backend's `trace` (as `nsscript trace LAB NS DST` runs it): its steps, each with the
/// namespace and link it happened at (the page animates them on the drawing), and
/// where and why it stopped.
async fn trace(State(app): State<App>, Query(q): Query<TraceQuery>) -> Response {
    use crate::ops::trace::{Trace, DEFAULT_TIMEOUT_MS};
    let Some(ns) = lab_ns(&app, &q.from).filter(|ns| *ns != NsRef::Host) else {
        return Json(serde_json::json!({ "error": format!("lab {} has no namespace {:?}", app.hub.lab, q.from) })).into_response();
    };
    let Ok(dst) = q.to.trim().parse::<IpAddr>() else {
        return Json(serde_json::json!({ "error": format!("{:?} is not an IP address", q.to) })).into_response();
    };
    let probe = match probe_of(&q) {
        Ok(p) => p,
        Err(e) => return Json(serde_json::json!({ "error": error_text(&e) })).into_response(),
    };
    let lab = app.hub.lab.clone();
    let run = tokio::task::spawn_blocking(move || {
        let spec = Trace { ns, dst, probe, timeout_ms: DEFAULT_TIMEOUT_MS };
        spec.validate()?;
        let state = crate::lab::load(&lab)?;
        let mut nl = crate::backend::live::netlink::Netlink::new(crate::backend::live::linux::Linux::default());
        crate::backend::live::trace::trace(&mut nl, &state, &spec)
    })
    .await;
    let place = |ns: &NsRef, link: &str| serde_json::json!({ "ns": super::view::ns_name(ns), "link": link });
    match run {
        Ok(Ok(r)) => Json(serde_json::json!({
            "ok": r.ok,
            "steps": r.steps.iter().map(|s| serde_json::json!({ "ns": super::view::ns_name(&s.ns), "link": s.link, "text": s.text })).collect::<Vec<_>>(),
            "stopped_at": r.stopped_at.as_ref().map(|(ns, link)| place(ns, link)),
            "reason": r.reason,
            "help": r.help,
            "text": r.text(),
        }))
        .into_response(),
        Ok(Err(e)) => Json(serde_json::json!({ "error": error_text(&e) })).into_response(),
        Err(_) => Json(serde_json::json!({ "error": "the trace failed" })).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct CaptureQuery {
    /// Comma-separated: NS, NS:LINK or a bridge's name.
    targets: String,
    filter: Option<String>,
}

/// Start a capture of the links the page names: its id, where it captures, and the
/// paths of its event stream and file.
async fn capture_start(State(app): State<App>, Query(q): Query<CaptureQuery>) -> Response {
    let targets: Vec<String> = q.targets.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
    if targets.is_empty() {
        return Json(serde_json::json!({ "error": "name a link to capture on (NS:LINK, NS or a bridge)" })).into_response();
    }
    let filter = q.filter.filter(|f| !f.trim().is_empty());
    let hub = app.hub.clone();
    let run = tokio::task::spawn_blocking(move || hub.captures.start(&hub.lab, &targets, filter)).await;
    match run {
        Ok(Ok(s)) => Json(serde_json::json!({
            "id": s.id,
            "places": s.places,
            "file_name": s.file_name,
            "events": format!("api/capture/{}/events", s.id),
            "pcapng": format!("api/capture/{}/pcapng", s.id),
        }))
        .into_response(),
        Ok(Err(e)) => Json(serde_json::json!({ "error": error_text(&e) })).into_response(),
        Err(_) => Json(serde_json::json!({ "error": "starting the capture failed" })).into_response(),
    }
}

fn no_capture(id: u64) -> Response {
    (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("no capture {id}") }))).into_response()
}

async fn capture_events(State(app): State<App>, Path(id): Path<u64>) -> Response {
    let Some(session) = app.hub.captures.get(id) else { return no_capture(id) };
    let (first, ended, rx) = session.subscribe();
    let event = |m: super::captures::Message| Event::default().event(m.event).data(m.data.as_str());
    let first: Vec<Event> = first.into_iter().map(event).collect();
    // After the end nothing more comes: the stream closes.
    let rest = stream::unfold((rx, ended), move |(mut rx, ended)| async move {
        if ended {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok(m) => {
                    let last = m.event == "end";
                    return Some((event(m), (rx, last)));
                }
                // A page that fell behind skips packets (the counts and the file have them).
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream::iter(first).chain(rest).map(Ok::<_, Infallible>)).keep_alive(KeepAlive::default()).into_response()
}

async fn capture_stop(State(app): State<App>, Path(id): Path<u64>) -> Response {
    let Some(session) = app.hub.captures.get(id) else { return no_capture(id) };
    match tokio::task::spawn_blocking(move || session.stop()).await {
        Ok(Ok((packets, dropped))) => Json(serde_json::json!({ "packets": packets, "dropped": dropped })).into_response(),
        Ok(Err(e)) => Json(serde_json::json!({ "error": error_text(&e) })).into_response(),
        Err(_) => Json(serde_json::json!({ "error": "stopping the capture failed" })).into_response(),
    }
}

/// The capture's pcapng, as far as it has whole blocks (while it runs: so far).
async fn capture_file(State(app): State<App>, Path(id): Path<u64>) -> Response {
    let Some(session) = app.hub.captures.get(id) else { return no_capture(id) };
    let name = session.file_name.clone();
    match tokio::task::spawn_blocking(move || session.pcapng()).await {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "application/x-pcapng".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            ],
            bytes,
        )
            .into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the capture file\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_is_compared_whole() {
        assert!(super::same("abcd", "abcd"));
        assert!(!super::same("abcd", "abce"));
        assert!(!super::same("abcd", "abc"));
        assert!(!super::same("", "a"));
    }

    #[test]
    fn a_trace_form_names_its_probe() {
        use crate::ops::trace::Probe;
        let q = |proto: &str, port: &str| super::TraceQuery {
            from: "a".into(),
            to: "10.0.0.1".into(),
            proto: Some(proto.into()),
            port: Some(port.into()),
        };
        assert_eq!(super::probe_of(&q("icmp", "")).unwrap(), Probe::Icmp);
        assert_eq!(super::probe_of(&q("tcp", "80")).unwrap(), Probe::Tcp(80));
        assert_eq!(super::probe_of(&q("udp", " 53 ")).unwrap(), Probe::Udp(53));
        assert!(super::probe_of(&q("tcp", "")).unwrap_err().what.contains("needs a port"));
        assert!(super::probe_of(&q("udp", "70000")).unwrap_err().what.contains("invalid port"));
        assert!(super::probe_of(&q("udp", "x")).unwrap_err().what.contains("invalid port"));
        assert!(super::probe_of(&q("sctp", "1")).unwrap_err().what.contains("unknown protocol"));
    }

    #[test]
    fn names_sort_as_people_count() {
        let mut v = vec!["n10", "n2", "n1", "rt", "a"];
        v.sort_by_key(|a| super::natural(a));
        assert_eq!(v, ["a", "n1", "n2", "n10", "rt"]);
    }
}
