// @ts-check
import { icons } from "./shared/icons.js";
import { duration, fmt, h, setAttr, setText } from "./shared/util.js";

/** @typedef {import("./types.js").RunModes} RunModes */

/** Dollars as a person reads a price: "$0.04", "$0.0195". @param {number} n */
export function money(n) {
  const text = n.toFixed(4).replace(/0{1,2}$/, "");
  return `$${text}`;
}

/** The price of one image now and through the batch API, in words ("price unknown"
 * when none is saved: never a made-up figure). @param {Record<string, string>} s @param {RunModes} modes */
export function runModePrices(s, modes) {
  const price = (/** @type {number | null | undefined} */ n) => (typeof n === "number" ? fmt(s, "run_mode_price", { p: money(n) }) : s.run_mode_price_unknown);
  return fmt(s, "run_mode_prices", { now: price(modes.now), batch: price(modes.batch) });
}

// Run toolbar + batch progress (studio only). Buttons keep their place; the one that
// does not apply in the current run state is disabled (Pause/Resume share one slot).
export class Toolbar {
  constructor(view) {
    this.view = view;
    const s = view.strings;
    const button = (key, icon, cls, action, content = undefined) =>
      h("button", {
        type: "button",
        class: `nbb-btn ${cls}`,
        "aria-label": s[key],
        title: s[key],
        onclick: () => (content ? view.act(action, content()) : view.act(action)),
        html: `${icons[icon]}<span>${s[key]}</span>`,
      });
    // Run all takes the budget and deadline fields with it (the kernel checks them)
    this.runAll = button("run_all", "play", "nbb-primary", "run_all", () => this.paceFields());
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
      onchange: () => view.act("set_provider", { name: this.provider.value }),
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
      },
    });
    this.limit = h("span", { class: "nbb-limit", hidden: true });
    // Spend and pace: empty fields mean no budget / no deadline. A new budget reaches the
    // live run at once (a run paused on its budget goes on when the new one allows more).
    this.budget = h("input", {
      class: "nbb-text nbb-budget",
      type: "text",
      inputmode: "decimal",
      placeholder: s.budget_none,
      "aria-label": s.budget,
      title: s.budget_help,
      onchange: () => view.act("set_budget", { value: this.budget.value.trim() }),
    });
    this.deadline = h("input", {
      class: "nbb-text nbb-deadline",
      type: "text",
      placeholder: "07:00",
      "aria-label": s.deadline,
      title: s.deadline_help,
      onchange: () => view.act("set_deadline", { value: this.deadline.value.trim() }),
    });
    this.notifier = new RunNotifier(s, globalThis.Notification);
    this.notify = h("input", {
      type: "checkbox",
      class: "nbb-notify",
      "aria-label": s.notify,
      title: s.notify_help,
      onchange: () => this.toggleNotify(),
    });
    this.notifyNote = h("span", { class: "nbb-limit nbb-bad", "aria-live": "polite", hidden: true });
    // run mode: now, or through the provider's batch API (only when it has one)
    this.runMode = h(
      "select",
      {
        class: "nbb-select",
        "aria-label": s.run_mode,
        title: s.run_mode_help,
        onchange: () => view.act("set_run_mode", { batch_api: this.runMode.value === "batch" }),
      },
      h("option", { value: "now", text: s.run_mode_now }),
      h("option", { value: "batch", text: s.run_mode_batch_api }),
    );
    this.runPrice = h("span", { class: "nbb-runprice" });
    this.runModeField = h("label", { class: "nbb-field nbb-runmode", hidden: true }, h("span", { text: s.run_mode }), this.runMode, this.runPrice);
    const settings = h(
      "div",
      { class: "nbb-settings" },
      h("label", { class: "nbb-field" }, h("span", { text: s.provider }), this.provider),
      this.runModeField, // after the provider: it is that provider's choice
      h("label", { class: "nbb-field" }, h("span", { text: s.concurrency }), this.concurrency, this.limit),
      h("label", { class: "nbb-field" }, h("span", { text: s.budget }), this.budget),
      h("label", { class: "nbb-field" }, h("span", { text: s.deadline }), this.deadline),
      h("label", { class: "nbb-field nbb-notifyfield" }, this.notify, h("span", { text: s.notify }), this.notifyNote),
    );

    this.bar = h("div", {
      class: "nbb-pbar",
      role: "progressbar",
      "aria-label": s.progress,
      "aria-valuemin": 0,
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
        settings,
      ),
      h("div", { class: "nbb-progress" }, this.batchName, this.state, this.bar, this.stats),
    );
    this.summary = null;
    this.summaryAt = 0;
    this.ticker = setInterval(() => this.renderStats(), 1000);
  }

  dispose() {
    clearInterval(this.ticker);
  }

  /** The budget and deadline fields as Run all sends them (the kernel checks them). */
  paceFields() {
    return { budget: this.budget.value.trim(), deadline: this.deadline.value.trim() };
  }

  // Notify me when done: the browser is asked for permission only here, when it is turned on
  async toggleNotify() {
    this.notify.checked = await this.notifier.enable(this.notify.checked);
    setText(this.notifyNote, this.notifier.problem || "");
    this.notifyNote.hidden = !this.notifier.problem;
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
    // another kernel runs this batch: this studio follows it from the journal, Run waits
    const held = model.get("held_elsewhere") || 0;
    this.runAll.disabled = state === "running" || state === "stopping" || held > 0;
    setAttr(this.runAll, "title", held ? fmt(s, "held_elsewhere_help", { n: held }) : s.run_all);
    this.pause.hidden = state === "paused";
    this.resume.hidden = state !== "paused";
    this.pause.disabled = state !== "running";
    this.stop.disabled = !live || state === "stopping";
    this.retryFailed.disabled = failed === 0;
    // "Finished" only when nothing waits: a task added or an edited image's child made
    // after the run waits for the next Run all
    const c = this.summary ? this.summary.counts : null;
    const waiting = c ? (c.idle || 0) + (c.queued || 0) + (c.interrupted || 0) : 0;
    let label = state === "finished" && waiting ? fmt(s, "state_waiting", { n: waiting }) : (s[`state_${state}`] ?? state);
    // a run that paused or stopped by itself says why ("ComfyUI at ... is not answering;
    // waiting ...", "openai: the API key was refused ...")
    const reason = (state === "paused" || state === "stopped") && this.summary ? this.summary.paused_reason : null;
    if (reason) label = `${label} — ${reason}`;
    if (held) label = fmt(s, "held_elsewhere", { n: held });
    setText(this.state, label);
    this.state.dataset.state = held ? "elsewhere" : state;
    this.budget.disabled = held > 0;
    this.deadline.disabled = held > 0;
    this.notifier.observe(state, this.summary, this.batchName.textContent || "");

    const names = model.get("providers") || [];
    const labels = model.get("provider_labels") || [];
    const current = model.get("provider_name");
    const key = names.join("\n") + "\t" + labels.join("\n");
    if (this.provider.dataset.names !== key) {
      // the catalogue's label a person reads; a saved configuration keeps its own name
      const text = (n, i) => (labels[i] && labels[i] !== n ? labels[i] : n);
      this.provider.replaceChildren(...names.map((n, i) => h("option", { value: n, text: text(n, i) })));
      this.provider.dataset.names = key;
    }
    if (this.provider.value !== current) this.provider.value = current;
    this.provider.disabled = live;
    // the provider's own cap on requests at once: a limit beside the one number set
    const limit = model.get("concurrency_limit") || 0;
    setText(this.limit, limit ? fmt(s, "concurrency_limit", { n: limit }) : "");
    this.limit.hidden = !limit;
    setAttr(this.concurrency, "title", limit ? fmt(s, "concurrency_limit_help", { n: limit }) : s.concurrency);
    // the run mode, with the price of an image both ways, before anything is sent
    const modes = model.get("run_modes") || {};
    const offered = "now" in modes;
    this.runModeField.hidden = !offered;
    this.runMode.disabled = live;
    const mode = model.get("batch_api") ? "batch" : "now";
    if (this.runMode.value !== mode) this.runMode.value = mode;
    setText(this.runPrice, offered ? runModePrices(s, modes) : "");
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
    const pct = (n) => (total ? `${(100 * n) / total}%` : "0%");
    this.barDone.style.width = pct(ok);
    this.barFailed.style.width = pct(sum.counts.failed);
    setAttr(this.bar, "aria-valuemax", total);
    setAttr(this.bar, "aria-valuenow", sum.done);
    let elapsed = sum.elapsed;
    if (elapsed !== null && sum.ticking) elapsed += (performance.now() - this.summaryAt) / 1000;
    const parts = [
      [fmt(s, "n_done", { n: sum.counts.succeeded }), "nbb-ok"],
      [fmt(s, "n_failed", { n: sum.counts.failed }), sum.counts.failed ? "nbb-bad" : ""],
      [fmt(s, "n_total", { n: total }), ""],
    ];
    if (elapsed !== null) parts.push([fmt(s, "elapsed", { t: duration(elapsed) }), ""]);
    const running = this.view.model.get("run_state") === "running";
    if (sum.eta !== null && sum.ticking && running) {
      // counted down between summaries; the last seconds are "a few seconds", never 0:00
      const left = sum.eta - (performance.now() - this.summaryAt) / 1000;
      parts.push([left < 5 ? s.eta_soon : fmt(s, "eta", { t: duration(left) }), ""]);
    }
    if (sum.ipm !== null) parts.push([fmt(s, "ipm", { n: sum.ipm }), ""]);
    // budget or deadline reached, slowed by rate limits, waiting for its start time
    if (sum.pace) parts.push([sum.pace, "nbb-warn"]);
    // the live run's deadline, while it has one
    if (sum.deadline) parts.push([fmt(s, "deadline_at", { t: sum.deadline }), "nbb-deadline-at"]);
    const key = parts.map((p) => p.join("|")).join("/");
    if (this.stats.dataset.key === key) return;
    this.stats.dataset.key = key;
    this.stats.replaceChildren(...parts.map(([text, cls]) => h("span", { class: `nbb-stat ${cls}`, text })));
  }
}

