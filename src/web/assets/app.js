// dstore dashboard: the tree, the figures, uploads with progress, live updates (SSE).
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (sel) => document.querySelector(sel);
const state = { files: [], folders: [], open: new Set(["files"]), uploads: new Map() };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  if (n < 1024) return `${n} B`;
  let v = n, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${v.toFixed(1)} ${units[u]}`;
}

function age(iso) {
  const secs = Math.floor((Date.now() - Date.parse(iso)) / 1000);
  if (!(secs >= 0)) return "just now";
  if (secs < 10) return "just now";
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [30, "day"], [12, "month"], [Infinity, "year"]];
  let v = secs;
  for (const [step, name] of steps) {
    if (v < step) return `${v} ${name}${v === 1 ? "" : "s"} ago`;
    v = Math.floor(v / step);
  }
  return `${v} years ago`;
}

function toast(text, bad) {
  const t = el("div", { class: bad ? "toast bad" : "toast", role: "status", text });
  $("#toasts").append(t);
  setTimeout(() => t.remove(), bad ? 9000 : 4000);
}

async function api(path, options) {
  const res = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
  return body;
}

function post(path) {
  return api(path, { method: "POST", headers: { "X-CSRF-Token": csrf } });
}

// ---- the tree ----

function fileRow(f, depth) {
  const complete = f.status === "complete";
  const download = el("a", {
    class: "icon-button download", href: `/api/files/${encodeURIComponent(f.id)}/download`,
    download: f.name, title: `Download ${f.name}`, "aria-label": `Download ${f.name}`,
    "aria-disabled": complete ? null : "true", "data-id": f.id, text: "↓",
  });
  const del = el("button", {
    class: "icon-button delete", type: "button", title: `Delete ${f.name}`,
    "aria-label": `Delete ${f.name}`, "data-id": f.id, text: "✕",
    onclick: () => confirmDelete(f),
  });
  return el("div", { class: `row file depth-${depth}`, role: "treeitem", "data-id": f.id, "data-name": f.name },
    el("div", { class: "name" }, el("span", { class: "icon", text: "▪" }), el("span", { class: "label", text: f.name, title: f.name })),
    el("div", { class: "meta" },
      el("span", { class: "cell-size num", text: size(f.size), title: `${f.size} bytes` }),
      el("span", { class: "cell-age", "data-time": f.created_at, text: age(f.created_at) }),
      el("span", { class: "cell-status" }, el("span", { class: `badge ${f.status}`, text: f.status })),
      el("span", { class: "cell-versions num", text: String(f.versions || 1), title: "versions" })),
    el("div", { class: "actions-cell" }, download, del));
}

function folderNode(key, name, info, children, depth, actions) {
  const d = el("details", { class: `folder depth-${depth}`, "data-key": key });
  if (state.open.has(key)) d.open = true;
  d.addEventListener("toggle", () => { d.open ? state.open.add(key) : state.open.delete(key); });
  d.append(el("summary", { class: `row depth-${depth}`, role: "treeitem" },
    el("div", { class: "name" }, el("span", { class: "icon" }), el("span", { class: "label", text: name, title: info.title || name })),
    el("div", { class: "meta" },
      el("span", { class: "cell-size num", text: info.size }),
      el("span", { class: "cell-age", "data-time": info.time || null, text: info.time ? age(info.time) : "" }),
      el("span", { class: "cell-status" }, info.status ? el("span", { class: "badge complete", text: info.status }) : null),
      el("span", { class: "cell-versions num", text: info.versions || "" })),
    el("div", { class: "actions-cell" }, ...(actions || []))));
  const group = el("div", { role: "group" }, ...children);
  d.append(group);
  return d;
}

// A synced folder's files as nested folders, from their paths.
function syncedTree(folder) {
  const root = { dirs: new Map(), files: [] };
  for (const f of folder.files || []) {
    const parts = f.path.split("/");
    let node = root;
    for (const p of parts.slice(0, -1)) {
      if (!node.dirs.has(p)) node.dirs.set(p, { dirs: new Map(), files: [] });
      node = node.dirs.get(p);
    }
    node.files.push(Object.assign({}, f, { name: parts[parts.length - 1] }));
  }
  const render = (node, key, depth) => {
    const out = [];
    for (const [name, sub] of [...node.dirs.entries()].sort()) {
      const k = `${key}/${name}`;
      out.push(folderNode(k, name, { size: "" }, render(sub, k, depth + 1), depth));
    }
    for (const f of node.files) out.push(syncedFileRow(folder, f, depth));
    return out;
  };
  return render(root, `folder:${folder.id}`, 1);
}

function syncedFileRow(folder, f, depth) {
  return el("div", { class: `row file depth-${depth}`, role: "treeitem", "data-path": f.path },
    el("div", { class: "name" }, el("span", { class: "icon", text: "▪" }), el("span", { class: "label", text: f.name, title: f.path })),
    el("div", { class: "meta" },
      el("span", { class: "cell-size num", text: size(f.size) }),
      el("span", { class: "cell-age", "data-time": f.mtime, text: f.mtime ? age(f.mtime) : "" }),
      el("span", { class: "cell-status" }, el("span", { class: "badge complete", text: f.status || "synced" })),
      el("span", { class: "cell-versions num", text: String(f.versions || 1) })),
    el("div", { class: "actions-cell" }));
}

function renderTree() {
  const tree = $("#tree");
  const total = state.files.reduce((a, f) => a + f.size, 0);
  const nodes = [folderNode("files", "Uploaded files",
    { size: size(total), versions: "" }, state.files.map((f) => fileRow(f, 1)), 0)];
  for (const folder of state.folders) {
    const restore = el("button", {
      class: "button small restore", type: "button", "data-folder": folder.id, text: "Restore…",
      title: `Restore a snapshot of ${folder.name}`,
      onclick: (ev) => { ev.preventDefault(); restoreFolder(folder); },
    });
    nodes.push(folderNode(`folder:${folder.id}`, folder.name, {
      size: size(folder.size || 0), time: folder.time, status: "synced",
      title: folder.path ? `${folder.name}: ${folder.path}` : `${folder.name} (synced on another machine)`,
      versions: String((folder.versions || []).length),
    }, syncedTree(folder), 0, [restore]));
  }
  tree.replaceChildren(...nodes);
  const n = state.files.length;
  $("#count").textContent = `${n} file${n === 1 ? "" : "s"}${state.folders.length ? `, ${state.folders.length} synced folder${state.folders.length === 1 ? "" : "s"}` : ""}`;
  $("#empty").hidden = n > 0 || state.folders.length > 0;
}

let loading = null;
function loadFiles() {
  if (loading) { loading.again = true; return; }
  loading = { again: false };
  api("/api/files").then((r) => {
    state.files = r.files || [];
    state.folders = r.folders || [];
    renderTree();
  }).catch((e) => toast(`Cannot list the files: ${e.message}`, true)).finally(() => {
    const again = loading.again;
    loading = null;
    if (again) loadFiles();
  });
}

function loadStats() {
  api("/api/stats").then((s) => {
    const set = (k, v) => { $(`[data-stat="${k}"]`).textContent = v; };
    set("files", String(s.files_v1 + s.files_v2 + s.synced_files));
    set("logical", size(s.logical_bytes + s.bytes_v1));
    set("stored", size(s.stored_bytes + s.bytes_v1));
    set("dedup", `${s.dedup_ratio.toFixed(2)}×`);
    set("compression", `${s.compression_ratio.toFixed(2)}×`);
    set("packs", String(s.packs));
    set("encryption", s.encryption === null ? "no repository" : s.encryption ? "on" : "off");
    const note = $("#stats-note");
    note.hidden = !(s.garbage_bytes > 0);
    note.textContent = `${size(s.garbage_bytes)} on Discord no file uses; \`prune\` frees it.`;
  }).catch((e) => {
    const note = $("#stats-note");
    note.hidden = false;
    note.textContent = `Figures unavailable: ${e.message}`;
  });
}

