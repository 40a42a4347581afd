// @ts-check
import { Channel, errorWords } from "../shared/channel.js";
import { icons } from "../shared/icons.js";
import { fmt, h, setText, widgetOf } from "../shared/util.js";

// The prompt panel. The kernel keeps the draft (so a reload or a second display shows the
// same inputs), counts templates, plans with the LLM and adds the tasks to the batch.

/** @typedef {import("../shared/util.js").Model} Model */
/**
 * @template T
 * @typedef {import("../shared/channel.js").Answer<T>} Answer
 */

/** @typedef {"llm" | "template" | "lines" | "per_image" | "file"} Mode */

/**
 * @typedef {{name: string, category: string, text: string, negative: string}} Preset
 * @typedef {{category: string, presets: {name: string, text: string}[]}} PresetGroup the picker's, by category
 * @typedef {{presets: PresetGroup[], preset_list: Preset[]}} PresetLists sent again by every preset change
 */

/**
 * A generation parameter the provider can take, and how to ask for it.
 * @typedef {object} Param
 * @property {string} name a Params field (size, n, seed and the others)
 * @property {"size" | "int" | "float" | "text"} kind
 * @property {string[]} [choices] sizes, "1024x1024"
 * @property {number} [min]
 * @property {number} [max]
 */

/**
 * @typedef {{params: Param[], negative: boolean, defaults: Record<string, string>}} Params what the provider takes (`params`)
 * @typedef {PresetLists & Params & {strings: Record<string, string>, draft: Record<string, string>, cap: number, max_tasks: number, busy: string}} Hello
 */

/**
 * What `create` would add (`propose`); over the cap, only how many (`count`, `exact`, `cap`).
 * @typedef {object} Proposal
 * @property {number} count tasks
 * @property {boolean} over_cap
 * @property {boolean} [exact] over the cap: `count` is exact (else a lower bound)
 * @property {number} [cap]
 * @property {number} images
 * @property {{p: string, refs: string[]}[]} sample the first tasks: prompt, reference names
 * @property {string} [cost] in words ("$1.20")
 * @property {string[]} [skipped] lines of a file that made no task
 * @property {string[]} [warnings]
 */

/** @typedef {{name: string, category: string, text: string | undefined, negative: string | undefined}} PresetValues a preset form's */

/** @type {Mode[]} */
const MODES = ["llm", "template", "lines", "per_image", "file"];
const PLAN_MS = 600000; // an LLM may take minutes; Cancel is always there

class PromptView {
  /** @param {Model} model @param {HTMLElement} el */
  constructor(model, el) {
    this.model = model;
    this.channel = new Channel(model);
    /** @type {Record<string, string>} */
    this.strings = {};
    /** @type {HTMLDivElement} */
    this.root = h("div", { class: "nbb-in nbb-pp", "data-lm-suppress-shortcuts": "true" });
    el.append(this.root);
    /** @type {string | null} the prompt before Enhance */
    this.undo = null;
    /** @type {string | null} the name of the file read */
    this.fileInfo = null;
    /** @type {[string, () => void][]} */
    this.listeners = [];
    /** @param {string} name @param {() => void} fn */
    const watch = (name, fn) => {
      model.on(`change:${name}`, fn);
      this.listeners.push([`change:${name}`, fn]);
    };
    watch("lang", () => this.start());
    watch("busy", () => this.paintBusy());
    watch("refs", () => this.paintCount());
    watch("params_version", () => this.refreshParams());
    this.start();
  }

  async start() {
    this.root.replaceChildren(h("div", { class: "nbb-pp-boot", text: "…" }));
    try {
      const { msg } = /** @type {Answer<Hello>} */ (await this.channel.request("hello"));
      this.strings = msg.strings;
      /** @type {Hello | undefined} */
      this.info = msg;
      this.build(msg);
    } catch (err) {
      this.root.replaceChildren(h("div", { class: "nbb-alert", role: "alert", text: this.words(err) }));
    }
  }

  /** @param {unknown} err */
  words(err) {
    return errorWords(err, this.strings, "prompt");
  }