// "Notify me when done": a browser notification when a run ends, pauses by itself (its
// budget, its deadline, a server not answering) or fails. The Notification API is only
// asked for permission by enable(true), i.e. when the person turns the toggle on.
export class RunNotifier {
  /** @param {Record<string, string>} strings @param {any} api the Notification constructor (or undefined) */
  constructor(strings, api) {
    this.strings = strings;
    this.api = api;
    this.on = false;
    /** @type {string | null} why notifications are off although asked for, in words */
    this.problem = null;
    this.last = "idle";
    this.wasLive = false;
    this.told = "";
  }

  /** Turn on (asks the browser once) or off; resolves to whether it is on. @param {boolean} want */
  async enable(want) {
    this.problem = null;
    this.on = false;
    if (!want) return false;
    if (!this.api) {
      this.problem = this.strings.notify_unsupported;
      return false;
    }
    let permission = this.api.permission;
    if (permission !== "granted" && permission !== "denied") permission = await this.api.requestPermission();
    if (permission !== "granted") this.problem = this.strings.notify_denied;
    this.on = permission === "granted";
    return this.on;
  }

  /** Follow the run state (called on every toolbar update). @param {string} state @param {any} sum @param {string} name */
  observe(state, sum, name) {
    const live = state === "running" || state === "stopping";
    if (live) {
      this.wasLive = true;
      this.told = "";
    }
    this.last = state;
    if (!this.wasLive || !sum) return;
    const c = sum.counts;
    const values = { name, done: c.succeeded, failed: c.failed, total: sum.total, reason: sum.paused_reason || "" };
    let key = null;
    // an end is told with the summary sent after it (its final counts), not the one before
    if (sum.ticking && state !== "paused") return;
    if (state === "paused" && sum.paused_reason) key = "notify_paused";
    else if (state === "finished") key = c.failed && !c.succeeded ? "notify_failed" : "notify_finished";
    else if (state === "stopped") key = "notify_stopped";
    if (!key) return;
    const text = fmt(this.strings, key, values);
    if (this.told === `${key}|${values.reason}`) return; // once per end / pause
    this.told = `${key}|${values.reason}`;
    if (state !== "paused") this.wasLive = false;
    if (!this.on || !this.api || this.api.permission !== "granted") return;
    try {
      new this.api(fmt(this.strings, "notify_title", values), { body: text, tag: `nbbatch-${name}` });
    } catch {
      // a browser that only notifies from a service worker: the toolbar says it anyway
    }
  }
}