// ---- delete ----

function confirmDelete(f) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = `Delete ${f.name}?`;
  $("#confirm-text").textContent = `${f.name} (${size(f.size)}) is removed from Discord and from this catalogue. This cannot be undone.`;
  dialog.returnValue = "";
  dialog.onclose = () => {
    if (dialog.returnValue !== "yes") return;
    post(`/api/files/${encodeURIComponent(f.id)}/delete`)
      .then(() => toast(`Deleted ${f.name}.`))
      .catch((e) => toast(`Delete of ${f.name} failed: ${e.message}`, true))
      .finally(loadFiles);
  };
  dialog.showModal();
}

// ---- restore a folder version ----

function restoreFolder(folder) {
  const versions = folder.versions || [];
  if (!versions.length) { toast(`${folder.name} has no snapshot to restore yet.`, true); return; }
  const latest = versions[versions.length - 1];
  const dialog = $("#confirm");
  $("#confirm-title").textContent = `Restore ${folder.name}?`;
  const select = el("select", { id: "restore-version" },
    ...versions.slice().reverse().map((v) => el("option", { value: String(v.seq), text: `#${v.seq} — ${new Date(v.time).toLocaleString()} (${age(v.time)})` })));
  const text = $("#confirm-text");
  const where = folder.path ? "beside the original" : "in dstore's data folder";
  text.replaceChildren(`Snapshot to restore into a new folder ${where} (nothing is overwritten):`, select);
  $("#confirm-yes").textContent = "Restore";
  dialog.returnValue = "";
  dialog.onclose = () => {
    $("#confirm-yes").textContent = "Delete";
    if (dialog.returnValue !== "yes") return;
    const seq = select.value || String(latest.seq);
    post(`/api/folders/${encodeURIComponent(folder.id)}/restore?seq=${encodeURIComponent(seq)}`)
      .then((r) => toast(`Restored ${folder.name} #${seq} to ${r.path}.`))
      .catch((e) => toast(`Restore of ${folder.name} failed: ${e.message}`, true));
  };
  dialog.showModal();
}