  // ------------------------------------------------------------------ layout
  // The parts built here (fields typed `X | undefined` by tsc, as they are not set in the
  // constructor) exist before any event or reply that uses them: start() builds before
  // anything else is drawn, and every request starts from a control built here.
  /** @param {Hello} info */
  build(info) {
    const s = this.strings;
    const d = info.draft || {};
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    // modes: real radio buttons, so screen readers and keyboards know them
    this.modeInputs = /** @type {Record<Mode, HTMLInputElement>} */ ({});
    const modes = h("div", { class: "nbb-pp-modes", role: "radiogroup", "aria-label": s.mode });
    const group = `nbb-mode-${uid()}`; // one name per view: a radio group, arrow keys move in it
    for (const m of MODES) {
      const input = h("input", { type: "radio", name: group, value: m, onchange: () => this.setMode(m) });
      this.modeInputs[m] = input;
      modes.append(h("label", { class: "nbb-pp-mode" }, input, h("span", { text: s[`mode_${m}`] })));
    }
    this.prompt = /** @type {HTMLTextAreaElement} */ (
      h("textarea", {
        class: "nbb-pp-prompt",
        rows: 3,
        "aria-label": s.master_prompt,
        oninput: () => this.changed(),
      })
    );
    this.prompt.value = d.prompt || "";
    this.countLine = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-pp-count", role: "status", "aria-live": "polite" }));
    this.negative = /** @type {HTMLInputElement} */ (
      h("input", {
        type: "text",
        class: "nbb-pp-negative",
        "aria-label": s.negative_prompt,
        placeholder: s.negative_hint,
        oninput: () => this.changed(),
      })
    );
    this.negative.value = d.negative || "";
    this.llmCount = /** @type {HTMLInputElement} */ (
      h("input", {
        type: "number",
        min: 1,
        max: info.max_tasks,
        class: "nbb-pp-num",
        "aria-label": s.n_tasks,
        placeholder: s.auto,
        oninput: () => this.changed(),
      })
    );
    this.llmCount.value = d.count || "";

    // presets: one picker grouped by category, then insert or replace; managed in a dialog
    this.presetSelect = /** @type {HTMLSelectElement} */ (h("select", { "aria-label": s.presets, class: "nbb-pp-preset" }));
    this.fillPresets(info);
    this.manageBtn = /** @type {HTMLButtonElement} */ (
      h("button", {
        type: "button",
        class: "nbb-btn nbb-small",
        text: s.manage_presets,
        "aria-label": s.manage_presets,
        onclick: () => this.openPresets(),
      })
    );
    this.presetDialog = /** @type {HTMLDialogElement} */ (
      h("dialog", { class: "nbb-in nbb-pp-presets", "aria-label": s.manage_presets, "data-lm-suppress-shortcuts": "true" })
    );
    const presetBtn = (/** @type {"insert" | "replace"} */ op) =>
      h("button", {
        type: "button",
        class: "nbb-btn nbb-small",
        text: s[`preset_${op}`],
        "aria-label": s[`preset_${op}`],
        onclick: () => this.applyPreset(op),
      });
    this.enhanceBtn = /** @type {HTMLButtonElement} */ (
      h("button", {
        type: "button",
        class: "nbb-btn nbb-small",
        "aria-label": s.enhance,
        html: `${icons.sparkle}<span>${s.enhance}</span>`,
        onclick: () => this.enhance(),
      })
    );
    this.undoBtn = /** @type {HTMLButtonElement} */ (
      h("button", {
        type: "button",
        class: "nbb-btn nbb-small",
        "aria-label": s.undo_enhance,
        hidden: true,
        html: `${icons.undo}<span>${s.undo_enhance}</span>`,
        onclick: () => this.undoEnhance(),
      })
    );

    // from file
    this.fileInput = /** @type {HTMLInputElement} */ (h("input", { type: "file", hidden: true, accept: ".txt,.csv,.jsonl" }));
    this.fileInput.addEventListener("change", () => this.readFile());
    this.fileBtn = /** @type {HTMLButtonElement} */ (
      h("button", {
        type: "button",
        class: "nbb-btn nbb-small",
        "aria-label": s.choose_file,
        html: `${icons.upload}<span>${s.choose_file}</span>`,
        onclick: () => /** @type {HTMLInputElement} */ (this.fileInput).click(),
      })
    );
    this.fileText = /** @type {HTMLSpanElement} */ (h("span", { class: "nbb-pp-file-name", text: d.file_name || s.no_file_yet }));
    this.fileRow = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-pp-row nbb-pp-file" }, this.fileBtn, this.fileText, this.fileInput));

    // generation params: only what the provider can do (redrawn when it changes)
    /** @type {Record<string, HTMLInputElement | HTMLSelectElement> | undefined} */
    this.paramInputs = {};
    this.paramsGrid = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-pp-params" }));
    this.paramsBox = /** @type {HTMLDetailsElement} */ (h("details", { class: "nbb-pp-more" }, h("summary", { text: s.params }), this.paramsGrid));
    this.paintParams(info, d);

    this.alert = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-alert", role: "alert", hidden: true }));
    this.createBtn = /** @type {HTMLButtonElement} */ (
      h("button", {
        type: "button",
        class: "nbb-btn nbb-primary",
        "aria-label": s.create_tasks,
        html: `${icons.play}<span>${s.create_tasks}</span>`,
        onclick: () => this.propose(),
      })
    );
    this.spinner = /** @type {HTMLSpanElement} */ (h("span", { class: "nbb-pp-spin", role: "status", hidden: true }, h("i"), h("span", { text: s.planning })));
    this.cancelBtn = /** @type {HTMLButtonElement} */ (
      h("button", { type: "button", class: "nbb-btn", text: s.cancel, "aria-label": s.cancel, hidden: true, onclick: () => this.act("cancel") })
    );
    this.proposal = /** @type {HTMLDivElement} */ (h("div", { class: "nbb-pp-proposal", hidden: true, role: "region", "aria-label": s.proposal }));

    this.negRow = /** @type {HTMLLabelElement} */ (h("label", { class: "nbb-pp-field" }, h("span", { text: s.negative_prompt }), this.negative));
    this.negRow.hidden = !info.negative;
    this.paramsBox.hidden = !info.params.length;
    this.llmRow = /** @type {HTMLLabelElement} */ (h("label", { class: "nbb-pp-field nbb-pp-short" }, h("span", { text: s.n_tasks }), this.llmCount));

    this.root.replaceChildren(
      h("div", { class: "nbb-pp-head" }, h("span", { class: "nbb-pp-title", text: s.prompt_title }), modes),
      h("div", { class: "nbb-pp-help", text: "" }),
      this.prompt,
      h(
        "div",
        { class: "nbb-pp-row nbb-pp-tools" },
        this.countLine,
        h("span", { class: "nbb-pp-spring" }),
        // groups wrap as wholes: a picker never ends up apart from its buttons
        h("span", { class: "nbb-pp-group" }, this.presetSelect, presetBtn("insert"), presetBtn("replace"), this.manageBtn),
        h("span", { class: "nbb-pp-group" }, this.enhanceBtn, this.undoBtn),
      ),
      this.fileRow,
      h("div", { class: "nbb-pp-row" }, this.negRow, this.llmRow),
      this.paramsBox,
      this.alert,
      h("div", { class: "nbb-pp-row nbb-pp-actions" }, this.createBtn, this.spinner, this.cancelBtn),
      this.proposal,
      this.presetDialog,
    );
    this.help = /** @type {HTMLDivElement} */ (this.root.querySelector(".nbb-pp-help"));
    this.setMode(/** @type {Mode} */ (d.mode || "llm"), false);
    this.paintBusy();
  }

