// @ts-check
import { AbortError, Channel, errorWords } from "../shared/channel.js";
import { duration, fmt, h, setText, widgetOf } from "../shared/util.js";

// The History panel: the past batches of the workspace and per-provider stats. In a
// studio it lives in a modal <dialog> (opened by the toolbar's History button); alone it
// is shown in the cell. Python holds the truth: the page asks for the list when it shows
// it, for each row's thumbnails only when the row scrolls into view, and for the stats
// when their tab is chosen. Thumbnails are object URLs revoked when the list is redrawn
// or the dialog closes.

/** @typedef {import("../shared/util.js").Model} Model */

/**
 * One past batch (`list`).
 * @typedef {object} BatchRow
 * @property {string} id
 * @property {string} name
 * @property {number} created_at epoch seconds
 * @property {string | null} provider
 * @property {string} status the batch's: "succeeded", "interrupted", "incomplete", "new", ...
 * @property {number} total tasks
 * @property {Record<string, number>} counts tasks per status
 * @property {number} images
 * @property {number | null} success_rate
 * @property {number | null} mean_duration seconds
 * @property {number} resumable tasks a resume would send
 */

/**
 * What one provider did across the workspace (`stats`).
 * @typedef {object} StatRow
 * @property {string} provider
 * @property {number} batches
 * @property {number} tasks
 * @property {number} succeeded
 * @property {number} failed
 * @property {number | null} success_rate
 * @property {number | null} mean_duration
 * @property {number | null} p90_duration
 * @property {number} images
 * @property {number | null} images_per_batch
 * @property {number | null} tokens
 * @property {number | null} spend
 * @property {number} unpriced_images
 * @property {number} billed_images
 */

/**
 * A row's parts that change without redrawing it (paintRows).
 * @typedef {object} RowParts
 * @property {HTMLTableRowElement} tr
 * @property {HTMLButtonElement} open
 * @property {HTMLButtonElement} resume
 * @property {HTMLButtonElement} retry
 * @property {HTMLButtonElement} del
 * @property {HTMLSpanElement} here
 */

/** @typedef {"batches" | "stats"} Tab */

/** ms without an answer to the list before it is asked again (see askList) */
const LIST_AGAIN_MS = 8000;

/** @type {Record<string, string>} */
const STATUS_CLASS = {
  succeeded: "ok",
  failed: "bad",
  interrupted: "warn",
  incomplete: "warn",
  running: "live",
  new: "",
  cancelled: "",
  empty: "",
};

/** @param {number | null | undefined} rate */
function pct(rate) {
  return rate === null || rate === undefined ? "–" : `${Math.round(rate * 100)}%`;
}

/** @param {number | null | undefined} value */
function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 0.1) return "< 0.1 s";
  if (value < 10) return `${value.toFixed(1)} s`;
  if (value < 60) return `${Math.round(value)} s`;
  return duration(value);
}

class HistoryView {
  /** @param {Model} model @param {HTMLElement} el */
  constructor(model, el) {
    this.model = model;
    this.channel = new Channel(model);
    /** @type {Record<string, string>} */
    this.strings = {};
    /** @type {BatchRow[]} */
    this.rows = [];
    /** @type {Map<string, string[]>} */
    this.urls = new Map(); // batch id -> [object URLs]
    /** @type {Set<string>} */
    this.asked = new Set(); // batch ids whose thumbnails were requested
    // thumbnails asked for and no longer wanted (the dialog closed, the list was redrawn)
    // are abandoned: the kernel does not make what nobody will show
    this.thumbAbort = new AbortController();
    /** @type {Tab} */
    this.tab = "batches";
    this.stale = true;
    /** @type {HTMLDivElement} */
    this.root = h("div", { class: "nbb-hist", "data-lm-suppress-shortcuts": "true" });
    el.append(this.root);
    this.channel.on("changed", () => {
      this.stale = true;
      if (this.visible()) this.refresh();
    });
    /** @type {[string, () => void][]} */
    this.listeners = [];
    /** @param {string} name @param {() => void} fn */
    const watch = (name, fn) => {
      model.on(`change:${name}`, fn);
      this.listeners.push([`change:${name}`, fn]);
    };
    watch("opened", () => {
      if (this.dialog) this.openDialog();
      else this.pendingOpen = true; // opened before the dialog was built
    });
    watch("lang", () => this.start());
    watch("current", () => this.paintRows());
    watch("live", () => this.paintRows());
    this.start();
  }

