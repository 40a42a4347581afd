// @ts-check
import { Channel, errorWords } from "../shared/channel.js";
import { bytesOf } from "../shared/download.js";
import { fmt, h, setText, widgetOf } from "../shared/util.js";

// The Compare table: rows are tasks, columns configurations. Python holds the truth:
// the page asks for the rows in view (with one thumbnail per cell, as binary buffers)
// in pages of PAGE rows, draws only those (the body is as tall as every row, the rows
// in view are placed in it), and asks again when the kernel says the comparison
// changed. A click on a cell opens its image in the gallery; ★ picks it as the row's
// winner. Thumbnails are object URLs, revoked when their page is dropped.

/** @typedef {import("../shared/util.js").Model} Model */
/**
 * @template T
 * @typedef {import("../shared/channel.js").Answer<T>} Answer
 */

/**
 * One configuration's column head (`hello`, `changed`): its totals so far.
 * @typedef {object} Column
 * @property {string} name
 * @property {string} provider
 * @property {string | null} model
 * @property {number} cells
 * @property {number} succeeded
 * @property {number} failed
 * @property {number | null} median_seconds
 * @property {number | null} spent
 */

/**
 * One cell of a row: a task's outcome under one configuration ("removed": its task is gone
 * from the batch, and only `status` and `images` are sent).
 * @typedef {object} Cell
 * @property {import("../types.js").Status | "removed"} status
 * @property {number} images
 * @property {number | null} [took] seconds
 * @property {number | null} [spent]
 * @property {boolean} [starred]
 * @property {string | null} [error]
 * @property {number | null} [score]
 * @property {number | null} [thumb] the index of its thumbnail among the reply's buffers
 */

/**
 * @typedef {{row: number, prompt: string, cells: Cell[]}} CompareRow
 * @typedef {{strings: Record<string, string>, columns: Column[], rows: number, name: string}} Hello
 * @typedef {{rows: CompareRow[], urls: string[]}} Page rows from `start`, with their thumbnails' object URLs
 * @typedef {{name: string, provider: string, model: string | null}} Configuration a saved one to compare
 */

const ROW_H = 150;
const PAGE = 20;
/** @type {Record<string, string>} */
const STATUS_CLASS = { succeeded: "ok", failed: "bad", interrupted: "warn", running: "live" };

/** @param {number | null | undefined} value */
function seconds(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (value < 0.1) return "< 0.1 s";
  return value < 100 ? `${value.toFixed(1)} s` : `${Math.round(value)} s`;
}

/** @param {number | null | undefined} value */
function money(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value < 1 ? `$${value.toFixed(3)}` : `$${value.toFixed(2)}`;
}

class CompareView {
  /** @param {Model} model @param {HTMLElement} el */
  constructor(model, el) {
    this.model = model;
    this.channel = new Channel(model);
    /** @type {Record<string, string>} */
    this.strings = {};
    /** @type {Column[]} */
    this.columns = [];
    this.rows = 0;
    /** @type {Map<number, Page>} */
    this.pages = new Map();
    /** @type {Set<number>} */
    this.asking = new Set();
    this.generation = 0;
    /** @type {HTMLDivElement} */
    this.root = h("div", { class: "nbb-cmp", "data-lm-suppress-shortcuts": "true" });
    el.append(this.root);
    this.channel.on("changed", (/** @type {{columns?: Column[]}} */ msg) => {
      if (Array.isArray(msg.columns)) {
        this.columns = msg.columns;
        this.paintHead();
      }
      this.reload();
    });
    this.channel.on("reset", () => this.start());
    this.onLang = () => this.start();
    model.on("change:lang", this.onLang);
    this.start();
  }

  async start() {
    this.root.replaceChildren();
    try {
      const { msg } = /** @type {Answer<Hello>} */ (await this.channel.request("hello"));
      this.strings = msg.strings;
      this.columns = msg.columns;
      this.rows = msg.rows;
      this.build(msg.name);
      this.reload();
    } catch (err) {
      this.root.replaceChildren(h("div", { class: "nbb-k-error", role: "alert", text: this.words(err) }));
    }
  }

