// @ts-check
import { fmt, h, setText } from "../shared/util.js";

// "Spend and pace" in the settings dialog: the notification webhook (a secret, like a
// key: typed once, the field empties itself, only its host ever comes back), rate limits
// per endpoint, the token price table with the date of each price, and the account
// balance of the provider the form shows. The kernel checks everything and says what is
// wrong in words; Save settings sends the rate limits and token prices with the rest.

export class SpendSection {
  /** @param {any} view the SettingsView (its channel, strings, values() and words()) */
  constructor(view) {
    this.view = view;
    /** @type {{endpoint: HTMLInputElement, requests: HTMLInputElement, images: HTMLInputElement, row: HTMLElement}[]} */
    this.rates = [];
    /** @type {{model: HTMLInputElement, date: HTMLInputElement, prices: Record<string, HTMLInputElement>, row: HTMLElement}[]} */
    this.tokens = [];
    this.fields = [];
  }

  /** The fieldset, painted from the kernel's `pace` (hello). */
  build(pace) {
    const s = this.view.strings;
    this.hookRow = h("div", { class: "nbb-set-key nbb-set-hook" });
    this.hookStatus = h("div", { class: "nbb-set-help nbb-set-hook-status", "aria-live": "polite" });
    this.rateBox = h("div", { class: "nbb-set-rates" });
    this.tokenBox = h("div", { class: "nbb-set-tokens" });
    this.balanceText = h("span", { class: "nbb-set-balance", "aria-live": "polite", text: s.balance_hint });
    const addRate = h("button", { type: "button", class: "nbb-btn nbb-small", text: s.rate_add, onclick: () => this.addRate({}) });
    const addToken = h("button", { type: "button", class: "nbb-btn nbb-small", text: s.token_add, onclick: () => this.addToken({}) });
    this.paint(pace);
    return h(
      "fieldset",
      { class: "nbb-set-spend" },
      h("legend", { text: s.set_spend }),
      this.hookRow,
      this.hookStatus,
      h(
        "details",
        { class: "nbb-set-more", open: pace.rate_limits.length > 0 },
        h("summary", { text: s.set_rate_limits }),
        h("div", { class: "nbb-set-help", text: s.set_rate_limits_help }),
        this.rateBox,
        h("div", { class: "nbb-set-row" }, addRate),
      ),
      h(
        "details",
        { class: "nbb-set-more" },
        h("summary", { text: s.set_token_prices }),
        h("div", { class: "nbb-set-help", text: s.token_help }),
        this.tokenBox,
        h("div", { class: "nbb-set-row" }, addToken),
      ),
      h(
        "div",
        { class: "nbb-set-field" },
        h("span", { text: s.set_balance }),
        h(
          "span",
          { class: "nbb-set-balance-row" },
          this.balanceText,
          h("button", { type: "button", class: "nbb-btn nbb-small", text: s.balance_refresh, "aria-label": s.balance_refresh, onclick: () => this.balance() }),
        ),
      ),
    );
  }

  paint(pace) {
    this.paintHook(pace.webhook);
    this.fields = pace.token_fields;
    this.rates = [];
    this.rateBox.replaceChildren(this.rateHead());
    for (const row of pace.rate_limits) this.addRate(row);
    this.tokens = [];
    this.tokenBox.replaceChildren(this.tokenHead());
    for (const row of pace.token_prices) this.addToken(row);
  }