  async start() {
    this.root.replaceChildren();
    try {
      const { msg } = /** @type {import("../shared/channel.js").Answer<{strings: Record<string, string>, studio: boolean}>} */ (
        await this.channel.request("hello")
      );
      this.strings = msg.strings;
      /** @type {boolean | undefined} in a studio: a modal dialog; alone: shown in the cell */
      this.inStudio = msg.studio;
      this.build();
      if (!this.inStudio) this.refresh();
      if (this.pendingOpen) {
        this.pendingOpen = false;
        this.openDialog();
      }
    } catch (err) {
      this.root.replaceChildren(h("div", { class: "nbb-h-error", role: "alert", text: this.words(err) }));
    }
  }

  visible() {
    return this.dialog ? this.dialog.open : Boolean(this.panel);
  }

  // ---------------------------------------------------------------- building
  // The parts built here (fields typed `X | undefined` by tsc, as they are not set in the
  // constructor) exist before any event or reply that uses them: start() builds before it
  // asks for the list, and every other request starts from a control built here.
  build() {
    const s = this.strings;
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    /** @type {(key: string, tab: Tab) => HTMLButtonElement} */
    const tabBtn = (key, tab) =>
      h("button", {
        type: "button",
        role: "tab",
        class: "nbb-h-tab",
        id: `nbb-h-tab-${tab}-${Math.random().toString(36).slice(2, 8)}`,
        "aria-selected": tab === this.tab ? "true" : "false",
        text: s[key],
        onclick: () => this.setTab(tab),
        onkeydown: (/** @type {KeyboardEvent} */ e) => {
          if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
            e.preventDefault();
            this.setTab(tab === "batches" ? "stats" : "batches", true);
          }
        },
      });
    this.tabBatches = tabBtn("hist_tab_batches", "batches");
    this.tabStats = tabBtn("hist_tab_stats", "stats");
    /** @type {HTMLHeadingElement | undefined} */
    this.title = h("h2", { class: "nbb-h-title", text: s.history });
    /** @type {HTMLSpanElement | undefined} */
    this.count = h("span", { class: "nbb-h-count" });
    this.search = /** @type {HTMLInputElement} */ (
      h("input", {
        type: "search",
        class: "nbb-h-search",
        placeholder: s.hist_search,
        "aria-label": s.hist_search,
        oninput: () => this.applyFilter(),
      })
    );
    this.search.addEventListener("keydown", (e) => {
      e.stopPropagation(); // typing stays in the box
      if (e.key === "Escape" && /** @type {HTMLInputElement} */ (this.search).value) {
        e.preventDefault(); // clears the search, not the dialog
        /** @type {HTMLInputElement} */ (this.search).value = "";
        this.applyFilter();
      }
    });
    /** @type {HTMLButtonElement | undefined} */
    this.refreshBtn = h("button", { type: "button", class: "nbb-hbtn", text: s.hist_refresh, onclick: () => this.refresh() });
    // shown only in a studio, where the dialog is built below
    /** @type {HTMLButtonElement | undefined} */
    this.closeBtn = h("button", {
      type: "button",
      class: "nbb-hbtn",
      text: s.hist_close,
      "aria-label": s.hist_close,
      onclick: () => /** @type {HTMLDialogElement} */ (this.dialog).close(),
    });
    const head = h(
      "header",
      { class: "nbb-h-head" },
      this.title,
      this.count,
      h("div", { class: "nbb-h-tabs", role: "tablist", "aria-label": s.history }, this.tabBatches, this.tabStats),
      h("span", { class: "nbb-h-spring" }),
      this.search,
      this.refreshBtn,
      this.inStudio ? this.closeBtn : null,
    );
    /** @type {HTMLDivElement | undefined} */
    this.status = h("div", { class: "nbb-h-status", role: "status", "aria-live": "polite" });
    /** @type {HTMLTableSectionElement | undefined} */
    this.tbody = h("tbody");
    const th = (/** @type {string} */ key, cls = "") => h("th", { scope: "col", class: cls, text: s[key] });
    /** @type {HTMLTableElement | undefined} */
    this.table = h(
      "table",
      { class: "nbb-h-table", "aria-label": s.hist_rows_label },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          th("hist_col_name"),
          th("hist_col_created", "nbb-h-date"),
          th("hist_col_provider"),
          th("hist_col_tasks", "nbb-h-num"),
          th("hist_col_success", "nbb-h-num"),
          th("hist_col_duration", "nbb-h-num"),
          th("hist_col_images", "nbb-h-num"),
          th("hist_col_preview", "nbb-h-previewcell"),
          th("hist_col_actions"),
        ),
      ),
      this.tbody,
    );
    /** @type {HTMLDivElement | undefined} */
    this.empty = h("div", { class: "nbb-h-empty", hidden: true, text: s.hist_empty });
    /** @type {HTMLDivElement | undefined} */
    this.scroller = h("div", { class: "nbb-h-scroll" }, this.table, this.empty);
    /** @type {HTMLDivElement | undefined} */
    this.batchesPane = h("div", { class: "nbb-h-pane", role: "tabpanel", "aria-labelledby": this.tabBatches.id }, this.scroller);
    /** @type {HTMLDivElement | undefined} */
    this.statsBody = h("div", { class: "nbb-h-scroll" });
    /** @type {HTMLDivElement | undefined} */
    this.statsPane = h("div", { class: "nbb-h-pane", role: "tabpanel", "aria-labelledby": this.tabStats.id, hidden: true }, this.statsBody);
    this.panel = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-h-panel" }, head, this.status, this.batchesPane, this.statsPane));
    this.observer = new IntersectionObserver((entries) => this.onVisible(entries), { root: this.scroller, rootMargin: "200px 0px" });
    if (this.inStudio) {
      this.dialog = /** @type {HTMLDialogElement} */ (
        h("dialog", { class: "nbb-h-dialog", "aria-label": s.history, "data-lm-suppress-shortcuts": "true" }, this.panel)
      );
      this.dialog.addEventListener("close", () => this.onClose());
      this.dialog.addEventListener("click", (e) => {
        if (e.target === this.dialog) /** @type {HTMLDialogElement} */ (this.dialog).close();
      });
      this.root.replaceChildren(this.dialog);
    } else {
      this.panel.classList.add("nbb-h-inline");
      this.root.replaceChildren(this.panel);
    }
  }

  /** @param {Tab} tab @param {boolean} [focus] */
  setTab(tab, focus = false) {
    this.tab = tab;
    /** @type {HTMLButtonElement} */ (this.tabBatches).setAttribute("aria-selected", tab === "batches" ? "true" : "false");
    /** @type {HTMLButtonElement} */ (this.tabStats).setAttribute("aria-selected", tab === "stats" ? "true" : "false");
    /** @type {HTMLButtonElement} */ (this.tabBatches).tabIndex = tab === "batches" ? 0 : -1;
    /** @type {HTMLButtonElement} */ (this.tabStats).tabIndex = tab === "stats" ? 0 : -1;
    /** @type {HTMLDivElement} */ (this.batchesPane).hidden = tab !== "batches";
    /** @type {HTMLDivElement} */ (this.statsPane).hidden = tab !== "stats";
    if (focus) /** @type {HTMLButtonElement} */ (tab === "batches" ? this.tabBatches : this.tabStats).focus();
    if (tab === "stats") this.loadStats();
  }

  openDialog() {
    if (!this.dialog) return;
    if (!this.dialog.open) this.dialog.showModal();
    this.say("");
    this.refresh();
  }

  onClose() {
    this.dropThumbs();
    this.cancelEdits();
  }

  // ---------------------------------------------------------------- the list
  async refresh() {
    if (this.tab === "stats") this.loadStats();
    // A kernel that has just started (or is busy) can take seconds: say so rather than
    // show an empty table that looks like "no batches" (without hiding a message such as
    // "Deleted …", which a refresh follows).
    const loading = this.strings.hist_loading;
    if (!this.status?.textContent) this.say(loading, "info");
    /** @type {{rows: BatchRow[]} | null} */
    const msg = await this.askList();
    if (!msg) return;
    if (this.status?.textContent === loading) this.say("");
    this.stale = false;
    this.rows = msg.rows;
    this.dropThumbs();
    this.renderRows();
  }

  // The list, asked again once if no answer came within LIST_AGAIN_MS: in CI a freshly
  // started, loaded kernel has now and then left the first request of a new History
  // unanswered (cause not found); the first answer of the two is used.
  /** @returns {Promise<{rows: BatchRow[]} | null>} */
  askList() {
    const first = this.ask("list");
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const again = new Promise((resolve) => {
      timer = setTimeout(() => resolve(this.ask("list")), LIST_AGAIN_MS);
    });
    return Promise.race([first, again]).finally(() => clearTimeout(timer));
  }

  renderRows() {
    const _s = this.strings;
    /** @type {HTMLTableElement} */ (this.table).hidden = this.rows.length === 0;
    /** @type {Map<string, RowParts> | undefined} */
    this.rowEls = new Map();
    /** @type {HTMLTableSectionElement} */ (this.tbody).replaceChildren(...this.rows.map((row) => this.rowEl(row)));
    this.paintRows();
    this.applyFilter();
  }

  // Name, id or provider containing what was typed (the list itself is all in the page).
  applyFilter() {
    if (!this.rowEls) return;
    const needle = /** @type {HTMLInputElement} */ (this.search).value.trim().toLocaleLowerCase();
    let shown = 0;
    for (const row of this.rows) {
      const el = this.rowEls.get(row.id);
      if (!el) continue;
      const hay = `${row.name}\n${row.id}\n${row.provider || ""}`.toLocaleLowerCase();
      el.tr.hidden = Boolean(needle) && !hay.includes(needle);
      if (!el.tr.hidden) shown += 1;
    }
    const s = this.strings;
    const n = this.rows.length;
    const one = n === 1 ? "_one" : "";
    setText(/** @type {HTMLSpanElement} */ (this.count), needle ? fmt(s, `hist_found${one}`, { shown, n }) : fmt(s, `hist_summary${one}`, { n }));
    /** @type {HTMLDivElement} */ (this.empty).hidden = shown > 0;
    setText(/** @type {HTMLDivElement} */ (this.empty), n ? s.hist_no_match : s.hist_empty);
  }

  /** @param {BatchRow} row @returns {HTMLTableRowElement} */
  rowEl(row) {
    const s = this.strings;
    const c = row.counts;
    const done = c.succeeded || 0;
    const failed = c.failed || 0;
    const interrupted = (c.interrupted || 0) + (c.queued || 0);
    const badge = h("span", {
      class: `nbb-h-badge nbb-h-${STATUS_CLASS[row.status] ?? ""}`,
      text: s[`hist_st_${row.status}`] ?? row.status,
    });
    const nameText = h("span", { class: "nbb-h-name", text: row.name, title: row.name });
    /** @type {HTMLSpanElement} */
    const here = h("span", { class: "nbb-h-here", text: s.hist_current, hidden: true });
    const nameCell = h(
      "td",
      { class: "nbb-h-namecell" },
      h("div", { class: "nbb-h-nameline" }, nameText, here),
      h("div", { class: "nbb-h-sub" }, badge, h("span", { class: "nbb-h-id", text: row.id })),
    );
    const tasks = [fmt(s, "hist_counts", { done, total: row.total })];
    if (failed) tasks.push(fmt(s, "hist_failed_n", { n: failed }));
    if (interrupted) tasks.push(fmt(s, "hist_interrupted_n", { n: interrupted }));
    const created = new Date(row.created_at * 1000);
    /** @type {HTMLDivElement} */
    const strip = h("div", { class: "nbb-h-strip", role: "group", "aria-label": fmt(s, "hist_thumbs_label", { name: row.name }) });
    strip.dataset.id = row.id;
    strip.dataset.images = String(row.images);
    /** @type {(key: string, cls: string, onclick: () => void, label?: string) => HTMLButtonElement} */
    const btn = (key, cls, onclick, label) =>
      h("button", { type: "button", class: `nbb-hbtn ${cls}`, text: s[key], "aria-label": label || `${s[key]} · ${row.name}`, onclick });
    const open = btn("hist_open", "nbb-primary", () => this.through("open", row));
    const resume = btn("hist_resume", "", () => this.through("resume", row));
    const retry = btn("hist_retry", "", () => this.through("retry_failed", row));
    const rename = btn("hist_rename", "", () => this.startRename(row, nameCell));
    const del = btn("hist_delete", "nbb-h-danger", () => this.confirmDelete(row, actions));
    resume.hidden = !(row.status === "interrupted" || row.status === "incomplete");
    retry.hidden = !failed;
    const studioOnly = [open, resume, retry];
    if (!this.inStudio) for (const b of studioOnly) b.hidden = true;
    // what runs on top; what changes the record below, smaller
    /** @type {HTMLTableCellElement} */
    const actions = h(
      "td",
      { class: "nbb-h-actions" },
      h("div", { class: "nbb-h-btns" }, open, resume, retry),
      h("div", { class: "nbb-h-btns nbb-h-minor" }, rename, del),
    );
    /** @type {HTMLTableRowElement} */
    const tr = h(
      "tr",
      { "data-id": row.id, "data-status": row.status },
      nameCell,
      h("td", { class: "nbb-h-date" }, h("time", { datetime: created.toISOString(), title: created.toLocaleString(this.locale()), text: this.when(created) })),
      h("td", { class: "nbb-h-prov", text: row.provider || "–" }),
      h("td", { class: "nbb-h-num" }, ...tasks.map((t, i) => h("div", { class: i ? "nbb-h-sub" : "", text: t }))),
      h("td", { class: "nbb-h-num", text: pct(row.success_rate) }),
      h("td", { class: "nbb-h-num", text: seconds(row.mean_duration) }),
      h("td", { class: "nbb-h-num", text: String(row.images) }),
      h("td", { class: "nbb-h-previewcell" }, strip),
      actions,
    );
    // rows are drawn by renderRows, which makes rowEls first
    /** @type {Map<string, RowParts>} */ (this.rowEls).set(row.id, { tr, open, resume, retry, del, here });
    if (row.images) /** @type {IntersectionObserver} */ (this.observer).observe(strip);
    return tr;
  }

  // What depends on the studio (which batch it shows, whether it runs), not on the row.
  paintRows() {
    if (!this.rowEls) return;
    const current = this.model.get("current");
    const live = this.model.get("live");
    const s = this.strings;
    for (const [id, el] of this.rowEls) {
      const mine = id === current;
      el.tr.classList.toggle("nbb-h-current", mine);
      el.here.hidden = !mine;
      el.open.disabled = mine || live;
      el.resume.disabled = live && !mine;
      el.retry.disabled = live && !mine;
      el.del.disabled = mine;
      el.del.title = mine ? s.hist_delete_open : "";
      el.open.title = live && !mine ? s.hist_busy : "";
    }
  }

  locale() {
    return this.model.get("lang") === "zh" ? "zh-CN" : undefined;
  }

  // Short: "Dec 2, 14:05" this year, with the year otherwise (the full stamp is its title).
  /** @param {Date} date */
  when(date) {
    /** @type {Intl.DateTimeFormatOptions} */
    const options = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
    if (date.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
    return date.toLocaleString(this.locale(), options);
  }

  // ---------------------------------------------------------------- thumbnails
  /** @param {IntersectionObserverEntry[]} entries */
  onVisible(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const strip = /** @type {HTMLDivElement} */ (entry.target); // rowEl observes only its strips
      /** @type {IntersectionObserver} */ (this.observer).unobserve(strip);
      this.loadThumbs(strip);
    }
  }

  /** @param {HTMLDivElement} strip */
  async loadThumbs(strip) {
    const id = /** @type {string} */ (strip.dataset.id); // rowEl sets it
    if (this.asked.has(id)) return;
    this.asked.add(id);
    /** @type {import("../shared/channel.js").Answer<{id: string, count: number}> | null} */
    const reply = await this.ask("thumbs", { id }, true, this.thumbAbort.signal);
    if (!reply || !strip.isConnected) return;
    // message buffers are plain ArrayBuffers, never shared memory (as bytesOf says)
    const urls = reply.buffers.map((b) => URL.createObjectURL(new Blob([/** @type {DataView<ArrayBuffer>} */ (b)], { type: "image/webp" })));
    this.urls.set(id, urls);
    strip.replaceChildren(...urls.map((url) => h("img", { src: url, alt: "", width: 40, height: 40, loading: "lazy" })));
    const more = Number(strip.dataset.images) - urls.length;
    if (more > 0) strip.append(h("span", { class: "nbb-h-more", text: fmt(this.strings, "hist_more", { n: more }) }));
  }

  dropThumbs() {
    this.thumbAbort.abort();
    this.thumbAbort = new AbortController();
    for (const urls of this.urls.values()) for (const url of urls) URL.revokeObjectURL(url);
    this.urls.clear();
    this.asked.clear();
    if (this.observer) this.observer.disconnect();
  }

  // ---------------------------------------------------------------- actions
  /** @param {"open" | "resume" | "retry_failed"} type @param {BatchRow} row */
  async through(type, row) {
    const s = this.strings;
    const msg = await this.ask(type, { id: row.id });
    if (!msg) return;
    const key = type === "open" ? "hist_opened" : type === "resume" ? "hist_resumed" : "hist_retrying";
    if (this.dialog?.open) this.dialog.close();
    this.say(fmt(s, key, { name: row.name }), "info");
  }

  /** @param {BatchRow} row @param {HTMLTableCellElement} cell its name cell */
  startRename(row, cell) {
    const s = this.strings;
    this.cancelEdits();
    /** @type {HTMLInputElement} */
    const input = h("input", {
      type: "text",
      class: "nbb-h-input",
      value: row.name,
      maxlength: 200,
      "aria-label": fmt(s, "hist_rename_label", { name: row.name }),
    });
    const save = async () => {
      /** @type {{id: string, name: string} | null} */
      const msg = await this.ask("rename", { id: row.id, name: input.value });
      if (!msg) return;
      row.name = msg.name;
      this.editing = null;
      this.say(fmt(s, "hist_renamed", { name: msg.name }), "info");
      this.replaceRow(row);
    };
    const cancel = () => {
      this.editing = null;
      this.replaceRow(row);
    };
    input.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.isComposing || e.keyCode === 229) return;
      if (e.key === "Enter") {
        e.preventDefault();
        save();
      } else if (e.key === "Escape") {
        e.preventDefault(); // cancels the rename, not the dialog
        cancel();
      }
    });
    /** @type {(() => void) | null | undefined} puts back the row an edit replaced */
    this.editing = cancel;
    cell.replaceChildren(
      h(
        "div",
        { class: "nbb-h-edit" },
        input,
        h("button", { type: "button", class: "nbb-hbtn nbb-primary", text: s.hist_save, onclick: save }),
        h("button", { type: "button", class: "nbb-hbtn", text: s.hist_cancel, onclick: cancel }),
      ),
    );
    input.focus();
    input.select();
  }

  /** @param {BatchRow} row @param {HTMLTableCellElement} cell its actions cell */
  confirmDelete(row, cell) {
    const s = this.strings;
    this.cancelEdits();
    const cancel = () => {
      this.editing = null;
      this.replaceRow(row);
    };
    /** @type {HTMLButtonElement} */
    const yes = h("button", {
      type: "button",
      class: "nbb-hbtn nbb-h-danger-solid",
      text: s.hist_confirm_yes,
      onclick: async () => {
        /** @type {{id: string, files: number} | null} */
        const msg = await this.ask("delete", { id: row.id });
        if (!msg) return;
        this.editing = null;
        this.say(fmt(s, "hist_deleted", { name: row.name, files: msg.files }), "info");
        this.refresh();
      },
    });
    /** @type {HTMLButtonElement} */
    const no = h("button", { type: "button", class: "nbb-hbtn", text: s.hist_cancel, onclick: cancel });
    /** @type {HTMLDivElement} */
    const box = h(
      "div",
      { class: "nbb-h-confirm", role: "alertdialog", "aria-label": s.hist_confirm_title },
      h("div", { class: "nbb-h-confirm-text", text: fmt(s, "hist_confirm_delete", { name: row.name, n: row.total }) }),
      h("div", { class: "nbb-h-btns" }, yes, no),
    );
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        cancel();
      }
    });
    this.editing = cancel;
    cell.replaceChildren(box);
    no.focus();
  }

  cancelEdits() {
    if (this.editing) this.editing();
    this.editing = null;
  }

  /** @param {BatchRow} row */
  replaceRow(row) {
    const old = /** @type {Map<string, RowParts>} */ (this.rowEls).get(row.id); // a row drawn: rowEls made
    if (!old) return;
    const urls = this.urls.get(row.id);
    const fresh = this.rowEl(row);
    old.tr.replaceWith(fresh);
    if (urls) {
      // the thumbnails stay: put the same images in the new strip
      const strip = /** @type {HTMLDivElement} */ (fresh.querySelector(".nbb-h-strip"));
      /** @type {IntersectionObserver} */ (this.observer).unobserve(strip);
      strip.replaceChildren(...urls.map((url) => h("img", { src: url, alt: "", width: 40, height: 40 })));
    }
    this.paintRows();
    const again = /** @type {Map<string, RowParts>} */ (this.rowEls).get(row.id);
    if (again) again.open.hidden ? /** @type {HTMLButtonElement | null} */ (again.tr.querySelector("button:not([hidden])"))?.focus() : again.open.focus();
  }

  // ---------------------------------------------------------------- stats
  async loadStats() {
    const s = this.strings;
    /** @type {{rows: StatRow[], prices: Record<string, number>} | null} */
    const msg = await this.ask("stats");
    if (!msg) return;
    if (!msg.rows.length) {
      /** @type {HTMLDivElement} */ (this.statsBody).replaceChildren(h("div", { class: "nbb-h-empty", text: s.hist_stats_empty }));
      return;
    }
    const th = (/** @type {string} */ key) => h("th", { scope: "col", class: key === "hist_stat_provider" ? "" : "nbb-h-num", text: s[key] });
    const cols = [
      "hist_stat_provider",
      "hist_stat_batches",
      "hist_stat_tasks",
      "hist_stat_success",
      "hist_stat_mean",
      "hist_stat_p90",
      "hist_stat_images",
      "hist_stat_ipb",
      "hist_stat_tokens",
      "hist_stat_price",
      "hist_stat_spend",
    ];
    const body = msg.rows.map((r) => {
      const price = msg.prices[r.provider];
      /** @type {HTMLInputElement} */
      const input = h("input", {
        type: "number",
        class: "nbb-h-price",
        min: 0,
        step: "any",
        value: price === undefined ? "" : String(price),
        placeholder: "–",
        "aria-label": fmt(s, "hist_price_label", { name: r.provider }),
      });
      input.addEventListener("keydown", (e) => e.stopPropagation());
      input.addEventListener("change", async () => {
        const raw = input.value.trim();
        const value = raw === "" ? null : Number(raw);
        const ok = await this.ask("set_price", { provider: r.provider, price: value });
        if (ok) {
          this.say(fmt(s, "hist_price_saved", { name: r.provider }), "info");
          this.loadStats();
        }
      });
      const spend = r.spend === null ? "–" : r.spend.toFixed(2);
      /** @type {HTMLTableCellElement} */
      const spendCell = h("td", { class: "nbb-h-num", text: spend });
      if (r.unpriced_images && r.spend !== null) spendCell.title = fmt(s, "hist_unpriced", { n: r.unpriced_images });
      return h(
        "tr",
        {},
        h("th", { scope: "row", class: "nbb-h-prov", text: r.provider }),
        h("td", { class: "nbb-h-num", text: String(r.batches) }),
        h("td", { class: "nbb-h-num", text: fmt(s, "hist_counts", { done: r.succeeded, total: r.tasks }) }),
        h("td", { class: "nbb-h-num", text: pct(r.success_rate) }),
        h("td", { class: "nbb-h-num", text: seconds(r.mean_duration) }),
        h("td", { class: "nbb-h-num", text: seconds(r.p90_duration) }),
        h("td", { class: "nbb-h-num", text: String(r.images) }),
        h("td", { class: "nbb-h-num", text: r.images_per_batch === null ? "–" : r.images_per_batch.toFixed(1) }),
        h("td", { class: "nbb-h-num", text: r.tokens === null ? "–" : r.tokens.toLocaleString(this.locale()) }),
        h("td", { class: "nbb-h-num" }, input),
        spendCell,
      );
    });
    /** @type {HTMLDivElement} */ (this.statsBody).replaceChildren(
      h("table", { class: "nbb-h-table nbb-h-stats", "aria-label": s.hist_tab_stats }, h("thead", {}, h("tr", {}, ...cols.map(th))), h("tbody", {}, ...body)),
      h("p", { class: "nbb-h-note", text: s.hist_stats_note }),
    );
  }

  // ---------------------------------------------------------------- plumbing
  /**
   * A request whose failure is said in the status line: resolves the reply's fields (with
   * `withBuffers`: `{msg, buffers}`), or null when it failed or was given up. `any`: each
   * caller declares the reply it asked for where it keeps it.
   * @param {string} type
   * @param {Record<string, unknown>} [body]
   * @param {boolean} [withBuffers]
   * @param {AbortSignal} [signal]
   * @returns {Promise<any>}
   */
  async ask(type, body = {}, withBuffers = false, signal = undefined) {
    try {
      const { msg, buffers } = await this.channel.request(type, body, { signal });
      return withBuffers ? { msg, buffers } : msg;
    } catch (err) {
      if (err instanceof AbortError) return null; // given up on purpose: nothing to say
      this.say(this.words(err), "error");
      return null;
    }
  }

  /** @param {string} text @param {"info" | "error"} [level] */
  say(text, level = "info") {
    if (!this.status) return;
    setText(this.status, text);
    this.status.dataset.level = level;
  }

  /** @param {unknown} err */
  words(err) {
    return errorWords(err, this.strings, "history");
  }

  dispose() {
    this.dropThumbs();
    for (const [event, fn] of this.listeners) this.model.off(event, fn);
    this.channel.dispose();
    this.root.remove();
  }
}

export default widgetOf(HistoryView);
