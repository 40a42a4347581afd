// @ts-check
import { describe, expect, it } from "vitest";
import { sendFile } from "../src/upload/chunks.js";
import { channelPerTest } from "./fake-model.js";

/** @typedef {import("./fake-model.js").FakeModel} FakeModel */

/** A kernel that takes `chunk`-byte chunks and keeps what it was sent. */
class Kernel {
  constructor(/** @type {FakeModel} */ model, chunk = 4, refuseAt = -1) {
    this.model = model;
    this.chunk = chunk;
    this.refuseAt = refuseAt;
    /** @type {Map<number, Uint8Array>} */
    this.got = new Map();
    this.inFlight = 0;
    this.maxInFlight = 0;
    /** @type {any[]} */
    this.waiting = [];
    this.done = false;
    const send = model.send.bind(model);
    model.send = (content, callbacks, buffers) => {
      send(content, callbacks, buffers);
      this.receive(content, buffers);
    };
  }

  receive(/** @type {any} */ content, /** @type {any[] | undefined} */ buffers) {
    if (content.type === "begin") {
      const chunks = Math.ceil(content.size / this.chunk);
      queueMicrotask(() => this.model.reply(content, content.size > 100 ? { refused: true } : { chunks }));
    } else if (content.type === "chunk") {
      this.inFlight += 1;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
      this.got.set(content.index, new Uint8Array(/** @type {ArrayBuffer} */ (buffers?.[0])));
      // answered later, by answerChunks(): chunks overlap as they would on a slow kernel
      this.waiting.push(content);
    } else if (content.type === "end") {
      queueMicrotask(() => this.model.reply(content, { id: "img-1" }));
    }
  }

  async answerChunks() {
    while (true) {
      await new Promise((r) => setTimeout(r, 0));
      const content = this.waiting.shift();
      if (!content) {
        if (this.done) return;
        continue;
      }
      this.inFlight -= 1;
      this.model.reply(content, content.index === this.refuseAt ? { refused: true } : {});
    }
  }
}

/** @param {number} n */
function pending(n) {
  const bytes = Uint8Array.from({ length: n }, (_, i) => i % 251);
  return { fid: "f1", name: "mug.png", size: n, file: new Blob([bytes]), sent: 0, state: "sending", bytes };
}

describe("sendFile", () => {
  const ctx = channelPerTest();

  it("sends the file in chunks with their bytes as buffers, a window at a time", async () => {
    const kernel = new Kernel(ctx.model, 4);
    const p = pending(18);
    const progress = /** @type {number[]} */ ([]);
    const answering = kernel.answerChunks();
    const id = await sendFile(ctx.channel, p, { chunk: 4, window: 2, timeout: 1000, progress: () => progress.push(p.sent) });
    kernel.done = true;
    await answering;
    expect(id).toBe("img-1");
    expect([...kernel.got.keys()].sort()).toEqual([0, 1, 2, 3, 4]);
    const joined = new Uint8Array(18);
    for (const [index, part] of kernel.got) joined.set(part, index * 4);
    expect(joined).toEqual(p.bytes);
    expect(kernel.got.get(4)?.length).toBe(2); // the last chunk is the rest
    expect(kernel.maxInFlight).toBe(2);
    expect(progress.at(-1)).toBe(18);
    expect(p.state).toBe("checking");
    expect(ctx.model.sent.map((s) => s.content.type)).toEqual(["begin", "chunk", "chunk", "chunk", "chunk", "chunk", "end"]);
  });

  it("sends no chunk of a file the kernel refuses at the start", async () => {
    new Kernel(ctx.model, 4);
    const id = await sendFile(ctx.channel, pending(200), { chunk: 4, window: 2, timeout: 1000 });
    expect(id).toBeNull();
    expect(ctx.model.sent.map((s) => s.content.type)).toEqual(["begin"]);
  });

  it("stops sending once the kernel refuses a chunk, and never says end", async () => {
    const kernel = new Kernel(ctx.model, 4, 1);
    const answering = kernel.answerChunks();
    const id = await sendFile(ctx.channel, pending(40), { chunk: 4, window: 2, timeout: 1000 });
    kernel.done = true;
    await answering;
    expect(id).toBeNull();
    expect(ctx.model.ofType("chunk").length).toBeLessThan(10);
    expect(ctx.model.ofType("end")).toEqual([]);
  });
});