  // ------------------------------------------------------------------ webhook
  paintHook(hook) {
    const s = this.view.strings;
    const label = h("span", { text: s.set_webhook });
    if (hook.source === "env") {
      this.hookRow.replaceChildren(
        h(
          "span",
          { class: "nbb-set-field" },
          label,
          h("span", { class: "nbb-set-env", text: fmt(s, "webhook_from_env", { name: hook.env, shown: hook.shown }) }),
        ),
      );
      return;
    }
    const input = h("input", {
      type: "password",
      autocomplete: "off",
      "aria-label": s.set_webhook,
      placeholder: hook.set ? fmt(s, "webhook_is_set", { shown: hook.shown }) : s.webhook_paste,
    });
    input.title = s.webhook_help;
    const remember = h("input", { type: "checkbox", "aria-label": `${s.set_webhook}: ${s.remember_key}` });
    const send = () => this.setHook(input, remember);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        send();
      }
    });
    this.hookRow.replaceChildren(
      h("label", { class: "nbb-set-field" }, label, input),
      h(
        "div",
        { class: "nbb-set-row" },
        h("label", { class: "nbb-set-check" }, remember, h("span", { text: s.remember_key })),
        h("button", { type: "button", class: "nbb-btn nbb-small", text: s.set_webhook_btn, "aria-label": s.set_webhook_btn, onclick: send }),
        hook.set ? h("span", { class: "nbb-set-ok", text: fmt(s, "webhook_is_set", { shown: hook.shown }) }) : null,
        hook.set ? h("button", { type: "button", class: "nbb-link", text: s.forget_webhook, onclick: () => this.forgetHook() }) : null,
      ),
      h("div", { class: "nbb-set-help", text: s.webhook_help }),
    );
  }

  async setHook(input, remember) {
    const url = input.value;
    input.value = ""; // the page keeps no copy, whatever the kernel answers
    if (!url.trim()) return;
    try {
      const { msg } = await this.view.channel.request("set_webhook", { url, remember: remember.checked });
      this.paintHook(msg.pace.webhook);
      setText(this.hookStatus, this.view.strings.webhook_saved);
    } catch (err) {
      setText(this.hookStatus, this.view.words(err));
    }
  }

  async forgetHook() {
    try {
      const { msg } = await this.view.channel.request("forget_webhook");
      this.paintHook(msg.pace.webhook);
      setText(this.hookStatus, "");
    } catch (err) {
      setText(this.hookStatus, this.view.words(err));
    }
  }

  // ------------------------------------------------------------------ rate limits
  rateHead() {
    const s = this.view.strings;
    return h(
      "div",
      { class: "nbb-set-grid-head nbb-set-rate" },
      h("span", { text: s.rate_endpoint }),
      h("span", { text: s.rate_rpm }),
      h("span", { text: s.rate_ipm }),
      h("span"),
    );
  }

  addRate(row) {
    const s = this.view.strings;
    const cell = (value, label, attrs = {}) => {
      const input = h("input", { "aria-label": label, ...attrs });
      input.value = value ?? "";
      return input;
    };
    const endpoint = cell(row.endpoint, s.rate_endpoint, { type: "text", placeholder: "openai" });
    const requests = cell(row.requests_per_minute, s.rate_rpm, { type: "number", min: 0, step: "any" });
    const images = cell(row.images_per_minute, s.rate_ipm, { type: "number", min: 0, step: "any" });
    const entry = { endpoint, requests, images, row: h("div") };
    const remove = h("button", {
      type: "button",
      class: "nbb-link",
      text: s.rate_remove,
      "aria-label": `${s.rate_remove}: ${s.rate_endpoint}`,
      onclick: () => {
        entry.row.remove();
        this.rates = this.rates.filter((r) => r !== entry);
      },
    });
    entry.row = h("div", { class: "nbb-set-rate" }, endpoint, requests, images, remove);
    this.rates.push(entry);
    this.rateBox.append(entry.row);
  }

  // ------------------------------------------------------------------ token prices
  tokenHead() {
    const s = this.view.strings;
    return h(
      "div",
      { class: "nbb-set-grid-head nbb-set-token" },
      h("span", { text: s.token_model }),
      h("span", { text: s.token_date }),
      ...this.fields.map((f) => h("span", { text: s[`token_${f}`] || f })),
    );
  }

  addToken(row) {
    const s = this.view.strings;
    const model = h("input", { type: "text", "aria-label": s.token_model, placeholder: "openai/gpt-image-1" });
    model.value = row.model ?? "";
    // a built-in row is changed, not renamed: its name is shown whole, as text
    model.hidden = Boolean(row.builtin);
    const name = row.builtin ? h("span", { class: "nbb-set-model-name", text: row.model, title: row.model }) : null;
    const date = h("input", { type: "text", "aria-label": `${s.token_date}${row.model ? `: ${row.model}` : ""}`, placeholder: "2026-12-07" });
    date.value = row.date ?? "";
    /** @type {Record<string, HTMLInputElement>} */
    const prices = {};
    for (const f of this.fields) {
      const label = s[`token_${f}`] || f;
      const input = h("input", { type: "number", min: 0, step: "any", "aria-label": `${label}${row.model ? `: ${row.model}` : ""}` });
      input.value = row[f] ?? "";
      prices[f] = input;
    }
    const mark = row.builtin ? h("span", { class: "nbb-set-builtin", text: row.changed ? s.token_changed : s.token_builtin }) : null;
    const entry = {
      model,
      date,
      prices,
      row: h("div", { class: "nbb-set-token" }, h("span", { class: "nbb-set-model" }, model, name, mark), date, ...Object.values(prices)),
    };
    this.tokens.push(entry);
    this.tokenBox.append(entry.row);
  }

  /** What Save settings sends besides the other values (text; the kernel checks it). */
  values() {
    return {
      rate_limits: this.rates.map((r) => ({ endpoint: r.endpoint.value, requests_per_minute: r.requests.value, images_per_minute: r.images.value })),
      token_prices: this.tokens.map((t) => ({
        model: t.model.value,
        date: t.date.value,
        ...Object.fromEntries(Object.entries(t.prices).map(([k, el]) => [k, el.value])),
      })),
    };
  }

  // ------------------------------------------------------------------ balance
  clearBalance() {
    setText(this.balanceText, this.view.strings.balance_hint);
  }

  async balance() {
    const s = this.view.strings;
    setText(this.balanceText, s.balance_reading);
    try {
      const { msg } = await this.view.channel.request("balance", { values: this.view.values() }, { timeout: 70000 });
      if (!msg.available) {
        setText(this.balanceText, fmt(s, "balance_none", { provider: msg.provider }));
        return;
      }
      const at = new Date().toLocaleTimeString(this.view.model.get("lang") === "zh" ? "zh-CN" : "en", { hour: "2-digit", minute: "2-digit" });
      setText(this.balanceText, fmt(s, "balance_at", { amount: this.amount(msg.amount, msg.unit), t: at }));
    } catch (err) {
      setText(this.balanceText, this.view.words(err));
    }
  }

  amount(amount, unit) {
    const s = this.view.strings;
    const number = amount.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    if (unit === "credits") return fmt(s, "balance_credits", { n: number });
    try {
      return new Intl.NumberFormat(this.view.model.get("lang") === "zh" ? "zh-CN" : "en", { style: "currency", currency: unit }).format(amount);
    } catch {
      return `${number} ${unit}`;
    }
  }
}