// ---- uploads ----

function uploadRow(key, file) {
  const bar = el("span");
  const stateText = el("span", { class: "state num", text: "waiting" });
  const li = el("li", { class: "upload", "data-key": key, "data-phase": "waiting" },
    el("span", { class: "what", text: `${file.name} · ${size(file.size)}`, title: file.name }), stateText,
    el("div", { class: "bar", role: "progressbar", "aria-label": file.name, "aria-valuemin": "0", "aria-valuemax": "100" }, bar));
  $("#uploads").prepend(li);
  const u = { li, bar, stateText, file, phase: "waiting" };
  state.uploads.set(key, u);
  return u;
}

function showProgress(u, phase, done, total, message) {
  const rank = { waiting: 0, receiving: 1, storing: 2, done: 3, failed: 3 };
  if (rank[phase] < rank[u.phase]) return;
  u.phase = phase;
  u.li.dataset.phase = phase;
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  let pct = 0, text = "";
  if (phase === "receiving") { pct = frac * 50; text = `sending ${Math.round(frac * 100)}%`; }
  else if (phase === "storing") { pct = 50 + frac * 50; text = `storing on Discord ${Math.round(frac * 100)}%`; }
  else if (phase === "done") { pct = 100; text = message || "stored"; }
  else if (phase === "failed") { pct = 100; text = message || "failed"; }
  u.bar.style.width = `${pct.toFixed(1)}%`;
  u.bar.parentElement.setAttribute("aria-valuenow", String(Math.round(pct)));
  u.stateText.textContent = text;
  u.stateText.title = text;
}

const queue = [];
let sending = 0;
function enqueue(files) {
  for (const file of files) {
    const key = `u-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    queue.push({ key, file, u: uploadRow(key, file) });
  }
  pump();
}

// One upload at a time: the pipeline on the server is the command's, one file after the other.
function pump() {
  if (sending > 0 || queue.length === 0) return;
  const { key, file, u } = queue.shift();
  sending++;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/upload?name=${encodeURIComponent(file.name)}&key=${encodeURIComponent(key)}`);
  xhr.setRequestHeader("X-CSRF-Token", csrf);
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) showProgress(u, "receiving", e.loaded, e.total); };
  xhr.upload.onload = () => showProgress(u, "storing", 0, file.size);
  xhr.onload = () => {
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status >= 200 && xhr.status < 300) {
      showProgress(u, "done", 1, 1, body && body.already ? `already stored as ${body.id}` : `stored as ${body.id}`);
    } else {
      const why = (body && body.error) || `${xhr.status} ${xhr.statusText}`;
      showProgress(u, "failed", 1, 1, why);
      toast(`Upload of ${file.name} failed: ${why}`, true);
    }
    done();
  };
  xhr.onerror = () => { showProgress(u, "failed", 1, 1, "the connection was lost"); done(); };
  const done = () => { sending--; loadFiles(); pump(); };
  xhr.send(file);
}

function setupDrop() {
  const drop = $("#drop");
  const input = $("#file-input");
  input.addEventListener("change", () => { enqueue([...input.files]); input.value = ""; });
  for (const t of [drop, document.body]) {
    t.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    t.addEventListener("dragleave", (e) => { if (e.target === drop) drop.classList.remove("over"); });
    t.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const files = [...(e.dataTransfer ? e.dataTransfer.files : [])];
      if (files.length) enqueue(files);
    });
  }
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
}

// ---- live updates ----

function connect() {
  const live = $("#live");
  const es = new EventSource("/api/events");
  const refresh = () => { loadFiles(); loadStats(); };
  // Also after a reconnection: what changed meanwhile was not told.
  es.addEventListener("hello", () => { live.dataset.state = "open"; live.textContent = "live"; refresh(); });
  es.onerror = () => {
    live.dataset.state = es.readyState === EventSource.CLOSED ? "closed" : "connecting";
    live.textContent = es.readyState === EventSource.CLOSED ? "offline" : "reconnecting…";
  };
  es.addEventListener("added", refresh);
  es.addEventListener("deleted", refresh);
  es.addEventListener("changed", refresh);
  es.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    const u = state.uploads.get(p.key);
    if (u && (p.phase === "receiving" || p.phase === "storing")) showProgress(u, p.phase, p.done, p.total);
  });
}

setInterval(() => {
  for (const e of document.querySelectorAll("[data-time]")) e.textContent = age(e.dataset.time);
}, 30000);

setupDrop();
connect();
loadFiles();
loadStats();
