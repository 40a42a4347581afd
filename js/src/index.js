// @ts-check
import { Channel, ReplyError, TimeoutError } from "./shared/channel.js";
import { Grid } from "./grid.js";
import { Toolbar } from "./toolbar.js";
import { h, setText } from "./shared/util.js";

// One view of a TaskGrid / BatchStudio. Every view asks the kernel for a snapshot when it
// renders, so re-displaying the widget or reloading the page re-attaches to the live batch.

class View {
  constructor(model, el) {
    this.model = model;
    this.host = el;
    this.channel = new Channel(model);
    this.strings = {};
    this.root = h("div", {
      class: "nbb-root",
      "data-lm-suppress-shortcuts": "true", // JupyterLab / Notebook 7 leave our keys alone
    });
    el.append(this.root);
    this.channel.on("patch", (msg) => this.onPatch(msg));
    this.channel.on("notice", (msg) => this.notice(msg.text, msg.level));
    this.channel.on("reset", () => this.start()); // the studio now shows another batch
    this.channel.on("batch", (msg) => this.toolbar?.setBatch(msg.batch));
    this.listeners = [];
    const watch = (name, fn) => {
      model.on(`change:${name}`, fn);
      this.listeners.push([`change:${name}`, fn]);
    };
    watch("lang", () => this.start());
    watch("selection", () => this.grid?.paintSelection());
    watch("run_state", () => {
      this.toolbar?.update();
      this.grid?.schedule();
    });
    for (const name of ["provider_name", "providers", "provider_labels", "concurrency", "concurrency_limit", "held_elsewhere", "run_modes", "batch_api"])
      watch(name, () => this.toolbar?.update());
    this.start();
  }

  async start() {
    this.root.replaceChildren(h("div", { class: "nbb-boot", text: "…" }));
    try {
      const { msg } = await this.channel.request("hello");
      this.strings = msg.strings;
      this.statuses = msg.statuses; // the task status sets, from the kernel
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
      h("button", { type: "button", class: "nbb-link", text: s.dismiss, "aria-label": s.dismiss, onclick: () => (this.noticeBox.hidden = true) }),
    );
    this.toolbar = this.model.get("studio") ? new Toolbar(this) : null;
    this.grid = new Grid(this);
    this.root.replaceChildren(...[this.toolbar?.el, this.noticeBox, this.grid.el].filter(Boolean));
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
    console.error("nbbatch widget", err); // details for a developer; the person gets words
    return String(err?.message || err);
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
    if (level !== "error") this.noticeTimer = setTimeout(() => (this.noticeBox.hidden = true), 6000);
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
}

export default {
  render({ model, el }) {
    const view = new View(model, el);
    return () => view.dispose();
  },
};
