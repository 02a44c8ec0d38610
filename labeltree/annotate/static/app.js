// labeltree annotate-extended: keyboard-first labelling of traffic-sign proposals.
// Each tab is its own client (sessionStorage id): the server reserves a proposal for it, and
// decisions are compare-and-set (`previous`), so tabs never overwrite each other's work.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const annotator = params.get("annotator") || null;
let client = sessionStorage.getItem("labeltree-client");
if (!client) {
  client = "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
  sessionStorage.setItem("labeltree-client", client);
}

let choices = [];      // [{key, id, name, svg, examples, el}]
let matches = [];      // indices into choices, in ranking order
let hl = 0;            // position in matches
let current = null;    // proposal shown
const seen = [];       // proposal ids shown before the current one (for back)
let busy = false;
let hovered = null;    // index into choices of the button under the mouse
let moved = false;     // the highlight was moved with the arrow keys since the proposal was shown
let gtsdb = null;      // the GTSDB folder the examples come from (null: serve without --gtsdb)
const GAP = 8;         // px between the pictures of the compare row (as #compare's CSS gap)

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = {error: r.statusText}; }
  return {status: r.status, data};
}

function say(text, kind) {
  const m = $("message");
  m.textContent = text || "";
  m.className = kind || "";
}

function showProgress(p) {
  if (!p) return;
  const box = $("progress");
  box.replaceChildren();
  for (const s of p.splits) {
    const el = document.createElement("span");
    el.className = "split";
    el.dataset.split = s.split;
    el.textContent = `${s.split} ${s.done} / ${s.total}`;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("i");
    fill.style.width = (s.total ? (100 * s.done / s.total) : 0) + "%";
    bar.appendChild(fill);
    el.appendChild(bar);
    box.appendChild(el);
  }
}

function buildChoices(list) {
  const box = $("choices");
  box.replaceChildren();
  choices = list.map((c, i) => {
    const el = document.createElement("button");
    el.type = "button";
    el.className = "choice" + (c.id === null ? " extra" : "");
    el.dataset.key = c.key;
    el.tabIndex = -1;
    if (c.examples.length) el.appendChild(thumb(c.examples[0], c.name));
    else el.innerHTML = c.svg;  // generated server-side from the taxonomy's shape and colour
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = c.id === null ? c.name : `${c.id} ${c.name}`;
    el.title = name.textContent;
    el.appendChild(name);
    el.addEventListener("click", () => { hl = Math.max(0, matches.indexOf(i)); choose(c.key); });
    el.addEventListener("mouseenter", () => { hovered = i; showcase(); });
    el.addEventListener("mouseleave", () => { if (hovered === i) { hovered = null; showcase(); } });
    box.appendChild(el);
    return {...c, el, lname: c.name.toLowerCase()};
  });
  applyFilter();
}

// A square picture of one example zoomed to its sign box (percentages of the square, so no measuring).
function thumb(ex, name) {
  const [x0, y0, x1, y1] = ex.box, [w, h] = ex.size;
  const side = Math.max(x1 - x0, y1 - y0);
  const span = document.createElement("span");
  span.className = "thumb";
  const img = document.createElement("img");
  img.src = ex.url;
  img.alt = `GTSDB ${name}`;
  const pct = (v) => `${(100 * v).toFixed(3)}%`;
  img.style.width = pct(w / side);
  img.style.height = pct(h / side);
  img.style.left = pct((side - (x1 - x0)) / 2 / side - x0 / side);
  img.style.top = pct((side - (y1 - y0)) / 2 / side - y0 / side);
  span.appendChild(img);
  return span;
}

// The class whose examples stand beside the proposal: the hovered button, else (before any filter or
// arrow key) the proposal's current label or the model's guess, else the highlighted one (what Enter takes).
function shownClass() {
  if (hovered !== null) return hovered;
  if (!moved && current && $("filter").value.trim() === "") {
    const key = current.class !== null ? current.class : current.suggestion ? current.suggestion.class : null;
    const i = key === null ? -1 : choices.findIndex((c) => c.key === key);
    if (i >= 0) return i;
  }
  return matches[hl];
}

function showcase() {
  const box = $("examples");
  const i = current ? shownClass() : undefined;
  const c = i === undefined ? null : choices[i];
  const key = c ? c.key : "";
  if (box.dataset.class === key && box.dataset.proposal === String(current ? current.id : "")) { layoutCompare(); return; }
  box.dataset.class = key;
  box.dataset.proposal = current ? String(current.id) : "";
  box.replaceChildren();
  if (!c) { layoutCompare(); return; }
  if (!c.examples.length) {
    const note = document.createElement("div");
    note.className = "noex";
    note.innerHTML = c.svg;
    const t = document.createElement("span");
    t.textContent = c.id === null ? c.name
      : gtsdb ? `${c.id} ${c.name}: gt.txt has no box of this class in the frames of ${gtsdb}`
        : `${c.id} ${c.name} (serve --gtsdb DIR shows GTSDB pictures of each class)`;
    note.appendChild(t);
    box.appendChild(note);
  }
  c.examples.forEach((ex, j) => {
    const fig = document.createElement("figure");
    fig.className = "example";
    fig.ex = ex;
    const img = document.createElement("img");
    img.src = ex.url;
    img.alt = `GTSDB example of ${c.name}`;
    fig.appendChild(img);
    const cap = document.createElement("figcaption");
    cap.textContent = j === 0 ? `${c.id} ${c.name}` : ex.frame;
    fig.appendChild(cap);
    fig.title = `GTSDB ${ex.frame}`;
    box.appendChild(fig);
  });
  layoutCompare();
}

