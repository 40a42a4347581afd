// @ts-check
import { Channel, errorWords } from "../shared/channel.js";
import { icons } from "../shared/icons.js";
import { fmt, h, setText, widgetOf } from "../shared/util.js";
import { SpendSection } from "./spend.js";

// The Settings button and its dialog. Keys go to the kernel once, by message, and the
// password field empties itself at once; the page never receives a key back.

class SettingsView {
  constructor(model, el) {
    this.model = model;
    this.channel = new Channel(model);
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
    return errorWords(err, this.strings, "settings");
  }

  build(info) {
    const s = this.strings;
    const v = info.values;
    this.info = info;
    this.root.setAttribute("lang", this.model.get("lang") === "zh" ? "zh-Hans" : "en");
    const openBtn = h("button", {
      type: "button",
      class: "nbb-btn nbb-small",
      "aria-label": s.settings,
      html: `${icons.gear}<span>${s.settings}</span>`,
      onclick: () => this.open(),
    });
    this.problem = h("span", {
      class: "nbb-set-problem",
      role: "alert",
      hidden: !info.problem,
      text: info.problem ? fmt(s, "config_broken", { message: info.problem }) : "",
    });
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
    this.spend = new SpendSection(this);
    provider.addEventListener("change", () => this.spend.clearBalance());
    this.fields.provider = provider;
    this.providerBox = h("div", { class: "nbb-set-provider" });
    // after the key and Test connection: the provider's limit and the task defaults
    this.providerMore = h("div", { class: "nbb-set-provider" });
    this.keyRows = { llm: h("div", { class: "nbb-set-key" }), provider: h("div", { class: "nbb-set-key" }) };
    this.result = h("div", { class: "nbb-set-result", role: "status", "aria-live": "polite" });
    this.dialog = h(
      "dialog",
      { class: "nbb-in nbb-set-dialog", "aria-label": s.settings, "data-lm-suppress-shortcuts": "true" },
      h(
        "div",
        { class: "nbb-set-head" },
        h("strong", { text: s.settings }),
        h("button", { type: "button", class: "nbb-icon", "aria-label": s.close, title: s.close, html: icons.cancel, onclick: () => this.dialog.close() }),
      ),
      this.problem,
      h(
        "fieldset",
        {},
        h("legend", { text: s.set_llm }),
        text("llm_base_url", "url", { placeholder: "https://api.openai.com/v1" }),
        text("llm_model"),
        this.keyRows.llm,
      ),
      h(
        "fieldset",
        {},
        h("legend", { text: s.set_image_provider }),
        h("label", { class: "nbb-set-field" }, h("span", { text: s.set_provider }), provider),
        this.providerBox,
        this.keyRows.provider,
        h(
          "div",
          { class: "nbb-set-row" },
          h("button", { type: "button", class: "nbb-btn nbb-small", text: s.test_connection, "aria-label": s.test_connection, onclick: () => this.test() }),
        ),
        this.providerMore,
      ),
      h(
        "fieldset",
        {},
        h("legend", { text: s.set_runner }),
        text("concurrency", "number", { min: 1, max: 10 }),
        text("retries", "number", { min: 0, max: 10 }),
      ),
      this.spend.build(info.pace),
      this.result,
      h(
        "div",
        { class: "nbb-set-actions" },
        h("button", { type: "button", class: "nbb-btn nbb-primary", text: s.save_settings, "aria-label": s.save_settings, onclick: () => this.save() }),
        h("button", { type: "button", class: "nbb-btn", text: s.close, onclick: () => this.dialog.close() }),
      ),
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
      const value = !same ? "" : f.name === "base_url" || f.name === "model" ? saved[f.name] : saved.options?.[f.name];
      let input;
      if (f.kind === "choice") {
        input = h(
          "select",
          { "aria-label": label },
          h("option", { value: "", text: f.default ? `${s.default_value} (${f.default})` : s.default_value }),
          ...f.choices.map((c) => h("option", { value: c, text: c })),
        );
      } else {
        input = h("input", {
          type: f.kind === "int" ? "number" : f.kind === "url" ? "url" : "text",
          "aria-label": label,
          min: f.kind === "int" ? 0 : undefined,
          placeholder: f.default != null ? String(f.default) : s.default_value,
        });
      }
      input.value = value ?? "";
      if (f.help) input.title = f.help;
      this.optFields[f.name] = input;
      rows.push(h("label", { class: "nbb-set-field" }, h("span", { text: label }), input));
    }
    const defaults = h("div", { class: "nbb-set-defaults" });
    for (const p of form.params) {
      const label = s[`param_${p}`] || p;
      const input = h("input", {
        type: p === "size" || p === "sampler" || p === "model" ? "text" : "number",
        step: "any",
        "aria-label": `${s.set_defaults}: ${label}`,
        placeholder: p === "size" ? "1024x1024" : s.default_value,
      });
      input.value = same ? (saved.defaults?.[p] ?? "") : "";
      this.defFields[p] = input;
      defaults.append(h("label", { class: "nbb-set-field" }, h("span", { text: label }), input));
    }
    const box = h(
      "details",
      { class: "nbb-set-more" },
      h("summary", { text: s.set_defaults }),
      h("div", { class: "nbb-set-help", text: s.set_defaults_help }),
      defaults,
    );
    if (same && Object.keys(saved.defaults || {}).length) box.open = true;
    // One concurrency is set (the runner's, below); the provider's own cap is a limit.
    const limit = same && saved.provider_limit ? saved.provider_limit : form.limit;
    const more = [];
    if (limit) more.push(h("div", { class: "nbb-set-help nbb-set-limit", text: fmt(s, "set_provider_limit", { n: limit }) }));
    this.mapBox = null;
    this.comfyJson = null;
    if (name === "comfyui") {
      const box = this.comfyWorkflow(same ? saved.mapping || {} : {});
      const at = this.optFields.workflow ? rows.indexOf(this.optFields.workflow.closest("label")) : -1;
      rows.splice(at < 0 ? rows.length : at + 1, 0, box);
    }
    this.providerBox.replaceChildren(...rows);
    if (form.params.length) more.push(box);
    this.providerMore.replaceChildren(...more);
  }

