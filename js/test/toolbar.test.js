// @ts-check
import { afterEach, describe, expect, it } from "vitest";
import { Toolbar } from "../src/toolbar.js";
import { FakeModel } from "./fake-model.js";

/** @returns {import("../src/types.js").Summary} */
function summary(/** @type {string | null} */ paused_reason) {
  const counts = { idle: 0, queued: 3, running: 0, succeeded: 0, failed: 0, cancelled: 0, interrupted: 0 };
  return { total: 3, counts, done: 0, images: 0, refs: false, starred: 0, elapsed: null, ticking: true, eta: null, ipm: null, paused_reason };
}

describe("Toolbar", () => {
  /** @type {Toolbar | null} */
  let bar = null;
  afterEach(() => bar?.dispose());

  it("says why a run paused by itself, and only while it is paused", () => {
    const model = new FakeModel({ run_state: "paused", providers: ["comfyui"], provider_labels: ["ComfyUI"], provider_name: "comfyui", concurrency: 1 });
    const view = { model, strings: { state_paused: "Paused", state_running: "Running" }, act: () => {} };
    bar = new Toolbar(view);
    const why = "ComfyUI at http://127.0.0.1:8188 is not answering; waiting for it — 3 tasks left";
    bar.setSummary(summary(why));
    expect(bar.state.textContent).toBe(`Paused — ${why}`);
    bar.setSummary(summary(null)); // the person's own pause: no reason
    expect(bar.state.textContent).toBe("Paused");
    model.set("run_state", "running");
    bar.setSummary(summary(why));
    expect(bar.state.textContent).toBe("Running");
  });
});
