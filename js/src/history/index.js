// @ts-check
import { AbortError, Channel, errorWords } from "../shared/channel.js";
import { duration, fmt, h, setText, widgetOf } from "../shared/util.js";

// The History panel: the past batches of the workspace and per-provider stats. In a
// studio it lives in a modal <dialog> (opened by the toolbar's History button); alone it
// is shown in the cell. Python holds the truth: the page asks for the list when it shows
// it, for each row's thumbnails only when the row scrolls into view, and for the stats
// when their tab is chosen. Thumbnails are object URLs revoked when the list is redrawn
// or the dialog closes.

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

function pct(rate) {
  return rate === null || rate === undefined ? "–" : `${Math.round(rate * 100)}%`;
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 0.1) return "< 0.1 s";
  if (value < 10) return `${value.toFixed(1)} s`;
  if (value < 60) return `${Math.round(value)} s`;
  return duration(value);
}

class HistoryView {
  constructor(model, el) {
    this.model = model;
    this.channel = new Channel(model);
    this.strings = {};
    this.rows = [];
    this.urls = new Map(); // batch id -> [object URLs]
    this.asked = new Set(); // batch ids whose thumbnails were requested
    // thumbnails asked for and no longer wanted (the dialog closed, the list was redrawn)
    // are abandoned: the kernel does not make what nobody will show
    this.thumbAbort = new AbortController();
    this.tab = "batches";
    this.stale = true;
    this.root = h("div", { class: "nbb-hist", "data-lm-suppress-shortcuts": "true" });
    el.append(this.root);
    this.channel.on("changed", () => {
      this.stale = true;
      if (this.visible()) this.refresh();
    });
    this.listeners = [];
    const watch = (name, fn) => {
      model.on(`change:${name}`, fn);
      this.listeners.push([`change:${name}`, fn]);
    };
    watch("opened", () => {
      if (this.dialog) this.openDialog();
      else this.pendingOpen = true;
    });
    watch("lang", () => this.start());
    watch("current", () => this.paintRows());
    watch("live", () => this.paintRows());
    this.start();
  }

  async start() {
    this.root.replaceChildren();
    try {
      const { msg } = await this.channel.request("hello");
      this.strings = msg.strings;
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
  build() {
    const s = this.strings;
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    const tabBtn = (key, tab) =>
      h("button", {
        type: "button",
        role: "tab",
        class: "nbb-h-tab",
        id: `nbb-h-tab-${tab}-${Math.random().toString(36).slice(2, 8)}`,
        "aria-selected": tab === this.tab ? "true" : "false",
        text: s[key],
        onclick: () => this.setTab(tab),
        onkeydown: (e) => {
          if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
            e.preventDefault();
            this.setTab(tab === "batches" ? "stats" : "batches", true);
          }
        },
      });
    this.tabBatches = tabBtn("hist_tab_batches", "batches");
    this.tabStats = tabBtn("hist_tab_stats", "stats");
    this.title = h("h2", { class: "nbb-h-title", text: s.history });
    this.count = h("span", { class: "nbb-h-count" });
    this.search = h("input", {
      type: "search",
      class: "nbb-h-search",
      placeholder: s.hist_search,
      "aria-label": s.hist_search,
      oninput: () => this.applyFilter(),
    });
    this.search.addEventListener("keydown", (e) => {
      e.stopPropagation(); // typing stays in the box
      if (e.key === "Escape" && this.search.value) {
        e.preventDefault(); // clears the search, not the dialog
        this.search.value = "";
        this.applyFilter();
      }
    });
    this.refreshBtn = h("button", { type: "button", class: "nbb-hbtn", text: s.hist_refresh, onclick: () => this.refresh() });
    this.closeBtn = h("button", { type: "button", class: "nbb-hbtn", text: s.hist_close, "aria-label": s.hist_close, onclick: () => this.dialog.close() });
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
    this.status = h("div", { class: "nbb-h-status", role: "status", "aria-live": "polite" });
    this.tbody = h("tbody");
    const th = (key, cls = "") => h("th", { scope: "col", class: cls, text: s[key] });
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
    this.empty = h("div", { class: "nbb-h-empty", hidden: true, text: s.hist_empty });
    this.scroller = h("div", { class: "nbb-h-scroll" }, this.table, this.empty);
    this.batchesPane = h("div", { class: "nbb-h-pane", role: "tabpanel", "aria-labelledby": this.tabBatches.id }, this.scroller);
    this.statsBody = h("div", { class: "nbb-h-scroll" });
    this.statsPane = h("div", { class: "nbb-h-pane", role: "tabpanel", "aria-labelledby": this.tabStats.id, hidden: true }, this.statsBody);
    this.panel = h("div", { class: "nbb-h-panel" }, head, this.status, this.batchesPane, this.statsPane);
    this.observer = new IntersectionObserver((entries) => this.onVisible(entries), { root: this.scroller, rootMargin: "200px 0px" });
    if (this.inStudio) {
      this.dialog = h("dialog", { class: "nbb-h-dialog", "aria-label": s.history, "data-lm-suppress-shortcuts": "true" }, this.panel);
      this.dialog.addEventListener("close", () => this.onClose());
      this.dialog.addEventListener("click", (e) => {
        if (e.target === this.dialog) this.dialog.close();
      });
      this.root.replaceChildren(this.dialog);
    } else {
      this.panel.classList.add("nbb-h-inline");
      this.root.replaceChildren(this.panel);
    }
  }

  setTab(tab, focus = false) {
    this.tab = tab;
    this.tabBatches.setAttribute("aria-selected", tab === "batches" ? "true" : "false");
    this.tabStats.setAttribute("aria-selected", tab === "stats" ? "true" : "false");
    this.tabBatches.tabIndex = tab === "batches" ? 0 : -1;
    this.tabStats.tabIndex = tab === "stats" ? 0 : -1;
    this.batchesPane.hidden = tab !== "batches";
    this.statsPane.hidden = tab !== "stats";
    if (focus) (tab === "batches" ? this.tabBatches : this.tabStats).focus();
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
    const msg = await this.ask("list");
    if (!msg) return;
    if (this.status?.textContent === loading) this.say("");
    this.stale = false;
    this.rows = msg.rows;
    this.dropThumbs();
    this.renderRows();
  }

  renderRows() {
    const _s = this.strings;
    this.table.hidden = this.rows.length === 0;
    this.rowEls = new Map();
    this.tbody.replaceChildren(...this.rows.map((row) => this.rowEl(row)));
    this.paintRows();
    this.applyFilter();
  }

  // Name, id or provider containing what was typed (the list itself is all in the page).
  applyFilter() {
    if (!this.rowEls) return;
    const needle = this.search.value.trim().toLocaleLowerCase();
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
    setText(this.count, needle ? fmt(s, `hist_found${one}`, { shown, n }) : fmt(s, `hist_summary${one}`, { n }));
    this.empty.hidden = shown > 0;
    setText(this.empty, n ? s.hist_no_match : s.hist_empty);
  }

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
    const strip = h("div", { class: "nbb-h-strip", role: "group", "aria-label": fmt(s, "hist_thumbs_label", { name: row.name }) });
    strip.dataset.id = row.id;
    strip.dataset.images = String(row.images);
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
    const actions = h(
      "td",
      { class: "nbb-h-actions" },
      h("div", { class: "nbb-h-btns" }, open, resume, retry),
      h("div", { class: "nbb-h-btns nbb-h-minor" }, rename, del),
    );
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
    this.rowEls.set(row.id, { tr, open, resume, retry, del, here });
    if (row.images) this.observer.observe(strip);
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
  when(date) {
    const options = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
    if (date.getFullYear() !== new Date().getFullYear()) options.year = "numeric";
    return date.toLocaleString(this.locale(), options);
  }

  // ---------------------------------------------------------------- thumbnails
  onVisible(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const strip = entry.target;
      this.observer.unobserve(strip);
      this.loadThumbs(strip);
    }
  }

