// @ts-check
import { Channel, errorWords } from "../shared/channel.js";
import { bytesOf } from "../shared/download.js";
import { icons } from "../shared/icons.js";
import { fmt, h, setText, widgetOf } from "../shared/util.js";
import { sendFile } from "./chunks.js";
import { filesFromDrop } from "./drop.js";

// The Upload drop zone. The kernel holds the set (upload.references); this view shows it,
// sends new files in chunks (the server drops any message over 10 MiB) and asks for
// the kernel's thumbnails, showing the browser's own rendering of a file until they come.

const FILE_WORKERS = 2; // files sent at once
const WINDOW = 2; // chunks of one file in flight: 2 workers × 2 × 4 MiB buffered at most
const SLOW_MS = 180000; // a chunk or a decode may wait behind a busy cell

/** @typedef {import("../shared/util.js").Model} Model */
/**
 * @template T
 * @typedef {import("../shared/channel.js").Answer<T>} Answer
 */

/**
 * Generation parameters found in an image's metadata (A1111, ComfyUI, ...).
 * @typedef {object} Embedded
 * @property {string} source
 * @property {string} label the source as a person reads it
 * @property {string} prompt clipped
 * @property {boolean} remix whether a task can be made from it
 */

/**
 * One image of the kernel's set.
 * @typedef {object} Item
 * @property {string} id its sha256
 * @property {string} name
 * @property {number} width
 * @property {number} height
 * @property {string} format
 * @property {number} size bytes
 * @property {Embedded} [embedded]
 */

/**
 * @typedef {{name: string, reason: string}} Refusal a file the kernel would not take, and why
 * @typedef {{items: Item[], refused: Refusal[]}} Items the kernel's set (`list`, and in `hello`)
 * @typedef {{chunk: number, max_files: number, max_bytes: number, formats: string[]}} Limits
 * @typedef {Items & {strings: Record<string, string>, limits: Limits}} Hello
 * @typedef {{url: string, kernel: boolean, own: boolean}} Thumb an image's thumbnail: the kernel's, or the browser's rendering of the file; `own`: this view made its object URL
 * @typedef {import("./drop.js").Picked} Picked
 */

/**
 * A file of this view on its way, with its tile's parts while it is drawn.
 * @typedef {import("./chunks.js").Pending & {url: string | null, bar?: HTMLElement, label?: HTMLElement}} Upload
 */

