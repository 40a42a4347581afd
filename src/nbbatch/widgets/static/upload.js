// js/src/channel.js
var counter = 0;
function uid() {
  counter += 1;
  const rand = Math.random().toString(36).slice(2, 10);
  return `${Date.now().toString(36)}-${counter}-${rand}`;
}
var ReplyError = class extends Error {
};
var TimeoutError = class extends Error {
};
var Channel = class {
  constructor(model) {
    this.model = model;
    this.pending = /* @__PURE__ */ new Map();
    this.handlers = /* @__PURE__ */ new Map();
    this.disposed = false;
    this.listener = (msg, buffers) => this.receive(msg, buffers || []);
    model.on("msg:custom", this.listener);
  }
  on(type, fn) {
    this.handlers.set(type, fn);
  }
  request(type, body = {}, timeoutMs = 3e4) {
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
      if (!waiting) return;
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
};

// js/src/inputs/channel.js
var BufferChannel = class extends Channel {
  request(type, body = {}, timeoutMs = 3e4, buffers = void 0) {
    if (!buffers) return super.request(type, body, timeoutMs);
    const send = this.model.send;
    this.model.send = (content) => send.call(this.model, content, void 0, buffers);
    try {
      return super.request(type, body, timeoutMs);
    } finally {
      this.model.send = send;
    }
  }
};

// js/src/icons.js
var wrap = (body, fill = false) => `<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false" fill="${fill ? "currentColor" : "none"}" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;
var icons = {
  history: wrap('<path d="M2.6 8a5.4 5.4 0 1 0 1.6-3.8"/><path d="M2.4 2.6v2.6H5"/><path d="M8 5v3.2l2.2 1.4"/>'),
  download: wrap('<path d="M8 2.5v8"/><path d="M4.8 7.6L8 10.8l3.2-3.2"/><path d="M3 13.5h10"/>'),
  edit: wrap('<path d="M10.8 2.7l2.5 2.5L6 12.5 3 13l.5-3z"/><path d="M9.3 4.2l2.5 2.5"/>'),
  save: wrap('<path d="M3 8.5l3.2 3.2L13 4.8"/>'),
  cancel: wrap('<path d="M4.5 4.5l7 7M11.5 4.5l-7 7"/>'),
  retry: wrap('<path d="M12.9 9.2A5 5 0 1 1 11.6 4.4"/><path d="M12.2 1.9v3h-3"/>'),
  next: wrap('<path d="M3 2.8h10"/><path d="M8 13.2V5.6"/><path d="M4.8 8.6L8 5.4l3.2 3.2"/>'),
  duplicate: wrap('<rect x="5.5" y="5.5" width="7.5" height="7.5" rx="1.5"/><path d="M3 10.5V4a1 1 0 0 1 1-1h6.5"/>'),
  trash: wrap('<path d="M2.8 4.5h10.4"/><path d="M6.3 4.5V2.9h3.4v1.6"/><path d="M4.4 4.5l.7 8.6h5.8l.7-8.6"/>'),
  play: wrap('<path d="M5 3.2v9.6L12.8 8z"/>', true),
  pause: wrap('<path d="M5.5 3.5v9M10.5 3.5v9"/>'),
  stop: wrap('<rect x="4" y="4" width="8" height="8" rx="1.2"/>', true),
  search: wrap('<circle cx="7" cy="7" r="4.2"/><path d="M10.2 10.2l3.3 3.3"/>'),
  grip: '<svg viewBox="0 0 10 16" width="10" height="16" aria-hidden="true" focusable="false" fill="currentColor"><circle cx="3" cy="4" r="1.2"/><circle cx="7" cy="4" r="1.2"/><circle cx="3" cy="8" r="1.2"/><circle cx="7" cy="8" r="1.2"/><circle cx="3" cy="12" r="1.2"/><circle cx="7" cy="12" r="1.2"/></svg>',
  image: wrap('<rect x="2.5" y="3" width="11" height="10" rx="1.5"/><circle cx="6" cy="6.5" r="1.2"/><path d="M3 12l3.5-3.5 2.5 2.5 1.5-1.5L13 12"/>')
};

// js/src/inputs/icons.js
var wrap2 = (body) => `<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;
var icons2 = {
  ...icons,
  folder: wrap2('<path d="M2.5 4.5a1 1 0 0 1 1-1h3l1.5 1.5h4.5a1 1 0 0 1 1 1v6a1 1 0 0 1-1 1h-9a1 1 0 0 1-1-1z"/>'),
  upload: wrap2('<path d="M8 10.5V2.8"/><path d="M4.8 5.8L8 2.6l3.2 3.2"/><path d="M2.8 10.5v1.7a1 1 0 0 0 1 1h8.4a1 1 0 0 0 1-1v-1.7"/>'),
  sparkle: wrap2('<path d="M8 2.5l1.3 3.2 3.2 1.3-3.2 1.3L8 11.5 6.7 8.3 3.5 7l3.2-1.3z"/><path d="M12.5 11.5l.5 1.2 1.2.5-1.2.5-.5 1.2-.5-1.2-1.2-.5 1.2-.5z"/>'),
  gear: wrap2('<circle cx="8" cy="8" r="2.2"/><path d="M8 1.8v1.6M8 12.6v1.6M1.8 8h1.6M12.6 8h1.6M3.6 3.6l1.1 1.1M11.3 11.3l1.1 1.1M3.6 12.4l1.1-1.1M11.3 4.7l1.1-1.1"/>'),
  undo: wrap2('<path d="M5.5 3.5L2.8 6.2l2.7 2.7"/><path d="M3 6.2h6.5a3.5 3.5 0 0 1 0 7H7"/>')
};

// js/src/util.js
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === void 0 || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "html") el.innerHTML = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== void 0) el.append(child);
  }
  return el;
}
function fmt(strings, key, values = {}) {
  const text = strings[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => name in values ? String(values[name]) : `{${name}}`);
}
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// js/src/upload/drop.js
function filesFromDrop(dataTransfer) {
  const items = Array.from(dataTransfer.items || []);
  const entries = items.map((item) => item.webkitGetAsEntry ? item.webkitGetAsEntry() : null);
  if (!entries.length || entries.some((e) => !e)) {
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
  for (; ; ) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    children.push(...batch);
  }
  children.sort((a, b) => a.name.localeCompare(b.name, void 0, { numeric: true }));
  const lists = [];
  for (const child of children) lists.push(await walk(child));
  return lists.flat();
}