  /** @param {string} name the comparison's */
  build(name) {
    const s = this.strings;
    /** @type {HTMLDivElement | undefined} until built (a request may fail before) */
    this.status = h("div", { class: "nbb-k-status", role: "status", "aria-live": "polite" });
    /** @type {HTMLDivElement | undefined} */
    this.head = h("div", { class: "nbb-k-head", role: "row" });
    /** @type {HTMLDivElement | undefined} */
    this.body = h("div", { class: "nbb-k-body", role: "rowgroup" });
    /** @type {HTMLDivElement} */ (this.body).style.height = `${this.rows * ROW_H}px`;
    /** @type {HTMLDivElement | undefined} */
    this.scroller = h(
      "div",
      {
        class: "nbb-k-scroll",
        role: "table",
        "aria-label": s.cmp_table_label,
        "aria-rowcount": String(this.rows + 1),
        onscroll: () => this.paintRows(),
      },
      this.head,
      this.body,
    );
    const run = (/** @type {boolean} */ retryFailed) =>
      this.channel.request("run", { retry_failed: retryFailed }).catch((err) => {
        if (this.status) setText(this.status, this.words(err));
      });
    this.root.append(
      h(
        "div",
        { class: "nbb-k-title" },
        h("strong", { text: name }),
        h("button", { type: "button", class: "nbb-k-btn", text: s.cmp_run, onclick: () => run(false) }),
        h("button", { type: "button", class: "nbb-k-btn", text: s.cmp_retry_failed, onclick: () => run(true) }),
        h("button", { type: "button", class: "nbb-k-btn", text: s.cmp_new, onclick: () => this.openForm() }),
        this.status,
      ),
      this.buildForm(),
      /** @type {HTMLDivElement} */ (this.scroller),
    );
    this.paintHead();
  }

  buildForm() {
    const s = this.strings;
    /** @type {HTMLTextAreaElement} */
    this.prompts = h("textarea", { class: "nbb-k-prompts", rows: "4", "aria-label": s.cmp_prompts_label });
    /** @type {HTMLDivElement} */
    this.choices = h("div", { class: "nbb-k-choices", role: "group", "aria-label": s.cmp_configurations_label });
    /** @type {HTMLDivElement} */
    this.formError = h("div", { class: "nbb-k-form-error", role: "alert" });
    /** @type {HTMLFormElement} */
    this.form = h(
      "form",
      {
        class: "nbb-k-form",
        hidden: true,
        onsubmit: (/** @type {SubmitEvent} */ ev) => {
          ev.preventDefault();
          this.create();
        },
      },
      h("label", { text: s.cmp_prompts_label }, this.prompts),
      h("div", { class: "nbb-k-label", text: s.cmp_configurations_label }),
      this.choices,
      this.formError,
      h(
        "div",
        { class: "nbb-k-actions" },
        h("button", { type: "submit", class: "nbb-k-btn", text: s.cmp_create }),
        h("button", {
          type: "button",
          class: "nbb-k-btn",
          text: s.cmp_cancel,
          onclick: () => {
            /** @type {HTMLFormElement} */ (this.form).hidden = true;
          },
        }),
      ),
    );
    return /** @type {HTMLFormElement} */ (this.form);
  }

  async openForm() {
    // the form and its parts are built (build) before its button can open it
    /** @type {HTMLFormElement} */ (this.form).hidden = false;
    setText(/** @type {HTMLDivElement} */ (this.formError), "");
    try {
      const { msg } = /** @type {Answer<{configurations: Configuration[]}>} */ (await this.channel.request("configurations"));
      /** @type {HTMLDivElement} */ (this.choices).replaceChildren(
        ...msg.configurations.map((c) =>
          h(
            "label",
            { class: "nbb-k-choice" },
            h("input", { type: "checkbox", value: c.name }),
            h("span", { text: c.model ? `${c.name} (${c.model})` : c.name }),
          ),
        ),
      );
      /** @type {HTMLTextAreaElement} */ (this.prompts).focus();
    } catch (err) {
      setText(/** @type {HTMLDivElement} */ (this.formError), this.words(err));
    }
  }

