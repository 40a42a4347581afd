// Request/reply over anywidget custom messages: every request carries a uuid and the
// kernel answers each one exactly once ({type: "reply", uuid, ok, ...}). Unsolicited
// messages (patch, notice) go to the handlers registered with on().

let counter = 0;
function uid() {
  counter += 1;
  // crypto.randomUUID needs a secure context; a Jupyter server on plain http has none.
  const rand = Math.random().toString(36).slice(2, 10);
  return `${Date.now().toString(36)}-${counter}-${rand}`;
}

export class ReplyError extends Error {}
export class TimeoutError extends Error {}

export class Channel {
  constructor(model) {
    this.model = model;
    this.pending = new Map();
    this.handlers = new Map();
    this.disposed = false;
    this.listener = (msg, buffers) => this.receive(msg, buffers || []);
    model.on("msg:custom", this.listener);
  }

  on(type, fn) {
    this.handlers.set(type, fn);
  }

  request(type, body = {}, timeoutMs = 30000) {
    const uuid = uid();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(uuid);
        reject(new TimeoutError(type));
      }, timeoutMs);
      this.pending.set(uuid, { resolve, reject, timer });
      this.model.send({ type, uuid, ...body });
    });
  }

  receive(msg, buffers) {
    if (this.disposed || !msg || typeof msg !== "object") return;
    if (msg.type === "reply") {
      const waiting = this.pending.get(msg.uuid);
      if (!waiting) return; // another view of the same widget asked
      this.pending.delete(msg.uuid);
      clearTimeout(waiting.timer);
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
    for (const { timer } of this.pending.values()) clearTimeout(timer);
    this.pending.clear();
  }
}
