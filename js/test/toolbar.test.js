// @ts-check
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { money, RunNotifier, Toolbar } from "../src/toolbar.js";
import { FakeModel } from "./fake-model.js";

const strings = {
  concurrency: "Concurrency",
  concurrency_limit: "provider max {n}",
  concurrency_limit_help: "This provider takes at most {n} request(s) at once",
  elapsed: "elapsed {t}",
  n_done: "{n} done",
  n_failed: "{n} failed",
  n_total: "{n} total",
  state_running: "Running",
  state_paused: "Paused",
  state_idle: "Idle",
  run_all: "Run all",
  held_elsewhere: "{n} task(s) are being run by another kernel",
  held_elsewhere_help: "Another kernel is running this batch. Run all is available when that run ends.",
  state_finished: "Finished",
  deadline_at: "deadline {t}",
  notify_denied: "The browser does not allow notifications for this page",
  notify_title: "nbbatch: {name}",
  notify_finished: "Batch {name} finished: {done} done, {failed} failed of {total}.",
  notify_failed: "Batch {name} failed: {failed} of {total} tasks failed, none done.",
  notify_stopped: "Batch {name} stopped: {done} done, {failed} failed of {total}.",
  notify_paused: "Batch {name} paused: {reason}",
  run_mode: "Run mode",
  run_mode_now: "Now",
  run_mode_batch_api: "Batch API: half price, within 24 h",
  run_mode_prices: "Now {now} · batch API {batch}",
  run_mode_price: "{p} an image",
  run_mode_price_unknown: "price unknown",
};

/** A stand-in for the browser's Notification constructor: records what was shown and asked. */
function fakeNotification(permission = "default", answer = "granted") {
  /** @type {{title: string, body: string}[]} */
  const shown = [];
  const api = class {
    /** @param {string} title @param {{body: string}} options */
    constructor(title, options) {
      shown.push({ title, body: options.body });
    }
  };
  Object.assign(api, {
    permission,
    asked: 0,
    shown,
    requestPermission: async () => {
      Object.assign(api, { asked: /** @type {any} */ (api).asked + 1, permission: answer });
      return answer;
    },
  });
  return /** @type {any} */ (api);
}

/** A summary as the kernel sends it (widgets/_hub.Hub.summary). @param {Record<string, unknown>} over */
function summary(over = {}) {
  const counts = { idle: 0, queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, interrupted: 0 };
  return { total: 2, counts, done: 0, images: 0, refs: false, starred: 0, elapsed: null, ticking: false, eta: null, ipm: null, ...over };
}