  // ComfyUI: the built-in graph, an API-format file on the kernel's machine, or the JSON
  // itself (pasted, or opened here: ComfyUI's "Export (API)" downloads it to this
  // machine), and the mapping (which node input gets the prompt, seed, size ...) chosen
  // from the workflow's own inputs.
  comfyWorkflow(savedMapping) {
    const s = this.strings;
    const path = this.optFields.workflow;
    const field = path ? path.closest("label") : null;
    const template = h(
      "select",
      { "aria-label": s.set_template },
      h("option", { value: "builtin", text: s.template_builtin }),
      h("option", { value: "file", text: s.template_file }),
      h("option", { value: "paste", text: s.template_paste }),
    );
    this.mapSelects = {};
    this.mapBox = h("div", { class: "nbb-set-mapping" });
    const read = () => this.readWorkflow(savedMapping);
    const json = h("textarea", { class: "nbb-set-json", rows: 5, spellcheck: "false", "aria-label": s.set_workflow_json });
    const opener = h("input", { type: "file", accept: ".json,application/json", hidden: true, "aria-label": s.set_workflow_open });
    opener.addEventListener("change", async () => {
      const file = opener.files?.[0];
      if (!file) return;
      json.value = await file.text();
      opener.value = "";
      read();
    });
    json.addEventListener("change", read);
    const pasteBox = h(
      "div",
      { class: "nbb-set-paste" },
      h("label", { class: "nbb-set-field" }, h("span", { text: s.set_workflow_json }), json),
      h("div", { class: "nbb-set-help", text: s.set_workflow_paste_help }),
      h(
        "div",
        { class: "nbb-set-row" },
        h("button", { type: "button", class: "nbb-btn nbb-small", text: s.set_workflow_open, onclick: () => opener.click() }),
        opener,
      ),
    );
    // the JSON to send (null when the workflow is not given that way)
    this.comfyJson = () => (template.value === "paste" ? json.value : null);
    const show = () => {
      if (field) field.hidden = template.value !== "file";
      pasteBox.hidden = template.value !== "paste";
    };
    template.value = path?.value ? "file" : "builtin";
    template.addEventListener("change", () => {
      if (template.value !== "file" && path) path.value = "";
      show();
      if (template.value !== "file") read();
    });
    path?.addEventListener("change", read);
    show();
    const box = h(
      "div",
      { class: "nbb-set-comfy" },
      h("label", { class: "nbb-set-field" }, h("span", { text: s.set_template }), template),
      pasteBox,
      h(
        "div",
        { class: "nbb-set-row" },
        h("button", { type: "button", class: "nbb-btn nbb-small", text: s.set_workflow_read, "aria-label": s.set_workflow_read, onclick: read }),
      ),
      h(
        "details",
        { class: "nbb-set-more", open: true },
        h("summary", { text: s.set_mapping }),
        h("div", { class: "nbb-set-help", text: s.set_mapping_help }),
        this.mapBox,
      ),
    );
    read();
    return box;
  }

