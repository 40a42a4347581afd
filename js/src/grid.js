// @ts-check
import { fetchZip, saveBlob, size } from "./shared/download.js";
import { icons } from "./shared/icons.js";
import { fmt, h, setAttr, setText } from "./shared/util.js";

// A virtualised task grid: fixed-height rows over a spacer as tall as all rows, a pool of
// row nodes reused while scrolling (a node keeps its index while that index is visible,
// so keyboard focus survives scrolling), and one debounced request for the rows and
// thumbnails of the window. Python owns the rows; this keeps a cache of what it was sent.

export const ROW_H = 64;
const OVERSCAN = 6;
const FETCH_EXTRA = 20;
const THUMB_CACHE = 800;
const KEEP_ROWS = 800;

/** @typedef {import("./types.js").Row} Row */
/** @typedef {Row & {_i?: number, _stale?: boolean}} CachedRow a row and its place in the view */
/** @typedef {import("./types.js").PatchRow} PatchRow */
/** @typedef {import("./types.js").RowsReply} RowsReply */
/** @typedef {import("./types.js").StatusSets} StatusSets */

export class Grid {
  /** @param {any} view the widget view: strings, statuses (sent by the kernel), channel, model */
  constructor(view) {
    this.view = view;
    /** @type {StatusSets} */
    const sets = view.statuses;
    this.statuses = sets.all;
    this.editable = new Set(sets.editable);
    this.retryable = new Set(sets.retryable);
    this.filter = "all";
    this.query = "";
    this.total = null; // rows in the current view; null until the first reply
    this.rows = new Map(); // index -> row
    this.stale = new Map(); // rows of the previous view generation, shown until replaced
    this.byId = new Map(); // id -> row
    this.generation = 0;
    this.nodes = new Map(); // index -> node
    this.free = [];
    this.focusIndex = 0;
    this.anchorId = null;
    this.editing = null; // {id, draft}
    this.expanded = null; // id of the row whose full error is open
    this.thumbs = new Map(); // key -> object URL | null (failed)
    this.thumbWanted = new Set();
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
    this.chips = new Map();
    const chipBar = h("div", { class: "nbb-chips", role: "group", "aria-label": s.filters });
    // "starred": tasks with a starred image (starring in the gallery keeps it live)
    for (const st of ["all", "starred", ...this.statuses]) {
      const label = st === "all" ? s.filter_all : st === "starred" ? s.filter_starred : fmt(s, `st_${st}`, { pct: "" }).replace(/\s*%$/, "");
      const count = h("span", { class: "nbb-chip-n" });
      const chip = h(
        "button",
        {
          type: "button",
          class: `nbb-fchip nbb-f-${st}`,
          "aria-pressed": st === "all" ? "true" : "false",
          onclick: () => this.setFilter(st),
        },
        h("span", { text: label }),
        count,
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
      },
    });
    const bulk = (key, icon, action, cls = "") =>
      h("button", {
        type: "button",
        class: `nbb-btn nbb-small ${cls}`,
        "aria-label": s[key],
        title: s[key],
        onclick: () => this.view.act(action),
        html: `${icons[icon]}<span>${s[key]}</span>`,
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
      html: `${icons.download}<span>${s.download_selected}</span>`,
    });
    this.clearSel = h("button", {
      type: "button",
      class: "nbb-link",
      text: s.clear_selection,
      onclick: () => this.view.select("none"),
    });
    this.bulk = h("div", { class: "nbb-bulk", hidden: true }, this.selInfo, this.clearSel, this.bulkZip, this.bulkRetry, this.bulkNext, this.bulkDelete);
    const filters = h(
      "div",
      { class: "nbb-filterbar" },
      h("label", { class: "nbb-searchbox" }, h("span", { html: icons.search }), this.search),
      chipBar,
      h("div", { class: "nbb-spring" }),
      this.bulk,
    );

    this.selectAll = h("input", {
      type: "checkbox",
      class: "nbb-check",
      "aria-label": s.select_all,
      onclick: (e) => {
        e.preventDefault();
        this.view.select(this.allSelected() ? "none" : "all");
      },
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
      col("nbb-c-actions", s.col_actions),
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
        "aria-rowcount": 1,
      },
      this.head,
      this.viewport,
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
      e.stopPropagation(); // the grid's own keys (arrows, Space, Delete) stay out of the text
      if (e.isComposing || e.keyCode === 229) return; // an IME (e.g. pinyin) is composing
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
    // Keep showing the old rows until the new ones arrive (no flash while running).
    for (const [i, row] of this.rows) this.stale.set(i, row);
    this.rows = new Map();
    this.generation += 1;
    // With the old total (0 for a batch that starts empty) the window is empty, so
    // nothing would look missing and the new rows would never be asked for.
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
    this.rows = new Map();
    this.stale = new Map();
    this.generation += 1;
    this.viewport.scrollTop = 0;
    this.focusIndex = 0;
    // the old view's total may be 0 (an empty filter): ask even though nothing looks missing
    this.invalid = true;
    this.requestWindow(true);
  }