  /** @param {PresetLists} info */
  fillPresets(info) {
    const s = this.strings;
    const chosen = /** @type {HTMLSelectElement} */ (this.presetSelect).value;
    this.presetList = info.preset_list || [];
    /** @type {HTMLSelectElement} */ (this.presetSelect).replaceChildren(h("option", { value: "", text: s.pick_preset }));
    for (const group of info.presets) {
      const og = h("optgroup", { label: s[`cat_${group.category}`] || group.category });
      for (const p of group.presets) og.append(h("option", { value: p.name, text: p.name, title: p.text }));
      /** @type {HTMLSelectElement} */ (this.presetSelect).append(og);
    }
    if (this.presetList.some((p) => p.name === chosen)) /** @type {HTMLSelectElement} */ (this.presetSelect).value = chosen;
  }

  // ------------------------------------------------------------------ managing presets
  // One dialog: save the current prompt as a preset, then the list with Edit, Move up,
  // Move down and Delete (which asks first) on every row.
  openPresets() {
    this.editing = null;
    this.confirming = null;
    this.paintPresets();
    /** @type {HTMLDialogElement} */ (this.presetDialog).showModal();
    // paintPresets drew the form to save a preset: its title first
    /** @type {HTMLInputElement} */ (/** @type {HTMLDialogElement} */ (this.presetDialog).querySelector("input")).focus();
  }

  /**
   * A preset's fields and Save: title and category, with its text and negative for an edit.
   * @param {Partial<Preset>} values
   * @param {(values: PresetValues) => void} onSave
   * @param {string} saveLabel
   * @param {boolean} withText
   * @returns {HTMLElement[]}
   */
  presetForm(values, onSave, saveLabel, withText) {
    const s = this.strings;
    /** @type {(name: string, label: string, value: string | undefined, tag?: string) => [HTMLInputElement | HTMLTextAreaElement, HTMLLabelElement]} */
    const field = (name, label, value, tag = "input") => {
      /** @type {HTMLInputElement | HTMLTextAreaElement} */
      const input = h(tag, { "aria-label": label, class: `nbb-pp-pf-${name}`, ...(tag === "input" ? { type: "text" } : { rows: 2 }) });
      input.value = value || "";
      return [input, h("label", { class: "nbb-pp-field" }, h("span", { text: label }), input)];
    };
    const [title, titleRow] = field("title", s.preset_title, values.name);
    const [category, catRow] = field("category", s.preset_category, values.category);
    const list = `nbb-cats-${uid()}`;
    category.setAttribute("list", list);
    const cats = h(
      "datalist",
      { id: list },
      ...[...new Set(/** @type {Preset[]} */ (this.presetList).map((p) => p.category))].map((c) => h("option", { value: c })),
    );
    const parts = [titleRow, catRow, cats];
    /** @type {HTMLInputElement | HTMLTextAreaElement | null} */
    let text = null;
    /** @type {HTMLInputElement | HTMLTextAreaElement | null} */
    let negative = null;
    if (withText) {
      let row;
      [text, row] = field("text", s.preset_text, values.text, "textarea");
      parts.push(row);
      [negative, row] = field("negative", s.preset_negative, values.negative);
      parts.push(row);
    }
    const save = () => onSave({ name: title.value, category: category.value, text: text?.value, negative: negative?.value });
    for (const input of /** @type {HTMLElement[]} */ ([title, category, negative].filter(Boolean))) {
      input.addEventListener("keydown", (e) => {
        if (e.key === "Enter") {
          e.preventDefault();
          save();
        }
      });
    }
    parts.push(h("button", { type: "button", class: "nbb-btn nbb-primary nbb-small", text: saveLabel, "aria-label": saveLabel, onclick: save }));
    return parts;
  }

