//! The live view: a web page of a running lab, drawn from what the kernel has now and
//! kept up to date as it changes (`nsscript ui LAB`, `nsscript LAB.rhai --ui`), and the
//! same drawing of a script's plan as a standalone page (`nsscript graph -f html`).
//!
//! The server is the only part of nsscript that runs an async runtime (tokio, axum):
//! it serves many connections and watches a socket per lab namespace at once. It is
//! started only for the live view; a build never starts it. It reads the kernel
//! through the live backend's library (dumps, notifications, counters) and knows
//! nothing of Rhai; it never changes the lab.
//!
//! - `view`: what is drawn (boxes, edges, states, MTU mismatches), from either source
//! - `observe`: reading a namespace from the kernel, pairing veths across namespaces
//! - `watch`: the namespaces' notification sockets, the counters every second, patches
//! - `http`: the routes, the token every request must carry, the event stream
//! - `captures`: captures started from the page, their packets and pcapng files

mod captures;
mod http;
mod observe;
pub mod view;
mod watch;

use crate::error::{Code, Error, Result};
use std::net::{SocketAddr, TcpListener};

/// Where the server listens unless told: this machine only, a port the kernel picks.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:0";

/// The listening socket, opened where nsscript was started: `--sandbox` opens it
/// before it enters its private network namespace, so the socket stays in the one the
/// user's browser is in (a socket belongs to the namespace it was created in).
pub struct Listener {
    socket: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    pub fn open(listen: Option<&str>) -> Result<Listener> {
        let text = listen.unwrap_or(DEFAULT_LISTEN);
        let addr: SocketAddr = text.parse().map_err(|_| {
            Error::new(Code::UiFailed, format!("cannot listen on {text:?}: not an ADDRESS:PORT"))
                .help("write it as 127.0.0.1:8080 or [::1]:8080 (port 0: any free port)")
        })?;
        let socket = TcpListener::bind(addr).map_err(|e| Error::io(Code::UiFailed, format!("cannot listen on {addr}"), &e))?;
        socket.set_nonblocking(true).map_err(|e| Error::io(Code::UiFailed, format!("cannot listen on {addr}"), &e))?;
        let addr = socket.local_addr().map_err(|e| Error::io(Code::UiFailed, format!("cannot listen on {addr}"), &e))?;
        Ok(Listener { socket, addr })
    }
}

/// A secret for the URL, as Jupyter's: whoever can reach the port (other users of the
/// machine, a page in the browser that guesses ports) cannot read the lab without it.
fn new_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: the pointer and length describe the unfilled part of `bytes`.
        let n = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io(Code::Internal, "cannot draw a random token", &e));
        }
        filled += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The URL to open: the listening address (a wildcard one as 127.0.0.1) and the token.
pub fn url(addr: SocketAddr, token: &str) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}/?token={token}", addr.port())
}

/// Serve the live view of `lab` on `listener` until SIGINT or SIGTERM (the caller has
/// installed `crate::signals`). Prints the URL on stderr when it is ready.
pub fn serve(lab: &str, listener: Listener) -> Result<()> {
    let token = new_token()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("nsscript-ui")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::io(Code::Internal, "cannot start the live view's runtime", &e))?;
    let addr = listener.addr;
    let hub = watch::Hub::new(lab);
    let captures = hub.clone();
    let served = runtime.block_on(async {
        let socket = tokio::net::TcpListener::from_std(listener.socket)
            .map_err(|e| Error::io(Code::UiFailed, format!("cannot listen on {addr}"), &e))?;
        tokio::spawn(watch::run(hub.clone()));
        let app = http::router(hub, token.clone(), addr.port());
        eprintln!("nsscript ui: the live view of lab {lab} is at {}  (Ctrl-C stops it)", url(addr, &token));
        let stop = tokio::task::spawn_blocking(crate::signals::wait);
        tokio::select! {
            r = axum::serve(socket, app) => r.map_err(|e| Error::io(Code::UiFailed, format!("the live view stopped serving on {addr}"), &e)),
            _ = stop => Ok(()),
        }
    });
    // Open event streams never end by themselves: connections are dropped, not drained.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    captures.captures.stop_all();
    served
}

/// `nsscript ui LAB`: the live view of a lab that is up.
pub fn command(lab: &str, listen: Option<&str>) -> Result<std::process::ExitCode> {
    let listener = Listener::open(listen)?;
    crate::privilege::require_root("watching a lab's namespaces")?;
    crate::nsexec::init_host_ns()?;
    crate::lab::load(lab)?;
    crate::signals::install()?;
    serve(lab, listener)?;
    eprintln!("nsscript ui: stopped.");
    Ok(std::process::ExitCode::SUCCESS)
}