  async readWorkflow(chosen) {
    const s = this.strings;
    const workflow = this.optFields.workflow ? this.optFields.workflow.value : "";
    const json = this.comfyJson ? this.comfyJson() : null;
    if (json !== null && !json.trim()) {
      // nothing pasted yet: no inputs to choose from
      this.mapSelects = {};
      this.mapBox.replaceChildren(h("div", { class: "nbb-set-help", text: s.set_workflow_paste_help }));
      return;
    }
    try {
      const { msg } = await this.channel.request("workflow", json ? { workflow, workflow_json: json } : { workflow });
      // the person's choices so far win over the saved ones, the saved over the detected;
      // a saved slot may be null (not mapped on purpose) or several inputs (the first shown)
      const current = Object.fromEntries(Object.entries(this.mapSelects || {}).map(([k, el]) => [k, el.value]));
      const first = (v) => (Array.isArray(v) ? (v[0] ?? "") : (v ?? ""));
      this.mapSelects = {};
      const rows = msg.slots.map((slot) => {
        const detected = msg.detected[slot];
        const label = s[`map_${slot}`] || slot;
        const options = [h("option", { value: "", text: s.map_none })];
        for (const node of msg.nodes) {
          for (const input of node.inputs) {
            const value = `${node.id}.${input}`;
            const who = node.title && node.title !== node.type ? `${node.title} (${node.type})` : node.type;
            const text = `${node.id} · ${who} · ${input}${value === detected ? ` — ${s.map_detected}` : ""}`;
            options.push(h("option", { value, text }));
          }
        }
        const select = h("select", { "aria-label": `${s.set_mapping}: ${label}` }, ...options);
        const wanted = slot in current ? current[slot] : slot in chosen ? first(chosen[slot]) : (detected ?? "");
        select.value = options.some((o) => o.value === wanted) ? wanted : (detected ?? "");
        this.mapSelects[slot] = select;
        // a detected slot that sets other inputs too (a width a scheduler needs as well)
        const also = msg.also?.[slot];
        const note = also?.length ? h("div", { class: "nbb-set-help", text: fmt(s, "map_also", { inputs: also.join(", ") }) }) : null;
        if (note) {
          const paint = () => {
            note.hidden = select.value !== detected;
          };
          select.addEventListener("change", paint);
          paint();
        }
        return [h("label", { class: "nbb-set-field" }, h("span", { text: label }), select), note];
      });
      this.mapBox.replaceChildren(...rows.flat().filter((el) => el !== null));
    } catch (err) {
      this.mapSelects = {};
      this.mapBox.replaceChildren(h("div", { class: "nbb-alert", role: "alert", text: this.words(err) }));
    }
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
    this.dialog.showModal(); // every key goes to the dialog; Escape closes it
  }

  paintKeys(keys) {
    const s = this.strings;
    for (const which of ["llm", "provider"]) {
      const k = keys[which];
      const row = this.keyRows[which];
      const label = which === "llm" ? s.set_llm_key : !k.field || k.field === "api_key" ? s.set_key : s[`setf_${k.field}`] || k.label;
      if (k.env) {
        row.replaceChildren(
          h("span", { class: "nbb-set-field" }, h("span", { text: label }), h("span", { class: "nbb-set-env", text: fmt(s, "key_from_env", { name: k.env }) })),
        );
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
          k.set ? h("button", { type: "button", class: "nbb-link", text: s.forget_key, onclick: () => this.forget(which) }) : null,
        ),
      );
    }
  }

  async setKey(which, input, remember) {
    const key = input.value;
    input.value = ""; // the page keeps no copy, whatever the kernel answers
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
    if (this.mapBox && this.mapSelects && Object.keys(this.mapSelects).length) {
      out.mapping = Object.fromEntries(Object.entries(this.mapSelects).map(([k, el]) => [k, el.value]));
    }
    const json = this.comfyJson?.();
    if (this.mapBox && json) out.workflow_json = json; // kept as a file on Save
    return out;
  }

  async save() {
    try {
      const { msg } = await this.channel.request("save", { values: this.values(), pace: this.spend.values() });
      this.info.values = msg.values;
      this.spend.paint(msg.pace);
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
      const { msg } = await this.channel.request("test", { values: this.values() }, { timeout: 60000 });
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
}

export default widgetOf(SettingsView);
