// js/src/channel.js
var counter = 0;
function uid() {
  counter += 1;
  const rand = Math.random().toString(36).slice(2, 10);
  return `${Date.now().toString(36)}-${counter}-${rand}`;
}
var ReplyError = class extends Error {
};
var TimeoutError = class extends Error {
};
var Channel = class {
  constructor(model) {
    this.model = model;
    this.pending = /* @__PURE__ */ new Map();
    this.handlers = /* @__PURE__ */ new Map();
    this.disposed = false;
    this.listener = (msg, buffers) => this.receive(msg, buffers || []);
    model.on("msg:custom", this.listener);
  }
  on(type, fn) {
    this.handlers.set(type, fn);
  }
  request(type, body = {}, timeoutMs = 3e4) {
    const uuid = uid();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(uuid);
        reject(new TimeoutError(type));
      }, timeoutMs);
      this.pending.set(uuid, { resolve, reject, timer });
      this.model.send({ type, uuid, ...body });
    });
  }
  receive(msg, buffers) {
    if (this.disposed || !msg || typeof msg !== "object") return;
    if (msg.type === "reply") {
      const waiting = this.pending.get(msg.uuid);
      if (!waiting) return;
      this.pending.delete(msg.uuid);
      clearTimeout(waiting.timer);
      if (msg.ok) waiting.resolve({ msg, buffers });
      else waiting.reject(new ReplyError(msg.error || "error"));
      return;
    }
    const fn = this.handlers.get(msg.type);
    if (fn) fn(msg, buffers);
  }
  dispose() {
    this.disposed = true;
    this.model.off("msg:custom", this.listener);
    for (const { timer } of this.pending.values()) clearTimeout(timer);
    this.pending.clear();
  }
};

// js/src/download.js
var ZIP_TIMEOUT = 15 * 60 * 1e3;
function bytesOf(view) {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}
function size(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}
function saveBlob(host, blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  host.append(a);
  a.click();
  a.remove();
  return setTimeout(() => URL.revokeObjectURL(url), 2e4);
}
async function fetchZip(channel, type, body, progress) {
  const { msg } = await channel.request(type, body, ZIP_TIMEOUT);
  if (msg.path) return { path: msg.path, size: msg.size };
  const parts = [];
  for (let i = 0; i < msg.chunks; i++) {
    const { buffers } = await channel.request("chunk", { job: msg.job, index: i }, ZIP_TIMEOUT);
    parts.push(bytesOf(buffers[0]));
    if (progress) progress(Math.round((i + 1) * 100 / msg.chunks));
  }
  return { blob: new Blob(parts, { type: "application/zip" }), name: msg.name, size: msg.size };
}