  async create() {
    const names = [.../** @type {HTMLDivElement} */ (this.choices).querySelectorAll("input:checked")].map((el) => /** @type {HTMLInputElement} */ (el).value);
    try {
      await this.channel.request("create", { prompts: /** @type {HTMLTextAreaElement} */ (this.prompts).value, configurations: names });
    } catch (err) {
      setText(/** @type {HTMLDivElement} */ (this.formError), this.words(err));
    }
  }

  template() {
    return `minmax(180px, 1.4fr) repeat(${this.columns.length}, minmax(150px, 1fr))`;
  }

  paintHead() {
    if (!this.head) return;
    const s = this.strings;
    this.head.style.gridTemplateColumns = this.template();
    const cells = [h("div", { class: "nbb-k-hcell nbb-k-prompt", role: "columnheader", text: s.cmp_task })];
    let done = 0;
    let total = 0;
    for (const c of this.columns) {
      done += c.succeeded + c.failed;
      total += c.cells;
      cells.push(
        h(
          "div",
          { class: "nbb-k-hcell", role: "columnheader", title: c.model ? `${c.provider} · ${c.model}` : c.provider },
          h("div", { class: "nbb-k-name", text: c.name }),
          h("div", {
            class: "nbb-k-totals",
            text: fmt(s, "cmp_totals", {
              ok: c.succeeded,
              n: c.cells,
              failed: c.failed,
              median: seconds(c.median_seconds),
              cost: money(c.spent),
            }),
          }),
        ),
      );
    }
    this.head.replaceChildren(...cells);
    if (this.status) setText(this.status, fmt(s, "cmp_progress", { done, total }));
  }

  /** Forget every page (a change): ask again for what is in view. */
  reload() {
    this.generation += 1;
    /** @type {Map<number, Page> | undefined} */
    this.old = this.pages; // drawn until the new pages arrive: no flicker
    this.pages = new Map();
    this.asking.clear();
    this.paintRows();
  }

