// ferrolm dashboard: polls /api/runs and each shown run's metrics every 2 s and draws the chosen
// curve (loss, lr, grad norm, tokens/s against step, tokens or wall time) with uPlot (vendored,
// /assets/uPlot.iife.min.js); the playground streams /v1/completions (server-sent events) via
// fetch. With a server API key, the key typed once is kept in localStorage and sent as
// `Authorization: Bearer` on every request.
"use strict";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const runs = {}; // name -> {info, records: [], next: 0, shown: bool, color}
let order = [];
// ?run=NAME (repeatable) shows those runs' curves; otherwise the first four.
const wanted = new URLSearchParams(location.search).getAll("run");
const KEY_STORE = "ferrolm-api-key";
let pollTimer = null;

function fmt(v, d) { return v === null || v === undefined ? "" : Number(v).toFixed(d); }

class NeedKey extends Error {}

// fetch with the stored key; a 401 asks for the key (and throws NeedKey).
async function call(url, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  const key = localStorage.getItem(KEY_STORE);
  if (key) headers["Authorization"] = "Bearer " + key;
  const r = await fetch(url, Object.assign({cache: "no-store"}, opts, {headers}));
  if (r.status === 401) { askKey(key ? "The stored API key was refused; enter the right one." : null); throw new NeedKey(); }
  return r;
}

async function getJSON(url) {
  const r = await call(url);
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

function askKey(why) {
  if (pollTimer !== null) { clearInterval(pollTimer); pollTimer = null; }
  if (why) document.getElementById("key-why").textContent = why;
  document.getElementById("key-form").hidden = false;
  document.getElementById("api-key").focus();
}

async function pollRuns() {
  let list;
  try { list = (await getJSON("/api/runs")).runs; }
  catch (e) { if (!(e instanceof NeedKey)) document.getElementById("runs-status").textContent = String(e); return; }
  document.getElementById("runs-status").textContent = list.length + " run(s)";
  order = list.map(r => r.name);
  list.forEach((info, i) => {
    if (!runs[info.name]) {
      const shown = wanted.length ? wanted.includes(info.name) : i < 4;
      runs[info.name] = {records: [], next: 0, shown, color: COLORS[i % COLORS.length]};
    }
    runs[info.name].info = info;
  });
  await Promise.all(order.filter(n => runs[n].shown).map(pollMetrics));
  renderTable();
  drawChart();
}

async function pollMetrics(name) {
  const run = runs[name];
  if (run.busy) return;
  run.busy = true;
  try {
    const m = await getJSON("/api/runs/" + encodeURIComponent(name) + "/metrics?after=" + run.next);
    if (m.next < run.next) { run.records = []; run.next = 0; } // file rewritten: start over next poll
    else { run.records.push(...m.records); run.next = m.next; }
  } catch (e) { /* the run may have vanished; the next list poll drops it */ }
  finally { run.busy = false; }
}

function renderTable() {
  const body = document.querySelector("#runs tbody");
  body.replaceChildren();
  for (const name of order) {
    const r = runs[name], i = r.info, tr = document.createElement("tr");
    const box = document.createElement("input");
    box.type = "checkbox"; box.checked = r.shown; box.dataset.run = name;
    box.onchange = async () => { r.shown = box.checked; if (r.shown) await pollMetrics(name); drawChart(); };
    const cells = [box, name, i.state, i.step + (i.max_steps ? " / " + i.max_steps : ""),
      fmt(i.final_train_loss, 4), fmt(i.final_val_loss, 4), fmt(i.best_val_loss, 4), i.tokens, ""];
    cells.forEach((c, k) => {
      const td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c;
      if (k === 1) td.style.color = r.color;
      if (k === 2 && i.state === "running") td.className = "running";
      if (k === 8 && i.has_samples) {
        const a = document.createElement("a"); a.href = "#"; a.textContent = "view";
        a.onclick = e => { e.preventDefault(); showSamples(name); };
        td.appendChild(a);
      }
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
}

async function showSamples(name) {
  let text;
  try { text = await (await call("/api/runs/" + encodeURIComponent(name) + "/samples")).text(); }
  catch (e) { return; }
  document.getElementById("samples-title").textContent = "Samples of " + name;
  const pre = document.getElementById("samples");
  pre.textContent = text; pre.hidden = false;
}

// The chart: one uPlot instance over the union of the shown series' x values (uPlot wants one
// x array; a series without a point at some x has null there, and spanGaps joins its points).
// window.dashPlot is the instance (the browser check reads its data and series).
// A drag zooms (uPlot's default); while zoomed, new points keep the zoom, and a double-click
// (uPlot's reset) goes back to following the whole run.
let plot = null, plotKey = "", plotSig = "", zoomed = false;

function chartSeries() {
  const ym = document.getElementById("ymetric").value, xm = document.getElementById("xmetric").value;
  const logy = document.getElementById("logy").checked;
  const series = [];
  for (const name of order) {
    const r = runs[name];
    if (!r.shown) continue;
    const fields = ym === "loss" ? [["train", "train_loss"], ["val", "val_loss"]] : [[ym, ym]];
    for (const [kind, f] of fields) {
      const pts = r.records.filter(p => Number.isFinite(p[f]) && Number.isFinite(p[xm]) && (!logy || p[f] > 0))
        .map(p => [p[xm], p[f]]);
      if (pts.length) series.push({run: name, kind, pts, color: r.color});
    }
  }
  return {ym, xm, logy, series};
}

function aligned(series) {
  const xs = [...new Set(series.flatMap(s => s.pts.map(p => p[0])))].sort((a, b) => a - b);
  const cols = series.map(s => {
    const m = new Map(s.pts);
    return xs.map(x => (m.has(x) ? m.get(x) : null));
  });
  return [xs, ...cols];
}

function chartWidth() { return Math.max(600, Math.min(1100, document.body.clientWidth - 20)); }

function drawChart() {
  const {ym, xm, logy, series} = chartSeries();
  const box = document.getElementById("chart");
  const key = JSON.stringify([ym, xm, logy, series.map(s => [s.run, s.kind, s.color])]);
  const sig = series.map(s => s.pts.length).join(",");
  if (!series.length) {
    if (plot) { plot.destroy(); plot = window.dashPlot = null; }
    plotKey = "";
    box.replaceChildren(Object.assign(document.createElement("div"), {id: "chart-empty", textContent: "no metrics yet"}));
    return;
  }
  const data = aligned(series);
  if (plot && key === plotKey) {
    if (sig !== plotSig) plot.setData(data, !zoomed); // new points: rescale to show them, unless zoomed
    plotSig = sig;
    return;
  }
  if (plot) plot.destroy();
  box.replaceChildren();
  const label = id => document.getElementById(id).selectedOptions[0].text;
  const opts = {
    width: chartWidth(), height: 420,
    scales: {x: {time: false}, y: logy ? {distr: 3} : {}},
    axes: [{label: label("xmetric")}, {label: ym === "loss" ? "loss" : label("ymetric"), size: 70}],
    series: [{label: label("xmetric")}].concat(series.map(s => ({
      label: s.run + " " + s.kind, stroke: s.color, width: s.kind === "val" ? 2 : 1.5,
      dash: s.kind === "val" ? [6, 4] : undefined, spanGaps: true,
      points: {show: s.kind === "val", size: 6, fill: s.color},
    }))),
  };
  opts.hooks = {setSelect: [u => { if (u.select.width > 0) zoomed = true; }]};
  plot = window.dashPlot = new uPlot(opts, data, box);
  plot.over.addEventListener("dblclick", () => { zoomed = false; });
  plotKey = key; plotSig = sig; zoomed = false;
}

let controller = null;
async function generate() {
  const out = document.getElementById("output");
  out.textContent = "";
  const num = id => Number(document.getElementById(id).value);
  const body = {prompt: document.getElementById("prompt").value, temperature: num("temperature"),
    top_p: num("top_p"), max_tokens: num("max_tokens"), seed: num("seed"), stream: true};
  controller = new AbortController();
  document.getElementById("generate").disabled = true;
  document.getElementById("stop").disabled = false;
  try {
    const r = await call("/v1/completions", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body), signal: controller.signal});
    if (!r.ok) { out.textContent = "error " + r.status + ": " + ((await r.json()).error || {}).message; return; }
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      buf += dec.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        if (!ev.startsWith("data: ")) continue;
        const data = ev.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        for (const c of chunk.choices || []) out.textContent += c.text;
      }
    }
  } catch (e) {
    if (e instanceof NeedKey) out.textContent = "the server needs its API key (asked above)";
    else if (e.name !== "AbortError") out.textContent += "\n[" + e + "]";
  } finally {
    document.getElementById("generate").disabled = false;
    document.getElementById("stop").disabled = true;
  }
}