// js/src/icons.js
var wrap = (body, fill = false) => `<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false" fill="${fill ? "currentColor" : "none"}" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;
var icons = {
  history: wrap('<path d="M2.6 8a5.4 5.4 0 1 0 1.6-3.8"/><path d="M2.4 2.6v2.6H5"/><path d="M8 5v3.2l2.2 1.4"/>'),
  download: wrap('<path d="M8 2.5v8"/><path d="M4.8 7.6L8 10.8l3.2-3.2"/><path d="M3 13.5h10"/>'),
  edit: wrap('<path d="M10.8 2.7l2.5 2.5L6 12.5 3 13l.5-3z"/><path d="M9.3 4.2l2.5 2.5"/>'),
  save: wrap('<path d="M3 8.5l3.2 3.2L13 4.8"/>'),
  cancel: wrap('<path d="M4.5 4.5l7 7M11.5 4.5l-7 7"/>'),
  retry: wrap('<path d="M12.9 9.2A5 5 0 1 1 11.6 4.4"/><path d="M12.2 1.9v3h-3"/>'),
  next: wrap('<path d="M3 2.8h10"/><path d="M8 13.2V5.6"/><path d="M4.8 8.6L8 5.4l3.2 3.2"/>'),
  duplicate: wrap('<rect x="5.5" y="5.5" width="7.5" height="7.5" rx="1.5"/><path d="M3 10.5V4a1 1 0 0 1 1-1h6.5"/>'),
  trash: wrap('<path d="M2.8 4.5h10.4"/><path d="M6.3 4.5V2.9h3.4v1.6"/><path d="M4.4 4.5l.7 8.6h5.8l.7-8.6"/>'),
  play: wrap('<path d="M5 3.2v9.6L12.8 8z"/>', true),
  pause: wrap('<path d="M5.5 3.5v9M10.5 3.5v9"/>'),
  stop: wrap('<rect x="4" y="4" width="8" height="8" rx="1.2"/>', true),
  search: wrap('<circle cx="7" cy="7" r="4.2"/><path d="M10.2 10.2l3.3 3.3"/>'),
  grip: '<svg viewBox="0 0 10 16" width="10" height="16" aria-hidden="true" focusable="false" fill="currentColor"><circle cx="3" cy="4" r="1.2"/><circle cx="7" cy="4" r="1.2"/><circle cx="3" cy="8" r="1.2"/><circle cx="7" cy="8" r="1.2"/><circle cx="3" cy="12" r="1.2"/><circle cx="7" cy="12" r="1.2"/></svg>',
  image: wrap('<rect x="2.5" y="3" width="11" height="10" rx="1.5"/><circle cx="6" cy="6.5" r="1.2"/><path d="M3 12l3.5-3.5 2.5 2.5 1.5-1.5L13 12"/>')
};

// js/src/util.js
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === void 0 || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "html") el.innerHTML = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== void 0) el.append(child);
  }
  return el;
}
function fmt(strings, key, values = {}) {
  const text = strings[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => name in values ? String(values[name]) : `{${name}}`);
}
function duration(seconds) {
  if (seconds === null || seconds === void 0 || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor(s % 3600 / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
function setAttr(el, name, value) {
  if (value === null || value === void 0 || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else {
    const v = value === true ? "" : String(value);
    if (el.getAttribute(name) !== v) el.setAttribute(name, v);
  }
}

// js/src/grid.js
var ROW_H = 64;
var OVERSCAN = 6;
var FETCH_EXTRA = 20;
var THUMB_CACHE = 800;
var KEEP_ROWS = 800;
var STATUSES = ["idle", "queued", "running", "succeeded", "failed", "cancelled", "interrupted"];
var EDITABLE = /* @__PURE__ */ new Set(["idle", "queued", "failed", "cancelled", "interrupted"]);
var RETRYABLE = /* @__PURE__ */ new Set(["failed", "cancelled", "interrupted"]);
var Grid = class {
  constructor(view) {
    this.view = view;
    this.filter = "all";
    this.query = "";
    this.total = null;
    this.rows = /* @__PURE__ */ new Map();
    this.stale = /* @__PURE__ */ new Map();
    this.byId = /* @__PURE__ */ new Map();
    this.generation = 0;
    this.nodes = /* @__PURE__ */ new Map();
    this.free = [];
    this.focusIndex = 0;
    this.anchorId = null;
    this.editing = null;
    this.expanded = null;
    this.thumbs = /* @__PURE__ */ new Map();
    this.thumbWanted = /* @__PURE__ */ new Set();
    this.fetching = false;
    this.fetchAgain = false;
    this.fetchTimer = 0;
    this.frame = 0;
    this.drag = null;
    this.build();
  }
  // ---------------------------------------------------------------- building
  build() {
    const s = this.view.strings;
    this.chips = /* @__PURE__ */ new Map();
    const chipBar = h("div", { class: "nbb-chips", role: "group", "aria-label": s.filters });
    for (const st of ["all", "starred", ...STATUSES]) {
      const label = st === "all" ? s.filter_all : st === "starred" ? s.filter_starred : fmt(s, `st_${st}`, { pct: "" }).replace(/\s*%$/, "");
      const count = h("span", { class: "nbb-chip-n" });
      const chip = h(
        "button",
        {
          type: "button",
          class: `nbb-fchip nbb-f-${st}`,
          "aria-pressed": st === "all" ? "true" : "false",
          onclick: () => this.setFilter(st)
        },
        h("span", { text: label }),
        count
      );
      chip._count = count;
      chip._label = label;
      this.chips.set(st, chip);
      chipBar.append(chip);
    }
    this.search = h("input", {
      type: "search",
      class: "nbb-search",
      placeholder: s.search,
      "aria-label": s.search,
      oninput: () => {
        clearTimeout(this.searchTimer);
        this.searchTimer = setTimeout(() => this.setQuery(this.search.value), 200);
      }
    });
    const bulk = (key, icon, action, cls = "") => h("button", {
      type: "button",
      class: `nbb-btn nbb-small ${cls}`,
      "aria-label": s[key],
      title: s[key],
      onclick: () => this.view.act(action),
      html: `${icons[icon]}<span>${s[key]}</span>`
    });
    this.selInfo = h("span", { class: "nbb-selinfo", "aria-live": "polite" });
    this.bulkRetry = bulk("retry_selected", "retry", "retry_selected");
    this.bulkNext = bulk("run_next_selected", "next", "run_next_selected");
    this.bulkDelete = bulk("delete_selected", "trash", "delete_selected", "nbb-danger");
    this.bulkZip = h("button", {
      type: "button",
      class: "nbb-btn nbb-small",
      "aria-label": s.download_selected_zip,
      title: s.download_selected_zip,
      onclick: () => this.downloadSelected(),
      html: `${icons.download}<span>${s.download_selected}</span>`
    });
    this.clearSel = h("button", {
      type: "button",
      class: "nbb-link",
      text: s.clear_selection,
      onclick: () => this.view.select("none")
    });
    this.bulk = h("div", { class: "nbb-bulk", hidden: true }, this.selInfo, this.clearSel, this.bulkZip, this.bulkRetry, this.bulkNext, this.bulkDelete);
    const filters = h(
      "div",
      { class: "nbb-filterbar" },
      h("label", { class: "nbb-searchbox" }, h("span", { html: icons.search }), this.search),
      chipBar,
      h("div", { class: "nbb-spring" }),
      this.bulk
    );
    this.selectAll = h("input", {
      type: "checkbox",
      class: "nbb-check",
      "aria-label": s.select_all,
      onclick: (e) => {
        e.preventDefault();
        this.view.select(this.allSelected() ? "none" : "all");
      }
    });
    const col = (cls, text, child) => h("div", { role: "columnheader", class: `nbb-cell ${cls}` }, child ?? h("span", { text }));
    this.head = h(
      "div",
      { role: "row", class: "nbb-head", "aria-rowindex": 1 },
      col("nbb-c-sel", "", this.selectAll),
      col("nbb-c-num", s.col_num),
      col("nbb-c-refs", s.col_refs),
      col("nbb-c-prompt", s.col_prompt),
      col("nbb-c-status", s.col_status),
      col("nbb-c-results", s.col_results),
      col("nbb-c-actions", s.col_actions)
    );
    this.spacer = h("div", { class: "nbb-spacer", role: "rowgroup" });
    this.indicator = h("div", { class: "nbb-drop", hidden: true });
    this.popover = h("div", { class: "nbb-popover", hidden: true, role: "note" });
    this.spacer.append(this.indicator, this.popover);
    this.empty = h("div", { class: "nbb-empty", hidden: true });
    this.viewport = h("div", { class: "nbb-viewport" }, this.spacer, this.empty);
    this.viewport.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.grid = h(
      "div",
      {
        class: "nbb-grid",
        role: "grid",
        "aria-label": s.grid,
        "aria-multiselectable": "true",
        "aria-rowcount": 1
      },
      this.head,
      this.viewport
    );
    this.grid.addEventListener("keydown", (e) => this.onKey(e));
    this.spacer.addEventListener("click", (e) => this.onClick(e));
    this.spacer.addEventListener("dblclick", (e) => this.onDblClick(e));
    this.spacer.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    this.editor = this.buildEditor();
    this.el = h("div", { class: "nbb-gridwrap" }, filters, this.grid);
    this.resizeObserver = new ResizeObserver(() => this.schedule());
    this.resizeObserver.observe(this.viewport);
  }
  buildEditor() {
    const s = this.view.strings;
    const area = h("textarea", { class: "nbb-textarea", rows: 2, spellcheck: "true" });
    const error = h("div", { class: "nbb-edit-error", role: "alert" });
    const hint = h("div", { class: "nbb-edit-hint", text: s.edit_hint });
    area.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.isComposing || e.keyCode === 229) return;
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        this.saveEdit();
      } else if (e.key === "Escape") {
        e.preventDefault();
        this.cancelEdit();
      }
    });
    area.addEventListener("input", () => {
      if (this.editing) this.editing.draft = area.value;
    });
    const el = h("div", { class: "nbb-editor" }, area, h("div", { class: "nbb-edit-foot" }, error, hint));
    return { el, area, error };
  }
  dispose() {
    this.resizeObserver.disconnect();
    cancelAnimationFrame(this.frame);
    clearTimeout(this.fetchTimer);
    for (const url of this.thumbs.values()) if (url) URL.revokeObjectURL(url);
    this.thumbs.clear();
  }
  // ---------------------------------------------------------------- data in
  invalidate() {
    for (const [i, row] of this.rows) this.stale.set(i, row);
    this.rows = /* @__PURE__ */ new Map();
    this.generation += 1;
    this.invalid = true;
    this.requestWindow(true);
  }
  setFilter(st) {
    if (this.filter === st) return;
    this.filter = st;
    for (const [key, chip] of this.chips) chip.setAttribute("aria-pressed", key === st ? "true" : "false");
    this.resetView();
  }
  setQuery(q) {
    if (this.query === q.trim()) return;
    this.query = q.trim();
    this.resetView();
  }
  resetView() {
    this.rows = /* @__PURE__ */ new Map();
    this.stale = /* @__PURE__ */ new Map();
    this.generation += 1;
    this.viewport.scrollTop = 0;
    this.focusIndex = 0;
    this.invalid = true;
    this.requestWindow(true);
  }
  applyPatch(rows, whole) {
    let refetch = false;
    for (const row of whole) {
      const old = this.byId.get(row.id);
      if (!old || old._i === void 0) continue;
      row._i = old._i;
      this.byId.set(row.id, row);
      if (this.rows.get(row._i) === old) this.rows.set(row._i, row);
    }
    for (const [id, st, pc, at, ni, full] of rows) {
      const row = this.byId.get(id);
      if (!row) continue;
      row.st = st;
      row.pc = pc;
      row.at = at;
      row.ni = ni;
      if (full) {
        row._stale = true;
        refetch = true;
      }
    }
    if (refetch) this.requestWindow(true);
    this.schedule();
  }
  setSummary(summary) {
    this.summary = summary;
    this.view.root.classList.toggle("nbb-norefs", !summary.refs);
    for (const [st, chip] of this.chips) {
      const n = st === "all" ? summary.total : st === "starred" ? summary.starred || 0 : summary.counts[st] || 0;
      setText(chip._count, String(n));
      chip.hidden = st !== "all" && n === 0 && this.filter !== st;
    }
    if (this.total === null) return;
    if (this.filter === "all" && !this.query && summary.total !== this.total) this.invalidate();
  }
  windowRange() {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || ROW_H * 8;
    const total = this.total ?? 0;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(total, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    return [first, last];
  }
  requestWindow(force = false) {
    if (!force && this.total !== null) {
      const [from, to] = this.windowRange();
      let missing = false;
      for (let i = from; i < to; i++) if (!this.rows.has(i)) missing = true;
      if (!missing) return;
    }
    clearTimeout(this.fetchTimer);
    this.fetchTimer = setTimeout(() => this.fetch(), this.total === null ? 0 : 40);
  }
  async fetch() {
    if (this.fetching) {
      this.fetchAgain = true;
      return;
    }
    this.fetching = true;
    const generation = this.generation;
    const [from, to] = this.windowRange();
    let start = Math.max(0, from - FETCH_EXTRA);
    let end = Math.max(to + FETCH_EXTRA, start + 40);
    let missing = this.total === null || this.stale.size > 0 || this.invalid;
    let lo = Infinity;
    let hi = -1;
    for (let i = from; i < to && !missing; i++) {
      const row = this.rows.get(i);
      if (!row) missing = true;
      else if (row._stale) {
        lo = Math.min(lo, i);
        hi = Math.max(hi, i);
      }
    }
    if (!missing) {
      if (hi < 0) {
        this.fetching = false;
        return;
      }
      start = lo;
      end = hi + 1;
    }
    try {
      const { msg } = await this.view.channel.request("rows", {
        start,
        end,
        filter: this.filter,
        query: this.query
      });
      if (generation !== this.generation) {
        this.fetchAgain = true;
      } else {
        this.total = msg.total;
        msg.rows.forEach((row, k) => {
          row._i = msg.start + k;
          this.rows.set(row._i, row);
          this.byId.set(row.id, row);
        });
        this.pruneRows(msg.start, msg.start + msg.rows.length);
        this.stale.clear();
        this.invalid = false;
        this.layout();
      }
    } catch (err) {
      this.view.showError(err);
    } finally {
      this.fetching = false;
      if (this.fetchAgain) {
        this.fetchAgain = false;
        this.requestWindow(true);
      }
    }
  }
  // Keep only rows near the screen: the kernel sends status patches for the rows it
  // sent recently (about 1,200), so older cached rows could show a stale status.
  pruneRows(from, to) {
    if (this.rows.size <= KEEP_ROWS) return;
    for (const [i, row] of this.rows) {
      if (i < from - KEEP_ROWS / 2 || i > to + KEEP_ROWS / 2) {
        this.rows.delete(i);
        if (this.byId.get(row.id) === row) this.byId.delete(row.id);
      }
    }
  }
  layout() {
    const total = this.total ?? 0;
    const maxH = Math.max(ROW_H * 3, Math.min(window.innerHeight * 0.7, 560));
    this.viewport.style.height = `${Math.max(ROW_H * 3, Math.min(total * ROW_H, maxH))}px`;
    this.spacer.style.height = `${total * ROW_H}px`;
    setAttr(this.grid, "aria-rowcount", total + 1);
    const s = this.view.strings;
    this.empty.hidden = total !== 0;
    setText(this.empty, this.filter === "all" && !this.query ? s.empty : s.no_match);
    if (this.focusIndex >= total) this.focusIndex = Math.max(0, total - 1);
    this.schedule();
  }
  // ---------------------------------------------------------------- painting
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.paint();
    });
  }
  paint() {
    if (this.total === null) return;
    const [from, to] = this.windowRange();
    for (const [i, node] of this.nodes) {
      if (i < from || i >= to) {
        this.nodes.delete(i);
        node.hidden = true;
        delete node.dataset.taskId;
        this.free.push(node);
      }
    }
    const hadFocus = this.grid.contains(document.activeElement) && document.activeElement.classList.contains("nbb-row");
    for (let i = from; i < to; i++) {
      let node = this.nodes.get(i);
      if (!node) {
        node = this.free.pop() || this.makeRow();
        node.hidden = false;
        this.nodes.set(i, node);
      }
      this.paintRow(node, i);
    }
    if (hadFocus) this.focusRow(this.focusIndex, false);
    this.paintSelection();
    this.paintPopover();
    this.requestWindow();
    this.requestThumbs(from, to);
  }
  makeRow() {
    const s = this.view.strings;
    const btn = (key, icon, action, cls = "") => {
      const b = h("button", {
        type: "button",
        class: `nbb-icon ${cls}`,
        "aria-label": s[key],
        title: s[key],
        tabindex: -1,
        html: icons[icon]
      });
      b.dataset.action = action;
      return b;
    };
    const parts = {
      check: h("input", { type: "checkbox", class: "nbb-check", tabindex: -1 }),
      grip: h("span", { class: "nbb-grip", title: s.drag, "aria-hidden": "true", html: icons.grip }),
      num: h("span", { class: "nbb-num" }),
      refs: h("div", { class: "nbb-thumbs" }),
      parent: h("button", { type: "button", class: "nbb-parent", tabindex: -1, hidden: true }),
      text: h("div", { class: "nbb-ptext" }),
      chip: h("span", { class: "nbb-chip" }),
      neg: h("span", { class: "nbb-neg" }),
      badge: h("span", { class: "nbb-badge" }),
      bar: h("div", { class: "nbb-bar" }, h("i")),
      attempts: h("span", { class: "nbb-attempts" }),
      error: h("button", { type: "button", class: "nbb-err", tabindex: -1 }),
      results: h("div", { class: "nbb-thumbs" }),
      edit: btn("edit", "edit", "edit"),
      save: btn("save", "save", "save", "nbb-accent"),
      cancel: btn("cancel_edit", "cancel", "cancel_edit"),
      retry: btn("retry", "retry", "retry"),
      stopTask: btn("cancel_task", "stop", "cancel", "nbb-danger"),
      next: btn("run_next", "next", "run_next"),
      duplicate: btn("duplicate", "duplicate", "duplicate"),
      remove: btn("delete", "trash", "delete", "nbb-danger")
    };
    parts.error.dataset.action = "expand";
    parts.parent.dataset.action = "open_parent";
    parts.prompt = h(
      "div",
      { role: "gridcell", class: "nbb-cell nbb-c-prompt" },
      parts.text,
      h("div", { class: "nbb-pmeta" }, parts.chip, parts.neg)
    );
    const node = h(
      "div",
      { role: "row", class: "nbb-row", tabindex: -1 },
      h("div", { role: "gridcell", class: "nbb-cell nbb-c-sel" }, parts.check),
      h("div", { role: "gridcell", class: "nbb-cell nbb-c-num" }, parts.grip, parts.num),
      h("div", { role: "gridcell", class: "nbb-cell nbb-c-refs" }, parts.parent, parts.refs),
      parts.prompt,
      h(
        "div",
        { role: "gridcell", class: "nbb-cell nbb-c-status" },
        h("div", { class: "nbb-sline" }, parts.badge, parts.attempts),
        parts.bar,
        parts.error
      ),
      h("div", { role: "gridcell", class: "nbb-cell nbb-c-results" }, parts.results),
      h(
        "div",
        { role: "gridcell", class: "nbb-cell nbb-c-actions" },
        parts.edit,
        parts.save,
        parts.cancel,
        parts.retry,
        parts.stopTask,
        parts.next,
        parts.duplicate,
        parts.remove
      )
    );
    node._parts = parts;
    this.spacer.append(node);
    return node;
  }
  rowAt(i) {
    return this.rows.get(i) ?? this.stale.get(i) ?? null;
  }
  paintRow(node, i) {
    const p = node._parts;
    const s = this.view.strings;
    const row = this.rowAt(i);
    node.style.transform = `translateY(${i * ROW_H}px)`;
    setAttr(node, "aria-rowindex", i + 2);
    if (!row) {
      node.classList.add("nbb-loading");
      delete node.dataset.taskId;
      setText(p.num, "");
      setText(p.text, s.loading);
      return;
    }
    node.classList.remove("nbb-loading");
    node.dataset.taskId = row.id;
    node.dataset.status = row.st;
    node._row = row;
    node._index = i;
    const focused = i === this.focusIndex;
    setAttr(node, "tabindex", focused ? 0 : -1);
    setText(p.num, String(row.n));
    setAttr(p.check, "aria-label", fmt(s, "select_task", { n: row.n }));
    const editing = this.editing && this.editing.id === row.id;
    node.classList.toggle("nbb-editing", !!editing);
    if (editing) {
      if (this.editor.el.parentNode !== p.prompt) {
        p.prompt.append(this.editor.el);
        this.editor.area.value = this.editing.draft;
        setAttr(this.editor.area, "aria-label", fmt(s, "prompt_of", { n: row.n }));
      }
    } else if (this.editor.el.parentNode === p.prompt) {
      this.editor.el.remove();
    }
    setText(p.text, row.p);
    setAttr(p.text, "title", row.p.length > 120 ? row.p : null);
    setText(p.chip, row.pm);
    setText(p.neg, row.np ? `− ${row.np}` : "");
    p.neg.hidden = !row.np;
    const pct = row.pc ?? 0;
    setText(p.badge, fmt(s, `st_${row.st}`, { pct }));
    p.badge.className = `nbb-badge nbb-st-${row.st}`;
    p.bar.hidden = row.st !== "running";
    p.bar.firstChild.style.width = `${pct}%`;
    setText(p.attempts, row.at > 1 || row.at === 1 && row.st === "failed" ? fmt(s, "attempt", { n: row.at }) : "");
    const err = row.st === "failed" || row.st === "interrupted" ? row.er || "" : "";
    p.error.hidden = !err;
    setText(p.error, err);
    setAttr(p.error, "aria-label", err ? `${s.show_error}: ${err.slice(0, 200)}` : null);
    setAttr(p.error, "aria-expanded", err ? String(this.expanded === row.id) : null);
    const pa = row.pa;
    p.parent.hidden = !pa;
    if (pa) {
      const label = fmt(s, "parent_thumb", { i: pa.i + 1, n: pa.n });
      setAttr(p.parent, "aria-label", label);
      setAttr(p.parent, "title", label);
      this.paintThumbs(p.parent, [pa.k], 1, label);
      if (!p.parent.querySelector(".nbb-parent-n")) p.parent.append(h("span", { class: "nbb-parent-n" }));
      setText(p.parent.querySelector(".nbb-parent-n"), `↰ #${pa.n}`);
    }
    const refs = pa ? (row.rf || []).filter((k) => k !== pa.k) : row.rf || [];
    this.paintThumbs(p.refs, refs, Math.max(refs.length, (row.nr || 0) - (pa ? 1 : 0)), s.reference);
    this.paintThumbs(p.results, row.im || [], row.ni || 0, s.result);
    const live = ["running", "paused", "stopping"].includes(this.view.model.get("run_state"));
    p.edit.hidden = !!editing;
    p.save.hidden = !editing;
    p.cancel.hidden = !editing;
    p.edit.disabled = !EDITABLE.has(row.st);
    p.retry.disabled = !RETRYABLE.has(row.st);
    const cancellable = live && (row.st === "running" || row.st === "queued");
    p.stopTask.hidden = !cancellable;
    p.retry.hidden = cancellable;
    p.next.disabled = !(row.st === "queued" && live);
    p.remove.disabled = row.st === "running";
    const inRow = focused ? 0 : -1;
    for (const b of [p.parent, p.edit, p.save, p.cancel, p.retry, p.stopTask, p.next, p.duplicate, p.remove]) setAttr(b, "tabindex", inRow);
  }
  paintThumbs(box, keys, count, label) {
    const want = keys.join(",") + `|${count}`;
    if (box.dataset.want !== want) {
      box.dataset.want = want;
      box.replaceChildren();
      keys.forEach((key, k) => {
        const img = h("img", { class: "nbb-thumb", alt: "", draggable: "false", decoding: "async" });
        img.dataset.key = key;
        img.dataset.label = label;
        const extra = k === keys.length - 1 && count > keys.length ? count - keys.length : 0;
        box.append(extra ? h("span", { class: "nbb-more-wrap" }, img, h("span", { class: "nbb-more", text: `+${extra}` })) : img);
      });
    }
    for (const img of box.querySelectorAll("img")) {
      const url = this.thumbs.get(img.dataset.key);
      if (url && img.getAttribute("src") !== url) {
        img.src = url;
        img.alt = img.dataset.label;
      }
      img.classList.toggle("nbb-nothumb", !url);
    }
  }
  paintSelection() {
    const selected = new Set(this.view.model.get("selection") || []);
    for (const node of this.nodes.values()) {
      const row = node._row;
      const on = !!row && node.dataset.taskId === row.id && selected.has(row.id);
      setAttr(node, "aria-selected", on ? "true" : "false");
      node._parts.check.checked = on;
    }
    const n = selected.size;
    const s = this.view.strings;
    setText(this.selInfo, n ? fmt(s, "n_selected", { n }) : "");
    this.bulk.hidden = !n;
    this.selectAll.checked = n > 0 && this.allSelected();
    this.selectAll.indeterminate = n > 0 && !this.allSelected();
  }
  allSelected() {
    const n = (this.view.model.get("selection") || []).length;
    return n > 0 && this.total !== null && n >= this.total;
  }
  paintPopover() {
    const id = this.expanded;
    const row = id ? this.byId.get(id) : null;
    if (!row || !row.er || row._i === void 0) {
      this.popover.hidden = true;
      return;
    }
    const s = this.view.strings;
    this.popover.hidden = false;
    this.popover.style.transform = `translateY(${(row._i + 1) * ROW_H}px)`;
    if (this.popover.dataset.id !== id || this.popover.dataset.text !== row.er) {
      this.popover.dataset.id = id;
      this.popover.dataset.text = row.er;
      this.popover.replaceChildren(
        h("pre", { class: "nbb-errtext", text: row.er }),
        h("button", { type: "button", class: "nbb-link", text: s.hide_error, onclick: () => {
          this.expanded = null;
          this.schedule();
        } })
      );
    }
  }
  // ---------------------------------------------------------------- thumbnails
  requestThumbs(from, to) {
    const keys = [];
    for (let i = from; i < to; i++) {
      const row = this.rowAt(i);
      if (!row) continue;
      for (const key of [...row.rf || [], ...row.im || [], ...row.pa ? [row.pa.k] : []]) {
        if (!this.thumbs.has(key) && !this.thumbWanted.has(key)) keys.push(key);
      }
    }
    if (!keys.length) return;
    for (const k of keys) this.thumbWanted.add(k);
    for (let i = 0; i < keys.length; i += 48) this.fetchThumbs(keys.slice(i, i + 48));
  }
  async fetchThumbs(keys) {
    try {
      const { msg, buffers } = await this.view.channel.request("thumbs", { keys });
      msg.keys.forEach((key, k) => {
        const view = buffers[k];
        const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
        this.thumbs.set(key, URL.createObjectURL(new Blob([bytes], { type: "image/webp" })));
      });
      for (const key of msg.missing || []) this.thumbs.set(key, null);
      this.pruneThumbs();
      this.schedule();
    } catch (err) {
      this.view.showError(err);
    } finally {
      for (const k of keys) this.thumbWanted.delete(k);
    }
  }
  pruneThumbs() {
    if (this.thumbs.size <= THUMB_CACHE) return;
    const visible = /* @__PURE__ */ new Set();
    for (const node of this.nodes.values()) for (const img of node.querySelectorAll("img")) visible.add(img.dataset.key);
    for (const [key, url] of this.thumbs) {
      if (this.thumbs.size <= THUMB_CACHE * 0.8) break;
      if (visible.has(key)) continue;
      if (url) URL.revokeObjectURL(url);
      this.thumbs.delete(key);
    }
  }
  // ---------------------------------------------------------------- interaction
  nodeOf(target) {
    const node = target.closest(".nbb-row");
    return node && this.spacer.contains(node) && node._row && node.dataset.taskId ? node : null;
  }
  onClick(e) {
    const node = this.nodeOf(e.target);
    if (!node) return;
    const row = node._row;
    const actionEl = e.target.closest("[data-action]");
    if (actionEl && !actionEl.disabled) {
      this.rowAction(actionEl.dataset.action, row, node._index);
      return;
    }
    if (e.target.closest("textarea, .nbb-editor")) return;
    const thumb = e.target.closest(".nbb-c-results img");
    if (thumb && row.st === "succeeded" && !e.shiftKey && !e.ctrlKey && !e.metaKey) {
      const index = [...node._parts.results.querySelectorAll("img")].indexOf(thumb);
      this.focusIndex = node._index;
      this.openGallery(row.id, Math.max(0, index));
      return;
    }
    this.focusIndex = node._index;
    if (e.target.classList.contains("nbb-check")) {
      e.preventDefault();
      this.view.select("toggle", { id: row.id });
      this.anchorId = row.id;
    } else if (e.shiftKey && this.anchorId) {
      this.view.select("range", { id: row.id, anchor: this.anchorId });
    } else if (e.ctrlKey || e.metaKey) {
      this.view.select("toggle", { id: row.id });
      this.anchorId = row.id;
    } else {
      this.view.select("set", { id: row.id });
      this.anchorId = row.id;
    }
    this.focusRow(node._index);
  }
  onDblClick(e) {
    const node = this.nodeOf(e.target);
    if (node && e.target.closest(".nbb-ptext") && EDITABLE.has(node._row.st)) this.startEdit(node._row);
  }
  // The gallery view shown with this grid view (a studio displayed twice has two): the
  // kernel opens the dialog in that one only.
  openGallery(id, index) {
    const box = this.el.closest(".nbb-studio-box, .jp-OutputArea, .jp-Cell") || document;
    const gallery = box.querySelector("[data-nbb-gallery-view]");
    const view = gallery ? gallery.getAttribute("data-nbb-gallery-view") : void 0;
    return this.view.act("open_gallery", { id, index, view });
  }
  async downloadSelected() {
    const s = this.view.strings;
    this.bulkZip.disabled = true;
    this.view.notice(s.zip_building, "info");
    try {
      const got = await fetchZip(this.view.channel, "zip_selected", {}, (pct) => this.view.notice(fmt(s, "zip_receiving", { pct }), "info"));
      if (got.path) {
        this.view.notice(fmt(s, "zip_saved", { size: size(got.size), path: got.path }), "info");
        return;
      }
      saveBlob(this.el, got.blob, got.name);
      this.view.notice(fmt(s, "zip_ready", { name: got.name, size: size(got.size) }), "info");
    } catch (err) {
      this.view.showError(err);
    } finally {
      this.bulkZip.disabled = false;
    }
  }
  rowAction(action, row, index) {
    this.focusIndex = index;
    switch (action) {
      case "open_parent":
        if (row.pa) this.openGallery(row.pa.id, row.pa.i);
        break;
      case "edit":
        this.startEdit(row);
        break;
      case "save":
        this.saveEdit();
        break;
      case "cancel_edit":
        this.cancelEdit();
        break;
      case "expand":
        this.expanded = this.expanded === row.id ? null : row.id;
        this.schedule();
        break;
      case "retry":
      case "run_next":
      case "delete":
        this.view.act(action, { ids: [row.id] });
        break;
      case "duplicate":
      case "cancel":
        this.view.act(action, { id: row.id });
        break;
    }
  }
  startEdit(row) {
    if (!EDITABLE.has(row.st)) return;
    this.editing = { id: row.id, draft: row.p };
    setText(this.editor.error, "");
    this.editor.el.remove();
    this.paint();
    this.editor.area.focus();
    this.editor.area.setSelectionRange(this.editor.area.value.length, this.editor.area.value.length);
  }
  async saveEdit() {
    const editing = this.editing;
    if (!editing) return;
    const prompt = this.editor.area.value;
    setText(this.editor.error, "");
    try {
      await this.view.channel.request("edit", { id: editing.id, prompt });
      const row = this.byId.get(editing.id);
      if (row) row.p = prompt.trim();
      this.finishEdit();
    } catch (err) {
      setText(this.editor.error, this.view.words(err));
      this.editor.area.focus();
    }
  }
  cancelEdit() {
    this.finishEdit();
  }
  finishEdit() {
    this.editing = null;
    this.editor.el.remove();
    this.paint();
    this.focusRow(this.focusIndex);
  }
  focusRow(i, scroll = true) {
    const total = this.total ?? 0;
    if (!total) return;
    i = Math.max(0, Math.min(total - 1, i));
    this.focusIndex = i;
    if (scroll) {
      const top = i * ROW_H;
      const vp = this.viewport;
      if (top < vp.scrollTop) vp.scrollTop = top;
      else if (top + ROW_H > vp.scrollTop + vp.clientHeight) vp.scrollTop = top + ROW_H - vp.clientHeight;
    }
    let node = this.nodes.get(i);
    if (!node) {
      this.paint();
      node = this.nodes.get(i);
    }
    if (node) {
      for (const other of this.nodes.values()) if (other !== node) setAttr(other, "tabindex", -1);
      setAttr(node, "tabindex", 0);
      if (document.activeElement !== node && !node.contains(document.activeElement)) node.focus({ preventScroll: true });
    }
  }
  onKey(e) {
    const target = e.target;
    if (target.closest("textarea") || target.closest("input[type=search]")) return;
    const node = this.nodeOf(target);
    const row = node ? node._row : null;
    const i = node ? node._index : this.focusIndex;
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / ROW_H) - 1);
    const key = e.key;
    if (e.altKey && (key === "ArrowUp" || key === "ArrowDown") && row) {
      e.preventDefault();
      const neighbour = this.rowAt(key === "ArrowUp" ? i - 1 : i + 1);
      if (neighbour) {
        this.focusIndex = key === "ArrowUp" ? i - 1 : i + 1;
        this.view.act("move", { id: row.id, index: neighbour.n - 1 }).then(() => this.focusRow(this.focusIndex));
      }
      return;
    }
    const moves = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: (this.total ?? 1) - 1, PageDown: i + page, PageUp: i - page };
    if (key in moves && !e.altKey) {
      e.preventDefault();
      this.focusRow(moves[key]);
      if (e.shiftKey && this.anchorId) {
        const target2 = this.rowAt(this.focusIndex);
        if (target2) this.view.select("range", { id: target2.id, anchor: this.anchorId });
      }
      return;
    }
    if (!row || target !== node) return;
    if (key === " ") {
      e.preventDefault();
      this.view.select("toggle", { id: row.id });
      this.anchorId = row.id;
    } else if (key === "Enter" && row.st === "succeeded") {
      e.preventDefault();
      this.openGallery(row.id, 0);
    } else if (key === "Enter" || key === "F2") {
      e.preventDefault();
      this.startEdit(row);
    } else if (key === "Delete" || key === "Backspace") {
      e.preventDefault();
      if (row.st !== "running") this.view.act("delete", { ids: [row.id] });
    } else if ((e.ctrlKey || e.metaKey) && key.toLowerCase() === "a") {
      e.preventDefault();
      this.view.select("all");
    } else if (key === "Escape") {
      this.view.select("none");
    }
  }
  // drag to reorder, by the grip (pointer events, so mouse, pen and touch all work)
  onPointerDown(e) {
    const grip = e.target.closest(".nbb-grip");
    const node = grip && this.nodeOf(grip);
    if (!node || e.button !== 0) return;
    e.preventDefault();
    const row = node._row;
    this.drag = { id: row.id, from: node._index, fromPos: row.n - 1, gap: null };
    node.classList.add("nbb-dragging");
    grip.setPointerCapture(e.pointerId);
    const move = (ev) => this.onDragMove(ev);
    const up = (ev) => {
      grip.removeEventListener("pointermove", move);
      grip.removeEventListener("pointerup", up);
      grip.removeEventListener("pointercancel", up);
      node.classList.remove("nbb-dragging");
      this.onDragEnd(ev.type === "pointerup");
    };
    grip.addEventListener("pointermove", move);
    grip.addEventListener("pointerup", up);
    grip.addEventListener("pointercancel", up);
  }
  onDragMove(e) {
    const rect = this.viewport.getBoundingClientRect();
    if (e.clientY < rect.top + 24) this.viewport.scrollTop -= 12;
    else if (e.clientY > rect.bottom - 24) this.viewport.scrollTop += 12;
    const y = e.clientY - rect.top + this.viewport.scrollTop;
    const gap = Math.max(0, Math.min(this.total ?? 0, Math.round(y / ROW_H)));
    this.drag.gap = gap;
    this.indicator.hidden = false;
    this.indicator.style.transform = `translateY(${gap * ROW_H - 1}px)`;
  }
  onDragEnd(commit) {
    const drag = this.drag;
    this.drag = null;
    this.indicator.hidden = true;
    if (!commit || !drag || drag.gap === null) return;
    const { gap, from, fromPos, id } = drag;
    if (gap === from || gap === from + 1) return;
    let index;
    const below = this.rowAt(gap);
    if (below) {
      const p = below.n - 1;
      index = p > fromPos ? p - 1 : p;
    } else {
      const last = this.rowAt(gap - 1);
      if (!last) return;
      index = last.n - 1;
    }
    this.focusIndex = gap > from ? gap - 1 : gap;
    this.view.act("move", { id, index });
  }
};

