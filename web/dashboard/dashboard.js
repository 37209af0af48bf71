// strata's dashboard: polls the agent's read-only JSON every second and draws it. Every value
// goes into the page as text (never as HTML), so a layer name or an error message cannot inject
// markup. The API token for approvals lives only in this tab's memory.
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
let token = null; // the API token, once given: never written to storage
let timer = null;
let generation = 0; // a view change drops the answers of polls started before it

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const short = (rev) => (rev ? rev.slice(0, 12) : "-");
const layerHref = (id) => "#/layer/" + encodeURIComponent(id);
const revHref = (rev) => "#/history/" + encodeURIComponent(rev);
const layerLink = (id) => h("a", { href: layerHref(id) }, id);
const revLink = (rev) => (rev ? h("a", { href: revHref(rev), title: rev }, h("code", {}, short(rev))) : "-");
const badge = (state, words) => h("span", { class: "badge s-" + state, "data-state": state }, words);

// An agent converging several environments shows one at a time, /?env=NAME, with a tab for each.
let ENV = new URLSearchParams(location.search).get("env");
const withEnv = (path) =>
  ENV ? path + (path.includes("?") ? "&" : "?") + "env=" + encodeURIComponent(ENV) : path;

async function getJson(path) {
  const r = await fetch(withEnv(path), { headers: { accept: "application/json" }, cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || r.status + " " + r.statusText);
  return body;
}

function setLive(ok, text) {
  const live = document.getElementById("live");
  live.textContent = text;
  live.className = ok ? "ok" : "down";
}

// The environments' tabs: links (keyboard and screen readers know them), the current one marked
// aria-current, each with its layers' states in words. Updated in place, so that a tab holding
// the keyboard focus keeps it across polls. Fewer than two environments: no tabs.
function drawTabs(list) {
  const nav = document.getElementById("envs");
  nav.hidden = list.length < 2;
  if (nav.hidden) {
    nav.replaceChildren();
    return;
  }
  const names = list.map((t) => t.name).join("\n");
  let ul = nav.querySelector("ul");
  if (!ul || ul.dataset.names !== names) {
    ul = h("ul", { "data-names": names }, list.map((t) => h("li", {}, tabLink(t.name))));
    nav.replaceChildren(ul);
  }
  list.forEach((t, i) => {
    const a = ul.children[i].firstElementChild;
    a.setAttribute("class", "tab s-" + t.state);
    a.dataset.state = t.state;
    if (t.name === ENV) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
    a.querySelector(".words").textContent = t.words + (t.ready ? "" : " · not ready");
  });
}

function tabLink(name) {
  const a = h("a", { href: "?env=" + encodeURIComponent(name) + "#/", "data-env": name },
    h("span", { class: "env" }, name), " ", h("span", { class: "words" }));
  a.addEventListener("click", (ev) => {
    // A new window or tab is the browser's business: the link's address already says which.
    if (ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    ENV = name;
    history.pushState(null, "", "?env=" + encodeURIComponent(name) + "#/");
    restart();
  });
  return a;
}

// The tabs, and the environment shown: the first one when the address names none.
async function environments() {
  const list = (await getJson("/api/v1/environments")).environments;
  if (!ENV && list.length > 1) {
    ENV = list[0].name;
    history.replaceState(null, "", "?env=" + encodeURIComponent(ENV) + location.hash);
  }
  drawTabs(list);
}

function header(o) {
  document.getElementById("stack").textContent = o.stack ? "· " + o.stack : "";
  const rev = document.getElementById("revision");
  // Flattened: replaceChildren would turn a nested list into its text, links and all.
  rev.replaceChildren(...[
    "revision ", revLink(o.revision),
    o.commit ? ` “${o.commit.summary}” by ${o.commit.author}` : "",
    o.latest_seen && o.latest_seen !== o.revision ? [" · newest seen ", revLink(o.latest_seen)] : "",
    o.applying_revision && o.applying_revision !== o.revision ? [" · applying ", revLink(o.applying_revision)] : "",
    o.ready ? " · ready" : ` · not ready: ${o.not_ready || "no successful sync yet"}`,
  ].flat());
  document.title = `strata · ${o.stack || "dashboard"}`;
}

// The graph: one column per wave, a box per layer with its state in words, edges with labels.
// An edge between neighbouring waves runs straight across the gap, its labels stacked in it; an
// edge that skips waves runs along a lane below the boxes, so it never hides behind one.
function graphSvg(o) {
  const W = 210, H = 58, GX = 120, GY = 26, PAD = 16, TOP = 22, LANE = 30;
  const fit = (t, n) => (t.length > n ? t.slice(0, n - 1) + "…" : t);
  const columns = (o.graph ? o.graph.waves : []).map((w) => w.slice());
  const placed = new Set(columns.flat());
  const rest = o.layers.filter((l) => !placed.has(l.layer)).map((l) => l.layer);
  if (rest.length) columns.push(rest);
  const pos = new Map();
  columns.forEach((col, i) =>
    col.forEach((id, j) => pos.set(id, { x: PAD + i * (W + GX), y: PAD + TOP + j * (H + GY), col: i })));
  const tall = Math.max(1, ...columns.map((c) => c.length));
  const edges = o.graph ? o.graph.edges.filter((e) => pos.has(e.from) && pos.has(e.to)) : [];
  const long = edges.filter((e) => pos.get(e.to).col - pos.get(e.from).col !== 1);
  const floor = PAD + TOP + tall * (H + GY);
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GX;
  const height = floor + long.length * LANE + PAD;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-labelledby": "graph-title" });
  svg.append(s("title", { id: "graph-title" }, "The stack's layers by wave, with their states"));
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "8", markerHeight: "8", orient: "auto-start-reverse" },
  s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))));
  columns.forEach((col, i) => {
    const label = o.graph && i < o.graph.waves.length ? `wave ${i + 1}` : "not in the stack file";
    svg.append(s("text", { x: PAD + i * (W + GX), y: PAD + 10, class: "wave" }, label));
  });
  for (const e of edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    const g = s("g", { class: "edge" });
    g.append(s("title", {}, `${e.from} → ${e.to}: ${e.labels.join(", ")}`));
    const lane = long.indexOf(e);
    if (lane < 0) {
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      g.append(s("path", { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`,
        "marker-end": "url(#arrow)" }));
      e.labels.forEach((t, k) => g.append(s("text", { x: mx, y: Math.min(y1, y2) - 6 - (e.labels.length - 1 - k) * 14,
        "text-anchor": "middle" }, fit(t, 20))));
    } else {
      const y = floor + lane * LANE, x1 = a.x + W / 2, x2 = b.x + W / 3;
      g.append(s("path", { d: `M ${x1} ${a.y + H} L ${x1} ${y} L ${x2} ${y} L ${x2} ${b.y + H}`,
        "marker-end": "url(#arrow)" }));
      g.append(s("text", { x: (x1 + x2) / 2, y: y - 4, "text-anchor": "middle" },
        fit(e.labels.join(", "), 60)));
    }
    svg.append(g);
  }
  for (const l of o.layers) {
    const p = pos.get(l.layer);
    if (!p) continue;
    const a = s("a", { href: layerHref(l.layer), class: "layer s-" + l.state, "data-layer": l.layer,
      "data-state": l.state });
    a.append(s("title", {}, `${l.layer}: ${l.words}${l.detail ? " — " + l.detail : ""}`));
    a.append(s("rect", { x: p.x, y: p.y, width: W, height: H, rx: 6 }));
    a.append(s("text", { x: p.x + 10, y: p.y + 22, class: "name" }, fit(l.layer, 22)));
    a.append(s("text", { x: p.x + 10, y: p.y + 44, class: "words" }, fit(l.words, 32)));
    svg.append(a);
  }
  return svg;
}

function layerTable(o) {
  return h("table", { class: "layers" },
    h("caption", {}, "Layers"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "layer"), h("th", { scope: "col" }, "wave"),
      h("th", { scope: "col" }, "state"), h("th", { scope: "col" }, "why"))),
    h("tbody", {}, o.layers.map((l) => h("tr", { "data-layer": l.layer },
      h("td", {}, layerLink(l.layer)), h("td", {}, l.wave || "-"),
      h("td", {}, badge(l.state, l.words)), h("td", { class: "detail" }, l.detail || "")))));
}

function overviewView(o) {
  const waiting = o.awaiting_approval.length
    ? h("section", { class: "callout" }, h("h2", {}, "Waiting for approval"),
      h("ul", {}, o.awaiting_approval.map((a) =>
        h("li", {}, layerLink(a.layer), " — plan ", h("code", {}, a.plan)))))
    : null;
  return [
    waiting,
    h("section", { "aria-labelledby": "graph-h" }, h("h2", { id: "graph-h" }, "Graph"),
      o.graph_error ? h("p", { class: "warn" }, o.graph_error) : null,
      h("div", { class: "graph" }, graphSvg(o))),
    layerTable(o),
  ];
}

function changesList(changes) {
  if (!changes.length) return h("p", {}, "No changes.");
  return h("ul", { class: "changes" }, changes.map((c) => h("li", { class: "a-" + c.action },
    h("code", {}, c.line),
    c.fields.length ? h("table", { class: "fields" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "field"), h("th", { scope: "col" }, "before"),
        h("th", { scope: "col" }, "after"))),
      h("tbody", {}, c.fields.map((f) => h("tr", { "data-field": f.path },
        h("td", {}, h("code", {}, f.path)), h("td", { class: "before" }, h("code", {}, f.before)),
        h("td", { class: "after" }, h("code", {}, f.after)))))) : null,
    c.notes.length ? h("ul", {}, c.notes.map((n) => h("li", {}, n))) : null)));
}

function runsTable(rows, withLayers) {
  if (!rows.length) return h("p", {}, "No runs yet.");
  return h("table", { class: "runs" },
    h("thead", {}, h("tr", {}, ["finished", "command", "revision", "result", withLayers ? "layers" : "error"]
      .map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {},
      h("td", {}, r.finished), h("td", {}, r.command),
      h("td", {}, revLink(r.revision), r.commit ? ` “${r.commit.summary}”` : ""),
      h("td", {}, withLayers ? r.result : [r.action, r.counts ? " " + r.counts : ""]),
      h("td", {}, withLayers
        ? r.layers.map((l) => h("span", { class: "run-layer" }, layerLink(l.layer), ` ${l.action}`,
          l.counts ? ` ${l.counts}` : ""))
        : (r.error || ""))))));
}

// The approval form survives the page's redraws while it waits on the same plan, so that a
// token being typed is not wiped by the next poll.
function approveSection(page) {
  const a = page.awaiting;
  const section = h("section", { class: "callout", id: "approval", "data-plan": a.plan },
    h("h2", {}, "Awaiting approval"),
    h("p", {}, "Plan ", h("code", { id: "plan" }, a.plan),
      a.revision ? [" made from revision ", revLink(a.revision)] : ""));
  const msg = h("p", { id: "approve-result", role: "status" });
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off",
    required: true });
  const tokenField = h("p", { id: "token-field" }, h("label", { for: "token" }, "API token "), input);
  if (token) tokenField.hidden = true;
  const form = h("form", { id: "approve-form" }, tokenField,
    h("button", { type: "submit", id: "approve" }, "Approve"), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!token) token = input.value.trim();
    input.value = "";
    msg.textContent = "approving…";
    try {
      const r = await fetch(withEnv("/api/v1/approve/" + encodeURIComponent(page.layer)), {
        method: "POST",
        headers: { authorization: "Bearer " + token, "content-type": "application/json" },
        body: JSON.stringify({ plan: a.plan }),
      });
      const body = await r.json().catch(() => ({}));
      if (r.status === 401) { token = null; tokenField.hidden = false; }
      msg.textContent = r.ok ? "Approved: the agent applies this plan now." : body.message || String(r.status);
      msg.className = r.ok ? "ok" : "warn";
    } catch (e) {
      msg.textContent = "the agent did not answer: " + e.message;
      msg.className = "warn";
    }
  });
  section.append(form);
  return section;
}

function layerView(page) {
  const dl = h("dl", {},
    h("dt", {}, "state"), h("dd", { id: "layer-state" }, badge(page.state, page.words),
      page.detail ? " " + page.detail : ""),
    h("dt", {}, "wave"), h("dd", {}, page.wave || "not in the stack file"),
    h("dt", {}, "last applied"), h("dd", {}, revLink(page.converged_revision),
      page.converged_commit ? ` “${page.converged_commit.summary}” by ${page.converged_commit.author}` : ""),
    h("dt", {}, "pending"), h("dd", {}, page.pending_revision ? revLink(page.pending_revision) : "nothing"));
  const run = page.last_run;
  const drift = page.drift;
  return [
    h("h2", { id: "layer-name" }, page.layer),
    dl,
    page.awaiting ? h("div", { id: "approval-slot" }) : null,
    h("section", { id: "drift" }, h("h3", {}, "Drift"),
      drift ? [h("p", {}, `checked ${drift.checked_at} against `, revLink(drift.against),
        `: ${drift.observed.state.replace(/_/g, " ")}`,
        drift.observed.reason ? ` (${drift.observed.reason})` : "", drift.detail ? ` — ${drift.detail}` : ""),
      changesList(drift.changes)] : h("p", {}, "No drift check yet.")),
    h("section", { id: "last-run" }, h("h3", {}, "Last run"),
      run ? [h("p", {}, `${run.command} of `, revLink(run.revision),
        run.commit ? ` “${run.commit.summary}”` : "", `, finished ${run.finished}: ${run.summary}`),
      changesList(run.changes)] : h("p", {}, "No run recorded yet.")),
    page.last_error ? h("section", { id: "last-error" }, h("h3", {}, "Last error"),
      h("pre", {}, page.last_error)) : null,
    h("section", {}, h("h3", {}, "Runs"), runsTable(page.history, false)),
  ];
}

function historyView(hist, revision) {
  const runs = revision ? hist.runs.filter((r) => r.revision === revision) : hist.runs;
  return [
    h("h2", {}, revision ? ["Runs of revision ", h("code", {}, short(revision))] : "History"),
    h("section", {}, h("h3", {}, "Runs"), runsTable(runs, true)),
    h("section", {}, h("h3", {}, "Alerts"), hist.alerts.length ? h("table", { class: "alerts" },
      h("thead", {}, h("tr", {}, ["time", "type", "layers", "revision", "summary"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, hist.alerts.map((a) => h("tr", {}, h("td", {}, a.time), h("td", {}, a.type),
        h("td", {}, a.layers.map((l) => h("span", { class: "run-layer" }, layerLink(l)))),
        h("td", {}, revLink(a.revision)), h("td", {}, a.summary))))) : h("p", {}, "No alerts.")),
  ];
}

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const m = hash.match(/^\/layer\/(.+)$/);
  if (m) return { view: "layer", layer: decodeURIComponent(m[1]) };
  const r = hash.match(/^\/history(?:\/(.+))?$/);
  if (r) return { view: "history", revision: r[1] ? decodeURIComponent(r[1]) : null };
  return { view: "overview" };
}

async function refresh() {
  const mine = generation;
  const at = route();
  const main = document.getElementById("main");
  try {
    await environments();
    if (mine !== generation) return;
    const o = await getJson("/api/v1/overview");
    let content;
    if (at.view === "layer") {
      const page = await getJson("/api/v1/layers/" + encodeURIComponent(at.layer));
      if (mine !== generation) return;
      const kept = document.getElementById("approval");
      content = layerView(page);
      main.replaceChildren(...content.filter(Boolean));
      const slot = document.getElementById("approval-slot");
      if (slot) slot.replaceWith(kept && kept.dataset.plan === page.awaiting.plan ? kept : approveSection(page));
    } else if (at.view === "history") {
      const hist = await getJson("/api/v1/history?runs=100&alerts=100");
      if (mine !== generation) return;
      main.replaceChildren(...historyView(hist, at.revision).filter(Boolean));
    } else {
      if (mine !== generation) return;
      main.replaceChildren(...overviewView(o).filter(Boolean));
    }
    header(o);
    setLive(true, "live · updated " + new Date().toLocaleTimeString());
  } catch (e) {
    if (mine !== generation) return;
    setLive(false, "not updating: " + e.message);
    if (!main.firstElementChild || main.querySelector("noscript")) {
      main.replaceChildren(h("p", { class: "warn" }, e.message));
    }
  }
}

async function loop() {
  const mine = generation;
  await refresh();
  if (mine === generation) timer = setTimeout(loop, POLL_MS);
}

// A view change: the polls started before it are dropped, and the new view drawn at once.
function restart() {
  generation += 1;
  clearTimeout(timer);
  loop();
}

window.addEventListener("hashchange", restart);
window.addEventListener("popstate", () => {
  ENV = new URLSearchParams(location.search).get("env");
  restart();
});
loop();
