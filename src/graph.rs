//! The lab as a picture: namespaces and bridges as boxes with their interfaces and
//! addresses, veth pairs, bridge ports and VXLAN tunnels as edges. Built from the plan
//! backend's model (no root needed); drawn as ASCII boxes (like the walkthroughs'
//! diagrams), Graphviz DOT, Mermaid or JSON.

use crate::backend::plan::{Model, PLink};
use crate::ops::NsRef;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, VecDeque};

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Node {
    /// Unique: `ns:NAME`, `host`, `br:NAME` (host bridge), `br:NS/NAME`, `ext:IP`.
    pub id: String,
    /// `netns`, `host`, `bridge`, `external`.
    pub kind: String,
    pub title: String,
    pub lines: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Edge {
    pub a: String,
    pub b: String,
    /// `veth` or `vxlan`.
    pub kind: String,
    /// The interface names at each end: `eth0 -- vm1-eth0`.
    pub label: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Graph {
    pub lab: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

fn ns_id(ns: &NsRef) -> String {
    match ns {
        NsRef::Host => "host".into(),
        NsRef::Named(n) => format!("ns:{n}"),
    }
}

fn bridge_id(ns: &NsRef, name: &str) -> String {
    match ns {
        NsRef::Host => format!("br:{name}"),
        NsRef::Named(n) => format!("br:{n}/{name}"),
    }
}

/// The box a link is drawn in: its bridge's for a port or a bridge, else its namespace's.
fn node_of(l: &PLink) -> String {
    if l.kind == "bridge" {
        return bridge_id(&l.ns, &l.name);
    }
    match &l.master {
        Some(br) => bridge_id(&l.ns, br),
        None => ns_id(&l.ns),
    }
}

pub fn build(lab: &str, m: &Model) -> Graph {
    let mut g = Graph { lab: lab.to_string(), ..Graph::default() };
    // An address SLAAC forms is marked: the plan knows its prefix, its host part only from a known MAC.
    let addr_text = |l: &PLink| {
        m.addrs
            .iter()
            .filter(|a| a.ns == l.ns && a.link == l.name)
            .map(|a| if m.slaac.contains(a) { format!("{} (slaac)", a.addr) } else { a.addr.to_string() })
            .collect::<Vec<_>>()
    };
    for ns in m.namespaces() {
        let links = m.links_in(&ns);
        let mut lines = Vec::new();
        for l in links.iter().filter(|l| l.kind != "loopback" && l.kind != "bridge" && l.master.is_none()) {
            let kind = if l.kind == "veth" { String::new() } else { format!(" ({})", l.kind) };
            lines.push(format!("{}{kind}", l.name));
            lines.extend(addr_text(l));
        }
        // The lab's services (dnsmasq: DHCP, relay, DNS, router advertisements) as labels.
        lines.extend(m.services.iter().filter(|s| s.run.ns == ns).map(|s| format!("[{}]", s.run.label)));
        let title = ns.name().unwrap_or("host").to_string();
        if ns != NsRef::Host || !lines.is_empty() {
            g.nodes.push(Node { id: ns_id(&ns), kind: if ns == NsRef::Host { "host" } else { "netns" }.into(), title, lines });
        }
        for br in links.iter().filter(|l| l.kind == "bridge") {
            let mut lines = addr_text(br);
            for port in links.iter().filter(|p| p.master.as_deref() == Some(&br.name)) {
                let kind = if port.kind == "veth" { String::new() } else { format!(" ({})", port.kind) };
                lines.push(format!("port {}{kind}", port.name));
            }
            let title = match &ns {
                NsRef::Host => br.name.clone(),
                NsRef::Named(n) => format!("{} (in {n})", br.name),
            };
            g.nodes.push(Node { id: bridge_id(&ns, &br.name), kind: "bridge".into(), title, lines });
        }
    }
    let mut seen = BTreeSet::new();
    for l in &m.links {
        if l.kind == "veth" {
            let Some(p) = l.peer.and_then(|p| m.by_id(p)) else { continue };
            if !seen.insert((l.id.min(p.id), l.id.max(p.id))) {
                continue;
            }
            g.edges.push(Edge { a: node_of(l), b: node_of(p), kind: "veth".into(), label: format!("{} -- {}", l.name, p.name) });
        }
        if let (Some(remote), "vxlan") = (l.remote, l.kind.as_str()) {
            let b = match m.owner_of(&remote).and_then(|(ns, name)| m.link(ns, name)) {
                Some(t) => node_of(t),
                None => {
                    let id = format!("ext:{remote}");
                    if !g.nodes.iter().any(|n| n.id == id) {
                        g.nodes.push(Node { id: id.clone(), kind: "external".into(), title: remote.to_string(), lines: vec![] });
                    }
                    id
                }
            };
            let a = node_of(l);
            // Two VXLAN ends pointing at each other make one tunnel.
            if let Some(e) = g.edges.iter_mut().find(|e| e.kind == "vxlan" && e.a == b && e.b == a) {
                e.label = format!("{} == {}", e.label, l.name);
                continue;
            }
            g.edges.push(Edge { a, b, kind: "vxlan".into(), label: format!("{} (remote {remote})", l.name) });
        }
    }
    g
}

// ---- ASCII ----

struct Placed {
    x: usize,
    width: usize,
    rows: Vec<String>,
}

fn boxed(n: &Node) -> Vec<String> {
    let mut content = vec![String::new(), n.title.clone()];
    if n.kind == "bridge" {
        content[1] = format!("bridge {}", n.title);
    }
    content.extend(n.lines.iter().cloned());
    content.push(String::new());
    let inner = content.iter().map(|s| s.chars().count()).max().unwrap_or(0) + 2;
    let border = format!("+{}+", "-".repeat(inner));
    let mut rows = vec![border.clone()];
    for c in content {
        let len = c.chars().count();
        let left = (inner - len) / 2;
        rows.push(format!("|{}{}{}|", " ".repeat(left), c, " ".repeat(inner - len - left)));
    }
    rows.push(border);
    rows
}

/// Layers by breadth-first search, so every drawn edge joins adjacent layers.
fn layers(g: &Graph) -> Vec<Vec<usize>> {
    let idx: HashMap<&str, usize> = g.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let mut adj = vec![Vec::new(); g.nodes.len()];
    for e in &g.edges {
        if let (Some(&a), Some(&b)) = (idx.get(e.a.as_str()), idx.get(e.b.as_str())) {
            adj[a].push(b);
            adj[b].push(a);
        }
    }
    let mut layer = vec![usize::MAX; g.nodes.len()];
    let mut base = 0;
    for start in 0..g.nodes.len() {
        if layer[start] != usize::MAX {
            continue;
        }
        layer[start] = base;
        let mut q = VecDeque::from([start]);
        let mut deepest = base;
        while let Some(u) = q.pop_front() {
            for &v in &adj[u] {
                if layer[v] == usize::MAX {
                    layer[v] = layer[u] + 1;
                    deepest = deepest.max(layer[v]);
                    q.push_back(v);
                }
            }
        }
        base = deepest + 1;
    }
    let mut out = vec![Vec::new(); base];
    for (i, l) in layer.iter().enumerate() {
        out[*l].push(i);
    }
    out
}

fn put(grid: &mut [char], x: usize, c: char) {
    if let Some(cell) = grid.get_mut(x) {
        *cell = c;
    }
}

pub fn ascii(g: &Graph) -> String {
    if g.nodes.is_empty() {
        return format!("lab {}: nothing to draw\n", g.lab);
    }
    let layers = layers(g);
    let mut placed: HashMap<usize, Placed> = HashMap::new();
    let widths: Vec<usize> = layers
        .iter()
        .map(|l| l.iter().map(|&i| boxed(&g.nodes[i])[0].chars().count()).sum::<usize>() + 2 * l.len().saturating_sub(1))
        .collect();
    let total = widths.iter().copied().max().unwrap_or(0);
    for (li, l) in layers.iter().enumerate() {
        let mut x = (total - widths[li]) / 2;
        for &i in l {
            let rows = boxed(&g.nodes[i]);
            let width = rows[0].chars().count();
            placed.insert(i, Placed { x, width, rows });
            x += width + 2;
        }
    }
    let idx: HashMap<&str, usize> = g.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let layer_of: HashMap<usize, usize> = layers.iter().enumerate().flat_map(|(li, l)| l.iter().map(move |&i| (i, li))).collect();
    let center = |i: usize| placed[&i].x + placed[&i].width / 2;
    let mut out = String::new();
    for (li, l) in layers.iter().enumerate() {
        let height = l.iter().map(|i| placed[i].rows.len()).max().unwrap_or(0);
        for r in 0..height {
            let mut line = vec![' '; total];
            for i in l {
                let p = &placed[i];
                if let Some(row) = p.rows.get(r) {
                    for (k, c) in row.chars().enumerate() {
                        put(&mut line, p.x + k, c);
                    }
                }
            }
            out.push_str(line.iter().collect::<String>().trim_end());
            out.push('\n');
        }
        // Connectors down to the next layer: one bus per connected group of boxes.
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for e in &g.edges {
            let (Some(&a), Some(&b)) = (idx.get(e.a.as_str()), idx.get(e.b.as_str())) else { continue };
            match (layer_of[&a], layer_of[&b]) {
                (x, y) if x == li && y == li + 1 => pairs.push((center(a), center(b))),
                (x, y) if y == li && x == li + 1 => pairs.push((center(b), center(a))),
                _ => {}
            }
        }
        if pairs.is_empty() {
            if li + 1 < layers.len() {
                out.push('\n');
            }
            continue;
        }
        // Union of pairs sharing an upper or a lower end.
        let mut buses: Vec<(BTreeSet<usize>, BTreeSet<usize>)> = Vec::new();
        for (u, d) in pairs {
            let hits: Vec<usize> = (0..buses.len()).filter(|&k| buses[k].0.contains(&u) || buses[k].1.contains(&d)).collect();
            let mut bus = (BTreeSet::from([u]), BTreeSet::from([d]));
            for &k in hits.iter().rev() {
                let (us, ds) = buses.remove(k);
                bus.0.extend(us);
                bus.1.extend(ds);
            }
            buses.push(bus);
        }
        buses.sort_by_key(|(u, _)| u.iter().next().copied());
        let row = |verticals: &mut dyn Iterator<Item = usize>| {
            let mut line = vec![' '; total];
            for x in verticals {
                put(&mut line, x, '|');
            }
            line
        };
        let mut lines = vec![row(&mut buses.iter().flat_map(|(u, _)| u.iter().copied()))];
        for (k, (ups, downs)) in buses.iter().enumerate() {
            let straight = ups.len() == 1 && downs.len() == 1 && ups.iter().next() == downs.iter().next();
            if straight {
                continue;
            }
            let xs: BTreeSet<usize> = ups.iter().chain(downs.iter()).copied().collect();
            let (lo, hi) = (*xs.iter().next().unwrap_or(&0), *xs.iter().next_back().unwrap_or(&0));
            let mut line = row(&mut buses[..k]
                .iter()
                .flat_map(|(_, d)| d.iter().copied())
                .chain(buses[k + 1..].iter().flat_map(|(u, _)| u.iter().copied())));
            for x in lo..=hi {
                if line[x] != '|' {
                    put(&mut line, x, '-');
                }
            }
            for &x in &xs {
                put(&mut line, x, '+');
            }
            lines.push(line);
        }
        lines.push(row(&mut buses.iter().flat_map(|(_, d)| d.iter().copied())));
        for line in lines {
            out.push_str(line.iter().collect::<String>().trim_end());
            out.push('\n');
        }
    }
    if !g.edges.is_empty() {
        out.push_str("\nlinks:\n");
        let title = |id: &str| g.nodes.iter().find(|n| n.id == id).map(|n| n.title.clone()).unwrap_or_else(|| id.to_string());
        for e in &g.edges {
            let (l, r) = e.label.split_once(" -- ").unwrap_or((e.label.as_str(), ""));
            match e.kind.as_str() {
                "veth" => out.push_str(&format!("  {} {l} <--veth--> {} {r}\n", title(&e.a), title(&e.b))),
                _ => out.push_str(&format!("  {} <=={}==> {}: {}\n", title(&e.a), e.kind, title(&e.b), e.label)),
            }
        }
    }
    out
}

// ---- DOT and Mermaid ----

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(g: &Graph) -> String {
    let mut out = format!("graph \"{}\" {{\n  node [shape=box, fontname=\"monospace\"];\n", dot_escape(&g.lab));
    for n in &g.nodes {
        let title = if n.kind == "bridge" { format!("bridge {}", n.title) } else { n.title.clone() };
        let label = std::iter::once(title).chain(n.lines.iter().cloned()).map(|s| dot_escape(&s)).collect::<Vec<_>>().join("\\n");
        let style = match n.kind.as_str() {
            "bridge" => ", style=rounded",
            "external" => ", shape=ellipse",
            _ => "",
        };
        out.push_str(&format!("  \"{}\" [label=\"{label}\"{style}];\n", dot_escape(&n.id)));
    }
    for e in &g.edges {
        let style = if e.kind == "vxlan" { ", style=dashed" } else { "" };
        out.push_str(&format!("  \"{}\" -- \"{}\" [label=\"{}\"{style}];\n", dot_escape(&e.a), dot_escape(&e.b), dot_escape(&e.label)));
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(g: &Graph) -> String {
    let ids: HashMap<&str, String> = g.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), format!("n{i}"))).collect();
    let esc = |s: &str| s.replace('"', "#quot;");
    let mut out = String::from("graph TD\n");
    for n in &g.nodes {
        let title = if n.kind == "bridge" { format!("bridge {}", n.title) } else { n.title.clone() };
        let label = std::iter::once(title).chain(n.lines.iter().cloned()).map(|s| esc(&s)).collect::<Vec<_>>().join("<br/>");
        let (open, close) = match n.kind.as_str() {
            "bridge" => ("([", "])"),
            "external" => ("((", "))"),
            _ => ("[", "]"),
        };
        out.push_str(&format!("  {}{open}\"{label}\"{close}\n", ids[n.id.as_str()]));
    }
    for e in &g.edges {
        let arrow = if e.kind == "vxlan" { "-.-" } else { "---" };
        out.push_str(&format!("  {} {arrow}|\"{}\"| {}\n", ids[e.a.as_str()], esc(&e.label), ids[e.b.as_str()]));
    }
    out
}

pub fn json(g: &Graph) -> String {
    serde_json::to_string_pretty(g).unwrap_or_default() + "\n"
}