// ---- the page ----

/// The files the page loads, embedded in the binary: (name, MIME type, content).
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("cytoscape.min.js", "text/javascript; charset=utf-8", include_str!("assets/vendor/cytoscape.min.js")),
    ("layout-base.js", "text/javascript; charset=utf-8", include_str!("assets/vendor/layout-base.js")),
    ("cose-base.js", "text/javascript; charset=utf-8", include_str!("assets/vendor/cose-base.js")),
    ("cytoscape-fcose.js", "text/javascript; charset=utf-8", include_str!("assets/vendor/cytoscape-fcose.js")),
    ("LICENSES.txt", "text/plain; charset=utf-8", LICENSES),
];

/// The vendored libraries' licences, served beside them.
const LICENSES: &str = concat!(
    "nsscript's page draws with these libraries (MIT licence each), embedded unchanged:\n\n",
    "== cytoscape 3.35.0 ==\n",
    include_str!("assets/vendor/LICENSE.cytoscape"),
    "\n== cytoscape-fcose 2.2.0 ==\n",
    include_str!("assets/vendor/LICENSE.cytoscape-fcose"),
    "\n== cose-base 2.2.0 ==\n",
    include_str!("assets/vendor/LICENSE.cose-base"),
    "\n== layout-base 2.0.1 ==\n",
    include_str!("assets/vendor/LICENSE.layout-base"),
);

/// The scripts in the order they must load (each UMD build expects the one before it).
const SCRIPTS: &[&str] = &["cytoscape.min.js", "layout-base.js", "cose-base.js", "cytoscape-fcose.js", "app.js"];

fn asset(name: &str) -> &'static str {
    ASSETS.iter().find(|(n, ..)| *n == name).map(|(.., body)| *body).expect("an embedded asset")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// JSON that can sit inside a <script> element: no `</script>` can end it early.
fn script_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes").replace("</", "<\\/").replace("<!--", "<\\!--")
}

fn page(lab: &str, head: &str, body: &str) -> String {
    include_str!("assets/index.html").replace("{{LAB}}", &html_escape(lab)).replace("{{HEAD}}", head).replace("{{BODY}}", body)
}

/// The live page: the assets are fetched from the server, with the token.
pub fn live_page(lab: &str, token: &str) -> String {
    let boot = serde_json::json!({ "lab": lab, "token": token, "live": true });
    let head = format!("<link rel=\"stylesheet\" href=\"assets/app.css?token={token}\">");
    let mut body = format!("<script>window.NSVIEW_BOOT = {};</script>\n", script_json(&boot));
    for s in SCRIPTS {
        body.push_str(&format!("<script src=\"assets/{s}?token={token}\"></script>\n"));
    }
    page(lab, &head, &body)
}

/// `nsscript graph -f html`: one file with everything in it, that works opened from disk.
pub fn standalone_page(view: &view::View) -> String {
    let boot = serde_json::json!({ "lab": view.lab, "live": false, "view": view });
    let head = format!("<style>\n{}</style>", asset("app.css"));
    let mut body = format!("<script>window.NSVIEW_BOOT = {};</script>\n", script_json(&boot));
    for s in SCRIPTS {
        body.push_str(&format!("<script>\n{}\n</script>\n", asset(s)));
    }
    body.push_str(&format!("<!-- drawn with cytoscape.js and cytoscape-fcose (MIT):\n{}-->\n", LICENSES.replace("--", "- -")));
    page(&view.lab, &head, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn urls_name_a_reachable_host() {
        let t = "ab";
        assert_eq!(url("127.0.0.1:8080".parse().unwrap(), t), "http://127.0.0.1:8080/?token=ab");
        assert_eq!(url("0.0.0.0:80".parse().unwrap(), t), "http://127.0.0.1:80/?token=ab");
        assert_eq!(url("[::]:80".parse().unwrap(), t), "http://[::1]:80/?token=ab");
        assert_eq!(url("[fd00::1]:80".parse().unwrap(), t), "http://[fd00::1]:80/?token=ab");
    }

    #[test]
    fn data_cannot_close_the_script_element() {
        let v = view::View { lab: "x</script><script>alert(1)</script>".into(), ..Default::default() };
        let page = standalone_page(&v);
        assert!(!page.contains("x</script>"));
        assert!(page.contains("x&lt;/script&gt;"), "the title is escaped");
    }
}
