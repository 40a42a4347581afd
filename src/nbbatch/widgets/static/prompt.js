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

// js/src/prompt/index.js
var MODES = ["llm", "template", "lines", "per_image", "file"];
var PLAN_MS = 6e5;
var PromptView = class {
  constructor(model, el) {
    this.model = model;
    this.channel = new BufferChannel(model);
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
    if (err instanceof ReplyError) return err.message;
    if (err instanceof TimeoutError) return this.strings.timeout || "The kernel did not answer in time.";
    console.error("nbbatch prompt", err);
    return String(err && err.message || err);
  }
  // ------------------------------------------------------------------ layout
  build(info) {
    const s = this.strings;
    const d = info.draft || {};
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    this.modeInputs = {};
    const modes = h("div", { class: "nbb-pp-modes", role: "radiogroup", "aria-label": s.mode });
    const group = `nbb-mode-${uid2()}`;
    for (const m of MODES) {
      const input = h("input", { type: "radio", name: group, value: m, onchange: () => this.setMode(m) });
      this.modeInputs[m] = input;
      modes.append(h("label", { class: "nbb-pp-mode" }, input, h("span", { text: s[`mode_${m}`] })));
    }
    this.prompt = h("textarea", {
      class: "nbb-pp-prompt",
      rows: 3,
      "aria-label": s.master_prompt,
      oninput: () => this.changed()
    });
    this.prompt.value = d.prompt || "";
    this.countLine = h("div", { class: "nbb-pp-count", role: "status", "aria-live": "polite" });
    this.negative = h("input", { type: "text", class: "nbb-pp-negative", "aria-label": s.negative_prompt, placeholder: s.negative_hint, oninput: () => this.changed() });
    this.negative.value = d.negative || "";
    this.llmCount = h("input", { type: "number", min: 1, max: info.max_tasks, class: "nbb-pp-num", "aria-label": s.n_tasks, placeholder: s.auto, oninput: () => this.changed() });
    this.llmCount.value = d.count || "";
    this.presetSelect = h("select", { "aria-label": s.presets, class: "nbb-pp-preset" });
    this.fillPresets(info);
    this.manageBtn = h("button", { type: "button", class: "nbb-btn nbb-small", text: s.manage_presets, "aria-label": s.manage_presets, onclick: () => this.openPresets() });
    this.presetDialog = h("dialog", { class: "nbb-in nbb-pp-presets", "aria-label": s.manage_presets, "data-lm-suppress-shortcuts": "true" });
    const presetBtn = (op) => h("button", { type: "button", class: "nbb-btn nbb-small", text: s[`preset_${op}`], "aria-label": s[`preset_${op}`], onclick: () => this.applyPreset(op) });
    this.enhanceBtn = h("button", { type: "button", class: "nbb-btn nbb-small", "aria-label": s.enhance, html: `${icons2.sparkle}<span>${s.enhance}</span>`, onclick: () => this.enhance() });
    this.undoBtn = h("button", { type: "button", class: "nbb-btn nbb-small", "aria-label": s.undo_enhance, hidden: true, html: `${icons2.undo}<span>${s.undo_enhance}</span>`, onclick: () => this.undoEnhance() });
    this.fileInput = h("input", { type: "file", hidden: true, accept: ".txt,.csv,.jsonl" });
    this.fileInput.addEventListener("change", () => this.readFile());
    this.fileBtn = h("button", { type: "button", class: "nbb-btn nbb-small", "aria-label": s.choose_file, html: `${icons2.upload}<span>${s.choose_file}</span>`, onclick: () => this.fileInput.click() });
    this.fileText = h("span", { class: "nbb-pp-file-name", text: d.file_name || s.no_file_yet });
    this.fileRow = h("div", { class: "nbb-pp-row nbb-pp-file" }, this.fileBtn, this.fileText, this.fileInput);
    this.paramInputs = {};
    this.paramsGrid = h("div", { class: "nbb-pp-params" });
    this.paramsBox = h("details", { class: "nbb-pp-more" }, h("summary", { text: s.params }), this.paramsGrid);
    this.paintParams(info, d);
    this.alert = h("div", { class: "nbb-alert", role: "alert", hidden: true });
    this.createBtn = h("button", { type: "button", class: "nbb-btn nbb-primary", "aria-label": s.create_tasks, html: `${icons2.play}<span>${s.create_tasks}</span>`, onclick: () => this.propose() });
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
        h("span", { class: "nbb-pp-group" }, this.enhanceBtn, this.undoBtn)
      ),
      this.fileRow,
      h("div", { class: "nbb-pp-row" }, this.negRow, this.llmRow),
      this.paramsBox,
      this.alert,
      h("div", { class: "nbb-pp-row nbb-pp-actions" }, this.createBtn, this.spinner, this.cancelBtn),
      this.proposal,
      this.presetDialog
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
      const input = h(tag, { "aria-label": label, class: `nbb-pp-pf-${name}`, ...tag === "input" ? { type: "text" } : { rows: 2 } });
      input.value = value || "";
      return [input, h("label", { class: "nbb-pp-field" }, h("span", { text: label }), input)];
    };
    const [title, titleRow] = field("title", s.preset_title, values.name);
    const [category, catRow] = field("category", s.preset_category, values.category);
    const list = `nbb-cats-${uid2()}`;
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
    const save = () => onSave({ name: title.value, category: category.value, text: text && text.value, negative: negative && negative.value });
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
      h("div", { class: "nbb-pp-row" }, ...this.presetForm({ category: "style" }, (v) => this.savePreset(v), s.preset_save, false))
    );
    const list = h("ul", { class: "nbb-pp-preset-list", "aria-label": s.presets });
    this.presetList.forEach((p, i) => list.append(this.presetRow(p, i)));
    d.replaceChildren(
      h("div", { class: "nbb-pp-dhead" }, h("strong", { text: s.manage_presets }), h("button", { type: "button", class: "nbb-icon", "aria-label": s.close, title: s.close, html: icons2.cancel, onclick: () => d.close() })),
      saveNew,
      this.presetAlert,
      list
    );
    if (focus) {
      const target = d.querySelector(focus);
      if (target) target.focus();
    }
  }
  presetRow(p, i) {
    const s = this.strings;
    const n2 = this.presetList.length;
    const row = h("li", { class: "nbb-pp-preset-row", "data-name": p.name });
    const key = CSS.escape(p.name);
    if (this.editing === p.name) {
      row.append(
        h("div", { class: "nbb-pp-preset-edit" }, ...this.presetForm(p, (v) => this.editPreset(p.name, v), s.preset_save_changes, true)),
        h("button", { type: "button", class: "nbb-btn nbb-small", text: s.cancel, onclick: () => (this.editing = null, this.paintPresets(`li[data-name="${key}"] .nbb-pp-pe`)) })
      );
      return row;
    }
    if (this.confirming === p.name) {
      row.append(
        h("span", { class: "nbb-pp-warn", role: "alert", text: fmt(s, "preset_delete_q", { name: p.name }) }),
        h("button", { type: "button", class: "nbb-btn nbb-danger nbb-small", text: s.preset_delete_yes, "aria-label": fmt(s, "preset_delete_yes_for", { name: p.name }), onclick: () => this.deletePreset(p.name) }),
        h("button", { type: "button", class: "nbb-btn nbb-small nbb-pp-keep", text: s.preset_keep, onclick: () => (this.confirming = null, this.paintPresets(`li[data-name="${key}"] .nbb-pp-pd`)) })
      );
      return row;
    }
    const act = (cls, text, label, onclick, disabled = false) => h("button", { type: "button", class: `nbb-btn nbb-small ${cls}`, text, "aria-label": label, title: label, disabled, onclick });
    row.append(
      h("span", { class: "nbb-pp-preset-name", text: p.name }),
      h("span", { class: "nbb-pp-ref", text: s[`cat_${p.category}`] || p.category }),
      h("span", { class: "nbb-pp-preset-text", text: p.text || p.negative }),
      h(
        "span",
        { class: "nbb-pp-preset-acts" },
        act("nbb-pp-pe", s.edit, fmt(s, "preset_edit", { name: p.name }), () => (this.editing = p.name, this.paintPresets(`li[data-name="${key}"] input`))),
        act("nbb-pp-pu", "↑", fmt(s, "preset_up", { name: p.name }), () => this.movePreset(p.name, i - 1, ".nbb-pp-pu"), i === 0),
        act("nbb-pp-pdn", "↓", fmt(s, "preset_down", { name: p.name }), () => this.movePreset(p.name, i + 1, ".nbb-pp-pdn"), i === n2 - 1),
        act("nbb-pp-pd", s.delete, fmt(s, "preset_delete", { name: p.name }), () => (this.confirming = p.name, this.paintPresets(`li[data-name="${key}"] .nbb-pp-keep`)))
      )
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
      if (row) row.scrollIntoView({ block: "nearest" });
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
        input = h("select", { "aria-label": label }, h("option", { value: "", text: byDefault.replace(/(\d)x(\d)/, "$1×$2") }), ...f.choices.map((c) => h("option", { value: c, text: c.replace("x", "×") })));
      } else {
        input = h("input", {
          type: f.kind === "text" ? "text" : "number",
          "aria-label": label,
          placeholder: byDefault,
          min: f.min,
          max: f.max,
          step: f.kind === "float" ? "any" : 1
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
      const n2 = text.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#")).length;
      setText(this.countLine, fmt(s, "count_prompts", { n: n2 }));
    } else if (this.mode === "per_image") {
      setText(this.countLine, refs ? fmt(s, "count_per_image", { n: refs }) : s.no_images);
    } else if (this.mode === "llm") {
      setText(this.countLine, refs ? fmt(s, "llm_sees", { n: refs }) : s.llm_no_refs);
    } else if (this.mode === "file") {
      setText(this.countLine, "");
    } else {
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
      h("button", { type: "button", class: "nbb-link", text: this.strings.dismiss, onclick: () => this.alert.hidden = true })
    );
    this.alert.hidden = false;
  }
  hideProposal() {
    if (this.proposal) this.proposal.hidden = true;
  }
  // ------------------------------------------------------------------ actions
  async act(type, body = {}, timeout = 3e4) {
    try {
      const { msg } = await this.channel.request(type, body, timeout);
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
      const n2 = msg.exact ? msg.count.toLocaleString() : `${msg.count.toLocaleString()}+`;
      box.replaceChildren(
        h("div", { class: "nbb-pp-prop-head nbb-pp-warn", text: fmt(s, "over_cap_q", { n: n2, cap: msg.cap.toLocaleString() }) }),
        h(
          "div",
          { class: "nbb-pp-row" },
          h("button", { type: "button", class: "nbb-btn nbb-danger", text: s.create_anyway, "aria-label": s.create_anyway, onclick: () => this.create(true) }),
          h("button", { type: "button", class: "nbb-btn", text: s.back, "aria-label": s.back, onclick: () => this.hideProposal() })
        )
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
    const notes = [...(msg.skipped || []).map((x) => `${s.skipped}: ${x}`), ...msg.warnings || []];
    const parts = [
      h("div", { class: "nbb-pp-prop-head", text: head }),
      list,
      more,
      notes.length ? h("ul", { class: "nbb-pp-notes" }, ...notes.map((n2) => h("li", { text: n2 }))) : null,
      h(
        "div",
        { class: "nbb-pp-row" },
        h("button", { type: "button", class: "nbb-btn nbb-primary", text: fmt(s, msg.count === 1 ? "add_one" : "add_n", { n: msg.count }), onclick: () => this.create(false), disabled: msg.count === 0 }),
        h("button", { type: "button", class: "nbb-btn", text: s.back, "aria-label": s.back, onclick: () => this.hideProposal() })
      )
    ];
    box.replaceChildren(...parts.filter(Boolean));
    box.hidden = false;
    box.querySelector(".nbb-primary").focus();
  }
  async create(confirm) {
    const msg = await this.act("create", { confirm }, 12e4);
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
    const file = this.fileInput.files && this.fileInput.files[0];
    this.fileInput.value = "";
    if (!file) return;
    if (file.size > 4 * 1024 * 1024) {
      this.showAlert(this.strings.file_too_big);
      return;
    }
    const text = await file.text();
    const msg = await this.act("file", { name: file.name, text }, 12e4);
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
};
var n = 0;
var uid2 = () => `${Date.now().toString(36)}${++n}`;
var index_default = {
  render({ model, el }) {
    const view = new PromptView(model, el);
    return () => view.dispose();
  }
};
export {
  index_default as default
};