let counter = 0;
const newFid = () => `f${Date.now().toString(36)}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;

class UploadView {
  /** @param {Model} model @param {HTMLElement} el */
  constructor(model, el) {
    this.model = model;
    this.channel = new Channel(model);
    /** @type {Record<string, string>} */
    this.strings = {};
    /** @type {Limits} */
    this.limits = { chunk: 4 * 1024 * 1024, max_files: 50, max_bytes: 10485760, formats: [] };
    /** @type {Item[]} */
    this.items = []; // the kernel's set
    /** @type {Refusal[]} */
    this.refused = [];
    /** @type {Upload[]} */
    this.pending = []; // files of this view on their way
    /** @type {Upload[]} */
    this.queue = [];
    this.workers = 0;
    /** @type {Map<string, Thumb>} */
    this.thumbs = new Map(); // image id -> its thumbnail
    /** @type {Set<string>} */
    this.asked = new Set();
    /** @type {string | null} */
    this.focusId = null;
    /** @type {HTMLDivElement} */
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
      const { msg } = /** @type {Answer<Hello>} */ (await this.channel.request("hello"));
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
      const { msg } = /** @type {Answer<Items>} */ (await this.channel.request("list"));
      this.items = msg.items;
      this.refused = msg.refused;
      this.paint();
    } catch (err) {
      this.showError(err);
    }
  }

  /** @param {unknown} err */
  words(err) {
    return errorWords(err, this.strings, "upload");
  }

  /** @param {unknown} err */
  showError(err) {
    if (!this.errorBox) return;
    setText(/** @type {HTMLSpanElement} */ (this.errorText), this.words(err));
    this.errorBox.hidden = false;
  }

  // ------------------------------------------------------------------ layout
  // The parts built here (fields typed `X | undefined` by tsc, as they are not set in the
  // constructor) exist before any event or reply that uses them: start() builds before
  // painting, and every upload begins from a control built here.
  build() {
    const s = this.strings;
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    const picker = (/** @type {boolean} */ folder) => {
      /** @type {HTMLInputElement} */
      const input = h("input", { type: "file", multiple: true, hidden: true, accept: folder ? undefined : "image/*" });
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
    /** @type {(key: string, icon: keyof typeof icons, onclick: () => void, cls?: string) => HTMLButtonElement} */
    const button = (key, icon, onclick, cls = "") =>
      h("button", { type: "button", class: `nbb-btn nbb-small ${cls}`, "aria-label": s[key], onclick, html: `${icons[icon]}<span>${s[key]}</span>` });
    this.addBtn = button("add_images", "image", () => /** @type {HTMLInputElement} */ (this.fileInput).click());
    this.folderBtn = button("add_folder", "folder", () => /** @type {HTMLInputElement} */ (this.folderInput).click());
    this.serverBtn = button("choose_server_folder", "folder", () => this.act("server_folder"));
    this.clearBtn = button("clear", "trash", () => this.act("clear"), "nbb-danger");
    /** @type {HTMLSpanElement | undefined} */
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
      this.clearBtn,
    );
    const formats = (this.limits.formats || []).join(" / ");
    this.zone = /** @type {HTMLDivElement} */ (
      h(
        "div",
        {
          class: "nbb-up-zone",
          role: "button",
          tabindex: 0,
          "aria-label": s.drop_here,
          onclick: (/** @type {MouseEvent} */ e) => {
            if (e.target === this.zone || /** @type {Element} */ (e.target).closest(".nbb-up-zone-text"))
              /** @type {HTMLInputElement} */ (this.fileInput).click();
          },
          onkeydown: (/** @type {KeyboardEvent} */ e) => {
            if ((e.key === "Enter" || e.key === " ") && e.target === this.zone) {
              e.preventDefault();
              /** @type {HTMLInputElement} */ (this.fileInput).click();
            }
          },
        },
        h(
          "div",
          { class: "nbb-up-zone-text" },
          h("span", { class: "nbb-up-zone-icon", html: icons.upload }),
          h("strong", { text: s.drop_here }),
          h("span", { class: "nbb-up-hint", text: fmt(s, "drop_hint", { formats, n: this.limits.max_files, size: mb(this.limits.max_bytes) }) }),
        ),
      )
    );
    this.list = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-up-list", role: "list", "aria-label": s.upload }));
    /** @type {HTMLDivElement} */ (this.zone).append(this.list);
    for (const type of /** @type {const} */ (["dragenter", "dragover"])) {
      /** @type {HTMLDivElement} */ (this.zone).addEventListener(type, (e) => {
        if (!hasFiles(e)) return;
        e.preventDefault();
        /** @type {DataTransfer} */ (e.dataTransfer).dropEffect = "copy"; // hasFiles: it has one
        /** @type {HTMLDivElement} */ (this.zone).classList.add("nbb-up-over");
      });
    }
    /** @type {HTMLDivElement} */ (this.zone).addEventListener("dragleave", (e) => {
      if (!(/** @type {HTMLDivElement} */ (this.zone).contains(/** @type {Node | null} */ (e.relatedTarget))))
        /** @type {HTMLDivElement} */ (this.zone).classList.remove("nbb-up-over");
    });
    /** @type {HTMLDivElement} */ (this.zone).addEventListener("drop", (e) => {
      /** @type {HTMLDivElement} */ (this.zone).classList.remove("nbb-up-over");
      if (!hasFiles(e)) return;
      e.preventDefault();
      filesFromDrop(/** @type {DataTransfer} */ (e.dataTransfer)).then(
        (files) => this.enqueue(files.filter((f) => !hidden(f.name))),
        (err) => this.showError(err),
      );
    });
    /** @type {HTMLSpanElement | undefined} */
    this.errorText = h("span", { class: "nbb-up-error-text" });
    /** @type {HTMLDivElement | undefined} */
    this.errorBox = /** @type {HTMLDivElement} */ (
      h(
        "div",
        { class: "nbb-up-error", role: "alert", hidden: true },
        this.errorText,
        // biome-ignore format: it would move the JSDoc cast off the parenthesised field
        h("button", { type: "button", class: "nbb-link", text: s.dismiss, onclick: () => (/** @type {HTMLDivElement} */ (this.errorBox).hidden = true) }),
      )
    );
    this.refusedBox = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-up-refused", role: "alert", hidden: true }));
    // images that carry generation parameters: Remix (a task) or Use as reference
    this.offersBox = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-up-offers", role: "region", "aria-label": s.remix, hidden: true }));
    this.noteBox = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-up-note", role: "status", "aria-live": "polite" }));
    this.root.replaceChildren(head, this.errorBox, this.zone, this.offersBox, this.noteBox, this.refusedBox, this.fileInput, this.folderInput);
  }

  paint() {
    const s = this.strings;
    const total = this.items.length;
    setText(/** @type {HTMLSpanElement} */ (this.countText), total ? fmt(s, "n_images", { n: total }) : "");
    /** @type {HTMLButtonElement} */ (this.clearBtn).disabled = total === 0 && this.refused.length === 0;
    /** @type {HTMLDivElement} */ (this.zone).classList.toggle("nbb-up-has", total + this.pending.length > 0);
    const tiles = this.items.map((item, i) => this.tile(item, i, total));
    for (const p of this.pending) tiles.push(this.pendingTile(p));
    /** @type {HTMLDivElement} */ (this.list).replaceChildren(...tiles);
    if (this.focusId) {
      /** @type {HTMLElement | null} */
      const t = /** @type {HTMLDivElement} */ (this.list).querySelector(`[data-id="${CSS.escape(this.focusId)}"]`);
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
    /** @type {HTMLDivElement} */ (this.offersBox).hidden = !offers.length;
    /** @type {HTMLDivElement} */ (this.offersBox).replaceChildren(
      ...offers.map((item) => {
        const e = /** @type {Embedded} */ (item.embedded);
        const source = e.label;
        return h(
          "div",
          { class: "nbb-up-offer", "data-id": item.id },
          h(
            "div",
            { class: "nbb-up-offer-text", title: e.prompt },
            h("strong", { text: item.name }),
            h("span", { text: fmt(s, "embedded_found", { source, prompt: e.prompt }) }),
          ),
          e.remix
            ? h("button", {
                type: "button",
                class: "nbb-btn nbb-small nbb-primary",
                text: s.remix,
                "aria-label": fmt(s, "remix_named", { name: item.name }),
                onclick: () => this.remix(item),
              })
            : null,
          h("button", {
            type: "button",
            class: "nbb-btn nbb-small",
            text: s.use_as_reference,
            "aria-label": fmt(s, "use_as_reference_named", { name: item.name }),
            onclick: () => this.act("keep", { id: item.id }),
          }),
        );
      }),
    );
  }

  /** @param {Item} item */
  async remix(item) {
    try {
      await this.channel.request("remix", { id: item.id });
      setText(/** @type {HTMLDivElement} */ (this.noteBox), fmt(this.strings, "upload_remixed", { name: item.name }));
    } catch (err) {
      this.showError(err);
    }
  }

  /** @param {Item} item @param {number} index @param {number} total */
  tile(item, index, total) {
    const s = this.strings;
    const thumb = this.thumbs.get(item.id);
    const img = thumb
      ? h("img", { src: thumb.url, alt: "", draggable: "false", "data-source": thumb.kernel ? "kernel" : "browser" })
      : h("span", { class: "nbb-up-ph", html: icons.image });
    const label = fmt(s, "image_n", { n: index + 1, total, name: item.name });
    /** @type {HTMLDivElement} */
    const tile = h(
      "div",
      {
        class: "nbb-up-tile",
        role: "listitem",
        tabindex: 0,
        draggable: "true",
        "data-id": item.id,
        "aria-label": label,
        title: `${item.name}\n${item.width}×${item.height} ${item.format} · ${mb(item.size)}\n${s.move_hint}`,
      },
      h("div", { class: "nbb-up-img" }, img, h("span", { class: "nbb-up-num", text: String(index + 1) })),
      h("div", { class: "nbb-up-name", text: item.name }),
      h("div", { class: "nbb-up-meta", text: `${item.width}×${item.height} · ${item.format}` }),
      h("button", {
        type: "button",
        class: "nbb-icon nbb-danger nbb-up-remove",
        "aria-label": fmt(s, "remove_named", { name: item.name }),
        title: s.remove,
        html: icons.cancel,
        onclick: (/** @type {MouseEvent} */ e) => {
          e.stopPropagation();
          this.act("remove", { id: item.id });
        },
      }),
    );
    tile.addEventListener("keydown", (e) => this.onTileKey(e, item, index));
    // a drag event's dataTransfer is null only for one made by a script
    tile.addEventListener("dragstart", (e) => {
      /** @type {DataTransfer} */ (e.dataTransfer).setData("application/x-nbb-ref", item.id);
      /** @type {DataTransfer} */ (e.dataTransfer).effectAllowed = "move";
      tile.classList.add("nbb-up-dragging");
    });
    tile.addEventListener("dragend", () => tile.classList.remove("nbb-up-dragging"));
    tile.addEventListener("dragover", (e) => {
      if (!(/** @type {DataTransfer} */ (e.dataTransfer).types.includes("application/x-nbb-ref"))) return;
      e.preventDefault();
      /** @type {DataTransfer} */ (e.dataTransfer).dropEffect = "move";
      tile.classList.add("nbb-up-target");
    });
    tile.addEventListener("dragleave", () => tile.classList.remove("nbb-up-target"));
    tile.addEventListener("drop", (e) => {
      const id = /** @type {DataTransfer} */ (e.dataTransfer).getData("application/x-nbb-ref");
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

  /** @param {KeyboardEvent} e @param {Item} item @param {number} index */
  onTileKey(e, item, index) {
    if (e.target !== e.currentTarget) return; // keys of the Remove button are its own
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
      const sib = /** @type {HTMLElement | undefined} */ (/** @type {HTMLDivElement} */ (this.list).children[index + (e.key === "ArrowLeft" ? -1 : 1)]);
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

  /** @param {Upload} p */
  pendingTile(p) {
    const s = this.strings;
    const pct = p.size ? Math.floor((100 * p.sent) / p.size) : 0;
    const text = p.state === "checking" ? fmt(s, "checking", { name: p.name }) : fmt(s, "uploading", { name: p.name, pct });
    p.bar = h("i", { style: `width:${pct}%` });
    p.label = h("div", { class: "nbb-up-meta", text: p.state === "checking" ? "…" : `${pct}%` });
    return h(
      "div",
      { class: "nbb-up-tile nbb-up-pending", role: "listitem", "aria-label": text, "aria-busy": "true" },
      h(
        "div",
        { class: "nbb-up-img" },
        p.url ? h("img", { src: p.url, alt: "", draggable: "false", "data-source": "browser" }) : h("span", { class: "nbb-up-ph", html: icons.image }),
      ),
      h("div", { class: "nbb-up-name", text: p.name }),
      p.label,
      h("div", { class: "nbb-up-bar", role: "progressbar", "aria-label": text, "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 }, p.bar),
    );
  }

  /** @param {Upload} p */
  progress(p) {
    if (!p.bar) return;
    const pct = p.size ? Math.floor((100 * p.sent) / p.size) : 0;
    p.bar.style.width = `${pct}%`;
    // its parent is the progressbar pendingTile put it in
    /** @type {HTMLElement} */ (p.bar.parentElement).setAttribute("aria-valuenow", String(pct));
    const text = p.state === "checking" ? fmt(this.strings, "checking", { name: p.name }) : fmt(this.strings, "uploading", { name: p.name, pct });
    /** @type {HTMLElement} */ (p.bar.parentElement).setAttribute("aria-label", text);
    setText(/** @type {HTMLElement} */ (p.label), p.state === "checking" ? "…" : `${pct}%`);
  }

  paintRefused() {
    const s = this.strings;
    const box = /** @type {HTMLDivElement} */ (this.refusedBox);
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
        h("button", { type: "button", class: "nbb-link", text: s.dismiss, "aria-label": s.dismiss, onclick: () => this.act("dismiss") }),
      ),
      h("ul", {}, ...this.refused.map((r) => h("li", {}, h("span", { class: "nbb-up-refused-name", text: r.name }), h("span", { text: ` — ${r.reason}` })))),
    );
  }

  // ------------------------------------------------------------------ thumbnails
  async askThumbs() {
    const want = this.items.filter((i) => !this.thumbs.get(i.id)?.kernel && !this.asked.has(i.id)).map((i) => i.id);
    if (!want.length) return;
    for (const id of want) this.asked.add(id);
    try {
      const { msg, buffers } = /** @type {Answer<{ids: string[]}>} */ (await this.channel.request("thumbs", { ids: want }, { timeout: SLOW_MS }));
      msg.ids.forEach((id, i) => {
        const b = buffers[i];
        const blob = new Blob([bytesOf(b)], { type: "image/webp" });
        const old = this.thumbs.get(id);
        if (old?.own) URL.revokeObjectURL(old.url);
        this.thumbs.set(id, { url: URL.createObjectURL(blob), kernel: true, own: true });
        /** @type {HTMLImageElement | null} */
        const img = /** @type {HTMLDivElement} */ (this.list).querySelector(`[data-id="${CSS.escape(id)}"] img`);
        if (img) {
          img.src = /** @type {Thumb} */ (this.thumbs.get(id)).url; // set just above
          img.dataset.source = "kernel";
        } else {
          const ph = /** @type {HTMLDivElement} */ (this.list).querySelector(`[data-id="${CSS.escape(id)}"] .nbb-up-ph`);
          if (ph) ph.replaceWith(h("img", { src: /** @type {Thumb} */ (this.thumbs.get(id)).url, alt: "", draggable: "false", "data-source": "kernel" }));
        }
      });
    } catch (err) {
      for (const id of want) this.asked.delete(id);
      this.showError(err);
    }
  }

  // ------------------------------------------------------------------ sending
  /** @param {Picked[]} files */
  enqueue(files) {
    for (const { file, name } of files) {
      /** @type {Upload} */
      const p = { fid: newFid(), name, size: file.size, file, sent: 0, state: "waiting", url: null };
      if (/^image\//.test(file.type)) p.url = URL.createObjectURL(file); // shown at once
      this.pending.push(p);
      this.queue.push(p);
    }
    this.paint();
    while (this.workers < FILE_WORKERS && this.queue.length) {
      this.workers += 1;
      this.work().finally(() => (this.workers -= 1));
    }
  }

  async work() {
    while (this.queue.length) {
      const p = /** @type {Upload} */ (this.queue.shift()); // the queue is not empty
      let id = null;
      try {
        id = await this.send(p);
      } catch (err) {
        this.showError(err);
        this.channel.request("abort", { fid: p.fid }).catch(() => {});
      }
      this.pending = this.pending.filter((x) => x !== p);
      if (id && p.url && !this.thumbs.has(id)) this.thumbs.set(id, { url: p.url, kernel: false, own: false });
      else if (p.url && !id) URL.revokeObjectURL(p.url);
      this.paint();
    }
  }

  // One file: begin, chunks, end (see chunks.js). Resolves to its id, or null when the
  // kernel refused it (the reason is then in the refused list).
  /** @param {Upload} p */
  send(p) {
    return sendFile(this.channel, p, { chunk: this.limits.chunk, window: WINDOW, timeout: SLOW_MS, progress: () => this.progress(p) });
  }

  /** @param {string} type @param {Record<string, unknown>} [body] */
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
}

/** @param {DragEvent} e */
function hasFiles(e) {
  return !!e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
}

/** @param {string} name */
function hidden(name) {
  return name.split("/").some((part) => part.startsWith(".")); // .DS_Store, .git/…
}

/** @param {number} n bytes */
function mb(n) {
  const v = n / (1024 * 1024); // binary, as the kernel's limits are set
  return `${v >= 10 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)} MB`;
}

export default widgetOf(UploadView);
