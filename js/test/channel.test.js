// @ts-check
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AbortError, Channel, errorWords, ReplyError, TimeoutError } from "../src/shared/channel.js";
import { FakeModel } from "./fake-model.js";

describe("Channel", () => {
  /** @type {FakeModel} */
  let model;
  /** @type {Channel} */
  let channel;
  beforeEach(() => {
    model = new FakeModel();
    channel = new Channel(model);
  });
  afterEach(() => {
    channel.dispose();
    vi.useRealTimers();
  });

  it("routes each reply to the request with its uuid, whatever the order", async () => {
    const a = channel.request("rows", { start: 0 });
    const b = channel.request("rows", { start: 40 });
    const [sentA, sentB] = model.sent;
    expect(sentA.content).toMatchObject({ type: "rows", start: 0 });
    expect(sentA.content.uuid).not.toEqual(sentB.content.uuid);
    model.reply(sentB.content, { total: 2 });
    model.reply(sentA.content, { total: 1 });
    expect((await a).msg.total).toBe(1);
    expect((await b).msg.total).toBe(2);
    expect(channel.pending.size).toBe(0);
  });

  it("ignores replies to requests another view made", async () => {
    const mine = channel.request("hello");
    model.emit({ type: "reply", uuid: "someone-else", ok: true });
    model.reply(model.sent[0].content, { strings: {} });
    await expect(mine).resolves.toMatchObject({ msg: { strings: {} } });
  });

  it("rejects with the kernel's words when the reply says no", async () => {
    const asked = channel.request("delete");
    model.reply(model.sent[0].content, { error: "That task is running: stop it first." }, false);
    await expect(asked).rejects.toThrow(ReplyError);
    await expect(asked).rejects.toThrow("That task is running: stop it first.");
  });

  it("times out a request the kernel never answers, and forgets it", async () => {
    vi.useFakeTimers();
    const asked = channel.request("rows", {}, { timeout: 1000 });
    vi.advanceTimersByTime(999);
    expect(channel.pending.size).toBe(1);
    vi.advanceTimersByTime(1);
    await expect(asked).rejects.toThrow(TimeoutError);
    expect(channel.pending.size).toBe(0);
    // a late reply is dropped, not delivered to nobody
    model.reply(model.sent[0].content, {});
  });

  it("tells the kernel to cancel a request once it is aborted", async () => {
    const abort = new AbortController();
    const asked = channel.request("split", { text: "a cat" }, { signal: abort.signal });
    const { uuid } = model.sent[0].content;
    abort.abort();
    await expect(asked).rejects.toThrow(AbortError);
    expect(model.sent[1].content).toEqual({ type: "cancel_request", uuid });
    expect(channel.pending.size).toBe(0);
  });

  it("sends nothing for a request aborted before it started", async () => {
    const abort = new AbortController();
    abort.abort();
    await expect(channel.request("split", {}, { signal: abort.signal })).rejects.toThrow(AbortError);
    expect(model.sent).toEqual([]);
  });

  it("does not cancel a request that was already answered", async () => {
    const abort = new AbortController();
    const asked = channel.request("split", {}, { signal: abort.signal });
    model.reply(model.sent[0].content, { tasks: [] });
    await asked;
    abort.abort();
    expect(model.ofType("cancel_request")).toEqual([]);
  });

  it("sends buffers as model.send's third argument, without patching model.send", async () => {
    const send = model.send;
    const data = new Uint8Array([1, 2, 3]).buffer;
    const asked = channel.request("chunk", { fid: "f1", index: 0 }, { buffers: [data] });
    expect(model.send).toBe(send);
    expect(model.sent[0].buffers).toEqual([data]);
    expect(model.sent[0].content).toMatchObject({ type: "chunk", fid: "f1", index: 0 });
    model.reply(model.sent[0].content);
    await asked;
  });

  it("adds its fields to every request", () => {
    const named = new Channel(model, { fields: { view: "g1" } });
    named.request("hello");
    expect(model.sent[0].content).toMatchObject({ type: "hello", view: "g1" });
    named.dispose();
  });

  it("hands unsolicited messages to the handler of their type", () => {
    const patches = /** @type {any[]} */ ([]);
    channel.on("patch", (/** @type {any} */ msg, /** @type {any[]} */ buffers) => patches.push([msg.rows, buffers.length]));
    model.emit({ type: "patch", rows: [1] }, [new ArrayBuffer(1)]);
    model.emit({ type: "unknown" });
    model.emit("not an object");
    expect(patches).toEqual([[[1], 1]]);
  });

  it("cancels what it still waits for when disposed (the view went away)", () => {
    channel.request("propose", { draft: {} }).catch(() => {});
    const { uuid } = model.sent[0].content;
    channel.dispose();
    expect(model.ofType("cancel_request").map((s) => s.content.uuid)).toEqual([uuid]);
    expect(channel.pending.size).toBe(0);
  });

  it("stops listening when disposed", () => {
    const seen = /** @type {any[]} */ ([]);
    channel.on("notice", (/** @type {any} */ msg) => seen.push(msg));
    channel.dispose();
    model.emit({ type: "notice", text: "hi" });
    expect(seen).toEqual([]);
  });
});

describe("errorWords", () => {
  it("gives the kernel's refusal as it is, a timeout in the panel's language", () => {
    expect(errorWords(new ReplyError("No such batch: b1"), {}, "test")).toBe("No such batch: b1");
    expect(errorWords(new TimeoutError("rows"), { timeout: "内核未及时响应。" }, "test")).toBe("内核未及时响应。");
    expect(errorWords(new TimeoutError("rows"), {}, "test")).toBe("The kernel did not answer in time.");
  });

  it("logs a front-end bug for a developer and still shows its message", () => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    expect(errorWords(new TypeError("x is undefined"), {}, "gallery")).toBe("x is undefined");
    expect(logged).toHaveBeenCalledWith("nbbatch gallery", expect.any(TypeError));
    logged.mockRestore();
  });
});
