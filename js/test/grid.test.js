// @ts-check
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Grid, ROW_H } from "../src/grid.js";
import { Channel } from "../src/shared/channel.js";
import { FakeModel } from "./fake-model.js";

/** A task row as the kernel sends it (widgets/_protocol.Row). @param {number} i @returns {import("../src/types.js").Row} */
function row(i, /** @type {import("../src/types.js").Status} */ st = "queued") {
  return { id: `t${i}`, n: i + 1, p: `prompt ${i}`, pm: "", st, pc: 0, at: 0, nr: 0, ni: 0, rf: [], im: [] };
}

/** The kernel side of "rows": answer every request from `all` (a batch of `all.total` tasks). */
function serve(/** @type {FakeModel} */ model, /** @type {{total: number, at: (i: number) => any}} */ all) {
  const answered = new Set();
  for (const { content } of model.ofType("rows")) {
    if (answered.has(content.uuid)) continue;
    answered.add(content.uuid);
    const rows = [];
    for (let i = content.start; i < Math.min(content.end, all.total); i++) rows.push(all.at(i));
    model.reply(content, { start: content.start, total: all.total, rows });
  }
}

describe("Grid", () => {
  /** @type {FakeModel} */
  let model;
  /** @type {any} */
  let view;
  /** @type {Grid} */
  let grid;
  /** @type {{total: number, at: (i: number) => any, changed: Map<number, any>}} */
  let all;

  beforeEach(() => {
    vi.useFakeTimers();
    model = new FakeModel({ selection: [], run_state: "idle" });
    const root = document.createElement("div");
    document.body.append(root);
    // the status sets as the kernel sends them in hello (widgets/_protocol.status_sets)
    const statuses = {
      all: ["idle", "queued", "running", "succeeded", "failed", "cancelled", "interrupted"],
      editable: ["idle", "queued", "failed", "cancelled", "interrupted"],
      retryable: ["failed", "cancelled", "interrupted"],
    };
    view = { model, strings: {}, statuses, root, channel: new Channel(model), errors: [], showError: (/** @type {any} */ e) => view.errors.push(e) };
    const changed = new Map();
    all = { total: 100000, changed, at: (i) => changed.get(i) ?? row(i) };
    grid = new Grid(view);
    root.append(grid.el);
  });

  afterEach(() => {
    grid.dispose();
    view.channel.dispose();
    document.body.replaceChildren();
    vi.useRealTimers();
  });

  /** Let the grid ask, the kernel answer, and the grid paint. */
  async function settle() {
    for (let k = 0; k < 4; k++) {
      await vi.advanceTimersByTimeAsync(50);
      serve(model, all);
      await vi.advanceTimersByTimeAsync(0);
    }
    grid.paint();
  }

  it("builds row nodes for the window only, not for 100,000 tasks", async () => {
    grid.requestWindow(true);
    await settle();
    expect(grid.total).toBe(100000);
    expect(grid.spacer.style.height).toBe(`${100000 * ROW_H}px`);
    // one screenful plus overscan; the first request asks for a window, not everything
    expect(grid.nodes.size).toBeLessThan(30);
    const asked = model.ofType("rows")[0].content;
    expect(asked.end - asked.start).toBeLessThan(100);
    const shown = [...grid.nodes.values()].map((n) => n.dataset.taskId);
    expect(shown).toContain("t0");
    expect(shown).not.toContain("t99999");
  });

  it("shows where a task sent to a batch API is, as the kernel labels it", async () => {
    all.changed.set(0, { ...row(0, "running"), at: 1, er: "being submitted to the OpenAI batch API", ek: "batch_api" });
    all.changed.set(1, { ...row(1, "running"), at: 1, er: "rate limited", ek: "rate_limited" });
    grid.requestWindow(true);
    await settle();
    const node = (/** @type {string} */ id) => [...grid.nodes.values()].find((n) => n.dataset.taskId === id);
    const where = (/** @type {string} */ id) => /** @type {HTMLElement} */ (node(id)?.querySelector(".nbb-where"));
    const bar = (/** @type {string} */ id) => /** @type {HTMLElement} */ (node(id)?.querySelector(".nbb-bar"));
    expect(where("t0").textContent).toBe("being submitted to the OpenAI batch API");
    expect(where("t0").title).toBe("being submitted to the OpenAI batch API"); // whole on hover
    // in place of a progress bar that would never move; in its own cell, not beside the badge
    expect(where("t0").hidden).toBe(false);
    expect(bar("t0").hidden).toBe(true);
    expect(node("t0")?.querySelector(".nbb-attempts")?.textContent).toBe("");
    // only the batch API's label, not any error
    expect(where("t1").hidden).toBe(true);
    expect(where("t1").textContent).toBe("");
    expect(bar("t1").hidden).toBe(false);
  });

  it("asks only for the rows that scrolled into view, and reuses its nodes", async () => {
    grid.requestWindow(true);
    await settle();
    const nodes = new Set(grid.nodes.values());
    grid.viewport.scrollTop = 50000 * ROW_H;
    grid.paint();
    await settle();
    const last = model.ofType("rows").at(-1)?.content;
    expect(last.start).toBeGreaterThan(49900);
    expect(last.end).toBeLessThan(50100);
    const shown = [...grid.nodes.values()];
    expect(shown.map((n) => n.dataset.taskId)).toContain("t50000");
    // the nodes of the first screen were parked and reused, not thrown away
    expect([...nodes].every((n) => shown.includes(n))).toBe(true);
    expect(grid.spacer.querySelectorAll(".nbb-row").length).toBe(shown.length);
  });

  it("applies a status patch to the rows it holds without asking again", async () => {
    grid.requestWindow(true);
    await settle();
    const asked = model.ofType("rows").length;
    // [id, status, percent, attempts, images, whole?]
    grid.applyPatch(
      [
        ["t1", "running", 40, 1, 0, 0],
        ["t999999", "failed", 0, 1, 0, 0],
      ],
      [],
    );
    grid.paint();
    const node = [...grid.nodes.values()].find((n) => n.dataset.taskId === "t1");
    expect(node?.dataset.status).toBe("running");
    expect(model.ofType("rows").length).toBe(asked);
  });

  it("re-asks for just the rows whose patch says they changed whole", async () => {
    grid.requestWindow(true);
    await settle();
    const asked = model.ofType("rows").length;
    all.changed.set(3, { ...row(3, "succeeded"), ni: 1, im: ["k3"] });
    grid.applyPatch([["t3", "succeeded", 100, 1, 1, 1]], []);
    await settle();
    const again = model.ofType("rows").slice(asked);
    expect(again.length).toBe(1);
    expect(again[0].content).toMatchObject({ start: 3, end: 4 });
    expect(grid.rows.get(3).im).toEqual(["k3"]);
  });

  it("replaces a row sent whole in a patch where it is shown", async () => {
    grid.requestWindow(true);
    await settle();
    grid.applyPatch([], [{ ...row(2, "failed"), er: "The provider refused the prompt." }]);
    grid.paint();
    const node = [...grid.nodes.values()].find((n) => n.dataset.taskId === "t2");
    expect(node?.dataset.status).toBe("failed");
    expect(node?.textContent).toContain("The provider refused the prompt.");
  });

  it("keeps showing the old rows while a new view of the batch loads", async () => {
    grid.requestWindow(true);
    await settle();
    grid.invalidate();
    grid.paint();
    // no rows answered yet: the old ones stay on screen (no flash of "loading")
    const node = [...grid.nodes.values()].find((n) => n.dataset.taskId === "t0");
    expect(node?.classList.contains("nbb-loading")).toBe(false);
    all.total = 10;
    await settle();
    expect(grid.total).toBe(10);
    expect(grid.stale.size).toBe(0);
  });
});