// Size the proposal crop and the examples so that the sign has the same size on screen in each
// (the longer side of its box), as large as the row's height allows; examples that do not fit
// beside each other are left out (the caption says how many).
function layoutCompare() {
  const row = $("compare"), crop = $("crop");
  if (!current) { crop.style.width = crop.style.height = ""; return; }
  const H = row.clientHeight, W = row.clientWidth;
  const [cw, ch] = current.crop_size, cb = current.crop_box;
  const long = (b) => Math.max(b[2] - b[0], b[3] - b[1]);
  const figs = [...$("examples").querySelectorAll("figure.example")];
  let L = long(cb) * Math.min(H / ch, W / 2 / cw);  // the sign's size on screen, px: as tall as the row allows
  for (const f of figs) L = Math.min(L, H * long(f.ex.box) / f.ex.size[1]);
  // all of them side by side when that costs at most 40% of the size
  const widths = cw / long(cb) + figs.reduce((a, f) => a + f.ex.size[0] / long(f.ex.box), 0);
  L = Math.min(L, Math.max((W - GAP * figs.length) / widths, 0.6 * L));
  const sp = L / long(cb);
  crop.style.width = `${cw * sp}px`;
  crop.style.height = `${ch * sp}px`;
  const bw = current.bbox[2] - current.bbox[0] + 1, bh = current.bbox[3] - current.bbox[1] + 1;
  $("cropcap").textContent = `this sign ×${(L / Math.max(bw, bh)).toFixed(1)}`;
  let used = cw * sp, shown = 0;
  for (const f of figs) {
    const s = L / long(f.ex.box);
    const w = f.ex.size[0] * s;
    f.hidden = shown < figs.indexOf(f) || used + GAP + w > W;
    if (f.hidden) continue;
    const img = f.querySelector("img");
    img.style.width = `${w}px`;
    img.style.height = `${f.ex.size[1] * s}px`;
    f.title = `GTSDB ${f.ex.frame} ×${(L / Math.max(f.ex.box[2] - f.ex.box[0], f.ex.box[3] - f.ex.box[1])).toFixed(1)}`;
    used += GAP + w;
    shown++;
  }
  if (figs.length) {
    const cap = figs[0].querySelector("figcaption");
    const c = choices.find((x) => x.key === $("examples").dataset.class);
    cap.textContent = `${c.id} ${c.name}` + (shown < figs.length ? ` · ${shown} of ${figs.length}` : "");
  }
}

function applyFilter() {
  const q = $("filter").value.trim().toLowerCase();
  let ranked;
  if (!q) {
    ranked = choices.map((_, i) => i);
  } else if (/^\d+$/.test(q)) {
    // number keys: the ClassID (exact first), then ids starting with it, then names containing it
    const exact = [], prefix = [], named = [];
    choices.forEach((c, i) => {
      if (c.id !== null && String(c.id) === q) exact.push(i);
      else if (c.id !== null && String(c.id).startsWith(q)) prefix.push(i);
      else if (c.lname.includes(q)) named.push(i);
    });
    ranked = exact.concat(prefix, named);
  } else {
    const words = q.split(/\s+/);
    const starts = [], inside = [];
    choices.forEach((c, i) => {
      if (!words.every((w) => c.lname.includes(w))) return;
      (c.lname.startsWith(words[0]) ? starts : inside).push(i);
    });
    ranked = starts.concat(inside);
  }
  matches = ranked;
  hl = 0;
  paint();
}

function paint() {
  const on = new Set(matches);
  choices.forEach((c, i) => {
    c.el.classList.toggle("dim", !on.has(i));
    c.el.classList.toggle("hl", matches.length > 0 && matches[hl] === i);
    c.el.classList.toggle("chosen", current !== null && current.class === c.key);
    c.el.classList.toggle("suggested", current !== null && !!current.suggestion && current.suggestion.class === c.key);
  });
  const h = matches[hl];
  if (h !== undefined) choices[h].el.scrollIntoView({block: "nearest"});
  showcase();
}

function show(p) {
  current = p;
  moved = false;
  $("view").classList.toggle("empty", !p);  // no broken pictures when nothing is left to label
  $("filter").value = "";
  if (!p) {
    $("key").textContent = "";
    $("current").textContent = "";
    $("frame").removeAttribute("src");
    $("crop").removeAttribute("src");
    applyFilter();
    return;
  }
  $("key").textContent = `${p.split} · ${p.key} · component ${p.component} · ${p.bbox[2] - p.bbox[0] + 1}×${p.bbox[3] - p.bbox[1] + 1} px`;
  $("current").textContent = p.class === null ? "" : `labelled: ${p.class_name}`;
  const sg = $("suggestion");
  if (p.suggestion) {
    sg.hidden = false;
    sg.textContent = `model: ${p.suggestion.class === "other" || p.suggestion.class === "not-a-sign" ? "" : p.suggestion.class + " "}` +
      `${p.suggestion.name} · ${(100 * p.suggestion.confidence).toFixed(0)}% — Space accepts`;
  } else {
    sg.hidden = true;
  }
  $("frame").src = p.frame;
  $("crop").src = p.crop;
  applyFilter();
}