// js/src/toolbar.js
var Toolbar = class {
  constructor(view) {
    this.view = view;
    const s = view.strings;
    const button = (key, icon, cls, action) => h("button", {
      type: "button",
      class: `nbb-btn ${cls}`,
      "aria-label": s[key],
      title: s[key],
      onclick: () => view.act(action),
      html: `${icons[icon]}<span>${s[key]}</span>`
    });
    this.runAll = button("run_all", "play", "nbb-primary", "run_all");
    this.pause = button("pause", "pause", "", "pause");
    this.resume = button("resume", "play", "", "resume");
    this.stop = button("stop", "stop", "", "stop");
    this.retryFailed = button("retry_failed", "retry", "", "retry_failed");
    this.history = button("hist_button", "history", "", "open_history");
    this.state = h("span", { class: "nbb-state", role: "status", "aria-live": "polite" });
    this.batchName = h("span", { class: "nbb-batchname" });
    this.provider = h("select", {
      class: "nbb-select",
      "aria-label": s.provider,
      onchange: () => view.act("set_provider", { name: this.provider.value })
    });
    this.concurrency = h("input", {
      class: "nbb-number",
      type: "number",
      min: 1,
      max: 10,
      step: 1,
      "aria-label": s.concurrency,
      onchange: () => {
        const value = Math.max(1, Math.min(10, parseInt(this.concurrency.value, 10) || 1));
        this.concurrency.value = String(value);
        view.act("set_concurrency", { value });
      }
    });
    const settings = h(
      "div",
      { class: "nbb-settings" },
      h("label", { class: "nbb-field" }, h("span", { text: s.provider }), this.provider),
      h("label", { class: "nbb-field" }, h("span", { text: s.concurrency }), this.concurrency)
    );
    this.bar = h("div", {
      class: "nbb-pbar",
      role: "progressbar",
      "aria-label": s.progress,
      "aria-valuemin": 0
    });
    this.barDone = h("i", { class: "nbb-pbar-ok" });
    this.barFailed = h("i", { class: "nbb-pbar-bad" });
    this.bar.append(this.barDone, this.barFailed);
    this.stats = h("div", { class: "nbb-stats" });
    this.el = h(
      "div",
      { class: "nbb-top" },
      h(
        "div",
        { class: "nbb-toolbar", role: "toolbar", "aria-label": s.toolbar },
        h("div", { class: "nbb-group" }, this.runAll, this.pause, this.resume, this.stop),
        h("div", { class: "nbb-group" }, this.retryFailed),
        h("div", { class: "nbb-group" }, this.history),
        h("div", { class: "nbb-spring" }),
        settings
      ),
      h("div", { class: "nbb-progress" }, this.batchName, this.state, this.bar, this.stats)
    );
    this.summary = null;
    this.summaryAt = 0;
    this.ticker = setInterval(() => this.renderStats(), 1e3);
  }
  dispose() {
    clearInterval(this.ticker);
  }
  // The batch shown (History can switch it): its name, with the id for the curious.
  setBatch(batch) {
    if (!batch) return;
    setText(this.batchName, batch.name);
    setAttr(this.batchName, "title", `${batch.name} · ${batch.id}`);
  }
  update() {
    const { model, strings: s } = this.view;
    const state = model.get("run_state");
    const live = state === "running" || state === "paused" || state === "stopping";
    const failed = this.summary ? this.summary.counts.failed : 0;
    this.runAll.disabled = state === "running" || state === "stopping";
    this.pause.hidden = state === "paused";
    this.resume.hidden = state !== "paused";
    this.pause.disabled = state !== "running";
    this.stop.disabled = !live || state === "stopping";
    this.retryFailed.disabled = failed === 0;
    const c = this.summary ? this.summary.counts : null;
    const waiting = c ? (c.idle || 0) + (c.queued || 0) + (c.interrupted || 0) : 0;
    const label = (state === "finished" || state === "stopped") && waiting ? fmt(s, "state_waiting", { n: waiting }) : s[`state_${state}`] ?? state;
    setText(this.state, label);
    this.state.dataset.state = state;
    const names = model.get("providers") || [];
    const labels = model.get("provider_labels") || [];
    const current = model.get("provider_name");
    const key = names.join("\n") + "	" + labels.join("\n");
    if (this.provider.dataset.names !== key) {
      const text = (n, i) => labels[i] && labels[i] !== n ? labels[i] : n;
      this.provider.replaceChildren(...names.map((n, i) => h("option", { value: n, text: text(n, i) })));
      this.provider.dataset.names = key;
    }
    if (this.provider.value !== current) this.provider.value = current;
    this.provider.disabled = live;
    const conc = String(model.get("concurrency"));
    if (document.activeElement !== this.concurrency && this.concurrency.value !== conc) {
      this.concurrency.value = conc;
    }
  }
  setSummary(summary) {
    this.summary = summary;
    this.summaryAt = performance.now();
    this.renderStats();
    this.update();
  }
  renderStats() {
    const sum = this.summary;
    if (!sum) return;
    const s = this.view.strings;
    const total = sum.total || 0;
    const ok = sum.done - sum.counts.failed;
    const pct = (n) => total ? `${100 * n / total}%` : "0%";
    this.barDone.style.width = pct(ok);
    this.barFailed.style.width = pct(sum.counts.failed);
    setAttr(this.bar, "aria-valuemax", total);
    setAttr(this.bar, "aria-valuenow", sum.done);
    let elapsed = sum.elapsed;
    if (elapsed !== null && sum.ticking) elapsed += (performance.now() - this.summaryAt) / 1e3;
    const parts = [
      [fmt(s, "n_done", { n: sum.counts.succeeded }), "nbb-ok"],
      [fmt(s, "n_failed", { n: sum.counts.failed }), sum.counts.failed ? "nbb-bad" : ""],
      [fmt(s, "n_total", { n: total }), ""]
    ];
    if (elapsed !== null) parts.push([fmt(s, "elapsed", { t: duration(elapsed) }), ""]);
    const running = this.view.model.get("run_state") === "running";
    if (sum.eta !== null && sum.ticking && running) {
      const left = sum.eta - (performance.now() - this.summaryAt) / 1e3;
      parts.push([left < 5 ? s.eta_soon : fmt(s, "eta", { t: duration(left) }), ""]);
    }
    if (sum.ipm !== null) parts.push([fmt(s, "ipm", { n: sum.ipm }), ""]);
    const key = parts.map((p) => p.join("|")).join("/");
    if (this.stats.dataset.key === key) return;
    this.stats.dataset.key = key;
    this.stats.replaceChildren(
      ...parts.map(([text, cls]) => h("span", { class: `nbb-stat ${cls}`, text }))
    );
  }
};