  visibleRange() {
    const top = this.scroller ? this.scroller.scrollTop : 0;
    const height = this.scroller ? this.scroller.clientHeight || 600 : 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - 2);
    const last = Math.min(this.rows - 1, Math.ceil((top + height) / ROW_H) + 2);
    return [first, last];
  }

  paintRows() {
    if (!this.body) return;
    const [first, last] = this.visibleRange();
    const rows = [];
    for (let r = first; r <= last; r++) {
      const page = Math.floor(r / PAGE);
      const held = this.pages.get(page) || this.old?.get(page);
      if (!this.pages.has(page)) this.ask(page);
      const data = held?.rows[r - page * PAGE];
      rows.push(this.paintRow(r, data, held?.urls || []));
    }
    this.body.replaceChildren(...rows);
  }

  /** @param {number} page */
  async ask(page) {
    if (this.asking.has(page)) return;
    this.asking.add(page);
    const generation = this.generation;
    try {
      const { msg, buffers } = /** @type {Answer<{start: number, rows: CompareRow[]}>} */ (
        await this.channel.request("rows", { start: page * PAGE, count: PAGE })
      );
      if (generation !== this.generation) return;
      const urls = buffers.map((b) => URL.createObjectURL(new Blob([bytesOf(b)], { type: "image/webp" })));
      this.pages.set(page, { rows: msg.rows, urls });
      const stale = this.old?.get(page);
      if (stale) {
        for (const u of stale.urls) URL.revokeObjectURL(u);
        this.old?.delete(page);
      }
      this.paintRows();
    } catch (err) {
      if (this.status) setText(this.status, this.words(err));
    } finally {
      this.asking.delete(page);
    }
  }

  /**
   * @param {number} r the row's index
   * @param {CompareRow | undefined} data not yet asked for: drawn as a placeholder
   * @param {string[]} urls its page's thumbnails
   */
  paintRow(r, data, urls) {
    const s = this.strings;
    /** @type {HTMLDivElement} */
    const row = h("div", { class: "nbb-k-row", role: "row", "aria-rowindex": String(r + 2) });
    row.style.top = `${r * ROW_H}px`;
    row.style.gridTemplateColumns = this.template();
    row.append(
      h(
        "div",
        { class: "nbb-k-prompt", role: "rowheader" },
        h("span", { class: "nbb-k-num", text: `${r + 1}` }),
        h("span", { class: "nbb-k-text", text: data ? data.prompt : "…", title: data ? data.prompt : null }),
      ),
    );
    this.columns.forEach((col, c) => {
      const cell = data?.cells[c];
      if (!cell) {
        row.append(h("div", { class: "nbb-k-cell nbb-k-wait", role: "cell" }));
        return;
      }
      const label = s[`cmp_st_${cell.status}`] || cell.status;
      const url = cell.thumb === null || cell.thumb === undefined ? null : urls[cell.thumb];
      const thumb = url
        ? h("img", { src: url, alt: fmt(s, "cmp_image_alt", { row: r + 1, name: col.name }), loading: "lazy" })
        : h("div", { class: `nbb-k-empty ${STATUS_CLASS[cell.status] || ""}`, text: label, title: cell.error });
      const star = cell.images
        ? h("button", {
            type: "button",
            class: `nbb-k-star${cell.starred ? " on" : ""}`,
            "aria-pressed": cell.starred ? "true" : "false",
            title: s.cmp_pick,
            "aria-label": s.cmp_pick,
            text: cell.starred ? "★" : "☆",
            onclick: (/** @type {MouseEvent} */ ev) => {
              ev.stopPropagation();
              this.send("pick", r, c);
            },
          })
        : null;
      let meta = cell.status === "succeeded" ? `${seconds(cell.took)} · ${money(cell.spent)}` : label;
      if (cell.score !== null && cell.score !== undefined && Number.isFinite(cell.score)) {
        const v = Number(cell.score);
        const score = Math.abs(v) >= 100 ? String(Math.round(v)) : v.toPrecision(3);
        meta += ` · ${fmt(s, "cmp_score", { score })}`;
      }
      row.append(
        h(
          "div",
          {
            class: `nbb-k-cell ${STATUS_CLASS[cell.status] || ""}`,
            role: "cell",
            "data-row": String(r),
            "data-column": String(c),
            tabindex: cell.images ? "0" : null,
            onclick: cell.images ? () => this.send("open", r, c) : null,
            onkeydown: (/** @type {KeyboardEvent} */ ev) => {
              if (cell.images && (ev.key === "Enter" || ev.key === " ")) {
                ev.preventDefault();
                this.send("open", r, c);
              }
            },
          },
          thumb,
          h("div", { class: "nbb-k-meta" }, h("span", { text: meta }), star),
        ),
      );
    });
    return row;
  }

  /** @param {"open" | "pick"} type @param {number} row @param {number} column */
  async send(type, row, column) {
    try {
      await this.channel.request(type, { row, column });
    } catch (err) {
      if (this.status) setText(this.status, this.words(err));
    }
  }

  /** @param {unknown} err */
  words(err) {
    return errorWords(err, this.strings, "compare");
  }

  dispose() {
    for (const map of [this.pages, this.old]) {
      for (const page of map?.values() || []) for (const u of page.urls) URL.revokeObjectURL(u);
    }
    this.model.off("change:lang", this.onLang);
    this.channel.dispose();
    this.root.remove();
  }
}

export default widgetOf(CompareView);
