// @ts-check
// Request/reply over anywidget custom messages: every request carries a uuid and the
// kernel answers each one exactly once ({type: "reply", uuid, ok, ...}). Unsolicited
// messages (patch, notice) go to the handlers registered with on().
//
// A request may carry binary buffers (upload chunks): they go as the third argument of
// model.send (as the second they are silently dropped). A request given an AbortSignal
// rejects with an AbortError once it is aborted and tells the kernel {type:
// "cancel_request", uuid}, so the kernel stops work nobody waits for any more; disposing
// the channel (the view went away) does the same for every request still waiting.

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

/**
 * A message to or from the kernel: `type` names it (see js/src/types.js).
 * @typedef {{type: string, [key: string]: any}} Message
 * @typedef {(msg: any, buffers: DataView[]) => void} Handler
 * @typedef {{resolve: (answer: {msg: any, buffers: DataView[]}) => void, reject: (err: Error) => void, settle: () => void}} Waiting
 */

/**
 * What `request` resolves, with the reply's fields typed `T` (the reply is `{type: "reply",
 * uuid, ok, ...fields}`): a panel casts its awaited request to `Answer<ItsReply>`.
 * @template T
 * @typedef {{msg: T, buffers: DataView[]}} Answer
 */

export class Channel {
  /**
   * @param {import("./util.js").Model} model the anywidget model (on/off/send)
   * @param {{fields?: Record<string, unknown>}} [options] `fields`: added to every request
   *   (the gallery names its view in each)
   */
  constructor(model, options = {}) {
    this.model = model;
    this.fields = options.fields || {};
    /** @type {Map<string, Waiting>} */
    this.pending = new Map();
    /** @type {Map<string, Handler>} */
    this.handlers = new Map();
    this.disposed = false;
    /** @param {unknown} msg @param {DataView[] | undefined} buffers */
    this.listener = (msg, buffers) => this.receive(msg, buffers || []);
    model.on("msg:custom", this.listener);
  }

  /** Handle the unsolicited messages of `type`. @param {string} type @param {Handler} fn */
  on(type, fn) {
    this.handlers.set(type, fn);
  }

  /**
   * Send `{type, uuid, ...body}`; resolves `{msg, buffers}` with the kernel's reply.
   * @param {string} type
   * @param {Record<string, unknown>} [body]
   * @param {{timeout?: number, buffers?: ArrayBuffer[] | ArrayBufferView[], signal?: AbortSignal}} [options]
   * @returns {Promise<{msg: any, buffers: DataView[]}>}
   */
  request(type, body = {}, options = {}) {
    const { timeout = DEFAULT_TIMEOUT, buffers, signal } = options;
    const uuid = uid();
    return new Promise((/** @type {Waiting["resolve"]} */ resolve, reject) => {
      if (signal?.aborted) {
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
        this.cancel(uuid);
        reject(new AbortError(type));
      };
      const timer = setTimeout(() => {
        settle();
        reject(new TimeoutError(type));
      }, timeout);
      if (signal) signal.addEventListener("abort", onAbort);
      this.pending.set(uuid, { resolve, reject, settle });
      const content = { ...this.fields, ...body, type, uuid };
      if (buffers?.length) this.model.send(content, undefined, buffers);
      else this.model.send(content);
    });
  }

  /** @param {any} msg @param {DataView[]} buffers */
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

  /** Tell the kernel nobody waits for request `uuid` any more. @param {string} uuid */
  cancel(uuid) {
    try {
      this.model.send({ type: "cancel_request", uuid });
    } catch {
      // the widget is closed already: there is no kernel work to stop
    }
  }

  dispose() {
    this.disposed = true;
    this.model.off("msg:custom", this.listener);
    for (const [uuid, { settle }] of [...this.pending.entries()]) {
      settle();
      this.cancel(uuid);
    }
    this.pending.clear();
  }
}

/**
 * What a panel shows a person for a failed request: the kernel's own words for a refusal,
 * the locale's sentence for a timeout; anything else is a front-end bug, logged for a
 * developer with the panel's name, and shown as its message.
 * @param {unknown} err
 * @param {Record<string, string>} strings the panel's locale slice
 * @param {string} panel the panel's name, for the console
 * @returns {string}
 */
export function errorWords(err, strings, panel) {
  if (err instanceof ReplyError) return err.message;
  if (err instanceof TimeoutError) return strings.timeout || "The kernel did not answer in time.";
  console.error(`nbbatch ${panel}`, err);
  const message = /** @type {{message?: unknown} | null} */ (err)?.message;
  return String(message || err);
}
