// @ts-check
import { AbortError, Channel, errorWords } from "../shared/channel.js";
import { ZIP_TIMEOUT, bytesOf, fetchZip, saveBlob, size } from "../shared/download.js";
import { fmt, h, setAttr, setText, widgetOf } from "../shared/util.js";
import { gicons } from "../shared/icons.js";
import { PostForm } from "./postform.js";

// The gallery lightbox: one anywidget whose output is a slim launcher bar and whose
// <dialog> opens modal over the page (showModal: every key reaches it, Escape closes
// it, the notebook's active cell does not change). Python holds the truth: the page
// asks for the task it shows, the full-size image it shows (and its neighbours) and the
// thumbnails of the strip. Full-size images are object URLs kept in a small cache and
// revoked when they leave it or when the dialog closes, so browsing hundreds of images
// keeps the page's memory flat.

/** @typedef {import("../shared/util.js").Model} Model */
/** @typedef {import("../types.js").Status} Status */
/**
 * @template T
 * @typedef {import("../shared/channel.js").Answer<T>} Answer
 */

/** @typedef {{id: string, n: number, p: string, st: Status, ni: number}} TaskLink a parent or child: id, number, prompt, status, images */
/** @typedef {{key: string, label: string, w: number, h: number, format: string}} Copy a post-processed copy of an image */

/**
 * One image of the task shown.
 * @typedef {object} Image
 * @property {number} index its number in the task
 * @property {number} w
 * @property {number} h
 * @property {string} format
 * @property {number | null} seed
 * @property {boolean} starred
 * @property {string} key its sha256 (the caches' key)
 * @property {Copy[]} copies
 */

/**
 * The task shown, described by the kernel.
 * @typedef {object} Task
 * @property {string} id
 * @property {number} n its number in the batch
 * @property {number} total tasks in the batch
 * @property {string} prompt
 * @property {string | null} negative
 * @property {Record<string, unknown>} params
 * @property {string | null} provider
 * @property {number | null} duration seconds
 * @property {number} attempts
 * @property {Status} status
 * @property {TaskLink | null} parent
 * @property {TaskLink[]} children the first ones
 * @property {number} more_children
 * @property {Image[]} images
 */

/** @typedef {{row: number, rows: number, column: number, columns: number, label: string}} CellPlace opened from a Compare cell: where it is */

/**
 * @typedef {object} TaskReply `task`: the task to show (null: no task is done yet)
 * @property {Task | null} task
 * @property {number | null} pos its place among the done tasks (null: not one of them)
 * @property {number} count done tasks
 * @property {CellPlace | null} [cell]
 */

/** @typedef {TaskReply & {task: Task}} Shown a reply with a task to show */
/** @typedef {{mime: string, name: string, w: number, h: number, label?: string}} FileReply an image file's (sent as the buffer) */
/** @typedef {HTMLButtonElement & {_img: HTMLImageElement, _key: string}} StripButton a thumbnail of the strip, with its image's key */
/** @typedef {import("./postform.js").Progress} Progress */

const FULL_CACHE = 5; // full-size images kept: the one shown and its neighbours
const IMAGE_TIMEOUT = 120 * 1000;
let views = 0;

class GalleryView {
  /** @param {Model} model @param {HTMLElement} el */
  constructor(model, el) {
    this.model = model;
    /** @type {Record<string, string>} */
    this.strings = {};
    /** @type {Task | null} */
    this.task = null; // the described task shown
    /** @type {number | null} */
    this.pos = null; // its place among the done tasks
    /** @type {CellPlace | null} */
    this.cell = null; // opened from a Compare cell
    this.count = 0;
    this.index = 0; // position in task.images
    /** @type {"fit" | "100"} */
    this.zoom = "fit";
    /** @type {Map<string, string>} */
    this.full = new Map(); // key -> object URL (LRU order)
    /** @type {Map<string, Promise<string | null>>} */
    this.loading = new Map(); // key -> promise of an object URL
    /** @type {Map<string, string>} */
    this.thumbs = new Map(); // key -> object URL (the strip of the task shown)
    /** @type {Set<ReturnType<typeof setTimeout>>} */
    this.downloads = new Set();
    views += 1;
    // names this view: a studio shown twice has two gallery views of one model; every
    // request names it, and the kernel opens the dialog in the view used (or shown) last
    this.viewId = `g${views}-${Math.random().toString(36).slice(2, 8)}`;
    this.channel = new Channel(model, { fields: { view: this.viewId } });
    el.dataset.nbbGalleryView = this.viewId; // the grid beside it names this view
    /** @type {HTMLDivElement} */
    this.root = h("div", { class: "nbb-gal", "data-lm-suppress-shortcuts": "true" });
    el.append(this.root);
    this.channel.on("changed", (/** @type {{ids?: string[]}} */ msg) => this.onChanged(msg.ids || []));
    this.channel.on("notice", (/** @type {import("../types.js").Notice} */ msg) => this.say(msg.text, msg.level));
    this.channel.on("pp_progress", (/** @type {Progress} */ msg) => this.post?.progress(msg));
    /** @type {[string, () => void][]} */
    this.listeners = [];
    /** @param {string} name @param {() => void} fn */
    const watch = (name, fn) => {
      model.on(`change:${name}`, fn);
      this.listeners.push([`change:${name}`, fn]);
    };
    watch("opened", () => {
      const asker = model.get("opened_view");
      if (asker && asker !== this.viewId) return; // another view of this gallery asked
      if (this.dialog) this.openAt(model.get("task_id"), model.get("image_index"));
      else this.pendingOpen = true; // asked before this view was built: open once it is
    });
    watch("shown", () => {
      if (!model.get("shown") && this.dialog && this.dialog.open) this.dialog.close();
    });
    watch("lang", () => this.start());
    this.start();
  }

  async start() {
    this.root.replaceChildren(h("div", { class: "nbb-gal-bar", text: "…" }));
    try {
      const { msg } = /** @type {Answer<{strings: Record<string, string>, batch: string, done: number}>} */ (await this.channel.request("hello"));
      this.strings = msg.strings;
      /** @type {string | undefined} */
      this.batchName = msg.batch;
      this.build();
      this.setDone(msg.done);
      if (this.pendingOpen) {
        this.pendingOpen = false;
        this.openAt(this.model.get("task_id"), this.model.get("image_index"));
      }
    } catch (err) {
      this.root.replaceChildren(h("div", { class: "nbb-gal-bar nbb-gal-error", role: "alert", text: this.words(err) }));
    }
  }