  /** @param {string} [focus] a selector of what to focus in the dialog once drawn */
  paintPresets(focus) {
    const s = this.strings;
    const d = /** @type {HTMLDialogElement} */ (this.presetDialog);
    /** @type {HTMLDivElement | undefined} */
    this.presetAlert = h("div", { class: "nbb-pp-preset-msg", role: "status", "aria-live": "polite" });
    const saveNew = h(
      "section",
      { class: "nbb-pp-preset-new", "aria-label": s.preset_save_as },
      h("strong", { text: s.preset_save_as }),
      h("div", { class: "nbb-pp-help", text: s.preset_save_help }),
      h("div", { class: "nbb-pp-row" }, ...this.presetForm({ category: "style" }, (v) => this.savePreset(v), s.preset_save, false)),
    );
    const list = h("ul", { class: "nbb-pp-preset-list", "aria-label": s.presets });
    /** @type {Preset[]} */ (this.presetList).forEach((p, i) => {
      list.append(this.presetRow(p, i));
    });
    d.replaceChildren(
      h(
        "div",
        { class: "nbb-pp-dhead" },
        h("strong", { text: s.manage_presets }),
        h("button", { type: "button", class: "nbb-icon", "aria-label": s.close, title: s.close, html: icons.cancel, onclick: () => d.close() }),
      ),
      saveNew,
      /** @type {HTMLDivElement} */ (this.presetAlert),
      list,
    );
    if (focus) {
      /** @type {HTMLElement | null} */
      const target = d.querySelector(focus);
      if (target) target.focus();
    }
  }

  /** @param {Preset} p @param {number} i its place */
  presetRow(p, i) {
    const s = this.strings;
    const n = /** @type {Preset[]} */ (this.presetList).length;
    /** @type {HTMLLIElement} */
    const row = h("li", { class: "nbb-pp-preset-row", "data-name": p.name });
    const key = CSS.escape(p.name);
    if (this.editing === p.name) {
      row.append(
        h("div", { class: "nbb-pp-preset-edit" }, ...this.presetForm(p, (v) => this.editPreset(p.name, v), s.preset_save_changes, true)),
        h("button", {
          type: "button",
          class: "nbb-btn nbb-small",
          text: s.cancel,
          onclick: () => {
            this.editing = null;
            this.paintPresets(`li[data-name="${key}"] .nbb-pp-pe`);
          },
        }),
      );
      return row;
    }
    if (this.confirming === p.name) {
      row.append(
        h("span", { class: "nbb-pp-warn", role: "alert", text: fmt(s, "preset_delete_q", { name: p.name }) }),
        h("button", {
          type: "button",
          class: "nbb-btn nbb-danger nbb-small",
          text: s.preset_delete_yes,
          "aria-label": fmt(s, "preset_delete_yes_for", { name: p.name }),
          onclick: () => this.deletePreset(p.name),
        }),
        h("button", {
          type: "button",
          class: "nbb-btn nbb-small nbb-pp-keep",
          text: s.preset_keep,
          onclick: () => {
            this.confirming = null;
            this.paintPresets(`li[data-name="${key}"] .nbb-pp-pd`);
          },
        }),
      );
      return row;
    }
    // visible text short (Edit, ↑, ↓, Delete), accessible name whole ("Move Cinematic up")
    /** @type {(cls: string, text: string, label: string, onclick: () => void, disabled?: boolean) => HTMLButtonElement} */
    const act = (cls, text, label, onclick, disabled = false) =>
      h("button", { type: "button", class: `nbb-btn nbb-small ${cls}`, text, "aria-label": label, title: label, disabled, onclick });
    row.append(
      h("span", { class: "nbb-pp-preset-name", text: p.name }),
      h("span", { class: "nbb-pp-ref", text: s[`cat_${p.category}`] || p.category }),
      h("span", { class: "nbb-pp-preset-text", text: p.text || p.negative }),
      h(
        "span",
        { class: "nbb-pp-preset-acts" },
        act("nbb-pp-pe", s.edit, fmt(s, "preset_edit", { name: p.name }), () => {
          this.editing = p.name;
          this.paintPresets(`li[data-name="${key}"] input`);
        }),
        act("nbb-pp-pu", "↑", fmt(s, "preset_up", { name: p.name }), () => this.movePreset(p.name, i - 1, ".nbb-pp-pu"), i === 0),
        act("nbb-pp-pdn", "↓", fmt(s, "preset_down", { name: p.name }), () => this.movePreset(p.name, i + 1, ".nbb-pp-pdn"), i === n - 1),
        act("nbb-pp-pd", s.delete, fmt(s, "preset_delete", { name: p.name }), () => {
          this.confirming = p.name;
          this.paintPresets(`li[data-name="${key}"] .nbb-pp-keep`);
        }),
      ),
    );
    return row;
  }

