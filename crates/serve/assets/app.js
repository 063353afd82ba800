// ferrolm dashboard: polls /api/runs and each shown run's metrics every 2 s and draws the chosen
// curve (loss, lr, grad norm, tokens/s against step, tokens or wall time) as inline SVG; the playground streams /v1/completions (server-sent events) via fetch.
"use strict";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const runs = {}; // name -> {info, records: [], next: 0, shown: bool, color}
let order = [];
// ?run=NAME (repeatable) shows those runs' curves; otherwise the first four.
const wanted = new URLSearchParams(location.search).getAll("run");

function fmt(v, d) { return v === null || v === undefined ? "" : Number(v).toFixed(d); }

async function getJSON(url) {
  const r = await fetch(url, {cache: "no-store"});
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

async function pollRuns() {
  let list;
  try { list = (await getJSON("/api/runs")).runs; }
  catch (e) { document.getElementById("runs-status").textContent = String(e); return; }
  document.getElementById("runs-status").textContent = list.length + " run(s)";
  order = list.map(r => r.name);
  list.forEach((info, i) => {
    if (!runs[info.name]) runs[info.name] = {records: [], next: 0, shown: wanted.length ? wanted.includes(info.name) : i < 4, color: COLORS[i % COLORS.length]};
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
  const r = await fetch("/api/runs/" + encodeURIComponent(name) + "/samples");
  document.getElementById("samples-title").textContent = "Samples of " + name;
  const pre = document.getElementById("samples");
  pre.textContent = await r.text(); pre.hidden = false;
}

const SVG = "http://www.w3.org/2000/svg";
function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawChart() {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
  const L = 60, R = 20, T = 15, B = 40;
  const ym = document.getElementById("ymetric").value, xm = document.getElementById("xmetric").value;
  const series = [];
  for (const name of order) {
    const r = runs[name];
    if (!r.shown) continue;
    const pick = f => r.records.filter(p => Number.isFinite(p[f]) && Number.isFinite(p[xm])).map(p => [p[xm], p[f]]);
    const fields = ym === "loss" ? [["train", "train_loss"], ["val", "val_loss"]] : [[ym, ym]];
    for (const [kind, f] of fields) {
      const pts = pick(f);
      if (pts.length) series.push({name, kind, pts, color: r.color});
    }
  }
  const all = series.flatMap(s => s.pts);
  if (!all.length) { svg.appendChild(el("text", {x: L, y: H / 2}, "no metrics yet")); return; }
  let x0 = Math.min(...all.map(p => p[0])), x1 = Math.max(...all.map(p => p[0]));
  let y0 = Math.min(...all.map(p => p[1])), y1 = Math.max(...all.map(p => p[1]));
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const px = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const py = y => T + (y1 - y) / (y1 - y0) * (H - T - B);
  svg.appendChild(el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#888"}));
  svg.appendChild(el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#888"}));
  for (let k = 0; k <= 5; k++) {
    const xv = x0 + (x1 - x0) * k / 5, yv = y0 + (y1 - y0) * k / 5;
    svg.appendChild(el("text", {x: px(xv), y: H - B + 16, "text-anchor": "middle", "font-size": 11}, Math.round(xv)));
    const ylab = Math.abs(y1 - y0) < 0.01 || Math.abs(y1) >= 1e4 ? yv.toPrecision(3) : yv.toFixed(2);
    svg.appendChild(el("text", {x: L - 5, y: py(yv) + 4, "text-anchor": "end", "font-size": 11}, ylab));
    svg.appendChild(el("line", {x1: L, y1: py(yv), x2: W - R, y2: py(yv), stroke: "#eee"}));
  }
  svg.appendChild(el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 12},
    document.getElementById("xmetric").selectedOptions[0].text));
  for (const s of series) {
    const d = s.pts.map((p, i) => (i ? "L" : "M") + px(p[0]).toFixed(1) + " " + py(p[1]).toFixed(1)).join(" ");
    const path = el("path", {d, fill: "none", stroke: s.color, "stroke-width": s.kind === "val" ? 2 : 1.5,
      "data-run": s.name, "data-kind": s.kind, "data-points": s.pts.length});
    if (s.kind === "val") {
      path.setAttribute("stroke-dasharray", "5 3");
      for (const p of s.pts) svg.appendChild(el("circle", {cx: px(p[0]), cy: py(p[1]), r: 2.5, fill: s.color}));
    }
    path.appendChild(el("title", {}, s.name + " " + s.kind + " loss"));
    svg.appendChild(path);
  }
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
    const r = await fetch("/v1/completions", {method: "POST", headers: {"Content-Type": "application/json"},
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
    if (e.name !== "AbortError") out.textContent += "\n[" + e + "]";
  } finally {
    document.getElementById("generate").disabled = false;
    document.getElementById("stop").disabled = true;
  }
}

async function init() {
  const info = await getJSON("/api/info");
  if (info.model) {
    document.getElementById("playground").hidden = false;
    document.getElementById("model-name").textContent = "(" + info.model + ")";
    document.getElementById("generate").onclick = generate;
    document.getElementById("stop").onclick = () => controller && controller.abort();
  }
  document.getElementById("ymetric").onchange = drawChart;
  document.getElementById("xmetric").onchange = drawChart;
  if (info.runs_dir === null) { document.getElementById("runs-section").hidden = true; return; }
  await pollRuns();
  setInterval(pollRuns, 2000);
}
init();
