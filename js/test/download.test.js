// @ts-check
import { describe, expect, it } from "vitest";
import { AbortError } from "../src/shared/channel.js";
import { fetchZip } from "../src/shared/download.js";
import { channelPerTest } from "./fake-model.js";

const flush = () => new Promise((r) => setTimeout(r, 0));

describe("fetchZip", () => {
  const ctx = channelPerTest();

  it("fetches the pieces of a ZIP into one blob", async () => {
    const got = fetchZip(ctx.channel, "zip", { scope: "batch" });
    ctx.model.reply(ctx.model.ofType("zip")[0].content, { job: "j1", chunks: 2, name: "b.zip", size: 6 });
    await flush();
    ctx.model.reply(ctx.model.ofType("chunk")[0].content, { index: 0 }, true, [new DataView(new Uint8Array([1, 2, 3]).buffer)]);
    await flush();
    ctx.model.reply(ctx.model.ofType("chunk")[1].content, { index: 1 }, true, [new DataView(new Uint8Array([4, 5, 6]).buffer)]);
    const zip = await got;
    expect(zip.name).toBe("b.zip");
    expect(zip.blob?.size).toBe(6);
  });

  it("abandoned while the kernel builds it: the request is cancelled there", async () => {
    const abort = new AbortController();
    const got = fetchZip(ctx.channel, "zip", { scope: "batch" }, undefined, abort.signal);
    const asked = ctx.model.ofType("zip")[0].content;
    abort.abort();
    await expect(got).rejects.toBeInstanceOf(AbortError);
    expect(ctx.model.ofType("cancel_request").map((m) => m.content.uuid)).toEqual([asked.uuid]);
    expect(ctx.model.ofType("zip_done")).toHaveLength(0);
  });

  it("abandoned between pieces: the piece asked for is cancelled and the ZIP dropped", async () => {
    const abort = new AbortController();
    const got = fetchZip(ctx.channel, "zip", { scope: "batch" }, undefined, abort.signal);
    ctx.model.reply(ctx.model.ofType("zip")[0].content, { job: "j1", chunks: 3, name: "b.zip", size: 9 });
    await flush();
    ctx.model.reply(ctx.model.ofType("chunk")[0].content, { index: 0 }, true, [new DataView(new Uint8Array(3).buffer)]);
    await flush();
    const second = ctx.model.ofType("chunk")[1].content;
    abort.abort();
    await expect(got).rejects.toBeInstanceOf(AbortError);
    expect(ctx.model.ofType("cancel_request").map((m) => m.content.uuid)).toEqual([second.uuid]);
    expect(ctx.model.ofType("zip_done").map((m) => m.content.job)).toEqual(["j1"]);
    expect(ctx.model.ofType("chunk")).toHaveLength(2); // no third piece is asked for
  });
});