  /** @param {PatchRow[]} rows status patches @param {CachedRow[]} whole rows sent whole */
  applyPatch(rows, whole) {
    let refetch = false;
    for (const row of whole) {
      const old = this.byId.get(row.id);
      if (!old || old._i === undefined) continue;
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
    // The reference column only takes room in batches that have reference images.
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
    // Rows on screen that only went stale (a task finished): fetch just their span.
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
        query: this.query,
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
        delete node.dataset.taskId; // a parked node must not answer for a task
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
        html: icons[icon],
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
      // where a task at a provider's batch API is ("in progress at OpenAI"), under the badge
      where: h("span", { class: "nbb-where", hidden: true }),
      error: h("button", { type: "button", class: "nbb-err", tabindex: -1 }),
      results: h("div", { class: "nbb-thumbs" }),
      edit: btn("edit", "edit", "edit"),
      save: btn("save", "save", "save", "nbb-accent"),
      cancel: btn("cancel_edit", "cancel", "cancel_edit"),
      retry: btn("retry", "retry", "retry"),
      stopTask: btn("cancel_task", "stop", "cancel", "nbb-danger"),
      next: btn("run_next", "next", "run_next"),
      duplicate: btn("duplicate", "duplicate", "duplicate"),
      remove: btn("delete", "trash", "delete", "nbb-danger"),
    };
    parts.error.dataset.action = "expand";
    parts.parent.dataset.action = "open_parent";
    parts.prompt = h("div", { role: "gridcell", class: "nbb-cell nbb-c-prompt" }, parts.text, h("div", { class: "nbb-pmeta" }, parts.chip, parts.neg));
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
        parts.where,
        parts.error,
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
        parts.remove,
      ),
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
    // prompt or editor
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
    // status
    // running with no progress reported: sent and waiting for the server's answer
    const waiting = row.st === "running" && row.pc == null;
    const pct = row.pc ?? 0;
    setText(p.badge, waiting ? s.st_waiting : fmt(s, `st_${row.st}`, { pct }));
    p.badge.className = `nbb-badge nbb-st-${row.st}`;
    // A task sent to a provider's batch API says where it is ("queued at OpenAI") in
    // place of a progress bar (the provider reports none per request): up to two lines
    // in its cell, never over the row's buttons; the whole text on hover.
    const remote = row.st === "running" && row.ek === "batch_api" ? row.er || "" : "";
    p.bar.hidden = row.st !== "running" || waiting || !!remote;
    p.bar.firstChild.style.width = `${pct}%`;
    p.where.hidden = !remote;
    setText(p.where, remote);
    setAttr(p.where, "title", remote || null);
    setText(p.attempts, !remote && (row.at > 1 || (row.at === 1 && row.st === "failed")) ? fmt(s, "attempt", { n: row.at }) : "");
    const err = row.st === "failed" || row.st === "interrupted" ? row.er || "" : "";
    p.error.hidden = !err;
    setText(p.error, err);
    setAttr(p.error, "aria-label", err ? `${s.show_error}: ${err.slice(0, 200)}` : null);
    setAttr(p.error, "aria-expanded", err ? String(this.expanded === row.id) : null);
    // thumbnails
    // a task made from an image (Edit image) shows that image as a link to its parent
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
    // actions
    const live = ["running", "paused", "stopping"].includes(this.view.model.get("run_state"));
    p.edit.hidden = !!editing;
    p.save.hidden = !editing;
    p.cancel.hidden = !editing;
    p.edit.disabled = !this.editable.has(row.st);
    p.retry.disabled = !this.retryable.has(row.st);
    // while the run holds a task, its Retry slot offers to cancel it instead
    const cancellable = live && (row.st === "running" || row.st === "queued");
    p.stopTask.hidden = !cancellable;
    p.retry.hidden = cancellable;
    p.next.disabled = !(row.st === "queued" && live);
    p.remove.disabled = row.st === "running";
    const inRow = focused ? 0 : -1;
    for (const b of [p.parent, p.edit, p.save, p.cancel, p.retry, p.stopTask, p.next, p.duplicate, p.remove]) setAttr(b, "tabindex", inRow);
  }

  paintThumbs(box, keys, count, label) {
    const want = `${keys.join(",")}|${count}`;
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
        img.alt = img.dataset.label; // no alt text while loading: no broken-image glyph
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
    // Bulk actions appear with a selection, so the bar stays one calm line without one.
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
    if (!row?.er || row._i === undefined) {
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
        h("button", {
          type: "button",
          class: "nbb-link",
          text: s.hide_error,
          onclick: () => {
            this.expanded = null;
            this.schedule();
          },
        }),
      );
    }
  }

  // ---------------------------------------------------------------- thumbnails
  requestThumbs(from, to) {
    const keys = [];
    for (let i = from; i < to; i++) {
      const row = this.rowAt(i);
      if (!row) continue;
      for (const key of [...(row.rf || []), ...(row.im || []), ...(row.pa ? [row.pa.k] : [])]) {
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
    const visible = new Set();
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
      // a result thumbnail opens that image in the gallery
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
    if (node && e.target.closest(".nbb-ptext") && this.editable.has(node._row.st)) this.startEdit(node._row);
  }

  // A studio shown twice has two gallery views: name the one in this studio's own box
  // (never searched for beyond it). Without one (a grid alone) the kernel opens the view
  // used last, else the one shown last.
  openGallery(id, index) {
    const mark = this.el.closest(".nbb-studio-box")?.querySelector("[data-nbb-gallery-view]");
    const view = mark instanceof HTMLElement ? mark.dataset.nbbGalleryView : undefined;
    return this.view.act("open_gallery", view ? { id, index, view } : { id, index });
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
    if (!this.editable.has(row.st)) return;
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
        const target = this.rowAt(this.focusIndex);
        if (target) this.view.select("range", { id: target.id, anchor: this.anchorId });
      }
      return;
    }
    if (!row || target !== node) return; // buttons inside the row handle Space/Enter
    if (key === " ") {
      e.preventDefault();
      this.view.select("toggle", { id: row.id });
      this.anchorId = row.id;
    } else if (key === "Enter" && row.st === "succeeded") {
      e.preventDefault(); // a done task cannot be edited: Enter shows its results
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
}