  /**
   * A preset change; the reply holds the lists again (and what changed).
   * @param {string} type
   * @param {Record<string, unknown>} body
   * @template {PresetLists} R the reply: the lists, and what changed
   * @param {(msg: R) => void} after
   */
  async presetAct(type, body, after) {
    try {
      const { msg } = /** @type {Answer<R>} */ (await this.channel.request(type, body));
      this.fillPresets(msg);
      after(msg);
    } catch (err) {
      this.paintPresets();
      setText(/** @type {HTMLDivElement} */ (this.presetAlert), this.words(err));
      /** @type {HTMLDivElement} */ (this.presetAlert).classList.add("nbb-pp-warn");
    }
  }

  /** @param {PresetValues} v */
  savePreset(v) {
    this.presetAct(
      "preset_save",
      {
        name: v.name,
        category: v.category,
        prompt: /** @type {HTMLTextAreaElement} */ (this.prompt).value,
        negative: /** @type {HTMLInputElement} */ (this.negative).value,
      },
      (/** @type {PresetLists & {saved: string}} */ msg) => {
        this.paintPresets();
        setText(/** @type {HTMLDivElement} */ (this.presetAlert), fmt(this.strings, "preset_saved", { name: msg.saved }));
        /** @type {HTMLSelectElement} */ (this.presetSelect).value = msg.saved;
        const row = /** @type {HTMLDialogElement} */ (this.presetDialog).querySelector(`li[data-name="${CSS.escape(msg.saved)}"]`);
        if (row) row.scrollIntoView({ block: "nearest" }); // the new one is at the end
      },
    );
  }

  /** @param {string} old its name @param {PresetValues} v */
  editPreset(old, v) {
    this.presetAct("preset_edit", { old, ...v }, (/** @type {PresetLists & {saved: string}} */ msg) => {
      this.editing = null;
      this.paintPresets(`li[data-name="${CSS.escape(msg.saved)}"] .nbb-pp-pe`);
      setText(/** @type {HTMLDivElement} */ (this.presetAlert), fmt(this.strings, "preset_saved", { name: msg.saved }));
    });
  }

  /** @param {string} name @param {number} index @param {string} button the class of the button to focus again */
  movePreset(name, index, button) {
    this.presetAct("preset_move", { name, index }, () => {
      const key = CSS.escape(name);
      this.paintPresets(`li[data-name="${key}"] ${button}:not([disabled])`);
      const row = /** @type {HTMLDialogElement} */ (this.presetDialog).querySelector(`li[data-name="${key}"]`);
      // Edit and Delete are never disabled
      if (row && !row.contains(document.activeElement)) /** @type {HTMLButtonElement} */ (row.querySelector("button:not([disabled])")).focus();
      setText(/** @type {HTMLDivElement} */ (this.presetAlert), fmt(this.strings, "preset_moved", { name, n: index + 1 }));
    });
  }

  /** @param {string} name */
  deletePreset(name) {
    this.presetAct("preset_delete", { name, confirm: true }, (/** @type {PresetLists & {deleted: string}} */ msg) => {
      this.confirming = null;
      this.paintPresets("input");
      setText(/** @type {HTMLDivElement} */ (this.presetAlert), fmt(this.strings, "preset_deleted", { name: msg.deleted }));
    });
  }