describe("Toolbar", () => {
  /** @type {FakeModel} */
  let model;
  /** @type {Toolbar} */
  let toolbar;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "setTimeout", "clearTimeout", "performance"] });
    model = new FakeModel({ run_state: "idle", providers: ["demo"], provider_labels: ["Demo"], provider_name: "demo", concurrency: 3, concurrency_limit: 0 });
    toolbar = new Toolbar({ model, strings, act: () => {} });
    document.body.append(toolbar.el);
  });

  afterEach(() => {
    toolbar.dispose();
    document.body.replaceChildren();
    vi.useRealTimers();
  });

  it("offers the batch API only for a provider that has one, with both prices, and sends the choice", () => {
    const acts = [];
    toolbar.view.act = (/** @type {string} */ type, /** @type {unknown} */ content) => acts.push([type, content]);
    toolbar.update();
    expect(toolbar.runModeField.hidden).toBe(true); // demo: no batch API
    model.set("run_modes", { now: 0.04, batch: 0.02 });
    toolbar.update();
    expect(toolbar.runModeField.hidden).toBe(false);
    expect(toolbar.runMode.getAttribute("aria-label")).toBe("Run mode");
    expect([...toolbar.runMode.options].map((o) => o.textContent)).toEqual(["Now", "Batch API: half price, within 24 h"]);
    expect(toolbar.runPrice.textContent).toBe("Now $0.04 an image · batch API $0.02 an image");
    toolbar.runMode.value = "batch";
    toolbar.runMode.dispatchEvent(new Event("change"));
    expect(acts).toEqual([["set_run_mode", { batch_api: true }]]);
    model.set("run_modes", { now: null, batch: null });
    toolbar.update();
    expect(toolbar.runPrice.textContent).toBe("Now price unknown · batch API price unknown");
    expect(toolbar.runMode.value).toBe("now"); // the kernel's batch_api decides what shows
    model.set("run_state", "running");
    toolbar.update();
    expect(toolbar.runMode.disabled).toBe(true);
  });

  it("spells prices as dollars without trailing zeros past the cents", () => {
    expect(money(0.04)).toBe("$0.04");
    expect(money(0.0195)).toBe("$0.0195");
    expect(money(0.035)).toBe("$0.035");
    expect(money(1)).toBe("$1.00");
  });

  it("shows the provider's own limit beside the concurrency, and nothing without one", () => {
    toolbar.update();
    expect(toolbar.limit.hidden).toBe(true);
    model.set("concurrency_limit", 1);
    toolbar.update();
    expect(toolbar.limit.hidden).toBe(false);
    expect(toolbar.limit.textContent).toBe("provider max 1");
    expect(toolbar.concurrency.getAttribute("title")).toBe("This provider takes at most 1 request(s) at once");
    expect(toolbar.concurrency.value).toBe("3"); // still the one number the person sets
  });

  it("counts the elapsed time of a run from the summary and stops when it ends", () => {
    model.set("run_state", "running");
    toolbar.setSummary(summary({ elapsed: 0, ticking: true }));
    expect(toolbar.stats.textContent).toContain("elapsed 0:00");
    vi.advanceTimersByTime(65_000);
    expect(toolbar.stats.textContent).toContain("elapsed 1:05");
    model.set("run_state", "finished");
    toolbar.setSummary(summary({ elapsed: 70, ticking: false }));
    vi.advanceTimersByTime(10_000);
    expect(toolbar.stats.textContent).toContain("elapsed 1:10");
  });

  it("says why a run paused by itself, and only while it is paused", () => {
    const why = "ComfyUI at http://127.0.0.1:8188 is not answering; waiting for it — 3 tasks left";
    model.set("run_state", "paused");
    toolbar.setSummary(summary({ paused_reason: why }));
    expect(toolbar.state.textContent).toBe(`Paused — ${why}`);
    toolbar.setSummary(summary({ paused_reason: null })); // the person's own pause: no reason
    expect(toolbar.state.textContent).toBe("Paused");
    model.set("run_state", "running");
    toolbar.setSummary(summary({ paused_reason: why }));
    expect(toolbar.state.textContent).toBe("Running");
  });

  it("says another kernel runs the batch and keeps Run all off until that run ends", () => {
    model.set("held_elsewhere", 3);
    toolbar.update();
    expect(toolbar.state.textContent).toBe("3 task(s) are being run by another kernel");
    expect(toolbar.state.dataset.state).toBe("elsewhere");
    expect(toolbar.runAll.disabled).toBe(true);
    expect(toolbar.runAll.getAttribute("title")).toContain("available when that run ends");
    model.set("held_elsewhere", 0);
    toolbar.update();
    expect(toolbar.state.textContent).toBe("Idle");
    expect(toolbar.runAll.disabled).toBe(false);
    expect(toolbar.runAll.getAttribute("title")).toBe("Run all");
  });

  it("sends the budget and deadline fields with Run all and a raised budget at once", () => {
    /** @type {[string, unknown][]} */
    const acts = [];
    toolbar.dispose();
    toolbar = new Toolbar({ model, strings, act: (/** @type {string} */ a, /** @type {unknown} */ c) => acts.push([a, c]) });
    toolbar.budget.value = " 20 ";
    toolbar.deadline.value = "07:00";
    toolbar.runAll.click();
    expect(acts).toEqual([["run_all", { budget: "20", deadline: "07:00" }]]);
    toolbar.budget.value = "25";
    toolbar.budget.dispatchEvent(new Event("change"));
    expect(acts[1]).toEqual(["set_budget", { value: "25" }]);
    expect(toolbar.budget.getAttribute("aria-label")).toBe(strings.budget ?? null);
  });

  it("shows the live run's deadline while it has one", () => {
    model.set("run_state", "running");
    toolbar.setSummary(summary({ deadline: "07:00" }));
    expect(toolbar.stats.textContent).toContain("deadline 07:00");
    toolbar.setSummary(summary({ deadline: null }));
    expect(toolbar.stats.textContent).not.toContain("deadline");
  });
});

describe("RunNotifier", () => {
  const counts = (/** @type {Record<string, number>} */ over) => ({ ...summary().counts, ...over });

  it("never asks for permission nor notifies until the person turns it on", () => {
    const api = fakeNotification("granted");
    const notifier = new RunNotifier(strings, api);
    notifier.observe("running", summary(), "night");
    notifier.observe("finished", summary({ counts: counts({ succeeded: 2 }) }), "night");
    expect(api.asked).toBe(0);
    expect(api.shown).toEqual([]);
  });

  it("asks once when turned on, then tells when a run ends, pauses on its budget, or fails", async () => {
    const api = fakeNotification("default", "granted");
    const notifier = new RunNotifier(strings, api);
    expect(await notifier.enable(true)).toBe(true);
    expect(api.asked).toBe(1);
    const reason = "budget of $1.00 reached: $1.00 spent, 2 tasks left";
    notifier.observe("running", summary(), "night");
    notifier.observe("paused", summary({ paused_reason: reason, counts: counts({ succeeded: 1 }) }), "night");
    notifier.observe("paused", summary({ paused_reason: reason, counts: counts({ succeeded: 1 }) }), "night");
    notifier.observe("running", summary(), "night");
    notifier.observe("finished", summary({ counts: counts({ succeeded: 2, failed: 1 }), total: 3 }), "night");
    notifier.observe("finished", summary({ counts: counts({ succeeded: 2, failed: 1 }), total: 3 }), "night");
    notifier.observe("running", summary(), "night");
    notifier.observe("finished", summary({ counts: counts({ failed: 1 }), ticking: true }), "night");
    notifier.observe("finished", summary({ counts: counts({ failed: 2 }) }), "night");
    expect(api.shown).toEqual([
      { title: "nbbatch: night", body: `Batch night paused: ${reason}` },
      { title: "nbbatch: night", body: "Batch night finished: 2 done, 1 failed of 3." },
      { title: "nbbatch: night", body: "Batch night failed: 2 of 2 tasks failed, none done." },
    ]);
  });

  it("stays off and says why when the browser refuses", async () => {
    const api = fakeNotification("default", "denied");
    const notifier = new RunNotifier(strings, api);
    expect(await notifier.enable(true)).toBe(false);
    expect(notifier.problem).toBe(strings.notify_denied);
    notifier.observe("running", summary(), "night");
    notifier.observe("stopped", summary(), "night");
    expect(api.shown).toEqual([]);
  });
});
