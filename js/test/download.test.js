// @ts-check
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AbortError, Channel } from "../src/shared/channel.js";
import { fetchZip } from "../src/shared/download.js";
import { FakeModel } from "./fake-model.js";

const flush = () => new Promise((r) => setTimeout(r, 0));

describe("fetchZip", () => {
  /** @type {FakeModel} */
  let model;
  /** @type {Channel} */
  let channel;
  beforeEach(() => {
    model = new FakeModel();
    channel = new Channel(model);
  });
  afterEach(() => channel.dispose());

  it("fetches the pieces of a ZIP into one blob", async () => {
    const got = fetchZip(channel, "zip", { scope: "batch" });
    model.reply(model.ofType("zip")[0].content, { job: "j1", chunks: 2, name: "b.zip", size: 6 });
    await flush();
    model.reply(model.ofType("chunk")[0].content, { index: 0 }, true, [new DataView(new Uint8Array([1, 2, 3]).buffer)]);
    await flush();
    model.reply(model.ofType("chunk")[1].content, { index: 1 }, true, [new DataView(new Uint8Array([4, 5, 6]).buffer)]);
    const zip = await got;
    expect(zip.name).toBe("b.zip");
    expect(zip.blob?.size).toBe(6);
  });

  it("abandoned while the kernel builds it: the request is cancelled there", async () => {
    const abort = new AbortController();
    const got = fetchZip(channel, "zip", { scope: "batch" }, undefined, abort.signal);
    const asked = model.ofType("zip")[0].content;
    abort.abort();
    await expect(got).rejects.toBeInstanceOf(AbortError);
    expect(model.ofType("cancel_request").map((m) => m.content.uuid)).toEqual([asked.uuid]);
    expect(model.ofType("zip_done")).toHaveLength(0);
  });

  it("abandoned between pieces: the piece asked for is cancelled and the ZIP dropped", async () => {
    const abort = new AbortController();
    const got = fetchZip(channel, "zip", { scope: "batch" }, undefined, abort.signal);
    model.reply(model.ofType("zip")[0].content, { job: "j1", chunks: 3, name: "b.zip", size: 9 });
    await flush();
    model.reply(model.ofType("chunk")[0].content, { index: 0 }, true, [new DataView(new Uint8Array(3).buffer)]);
    await flush();
    const second = model.ofType("chunk")[1].content;
    abort.abort();
    await expect(got).rejects.toBeInstanceOf(AbortError);
    expect(model.ofType("cancel_request").map((m) => m.content.uuid)).toEqual([second.uuid]);
    expect(model.ofType("zip_done").map((m) => m.content.job)).toEqual(["j1"]);
    expect(model.ofType("chunk")).toHaveLength(2); // no third piece is asked for
  });
});