  /** @param {Params} info @param {Record<string, string>} values */
  paintParams(info, values) {
    const s = this.strings;
    const defaults = info.defaults || {};
    this.paramInputs = {};
    /** @type {HTMLDivElement} */ (this.paramsGrid).replaceChildren();
    for (const f of info.params) {
      const label = s[`param_${f.name}`] || f.name;
      const byDefault = defaults[f.name] ? `${s.default_value}: ${defaults[f.name]}` : s.default_value;
      /** @type {HTMLInputElement | HTMLSelectElement} */
      let input;
      if (f.kind === "size") {
        input = h(
          "select",
          { "aria-label": label },
          h("option", { value: "", text: byDefault.replace(/(\d)x(\d)/, "$1×$2") }),
          .../** @type {string[]} */ (f.choices).map((c) => h("option", { value: c, text: c.replace("x", "×") })),
        );
      } else {
        input = h("input", {
          type: f.kind === "text" ? "text" : "number",
          "aria-label": label,
          placeholder: byDefault,
          min: f.min,
          max: f.max,
          step: f.kind === "float" ? "any" : 1,
        });
      }
      input.value = values[f.name] || "";
      input.addEventListener("input", () => this.changed());
      input.addEventListener("change", () => this.changed());
      /** @type {Record<string, HTMLInputElement | HTMLSelectElement>} */ (this.paramInputs)[f.name] = input;
      /** @type {HTMLDivElement} */ (this.paramsGrid).append(h("label", { class: `nbb-pp-param nbb-pp-k-${f.kind}` }, h("span", { text: label }), input));
    }
  }

  // Another provider (from the settings or the studio's picker): offer its params.
  async refreshParams() {
    if (!this.paramsGrid) return;
    try {
      const { msg } = /** @type {Answer<Params>} */ (await this.channel.request("params"));
      /** @type {Record<string, string>} */
      const kept = {};
      for (const [name, input] of Object.entries(/** @type {Record<string, HTMLInputElement | HTMLSelectElement>} */ (this.paramInputs)))
        kept[name] = input.value;
      this.paintParams(msg, kept);
      /** @type {HTMLDetailsElement} */ (this.paramsBox).hidden = !msg.params.length;
      /** @type {HTMLLabelElement} */ (this.negRow).hidden = !msg.negative;
    } catch (err) {
      this.showAlert(this.words(err));
    }
  }

  /** @returns {Record<string, string>} the inputs as the kernel keeps them */
  draft() {
    /** @type {Record<string, string>} */
    const out = {
      mode: /** @type {Mode} */ (this.mode),
      prompt: /** @type {HTMLTextAreaElement} */ (this.prompt).value,
      negative: /** @type {HTMLInputElement} */ (this.negative).value,
      count: /** @type {HTMLInputElement} */ (this.llmCount).value,
    };
    if (this.fileInfo) out.file_name = this.fileInfo;
    for (const [name, input] of Object.entries(/** @type {Record<string, HTMLInputElement | HTMLSelectElement>} */ (this.paramInputs))) out[name] = input.value;
    return out;
  }

  /** @param {Mode} mode @param {boolean} [save] the draft */
  setMode(mode, save = true) {
    const s = this.strings;
    /** @type {Mode | undefined} */
    this.mode = mode;
    /** @type {Record<Mode, HTMLInputElement>} */ (this.modeInputs)[mode].checked = true;
    this.root.dataset.mode = mode;
    /** @type {HTMLTextAreaElement} */ (this.prompt).placeholder = s[`hint_${mode}`] || "";
    setText(/** @type {HTMLDivElement} */ (this.help), s[`help_${mode}`] || "");
    /** @type {HTMLDivElement} */ (this.fileRow).hidden = mode !== "file";
    /** @type {HTMLTextAreaElement} */ (this.prompt).hidden = mode === "file";
    /** @type {HTMLLabelElement} */ (this.llmRow).hidden = mode !== "llm";
    this.hideProposal();
    this.paintCount();
    if (save) this.saveDraft();
  }

  changed() {
    this.hideProposal();
    this.paintCount();
    clearTimeout(this.draftTimer);
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.draftTimer = setTimeout(() => this.saveDraft(), 400);
  }

  saveDraft() {
    this.channel.request("draft", { draft: this.draft() }).catch((err) => this.showAlert(this.words(err)));
  }

  // How many tasks the inputs make, updated as the person types.
  paintCount() {
    if (!this.countLine) return;
    const s = this.strings;
    const text = /** @type {HTMLTextAreaElement} */ (this.prompt).value;
    const refs = this.model.get("refs");
    clearTimeout(this.countTimer);
    if (this.mode === "lines") {
      const n = text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#")).length;
      setText(/** @type {HTMLDivElement} */ (this.countLine), fmt(s, "count_prompts", { n }));
    } else if (this.mode === "per_image") {
      setText(/** @type {HTMLDivElement} */ (this.countLine), refs ? fmt(s, "count_per_image", { n: refs }) : s.no_images);
    } else if (this.mode === "llm") {
      setText(/** @type {HTMLDivElement} */ (this.countLine), refs ? fmt(s, "llm_sees", { n: refs }) : s.llm_no_refs);
    } else if (this.mode === "file") {
      setText(/** @type {HTMLDivElement} */ (this.countLine), "");
    } else {
      // template: the kernel counts (Dynamic Prompts), a moment after the last key
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      this.countTimer = setTimeout(async () => {
        try {
          const { msg } = /** @type {Answer<{count: number, exact?: boolean, over?: boolean, error?: string}>} */ (
            await this.channel.request("count", { template: text })
          );
          if (/** @type {HTMLTextAreaElement} */ (this.prompt).value !== text || this.mode !== "template") return;
          if (msg.error) setText(/** @type {HTMLDivElement} */ (this.countLine), msg.error);
          else if (msg.over)
            setText(
              /** @type {HTMLDivElement} */ (this.countLine),
              fmt(s, "count_over", { n: msg.count.toLocaleString(), cap: /** @type {Hello} */ (this.info).cap.toLocaleString() }),
            );
          else setText(/** @type {HTMLDivElement} */ (this.countLine), fmt(s, "count_prompts", { n: msg.count }));
          /** @type {HTMLDivElement} */ (this.countLine).classList.toggle("nbb-pp-warn", !!(msg.error || msg.over));
        } catch (err) {
          setText(/** @type {HTMLDivElement} */ (this.countLine), this.words(err));
        }
      }, 150);
      return;
    }
    /** @type {HTMLDivElement} */ (this.countLine).classList.remove("nbb-pp-warn");
  }