  // ---------------------------------------------------------------- building
  // The parts built here (fields typed `X | undefined` by tsc, as they are not set in the
  // constructor) exist before any event or reply that uses them: start() builds before
  // anything is shown, and the dialog opens only once built (pendingOpen).
  build() {
    const s = this.strings;
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    /** @type {(key: string, icon: keyof typeof gicons, onclick: () => void, cls?: string, label?: boolean) => HTMLButtonElement} */
    const btn = (key, icon, onclick, cls = "", label = true) =>
      h("button", {
        type: "button",
        class: `nbb-gbtn ${cls}`,
        "aria-label": s[key],
        title: s[key],
        onclick,
        html: `${gicons[icon]}${label ? `<span>${s[key]}</span>` : ""}`,
      });
    // launcher: what the output shows inline
    this.doneText = /** @type {HTMLSpanElement} */ (h("span", { class: "nbb-gal-count" }));
    this.openBtn = btn("open_gallery", "gallery", () => this.openAt(null, 0), "nbb-gal-open");
    this.bar = /** @type {HTMLDivElement} */ (
      h("div", { class: "nbb-gal-bar" }, h("span", { class: "nbb-gal-name", text: s.gallery }), this.doneText, this.openBtn)
    );

    // the dialog
    this.title = /** @type {HTMLHeadingElement} */ (h("h2", { class: "nbb-g-title", text: s.gallery }));
    this.taskPos = /** @type {HTMLSpanElement} */ (h("span", { class: "nbb-g-taskpos", "aria-live": "polite" }));
    this.prevTask = btn("prev_task", "up", () => this.stepTask(-1), "nbb-g-icon", false);
    this.nextTask = btn("next_task", "down", () => this.stepTask(1), "nbb-g-icon", false);
    this.keysBtn = btn("keys", "keys", () => this.toggleKeys(), "nbb-g-icon", false);
    this.closeBtn = btn("close", "close", () => /** @type {HTMLDialogElement} */ (this.dialog).close(), "nbb-g-icon", false);
    const head = h(
      "header",
      { class: "nbb-g-head" },
      this.title,
      this.taskPos,
      h("span", { class: "nbb-g-spring" }),
      this.prevTask,
      this.nextTask,
      this.keysBtn,
      this.closeBtn,
    );

    this.img = /** @type {HTMLImageElement} */ (h("img", { class: "nbb-g-img", alt: "", draggable: "false" }));
    this.img.addEventListener("dblclick", () => this.setZoom(this.zoom === "fit" ? "100" : "fit"));
    this.stageMsg = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-g-stagemsg", role: "status" }));
    this.canvas = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-g-canvas" }, this.img));
    this.prevImage = btn("prev_image", "left", () => this.step(-1), "nbb-g-nav nbb-g-prev", false);
    this.nextImage = btn("next_image", "right", () => this.step(1), "nbb-g-nav nbb-g-next", false);
    this.imagePos = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-g-imagepos", "aria-live": "polite" }));
    this.dlSheet = btn("download_sheet", "download", () => this.sheet && this.save(this.sheet.blob, this.sheet.name), "nbb-g-sheetdl");
    this.dlSheet.hidden = true;
    // the stage takes the focus when the dialog opens (autofocus): the keys work at
    // once, also in Notebook 7, where focus on a control disabled a moment later (one
    // done task: "Previous task") fell out of the dialog and no key reached it
    this.stage = /** @type {HTMLDivElement} */ (
      h(
        "div",
        { class: "nbb-g-stage", tabindex: "-1", autofocus: true },
        this.canvas,
        this.stageMsg,
        this.prevImage,
        this.nextImage,
        this.imagePos,
        this.dlSheet,
      )
    );
    this.strip = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-g-strip", role: "group", "aria-label": s.strip }));

    // info + actions
    this.fitBtn = /** @type {HTMLButtonElement} */ (
      h("button", { type: "button", class: "nbb-gseg", "aria-pressed": "true", text: s.zoom_fit, onclick: () => this.setZoom("fit") })
    );
    this.fullBtn = /** @type {HTMLButtonElement} */ (
      h("button", { type: "button", class: "nbb-gseg", "aria-pressed": "false", text: s.zoom_100, onclick: () => this.setZoom("100") })
    );
    const zoom = h("div", { class: "nbb-g-zoom", role: "group", "aria-label": s.zoom }, this.fitBtn, this.fullBtn);
    this.starBtn = /** @type {HTMLButtonElement} */ (
      h("button", {
        type: "button",
        class: "nbb-gbtn nbb-g-star",
        "aria-label": s.star,
        "aria-pressed": "false",
        title: s.star,
        onclick: () => this.toggleStar(),
      })
    );
    this.dlImage = btn("download_image", "download", () => this.downloadImage(), "nbb-primary");
    // visible labels are short ("Task ZIP"); the accessible name says the whole action
    /** @type {(key: string, short: string, scope: "task" | "batch" | "starred") => HTMLButtonElement} */
    const zipBtn = (key, short, scope) =>
      h("button", {
        type: "button",
        class: "nbb-gbtn nbb-g-zipbtn",
        "aria-label": s[key],
        title: s[key],
        onclick: () => this.downloadZip(scope),
        html: `${gicons.zip}<span>${s[short]}</span>`,
      });
    this.dlTask = zipBtn("download_task_zip", "zip_task", "task");
    this.dlBatch = zipBtn("download_batch_zip", "zip_batch", "batch");
    this.dlStarred = zipBtn("download_starred_zip", "zip_starred", "starred");
    // while a ZIP is made and fetched: give up on it (the kernel drops its work)
    /** @type {AbortController | null | undefined} */
    this.zipAbort = null;
    this.zipCancel = /** @type {HTMLButtonElement} */ (
      h("button", {
        type: "button",
        class: "nbb-gbtn nbb-g-zipcancel",
        hidden: true,
        text: s.cancel,
        "aria-label": s.zip_cancel,
        title: s.zip_cancel,
        onclick: () => this.zipAbort?.abort(),
      })
    );
    this.editBtn = btn("edit_image", "edit", () => this.toggleEdit(true));
    this.remixBtn = btn("remix", "remix", () => this.remix());
    this.sheetBtn = btn("contact_sheet", "sheet", () => this.contactSheet());
    this.postBtn = btn("postprocess", "tune", () => this.togglePost());
    setAttr(this.postBtn, "aria-expanded", "false");
    this.post = new PostForm(this);
    const actions = h(
      "div",
      { class: "nbb-g-actions" },
      h("div", { class: "nbb-g-row" }, this.starBtn, zoom),
      h("div", { class: "nbb-g-row" }, this.dlImage),
      h("div", { class: "nbb-g-zips" }, this.dlTask, this.dlBatch, this.dlStarred, this.zipCancel),
      h("div", { class: "nbb-g-row" }, this.editBtn, this.remixBtn, this.sheetBtn, this.postBtn),
    );
    this.editArea = /** @type {HTMLTextAreaElement} */ (
      h("textarea", { class: "nbb-g-textarea", rows: 3, placeholder: s.edit_placeholder, "aria-label": s.edit_prompt })
    );
    this.editArea.addEventListener("keydown", (e) => {
      e.stopPropagation(); // the gallery's keys stay out of the text
      if (e.isComposing || e.keyCode === 229) return;
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        this.derive();
      } else if (e.key === "Escape") {
        e.preventDefault(); // closes the box, not the dialog
        this.toggleEdit(false);
      }
    });
    this.editBox = /** @type {HTMLDivElement} */ (
      h(
        "div",
        { class: "nbb-g-edit", hidden: true },
        h("label", { class: "nbb-g-label", text: s.edit_prompt }),
        this.editArea,
        h(
          "div",
          { class: "nbb-g-row" },
          h("button", { type: "button", class: "nbb-gbtn nbb-primary", text: s.edit_submit, onclick: () => this.derive() }),
          h("button", { type: "button", class: "nbb-gbtn", text: s.edit_cancel, onclick: () => this.toggleEdit(false) }),
        ),
      )
    );
    this.info = /** @type {HTMLDListElement} */ (h("dl", { class: "nbb-g-info" }));
    this.status = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-g-status", role: "status", "aria-live": "polite" }));
    this.copies = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-g-copies", hidden: true }));
    const side = h("aside", { class: "nbb-g-side", "aria-label": s.info }, actions, this.editBox, this.post.el, this.status, this.copies, this.info);

