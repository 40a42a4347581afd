// @ts-check
// Downloads shared by the gallery and the grid: a ZIP the kernel built off its loop is
// fetched in ≤ 4 MiB pieces (one message each, under the server's size limit) and handed
// to the browser as one Blob; the object URL is revoked once the download has started.

export const ZIP_TIMEOUT = 15 * 60 * 1000;

/** A buffer of a message as bytes (a Blob part). @param {ArrayBufferView} view */
export function bytesOf(view) {
  // message buffers are plain ArrayBuffers, never shared memory
  return /** @type {Uint8Array<ArrayBuffer>} */ (new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
}

/** @param {number} n bytes */
export function size(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

// Save `blob` as `name` from within `host` (an element in the page); returns the timer
// that revokes its URL, so a view can clear it when it goes away.
/** @param {Element} host @param {Blob} blob @param {string} name */
export function saveBlob(host, blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  host.append(a);
  a.click();
  a.remove();
  // the browser has the bytes once the download started; let them go a little later
  return setTimeout(() => URL.revokeObjectURL(url), 20000);
}

// Ask for a ZIP (`type` + `body`), then its pieces; `progress(pct)` after each piece.
// Resolves {blob, name, size} or {path, size} (saved next to the notebook: too big).
// `signal` (an AbortSignal) abandons it: the request waiting is cancelled in the kernel
// (a ZIP still being built is not kept) and a ZIP already built is dropped there.
/**
 * @param {import("./channel.js").Channel} channel
 * @param {string} type
 * @param {Record<string, unknown>} body
 * @param {(pct: number) => void} [progress]
 * @param {AbortSignal} [signal]
 * @returns {Promise<{blob?: Blob, name?: string, path?: string, size: number}>} the ZIP's
 *   bytes, or where the kernel saved it (too big to send)
 */
export async function fetchZip(channel, type, body, progress, signal) {
  const { msg } = await channel.request(type, body, { timeout: ZIP_TIMEOUT, signal });
  if (msg.path) return { path: msg.path, size: msg.size };
  const parts = [];
  try {
    for (let i = 0; i < msg.chunks; i++) {
      const { buffers } = await channel.request("chunk", { job: msg.job, index: i }, { timeout: ZIP_TIMEOUT, signal });
      parts.push(bytesOf(buffers[0]));
      if (progress) progress(Math.round(((i + 1) * 100) / msg.chunks));
    }
  } catch (err) {
    // nobody fetches the rest: the kernel drops its copy now rather than in an hour
    channel.request("zip_done", { job: msg.job }).catch(() => {});
    throw err;
  }
  return { blob: new Blob(parts, { type: "application/zip" }), name: msg.name, size: msg.size };
}
