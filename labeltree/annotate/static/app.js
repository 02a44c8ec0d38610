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

let choices = [];      // [{key, id, name, svg, el}]
let matches = [];      // indices into choices, in ranking order
let hl = 0;            // position in matches
let current = null;    // proposal shown
const seen = [];       // proposal ids shown before the current one (for back)
let busy = false;

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
    el.innerHTML = c.svg;  // generated server-side from the taxonomy's shape and colour
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = c.id === null ? c.name : `${c.id} ${c.name}`;
    el.title = name.textContent;
    el.appendChild(name);
    el.addEventListener("click", () => { hl = Math.max(0, matches.indexOf(i)); choose(c.key); });
    box.appendChild(el);
    return {...c, el, lname: c.name.toLowerCase()};
  });
  applyFilter();
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
}

function show(p) {
  current = p;
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
  $("cropcap").textContent = `zoom ×${(320 / Math.max(p.bbox[2] - p.bbox[0] + 1, p.bbox[3] - p.bbox[1] + 1) / 2).toFixed(1)}`;
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
  buildChoices(data.classes);
  showProgress(data.progress);
  $("filter").focus();
  await next(0);  // resume: the first proposal nobody has decided yet
  document.body.dataset.ready = "1";
})();
