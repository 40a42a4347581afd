// @ts-check
// Files of a drop, folders walked in the browser (webkitGetAsEntry). The entries must be
// taken while the drop event runs: the DataTransfer is emptied when it returns.

/** @typedef {{file: File, name: string}} Picked a file, named by its path in a dropped folder */

/** @param {DataTransfer} dataTransfer @returns {Promise<Picked[]>} */
export function filesFromDrop(dataTransfer) {
  const items = Array.from(dataTransfer.items || []);
  const entries = items.map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (!entries.length || entries.some((e) => !e)) {
    // no entry API (or a synthetic drop): the flat file list is all there is
    return Promise.resolve(Array.from(dataTransfer.files || []).map((file) => ({ file, name: file.name })));
  }
  return Promise.all(entries.map((e) => walk(/** @type {FileSystemEntry} */ (e)))).then((lists) => lists.flat());
}

/** @param {FileSystemEntry} entry @returns {Promise<Picked[]>} */
async function walk(entry) {
  if (entry.isFile) {
    /** @type {File} */
    const file = await new Promise((resolve, reject) => /** @type {FileSystemFileEntry} */ (entry).file(resolve, reject));
    return [{ file, name: entry.fullPath ? entry.fullPath.replace(/^\//, "") : file.name }];
  }
  if (!entry.isDirectory) return [];
  const reader = /** @type {FileSystemDirectoryEntry} */ (entry).createReader();
  /** @type {FileSystemEntry[]} */
  const children = [];
  // readEntries answers in batches (100 in Chromium) until it answers an empty one
  for (;;) {
    /** @type {FileSystemEntry[]} */
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    children.push(...batch);
  }
  children.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  /** @type {Picked[][]} */
  const lists = [];
  for (const child of children) lists.push(await walk(child));
  return lists.flat();
}
