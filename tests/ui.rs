//! The live view in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, the `fantoccini` client) shows the lab the kernel has, follows a
//! change made from outside, refuses requests without the token, and draws a
//! 200-namespace star (time to first draw and update latency are printed and written
//! to the artefacts directory).
//!
//! Everything runs inside the test's own network + mount + PID namespace, as every
//! kernel test: the lab, `nsscript ui`, chromedriver and Chromium. The test's own
//! browser thread joins that network namespace (setns) to reach them; its commands to
//! the namespace (`ip link set ... down`) go through the namespace's shell.
//!
//! Screenshots: `target/tmp/ui/*.png` (CARGO_TARGET_TMPDIR), one per check.

use crate::support;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the screenshots and measurements go.
fn artefacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Chromium and its WebDriver, as Debian packages them (tools/install-deps.sh).
fn browser_missing() -> Option<String> {
    for p in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !std::path::Path::new(p).exists() {
            return Some(format!("{p} is missing: bash tools/install-deps.sh installs chromium and chromium-driver"));
        }
    }
    None
}

/// A namespace of the test's own with a lab, the live view and chromedriver in it,
/// and a shell that runs the lines it is sent.
struct Lab {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    /// The live view's URL, with its token.
    url: String,
    /// The namespace's working directory.
    dir: String,
    _work: tempfile::TempDir,
}

const DRIVER_PORT: u16 = 9515;

impl Lab {
    /// `start` builds the lab and starts the live view with its stderr in ui.log; then
    /// chromedriver starts, and the shell waits for lines to run.
    // The child is waited for by `Lab`'s Drop (or `finish`), which it is moved into.
    #[allow(clippy::zombie_processes)]
    fn start(start: &str) -> Option<Lab> {
        if !support::kernel() {
            return None;
        }
        if let Some(why) = browser_missing() {
            panic!("{why}");
        }
        let work = tempfile::tempdir().unwrap();
        let script = format!(
            r#"
set -u
export NO_COLOR=1 HOME=$PWD
mount -t tmpfs tmpfs /run && ip link set lo up || exit 1
{start}
for i in $(seq 600); do grep -q 'http://' ui.log 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' ui.log | head -1)
[ -n "$url" ] || {{ echo "@@FAILED no URL"; cat ui.log build.log 2>/dev/null; exit 1; }}
chromedriver --port={DRIVER_PORT} >driver.log 2>&1 &
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/{DRIVER_PORT}) 2>/dev/null && break; sleep 0.1; done
echo "@@READY $url $PWD"
while IFS= read -r line; do eval "$line"; echo "@@DONE $?"; done
# Stdin closed: stop the live view as Ctrl-C would (a shell's background job ignores
# SIGINT: SIGTERM is the same for nsscript), and see it end.
kill -TERM %1 2>/dev/null; wait %1; echo "@@UI_EXIT $?"
"#
        );
        let mut child = Command::new("unshare")
            .args(support::UNSHARE)
            .arg("--kill-child")
            .args(["bash", "-c", &script])
            .current_dir(work.path())
            .env("NSS", support::bin())
            .env("SCRIPTS", support::scripts_dir())
            .env("TOP", env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare runs");
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                let _ = child.wait();
                panic!("the lab's namespace ended before it was ready:\n{seen}");
            }
            if let Some(rest) = line.strip_prefix("@@READY ") {
                let (url, dir) = rest.trim().split_once(' ').unwrap();
                return Some(Lab { child, stdin, out, url: url.into(), dir: dir.into(), _work: work });
            }
            seen.push_str(&line);
        }
    }

    /// Run one line of bash in the namespace: its output and exit status.
    fn run(&mut self, line: &str) -> (i32, String) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut text = String::new();
        loop {
            let mut l = String::new();
            assert!(self.out.read_line(&mut l).unwrap() > 0, "the namespace's shell ended:\n{text}");
            if let Some(rc) = l.strip_prefix("@@DONE ") {
                return (rc.trim().parse().unwrap(), text);
            }
            text.push_str(&l);
        }
    }

    /// The milliseconds since the epoch at which `line` started in the namespace.
    fn timed(&mut self, line: &str) -> u64 {
        let (rc, out) = self.run(&format!("date +%s%3N; {line}"));
        assert_eq!(rc, 0, "{line}: {out}");
        out.lines().next().unwrap().trim().parse().unwrap()
    }

    fn netns(&self) -> File {
        File::open(format!("/proc/{}/ns/net", self.child.id())).unwrap()
    }

    /// Close the shell's input: it stops the live view with SIGTERM and says how it
    /// exited.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        let _ = self.child.wait();
        rest
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            // A failed test: the namespace's PID 1 is killed with unshare (--kill-child).
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `body` with a browser, on a thread that has joined the lab's network namespace
/// (the connections to chromedriver and the page's to the server are made there).
fn with_browser<T: Send>(lab: &mut Lab, body: impl AsyncFnOnce(&Client, &mut Lab) -> T + Send) -> T {
    let netns = lab.netns();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns on this thread only; the descriptor is a network namespace.
            let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let profile = format!("{}/chromium-profile", lab.dir);
                let caps = json!({
                    "goog:chromeOptions": {
                        "binary": "/usr/bin/chromium",
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                 "--window-size=1400,900", "--no-first-run", "--disable-background-networking",
                                 "--disable-component-update", "--disable-sync", format!("--user-data-dir={profile}")]
                    }
                });
                let Value::Object(caps) = caps else { unreachable!() };
                let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{DRIVER_PORT}"))
                    .await
                    .expect("chromedriver starts a Chromium session");
                client
                    .update_timeouts(TimeoutConfiguration::new(
                        Some(Duration::from_secs(30)),
                        Some(Duration::from_secs(30)),
                        Some(Duration::ZERO),
                    ))
                    .await
                    .unwrap();
                let out = body(&client, lab).await;
                let _ = client.close().await;
                out
            })
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("a screenshot");
    let path = artefacts().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
    path
}

