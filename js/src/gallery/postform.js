// @ts-check
import { ZIP_TIMEOUT } from "../shared/download.js";
import { fmt, h, setAttr, setText } from "../shared/util.js";

// The gallery's post-process form: resize / crop to aspect / convert format / watermark /
// strip metadata, applied to this image, this task, the grid's selection or the batch.
// The kernel checks every value and makes new files off its loop (the originals are never
// touched); a refusal names the field, which is marked and described in words. A batch
// shows its progress; the result can be downloaded (one file, or a ZIP with manifest).

/**
 * What the form uses of the gallery it is in.
 * @typedef {object} Gallery
 * @property {Record<string, string>} strings
 * @property {string} viewId
 * @property {{id: string, images: {index: number}[]} | null} task the task shown
 * @property {number} index the image shown, in task.images
 * @property {import("../shared/channel.js").Channel} channel
 * @property {(type: string, body: Record<string, unknown>, quiet?: boolean) => Promise<any>} ask
 * @property {(err: unknown) => string} words
 * @property {(force?: boolean) => void} togglePost
 * @property {(taskId: string, index: number, key: string) => Promise<void>} downloadCopy
 * @property {(scope: string, extra?: Record<string, unknown>) => Promise<void>} downloadZip
 */

/** @typedef {{job: string, done: number, total: number}} Progress a job's, posted by the kernel (pp_progress) */
/** @typedef {HTMLInputElement | HTMLSelectElement} Field */
/** @typedef {HTMLFieldSetElement & {_box: HTMLInputElement}} Section a step, with the box that turns it on */
/** @typedef {Record<string, Record<string, string | boolean>>} Form the steps' values: {resize: {on, width, ...}, ...} */
/** @typedef {{id: string, index: number, key: string}} CopyRef the first copy made */

/**
 * The kernel's answer to `postprocess`: a field it refused (`invalid`: its name, "" for
 * no step ticked; `error`: why; nothing else is sent then), or what it made.
 * @typedef {object} PostReply
 * @property {string} [invalid]
 * @property {string} [error]
 * @property {string} text what was made, in words
 * @property {number} count
 * @property {string} label
 * @property {CopyRef} first
 */

/**
 * @typedef {object} PostScopes how many images each scope holds (`pp_scopes`), and the choices
 * @property {number} task
 * @property {number} selection
 * @property {number} selection_images
 * @property {number} batch
 * @property {string[]} aspects
 * @property {string[]} positions
 */

let jobs = 0;