// js/src/upload/index.js
var FILE_WORKERS = 2;
var WINDOW = 2;
var SLOW_MS = 18e4;
var counter2 = 0;
var newFid = () => `f${Date.now().toString(36)}-${++counter2}-${Math.random().toString(36).slice(2, 8)}`;
var UploadView = class {
  constructor(model, el) {
    this.model = model;
    this.channel = new BufferChannel(model);
    this.strings = {};
    this.limits = { chunk: 4 * 1024 * 1024, max_files: 50, max_bytes: 10485760, formats: [] };
    this.items = [];
    this.refused = [];
    this.pending = [];
    this.queue = [];
    this.workers = 0;
    this.thumbs = /* @__PURE__ */ new Map();
    this.asked = /* @__PURE__ */ new Set();
    this.focusId = null;
    this.root = h("div", { class: "nbb-in nbb-up", "data-lm-suppress-shortcuts": "true" });
    el.append(this.root);
    this.onVersion = () => this.refresh();
    this.onLang = () => this.start();
    model.on("change:version", this.onVersion);
    model.on("change:lang", this.onLang);
    this.start();
  }
  async start() {
    this.root.replaceChildren(h("div", { class: "nbb-up-boot", text: "…" }));
    try {
      const { msg } = await this.channel.request("hello");
      this.strings = msg.strings;
      this.limits = msg.limits;
      this.items = msg.items;
      this.refused = msg.refused;
      this.build();
      this.paint();
    } catch (err) {
      this.root.replaceChildren(h("div", { class: "nbb-up-error", role: "alert", text: this.words(err) }));
    }
  }
  async refresh() {
    if (!this.list) return;
    try {
      const { msg } = await this.channel.request("list");
      this.items = msg.items;
      this.refused = msg.refused;
      this.paint();
    } catch (err) {
      this.showError(err);
    }
  }
  words(err) {
    if (err instanceof ReplyError) return err.message;
    if (err instanceof TimeoutError) return this.strings.timeout || "The kernel did not answer in time.";
    console.error("nbbatch upload", err);
    return String(err && err.message || err);
  }
  showError(err) {
    if (!this.errorBox) return;
    setText(this.errorText, this.words(err));
    this.errorBox.hidden = false;
  }
  // ------------------------------------------------------------------ layout
  build() {
    const s = this.strings;
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    const picker = (folder) => {
      const input = h("input", { type: "file", multiple: true, hidden: true, accept: folder ? void 0 : "image/*" });
      if (folder) input.setAttribute("webkitdirectory", "");
      input.addEventListener("change", () => {
        const files = Array.from(input.files || []).map((f) => ({ file: f, name: f.webkitRelativePath || f.name }));
        input.value = "";
        this.enqueue(files.filter((f) => !hidden(f.name)));
      });
      return input;
    };
    this.fileInput = picker(false);
    this.folderInput = picker(true);
    const button = (key, icon, onclick, cls = "") => h("button", { type: "button", class: `nbb-btn nbb-small ${cls}`, "aria-label": s[key], onclick, html: `${icons2[icon]}<span>${s[key]}</span>` });
    this.addBtn = button("add_images", "image", () => this.fileInput.click());
    this.folderBtn = button("add_folder", "folder", () => this.folderInput.click());
    this.serverBtn = button("choose_server_folder", "folder", () => this.act("server_folder"));
    this.clearBtn = button("clear", "trash", () => this.act("clear"), "nbb-danger");
    this.countText = h("span", { class: "nbb-up-count", role: "status", "aria-live": "polite" });
    const head = h(
      "div",
      { class: "nbb-up-head" },
      h("span", { class: "nbb-up-title", text: s.upload }),
      this.countText,
      h("span", { class: "nbb-up-spring" }),
      this.addBtn,
      this.folderBtn,
      this.serverBtn,
      this.clearBtn
    );
    const formats = (this.limits.formats || []).join(" / ");
    this.zone = h(
      "div",
      {
        class: "nbb-up-zone",
        role: "button",
        tabindex: 0,
        "aria-label": s.drop_here,
        onclick: (e) => {
          if (e.target === this.zone || e.target.closest(".nbb-up-zone-text")) this.fileInput.click();
        },
        onkeydown: (e) => {
          if ((e.key === "Enter" || e.key === " ") && e.target === this.zone) {
            e.preventDefault();
            this.fileInput.click();
          }
        }
      },
      h(
        "div",
        { class: "nbb-up-zone-text" },
        h("span", { class: "nbb-up-zone-icon", html: icons2.upload }),
        h("strong", { text: s.drop_here }),
        h("span", { class: "nbb-up-hint", text: fmt(s, "drop_hint", { formats, n: this.limits.max_files, size: mb(this.limits.max_bytes) }) })
      )
    );
    this.list = h("div", { class: "nbb-up-list", role: "list", "aria-label": s.upload });
    this.zone.append(this.list);
    for (const type of ["dragenter", "dragover"]) {
      this.zone.addEventListener(type, (e) => {
        if (!hasFiles(e)) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
        this.zone.classList.add("nbb-up-over");
      });
    }
    this.zone.addEventListener("dragleave", (e) => {
      if (!this.zone.contains(e.relatedTarget)) this.zone.classList.remove("nbb-up-over");
    });
    this.zone.addEventListener("drop", (e) => {
      this.zone.classList.remove("nbb-up-over");
      if (!hasFiles(e)) return;
      e.preventDefault();
      filesFromDrop(e.dataTransfer).then(
        (files) => this.enqueue(files.filter((f) => !hidden(f.name))),
        (err) => this.showError(err)
      );
    });
    this.errorText = h("span", { class: "nbb-up-error-text" });
    this.errorBox = h(
      "div",
      { class: "nbb-up-error", role: "alert", hidden: true },
      this.errorText,
      h("button", { type: "button", class: "nbb-link", text: s.dismiss, onclick: () => this.errorBox.hidden = true })
    );
    this.refusedBox = h("div", { class: "nbb-up-refused", role: "alert", hidden: true });
    this.offersBox = h("div", { class: "nbb-up-offers", role: "region", "aria-label": s.remix, hidden: true });
    this.noteBox = h("div", { class: "nbb-up-note", role: "status", "aria-live": "polite" });
    this.root.replaceChildren(head, this.errorBox, this.zone, this.offersBox, this.noteBox, this.refusedBox, this.fileInput, this.folderInput);
  }
  paint() {
    const s = this.strings;
    const total = this.items.length;
    setText(this.countText, total ? fmt(s, "n_images", { n: total }) : "");
    this.clearBtn.disabled = total === 0 && this.refused.length === 0;
    this.zone.classList.toggle("nbb-up-has", total + this.pending.length > 0);
    const tiles = this.items.map((item, i) => this.tile(item, i, total));
    for (const p of this.pending) tiles.push(this.pendingTile(p));
    this.list.replaceChildren(...tiles);
    if (this.focusId) {
      const t = this.list.querySelector(`[data-id="${CSS.escape(this.focusId)}"]`);
      if (t) t.focus();
      this.focusId = null;
    }
    this.paintRefused();
    this.paintOffers();
    this.askThumbs();
  }
  paintOffers() {
    const s = this.strings;
    const offers = this.items.filter((i) => i.embedded);
    this.offersBox.hidden = !offers.length;
    this.offersBox.replaceChildren(
      ...offers.map((item) => {
        const e = item.embedded;
        const source = e.label;
        return h(
          "div",
          { class: "nbb-up-offer", "data-id": item.id },
          h("div", { class: "nbb-up-offer-text", title: e.prompt }, h("strong", { text: item.name }), h("span", { text: fmt(s, "embedded_found", { source, prompt: e.prompt }) })),
          e.remix ? h("button", { type: "button", class: "nbb-btn nbb-small nbb-primary", text: s.remix, "aria-label": fmt(s, "remix_named", { name: item.name }), onclick: () => this.remix(item) }) : null,
          h("button", { type: "button", class: "nbb-btn nbb-small", text: s.use_as_reference, "aria-label": fmt(s, "use_as_reference_named", { name: item.name }), onclick: () => this.act("keep", { id: item.id }) })
        );
      })
    );
  }
  async remix(item) {
    try {
      await this.channel.request("remix", { id: item.id });
      setText(this.noteBox, fmt(this.strings, "upload_remixed", { name: item.name }));
    } catch (err) {
      this.showError(err);
    }
  }
  tile(item, index, total) {
    const s = this.strings;
    const thumb = this.thumbs.get(item.id);
    const img = thumb ? h("img", { src: thumb.url, alt: "", draggable: "false", "data-source": thumb.kernel ? "kernel" : "browser" }) : h("span", { class: "nbb-up-ph", html: icons2.image });
    const label = fmt(s, "image_n", { n: index + 1, total, name: item.name });
    const tile = h(
      "div",
      {
        class: "nbb-up-tile",
        role: "listitem",
        tabindex: 0,
        draggable: "true",
        "data-id": item.id,
        "aria-label": label,
        title: `${item.name}
${item.width}×${item.height} ${item.format} · ${mb(item.size)}
${s.move_hint}`
      },
      h("div", { class: "nbb-up-img" }, img, h("span", { class: "nbb-up-num", text: String(index + 1) })),
      h("div", { class: "nbb-up-name", text: item.name }),
      h("div", { class: "nbb-up-meta", text: `${item.width}×${item.height} · ${item.format}` }),
      h("button", {
        type: "button",
        class: "nbb-icon nbb-danger nbb-up-remove",
        "aria-label": fmt(s, "remove_named", { name: item.name }),
        title: s.remove,
        html: icons2.cancel,
        onclick: (e) => {
          e.stopPropagation();
          this.act("remove", { id: item.id });
        }
      })
    );
    tile.addEventListener("keydown", (e) => this.onTileKey(e, item, index));
    tile.addEventListener("dragstart", (e) => {
      e.dataTransfer.setData("application/x-nbb-ref", item.id);
      e.dataTransfer.effectAllowed = "move";
      tile.classList.add("nbb-up-dragging");
    });
    tile.addEventListener("dragend", () => tile.classList.remove("nbb-up-dragging"));
    tile.addEventListener("dragover", (e) => {
      if (!e.dataTransfer.types.includes("application/x-nbb-ref")) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "move";
      tile.classList.add("nbb-up-target");
    });
    tile.addEventListener("dragleave", () => tile.classList.remove("nbb-up-target"));
    tile.addEventListener("drop", (e) => {
      const id = e.dataTransfer.getData("application/x-nbb-ref");
      if (!id) return;
      e.preventDefault();
      e.stopPropagation();
      tile.classList.remove("nbb-up-target");
      if (id !== item.id) {
        this.focusId = id;
        this.act("move", { id, index });
      }
    });
    return tile;
  }
  onTileKey(e, item, index) {
    if (e.target !== e.currentTarget) return;
    const last = this.items.length - 1;
    let to = null;
    if (e.altKey && (e.key === "ArrowLeft" || e.key === "ArrowUp")) to = Math.max(0, index - 1);
    else if (e.altKey && (e.key === "ArrowRight" || e.key === "ArrowDown")) to = Math.min(last, index + 1);
    else if (e.key === "Delete" || e.key === "Backspace") {
      e.preventDefault();
      const next = this.items[index + 1] || this.items[index - 1];
      this.focusId = next ? next.id : null;
      this.act("remove", { id: item.id });
      return;
    } else if (!e.altKey && (e.key === "ArrowLeft" || e.key === "ArrowRight")) {
      const sib = this.list.children[index + (e.key === "ArrowLeft" ? -1 : 1)];
      if (sib) sib.focus();
      e.preventDefault();
      return;
    }
    if (to === null) return;
    e.preventDefault();
    if (to === index) return;
    this.focusId = item.id;
    this.act("move", { id: item.id, index: to });
  }
  pendingTile(p) {
    const s = this.strings;
    const pct = p.size ? Math.floor(100 * p.sent / p.size) : 0;
    const text = p.state === "checking" ? fmt(s, "checking", { name: p.name }) : fmt(s, "uploading", { name: p.name, pct });
    p.bar = h("i", { style: `width:${pct}%` });
    p.label = h("div", { class: "nbb-up-meta", text: p.state === "checking" ? "…" : `${pct}%` });
    return h(
      "div",
      { class: "nbb-up-tile nbb-up-pending", role: "listitem", "aria-label": text, "aria-busy": "true" },
      h("div", { class: "nbb-up-img" }, p.url ? h("img", { src: p.url, alt: "", draggable: "false", "data-source": "browser" }) : h("span", { class: "nbb-up-ph", html: icons2.image })),
      h("div", { class: "nbb-up-name", text: p.name }),
      p.label,
      h("div", { class: "nbb-up-bar", role: "progressbar", "aria-label": text, "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 }, p.bar)
    );
  }
  progress(p) {
    if (!p.bar) return;
    const pct = p.size ? Math.floor(100 * p.sent / p.size) : 0;
    p.bar.style.width = `${pct}%`;
    p.bar.parentElement.setAttribute("aria-valuenow", String(pct));
    const text = p.state === "checking" ? fmt(this.strings, "checking", { name: p.name }) : fmt(this.strings, "uploading", { name: p.name, pct });
    p.bar.parentElement.setAttribute("aria-label", text);
    setText(p.label, p.state === "checking" ? "…" : `${pct}%`);
  }
  paintRefused() {
    const s = this.strings;
    const box = this.refusedBox;
    if (!this.refused.length) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    box.hidden = false;
    box.replaceChildren(
      h(
        "div",
        { class: "nbb-up-refused-head" },
        h("strong", { text: fmt(s, "refused_title", { n: this.refused.length }) }),
        h("button", { type: "button", class: "nbb-link", text: s.dismiss, "aria-label": s.dismiss, onclick: () => this.act("dismiss") })
      ),
      h(
        "ul",
        {},
        ...this.refused.map((r) => h("li", {}, h("span", { class: "nbb-up-refused-name", text: r.name }), h("span", { text: ` — ${r.reason}` })))
      )
    );
  }
  // ------------------------------------------------------------------ thumbnails
  async askThumbs() {
    const want = this.items.filter((i) => !(this.thumbs.get(i.id) || {}).kernel && !this.asked.has(i.id)).map((i) => i.id);
    if (!want.length) return;
    for (const id of want) this.asked.add(id);
    try {
      const { msg, buffers } = await this.channel.request("thumbs", { ids: want }, SLOW_MS);
      msg.ids.forEach((id, i) => {
        const b = buffers[i];
        const blob = new Blob([new Uint8Array(b.buffer, b.byteOffset, b.byteLength)], { type: "image/webp" });
        const old = this.thumbs.get(id);
        if (old && old.own) URL.revokeObjectURL(old.url);
        this.thumbs.set(id, { url: URL.createObjectURL(blob), kernel: true, own: true });
        const img = this.list.querySelector(`[data-id="${CSS.escape(id)}"] img`);
        if (img) {
          img.src = this.thumbs.get(id).url;
          img.dataset.source = "kernel";
        } else {
          const ph = this.list.querySelector(`[data-id="${CSS.escape(id)}"] .nbb-up-ph`);
          if (ph) ph.replaceWith(h("img", { src: this.thumbs.get(id).url, alt: "", draggable: "false", "data-source": "kernel" }));
        }
      });
    } catch (err) {
      for (const id of want) this.asked.delete(id);
      this.showError(err);
    }
  }
  // ------------------------------------------------------------------ sending
  enqueue(files) {
    for (const { file, name } of files) {
      const p = { fid: newFid(), name, size: file.size, file, sent: 0, state: "waiting", url: null };
      if (/^image\//.test(file.type)) p.url = URL.createObjectURL(file);
      this.pending.push(p);
      this.queue.push(p);
    }
    this.paint();
    while (this.workers < FILE_WORKERS && this.queue.length) {
      this.workers += 1;
      this.work().finally(() => this.workers -= 1);
    }
  }
  async work() {
    while (this.queue.length) {
      const p = this.queue.shift();
      let id = null;
      try {
        id = await this.send(p);
      } catch (err) {
        this.showError(err);
        this.channel.request("abort", { fid: p.fid }).catch(() => {
        });
      }
      this.pending = this.pending.filter((x) => x !== p);
      if (id && p.url && !this.thumbs.has(id)) this.thumbs.set(id, { url: p.url, kernel: false, own: false });
      else if (p.url && !id) URL.revokeObjectURL(p.url);
      this.paint();
    }
  }
  // One file: begin, chunks (WINDOW in flight), end. Resolves to its id, or null when
  // the kernel refused it (the reason is then in the refused list).
  async send(p) {
    const chunk = this.limits.chunk;
    const { msg: begun } = await this.channel.request("begin", { fid: p.fid, name: p.name, size: p.size });
    if (begun.refused) return null;
    const count = begun.chunks;
    let next = 0;
    let refused = false;
    const one = async () => {
      while (next < count && !refused) {
        const index = next++;
        const start = index * chunk;
        const data = await p.file.slice(start, Math.min(p.size, start + chunk)).arrayBuffer();
        const { msg } = await this.channel.request("chunk", { fid: p.fid, index }, SLOW_MS, [data]);
        if (msg.refused) {
          refused = true;
          return;
        }
        p.sent += data.byteLength;
        this.progress(p);
      }
    };
    await Promise.all(Array.from({ length: Math.min(WINDOW, count) }, one));
    if (refused) return null;
    p.state = "checking";
    this.progress(p);
    const { msg: ended } = await this.channel.request("end", { fid: p.fid }, SLOW_MS);
    return ended.refused ? null : ended.id;
  }
  async act(type, body = {}) {
    try {
      await this.channel.request(type, body);
    } catch (err) {
      this.showError(err);
    }
  }
  dispose() {
    this.model.off("change:version", this.onVersion);
    this.model.off("change:lang", this.onLang);
    this.channel.dispose();
    this.queue = [];
    for (const t of this.thumbs.values()) if (t.own) URL.revokeObjectURL(t.url);
    this.root.remove();
  }
};
function hasFiles(e) {
  return !!e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
}
function hidden(name) {
  return name.split("/").some((part) => part.startsWith("."));
}
function mb(n) {
  const v = n / (1024 * 1024);
  return `${v >= 10 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)} MB`;
}
var index_default = {
  render({ model, el }) {
    const view = new UploadView(model, el);
    return () => view.dispose();
  }
};
export {
  index_default as default
};
