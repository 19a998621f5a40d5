// nsscript's page: draws a lab (namespaces and bridges as boxes, links as edges) with
// cytoscape.js and the fCoSE layout. Live (`nsscript ui`): the drawing comes from the
// server, then changes arrive as patches over server-sent events and counters as
// rates every second. Standalone (`nsscript graph -f html`): the drawing is in the page.
(function () {
  'use strict';
  const boot = window.NSVIEW_BOOT;
  const $ = (id) => document.getElementById(id);
  // Past this many boxes, labels carry names only (the list and the panel have the rest).
  const BIG = 40;

  const S = {
    lab: boot.lab,
    live: !!boot.live,
    up: true,
    version: 0,
    nodes: new Map(),
    edges: new Map(),
    rates: {},
    selected: null,
    cy: null,
    metrics: { firstDrawMs: null, layoutMs: null, patches: [] },
    waiters: [],
  };
  window.nsview = S;

  const withToken = (path) => path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(boot.token || '');
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const big = () => S.nodes.size > BIG;

  // ---- what each box and edge shows ----
  function ifaceLine(i) {
    let s = i.name;
    if (i.addrs.length) s += ' ' + i.addrs.join(' ');
    if (i.mtu && i.mtu !== 1500 && i.kind !== 'loopback') s += ' mtu ' + i.mtu;
    if (i.state === 'down') s += ' ✕ down';
    if (i.state === 'no-carrier') s += ' ⚠ no carrier';
    return s;
  }
  function nodeLabel(n) {
    const title = n.kind === 'bridge' ? 'bridge ' + n.title : n.title;
    if (big() || n.kind === 'external') return [title];
    if (n.kind === 'bridge') {
      const [self, ...ports] = n.ifaces;
      const lines = [title];
      if (self) lines.push(...self.addrs);
      if (self && self.state !== 'up' && self.state !== 'planned') lines.push(self.state === 'down' ? '✕ down' : '⚠ ' + self.state);
      lines.push(ports.length + (ports.length === 1 ? ' port' : ' ports'));
      if (n.mtu_mismatch) lines.push('⚠ MTU differs');
      return lines;
    }
    return [title, ...n.ifaces.map(ifaceLine)];
  }
  function nodeData(n) {
    const lines = nodeLabel(n);
    const width = Math.max(...lines.map((l) => l.length));
    return {
      id: n.id, kind: n.kind, label: lines.join('\n'),
      w: Math.max(56, width * 6.7 + 18), h: lines.length * 14 + 14,
      mtu: n.mtu_mismatch ? 1 : 0,
      down: n.ifaces.some((i) => i.state === 'down') ? 1 : 0,
    };
  }
  function fmtRate(r) {
    if (!r || (r.pps < 0.05 && r.bps < 1)) return '';
    const b = r.bps;
    const bytes = b >= 1e6 ? (b / 1e6).toFixed(1) + ' MB/s' : b >= 1e3 ? (b / 1e3).toFixed(1) + ' kB/s' : Math.round(b) + ' B/s';
    const pps = r.pps >= 10 ? Math.round(r.pps) : r.pps.toFixed(1);
    return pps + ' pkt/s · ' + bytes;
  }
  // A link's traffic: both directions, counted at its first end.
  function edgeRate(e) {
    const end = e.ends[0];
    const r = end && S.rates[end.ns + '/' + end.name];
    return r ? { pps: r[0] + r[1], bps: r[2] + r[3] } : null;
  }
  function edgeData(e) {
    const lines = [];
    if (!big()) lines.push(e.kind === 'veth' ? e.ends.map((x) => x.name).join(' — ') : e.label);
    if (e.mtu_mismatch) lines.push('⚠ ' + e.mtu_mismatch);
    if (e.state === 'down') lines.push('down');
    const r = edgeRate(e);
    // A big lab's edges show their traffic by their width only (the panel has numbers).
    const rate = big() ? '' : fmtRate(r);
    if (rate) lines.push(rate);
    return {
      id: e.id, source: e.a, target: e.b, kind: e.kind, state: e.state, label: lines.join('\n'),
      mtu: e.mtu_mismatch ? 1 : 0,
      width: (big() ? 1 : 2) + (r ? Math.min(big() ? 3 : 7, Math.log10(1 + r.pps) * 2.2) : 0),
    };
  }

  // ---- the drawing ----
  const style = [
    { selector: 'node', style: {
      shape: 'round-rectangle', width: 'data(w)', height: 'data(h)', label: 'data(label)',
      'text-wrap': 'wrap', 'text-valign': 'center', 'text-halign': 'center',
      'font-family': 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace', 'font-size': 11,
      'background-color': '#e8f0fe', 'border-width': 1.5, 'border-color': '#1a73e8', color: '#202124' } },
    { selector: 'node[kind="bridge"]', style: { 'background-color': '#fef3e0', 'border-color': '#e8710a' } },
    { selector: 'node[kind="host"]', style: { 'background-color': '#eceff1', 'border-color': '#455a64' } },
    { selector: 'node[kind="external"]', style: { shape: 'ellipse', 'background-color': '#fff', 'border-style': 'dashed', 'border-color': '#80868b' } },
    { selector: 'node[down=1]', style: { 'border-color': '#d93025' } },
    { selector: 'node[mtu=1]', style: { 'border-color': '#a142f4', 'border-width': 3, 'border-style': 'double' } },
    { selector: 'node:selected', style: { 'border-width': 3, 'overlay-opacity': 0.08 } },
    { selector: 'edge', style: {
      width: 'data(width)', 'curve-style': 'bezier', 'line-color': '#5f6368', label: 'data(label)', 'text-wrap': 'wrap',
      'font-size': 9, 'font-family': 'ui-monospace, monospace', color: '#3c4043', 'text-rotation': 'autorotate',
      'text-background-color': '#fafafa', 'text-background-opacity': 0.85, 'text-background-padding': 1 } },
    { selector: 'edge[kind="vxlan"]', style: { 'line-style': 'dotted', 'line-color': '#188038' } },
    { selector: 'edge[state="no-carrier"]', style: { 'line-style': 'dashed', 'line-color': '#e37400' } },
    { selector: 'edge[state="down"]', style: { 'line-style': 'dashed', 'line-color': '#d93025', color: '#d93025' } },
    { selector: 'edge[mtu=1]', style: { 'line-color': '#a142f4', color: '#7b1fa2' } },
    { selector: 'node.hop', style: { 'border-color': '#f9ab00', 'border-width': 4, 'background-color': '#fff8e1' } },
    { selector: 'edge.hop', style: { 'line-color': '#f9ab00', width: 6, 'line-style': 'solid', color: '#b06000' } },
    { selector: 'node.stop', style: { 'border-color': '#d93025', 'border-width': 5, 'background-color': '#fce8e6' } },
    { selector: 'edge:selected', style: { 'overlay-opacity': 0.15, 'overlay-color': '#1a73e8' } },
  ];

  // ---- the layout ----
  // Three shapes, each drawn the way it reads best:
  // - a hub with most boxes on it (a star of N namespaces on one bridge): the hub in
  //   the middle, the others on rings around it, as many on each ring as fit;
  // - a tree (most labs: routers, bridges and hosts without loops), up to 60 boxes:
  //   levels from its centre (the box with the shortest longest path), top down;
  // - anything else: fCoSE, a force-directed layout.
  function adjacency() {
    const adj = new Map();
    S.cy.nodes().forEach((n) => adj.set(n.id(), new Set()));
    S.cy.edges().forEach((e) => {
      const a = e.source().id(), b = e.target().id();
      if (a !== b) { adj.get(a).add(b); adj.get(b).add(a); }
    });
    return adj;
  }
  function bfs(adj, from) {
    const dist = new Map([[from, 0]]);
    const queue = [from];
    while (queue.length) {
      const x = queue.shift();
      for (const y of adj.get(x)) if (!dist.has(y)) { dist.set(y, dist.get(x) + 1); queue.push(y); }
    }
    return dist;
  }
  function components(adj) {
    const seen = new Set(), out = [];
    for (const id of adj.keys()) {
      if (seen.has(id)) continue;
      const c = [...bfs(adj, id).keys()];
      c.forEach((x) => seen.add(x));
      out.push(c);
    }
    return out;
  }
  function ringLayout(hub, adj) {
    const cy = S.cy;
    const rest = cy.nodes().filter((n) => n.id() !== hub).sort((a, b) =>
      a.data('label').localeCompare(b.data('label'), undefined, { numeric: true }));
    // Boxes are wider than tall: along a ring they need their width, and between two
    // rings, where a ring runs up and down (left and right of the hub), their width too.
    const w = Math.max(...rest.map((n) => n.data('w'))), h = Math.max(...rest.map((n) => n.data('h')));
    const slotW = w + 12;
    const gap = (w + h) / 2 + 10;
    const hubNode = cy.getElementById(hub);
    let r = Math.max(hubNode.data('w'), hubNode.data('h')) / 2 + gap * 2, i = 0;
    const pos = { [hub]: { x: 0, y: 0 } };
    while (i < rest.length) {
      const fit = Math.max(6, Math.floor((2 * Math.PI * r) / slotW));
      const ring = rest.slice(i, i + fit);
      ring.forEach((n, k) => {
        const a = (2 * Math.PI * k) / ring.length - Math.PI / 2 + (i ? Math.PI / ring.length : 0);
        pos[n.id()] = { x: r * Math.cos(a), y: r * Math.sin(a) };
      });
      i += ring.length;
      r += gap;
    }
    return { name: 'preset', positions: (n) => pos[n.id()], fit: true, padding: 24, animate: false };
  }
  function chooseLayout(randomize) {
    const cy = S.cy, n = cy.nodes().length;
    if (n === 0) return { name: 'null' };
    const adj = adjacency();
    let hub = null, most = 0;
    for (const [id, nb] of adj) if (nb.size > most) { most = nb.size; hub = id; }
    if (n > 12 && most >= 0.6 * (n - 1)) { S.layoutName = 'rings'; return ringLayout(hub, adj); }
    const comps = components(adj);
    const edges = [...adj.values()].reduce((k, nb) => k + nb.size, 0) / 2;
    if (n <= 60 && edges === n - comps.length) {
      // Each tree from its centre.
      const roots = comps.map((c) => {
        let best = c[0], ecc = Infinity;
        for (const id of c) {
          const e = Math.max(...bfs(adj, id).values());
          if (e < ecc || (e === ecc && adj.get(id).size > adj.get(best).size)) { ecc = e; best = id; }
        }
        return best;
      });
      S.layoutName = 'tree';
      return { name: 'breadthfirst', roots: roots.reduce((c, id) => c.union(cy.getElementById(id)), cy.collection()), directed: false,
               spacingFactor: 1.0, avoidOverlap: true, nodeDimensionsIncludeLabels: true, fit: true, padding: 24, animate: false };
    }
    S.layoutName = 'fcose';
    return {
      name: 'fcose', quality: 'default', randomize, animate: false, fit: true, padding: 24,
      nodeDimensionsIncludeLabels: true, packComponents: true,
      idealEdgeLength: () => (big() ? 45 : 70), nodeRepulsion: () => (big() ? 4500 : 9000),
      nodeSeparation: 60, numIter: 2500,
    };
  }
  function layout(randomize) {
    const t = performance.now();
    S.cy.layout(chooseLayout(randomize)).run();
    // Small labs are not blown up past their natural size.
    if (S.cy.zoom() > 1.6) { S.cy.zoom(1.6); S.cy.center(); }
    S.metrics.layoutMs = performance.now() - t;
  }

  // Bring the drawing in line with S.nodes / S.edges: only the ids in `touched`
  // (all of them when it is null). Boxes or links that appear start beside a
  // neighbour and the layout runs again from where everything is.
  function sync(touched) {
    const cy = S.cy;
    let added = false;
    cy.batch(() => {
      const ids = touched || new Set([...cy.elements().map((e) => e.id()), ...S.nodes.keys(), ...S.edges.keys()]);
      for (const id of ids) {
        const el = cy.getElementById(id);
        const n = S.nodes.get(id), e = S.edges.get(id);
        if (!n && !e) { if (el.nonempty()) cy.remove(el); continue; }
        const data = n ? nodeData(n) : edgeData(e);
        if (el.nonempty()) {
          // An edge whose ends changed is a new edge.
          if (e && (el.data('source') !== e.a || el.data('target') !== e.b)) { cy.remove(el); }
          else { el.data(data); continue; }
        }
        if (e && (cy.getElementById(e.a).empty() || cy.getElementById(e.b).empty())) continue;
        cy.add({ group: n ? 'nodes' : 'edges', data });
        added = true;
      }
      // Edges whose boxes arrived later than them.
      for (const e of S.edges.values()) {
        if (cy.getElementById(e.id).empty() && cy.getElementById(e.a).nonempty() && cy.getElementById(e.b).nonempty()) {
          cy.add({ group: 'edges', data: edgeData(e) });
          added = true;
        }
      }
    });
    if (added) {
      const fresh = cy.nodes().filter((n) => !n.scratch('_placed'));
      const first = cy.nodes().length === fresh.length;
      fresh.forEach((n) => {
        const near = n.neighborhood('node').filter((m) => m.scratch('_placed'));
        if (near.nonempty()) {
          const p = near[0].position();
          n.position({ x: p.x + 40 * (Math.random() - 0.5), y: p.y + 40 * (Math.random() - 0.5) });
        }
        n.scratch('_placed', true);
      });
      layout(first);
    }
    renderList();
    renderCounts();
    if (S.selected) showSelected(false);
    $('down').style.display = S.up ? 'none' : 'block';
  }

  // ---- the list of boxes (also what tests and screen readers read) ----
  function renderList() {
    const groups = [['netns', 'Namespaces'], ['host', 'Host'], ['bridge', 'Bridges'], ['external', 'Outside the lab']];
    let html = '';
    for (const [kind, title] of groups) {
      const nodes = [...S.nodes.values()].filter((n) => n.kind === kind).sort((a, b) => a.title.localeCompare(b.title, undefined, { numeric: true }));
      if (!nodes.length) continue;
      html += `<h2>${title} (${nodes.length})</h2><ul>`;
      for (const n of nodes) {
        const cls = ['node', n.mtu_mismatch ? 'mtu' : '', S.selected === n.id ? 'selected' : ''].join(' ');
        html += `<li class="${cls}" data-id="${esc(n.id)}" data-kind="${n.kind}"><span class="name">${esc(n.title)}</span><ul>`;
        for (const i of n.ifaces) {
          html += `<li class="iface" data-iface="${esc(n.ns + '/' + i.name)}" data-state="${i.state}">${esc(ifaceLine(i).replace(/ (✕ down|⚠ no carrier)$/, ''))}</li>`;
        }
        html += '</ul></li>';
      }
      html += '</ul>';
    }
    $('list').innerHTML = html;
  }
  $('list').addEventListener('click', (ev) => {
    const li = ev.target.closest('li.node');
    if (!li) return;
    select(li.dataset.id);
    const el = S.cy.getElementById(li.dataset.id);
    if (el.nonempty()) { S.cy.elements().unselect(); el.select(); S.cy.animate({ center: { eles: el } }, { duration: 200 }); }
  });

  function renderCounts() {
    const ns = [...S.nodes.values()].filter((n) => n.kind === 'netns').length;
    const br = [...S.nodes.values()].filter((n) => n.kind === 'bridge').length;
    const down = [...S.edges.values()].filter((e) => e.state !== 'up' && e.state !== 'planned').length;
    $('counts').textContent = `${ns} namespaces · ${br} bridges · ${S.edges.size} links` + (down ? ` · ${down} not up` : '');
  }

  // ---- the details panel ----
  function ifaceTable(ifaces) {
    let h = '<table class="ifaces"><tr><th>link</th><th>state</th><th>mtu</th><th>addresses</th></tr>';
    for (const i of ifaces) {
      h += `<tr><td>${esc(i.name)}${i.kind && i.kind !== 'veth' ? ' <small>(' + esc(i.kind) + ')</small>' : ''}</td>` +
        `<td class="${i.state}">${esc(i.oper || i.state)}</td><td>${i.mtu}</td><td>${esc(i.addrs.join(' '))}</td></tr>`;
    }
    return h + '</table>';
  }
  function select(id) { S.selected = id; showSelected(true); renderList(); }
  function showSelected(fetchDetails) {
    const n = S.nodes.get(S.selected), e = S.edges.get(S.selected);
    const panel = $('panel');
    if (n) {
      let h = `<div class="section"><h2>${n.kind === 'bridge' ? 'bridge' : n.kind === 'external' ? 'outside the lab' : 'namespace'}</h2>` +
        `<h3>${esc(n.title)}</h3>`;
      if (n.mtu_mismatch) h += `<p class="warn">⚠ ${esc(n.mtu_mismatch)}</p>`;
      if (n.ifaces.length) h += ifaceTable(n.ifaces);
      if (S.live && n.kind === 'bridge') h += captureForm([[n.title, 'the bridge and its ports']]);
      else if (S.live && n.kind === 'netns') h += captureForm([[n.ns, 'every link of ' + n.ns]]);
      if (S.live && n.ns) h += `<h2>:show ${esc(n.ns)}</h2><pre id="details">${fetchDetails ? 'reading…' : esc(S.detailsText || '')}</pre>`;
      h += '</div>';
      renderKeeping(panel, h);
      if (S.live && n.ns && fetchDetails) {
        S.detailsText = '';
        fetch(withToken('api/ns/' + encodeURIComponent(n.ns))).then((r) => r.json()).then((d) => {
          S.detailsText = d.text || d.error || '';
          const pre = $('details');
          if (pre && S.selected === n.id) { pre.textContent = S.detailsText; if (d.error) pre.className = 'err'; }
        });
      }
    } else if (e) {
      let h = `<div class="section"><h2>${esc(e.kind)} link</h2><h3>${esc(e.label)}</h3>`;
      h += `<p>state: <b>${esc(e.state)}</b></p>`;
      if (e.mtu_mismatch) h += `<p class="warn">⚠ ${esc(e.mtu_mismatch)}</p>`;
      h += `<div id="edge-rates">${edgeRatesTable(e)}</div>`;
      if (S.live) {
        const ends = e.ends.map((x) => [x.ns + ':' + x.name, x.ns + ' ' + x.name]);
        if (ends.length > 1) ends.push([ends.map((x) => x[0]).join(','), 'both ends']);
        h += captureForm(ends);
      }
      h += '</div>';
      renderKeeping(panel, h);
    }
  }
  function edgeRatesTable(e) {
    let h = '<table><tr><th>end</th><th>namespace</th><th>rx pkt/s</th><th>tx pkt/s</th><th>rx B/s</th><th>tx B/s</th></tr>';
    for (const x of e.ends) {
      const r = S.rates[x.ns + '/' + x.name] || [0, 0, 0, 0];
      h += `<tr><td>${esc(x.name)}</td><td>${esc(x.ns)}</td>` + r.map((v) => `<td>${v.toFixed(1)}</td>`).join('') + '</tr>';
    }
    return h + '</table>';
  }
  // The panel drawn again (a change in the lab) keeps what the user typed or chose.
  function renderKeeping(panel, html) {
    const kept = ['capture-target', 'capture-filter'].map((id) => [id, $(id) && $(id).value]);
    panel.innerHTML = html;
    for (const [id, v] of kept) if (v !== null && v !== undefined && $(id)) $(id).value = v;
  }

  // ---- capture: the packets of a link, listed as they come, and its pcapng ----
  // `targets`: [value, label] pairs, each value as `nsscript capture LAB TARGET` takes it.
  function captureForm(targets) {
    const opts = targets.map(([v, label]) => `<option value="${esc(v)}">${esc(label)}</option>`).join('');
    return '<h2>capture</h2><div class="capture-form"><p>' +
      `<label>on <select id="capture-target">${opts}</select></label></p>` +
      '<p><label>filter <input id="capture-filter" placeholder="tcpdump syntax, e.g. icmp or port 53"></label> ' +
      '<button id="capture-start">Capture</button></p></div>';
  }
  $('panel').addEventListener('click', (ev) => {
    if (ev.target.id === 'capture-start') startCapture($('capture-target').value, $('capture-filter').value.trim());
  });
  // The page runs one capture at a time: starting one stops the one before.
  function startCapture(targets, filter) {
    const old = S.capture;
    if (old && !old.ended) fetch(withToken('api/capture/' + old.id + '/stop'), { method: 'POST' });
    if (old && old.events) old.events.close();
    const c = { id: null, targets, filter, places: [], packets: [], counts: null, ended: false, why: null, error: null };
    S.capture = c;
    $('capture').innerHTML = `<div class="head">capture on <b>${esc(targets)}</b>: starting…</div>`;
    let q = 'api/capture?targets=' + encodeURIComponent(targets);
    if (filter) q += '&filter=' + encodeURIComponent(filter);
    fetch(withToken(q), { method: 'POST' }).then((r) => r.json()).then((r) => {
      if (S.capture !== c) return;
      if (r.error) { c.error = r.error; c.ended = true; renderCapture(); return; }
      c.id = r.id; c.places = r.places; c.file = r.pcapng; c.fileName = r.file_name;
      renderCapture();
      c.events = new EventSource(withToken(r.events));
      c.events.addEventListener('packet', (m) => {
        const p = JSON.parse(m.data);
        c.packets.push(p);
        if (c.packets.length > 2000) c.packets.shift();
        const ol = $('capture-packets');
        if (ol && S.capture === c) {
          const li = document.createElement('li');
          li.className = p.dir;
          li.textContent = p.line;
          const atEnd = ol.scrollTop + ol.clientHeight >= ol.scrollHeight - 4;
          ol.appendChild(li);
          while (ol.children.length > 300) ol.removeChild(ol.firstChild);
          if (atEnd) ol.scrollTop = ol.scrollHeight;
        }
        settleWaiters();
      });
      c.events.addEventListener('counts', (m) => { c.counts = JSON.parse(m.data); renderCaptureCounts(); settleWaiters(); });
      c.events.addEventListener('end', (m) => {
        c.ended = true; c.why = JSON.parse(m.data).why; c.events.close();
        renderCapture(); settleWaiters();
      });
    }).catch((err) => { c.error = String(err); c.ended = true; renderCapture(); });
  }
  function renderCaptureCounts() {
    const c = S.capture, el = $('capture-counts');
    if (!c || !el || !c.counts) return;
    const k = c.counts;
    let t = `${k.packets} packet(s), ${k.dropped} dropped by the kernel, file ${(k.file_bytes / 1024).toFixed(1)} KiB`;
    if (k.listed < k.packets) t += ` · ${k.packets - k.listed} not listed (the file has them)`;
    el.textContent = t;
  }
  function renderCapture() {
    const c = S.capture;
    if (!c) { $('capture').innerHTML = ''; return; }
    if (c.error) {
      $('capture').innerHTML = `<div class="head">capture on <b>${esc(c.targets)}</b></div><p class="err">${esc(c.error)}</p>`;
      return;
    }
    let h = `<div class="head">capture ${c.id} on <b>${esc(c.places.join(' '))}</b>` + (c.filter ? ` <code>${esc(c.filter)}</code>` : '') +
      (c.ended ? ' <span class="counts">stopped</span>' : ' <button id="capture-stop">Stop</button>') +
      ` <a id="capture-download" href="${esc(withToken(c.file))}" download="${esc(c.fileName)}">pcapng</a>` +
      ' <button id="capture-close" title="close this capture">✕</button>' +
      `<span class="counts" id="capture-counts"></span></div>`;
    if (c.why) h += `<p class="err">the capture stopped by itself: ${esc(c.why)}</p>`;
    h += '<ol id="capture-packets"></ol>';
    $('capture').innerHTML = h;
    const ol = $('capture-packets');
    for (const p of c.packets.slice(-300)) {
      const li = document.createElement('li');
      li.className = p.dir; li.textContent = p.line; ol.appendChild(li);
    }
    ol.scrollTop = ol.scrollHeight;
    renderCaptureCounts();
  }
  $('capture').addEventListener('click', (ev) => {
    const c = S.capture;
    if (!c) return;
    if (ev.target.id === 'capture-stop') {
      ev.target.disabled = true;
      fetch(withToken('api/capture/' + c.id + '/stop'), { method: 'POST' });
    } else if (ev.target.id === 'capture-close') {
      if (!c.ended && c.id) fetch(withToken('api/capture/' + c.id + '/stop'), { method: 'POST' });
      if (c.events) c.events.close();
      S.capture = null;
      renderCapture();
    }
  });

  // ---- reachability (pingall) ----
  $('pingall').addEventListener('click', () => {
    if (!S.live) return;
    const btn = $('pingall');
    btn.disabled = true;
    $('panel').innerHTML = '<div class="section"><h2>reachability</h2><p>pingall: every namespace pings every other one…</p></div>';
    S.selected = null;
    fetch(withToken('api/pingall'), { method: 'POST' }).then((r) => r.json()).then((m) => {
      btn.disabled = false;
      let h = '<div class="section"><h2>reachability (pingall)</h2>';
      if (m.error) { $('panel').innerHTML = h + `<p class="err">${esc(m.error)}</p></div>`; return; }
      h += `<p>${m.reached} of ${m.pairs} pairs answered in ${Math.round(m.elapsed_ms)} ms; row pings column.</p>`;
      h += '<table class="matrix"><tr><th></th>' + m.nodes.map((n) => `<th title="${esc(n.addr)}">${esc(n.name)}</th>`).join('') + '</tr>';
      m.rtt_ms.forEach((row, i) => {
        h += `<tr><th>${esc(m.nodes[i].name)}</th>` + row.map((v, j) => i === j ? '<td class="self">·</td>'
          : v === null ? `<td class="no" title="no answer">✕</td>` : `<td class="yes" title="${v.toFixed(2)} ms">✓</td>`).join('') + '</tr>';
      });
      $('panel').innerHTML = h + '</table></div>';
      S.lastMatrix = m;
    }).catch((err) => { btn.disabled = false; $('panel').innerHTML = `<p class="err">${esc(err)}</p>`; });
  });
  // ---- trace: one probe, its steps animated on the drawing ----
  // The boxes and edges a step happened at: the box holding its link, the edges ending there.
  function stepElements(st) {
    const ids = [];
    for (const n of S.nodes.values()) {
      if (n.ns === st.ns && n.ifaces.some((i) => i.name === st.link)) ids.push(n.id);
    }
    for (const e of S.edges.values()) if (e.ends.some((x) => x.ns === st.ns && x.name === st.link)) ids.push(e.id);
    if (!ids.length) { const n = S.nodes.get(st.ns === 'host' ? 'host' : 'ns:' + st.ns); if (n) ids.push(n.id); }
    return ids;
  }
  function clearTrace() { if (S.cy) S.cy.elements().removeClass('hop stop'); }
  $('trace').addEventListener('click', () => {
    if (!S.live) return;
    S.selected = null;
    const names = [...S.nodes.values()].filter((n) => n.kind === 'netns').map((n) => n.ns)
      .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    $('panel').innerHTML = '<div class="section"><h2>trace</h2><p>One probe from a namespace (an ICMP echo, a TCP SYN or a UDP datagram), followed on every link of the lab.</p>' +
      '<p><label>from <select id="trace-from">' + names.map((n) => `<option>${esc(n)}</option>`).join('') + '</select></label> ' +
      '<label>to <input id="trace-to" size="15" placeholder="an IP address"></label></p>' +
      '<p><label>probe <select id="trace-proto"><option>icmp</option><option>tcp</option><option>udp</option></select></label> ' +
      '<label id="trace-port-label" style="display:none">port <input id="trace-port" size="6" placeholder="80"></label> ' +
      '<button id="trace-run">Run</button></p>' +
      '<ol id="trace-steps" class="steps"></ol><div id="trace-end"></div></div>';
    $('trace-proto').addEventListener('change', () => {
      $('trace-port-label').style.display = $('trace-proto').value === 'icmp' ? 'none' : '';
    });
    $('trace-run').addEventListener('click', runTrace);
  });
  function runTrace() {
    const from = $('trace-from').value, to = $('trace-to').value.trim();
    const proto = $('trace-proto').value, port = $('trace-port').value.trim();
    clearTrace();
    $('trace-steps').innerHTML = '';
    $('trace-end').innerHTML = '<p>tracing…</p>';
    const t = { from, to, proto, port, steps: [], visited: [], done: false };
    S.lastTrace = t;
    let q = 'api/trace?from=' + encodeURIComponent(from) + '&to=' + encodeURIComponent(to) + '&proto=' + proto;
    if (proto !== 'icmp') q += '&port=' + encodeURIComponent(port);
    fetch(withToken(q), { method: 'POST' })
      .then((r) => r.json()).then((r) => {
        if (r.error) { $('trace-end').innerHTML = `<p class="err">${esc(r.error)}</p>`; t.error = r.error; t.done = true; return; }
        t.result = r;
        t.steps = r.steps;
        $('trace-steps').innerHTML = r.steps.map((st, i) => `<li data-step="${i}">${esc(st.text)}</li>`).join('');
        $('trace-end').innerHTML = '';
        // Hop by hop: each step lights up where it happened, with its line beside.
        r.steps.forEach((st, i) => setTimeout(() => {
          if (S.lastTrace !== t) return;
          const ids = stepElements(st);
          ids.forEach((id) => { S.cy.getElementById(id).addClass('hop'); if (!t.visited.includes(id)) t.visited.push(id); });
          document.querySelectorAll('#trace-steps li').forEach((li) => li.classList.toggle('now', li.dataset.step === String(i)));
        }, 450 * i));
        setTimeout(() => {
          if (S.lastTrace !== t) return;
          document.querySelectorAll('#trace-steps li').forEach((li) => li.classList.remove('now'));
          let end = r.ok ? '<p class="ok">✓ answered: the reply came back</p>' : '';
          if (r.reason) {
            if (r.stopped_at) stepElements(r.stopped_at).slice(0, 1).forEach((id) => S.cy.getElementById(id).addClass('stop'));
            end += `<p class="err">stopped${r.stopped_at ? ' at ' + esc(r.stopped_at.ns + (r.stopped_at.link ? ' ' + r.stopped_at.link : '')) : ''}: ${esc(r.reason)}</p>`;
          }
          if (r.help) end += `<p class="hint">help: ${esc(r.help)}</p>`;
          $('trace-end').innerHTML = end;
          t.done = true;
          settleWaiters();
        }, 450 * r.steps.length);
      }).catch((err) => { $('trace-end').innerHTML = `<p class="err">${esc(err)}</p>`; t.error = String(err); t.done = true; });
  }
  $('fit').addEventListener('click', () => S.cy.fit(undefined, 24));
  $('relayout').addEventListener('click', () => layout(true));

  // ---- applying what the server says ----
  function load(view) {
    S.up = view.up;
    S.nodes = new Map(view.nodes.map((n) => [n.id, n]));
    S.edges = new Map(view.edges.map((e) => [e.id, e]));
  }
  function patch(p) {
    const touched = new Set();
    S.up = p.up;
    for (const n of p.nodes_set) { S.nodes.set(n.id, n); touched.add(n.id); }
    for (const id of p.nodes_del) { S.nodes.delete(id); touched.add(id); }
    for (const e of p.edges_set) { S.edges.set(e.id, e); touched.add(e.id); }
    for (const id of p.edges_del) { S.edges.delete(id); touched.add(id); }
    return touched;
  }
  function settleWaiters() {
    S.waiters = S.waiters.filter((w) => { if (w.pred()) { w.resolve(Date.now()); return false; } return true; });
  }
  // Resolves (with the time it became true) once pred() holds after a drawing.
  S.waitFor = (pred) => new Promise((resolve) => { S.waiters.push({ pred, resolve }); settleWaiters(); });
  S.ifaceState = (key) => { for (const n of S.nodes.values()) for (const i of n.ifaces) if (n.ns + '/' + i.name === key) return i.state; return null; };

  function afterPaint(f) { requestAnimationFrame(() => requestAnimationFrame(f)); }

  function start() {
    S.cy = cytoscape({ container: $('cy'), style, elements: [], wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 4 });
    S.cy.on('tap', 'node, edge', (ev) => select(ev.target.id()));
    if (!S.live) {
      $('status').textContent = 'from the script (plan)';
      $('status').className = 'plan';
      $('pingall').style.display = 'none';
      $('trace').style.display = 'none';
      load(boot.view);
      sync(null);
      afterPaint(() => { S.metrics.firstDrawMs = performance.now(); });
      return;
    }
    const events = new EventSource(withToken('api/events'));
    events.onopen = () => { $('status').textContent = 'live'; $('status').className = 'live'; };
    events.onerror = () => { $('status').textContent = 'reconnecting…'; $('status').className = 'lost'; };
    events.addEventListener('snapshot', (m) => {
      const v = JSON.parse(m.data);
      S.version = v.version;
      load(v.view);
      sync(null);
      if (S.metrics.firstDrawMs === null) afterPaint(() => { S.metrics.firstDrawMs = performance.now(); settleWaiters(); });
      else afterPaint(settleWaiters);
    });
    events.addEventListener('patch', (m) => {
      const received = Date.now();
      const p = JSON.parse(m.data);
      if (p.version <= S.version) return;
      S.version = p.version;
      const wasBig = big();
      const touched = patch(p.patch);
      // Labels switch between full and short as the lab crosses BIG boxes: redo all.
      sync(wasBig !== big() ? null : touched);
      afterPaint(() => {
        S.metrics.patches.push({ version: p.version, kernelAt: p.at, sentAt: p.sent, receivedAt: received, drawnAt: Date.now() });
        if (S.metrics.patches.length > 200) S.metrics.patches.shift();
        settleWaiters();
      });
    });
    events.addEventListener('rates', (m) => {
      S.rates = JSON.parse(m.data).ifaces;
      S.cy.batch(() => { for (const e of S.edges.values()) { const el = S.cy.getElementById(e.id); if (el.nonempty()) el.data(edgeData(e)); } });
      if (S.edges.has(S.selected) && $('edge-rates')) $('edge-rates').innerHTML = edgeRatesTable(S.edges.get(S.selected));
      settleWaiters();
    });
  }
  cytoscape.use(cytoscapeFcose);
  start();
})();
