// @ts-check
// Files of a drop, folders walked in the browser (webkitGetAsEntry). The entries must be
// taken while the drop event runs: the DataTransfer is emptied when it returns.

export function filesFromDrop(dataTransfer) {
  const items = Array.from(dataTransfer.items || []);
  const entries = items.map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (!entries.length || entries.some((e) => !e)) {
    // no entry API (or a synthetic drop): the flat file list is all there is
    return Promise.resolve(Array.from(dataTransfer.files || []).map((file) => ({ file, name: file.name })));
  }
  return Promise.all(entries.map((e) => walk(e))).then((lists) => lists.flat());
}

async function walk(entry) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, name: entry.fullPath ? entry.fullPath.replace(/^\//, "") : file.name }];
  }
  if (!entry.isDirectory) return [];
  const reader = entry.createReader();
  const children = [];
  // readEntries answers in batches (100 in Chromium) until it answers an empty one
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    children.push(...batch);
  }
  children.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  const lists = [];
  for (const child of children) lists.push(await walk(child));
  return lists.flat();
}