  paintBusy() {
    if (!this.createBtn) return;
    const busy = this.model.get("busy");
    /** @type {HTMLSpanElement} */ (this.spinner).hidden = !busy;
    setText(
      /** @type {ChildNode} */ (/** @type {HTMLSpanElement} */ (this.spinner).lastChild),
      busy === "enhance" ? this.strings.enhancing : this.strings.planning,
    );
    /** @type {HTMLButtonElement} */ (this.cancelBtn).hidden = !busy;
    /** @type {HTMLButtonElement} */ (this.createBtn).disabled = !!busy;
    /** @type {HTMLButtonElement} */ (this.enhanceBtn).disabled = !!busy;
  }

  /** @param {string} text @param {"error" | "info"} [level] */
  showAlert(text, level = "error") {
    /** @type {HTMLDivElement} */ (this.alert).className = `nbb-alert${level === "info" ? " nbb-info" : ""}`;
    /** @type {HTMLDivElement} */ (this.alert).replaceChildren(
      h("span", { text }),
      // biome-ignore format: it would move the JSDoc cast off the parenthesised field
      h("button", { type: "button", class: "nbb-link", text: this.strings.dismiss, onclick: () => (/** @type {HTMLDivElement} */ (this.alert).hidden = true) }),
    );
    /** @type {HTMLDivElement} */ (this.alert).hidden = false;
  }

  hideProposal() {
    if (this.proposal) /** @type {HTMLDivElement} */ (this.proposal).hidden = true;
  }

  // ------------------------------------------------------------------ actions
  /**
   * A request whose failure is shown in the alert: resolves the reply's fields, or null.
   * `any`: each caller declares the reply it asked for where it keeps it.
   * @param {string} type
   * @param {Record<string, unknown>} [body]
   * @param {number} [timeout] ms
   * @returns {Promise<any>}
   */
  async act(type, body = {}, timeout = 30000) {
    try {
      const { msg } = await this.channel.request(type, body, { timeout });
      return msg;
    } catch (err) {
      this.showAlert(this.words(err));
      return null;
    }
  }

  async propose() {
    /** @type {HTMLDivElement} */ (this.alert).hidden = true;
    this.hideProposal();
    clearTimeout(this.draftTimer);
    /** @type {(Proposal & {cancelled?: boolean}) | null} */
    const msg = await this.act("propose", { draft: this.draft() }, PLAN_MS);
    if (!msg || msg.cancelled) return;
    this.showProposal(msg);
  }