export class PostForm {
  /** @param {Gallery} gallery */
  constructor(gallery) {
    this.g = gallery;
    /** @type {string | null} the job Apply started, while it runs */
    this.job = null;
    const s = gallery.strings;
    const id = (/** @type {string} */ name) => `${gallery.viewId}-pp-${name}`;
    /** @param {string} name @param {string} text @param {Field} control */
    const labelled = (name, text, control) => {
      control.id = id(name);
      return h("div", { class: "nbb-g-ppfield" }, h("label", { for: control.id, text }), control);
    };
    /** @type {(name: string, value: number | string, min: number, max: number) => HTMLInputElement} */
    const number = (name, value, min, max) => h("input", { type: "number", class: "nbb-g-ppin", name, value, min, max, step: 1, inputmode: "numeric" });
    /** @type {(name: string, options: [string, string][]) => HTMLSelectElement} */
    const select = (name, options) => h("select", { class: "nbb-g-ppin", name }, ...options.map(([v, t]) => h("option", { value: v, text: t })));
    /** @type {Record<string, Field>} by name: "resize.width", ... */
    this.fields = {};
    /** @type {(key: string, title: string, on: boolean, ...controls: HTMLElement[]) => Section} */
    const section = (key, title, on, ...controls) => {
      /** @type {HTMLInputElement} */
      const box = h("input", { type: "checkbox", class: "nbb-g-ppcheck", name: `${key}.on` });
      box.checked = on;
      box.addEventListener("change", () => this.sync());
      const fs = h("fieldset", { class: "nbb-g-ppset" }, h("legend", {}, h("label", { class: "nbb-g-ppon" }, box, h("span", { text: title }))), ...controls);
      this.fields[`${key}.on`] = box;
      fs._box = box;
      return fs;
    };
    this.scope = select("scope", []);
    const w = number("resize.width", 1024, 1, 16384);
    const hgt = number("resize.height", "", 1, 16384);
    const mode = select(
      "resize.mode",
      ["fit", "fill", "exact"].map((m) => /** @type {[string, string]} */ ([m, s[`pp_mode_${m}`]])),
    );
    this.aspect = select("crop.aspect", []);
    const format = select("format.format", [
      ["webp", "WebP"],
      ["jpeg", "JPEG"],
      ["png", "PNG"],
    ]);
    const quality = number("format.quality", 90, 1, 100);
    /** @type {HTMLInputElement} */
    const text = h("input", { type: "text", class: "nbb-g-ppin", name: "watermark.text", maxlength: 200, autocomplete: "off" });
    this.position = select("watermark.position", []);
    const opacity = number("watermark.opacity", 50, 1, 100);
    Object.assign(this.fields, {
      "resize.width": w,
      "resize.height": hgt,
      "resize.mode": mode,
      "crop.aspect": this.aspect,
      "format.format": format,
      "format.quality": quality,
      "watermark.text": text,
      "watermark.position": this.position,
      "watermark.opacity": opacity,
    });
    this.sets = [
      section("resize", s.pp_resize, true, labelled("w", s.pp_width, w), labelled("h", s.pp_height, hgt), labelled("mode", s.pp_mode, mode)),
      section("crop", s.pp_crop, false, labelled("aspect", s.pp_aspect, this.aspect)),
      section("format", s.pp_format, true, labelled("format", s.pp_format_name, format), labelled("quality", s.pp_quality, quality)),
      section(
        "watermark",
        s.pp_watermark,
        false,
        labelled("text", s.pp_wm_text, text),
        labelled("pos", s.pp_wm_position, this.position),
        labelled("opacity", s.pp_wm_opacity, opacity),
      ),
      section("strip", s.pp_strip, false),
    ];
    /** @type {HTMLDivElement} */
    this.error = h("div", { class: "nbb-g-pperror", role: "alert" });
    /** @type {HTMLDivElement} */
    this.bar = h("div", { class: "nbb-g-ppbar", role: "progressbar", "aria-label": s.pp_progress, "aria-valuemin": 0, hidden: true }, h("i"));
    /** @type {HTMLDivElement} */
    this.note = h("div", { class: "nbb-g-ppnote", role: "status", "aria-live": "polite" });
    /** @type {HTMLButtonElement} */
    this.applyBtn = h("button", { type: "submit", class: "nbb-gbtn nbb-primary", text: s.pp_apply });
    /** @type {HTMLButtonElement} */
    this.resultBtn = h("button", { type: "button", class: "nbb-gbtn", hidden: true, onclick: () => this.downloadResult() });
    /** @type {HTMLFormElement} */
    this.el = h(
      "form",
      { class: "nbb-g-pp", hidden: true, "aria-label": s.postprocess, novalidate: true },
      h("div", { class: "nbb-g-label", text: s.pp_title }),
      labelled("scope", s.pp_scope, this.scope),
      ...this.sets,
      this.error,
      this.bar,
      h(
        "div",
        { class: "nbb-g-row" },
        this.applyBtn,
        h("button", { type: "button", class: "nbb-gbtn", text: s.close, "aria-label": s.pp_close, onclick: () => this.g.togglePost(false) }),
      ),
      this.note,
      this.resultBtn,
    );
    this.el.addEventListener("submit", (e) => {
      e.preventDefault();
      this.apply();
    });
    // the gallery's own keys (arrows, S, D) stay out of the fields
    this.el.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        this.g.togglePost(false);
      }
      e.stopPropagation();
    });
    this.sync();
  }

  sync() {
    for (const fs of this.sets) {
      for (const el of /** @type {NodeListOf<Field>} */ (fs.querySelectorAll(".nbb-g-ppin"))) el.disabled = !fs._box.checked;
    }
  }

  // opened by the gallery only while a task is shown
  async open() {
    const g = this.g;
    const s = g.strings;
    const im = /** @type {NonNullable<Gallery["task"]>} */ (g.task).images[g.index];
    this.mark(null, "");
    /** @type {PostScopes | null} */
    const msg = await g.ask("pp_scopes", { id: /** @type {NonNullable<Gallery["task"]>} */ (g.task).id, index: im.index });
    if (!msg) return;
    const keep = this.scope.value || "image";
    /** @type {[string, string][]} */
    const options = [
      ["image", s.pp_scope_image],
      ["task", fmt(s, "pp_scope_task", { n: msg.task })],
      ["selection", fmt(s, "pp_scope_selection", { n: msg.selection })],
      ["batch", fmt(s, "pp_scope_batch", { n: msg.batch })],
    ];
    // nothing selected in the grid: that scope cannot be chosen (the kernel says so too)
    /** @type {Record<string, boolean>} */
    const empty = { selection: !msg.selection, task: !msg.task, batch: !msg.batch };
    this.scope.replaceChildren(...options.map(([v, t]) => h("option", { value: v, text: t, disabled: empty[v] })));
    this.scope.value = keep;
    if (this.scope.selectedOptions[0]?.disabled) this.scope.value = "image";
    if (!this.aspect.options.length) {
      this.aspect.replaceChildren(...msg.aspects.map((a) => h("option", { value: a, text: a })));
      this.position.replaceChildren(...msg.positions.map((p) => h("option", { value: p, text: s[`pp_pos_${p}`] || p })));
    }
    this.scope.focus();
  }

  /** @returns {Form} */
  values() {
    /** @type {Form} */
    const form = {};
    for (const [name, el] of Object.entries(this.fields)) {
      const [part, key] = name.split(".");
      form[part] = form[part] || {};
      form[part][key] = el.type === "checkbox" ? /** @type {HTMLInputElement} */ (el).checked : el.value;
    }
    for (const part of ["resize", "crop", "format", "watermark", "strip"]) form[part] = form[part] || { on: false };
    return form;
  }

  /** @param {string | null} field the refused one's name @param {string} text why, in words */
  mark(field, text) {
    for (const [name, el] of Object.entries(this.fields)) setAttr(el, "aria-invalid", name === field ? "true" : null);
    setText(this.error, text);
    this.error.hidden = !text;
    const el = field && this.fields[field];
    if (el) {
      if (!this.error.id) this.error.id = `${this.g.viewId}-pp-error`;
      setAttr(el, "aria-describedby", this.error.id);
      el.focus();
    }
  }

  /** @param {Progress} msg */
  progress(msg) {
    if (!this.job || msg.job !== this.job) return; // another view's (or an old) job
    this.bar.hidden = msg.total < 2;
    setAttr(this.bar, "aria-valuemax", msg.total);
    setAttr(this.bar, "aria-valuenow", msg.done);
    /** @type {HTMLElement} */ (this.bar.firstChild).style.width = `${(100 * msg.done) / msg.total}%`;
    setText(this.note, fmt(this.g.strings, "pp_working", { done: msg.done, total: msg.total }));
  }

  async apply() {
    const g = this.g;
    if (!g.task) return;
    const s = g.strings;
    const im = g.task.images[g.index];
    const form = this.values();
    const scope = this.scope.value;
    jobs += 1;
    this.job = `${g.viewId}-${jobs}`;
    this.mark(null, "");
    this.resultBtn.hidden = true;
    this.applyBtn.disabled = true;
    this.bar.hidden = true;
    /** @type {HTMLElement} */ (this.bar.firstChild).style.width = "0";
    setText(this.note, fmt(s, "pp_working", { done: 0, total: "…" }));
    try {
      const { msg } = /** @type {import("../shared/channel.js").Answer<PostReply>} */ (
        await g.channel.request("postprocess", { scope, id: g.task.id, index: im.index, form, job: this.job }, { timeout: ZIP_TIMEOUT })
      );
      if (msg.invalid !== undefined) {
        setText(this.note, "");
        this.applyBtn.disabled = false;
        this.mark(msg.invalid, /** @type {string} */ (msg.error));
        if (!msg.invalid) this.fields["resize.on"].focus(); // no step ticked: the first one
        return;
      }
      this.bar.hidden = true;
      setText(this.note, msg.text);
      /** @type {{scope: string, form: Form, first: CopyRef, count: number, id: string, index: number} | undefined} what Apply made, to download */
      this.result = { scope, form, first: msg.first, count: msg.count, id: g.task.id, index: im.index };
      const one = msg.count === 1 && scope === "image";
      this.resultBtn.textContent = one ? s.pp_download_one : s.pp_download_zip;
      this.resultBtn.hidden = false;
    } catch (err) {
      setText(this.note, "");
      this.mark(null, g.words(err));
    } finally {
      this.applyBtn.disabled = false;
      this.job = null;
    }
    // the disabled Apply button lost the focus: give it to what comes next
    if (!this.el.contains(document.activeElement) && !this.el.hidden) {
      (this.resultBtn.hidden ? this.applyBtn : this.resultBtn).focus();
    }
  }

  async downloadResult() {
    const r = this.result;
    if (!r) return;
    const g = this.g;
    if (r.scope === "image") {
      await g.downloadCopy(r.first.id, r.first.index, r.first.key);
      return;
    }
    await g.downloadZip(r.scope, { form: r.form, index: r.index, id: r.id });
  }
}