async function next(after) {
  const {status, data} = await api("/api/next", {client, annotator, after: after || 0});
  if (status !== 200) { say(`server: ${JSON.stringify(data.error)}`, "warn"); return; }
  showProgress(data.progress);
  if (!data.proposal) {
    show(null);
    say(data.waiting ? `All other proposals are open in other tabs (${data.waiting}); waiting…`
                     : "All proposals are labelled. Export with 'labeltree annotate-extended export'.", "ok");
    if (data.waiting) setTimeout(() => next(0), 3000);
    return;
  }
  show(data.proposal);
}

async function choose(key) {
  if (!current || busy) return;
  busy = true;
  try {
    const p = current;
    const {status, data} = await api("/api/decide",
      {client, annotator, proposal: p.id, class: key, previous: p.class});
    if (status === 409) {
      say(`Someone else set this one to "${data.current_name}" meanwhile; shown again.`, "warn");
      const r = await api(`/api/proposal/${p.id}`);
      if (r.status === 200) show(r.data);
      return;
    }
    if (status !== 200) { say(`not saved: ${JSON.stringify(data.error)}`, "warn"); return; }
    const label = choices.find((c) => c.key === key);
    say(`${p.key} #${p.component}: ${label ? label.name : key}`, "ok");
    showProgress(data.progress);
    seen.push(p.id);
    await next(p.id);
  } finally {
    busy = false;
  }
}

async function skip() {
  if (!current || busy) return;
  seen.push(current.id);
  say("skipped", "");
  await next(current.id);
}

async function back() {
  if (busy || !seen.length) { say("nothing to go back to", "warn"); return; }
  const pid = seen.pop();
  const {status, data} = await api(`/api/proposal/${pid}`);
  if (status === 200) { show(data); say("back: choose again to change it, Tab to move on", ""); }
}

async function undo() {
  if (busy) return;
  busy = true;
  try {
    const {status, data} = await api("/api/undo", {client, annotator});
    if (status !== 200) { say(`undo failed: ${JSON.stringify(data.error)}`, "warn"); return; }
    showProgress(data.progress);
    if (!data.proposal) { say("nothing to undo", "warn"); return; }
    if (current && current.id !== data.proposal.id) seen.push(current.id);
    show(data.proposal);
    say("undone: choose again", "");
  } finally {
    busy = false;
  }
}

function move(delta) {
  if (!matches.length) return;
  hl = (hl + delta + matches.length) % matches.length;
  moved = true;
  paint();
}

function columns() {
  const els = matches.map((i) => choices[i].el);
  if (els.length < 2) return 1;
  const top = els[0].offsetTop;
  const n = els.findIndex((e) => e.offsetTop !== top);
  return n <= 0 ? els.length : n;
}

document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); return; }
  if (e.key === "Tab" || e.key === "PageDown" || e.key === "PageUp") {
    e.preventDefault();
    if (e.shiftKey || e.key === "PageUp") back(); else skip();
    return;
  }
  if (e.key === "Enter") {
    e.preventDefault();
    const i = matches[hl];
    if (i !== undefined) choose(choices[i].key);
    return;
  }
  if (e.key === " " && $("filter").value === "" && current && current.suggestion) {
    e.preventDefault();  // one-key accept of the model's guess (a space inside a filter still types)
    choose(current.suggestion.class);
    return;
  }
  if (e.key === "Escape") { $("filter").value = ""; applyFilter(); return; }
  if (e.key === "ArrowRight") { e.preventDefault(); move(1); return; }
  if (e.key === "ArrowLeft") { e.preventDefault(); move(-1); return; }
  if (e.key === "ArrowDown") { e.preventDefault(); move(columns()); return; }
  if (e.key === "ArrowUp") { e.preventDefault(); move(-columns()); return; }
  if (document.activeElement !== $("filter") && e.key.length === 1 && !e.ctrlKey && !e.metaKey) {
    $("filter").focus();  // typing anywhere goes to the filter
  }
});
$("filter").addEventListener("input", applyFilter);
$("skip").addEventListener("click", skip);
$("back").addEventListener("click", back);
$("undo").addEventListener("click", undo);

(async function start() {
  const {status, data} = await api("/api/info");
  if (status !== 200) { say("cannot reach the server", "warn"); return; }
  gtsdb = data.gtsdb;
  buildChoices(data.classes);
  window.addEventListener("resize", layoutCompare);
  showProgress(data.progress);
  $("filter").focus();
  await next(0);  // resume: the first proposal nobody has decided yet
  document.body.dataset.ready = "1";
})();
