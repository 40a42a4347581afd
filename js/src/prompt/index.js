// @ts-check
import { Channel, errorWords } from "../shared/channel.js";
import { icons } from "../shared/icons.js";
import { fmt, h, setText, widgetOf } from "../shared/util.js";

// The prompt panel. The kernel keeps the draft (so a reload or a second display shows the
// same inputs), counts templates, plans with the LLM and adds the tasks to the batch.

const MODES = ["llm", "template", "lines", "per_image", "file"];
const PLAN_MS = 600000; // an LLM may take minutes; Cancel is always there

class PromptView {
  constructor(model, el) {
    this.model = model;
    this.channel = new Channel(model);
    this.strings = {};
    this.root = h("div", { class: "nbb-in nbb-pp", "data-lm-suppress-shortcuts": "true" });
    el.append(this.root);
    this.undo = null;
    this.fileInfo = null;
    this.listeners = [];
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
      const { msg } = await this.channel.request("hello");
      this.strings = msg.strings;
      this.info = msg;
      this.build(msg);
    } catch (err) {
      this.root.replaceChildren(h("div", { class: "nbb-alert", role: "alert", text: this.words(err) }));
    }
  }

  words(err) {
    return errorWords(err, this.strings, "prompt");
  }

  // ------------------------------------------------------------------ layout
  build(info) {
    const s = this.strings;
    const d = info.draft || {};
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    // modes: real radio buttons, so screen readers and keyboards know them
    this.modeInputs = {};
    const modes = h("div", { class: "nbb-pp-modes", role: "radiogroup", "aria-label": s.mode });
    const group = `nbb-mode-${uid()}`; // one name per view: a radio group, arrow keys move in it
    for (const m of MODES) {
      const input = h("input", { type: "radio", name: group, value: m, onchange: () => this.setMode(m) });
      this.modeInputs[m] = input;
      modes.append(h("label", { class: "nbb-pp-mode" }, input, h("span", { text: s[`mode_${m}`] })));
    }
    this.prompt = h("textarea", {
      class: "nbb-pp-prompt",
      rows: 3,
      "aria-label": s.master_prompt,
      oninput: () => this.changed(),
    });
    this.prompt.value = d.prompt || "";
    this.countLine = h("div", { class: "nbb-pp-count", role: "status", "aria-live": "polite" });
    this.negative = h("input", {
      type: "text",
      class: "nbb-pp-negative",
      "aria-label": s.negative_prompt,
      placeholder: s.negative_hint,
      oninput: () => this.changed(),
    });
    this.negative.value = d.negative || "";
    this.llmCount = h("input", {
      type: "number",
      min: 1,
      max: info.max_tasks,
      class: "nbb-pp-num",
      "aria-label": s.n_tasks,
      placeholder: s.auto,
      oninput: () => this.changed(),
    });
    this.llmCount.value = d.count || "";

    // presets: one picker grouped by category, then insert or replace; managed in a dialog
    this.presetSelect = h("select", { "aria-label": s.presets, class: "nbb-pp-preset" });
    this.fillPresets(info);
    this.manageBtn = h("button", {
      type: "button",
      class: "nbb-btn nbb-small",
      text: s.manage_presets,
      "aria-label": s.manage_presets,
      onclick: () => this.openPresets(),
    });
    this.presetDialog = h("dialog", { class: "nbb-in nbb-pp-presets", "aria-label": s.manage_presets, "data-lm-suppress-shortcuts": "true" });
    const presetBtn = (op) =>
      h("button", {
        type: "button",
        class: "nbb-btn nbb-small",
        text: s[`preset_${op}`],
        "aria-label": s[`preset_${op}`],
        onclick: () => this.applyPreset(op),
      });
    this.enhanceBtn = h("button", {
      type: "button",
      class: "nbb-btn nbb-small",
      "aria-label": s.enhance,
      html: `${icons.sparkle}<span>${s.enhance}</span>`,
      onclick: () => this.enhance(),
    });
    this.undoBtn = h("button", {
      type: "button",
      class: "nbb-btn nbb-small",
      "aria-label": s.undo_enhance,
      hidden: true,
      html: `${icons.undo}<span>${s.undo_enhance}</span>`,
      onclick: () => this.undoEnhance(),
    });

    // from file
    this.fileInput = h("input", { type: "file", hidden: true, accept: ".txt,.csv,.jsonl" });
    this.fileInput.addEventListener("change", () => this.readFile());
    this.fileBtn = h("button", {
      type: "button",
      class: "nbb-btn nbb-small",
      "aria-label": s.choose_file,
      html: `${icons.upload}<span>${s.choose_file}</span>`,
      onclick: () => this.fileInput.click(),
    });
    this.fileText = h("span", { class: "nbb-pp-file-name", text: d.file_name || s.no_file_yet });
    this.fileRow = h("div", { class: "nbb-pp-row nbb-pp-file" }, this.fileBtn, this.fileText, this.fileInput);

    // generation params: only what the provider can do (redrawn when it changes)
    this.paramInputs = {};
    this.paramsGrid = h("div", { class: "nbb-pp-params" });
    this.paramsBox = h("details", { class: "nbb-pp-more" }, h("summary", { text: s.params }), this.paramsGrid);
    this.paintParams(info, d);

    this.alert = h("div", { class: "nbb-alert", role: "alert", hidden: true });
    this.createBtn = h("button", {
      type: "button",
      class: "nbb-btn nbb-primary",
      "aria-label": s.create_tasks,
      html: `${icons.play}<span>${s.create_tasks}</span>`,
      onclick: () => this.propose(),
    });
    this.spinner = h("span", { class: "nbb-pp-spin", role: "status", hidden: true }, h("i"), h("span", { text: s.planning }));
    this.cancelBtn = h("button", { type: "button", class: "nbb-btn", text: s.cancel, "aria-label": s.cancel, hidden: true, onclick: () => this.act("cancel") });
    this.proposal = h("div", { class: "nbb-pp-proposal", hidden: true, role: "region", "aria-label": s.proposal });

    this.negRow = h("label", { class: "nbb-pp-field" }, h("span", { text: s.negative_prompt }), this.negative);
    this.negRow.hidden = !info.negative;
    this.paramsBox.hidden = !info.params.length;
    this.llmRow = h("label", { class: "nbb-pp-field nbb-pp-short" }, h("span", { text: s.n_tasks }), this.llmCount);

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
    this.help = this.root.querySelector(".nbb-pp-help");
    this.setMode(d.mode || "llm", false);
    this.paintBusy();
  }

  fillPresets(info) {
    const s = this.strings;
    const chosen = this.presetSelect.value;
    this.presetList = info.preset_list || [];
    this.presetSelect.replaceChildren(h("option", { value: "", text: s.pick_preset }));
    for (const group of info.presets) {
      const og = h("optgroup", { label: s[`cat_${group.category}`] || group.category });
      for (const p of group.presets) og.append(h("option", { value: p.name, text: p.name, title: p.text }));
      this.presetSelect.append(og);
    }
    if (this.presetList.some((p) => p.name === chosen)) this.presetSelect.value = chosen;
  }

  // ------------------------------------------------------------------ managing presets
  // One dialog: save the current prompt as a preset, then the list with Edit, Move up,
  // Move down and Delete (which asks first) on every row.
  openPresets() {
    this.editing = null;
    this.confirming = null;
    this.paintPresets();
    this.presetDialog.showModal();
    this.presetDialog.querySelector("input").focus();
  }

  presetForm(values, onSave, saveLabel, withText) {
    const s = this.strings;
    const field = (name, label, value, tag = "input") => {
      const input = h(tag, { "aria-label": label, class: `nbb-pp-pf-${name}`, ...(tag === "input" ? { type: "text" } : { rows: 2 }) });
      input.value = value || "";
      return [input, h("label", { class: "nbb-pp-field" }, h("span", { text: label }), input)];
    };
    const [title, titleRow] = field("title", s.preset_title, values.name);
    const [category, catRow] = field("category", s.preset_category, values.category);
    const list = `nbb-cats-${uid()}`;
    category.setAttribute("list", list);
    const cats = h("datalist", { id: list }, ...[...new Set(this.presetList.map((p) => p.category))].map((c) => h("option", { value: c })));
    const parts = [titleRow, catRow, cats];
    let text = null;
    let negative = null;
    if (withText) {
      let row;
      [text, row] = field("text", s.preset_text, values.text, "textarea");
      parts.push(row);
      [negative, row] = field("negative", s.preset_negative, values.negative);
      parts.push(row);
    }
    const save = () => onSave({ name: title.value, category: category.value, text: text?.value, negative: negative?.value });
    for (const input of [title, category, negative].filter(Boolean)) {
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

  paintPresets(focus) {
    const s = this.strings;
    const d = this.presetDialog;
    this.presetAlert = h("div", { class: "nbb-pp-preset-msg", role: "status", "aria-live": "polite" });
    const saveNew = h(
      "section",
      { class: "nbb-pp-preset-new", "aria-label": s.preset_save_as },
      h("strong", { text: s.preset_save_as }),
      h("div", { class: "nbb-pp-help", text: s.preset_save_help }),
      h("div", { class: "nbb-pp-row" }, ...this.presetForm({ category: "style" }, (v) => this.savePreset(v), s.preset_save, false)),
    );
    const list = h("ul", { class: "nbb-pp-preset-list", "aria-label": s.presets });
    this.presetList.forEach((p, i) => {
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
      this.presetAlert,
      list,
    );
    if (focus) {
      const target = d.querySelector(focus);
      if (target) target.focus();
    }
  }

  presetRow(p, i) {
    const s = this.strings;
    const n = this.presetList.length;
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

  async presetAct(type, body, after) {
    try {
      const { msg } = await this.channel.request(type, body);
      this.fillPresets(msg);
      after(msg);
    } catch (err) {
      this.paintPresets();
      setText(this.presetAlert, this.words(err));
      this.presetAlert.classList.add("nbb-pp-warn");
    }
  }

  savePreset(v) {
    this.presetAct("preset_save", { name: v.name, category: v.category, prompt: this.prompt.value, negative: this.negative.value }, (msg) => {
      this.paintPresets();
      setText(this.presetAlert, fmt(this.strings, "preset_saved", { name: msg.saved }));
      this.presetSelect.value = msg.saved;
      const row = this.presetDialog.querySelector(`li[data-name="${CSS.escape(msg.saved)}"]`);
      if (row) row.scrollIntoView({ block: "nearest" }); // the new one is at the end
    });
  }

  editPreset(old, v) {
    this.presetAct("preset_edit", { old, ...v }, (msg) => {
      this.editing = null;
      this.paintPresets(`li[data-name="${CSS.escape(msg.saved)}"] .nbb-pp-pe`);
      setText(this.presetAlert, fmt(this.strings, "preset_saved", { name: msg.saved }));
    });
  }

  movePreset(name, index, button) {
    this.presetAct("preset_move", { name, index }, () => {
      const key = CSS.escape(name);
      this.paintPresets(`li[data-name="${key}"] ${button}:not([disabled])`);
      const row = this.presetDialog.querySelector(`li[data-name="${key}"]`);
      if (row && !row.contains(document.activeElement)) row.querySelector("button:not([disabled])").focus();
      setText(this.presetAlert, fmt(this.strings, "preset_moved", { name, n: index + 1 }));
    });
  }

  deletePreset(name) {
    this.presetAct("preset_delete", { name, confirm: true }, (msg) => {
      this.confirming = null;
      this.paintPresets("input");
      setText(this.presetAlert, fmt(this.strings, "preset_deleted", { name: msg.deleted }));
    });
  }

  paintParams(info, values) {
    const s = this.strings;
    const defaults = info.defaults || {};
    this.paramInputs = {};
    this.paramsGrid.replaceChildren();
    for (const f of info.params) {
      const label = s[`param_${f.name}`] || f.name;
      const byDefault = defaults[f.name] ? `${s.default_value}: ${defaults[f.name]}` : s.default_value;
      let input;
      if (f.kind === "size") {
        input = h(
          "select",
          { "aria-label": label },
          h("option", { value: "", text: byDefault.replace(/(\d)x(\d)/, "$1×$2") }),
          ...f.choices.map((c) => h("option", { value: c, text: c.replace("x", "×") })),
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
      this.paramInputs[f.name] = input;
      this.paramsGrid.append(h("label", { class: `nbb-pp-param nbb-pp-k-${f.kind}` }, h("span", { text: label }), input));
    }
  }

  // Another provider (from the settings or the studio's picker): offer its params.
  async refreshParams() {
    if (!this.paramsGrid) return;
    try {
      const { msg } = await this.channel.request("params");
      const kept = {};
      for (const [name, input] of Object.entries(this.paramInputs)) kept[name] = input.value;
      this.paintParams(msg, kept);
      this.paramsBox.hidden = !msg.params.length;
      this.negRow.hidden = !msg.negative;
    } catch (err) {
      this.showAlert(this.words(err));
    }
  }

  draft() {
    const out = { mode: this.mode, prompt: this.prompt.value, negative: this.negative.value, count: this.llmCount.value };
    if (this.fileInfo) out.file_name = this.fileInfo;
    for (const [name, input] of Object.entries(this.paramInputs)) out[name] = input.value;
    return out;
  }

  setMode(mode, save = true) {
    const s = this.strings;
    this.mode = mode;
    this.modeInputs[mode].checked = true;
    this.root.dataset.mode = mode;
    this.prompt.placeholder = s[`hint_${mode}`] || "";
    setText(this.help, s[`help_${mode}`] || "");
    this.fileRow.hidden = mode !== "file";
    this.prompt.hidden = mode === "file";
    this.llmRow.hidden = mode !== "llm";
    this.hideProposal();
    this.paintCount();
    if (save) this.saveDraft();
  }

  changed() {
    this.hideProposal();
    this.paintCount();
    clearTimeout(this.draftTimer);
    this.draftTimer = setTimeout(() => this.saveDraft(), 400);
  }

  saveDraft() {
    this.channel.request("draft", { draft: this.draft() }).catch((err) => this.showAlert(this.words(err)));
  }

  // How many tasks the inputs make, updated as the person types.
  paintCount() {
    if (!this.countLine) return;
    const s = this.strings;
    const text = this.prompt.value;
    const refs = this.model.get("refs");
    clearTimeout(this.countTimer);
    if (this.mode === "lines") {
      const n = text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#")).length;
      setText(this.countLine, fmt(s, "count_prompts", { n }));
    } else if (this.mode === "per_image") {
      setText(this.countLine, refs ? fmt(s, "count_per_image", { n: refs }) : s.no_images);
    } else if (this.mode === "llm") {
      setText(this.countLine, refs ? fmt(s, "llm_sees", { n: refs }) : s.llm_no_refs);
    } else if (this.mode === "file") {
      setText(this.countLine, "");
    } else {
      // template: the kernel counts (Dynamic Prompts), a moment after the last key
      this.countTimer = setTimeout(async () => {
        try {
          const { msg } = await this.channel.request("count", { template: text });
          if (this.prompt.value !== text || this.mode !== "template") return;
          if (msg.error) setText(this.countLine, msg.error);
          else if (msg.over) setText(this.countLine, fmt(s, "count_over", { n: msg.count.toLocaleString(), cap: this.info.cap.toLocaleString() }));
          else setText(this.countLine, fmt(s, "count_prompts", { n: msg.count }));
          this.countLine.classList.toggle("nbb-pp-warn", !!(msg.error || msg.over));
        } catch (err) {
          setText(this.countLine, this.words(err));
        }
      }, 150);
      return;
    }
    this.countLine.classList.remove("nbb-pp-warn");
  }

  paintBusy() {
    if (!this.createBtn) return;
    const busy = this.model.get("busy");
    this.spinner.hidden = !busy;
    setText(this.spinner.lastChild, busy === "enhance" ? this.strings.enhancing : this.strings.planning);
    this.cancelBtn.hidden = !busy;
    this.createBtn.disabled = !!busy;
    this.enhanceBtn.disabled = !!busy;
  }

  showAlert(text, level = "error") {
    this.alert.className = `nbb-alert${level === "info" ? " nbb-info" : ""}`;
    this.alert.replaceChildren(
      h("span", { text }),
      h("button", { type: "button", class: "nbb-link", text: this.strings.dismiss, onclick: () => (this.alert.hidden = true) }),
    );
    this.alert.hidden = false;
  }

  hideProposal() {
    if (this.proposal) this.proposal.hidden = true;
  }

  // ------------------------------------------------------------------ actions
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
    this.alert.hidden = true;
    this.hideProposal();
    clearTimeout(this.draftTimer);
    const msg = await this.act("propose", { draft: this.draft() }, PLAN_MS);
    if (!msg || msg.cancelled) return;
    this.showProposal(msg);
  }

  showProposal(msg) {
    const s = this.strings;
    const box = this.proposal;
    if (msg.over_cap) {
      const n = msg.exact ? msg.count.toLocaleString() : `${msg.count.toLocaleString()}+`;
      box.replaceChildren(
        h("div", { class: "nbb-pp-prop-head nbb-pp-warn", text: fmt(s, "over_cap_q", { n, cap: msg.cap.toLocaleString() }) }),
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
    box.querySelector(".nbb-primary").focus();
  }

  async create(confirm) {
    const msg = await this.act("create", { confirm }, 120000);
    this.hideProposal();
    if (msg) this.showAlert(fmt(this.strings, "added", { n: msg.added }), "info");
  }

  async enhance() {
    const before = this.prompt.value;
    this.alert.hidden = true;
    const msg = await this.act("enhance", { prompt: before }, PLAN_MS);
    if (!msg || msg.cancelled) return;
    this.undo = before;
    this.prompt.value = msg.prompt;
    this.undoBtn.hidden = false;
    this.changed();
  }

  undoEnhance() {
    if (this.undo === null) return;
    this.prompt.value = this.undo;
    this.undo = null;
    this.undoBtn.hidden = true;
    this.changed();
    this.prompt.focus();
  }

  async applyPreset(op) {
    const name = this.presetSelect.value;
    if (!name) {
      this.showAlert(this.strings.pick_preset_first, "info");
      return;
    }
    const msg = await this.act("preset", { name, op, prompt: this.prompt.value, negative: this.negative.value });
    if (!msg) return;
    this.prompt.value = msg.prompt;
    this.negative.value = msg.negative;
    this.changed();
  }

  async readFile() {
    const file = this.fileInput.files?.[0];
    this.fileInput.value = "";
    if (!file) return;
    if (file.size > 4 * 1024 * 1024) {
      this.showAlert(this.strings.file_too_big);
      return;
    }
    const text = await file.text();
    const msg = await this.act("file", { name: file.name, text }, 120000);
    if (!msg) return;
    this.fileInfo = file.name;
    let line = `${file.name} · ${fmt(this.strings, "count_prompts", { n: msg.count })}`;
    if (msg.skipped.length) line += ` · ${fmt(this.strings, "n_skipped", { n: msg.skipped.length })}`;
    setText(this.fileText, line);
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
