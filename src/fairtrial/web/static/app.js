// fairtrial dashboard: draws each page from the JSON API and keeps it live by polling (every
// second on a study or stage run, so the page is at most about 2 s behind the workspace).
// No framework and no CDN: plain DOM, every text escaped.
"use strict";

const body = document.body;
const app = document.getElementById("app");
const POLL_MS = 1000;

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;"}[c]));
}
const enc = encodeURIComponent;

async function getJSON(url) {
  const r = await fetch(url, {credentials: "same-origin", cache: "no-store"});
  let data = null;
  try { data = await r.json(); } catch (e) { data = {error: `${r.status} ${r.statusText}`}; }
  if (!r.ok) throw new Error(data && data.error ? data.error : `${r.status}`);
  return data;
}

function fmtS(s) {
  if (s === null || s === undefined) return "?";
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
function fmtT(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }
function num(v, d = 4) {
  if (v === null || v === undefined) return "n/a";
  return typeof v === "number" ? Number(v.toPrecision(d)).toString() : String(v);
}
const STATES = ["failed", "lost", "running", "pending", "cached", "done"];
const ROWS_SHOWN = 500;  // rows drawn at first on a large study (the first paint stays fast)
let showAll = false;
function badge(state, extra = "") {
  return `<span class="st st-${esc(state)}">${esc(state)}${extra ? " " + esc(extra) : ""}</span>`;
}
function crumbs(parts) {
  document.getElementById("crumbs").innerHTML = parts.map(([t, h]) =>
    h ? `<a href="${esc(h)}">${esc(t)}</a>` : `<span>${esc(t)}</span>`).join(" / ");
}
function live(text, ok = true) {
  const el = document.getElementById("live");
  el.textContent = text;
  el.className = "live " + (ok ? "ok" : "bad");
}
function errorBox(e) { return `<p class="error" id="error">${esc(e.message || e)}</p>`; }

// Poll `fn` every `ms` (never two at once); stop when it returns false.
function poll(fn, ms = POLL_MS) {
  let stopped = false;
  async function tick() {
    let again = true;
    try { again = (await fn()) !== false; live("live, updated " + new Date().toLocaleTimeString()); }
    catch (e) { live("update failed: " + e.message, false); }
    if (again && !stopped) setTimeout(tick, ms);
  }
  tick();
  return () => { stopped = true; };
}

function totalsLine(t) {
  return STATES.filter(s => t[s]).map(s => badge(s, t[s])).join(" ") +
    ` <span class="muted">of ${esc(t.total || 0)} stage runs</span>`;
}
function progressBar(t) {
  const n = t.total || 0, done = (t.done || 0) + (t.cached || 0);
  const pct = n ? Math.round(100 * done / n) : 0;
  // a <progress> element: the Content-Security-Policy allows no inline styles
  return `<progress max="${n || 1}" value="${done}" title="${done} of ${n} done"></progress> ` +
    `<span class="muted">${pct}%</span>`;
}

// ------------------------------------------------------------------ studies
async function studiesPage() {
  crumbs([["studies", null]]);
  poll(async () => {
    const d = await getJSON("/api/studies");
    if (!d.studies.length) {
      app.innerHTML = `<h1>Studies</h1><p class="muted">No studies in ${esc(d.workspace)} yet: ` +
        "run one with <code>fairtrial run STUDY.toml</code>.</p>";
      return;
    }
    const rows = d.studies.map(s => {
      const v = s.verdict ? `<span class="v v-${esc(s.verdict.verdict)}">${esc(s.verdict.headline)}</span>`
        : s.last_report ? `<span class="v">${esc(s.last_report.headline)}</span>` +
          `<br><span class="muted">last written report, ${esc(fmtT(s.last_report.written_at))}</span>`
        : `<span class="muted">no report yet</span>`;
      const eta = s.running ? (s.eta_s ? `ETA ${fmtS(s.eta_s)}` : "running") : "";
      return `<tr data-study="${esc(s.name)}"><td><a href="/study/${enc(s.name)}">${esc(s.name)}</a>` +
        `<div class="muted">${esc(s.recipe)}</div></td><td>${esc(s.question || "")}</td>` +
        `<td class="nowrap">${progressBar(s.totals)}<div>${totalsLine(s.totals)}</div></td>` +
        `<td class="nowrap">${s.running ? badge("running", "supervisor") : '<span class="muted">idle</span>'}` +
        `<div class="muted">${esc(eta)}</div></td>` +
        `<td>${v}<div><a href="/report/${enc(s.name)}">report</a> · ` +
        `<a href="/compare/${enc(s.name)}">compare</a></div></td></tr>`;
    }).join("");
    app.innerHTML = `<h1>Studies <span class="muted">in ${esc(d.workspace)}</span></h1>` +
      `<table class="grid" id="studies"><thead><tr><th>study</th><th>question</th><th>progress</th>` +
      `<th>supervisor</th><th>verdict</th></tr></thead><tbody>${rows}</tbody></table>`;
  }, 2000);
}

// ------------------------------------------------------------------ study grid
function cellText(r) {
  let extra = "";
  if (r.state === "running" && r.progress_total) extra = `${Math.round(100 * (r.progress || 0) / r.progress_total)}%`;
  return extra;
}

async function studyPage() {
  const name = body.dataset.name;
  crumbs([["studies", "/"], [name, null]]);
  app.innerHTML = `<div id="head"></div>
    <div class="controls">
      <label>arm <input id="f-arm" type="search" placeholder="filter arms"></label>
      <label>state <select id="f-state"><option value="">any</option><option value="unfinished">unfinished</option>
        ${STATES.map(s => `<option>${s}</option>`).join("")}</select></label>
      <label>sort <select id="f-sort"><option value="arm">arm, seed</option><option value="seed">seed, arm</option>
        <option value="state">state (worst first)</option></select></label>
    </div>
    <div id="grid" class="scroll"></div><div id="details"></div>`;
  let last = null;
  const draw = () => { if (last) drawStudy(last); };
  for (const id of ["f-arm", "f-state", "f-sort"]) document.getElementById(id).addEventListener("input", draw);
  poll(async () => {
    try { last = await getJSON(`/api/study/${enc(name)}`); }
    catch (e) { app.innerHTML = errorBox(e); return false; }
    draw();
  });
}

function drawStudy(st) {
  const t = st.totals;
  const sup = st.supervisor ? `supervisor pid ${esc(st.supervisor.pid)}` : "no supervisor running";
  const verdict = st.verdict ? `<p class="headline v-${esc(st.verdict.verdict)}">${esc(st.verdict.headline)}</p>` : "";
  setHTML("head",
    `<h1>${esc(st.study)} <span class="muted">${esc(st.recipe || "")}</span></h1>` +
    `<p class="question">${esc(st.question || "")}</p>${verdict}` +
    `<p>${totalsLine(t)} · ${st.supervisor && st.eta_s ? "ETA " + fmtS(st.eta_s) + " · " : ""}${sup} · ` +
    `<a href="/report/${enc(st.study)}">report</a> · <a href="/compare/${enc(st.study)}">compare arms</a></p>`);
  const stages = st.stages && st.stages.length ? st.stages : [...new Set(st.cells.map(c => c.stage))];
  const rows = new Map();
  for (const c of st.cells) {
    const k = `${c.arm}\u0000${c.replicate}`;
    if (!rows.has(k)) rows.set(k, {arm: c.arm, seed: c.replicate, cells: {}});
    rows.get(k).cells[c.stage] = c;
  }
  const fa = document.getElementById("f-arm").value.toLowerCase();
  const fs = document.getElementById("f-state").value;
  const sort = document.getElementById("f-sort").value;
  const worst = row => Math.min(...Object.values(row.cells).map(c => STATES.indexOf(c.state)));
  let list = [...rows.values()].filter(row => {
    if (fa && !row.arm.toLowerCase().includes(fa)) return false;
    const states = Object.values(row.cells).map(c => c.state);
    if (fs === "unfinished") return states.some(s => s !== "done" && s !== "cached");
    return !fs || states.includes(fs);
  });
  list.sort((a, b) => sort === "seed" ? (a.seed - b.seed || a.arm.localeCompare(b.arm))
    : sort === "state" ? (worst(a) - worst(b) || a.arm.localeCompare(b.arm) || a.seed - b.seed)
    : (a.arm.localeCompare(b.arm) || a.seed - b.seed));
  const shown = showAll ? list : list.slice(0, ROWS_SHOWN);
  const html = shown.map(row => `<tr><td>${esc(row.arm)}</td><td>${esc(row.seed)}</td>` + stages.map(s => {
    const c = row.cells[s];
    if (!c) return "<td></td>";
    const r = st.runs[c.key] || {};
    const title = r.error || r.message || "";
    return `<td data-cell="${esc(row.arm)}/${esc(row.seed)}/${esc(s)}" data-state="${esc(r.state)}" title="${esc(title)}">` +
      `<a href="/run/${enc(c.key)}">${badge(r.state, cellText(r))}${r.shared ? '<sup title="shared">*</sup>' : ""}` +
      `${r.adjustments ? '<sup title="OOM back-off">+</sup>' : ""}</a>` +
      (r.state === "failed" && r.error ? `<div class="err">${esc(r.error)}</div>` : "") + `</td>`;
  }).join("") + "</tr>").join("");
  const grid = `<table class="grid" id="cells"><thead><tr><th>arm</th><th>seed</th>${stages.map(s => `<th>${esc(s)}</th>`).join("")}` +
    `</tr></thead><tbody>${html}</tbody></table>` +
    `<p class="muted">${list.length} of ${rows.size} arm x seed rows` +
    `${list.length > shown.length ? `, the first ${shown.length} shown (filter to narrow, or <button id="show-all">show all</button>)` : ""}` +
    ` · * shared by several arms/seeds · + an OOM back-off was applied</p>`;
  setHTML("grid", grid);
  const more = document.getElementById("show-all");
  if (more) more.onclick = () => { showAll = true; drawStudy(st); };
  const notes = Object.values(st.runs).filter(r => ["running", "failed", "lost"].includes(r.state)).slice(0, 200);
  setHTML("details", notes.length ? `<h2>Running and failed</h2><ul class="runs">` +
    notes.map(r => {
      const who = (r.arms || []).slice(0, 3).join(", ");
      const what = r.state === "running"
        ? (r.progress_total ? `${num(r.progress, 6)}/${num(r.progress_total, 6)} ${esc(r.unit || "")}` : "started") +
          (r.eta_s !== null && r.eta_s !== undefined ? `, ETA ${fmtS(r.eta_s)}` : "") + (r.message ? ` - ${esc(r.message)}` : "")
        : esc(r.error || "");
      return `<li data-key="${esc(r.key)}">${badge(r.state)} ${esc(r.stage)} [${esc(who)}] ` +
        `<a href="/run/${enc(r.key)}"><code>${esc(r.key.slice(0, 12))}</code></a>: <span class="${r.state === "running" ? "" : "err"}">${what}</span></li>`;
    }).join("") + "</ul>" : "");
}

// Replace an element's content only when it changed: a poll of a large study that changed
// nothing costs no layout, and a selection or scroll position in it survives.
const drawn = {};
function setHTML(id, html) {
  if (drawn[id] === html) return;
  drawn[id] = html;
  document.getElementById(id).innerHTML = html;
}

// ------------------------------------------------------------------ stage run
function kv(obj) {
  const ks = Object.keys(obj || {});
  if (!ks.length) return '<span class="muted">none</span>';
  return `<table class="kv">${ks.map(k => `<tr><th>${esc(k)}</th><td><code>${esc(JSON.stringify(obj[k]))}</code></td></tr>`).join("")}</table>`;
}

async function runPage() {
  const key = body.dataset.key;
  crumbs([["studies", "/"], ["stage run " + key.slice(0, 12), null]]);
  app.innerHTML = `<div id="run"></div><h2>Log <span class="muted" id="log-size"></span></h2><pre id="log" class="log"></pre>`;
  let offset = -1, finished = false;
  const logEl = document.getElementById("log");
  poll(async () => {
    let d;
    try { d = await getJSON(`/api/run/${enc(key)}`); }
    catch (e) { app.innerHTML = errorBox(e); return false; }
    drawRun(d);
    const lg = await getJSON(`/api/run/${enc(key)}/log?offset=${offset}`);
    if (lg.offset < offset) logEl.textContent = "";
    if (lg.text) {
      const atEnd = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 4;
      logEl.textContent += lg.text;
      if (atEnd) logEl.scrollTop = logEl.scrollHeight;
    }
    offset = lg.offset;
    const ended = ["done", "cached", "failed"].includes(d.state);
    document.getElementById("log-size").textContent = !d.has_log ? "no log yet"
      : `${lg.size} bytes${ended ? "" : ", following"}`;
    const over = ["done", "cached", "failed"].includes(d.state);
    if (over && finished) return false; // one more read after the end, then stop
    finished = over;
  });
}

function drawRun(d) {
  const study = d.cells.length ? d.cells[0].study : d.study;
  if (study) crumbs([["studies", "/"], [study, `/study/${enc(study)}`], [`${d.stage} ${d.key.slice(0, 12)}`, null]]);
  const eff = d.effective_params || {};
  const changed = Object.keys(eff).filter(k => JSON.stringify(eff[k]) !== JSON.stringify((d.params || {})[k]));
  const params = Object.keys(Object.assign({}, d.params, eff)).map(k =>
    `<tr class="${changed.includes(k) ? "changed" : ""}"><th>${esc(k)}</th><td><code>${esc(JSON.stringify((d.params || {})[k]))}</code></td>` +
    `<td><code>${esc(JSON.stringify(k in eff ? eff[k] : (d.params || {})[k]))}</code></td></tr>`).join("");
  const adj = (d.adjustments || []).map((a, i) => `<li>back-off ${i + 1}: ` + Object.entries(a.changed || {}).map(([k, v]) =>
    `<code>${esc(k)}</code> ${esc(v[0])} &rarr; ${esc(v[1])}`).join(", ") + (a.reason ? ` <span class="muted">(${esc(a.reason)})</span>` : "") + "</li>").join("");
  const attempts = (d.attempts || []).map(a => `<tr><td>${esc(a.attempt)}</td><td>${badge(a.outcome || "running")}</td>` +
    `<td>${esc(fmtT(a.started_at))}</td><td>${a.ended_at && a.started_at ? fmtS(a.ended_at - a.started_at) : ""}</td>` +
    `<td>${esc(a.host || "")} ${esc(a.pid || "")}</td><td class="err">${esc((a.error || "").split("\n")[0])}</td></tr>`).join("");
  const m = d.manifest;
  const files = m ? Object.entries(m.files).map(([n, f]) => `<tr><td><a href="/api/run/${enc(d.key)}/file?name=${enc(n)}">${esc(n)}</a></td>` +
    `<td class="num">${esc(f.size)}</td><td><code class="digest">${esc(f.sha256)}</code></td></tr>`).join("") : "";
  const p = d.progress || {};
  const prog = d.state === "running" && p.progress_total ? ` ${num(p.progress_done, 6)}/${num(p.progress_total, 6)} ${esc(p.progress_unit || "")}` +
    (p.rate ? `, ${num(p.rate, 3)}/s` : "") + (p.message ? ` - ${esc(p.message)}` : "") : "";
  document.getElementById("run").innerHTML =
    `<h1>${esc(d.stage)} <span class="muted"><code>${esc(d.key)}</code></span></h1>` +
    `<p id="run-state">${badge(d.state)}${prog} · recipe ${esc(d.recipe)} · stage version ${esc(d.version)}` +
    `${d.seed !== null && d.seed !== undefined ? " · seed " + esc(d.seed) : ""} · ${esc(d.attempts_count || 0)} attempt(s)` +
    `${d.duration_s ? " · " + fmtS(d.duration_s) : ""} · artifact: ${esc(d.verify)}</p>` +
    (d.error && d.state !== "done" ? `<p class="error" id="run-error">${esc(d.error.split("\n")[0])}</p>` : "") +
    `<p class="muted">used by ${d.cells.map(c => `${esc(c.study)}: ${esc(c.arm)}/${esc(c.replicate)}`).join(", ") || "no study cell"}</p>` +
    `<div class="cols"><div><h2>Params <span class="muted">declared and effective</span></h2>` +
    `<table class="kv"><thead><tr><th>param</th><th>declared</th><th>effective</th></tr></thead><tbody>${params}</tbody></table>` +
    (adj ? `<h3>OOM back-off</h3><ul>${adj}</ul>` : "") + `</div>` +
    `<div><h2>Attempts</h2>${attempts ? `<table class="grid"><thead><tr><th>#</th><th>outcome</th><th>started</th><th>took</th><th>host pid</th><th>error</th></tr></thead><tbody>${attempts}</tbody></table>` : '<p class="muted">none yet</p>'}</div></div>` +
    `<h2>Manifest</h2>` + (m ? `<p class="muted">code ${esc(m.code_version)} · host ${esc(m.host)} · committed ${esc(fmtT(m.committed_at))}</p>` +
      `<table class="grid" id="manifest"><thead><tr><th>file</th><th>bytes</th><th>sha256</th></tr></thead><tbody>${files}</tbody></table>` +
      (m.needs && Object.keys(m.needs).length ? `<h3>Inputs</h3><table class="grid"><thead><tr><th>input</th>` +
        `<th>stage run</th><th>content digest when used</th></tr></thead><tbody>` + Object.entries(m.needs).map(([n, k]) =>
        `<tr><td>${esc(n)}</td><td><a href="/run/${enc(k)}"><code>${esc(k.slice(0, 12))}</code></a></td>` +
        `<td><code class="digest">${esc((m.input_digests || {})[n] || "")}</code></td></tr>`).join("") + `</tbody></table>` : "") +
      (m.input_files && Object.keys(m.input_files).length ? `<h3>Input files</h3>${kv(m.input_files)}` : "")
      : `<p class="muted">no verified artifact (${esc(d.verify)})</p>`);
}

// ------------------------------------------------------------------ report
async function reportPage() {
  const name = body.dataset.name;
  crumbs([["studies", "/"], [name, `/study/${enc(name)}`], ["report", null]]);
  app.innerHTML = `<p class="muted" id="analysing">analysing ${esc(name)} (the same analysis as <code>fairtrial report</code>)...</p>`;
  let d;
  try { d = await getJSON(`/api/report/${enc(name)}`); }
  catch (e) { app.innerHTML = errorBox(e); return; }
  live("analysed " + new Date().toLocaleTimeString());
  const out = [`<p class="muted"><a href="/compare/${enc(name)}">compare two arms item by item</a></p>`];
  for (const b of d.blocks) {
    if (b.kind === "para") {
      const cls = b.class === "headline" ? `headline v-${esc(d.verdict)}` : esc(b.class);
      out.push(`<p class="${cls}"${b.class === "headline" ? ' id="headline"' : ""}>${esc(b.text)}</p>`);
    } else if (b.kind === "heading") {
      out.push(`<h${b.level + 0}>${esc(b.text)}</h${b.level + 0}>`);
    } else if (b.kind === "table") {
      out.push(`<div class="scroll"><table class="grid"><thead><tr>${b.header.map(h => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>` +
        b.rows.map((row, i) => `<tr class="${esc(b.classes[i] || "")}">${row.map(c => `<td>${esc(c)}</td>`).join("")}</tr>`).join("") +
        `</tbody></table></div>`);
    } else if (b.kind === "image") {
      out.push(`<figure><img alt="${esc(b.title)}" src="data:image/png;base64,${esc(b.png)}"><figcaption>${esc(b.title)}</figcaption></figure>`);
    }
  }
  app.innerHTML = `<h1>Report: ${esc(name)}</h1>` + out.join("");
}

// ------------------------------------------------------------------ compare
async function comparePage() {
  const name = body.dataset.name;
  crumbs([["studies", "/"], [name, `/study/${enc(name)}`], ["compare", null]]);
  const q = new URLSearchParams(location.search);
  let d;
  try { d = await getJSON(`/api/compare/${enc(name)}?` + new URLSearchParams(
    [...q.entries()].filter(([k]) => ["a", "b", "metric", "eval_set", "top"].includes(k)))); }
  catch (e) { app.innerHTML = `<h1>Compare: ${esc(name)}</h1>` + errorBox(e); return; }
  const opt = (v, sel) => `<option${v === sel ? " selected" : ""}>${esc(v)}</option>`;
  const better = d.direction === "lower" ? "lower" : "higher";
  const items = d.items.map(it => `<tr><td><code>${esc(it.item_id)}</code></td><td class="num">${num(it.a)}</td>` +
    `<td class="num">${num(it.b)}</td><td class="num ${it.diff > 0 ? "pos" : it.diff < 0 ? "neg" : ""}">${num(it.diff)}</td>` +
    (d.has_text ? `<td class="text">${esc(it.text || "")}</td>` : "") + "</tr>").join("");
  app.innerHTML = `<h1>Compare: ${esc(name)}</h1>
    <form class="controls" method="get">
      <label>arm A <select name="a">${d.arms.map(a => opt(a, d.a)).join("")}</select></label>
      <label>arm B <select name="b">${d.arms.map(a => opt(a, d.b)).join("")}</select></label>
      <label>eval set <select name="eval_set">${d.eval_sets.map(e => opt(e, d.eval_set)).join("")}</select></label>
      <input type="hidden" name="metric" value="${esc(d.metric)}"><button>compare</button></form>
    <p id="compare-summary">On <b>${esc(d.metric)}</b> (${esc(better)} is better), eval set <b>${esc(d.eval_set)}</b>:
      ${esc(d.n_items)} items paired over seeds ${esc(d.seeds.join(", "))}. Mean of A (${esc(d.a)}) ${num(d.mean_a)},
      of B (${esc(d.b)}) ${num(d.mean_b)}; mean paired difference A - B <b>${num(d.mean_diff)}</b>.
      A higher on ${esc(d.a_higher)} items, B higher on ${esc(d.b_higher)}, tied on ${esc(d.ties)}.
      ${d.only_a || d.only_b ? `<span class="error">Unpaired (item, seed) rows left out: ${esc(d.only_a)} of A, ${esc(d.only_b)} of B.</span>` : ""}</p>
    <p class="muted">The interval and verdict are on the <a href="/report/${enc(name)}">report</a>; this page shows where the arms differ.</p>
    <h2>Items where they disagree most</h2>
    <div class="scroll"><table class="grid" id="items"><thead><tr><th>item</th><th>A: ${esc(d.a)}</th><th>B: ${esc(d.b)}</th><th>A - B</th>
    ${d.has_text ? "<th>item text</th>" : ""}</tr></thead><tbody>${items}</tbody></table></div>
    ${d.has_text ? "" : '<p class="muted">This recipe exposes no item text.</p>'}`;
}

const pages = {studies: studiesPage, study: studyPage, run: runPage, report: reportPage, compare: comparePage};
(pages[body.dataset.page] || studiesPage)();
