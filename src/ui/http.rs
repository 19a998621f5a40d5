//! The server's routes. Every request must carry the token: in the URL (`?token=`,
//! as the printed URL has it) or in the cookie the page gets with it; anything else is
//! refused with 403, whatever the address the server listens on.
//!
//! - `/`: the page; `/assets/NAME`: its scripts, styles and the libraries' licences
//! - `/api/view`: the drawing now; `/api/events`: server-sent events (`snapshot` at
//!   first, then `patch` for each change and `rates` every second)
//! - `/api/ns/NAME`: a namespace's links, addresses, routes and firewall rules
//! - `POST /api/pingall`: the reachability matrix of the lab's namespaces
//! - `POST /api/trace?from=NS&to=IP`: `trace` (issue 17) of one ICMP probe, its steps

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
}

/// One ICMP probe from a lab namespace, followed on every link of the lab by the live
/// backend's `trace` (as `nsscript trace LAB NS DST` runs it): its steps, each with the
/// namespace and link it happened at (the page animates them on the drawing), and
/// where and why it stopped.
async fn trace(State(app): State<App>, Query(q): Query<TraceQuery>) -> Response {
    use crate::ops::trace::{Probe, Trace, DEFAULT_TIMEOUT_MS};
    let Some(ns) = lab_ns(&app, &q.from).filter(|ns| *ns != NsRef::Host) else {
        return Json(serde_json::json!({ "error": format!("lab {} has no namespace {:?}", app.hub.lab, q.from) })).into_response();
    };
    let Ok(dst) = q.to.trim().parse::<IpAddr>() else {
        return Json(serde_json::json!({ "error": format!("{:?} is not an IP address", q.to) })).into_response();
    };
    let lab = app.hub.lab.clone();
    let run = tokio::task::spawn_blocking(move || {
        let spec = Trace { ns, dst, probe: Probe::Icmp, timeout_ms: DEFAULT_TIMEOUT_MS };
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
    fn names_sort_as_people_count() {
        let mut v = vec!["n10", "n2", "n1", "rt", "a"];
        v.sort_by_key(|a| super::natural(a));
        assert_eq!(v, ["a", "n1", "n2", "n10", "rt"]);
    }
}