    this.keysPanel = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-g-keys", hidden: true, role: "note", "aria-label": s.keys }));
    const keyRows = [
      ["← →", s.key_images],
      ["← → · ↑ ↓", s.key_cells],
      ["↑ ↓ · PgUp PgDn", s.key_tasks],
      ["Home End", s.key_home_end],
      ["Z", s.key_zoom],
      ["S", s.key_star],
      ["D", s.key_download],
      ["Esc", s.key_escape],
      ["?", s.key_help],
    ];
    this.keysPanel.append(
      h("h3", { text: s.keys }),
      h("dl", {}, ...keyRows.flatMap(([k, t]) => [h("dt", {}, h("kbd", { text: k })), h("dd", { text: t })])),
      h("button", { type: "button", class: "nbb-gbtn", text: s.keys_close, onclick: () => this.toggleKeys(false) }),
    );

    const main = h("div", { class: "nbb-g-main" }, h("div", { class: "nbb-g-left" }, this.stage, this.strip), side);
    this.dialog = /** @type {HTMLDialogElement} */ (
      h("dialog", { class: "nbb-g-dialog", "aria-label": s.gallery, "data-lm-suppress-shortcuts": "true" }, head, main, this.keysPanel)
    );
    // Keys are taken on the window, capture phase, while the dialog is open: Notebook 7
    // handles the arrows before they bubble to the dialog (data-lm-suppress-shortcuts
    // is not enough there), so the lightbox hears them first.
    /** @param {KeyboardEvent} e */
    this.keyListener = (e) => {
      if (this.dialog && this.dialog.open && this.dialog.contains(/** @type {Node | null} */ (e.target))) this.onKey(e);
    };
    window.addEventListener("keydown", this.keyListener, true);
    this.dialog.addEventListener("close", () => this.onClose());
    // a click on the backdrop (outside the dialog's box) closes it
    this.dialog.addEventListener("click", (e) => {
      if (e.target === this.dialog) /** @type {HTMLDialogElement} */ (this.dialog).close();
    });
    this.root.replaceChildren(this.bar, this.dialog);
  }

  /** @param {number} n done tasks */
  setDone(n) {
    setText(/** @type {HTMLSpanElement} */ (this.doneText), fmt(this.strings, "gallery_summary", { n }));
    /** @type {HTMLButtonElement} */ (this.openBtn).disabled = !n;
  }

  // ---------------------------------------------------------------- opening
  /** @param {string | null} taskId null: the first done task @param {number} imageIndex */
  async openAt(taskId, imageIndex) {
    if (!this.dialog) return;
    if (!this.dialog.open) {
      /** @type {HTMLDialogElement} */ (this.dialog).showModal();
      /** @type {HTMLDivElement} */ (this.stage).focus({ preventScroll: true });
      this.model.set("shown", true);
      this.model.save_changes();
    }
    this.say("");
    /** @type {TaskReply | null} */
    const msg = await this.ask("task", taskId ? { id: taskId, step: 0 } : { step: "first" });
    if (!msg) return;
    if (!msg.task) {
      this.showEmpty();
      return;
    }
    const i = msg.task.images.findIndex((im) => im.index === imageIndex);
    this.setTask(/** @type {Shown} */ (msg), Math.max(0, i));
  }

  // Focus inside the open dialog, on the stage when it was nowhere (a disabled control
  // drops it onto the page, where the dialog hears no key).
  keepFocus() {
    if (!(/** @type {HTMLDialogElement} */ (this.dialog).open)) return;
    const at = document.activeElement;
    const disabled = at instanceof HTMLButtonElement && at.disabled;
    if (!at || at === document.body || !(/** @type {HTMLDialogElement} */ (this.dialog).contains(at)) || disabled) {
      /** @type {HTMLDivElement} */ (this.stage).focus({ preventScroll: true });
    }
  }

  showEmpty() {
    this.task = null;
    /** @type {HTMLImageElement} */ (this.img).removeAttribute("src");
    setText(/** @type {HTMLDivElement} */ (this.stageMsg), this.strings.no_done);
    /** @type {HTMLDivElement} */ (this.stageMsg).hidden = false;
    /** @type {HTMLDListElement} */ (this.info).replaceChildren();
    /** @type {HTMLDivElement} */ (this.strip).replaceChildren();
    setText(/** @type {HTMLDivElement} */ (this.imagePos), "");
    setText(/** @type {HTMLSpanElement} */ (this.taskPos), "");
  }

  onClose() {
    this.model.set("shown", false);
    this.model.save_changes();
    this.toggleKeys(false);
    this.toggleEdit(false);
    this.togglePost(false);
    // nothing full-size stays in memory while the gallery is closed
    /** @type {HTMLImageElement} */ (this.img).removeAttribute("src");
    this.dropSheet();
    for (const url of this.full.values()) URL.revokeObjectURL(url);
    this.full.clear();
    this.clearThumbs();
  }

  // ---------------------------------------------------------------- navigation
  /** @param {Shown} msg @param {number} index the image to show */
  setTask(msg, index) {
    const changedTask = !this.task || this.task.id !== msg.task.id;
    this.task = msg.task;
    this.pos = msg.pos;
    this.count = msg.count;
    this.setDone(msg.count);
    const s = this.strings;
    setText(/** @type {HTMLHeadingElement} */ (this.title), `${s.gallery} · ${this.batchName}`);
    // opened from a Compare cell: ←/→ move across the configurations, ↑/↓ the tasks
    this.cell = msg.cell || null;
    const c = this.cell;
    if (c) {
      setText(/** @type {HTMLSpanElement} */ (this.taskPos), fmt(s, "cell_pos", { label: c.label, c: c.column + 1, m: c.columns, i: c.row + 1, n: c.rows }));
    } else {
      setText(
        /** @type {HTMLSpanElement} */ (this.taskPos),
        msg.pos === null ? fmt(s, "task_number", { n: msg.task.n }) : fmt(s, "task_pos", { i: msg.pos + 1, n: msg.count }),
      );
    }
    const multi = c ? c.rows > 1 : msg.count > 1;
    /** @type {HTMLButtonElement} */ (this.prevTask).disabled = !multi;
    /** @type {HTMLButtonElement} */ (this.nextTask).disabled = !multi;
    this.keepFocus();
    if (changedTask) {
      this.clearThumbs();
      this.toggleEdit(false);
    }
    this.paintStrip();
    this.paintInfo();
    if (changedTask) this.fetchThumbs();
    this.show(index);
  }

  /** @param {number} index of the image in the task, wrapped around */
  show(index) {
    const images = this.task ? this.task.images : [];
    if (!images.length) return;
    this.dropSheet();
    const n = images.length;
    this.index = ((index % n) + n) % n;
    const im = images[this.index];
    this.model.set("task_id", /** @type {Task} */ (this.task).id); // it has images
    this.model.set("image_index", im.index);
    this.model.save_changes();
    setText(/** @type {HTMLDivElement} */ (this.imagePos), fmt(this.strings, "image_pos", { i: this.index + 1, n }));
    /** @type {HTMLButtonElement} */ (this.prevImage).disabled = n < 2;
    /** @type {HTMLButtonElement} */ (this.nextImage).disabled = n < 2;
    this.paintStar();
    for (const [k, b] of /** @type {StripButton[]} */ (this.stripButtons).entries()) setAttr(b, "aria-current", k === this.index ? "true" : null);
    const shown = /** @type {StripButton[]} */ (this.stripButtons)[this.index];
    if (shown) shown.scrollIntoView({ block: "nearest", inline: "nearest" });
    /** @type {HTMLImageElement} */ (this.img).alt = `${fmt(this.strings, "image_pos", { i: this.index + 1, n })} · ${/** @type {Task} */ (this.task).prompt}`;
    /** @type {HTMLImageElement} */ (this.img).width = im.w;
    /** @type {HTMLImageElement} */ (this.img).height = im.h;
    const cached = this.full.get(im.key);
    if (cached) {
      this.touch(im.key);
      this.paintImage(cached);
    } else {
      /** @type {HTMLImageElement} */ (this.img).removeAttribute("src");
      /** @type {HTMLImageElement} */ (this.img).classList.add("nbb-g-pending");
      setText(/** @type {HTMLDivElement} */ (this.stageMsg), this.strings.loading_image);
      /** @type {HTMLDivElement} */ (this.stageMsg).hidden = false;
      const wanted = im.key;
      this.load(/** @type {Task} */ (this.task).id, im).then((url) => {
        const current = this.task?.images[this.index];
        if (url && current && current.key === wanted && !this.sheet) this.paintImage(url);
      });
    }
    this.prefetch();
  }

  /** @param {string} url */
  paintImage(url) {
    if (/** @type {HTMLImageElement} */ (this.img).getAttribute("src") !== url) /** @type {HTMLImageElement} */ (this.img).src = url;
    /** @type {HTMLImageElement} */ (this.img).classList.remove("nbb-g-pending");
    /** @type {HTMLDivElement} */ (this.stageMsg).hidden = true;
  }

  /** @param {number} delta */
  step(delta) {
    if (this.task) this.show(this.index + delta);
  }

  /** @param {number} delta */
  stepTask(delta) {
    return this.move({ step: delta });
  }

  // a Compare cell's gallery: the same task's cell in the previous / next configuration
  /** @param {number} delta */
  stepAcross(delta) {
    return this.move({ step: 0, across: delta });
  }

  // one move after the other: two quick presses move twice, each from where the last
  // one landed (not both from the task shown when they were pressed)
  /** @param {{step: number, across?: number}} how */
  move(how) {
    /** @type {Promise<void> | undefined} */
    this.moving = (this.moving || Promise.resolve())
      .then(async () => {
        if (!this.task) return;
        /** @type {TaskReply | null} */
        const msg = await this.ask("task", { id: this.task.id, ...how });
        if (msg?.task) this.setTask(/** @type {Shown} */ (msg), 0);
      })
      .catch((err) => console.error("nbbatch gallery", err));
    return this.moving;
  }

  /** @param {"fit" | "100"} mode */
  setZoom(mode) {
    this.zoom = mode;
    /** @type {HTMLDivElement} */ (this.stage).classList.toggle("nbb-g-actual", mode === "100");
    setAttr(/** @type {HTMLButtonElement} */ (this.fitBtn), "aria-pressed", String(mode === "fit"));
    setAttr(/** @type {HTMLButtonElement} */ (this.fullBtn), "aria-pressed", String(mode === "100"));
  }

  /** @param {KeyboardEvent} e */
  onKey(e) {
    if (/** @type {Element} */ (e.target).closest("textarea, input, select")) return;
    const key = e.key;
    /** @type {Record<string, () => unknown>} */
    const moves = {
      ArrowLeft: () => (this.cell ? this.stepAcross(-1) : this.step(-1)),
      ArrowRight: () => (this.cell ? this.stepAcross(1) : this.step(1)),
      ArrowUp: () => this.stepTask(-1),
      ArrowDown: () => this.stepTask(1),
      PageUp: () => this.stepTask(-1),
      PageDown: () => this.stepTask(1),
      Home: () => this.show(0),
      End: () => this.task && this.show(this.task.images.length - 1),
      "?": () => this.toggleKeys(),
      z: () => this.setZoom(this.zoom === "fit" ? "100" : "fit"),
      s: () => this.toggleStar(),
      d: () => this.downloadImage(),
    };
    const fn = moves[key.length === 1 ? key.toLowerCase() : key];
    if (!fn || e.altKey || e.ctrlKey || e.metaKey) return;
    // arrows inside the 100 % view scroll the image when it is larger than the stage
    if (this.zoom === "100" && key.startsWith("Arrow") && e.target === /** @type {HTMLDivElement} */ (this.canvas)) return;
    if (key === "Escape") return;
    e.preventDefault();
    e.stopPropagation(); // ours: not the notebook's (cell navigation) too
    fn();
  }

  /** @param {boolean} [force] shown or not (else: the other way) */
  toggleKeys(force) {
    if (!this.keysPanel) return;
    const show = force === undefined ? /** @type {HTMLDivElement} */ (this.keysPanel).hidden : force;
    /** @type {HTMLDivElement} */ (this.keysPanel).hidden = !show;
    setAttr(/** @type {HTMLButtonElement} */ (this.keysBtn), "aria-expanded", String(show));
  }

  /** @param {string[]} ids the tasks that changed ("*": any) */
  onChanged(ids) {
    if (!this.dialog) return;
    // the count of done tasks in the launcher, and the task on screen if it changed
    this.channel.request("hello").then(
      (/** @type {Answer<{done: number}>} */ { msg }) => this.setDone(msg.done),
      () => {},
    );
    if (!this.dialog.open || !this.task) return;
    if (!ids.includes("*") && !ids.includes(this.task.id)) return;
    const asked = this.task.id;
    this.ask("task", { id: asked, step: 0 }, true).then((/** @type {TaskReply | null} */ msg) => {
      // the person may have moved on while this was asked: keep what is shown now
      if (!msg?.task || !this.task || this.task.id !== asked || !(/** @type {HTMLDialogElement} */ (this.dialog).open)) return;
      const shown = this.task.images[this.index];
      const i = msg.task.images.findIndex((im) => shown && im.index === shown.index);
      this.setTask(/** @type {Shown} */ (msg), Math.max(0, i));
    });
  }

  // ---------------------------------------------------------------- images
  /** @param {string} taskId @param {Image} im @returns {Promise<string | null>} its object URL (null: not kept) */
  load(taskId, im) {
    if (this.full.has(im.key)) return Promise.resolve(/** @type {string} */ (this.full.get(im.key)));
    if (this.loading.has(im.key)) return /** @type {Promise<string | null>} */ (this.loading.get(im.key));
    const promise = this.channel
      .request("image", { id: taskId, index: im.index }, { timeout: IMAGE_TIMEOUT })
      .then((/** @type {Answer<{mime: string, size: number}>} */ { msg, buffers }) => {
        const url = URL.createObjectURL(new Blob([bytesOf(buffers[0])], { type: msg.mime }));
        if (!(/** @type {HTMLDialogElement} */ (this.dialog).open)) {
          URL.revokeObjectURL(url); // closed meanwhile: keep nothing
          return null;
        }
        this.full.set(im.key, url);
        this.evict();
        return url;
      })
      .catch((err) => {
        this.say(this.words(err), "error");
        setText(/** @type {HTMLDivElement} */ (this.stageMsg), this.words(err));
        return null;
      })
      .finally(() => this.loading.delete(im.key));
    this.loading.set(im.key, promise);
    return promise;
  }

  /** @param {string} key */
  touch(key) {
    const url = /** @type {string} */ (this.full.get(key)); // only a cached one is touched
    this.full.delete(key);
    this.full.set(key, url);
  }

  evict() {
    const shown = /** @type {HTMLImageElement} */ (this.img).getAttribute("src");
    for (const [key, url] of this.full) {
      if (this.full.size <= FULL_CACHE) break;
      if (url === shown) continue;
      URL.revokeObjectURL(url);
      this.full.delete(key);
    }
  }

  prefetch() {
    const images = /** @type {Task} */ (this.task).images; // show() ran: a task is shown
    if (images.length < 2) return;
    const n = images.length;
    const taskId = /** @type {Task} */ (this.task).id;
    for (const d of [1, -1]) {
      const im = images[(this.index + d + n) % n];
      if (!this.full.has(im.key)) this.load(taskId, im);
    }
  }

  // paintStrip, paintInfo, fetchThumbs, paintStar: only while a task is shown
  paintStrip() {
    const s = this.strings;
    const images = /** @type {Task} */ (this.task).images;
    /** @type {StripButton[] | undefined} */
    this.stripButtons = images.map((im, k) => {
      /** @type {HTMLImageElement} */
      const img = h("img", { alt: "", draggable: "false" });
      const url = this.thumbs.get(im.key);
      if (url) img.src = url;
      /** @type {StripButton} */
      const b = h(
        "button",
        {
          type: "button",
          class: "nbb-g-thumb",
          "aria-label": fmt(s, "thumb_of", { i: k + 1 }) + (im.starred ? ` · ${s.starred}` : ""),
          onclick: () => this.show(k),
        },
        img,
        im.starred ? h("span", { class: "nbb-g-thumbstar", html: gicons.starOn }) : null,
      );
      b._img = img;
      b._key = im.key;
      return b;
    });
    /** @type {HTMLDivElement} */ (this.strip).replaceChildren(.../** @type {StripButton[]} */ (this.stripButtons));
    /** @type {HTMLDivElement} */ (this.strip).hidden = images.length < 2;
  }

  async fetchThumbs() {
    const task = /** @type {Task} */ (this.task);
    try {
      const { msg, buffers } = /** @type {Answer<{indexes: number[]}>} */ (await this.channel.request("thumbs", { id: task.id }));
      if (this.task !== task && (!this.task || this.task.id !== task.id)) return;
      msg.indexes.forEach((index, k) => {
        const im = task.images.find((x) => x.index === index);
        if (!im || this.thumbs.has(im.key)) return;
        this.thumbs.set(im.key, URL.createObjectURL(new Blob([bytesOf(buffers[k])], { type: "image/webp" })));
      });
      for (const b of /** @type {StripButton[]} */ (this.stripButtons)) {
        const url = this.thumbs.get(b._key);
        if (url && b._img.getAttribute("src") !== url) b._img.src = url;
      }
    } catch (err) {
      this.say(this.words(err), "error");
    }
  }

  clearThumbs() {
    for (const url of this.thumbs.values()) URL.revokeObjectURL(url);
    this.thumbs.clear();
  }

  // ---------------------------------------------------------------- info
  paintInfo() {
    const s = this.strings;
    const t = /** @type {Task} */ (this.task);
    /** @type {HTMLElement[]} */
    const rows = [];
    /** @param {string} label @param {...(Node | string)} value */
    const add = (label, ...value) => rows.push(h("div", { class: "nbb-g-irow" }, h("dt", { text: label }), h("dd", {}, ...value)));
    /** @param {string} label @param {Node} value */
    const wide = (label, value) => rows.push(h("div", { class: "nbb-g-irow nbb-g-wide" }, h("dt", { text: label }), h("dd", {}, value)));
    add(s.i_prompt, h("p", { class: "nbb-g-prompt", text: t.prompt }));
    if (t.negative) add(s.i_negative, h("p", { class: "nbb-g-neg", text: t.negative }));
    const params = Object.entries(t.params).filter(([k]) => k !== "seed");
    const im = t.images[this.index] || t.images[0];
    if (params.length)
      add(
        s.i_params,
        h(
          "span",
          { class: "nbb-g-chips" },
          ...params.map(([k, v]) => h("span", { class: "nbb-g-chip", text: `${k} ${typeof v === "object" ? JSON.stringify(v) : v}` })),
        ),
      );
    /** @type {HTMLSpanElement | undefined} */
    this.seedCell = h("span", { class: "nbb-g-mono" });
    /** @type {HTMLSpanElement | undefined} */
    this.sizeCell = h("span", { class: "nbb-g-mono" });
    add(s.i_seed, /** @type {HTMLSpanElement} */ (this.seedCell));
    add(s.i_size, /** @type {HTMLSpanElement} */ (this.sizeCell));
    add(s.i_provider, h("span", { text: t.provider || "–" }));
    add(s.i_duration, h("span", { text: t.duration === null ? "–" : fmt(s, "seconds", { t: t.duration.toFixed(1) }) }));
    add(s.i_attempts, h("span", { text: String(t.attempts) }));
    const link = (/** @type {TaskLink} */ l) =>
      h(
        "button",
        {
          type: "button",
          class: "nbb-g-link",
          "aria-label": fmt(s, "go_task", { n: l.n, prompt: l.p }),
          title: l.p,
          onclick: () => this.openAt(l.id, 0),
        },
        h("b", { text: `#${l.n}` }),
        h("span", { text: l.p }),
        h("i", { class: `nbb-g-st nbb-g-st-${l.st}`, text: fmt(s, `st_${l.st}`, { pct: "" }).replace(/\s*%$/, "") }),
      );
    // Lineage only where there is one: a fresh result has no parent and no children
    // (it said "Made from none / Reworked into none" on every one).
    if (t.parent || t.children.length) {
      const lineage = h("div", { class: "nbb-g-lineage" });
      if (t.parent) lineage.append(h("div", { class: "nbb-g-sub", text: s.i_parent }), link(t.parent));
      if (t.children.length) {
        lineage.append(h("div", { class: "nbb-g-sub", text: s.i_children }));
        for (const c of t.children) lineage.append(link(c));
        if (t.more_children) lineage.append(h("span", { class: "nbb-g-none", text: fmt(s, "more_children", { n: t.more_children }) }));
      }
      wide(s.i_lineage, lineage);
    }
    /** @type {HTMLDListElement} */ (this.info).replaceChildren(...rows);
    this.paintImageInfo(im);
  }

  /** @param {Image | undefined} im */
  paintImageInfo(im) {
    if (!im || !this.seedCell) return;
    this.paintCopies(im);
    setText(/** @type {HTMLSpanElement} */ (this.seedCell), im.seed === null || im.seed === undefined ? "–" : String(im.seed));
    setText(/** @type {HTMLSpanElement} */ (this.sizeCell), `${im.w} × ${im.h} · ${im.format}`);
  }

  paintStar() {
    const s = this.strings;
    const im = /** @type {Task} */ (this.task).images[this.index];
    const on = !!im.starred;
    setAttr(/** @type {HTMLButtonElement} */ (this.starBtn), "aria-pressed", String(on));
    /** @type {HTMLButtonElement} */ (this.starBtn).innerHTML = `${on ? gicons.starOn : gicons.star}<span>${on ? s.starred : s.star}</span>`;
    /** @type {HTMLButtonElement} */ (this.starBtn).classList.toggle("nbb-on", on);
    this.paintImageInfo(im);
  }

  async toggleStar() {
    if (!this.task) return;
    const im = this.task.images[this.index];
    /** @type {{starred: boolean} | null} */
    const msg = await this.ask("star", { id: this.task.id, index: im.index, starred: !im.starred });
    if (!msg) return;
    im.starred = msg.starred;
    if (this.task.images[this.index] === im) this.paintStar();
    const b = /** @type {StripButton[]} */ (this.stripButtons)[this.task.images.indexOf(im)];
    if (b) {
      const badge = b.querySelector(".nbb-g-thumbstar");
      if (im.starred && !badge) b.append(h("span", { class: "nbb-g-thumbstar", html: gicons.starOn }));
      if (!im.starred && badge) badge.remove();
    }
  }

  // ---------------------------------------------------------------- downloads
  /** @param {Blob} blob @param {string} name */
  save(blob, name) {
    const timer = saveBlob(/** @type {HTMLDialogElement} */ (this.dialog), blob, name);
    this.downloads.add(timer);
    setTimeout(() => this.downloads.delete(timer), 20001);
  }

  async downloadImage() {
    if (!this.task) return;
    const im = this.task.images[this.index];
    try {
      const { msg, buffers } = /** @type {Answer<FileReply>} */ (
        await this.channel.request("download_image", { id: this.task.id, index: im.index }, { timeout: IMAGE_TIMEOUT })
      );
      this.save(new Blob([bytesOf(buffers[0])], { type: msg.mime }), msg.name);
    } catch (err) {
      this.say(this.words(err), "error");
    }
  }

  /** @param {string} scope "task", "batch", "starred" or (the post-process form's) "selection" @param {Record<string, unknown>} [extra] */
  async downloadZip(scope, extra = {}) {
    if (!this.task && scope === "task") return;
    const s = this.strings;
    const buttons = [
      /** @type {HTMLButtonElement} */ (this.dlTask),
      /** @type {HTMLButtonElement} */ (this.dlBatch),
      /** @type {HTMLButtonElement} */ (this.dlStarred),
    ];
    for (const b of buttons) b.disabled = true;
    this.say(s.zip_building, "busy");
    const abort = new AbortController();
    this.zipAbort = abort;
    /** @type {HTMLButtonElement} */ (this.zipCancel).hidden = false;
    try {
      const body = { scope, id: this.task ? this.task.id : undefined, ...extra };
      const got = await fetchZip(this.channel, "zip", body, (pct) => this.say(fmt(s, "zip_receiving", { pct }), "busy"), abort.signal);
      if (got.path) {
        this.say(fmt(s, "zip_saved", { size: size(got.size), path: got.path }), "info");
        return;
      }
      this.save(/** @type {Blob} */ (got.blob), /** @type {string} */ (got.name)); // not saved by the kernel: sent
      this.say(fmt(s, "zip_ready", { name: got.name, size: size(got.size) }), "info");
    } catch (err) {
      if (err instanceof AbortError) this.say(s.zip_cancelled, "info");
      else this.say(this.words(err), "error");
    } finally {
      for (const b of buttons) b.disabled = false;
      this.zipAbort = null;
      /** @type {HTMLButtonElement} */ (this.zipCancel).hidden = true;
    }
  }

  // ---------------------------------------------------------------- contact sheet
  async contactSheet() {
    if (!this.task) return;
    const s = this.strings;
    /** @type {HTMLButtonElement} */ (this.sheetBtn).disabled = true;
    this.say(s.sheet_making, "busy");
    try {
      const { msg, buffers } = /** @type {Answer<FileReply>} */ (
        await this.channel.request("contact_sheet", { scope: "task", id: this.task.id }, { timeout: ZIP_TIMEOUT })
      );
      const blob = new Blob([bytesOf(buffers[0])], { type: msg.mime });
      const label = fmt(s, "sheet_of", { n: this.task.n });
      this.showExtra(blob, msg.name, msg.w, msg.h, label, s.download_sheet);
      this.say("");
    } catch (err) {
      this.say(this.words(err), "error");
    } finally {
      /** @type {HTMLButtonElement} */ (this.sheetBtn).disabled = false;
    }
  }

  dropSheet() {
    if (!this.sheet) return;
    URL.revokeObjectURL(this.sheet.url);
    this.sheet = null;
    /** @type {HTMLButtonElement} */ (this.dlSheet).hidden = true;
  }

  // ---------------------------------------------------------------- post-processed copies
  /** @param {boolean} [force] shown or not (else: the other way) */
  togglePost(force) {
    if (!this.post) return;
    const show = force === undefined ? /** @type {PostForm} */ (this.post).el.hidden : force;
    if (show && !this.task) return;
    const hadFocus = /** @type {PostForm} */ (this.post).el.contains(document.activeElement);
    /** @type {PostForm} */ (this.post).el.hidden = !show;
    if (!show && hadFocus) /** @type {HTMLButtonElement} */ (this.postBtn).focus(); // Escape in the form: back where it opened
    setAttr(/** @type {HTMLButtonElement} */ (this.postBtn), "aria-expanded", String(show));
    if (show) {
      this.toggleEdit(false);
      /** @type {PostForm} */ (this.post).open();
    }
  }

  /** @param {Image} im */
  paintCopies(im) {
    const s = this.strings;
    const copies = im.copies || [];
    const key = `${im.key}|${copies.map((c) => c.key).join(",")}`;
    if (/** @type {HTMLDivElement} */ (this.copies).dataset.key === key) return;
    /** @type {HTMLDivElement} */ (this.copies).dataset.key = key;
    /** @type {HTMLDivElement} */ (this.copies).hidden = !copies.length;
    if (!copies.length) {
      /** @type {HTMLDivElement} */ (this.copies).replaceChildren();
      return;
    }
    const taskId = /** @type {Task} */ (this.task).id;
    const items = copies.map((c) =>
      h(
        "li",
        { class: "nbb-g-copy" },
        h(
          "span",
          { class: "nbb-g-copytext" },
          h("span", { class: "nbb-g-copylabel", text: c.label, title: c.label }),
          h("span", { class: "nbb-g-mono nbb-g-copydims", text: `${c.w} × ${c.h} · ${c.format}` }),
        ),
        h("button", {
          type: "button",
          class: "nbb-gbtn nbb-g-small",
          "aria-label": fmt(s, "pp_show_copy", { label: c.label }),
          title: fmt(s, "pp_show_copy", { label: c.label }),
          html: gicons.gallery,
          onclick: () => this.showCopy(taskId, im.index, c),
        }),
        h("button", {
          type: "button",
          class: "nbb-gbtn nbb-g-small",
          "aria-label": fmt(s, "pp_download_copy", { label: c.label }),
          title: fmt(s, "pp_download_copy", { label: c.label }),
          html: gicons.download,
          onclick: () => this.downloadCopy(taskId, im.index, c.key),
        }),
      ),
    );
    /** @type {HTMLDivElement} */ (this.copies).replaceChildren(
      h("div", { class: "nbb-g-sub", text: s.pp_copies }),
      h("ul", { class: "nbb-g-copylist", "aria-label": s.pp_copies }, ...items),
    );
  }

  /** @param {string} taskId @param {number} index the image's @param {string} key the copy's */
  async copyBytes(taskId, index, key) {
    const { msg, buffers } = /** @type {Answer<FileReply>} */ (await this.channel.request("derived", { id: taskId, index, key }, { timeout: IMAGE_TIMEOUT }));
    return { msg, blob: new Blob([bytesOf(buffers[0])], { type: msg.mime }) };
  }

  /** @param {string} taskId @param {number} index the image's @param {string} key the copy's */
  async downloadCopy(taskId, index, key) {
    try {
      const { msg, blob } = await this.copyBytes(taskId, index, key);
      this.save(blob, msg.name);
    } catch (err) {
      this.say(this.words(err), "error");
    }
  }

  /** @param {string} taskId @param {number} index the image's @param {Copy} copy */
  async showCopy(taskId, index, copy) {
    const s = this.strings;
    try {
      const { msg, blob } = await this.copyBytes(taskId, index, copy.key);
      if (!(/** @type {HTMLDialogElement} */ (this.dialog).open) || !this.task || this.task.id !== taskId) return;
      this.showExtra(blob, msg.name, msg.w, msg.h, fmt(s, "pp_copy_of", { label: msg.label }), s.pp_download_shown);
    } catch (err) {
      this.say(this.words(err), "error");
    }
  }

  // Something other than the original on the stage (a contact sheet, a post-processed
  // copy) until the person steps to another image; its own download button shows.
  /**
   * @param {Blob} blob @param {string} name @param {number} w @param {number} h_
   * @param {string} label what it is, in words @param {string} dlLabel its download button's words
   */
  showExtra(blob, name, w, h_, label, dlLabel) {
    this.dropSheet();
    /** @type {{blob: Blob, name: string, url: string} | null | undefined} */
    this.sheet = { blob, name, url: URL.createObjectURL(blob) };
    /** @type {HTMLImageElement} */ (this.img).width = w;
    /** @type {HTMLImageElement} */ (this.img).height = h_;
    /** @type {HTMLImageElement} */ (this.img).alt = label;
    this.paintImage(this.sheet.url);
    setText(/** @type {HTMLDivElement} */ (this.imagePos), label);
    setAttr(/** @type {HTMLButtonElement} */ (this.dlSheet), "aria-label", dlLabel);
    setAttr(/** @type {HTMLButtonElement} */ (this.dlSheet), "title", dlLabel);
    /** @type {HTMLSpanElement} */ (/** @type {HTMLButtonElement} */ (this.dlSheet).querySelector("span")).textContent = dlLabel; // btn() labelled it
    /** @type {HTMLButtonElement} */ (this.dlSheet).hidden = false;
  }

  // ---------------------------------------------------------------- rework
  /** @param {boolean} show */
  toggleEdit(show) {
    if (!this.editBox) return;
    /** @type {HTMLDivElement} */ (this.editBox).hidden = !show;
    setAttr(/** @type {HTMLButtonElement} */ (this.editBtn), "aria-expanded", String(!!show));
    if (show) {
      if (this.post) this.togglePost(false);
      /** @type {HTMLTextAreaElement} */ (this.editArea).value = "";
      /** @type {HTMLTextAreaElement} */ (this.editArea).focus();
    }
  }

  async derive() {
    if (!this.task) return;
    const im = this.task.images[this.index];
    /** @type {{id: string, n: number, text: string} | null} */
    const msg = await this.ask("derive", { id: this.task.id, index: im.index, prompt: /** @type {HTMLTextAreaElement} */ (this.editArea).value });
    if (!msg) {
      /** @type {HTMLTextAreaElement} */ (this.editArea).focus();
      return;
    }
    this.toggleEdit(false);
    this.say(msg.text, "info");
    /** @type {HTMLButtonElement} */ (this.editBtn).focus();
  }

  async remix() {
    if (!this.task) return;
    const im = this.task.images[this.index];
    /** @type {{id: string, n: number, text: string} | null} */
    const msg = await this.ask("remix", { id: this.task.id, index: im.index });
    if (msg) this.say(msg.text, "info");
  }

  // ---------------------------------------------------------------- words
  /**
   * A request whose failure is said in the status line (unless `quiet`): resolves the
   * reply's fields, or null. `any`: each caller declares the reply it asked for where it
   * keeps it.
   * @param {string} type
   * @param {Record<string, unknown>} body
   * @param {boolean} [quiet]
   * @returns {Promise<any>}
   */
  async ask(type, body, quiet = false) {
    try {
      const { msg } = await this.channel.request(type, body);
      return msg;
    } catch (err) {
      if (!quiet) this.say(this.words(err), "error");
      return null;
    }
  }

  /** @param {unknown} err */
  words(err) {
    return errorWords(err, this.strings, "gallery");
  }

  /** @param {string} text @param {string} [level] "info", "error", "busy" or a notice's */
  say(text, level = "info") {
    if (!this.status) return;
    setText(/** @type {HTMLDivElement} */ (this.status), text);
    /** @type {HTMLDivElement} */ (this.status).dataset.level = level;
    /** @type {HTMLDivElement} */ (this.status).hidden = !text;
  }

  dispose() {
    if (this.keyListener) window.removeEventListener("keydown", this.keyListener, true);
    for (const [event, fn] of this.listeners) this.model.off(event, fn);
    this.model.send({ type: "bye", view: this.viewId }); // this view no longer opens
    this.channel.dispose();
    if (this.dialog?.open) /** @type {HTMLDialogElement} */ (this.dialog).close();
    for (const url of this.full.values()) URL.revokeObjectURL(url);
    this.full.clear();
    this.clearThumbs();
    for (const t of this.downloads) clearTimeout(t);
    this.root.remove();
  }
}

export default widgetOf(GalleryView);
