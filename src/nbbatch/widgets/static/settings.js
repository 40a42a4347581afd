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

// js/src/settings/index.js
var SettingsView = class {
  constructor(model, el) {
    this.model = model;
    this.channel = new BufferChannel(model);
    this.strings = {};
    this.root = h("div", { class: "nbb-in nbb-set", "data-lm-suppress-shortcuts": "true" });
    el.append(this.root);
    this.onLang = () => this.start();
    model.on("change:lang", this.onLang);
    this.start();
  }
  async start() {
    try {
      const { msg } = await this.channel.request("hello");
      this.strings = msg.strings;
      this.build(msg);
    } catch (err) {
      this.root.replaceChildren(h("div", { class: "nbb-alert", role: "alert", text: this.words(err) }));
    }
  }
  words(err) {
    if (err instanceof ReplyError) return err.message;
    if (err instanceof TimeoutError) return this.strings.timeout || "The kernel did not answer in time.";
    console.error("nbbatch settings", err);
    return String(err && err.message || err);
  }
  build(info) {
    const s = this.strings;
    const v = info.values;
    this.info = info;
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    const openBtn = h("button", { type: "button", class: "nbb-btn nbb-small", "aria-label": s.settings, html: `${icons2.gear}<span>${s.settings}</span>`, onclick: () => this.open() });
    this.problem = h("span", { class: "nbb-set-problem", role: "alert", hidden: !info.problem, text: info.problem ? fmt(s, "config_broken", { message: info.problem }) : "" });
    this.fields = {};
    const text = (name, type = "text", attrs = {}) => {
      const input = h("input", { type, "aria-label": s[`set_${name}`], ...attrs });
      input.value = v[name] ?? "";
      this.fields[name] = input;
      return h("label", { class: "nbb-set-field" }, h("span", { text: s[`set_${name}`] }), input);
    };
    const provider = h("select", { "aria-label": s.set_provider }, ...info.providers.map((p) => h("option", { value: p.name, text: p.label })));
    provider.value = v.provider;
    provider.addEventListener("change", () => this.showProvider(provider.value));
    this.fields.provider = provider;
    this.providerBox = h("div", { class: "nbb-set-provider" });
    this.keyRows = { llm: h("div", { class: "nbb-set-key" }), provider: h("div", { class: "nbb-set-key" }) };
    this.result = h("div", { class: "nbb-set-result", role: "status", "aria-live": "polite" });
    this.dialog = h(
      "dialog",
      { class: "nbb-in nbb-set-dialog", "aria-label": s.settings, "data-lm-suppress-shortcuts": "true" },
      h("div", { class: "nbb-set-head" }, h("strong", { text: s.settings }), h("button", { type: "button", class: "nbb-icon", "aria-label": s.close, title: s.close, html: icons2.cancel, onclick: () => this.dialog.close() })),
      this.problem,
      h("fieldset", {}, h("legend", { text: s.set_llm }), text("llm_base_url", "url", { placeholder: "https://api.openai.com/v1" }), text("llm_model"), this.keyRows.llm),
      h(
        "fieldset",
        {},
        h("legend", { text: s.set_image_provider }),
        h("label", { class: "nbb-set-field" }, h("span", { text: s.set_provider }), provider),
        this.providerBox,
        this.keyRows.provider,
        h("div", { class: "nbb-set-row" }, h("button", { type: "button", class: "nbb-btn nbb-small", text: s.test_connection, "aria-label": s.test_connection, onclick: () => this.test() }))
      ),
      h("fieldset", {}, h("legend", { text: s.set_runner }), text("concurrency", "number", { min: 1, max: 10 }), text("retries", "number", { min: 0, max: 10 })),
      this.result,
      h(
        "div",
        { class: "nbb-set-actions" },
        h("button", { type: "button", class: "nbb-btn nbb-primary", text: s.save_settings, "aria-label": s.save_settings, onclick: () => this.save() }),
        h("button", { type: "button", class: "nbb-btn", text: s.close, onclick: () => this.dialog.close() })
      )
    );
    this.renderProvider(v.provider);
    this.paintKeys(info.keys);
    this.root.replaceChildren(openBtn, this.problem.cloneNode(true), this.dialog);
  }
  // The fields of one provider, as the provider catalogue describes them; the saved
  // values when it is the saved provider, its defaults as placeholders otherwise.
  renderProvider(name) {
    const s = this.strings;
    const form = this.info.forms[name] || { fields: [], params: [] };
    const saved = this.info.values;
    const same = name === saved.provider;
    this.optFields = {};
    this.defFields = {};
    const rows = [];
    for (const f of form.fields) {
      const label = s[`setf_${f.name}`] || f.label;
      const value = !same ? "" : f.name === "base_url" || f.name === "model" ? saved[f.name] : (saved.options || {})[f.name];
      let input;
      if (f.kind === "choice") {
        input = h("select", { "aria-label": label }, h("option", { value: "", text: f.default ? `${s.default_value} (${f.default})` : s.default_value }), ...f.choices.map((c) => h("option", { value: c, text: c })));
      } else {
        input = h("input", { type: f.kind === "int" ? "number" : f.kind === "url" ? "url" : "text", "aria-label": label, min: f.kind === "int" ? 0 : void 0, placeholder: f.default != null ? String(f.default) : s.default_value });
      }
      input.value = value ?? "";
      if (f.help) input.title = f.help;
      this.optFields[f.name] = input;
      rows.push(h("label", { class: "nbb-set-field" }, h("span", { text: label }), input));
    }
    const defaults = h("div", { class: "nbb-set-defaults" });
    for (const p of form.params) {
      const label = s[`param_${p}`] || p;
      const input = h("input", { type: p === "size" || p === "sampler" || p === "model" ? "text" : "number", step: "any", "aria-label": `${s.set_defaults}: ${label}`, placeholder: p === "size" ? "1024x1024" : s.default_value });
      input.value = same ? (saved.defaults || {})[p] ?? "" : "";
      this.defFields[p] = input;
      defaults.append(h("label", { class: "nbb-set-field" }, h("span", { text: label }), input));
    }
    const box = h("details", { class: "nbb-set-more" }, h("summary", { text: s.set_defaults }), h("div", { class: "nbb-set-help", text: s.set_defaults_help }), defaults);
    if (same && Object.keys(saved.defaults || {}).length) box.open = true;
    const limit = same && saved.provider_limit ? saved.provider_limit : form.limit;
    if (limit) rows.push(h("div", { class: "nbb-set-help nbb-set-limit", text: fmt(s, "set_provider_limit", { n: limit }) }));
    this.providerBox.replaceChildren(...rows, form.params.length ? box : "");
  }
  async showProvider(name) {
    this.renderProvider(name);
    try {
      const { msg } = await this.channel.request("keys", { provider: name });
      this.paintKeys(msg.keys);
    } catch (err) {
      setText(this.result, this.words(err));
    }
  }
  open() {
    setText(this.result, "");
    this.dialog.showModal();
  }
  paintKeys(keys) {
    const s = this.strings;
    for (const which of ["llm", "provider"]) {
      const k = keys[which];
      const row = this.keyRows[which];
      const label = which === "llm" ? s.set_llm_key : !k.field || k.field === "api_key" ? s.set_key : s[`setf_${k.field}`] || k.label;
      if (k.env) {
        row.replaceChildren(h("span", { class: "nbb-set-field" }, h("span", { text: label }), h("span", { class: "nbb-set-env", text: fmt(s, "key_from_env", { name: k.env }) })));
        continue;
      }
      if (!k.needs) {
        row.replaceChildren(h("span", { class: "nbb-set-field" }, h("span", { text: label }), h("span", { class: "nbb-set-env", text: s.key_not_needed })));
        continue;
      }
      const input = h("input", { type: "password", autocomplete: "off", "aria-label": label, placeholder: k.set ? s.key_is_set : s.key_paste });
      const remember = h("input", { type: "checkbox", "aria-label": s.remember_key });
      const send = () => this.setKey(which, input, remember);
      input.addEventListener("keydown", (e) => {
        if (e.key === "Enter") {
          e.preventDefault();
          send();
        }
      });
      row.replaceChildren(
        h("label", { class: "nbb-set-field" }, h("span", { text: label }), input),
        h(
          "div",
          { class: "nbb-set-row" },
          h("label", { class: "nbb-set-check" }, remember, h("span", { text: s.remember_key })),
          h("button", { type: "button", class: "nbb-btn nbb-small", text: s.set_key_btn, "aria-label": fmt(s, "set_key_for", { what: label }), onclick: send }),
          k.set ? h("span", { class: "nbb-set-ok", text: s.key_is_set }) : null,
          k.set ? h("button", { type: "button", class: "nbb-link", text: s.forget_key, onclick: () => this.forget(which) }) : null
        )
      );
    }
  }
  async setKey(which, input, remember) {
    const key = input.value;
    input.value = "";
    if (!key.trim()) return;
    try {
      const { msg } = await this.channel.request("set_key", { which, key, remember: remember.checked, provider: this.fields.provider.value });
      this.paintKeys(msg.keys);
      setText(this.result, this.strings.key_saved);
    } catch (err) {
      setText(this.result, this.words(err));
    }
  }
  async forget(which) {
    try {
      const { msg } = await this.channel.request("forget_key", { which, provider: this.fields.provider.value });
      this.paintKeys(msg.keys);
    } catch (err) {
      setText(this.result, this.words(err));
    }
  }
  values() {
    const out = { base_url: "", model: "", options: {}, defaults: {} };
    for (const [name, input] of Object.entries(this.fields)) out[name] = input.value;
    for (const [name, input] of Object.entries(this.optFields)) {
      if (name === "base_url" || name === "model") out[name] = input.value;
      else out.options[name] = input.value;
    }
    for (const [name, input] of Object.entries(this.defFields)) out.defaults[name] = input.value;
    return out;
  }
  async save() {
    try {
      const { msg } = await this.channel.request("save", { values: this.values() });
      this.info.values = msg.values;
      this.paintKeys(msg.keys);
      this.problem.hidden = true;
      const outside = this.root.querySelector(":scope > .nbb-set-problem");
      if (outside) outside.hidden = true;
      setText(this.result, fmt(this.strings, "settings_saved", { path: msg.path }));
    } catch (err) {
      setText(this.result, this.words(err));
    }
  }
  async test() {
    setText(this.result, this.strings.testing);
    try {
      const { msg } = await this.channel.request("test", { values: this.values() }, 6e4);
      setText(this.result, `${msg.passed ? "✓" : "✗"} ${msg.message}`);
    } catch (err) {
      setText(this.result, this.words(err));
    }
  }
  dispose() {
    this.model.off("change:lang", this.onLang);
    this.channel.dispose();
    this.root.remove();
  }
};
var index_default = {
  render({ model, el }) {
    const view = new SettingsView(model, el);
    return () => view.dispose();
  }
};
export {
  index_default as default
};