// js/src/index.js
var View = class {
  constructor(model, el) {
    this.model = model;
    this.host = el;
    this.channel = new Channel(model);
    this.strings = {};
    this.root = h("div", {
      class: "nbb-root",
      "data-lm-suppress-shortcuts": "true"
      // JupyterLab / Notebook 7 leave our keys alone
    });
    el.append(this.root);
    this.channel.on("patch", (msg) => this.onPatch(msg));
    this.channel.on("notice", (msg) => this.notice(msg.text, msg.level));
    this.channel.on("reset", () => this.start());
    this.channel.on("batch", (msg) => this.toolbar && this.toolbar.setBatch(msg.batch));
    this.listeners = [];
    const watch = (name, fn) => {
      model.on(`change:${name}`, fn);
      this.listeners.push([`change:${name}`, fn]);
    };
    watch("lang", () => this.start());
    watch("selection", () => this.grid && this.grid.paintSelection());
    watch("run_state", () => {
      this.toolbar && this.toolbar.update();
      this.grid && this.grid.schedule();
    });
    for (const name of ["provider_name", "providers", "provider_labels", "concurrency"]) watch(name, () => this.toolbar && this.toolbar.update());
    this.start();
  }
  async start() {
    this.root.replaceChildren(h("div", { class: "nbb-boot", text: "…" }));
    try {
      const { msg } = await this.channel.request("hello");
      this.strings = msg.strings;
      this.build();
      this.setSummary(msg.summary);
      if (this.toolbar) this.toolbar.setBatch(msg.batch);
      if (msg.notice) this.notice(msg.notice.text, msg.notice.level);
      this.grid.requestWindow(true);
    } catch (err) {
      this.root.replaceChildren(h("div", { class: "nbb-notice nbb-error", role: "alert", text: this.words(err) }));
    }
  }
  build() {
    const s = this.strings;
    this.dispose(false);
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    this.noticeText = h("span", { class: "nbb-notice-text" });
    this.noticeBox = h(
      "div",
      { class: "nbb-notice", role: "alert", hidden: true },
      this.noticeText,
      h("button", { type: "button", class: "nbb-link", text: s.dismiss, "aria-label": s.dismiss, onclick: () => this.noticeBox.hidden = true })
    );
    this.toolbar = this.model.get("studio") ? new Toolbar(this) : null;
    this.grid = new Grid(this);
    this.root.replaceChildren(...[this.toolbar && this.toolbar.el, this.noticeBox, this.grid.el].filter(Boolean));
    if (this.toolbar) this.toolbar.update();
  }
  onPatch(msg) {
    if (!this.grid) return;
    if (msg.summary) this.setSummary(msg.summary);
    if (msg.invalidate) this.grid.invalidate();
    else if (msg.rows || msg.full) this.grid.applyPatch(msg.rows || [], msg.full || []);
  }
  setSummary(summary) {
    if (this.toolbar) this.toolbar.setSummary(summary);
    this.grid.setSummary(summary);
  }
  // A user intent: send it, show a refusal in words. Resolves either way.
  async act(type, body = {}) {
    try {
      const { msg } = await this.channel.request(type, body);
      return msg;
    } catch (err) {
      this.showError(err);
      return null;
    }
  }
  select(op, body = {}) {
    return this.act("select", { op, filter: this.grid.filter, query: this.grid.query, ...body });
  }
  words(err) {
    if (err instanceof ReplyError) return err.message;
    if (err instanceof TimeoutError) return this.strings.timeout || "The kernel did not answer in time.";
    console.error("nbbatch widget", err);
    return String(err && err.message || err);
  }
  showError(err) {
    this.notice(this.words(err), "error");
  }
  notice(text, level = "error") {
    if (!this.noticeBox) return;
    setText(this.noticeText, text);
    this.noticeBox.className = `nbb-notice nbb-${level}`;
    this.noticeBox.hidden = false;
    clearTimeout(this.noticeTimer);
    if (level !== "error") this.noticeTimer = setTimeout(() => this.noticeBox.hidden = true, 6e3);
  }
  dispose(all = true) {
    if (this.toolbar) this.toolbar.dispose();
    if (this.grid) this.grid.dispose();
    this.toolbar = null;
    this.grid = null;
    if (all) {
      for (const [event, fn] of this.listeners) this.model.off(event, fn);
      this.channel.dispose();
      this.root.remove();
    }
  }
};
var index_default = {
  render({ model, el }) {
    const view = new View(model, el);
    return () => view.dispose();
  }
};
export {
  index_default as default
};
