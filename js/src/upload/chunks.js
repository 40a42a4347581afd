// @ts-check
// Sending one file to the kernel in chunks: "begin" (the kernel may refuse it: too big,
// not an image), then "chunk" messages of `chunk` bytes each with the bytes as a binary
// buffer, `window` of them in flight (2 uploads x 2 x 4 MiB buffered at most), then
// "end" (the kernel checks and stores the image). The file is read one slice at a time,
// so a 50 MB file never sits in memory whole.

/**
 * @typedef {object} Pending one file on its way
 * @property {string} fid the page's id for this upload
 * @property {string} name
 * @property {number} size
 * @property {Blob} file
 * @property {number} sent bytes the kernel has
 * @property {string} [state]
 */

/**
 * @param {import("../shared/channel.js").Channel} channel
 * @param {Pending} p
 * @param {{chunk: number, window: number, timeout: number, progress?: () => void}} options
 * @returns {Promise<string | null>} the stored image's id, or null when the kernel refused it
 */
export async function sendFile(channel, p, { chunk, window, timeout, progress = () => {} }) {
  const { msg: begun } = await channel.request("begin", { fid: p.fid, name: p.name, size: p.size });
  if (begun.refused) return null;
  const count = begun.chunks;
  let next = 0;
  let refused = false;
  const one = async () => {
    while (next < count && !refused) {
      const index = next++;
      const start = index * chunk;
      const data = await p.file.slice(start, Math.min(p.size, start + chunk)).arrayBuffer();
      const { msg } = await channel.request("chunk", { fid: p.fid, index }, { timeout, buffers: [data] });
      if (msg.refused) {
        refused = true;
        return;
      }
      p.sent += data.byteLength;
      progress();
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, count) }, one));
  if (refused) return null;
  p.state = "checking";
  progress();
  const { msg: ended } = await channel.request("end", { fid: p.fid }, { timeout });
  return ended.refused ? null : ended.id;
}
