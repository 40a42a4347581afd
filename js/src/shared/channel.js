// Request/reply over anywidget custom messages: every request carries a uuid and the
// kernel answers each one exactly once ({type: "reply", uuid, ok, ...}). Unsolicited
// messages (patch, notice) go to the handlers registered with on().
//
// A request may carry binary buffers (upload chunks): they go as the third argument of
// model.send (as the second they are silently dropped). A request given an AbortSignal
// rejects with an AbortError once it is aborted and tells the kernel {type: "cancel",
// uuid}, so the kernel stops work nobody waits for any more.

let counter = 0;
function uid() {
  counter += 1;
  // crypto.randomUUID needs a secure context; a Jupyter server on plain http has none.
  const rand = Math.random().toString(36).slice(2, 10);
  return `${Date.now().toString(36)}-${counter}-${rand}`;
}

export const DEFAULT_TIMEOUT = 30000;

export class ReplyError extends Error {}
export class TimeoutError extends Error {}
export class AbortError extends Error {}

export class Channel {
  /**
   * @param {any} model the anywidget model (on/off/send)
   * @param {{fields?: Record<string, unknown>}} [options] `fields`: added to every request
   *   (the gallery names its view in each)
   */
  constructor(model, options = {}) {
    this.model = model;
    this.fields = options.fields || {};
    this.pending = new Map();
    this.handlers = new Map();
    this.disposed = false;
    this.listener = (msg, buffers) => this.receive(msg, buffers || []);
    model.on("msg:custom", this.listener);
  }

  on(type, fn) {
    this.handlers.set(type, fn);
  }

  /**
   * Send `{type, uuid, ...body}`; resolves `{msg, buffers}` with the kernel's reply.
   * @param {string} type
   * @param {Record<string, unknown>} [body]
   * @param {{timeout?: number, buffers?: ArrayBuffer[] | ArrayBufferView[], signal?: AbortSignal}} [options]
   */
  request(type, body = {}, options = {}) {
    const { timeout = DEFAULT_TIMEOUT, buffers, signal } = options;
    const uuid = uid();
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) {
        reject(new AbortError(type));
        return;
      }
      const settle = () => {
        clearTimeout(timer);
        this.pending.delete(uuid);
        if (signal) signal.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        settle();
        this.model.send({ type: "cancel", uuid });
        reject(new AbortError(type));
      };
      const timer = setTimeout(() => {
        settle();
        reject(new TimeoutError(type));
      }, timeout);
      if (signal) signal.addEventListener("abort", onAbort);
      this.pending.set(uuid, { resolve, reject, settle });
      const content = { ...this.fields, ...body, type, uuid };
      if (buffers && buffers.length) this.model.send(content, undefined, buffers);
      else this.model.send(content);
    });
  }

  receive(msg, buffers) {
    if (this.disposed || !msg || typeof msg !== "object") return;
    if (msg.type === "reply") {
      const waiting = this.pending.get(msg.uuid);
      if (!waiting) return; // another view of the same widget asked
      waiting.settle();
      if (msg.ok) waiting.resolve({ msg, buffers });
      else waiting.reject(new ReplyError(msg.error || "error"));
      return;
    }
    const fn = this.handlers.get(msg.type);
    if (fn) fn(msg, buffers);
  }

  dispose() {
    this.disposed = true;
    this.model.off("msg:custom", this.listener);
    for (const { settle } of [...this.pending.values()]) settle();
    this.pending.clear();
  }
}