  async loadThumbs(strip) {
    const id = strip.dataset.id;
    if (this.asked.has(id)) return;
    this.asked.add(id);
    const reply = await this.ask("thumbs", { id }, true, this.thumbAbort.signal);
    if (!reply || !strip.isConnected) return;
    const urls = reply.buffers.map((b) => URL.createObjectURL(new Blob([b], { type: "image/webp" })));
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
  async through(type, row) {
    const s = this.strings;
    const msg = await this.ask(type, { id: row.id });
    if (!msg) return;
    const key = type === "open" ? "hist_opened" : type === "resume" ? "hist_resumed" : "hist_retrying";
    if (this.dialog?.open) this.dialog.close();
    this.say(fmt(s, key, { name: row.name }), "info");
  }

  startRename(row, cell) {
    const s = this.strings;
    this.cancelEdits();
    const input = h("input", {
      type: "text",
      class: "nbb-h-input",
      value: row.name,
      maxlength: 200,
      "aria-label": fmt(s, "hist_rename_label", { name: row.name }),
    });
    const save = async () => {
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

  confirmDelete(row, cell) {
    const s = this.strings;
    this.cancelEdits();
    const cancel = () => {
      this.editing = null;
      this.replaceRow(row);
    };
    const yes = h("button", {
      type: "button",
      class: "nbb-hbtn nbb-h-danger-solid",
      text: s.hist_confirm_yes,
      onclick: async () => {
        const msg = await this.ask("delete", { id: row.id });
        if (!msg) return;
        this.editing = null;
        this.say(fmt(s, "hist_deleted", { name: row.name, files: msg.files }), "info");
        this.refresh();
      },
    });
    const no = h("button", { type: "button", class: "nbb-hbtn", text: s.hist_cancel, onclick: cancel });
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

  replaceRow(row) {
    const old = this.rowEls.get(row.id);
    if (!old) return;
    const urls = this.urls.get(row.id);
    const fresh = this.rowEl(row);
    old.tr.replaceWith(fresh);
    if (urls) {
      // the thumbnails stay: put the same images in the new strip
      const strip = fresh.querySelector(".nbb-h-strip");
      this.observer.unobserve(strip);
      strip.replaceChildren(...urls.map((url) => h("img", { src: url, alt: "", width: 40, height: 40 })));
    }
    this.paintRows();
    const again = this.rowEls.get(row.id);
    if (again) again.open.hidden ? again.tr.querySelector("button:not([hidden])")?.focus() : again.open.focus();
  }

  // ---------------------------------------------------------------- stats
  async loadStats() {
    const s = this.strings;
    const msg = await this.ask("stats");
    if (!msg) return;
    if (!msg.rows.length) {
      this.statsBody.replaceChildren(h("div", { class: "nbb-h-empty", text: s.hist_stats_empty }));
      return;
    }
    const th = (key) => h("th", { scope: "col", class: key === "hist_stat_provider" ? "" : "nbb-h-num", text: s[key] });
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
    this.statsBody.replaceChildren(
      h("table", { class: "nbb-h-table nbb-h-stats", "aria-label": s.hist_tab_stats }, h("thead", {}, h("tr", {}, ...cols.map(th))), h("tbody", {}, ...body)),
      h("p", { class: "nbb-h-note", text: s.hist_stats_note }),
    );
  }

  // ---------------------------------------------------------------- plumbing
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

  say(text, level = "info") {
    if (!this.status) return;
    setText(this.status, text);
    this.status.dataset.level = level;
  }

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
