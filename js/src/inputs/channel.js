import { Channel } from "../channel.js";

// The studio's request/reply channel, plus binary buffers on a request (upload chunks).
// Buffers go as the third argument of model.send: as the second they are silently dropped.
export class BufferChannel extends Channel {
  request(type, body = {}, timeoutMs = 30000, buffers = undefined) {
    if (!buffers) return super.request(type, body, timeoutMs);
    const send = this.model.send;
    // Channel.request calls model.send(content) once, synchronously: add the buffers there.
    this.model.send = (content) => send.call(this.model, content, undefined, buffers);
    try {
      return super.request(type, body, timeoutMs);
    } finally {
      this.model.send = send;
    }
  }
}