/// Wait in the page until `pred` (a JS expression over `nsview`) holds after a
/// drawing; the page's Date.now() when it did.
async fn wait_in_page(c: &Client, pred: &str) -> u64 {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         const go = () => window.nsview ? nsview.waitFor(() => {{ try {{ return !!({pred}); }} catch (e) {{ return false; }} }}).then(done)
                                        : setTimeout(go, 20);
         go();"
    );
    // A script may wait 30 s (the session's timeout); a machine loaded by other jobs can
    // need longer for a first drawing of 200 boxes: up to three waits.
    for attempt in 1..=3 {
        match c.execute_async(&script, vec![]).await {
            Ok(v) => return v.as_u64().unwrap_or_else(|| panic!("{pred}: {v}")),
            Err(e) if attempt < 3 && e.to_string().contains("script timeout") => continue,
            Err(e) => panic!("waiting in the page for {pred}: {e}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// "Trace" from the page's form: from `from` to `to`, ICMP or (proto, port). What the
/// page kept of it (`nsview.lastTrace`) and the steps' text.
async fn trace_in_page(c: &Client, from: &str, to: &str, probe: Option<(&str, u16)>) -> (Value, String) {
    c.find(Locator::Id("trace")).await.unwrap().click().await.unwrap();
    js(c, &format!("(document.getElementById('trace-from').value = '{from}', document.getElementById('trace-to').value = '{to}')")).await;
    if let Some((proto, port)) = probe {
        js(
            c,
            &format!(
                "(document.getElementById('trace-proto').value = '{proto}', \
                  document.getElementById('trace-proto').dispatchEvent(new Event('change')), \
                  document.getElementById('trace-port').value = '{port}')"
            ),
        )
        .await;
        let shown = js(c, "getComputedStyle(document.getElementById('trace-port-label')).display !== 'none'").await;
        assert_eq!(shown, json!(true), "the port field shows for a {proto} probe");
    }
    c.find(Locator::Id("trace-run")).await.unwrap().click().await.unwrap();
    wait_in_page(c, "nsview.lastTrace && nsview.lastTrace.done").await;
    let t = js(c, "nsview.lastTrace").await;
    assert!(t["error"].is_null(), "{t}");
    let text = t["result"]["text"].as_str().unwrap_or_default().to_string();
    (t, text)
}

async fn js(c: &Client, expr: &str) -> Value {
    c.execute(&format!("return {expr};"), vec![]).await.unwrap_or_else(|e| panic!("{expr}: {e}"))
}

/// An HTTP GET from inside the namespace (the caller's thread is there): the status line.
fn get_status(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().unwrap_or("").to_string()
}

#[test]
fn seed000_in_the_browser_lists_the_lab_follows_a_link_down_and_refuses_without_the_token() {
    let Some(mut lab) = Lab::start(
        r#"$NSS $SCRIPTS/seed000_router.rhai >build.log 2>&1 || { echo "@@FAILED build"; cat build.log; exit 1; }
$NSS graph -f html $SCRIPTS/seed000_router.rhai >plan.html 2>build-graph.log || exit 1
$NSS ui seed000_router 2>ui.log &"#,
    ) else {
        return;
    };
    let url = lab.url.clone();
    let base = url.split("/?").next().unwrap().to_string();
    let report = with_browser(&mut lab, async |c: &Client, lab: &mut Lab| {
        // Without the token: refused, for the page, the data and the event stream alike.
        for path in ["/", "/api/view", "/api/events", "/assets/app.js", "/api/ns/rt"] {
            assert_eq!(get_status(&format!("{base}{path}")), "HTTP/1.1 403 Forbidden", "{path} without the token");
        }
        assert_eq!(get_status(&format!("{base}/api/view?token=0123")), "HTTP/1.1 403 Forbidden", "a wrong token");
        assert_eq!(get_status(&url), "HTTP/1.1 200 OK", "the printed URL");
        c.goto(&format!("{base}/")).await.unwrap();
        let body = c.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
        assert!(body.contains("403 Forbidden"), "{body}");
        screenshot(c, "seed000-403-without-token").await;

        // The page: every namespace and bridge of the lab, from the kernel.
        let t0 = Instant::now();
        c.goto(&url).await.unwrap();
        wait_in_page(c, "nsview.metrics.firstDrawMs !== null && nsview.nodes.size >= 7").await;
        let first_draw = t0.elapsed();
        let listed = js(
            c,
            "[...document.querySelectorAll('#list li.node')].map(li => li.dataset.kind + ' ' + li.querySelector('.name').textContent)",
        )
        .await;
        let listed: Vec<String> = listed.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        for ns in ["inet", "rt", "vm1", "vm2", "wan"] {
            assert!(listed.contains(&format!("netns {ns}")), "namespace {ns} listed: {listed:?}");
        }
        for br in ["br-in", "br-ex"] {
            assert!(listed.contains(&format!("bridge {br}")), "bridge {br} listed: {listed:?}");
        }
        assert_eq!(js(c, "nsview.edges.size").await, json!(6), "five veth pairs to the bridges and rt, one wan--inet");
        assert_eq!(js(c, "nsview.cy.nodes().length").await, json!(7), "every box drawn");
        assert_eq!(js(c, "document.getElementById('status').textContent").await, json!("live"));
        screenshot(c, "seed000-live").await;

        // A link set down from outside nsscript: drawn down within 2 s.
        assert_eq!(js(c, "nsview.ifaceState('vm1/eth0')").await, json!("up"));
        let t = lab.timed("ip -n vm1 link set eth0 down");
        let drawn =
            wait_in_page(c, "nsview.ifaceState('vm1/eth0') === 'down' && nsview.edges.get('veth:host/vm1-eth0|vm1/eth0').state === 'down'")
                .await;
        let latency = drawn.saturating_sub(t);
        assert!(latency < 2000, "shown down after {latency} ms");
        let style = js(c, "nsview.cy.getElementById('veth:host/vm1-eth0|vm1/eth0').style('line-style')").await;
        assert_eq!(style, json!("dashed"), "a down link is drawn dashed");
        screenshot(c, "seed000-vm1-eth0-down").await;
        // And up again.
        let t = lab.timed("ip -n vm1 link set eth0 up");
        let drawn = wait_in_page(c, "nsview.edges.get('veth:host/vm1-eth0|vm1/eth0').state === 'up'").await;
        let latency_up = drawn.saturating_sub(t);
        assert!(latency_up < 2000, "shown up again after {latency_up} ms");

        // Traffic shows as rates on the edges: vm1 pings rt (its default route went
        // with the link: the kernel drops a down link's IPv4 routes; the subnet's
        // comes back with it).
        lab.run("ip netns exec vm1 ping -q -c 60 -i 0.05 10.0.0.254 >/dev/null 2>&1 &");
        wait_in_page(c, "(nsview.rates['rt/eth0'] || [0])[0] > 0").await;

        // rt's details: its links, routes and the SNAT rule, as `:show` prints them.
        c.find(Locator::Css("#list li.node[data-id='ns:rt'] .name")).await.unwrap().click().await.unwrap();
        let mut details = String::new();
        for _ in 0..100 {
            details = js(c, "(document.getElementById('details') || {}).textContent || ''").await.as_str().unwrap().to_string();
            if details.contains("SNAT") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(details.contains("10.0.0.254/24") && details.contains("route default via 192.168.100.1 dev eth1"), "{details}");
        assert!(details.contains("-j SNAT --to-source 192.168.100.11"), "{details}");
        screenshot(c, "seed000-rt-details").await;

        // "Trace" from vm1 to the simulated internet: the probe's path through rt, drawn
        // hop by hop, with the SNAT step beside it. (vm1's default route went with its
        // link: it is put back first.)
        lab.run("ip -n vm1 route replace default via 10.0.0.254");
        let (t, text) = trace_in_page(c, "vm1", "203.0.113.1", None).await;
        assert_eq!(t["result"]["ok"], json!(true), "{text}");
        assert!(text.contains("source NAT 10.0.0.1 -> 192.168.100.11"), "the SNAT step: {text}");
        let shown = js(c, "[...document.querySelectorAll('#trace-steps li')].map(li => li.textContent).join('\\n')").await;
        assert!(shown.as_str().unwrap().contains("source NAT 10.0.0.1 -> 192.168.100.11"), "the steps beside the drawing: {shown}");
        let visited = &t["visited"];
        for id in
            ["ns:vm1", "br:br-in", "ns:rt", "br:br-ex", "ns:wan", "ns:inet", "veth:host/link-in-br|rt/eth0", "veth:host/link-ex-br|rt/eth1"]
        {
            assert!(visited.as_array().unwrap().contains(&json!(id)), "{id} lit on the path: {visited}");
        }
        let lit = js(c, "nsview.cy.$('.hop').map(e => e.id())").await;
        assert!(lit.as_array().unwrap().contains(&json!("ns:rt")), "rt highlighted: {lit}");
        c.find(Locator::Id("fit")).await.unwrap().click().await.unwrap();
        screenshot(c, "seed000-trace-vm1-to-internet").await;

        // The plan's drawing, `nsscript graph -f html`, opened from disk (no server).
        c.goto(&format!("file://{}/plan.html", lab.dir)).await.unwrap();
        wait_in_page(c, "nsview.metrics.firstDrawMs !== null").await;
        let plan = js(c, "[...document.querySelectorAll('#list li.node')].map(li => li.querySelector('.name').textContent)").await;
        for name in ["inet", "rt", "vm1", "vm2", "wan", "br-in", "br-ex"] {
            assert!(plan.as_array().unwrap().contains(&json!(name)), "{name} in the plan's page: {plan}");
        }
        assert_eq!(js(c, "nsview.edges.size").await, json!(6));
        screenshot(c, "seed000-plan-html").await;
        format!(
            "seed000: first draw {} ms after goto; link down drawn {latency} ms and up {latency_up} ms after `ip link set`",
            first_draw.as_millis()
        )
    });
    eprintln!("{report}");
    std::fs::write(artefacts().join("seed000.txt"), format!("{report}\n")).unwrap();
    let rest = lab.finish();
    assert!(rest.contains("@@UI_EXIT 0"), "the live view ends cleanly on SIGTERM: {rest}");
}

#[test]
fn a_200_namespace_star_draws_and_follows_changes() {
    let Some(mut lab) = Lab::start(r#"$NSS $TOP/bench/star.rhai --var n=200 --ui --listen 127.0.0.1:0 2>ui.log >build.log &"#) else {
        return;
    };
    let url = lab.url.clone();
    let report = with_browser(&mut lab, async |c: &Client, lab: &mut Lab| {
        let t0 = Instant::now();
        c.goto(&url).await.unwrap();
        wait_in_page(c, "nsview.metrics.firstDrawMs !== null && nsview.nodes.size === 201").await;
        let first_draw = t0.elapsed().as_millis();
        let in_page = js(c, "[nsview.metrics.firstDrawMs, nsview.metrics.layoutMs]").await;
        assert_eq!(js(c, "nsview.edges.size").await, json!(200));
        assert_eq!(js(c, "document.querySelectorAll('#list li.node[data-kind=netns]').length").await, json!(200));
        screenshot(c, "star200-live").await;
        // Update latency: a link set down from outside, then up, five times each.
        let mut lat = Vec::new();
        for i in [7, 50, 100, 150, 199] {
            let key = format!("bx{i}/eth0");
            let t = lab.timed(&format!("ip -n bx{i} link set eth0 down"));
            let drawn = wait_in_page(c, &format!("nsview.ifaceState('{key}') === 'down'")).await;
            lat.push(drawn.saturating_sub(t));
            let t = lab.timed(&format!("ip -n bx{i} link set eth0 up"));
            let drawn = wait_in_page(c, &format!("nsview.ifaceState('{key}') === 'up'")).await;
            lat.push(drawn.saturating_sub(t));
        }
        lab.run("ip -n bx100 link set eth0 down");
        wait_in_page(c, "nsview.ifaceState('bx100/eth0') === 'down'").await;
        screenshot(c, "star200-bx100-down").await;
        // Responsive: a click selects and shows the namespace at once.
        let t = Instant::now();
        c.find(Locator::Css("#list li.node[data-id='ns:bx100'] .name")).await.unwrap().click().await.unwrap();
        let click_ms = t.elapsed().as_millis();
        let mut sorted = lat.clone();
        sorted.sort();
        assert!(*sorted.last().unwrap() < 2000, "update latencies {lat:?}");
        format!(
            "star200: first draw {first_draw} ms after goto (in the page: [first draw since navigation, layout] = {in_page} ms); \
             update latency ms (down/up x5) {lat:?}, median {}, max {}; a click on the list {click_ms} ms",
            sorted[sorted.len() / 2],
            sorted.last().unwrap()
        )
    });
    eprintln!("{report}");
    std::fs::write(artefacts().join("star200.txt"), format!("{report}\n")).unwrap();
    lab.finish();
}

/// An HTTP GET from inside the namespace (the caller's thread is there): the status
/// line and the body.
fn get_body(url: &str) -> (String, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let cut = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header and a body");
    let head = String::from_utf8_lossy(&raw[..cut]).to_string();
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "a body of known length: {head}");
    (head.lines().next().unwrap_or("").to_string(), raw[cut + 4..].to_vec())
}

#[test]
fn a_link_clicked_in_the_page_is_captured_live_its_pcapng_downloads_and_a_tcp_trace_stops_at_the_rst() {
    let Some(mut lab) = Lab::start(
        r#"$NSS $SCRIPTS/seed000_router.rhai >build.log 2>&1 || { echo "@@FAILED build"; cat build.log; exit 1; }
$NSS ui seed000_router 2>ui.log &"#,
    ) else {
        return;
    };
    let url = lab.url.clone();
    let base = url.split("/?").next().unwrap().to_string();
    let token = url.split("token=").nth(1).unwrap().to_string();
    let report = with_browser(&mut lab, async |c: &Client, lab: &mut Lab| {
        c.goto(&url).await.unwrap();
        wait_in_page(c, "nsview.metrics.firstDrawMs !== null && nsview.edges.has('veth:host/vm1-eth0|vm1/eth0')").await;
        // Click the vm1 -- br-in link (a tap on the drawing's edge), choose its vm1 end
        // and a filter, and start.
        js(c, "(nsview.cy.getElementById('veth:host/vm1-eth0|vm1/eth0').emit('tap'), true)").await;
        let options = js(c, "[...document.querySelectorAll('#capture-target option')].map(o => o.value)").await;
        assert_eq!(options, json!(["host:vm1-eth0", "vm1:eth0", "host:vm1-eth0,vm1:eth0"]), "each end, and both");
        js(c, "(document.getElementById('capture-target').value = 'vm1:eth0', document.getElementById('capture-filter').value = 'icmp')")
            .await;
        c.find(Locator::Id("capture-start")).await.unwrap().click().await.unwrap();
        wait_in_page(c, "nsview.capture && nsview.capture.id && nsview.capture.counts").await;
        assert_eq!(js(c, "nsview.capture.places").await, json!(["vm1:eth0"]));
        // An independent observer on the same link at the same time: tcpdump.
        let (rc, out) = lab.run(
            "ip netns exec vm1 tcpdump -n -U -i eth0 -w td.pcap icmp 2>td.err & td=$!; \
             for i in $(seq 100); do grep -q listening td.err && break; sleep 0.05; done; \
             ip netns exec vm1 ping -c 5 -i 0.2 10.0.0.254 >ping.out; sleep 0.5; kill -INT $td; wait $td",
        );
        assert_eq!(rc, 0, "{out}");
        wait_in_page(
            c,
            "nsview.capture.packets.filter(p => p.summary.includes('ICMP echo request')).length >= 5 \
             && nsview.capture.packets.filter(p => p.summary.includes('ICMP echo reply')).length >= 5",
        )
        .await;
        let lines = js(c, "[...document.querySelectorAll('#capture-packets li')].map(li => li.textContent).join('\\n')").await;
        let lines = lines.as_str().unwrap().to_string();
        assert!(lines.contains("vm1:eth0 out IP 10.0.0.1 > 10.0.0.254: ICMP echo request"), "listed on the page: {lines}");
        assert!(lines.contains("vm1:eth0 in  IP 10.0.0.254 > 10.0.0.1: ICMP echo reply"), "listed on the page: {lines}");
        screenshot(c, "seed000-capture-vm1-eth0").await;

        // Stop, then download the pcapng (as the page's link does, with the token).
        c.find(Locator::Id("capture-stop")).await.unwrap().click().await.unwrap();
        wait_in_page(c, "nsview.capture.ended").await;
        let href = js(c, "document.getElementById('capture-download').getAttribute('href')").await;
        let href = href.as_str().unwrap().to_string();
        assert!(href.contains(&format!("token={token}")), "{href}");
        let (status, pcapng) = get_body(&format!("{base}/{href}"));
        assert_eq!(status, "HTTP/1.1 200 OK");
        let id = js(c, "nsview.capture.id").await;
        assert_eq!(get_status(&format!("{base}/api/capture/{id}/pcapng")), "HTTP/1.1 403 Forbidden", "the file without the token");
        std::fs::write(format!("{}/page.pcapng", lab.dir), &pcapng).unwrap();
        // tcpdump reads the page's file and its own: the same ICMP packets, in order.
        let (rc, ours) = lab.run("tcpdump -n -r page.pcapng 2>/dev/null | cut -d' ' -f2-");
        assert_eq!(rc, 0);
        let (_, theirs) = lab.run("tcpdump -n -r td.pcap 2>/dev/null | cut -d' ' -f2-");
        assert_eq!(ours.lines().count(), 10, "five requests, five replies: {ours}");
        assert_eq!(ours, theirs, "the page's capture and tcpdump's, packet for packet");
        let (_, names) = lab.run("tshark -r page.pcapng -T fields -e frame.interface_name 2>/dev/null | sort -u");
        assert_eq!(names.trim(), "vm1/eth0", "the pcapng names its interface NS/LINK");
        let counts = js(c, "nsview.capture.counts").await;
        assert_eq!(counts["packets"], json!(10), "{counts}");
        assert_eq!(counts["dropped"], json!(0), "{counts}");
        assert_eq!(counts["running"], json!(false), "{counts}");
        screenshot(c, "seed000-capture-stopped").await;

        // A bad filter: libpcap's words on the page, nothing started.
        js(c, "(document.getElementById('capture-filter').value = 'port nope')").await;
        c.find(Locator::Id("capture-start")).await.unwrap().click().await.unwrap();
        wait_in_page(c, "nsview.capture && nsview.capture.error").await;
        let err = js(c, "nsview.capture.error").await;
        assert!(err.as_str().unwrap().contains("nope"), "the filter's error: {err}");

        // A capture whose file fills (a TCP stream at full speed, no filter) stops by
        // itself and says why; its file is whole, and the page was sent at most 100
        // packets a second of it.
        js(c, "(document.getElementById('capture-filter').value = '')").await;
        let started = Instant::now();
        c.find(Locator::Id("capture-start")).await.unwrap().click().await.unwrap();
        wait_in_page(c, "nsview.capture && nsview.capture.id && nsview.capture.counts").await;
        // The stream runs until the file is full (however fast a loaded machine lets it
        // fill), then stops.
        let (rc, out) = lab.run(
            "ip netns exec rt iperf3 -s -1 >iperf-s.out 2>&1 & s=$!; sleep 0.3; \
             ip netns exec vm1 iperf3 -c 10.0.0.254 -t 60 >iperf-c.out 2>&1 & ic=$!",
        );
        assert_eq!(rc, 0, "{out}");
        wait_in_page(c, "nsview.capture.ended").await;
        lab.run("kill $ic $s 2>/dev/null; wait $ic $s");
        let seconds = started.elapsed().as_secs() + 1;
        let c2 = js(c, "nsview.capture").await;
        assert!(c2["why"].as_str().unwrap_or_default().contains("the capture file reached 256 MiB"), "{}", c2["why"]);
        let href = js(c, "document.getElementById('capture-download').getAttribute('href')").await;
        let (status, full) = get_body(&format!("{base}/{}", href.as_str().unwrap()));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(full.len() <= 256 << 20 && full.len() > 200 << 20, "{} bytes", full.len());
        std::fs::write(format!("{}/full.pcapng", lab.dir), &full).unwrap();
        drop(full);
        let (rc, n) = lab
            .run("tcpdump -n -r full.pcapng 2>tcpdump-full.err | wc -l; cat tcpdump-full.err >&2; ! grep -qi truncated tcpdump-full.err");
        assert_eq!(rc, 0, "tcpdump reads the whole file: {n}");
        let in_file: u64 = n.trim().parse().unwrap();
        let counts = &c2["counts"];
        assert!(in_file > 1000 && in_file <= counts["packets"].as_u64().unwrap(), "{in_file} in the file; {counts}");
        assert!(counts["listed"].as_u64().unwrap() <= 100 * seconds, "at most 100 a second listed in {seconds} s: {counts}");
        assert!(counts["listed"].as_u64().unwrap() < counts["packets"].as_u64().unwrap(), "{counts}");
        lab.run("rm -f full.pcapng");

        // A TCP trace from the form: the SYN's path, and where it stopped (inet answers
        // with a RST: nothing listens on port 80 there).
        let (t, text) = trace_in_page(c, "vm1", "203.0.113.1", Some(("tcp", 80))).await;
        assert_eq!(t["result"]["ok"], json!(false), "{text}");
        assert!(text.contains("Flags [S]") && text.contains("source NAT 10.0.0.1:"), "the SYN through rt's SNAT: {text}");
        assert!(t["result"]["reason"].as_str().unwrap().contains("nothing listens on 203.0.113.1 port 80"), "{t}");
        assert_eq!(t["result"]["stopped_at"], json!({ "ns": "inet", "link": "eth0" }));
        let end = js(c, "document.getElementById('trace-end').textContent").await;
        assert!(end.as_str().unwrap().contains("TCP RST"), "{end}");
        assert_eq!(js(c, "nsview.cy.$('.stop').map(e => e.id())").await, json!(["ns:inet"]), "where it stopped, marked");
        screenshot(c, "seed000-trace-tcp-80").await;
        format!("capture from the page: {} packets listed; pcapng {} bytes", 10, pcapng.len())
    });
    eprintln!("{report}");
    let rest = lab.finish();
    assert!(rest.contains("@@UI_EXIT 0"), "the live view ends cleanly on SIGTERM: {rest}");
}