async function init() {
  let info;
  try { info = await getJSON("/api/info"); }
  catch (e) {
    if (!(e instanceof NeedKey)) document.body.append(String(e));
    return;
  }
  document.getElementById("key-form").hidden = true;
  document.getElementById("key-forget").hidden = !localStorage.getItem(KEY_STORE);
  if (info.model) {
    document.getElementById("playground").hidden = false;
    document.getElementById("model-name").textContent = "(" + info.model + ")";
  }
  if (info.runs_dir === null) return;
  document.getElementById("runs-section").hidden = false;
  await pollRuns();
  if (pollTimer === null) pollTimer = setInterval(pollRuns, 2000);
}

document.getElementById("key-form").onsubmit = e => {
  e.preventDefault();
  const k = document.getElementById("api-key").value.trim();
  if (k) { localStorage.setItem(KEY_STORE, k); init(); }
};
document.getElementById("forget-key").onclick = e => {
  e.preventDefault();
  localStorage.removeItem(KEY_STORE);
  location.reload();
};
document.getElementById("generate").onclick = generate;
document.getElementById("stop").onclick = () => controller && controller.abort();
document.getElementById("ymetric").onchange = drawChart;
document.getElementById("xmetric").onchange = drawChart;
document.getElementById("logy").onchange = drawChart;
window.addEventListener("resize", () => { if (plot) plot.setSize({width: chartWidth(), height: 420}); });
init();