  /** @param {Proposal} msg */
  showProposal(msg) {
    const s = this.strings;
    const box = /** @type {HTMLDivElement} */ (this.proposal);
    if (msg.over_cap) {
      const n = msg.exact ? msg.count.toLocaleString() : `${msg.count.toLocaleString()}+`;
      box.replaceChildren(
        h("div", { class: "nbb-pp-prop-head nbb-pp-warn", text: fmt(s, "over_cap_q", { n, cap: /** @type {number} */ (msg.cap).toLocaleString() }) }),
        h(
          "div",
          { class: "nbb-pp-row" },
          h("button", { type: "button", class: "nbb-btn nbb-danger", text: s.create_anyway, "aria-label": s.create_anyway, onclick: () => this.create(true) }),
          h("button", { type: "button", class: "nbb-btn", text: s.back, "aria-label": s.back, onclick: () => this.hideProposal() }),
        ),
      );
      box.hidden = false;
      return;
    }
    let head = fmt(s, msg.images === msg.count ? "will_create" : "will_create_images", { n: msg.count, images: msg.images });
    if (msg.cost) head += ` · ${fmt(s, "cost", { cost: msg.cost })}`;
    const list = h("ol", { class: "nbb-pp-sample" });
    for (const t of msg.sample) {
      list.append(h("li", {}, h("span", { class: "nbb-pp-sp", text: t.p }), ...t.refs.map((r) => h("span", { class: "nbb-pp-ref", text: r }))));
    }
    const more = msg.count > msg.sample.length ? h("div", { class: "nbb-pp-more-n", text: fmt(s, "and_more", { n: msg.count - msg.sample.length }) }) : null;
    const notes = [...(msg.skipped || []).map((x) => `${s.skipped}: ${x}`), ...(msg.warnings || [])];
    const parts = [
      h("div", { class: "nbb-pp-prop-head", text: head }),
      list,
      more,
      notes.length ? h("ul", { class: "nbb-pp-notes" }, ...notes.map((n) => h("li", { text: n }))) : null,
      h(
        "div",
        { class: "nbb-pp-row" },
        h("button", {
          type: "button",
          class: "nbb-btn nbb-primary",
          // its visible words are its name (it was "Add to batch" for assistive tech)
          text: fmt(s, msg.count === 1 ? "add_one" : "add_n", { n: msg.count }),
          onclick: () => this.create(false),
          disabled: msg.count === 0,
        }),
        h("button", { type: "button", class: "nbb-btn", text: s.back, "aria-label": s.back, onclick: () => this.hideProposal() }),
      ),
    ];
    box.replaceChildren(...parts.filter(Boolean)); // replaceChildren would print "null"
    box.hidden = false;
    /** @type {HTMLButtonElement} */ (box.querySelector(".nbb-primary")).focus(); // the Add button above
  }

  /** @param {boolean} confirm over the cap: create anyway */
  async create(confirm) {
    /** @type {{added: number} | null} */
    const msg = await this.act("create", { confirm }, 120000);
    this.hideProposal();
    if (msg) this.showAlert(fmt(this.strings, "added", { n: msg.added }), "info");
  }

  async enhance() {
    const before = /** @type {HTMLTextAreaElement} */ (this.prompt).value;
    /** @type {HTMLDivElement} */ (this.alert).hidden = true;
    /** @type {{prompt: string, cancelled?: boolean} | null} */
    const msg = await this.act("enhance", { prompt: before }, PLAN_MS);
    if (!msg || msg.cancelled) return;
    this.undo = before;
    /** @type {HTMLTextAreaElement} */ (this.prompt).value = msg.prompt;
    /** @type {HTMLButtonElement} */ (this.undoBtn).hidden = false;
    this.changed();
  }

  undoEnhance() {
    if (this.undo === null) return;
    /** @type {HTMLTextAreaElement} */ (this.prompt).value = this.undo;
    this.undo = null;
    /** @type {HTMLButtonElement} */ (this.undoBtn).hidden = true;
    this.changed();
    /** @type {HTMLTextAreaElement} */ (this.prompt).focus();
  }

  /** @param {"insert" | "replace"} op */
  async applyPreset(op) {
    const name = /** @type {HTMLSelectElement} */ (this.presetSelect).value;
    if (!name) {
      this.showAlert(this.strings.pick_preset_first, "info");
      return;
    }
    /** @type {{prompt: string, negative: string} | null} */
    const msg = await this.act("preset", {
      name,
      op,
      prompt: /** @type {HTMLTextAreaElement} */ (this.prompt).value,
      negative: /** @type {HTMLInputElement} */ (this.negative).value,
    });
    if (!msg) return;
    /** @type {HTMLTextAreaElement} */ (this.prompt).value = msg.prompt;
    /** @type {HTMLInputElement} */ (this.negative).value = msg.negative;
    this.changed();
  }

  async readFile() {
    const file = /** @type {HTMLInputElement} */ (this.fileInput).files?.[0];
    /** @type {HTMLInputElement} */ (this.fileInput).value = "";
    if (!file) return;
    if (file.size > 4 * 1024 * 1024) {
      this.showAlert(this.strings.file_too_big);
      return;
    }
    const text = await file.text();
    /** @type {{count: number, skipped: string[], warnings: string[]} | null} */
    const msg = await this.act("file", { name: file.name, text }, 120000);
    if (!msg) return;
    this.fileInfo = file.name;
    let line = `${file.name} · ${fmt(this.strings, "count_prompts", { n: msg.count })}`;
    if (msg.skipped.length) line += ` · ${fmt(this.strings, "n_skipped", { n: msg.skipped.length })}`;
    setText(/** @type {HTMLSpanElement} */ (this.fileText), line);
    this.setMode("file", false);
  }

  dispose() {
    clearTimeout(this.draftTimer);
    clearTimeout(this.countTimer);
    for (const [event, fn] of this.listeners) this.model.off(event, fn);
    this.channel.dispose();
    this.root.remove();
  }
}

let n = 0;
const uid = () => `${Date.now().toString(36)}${++n}`;

export default widgetOf(PromptView);
