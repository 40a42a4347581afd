// @ts-check
/**
 * A DOM element: `class`, `text`, `html` (only our own static SVG icons), `on<event>`
 * listeners, other attributes (true = present; false/null/undefined = absent).
 * @param {string} tag
 * @param {Record<string, any>} [attrs]
 * @param {...(Node | string | null | undefined)} children
 * @returns {any} the element (panels keep their own fields on some: `_count`, `_row`)
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "html")
      el.innerHTML = value; // only for our own static SVG icons
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) el.append(child);
  }
  return el;
}

// Fill {name} placeholders the way Python's str.format does for simple names.
/**
 * @param {Record<string, string>} strings a catalogue slice sent by the kernel
 * @param {string} key
 * @param {Record<string, unknown>} [values]
 */
export function fmt(strings, key, values = {}) {
  const text = strings[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : `{${name}}`));
}

/** "1:05" or "2:03:04"; "–" when unknown. @param {number | null | undefined} seconds */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** @param {Node} el @param {string} text */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** @param {Element} el @param {string} name @param {unknown} value */
export function setAttr(el, name, value) {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else {
    const v = value === true ? "" : String(value);
    if (el.getAttribute(name) !== v) el.setAttribute(name, v);
  }
}

/**
 * The anywidget model a view gets (anywidget's own types are not a dependency). Trait
 * values are `any` on purpose: each panel's traits are declared by its Python widget
 * (traitlets), not in a schema the front end could import, so a panel states the type
 * where it reads one (`lang` is a string, ...). Custom messages are typed by the panel's
 * request/reply typedefs and js/src/types.js; a listener's arguments depend on its event,
 * hence `any[]` there too.
 * @typedef {object} Model
 * @property {(name: string) => any} get a trait's value
 * @property {(name: string, value: unknown) => void} set a trait, sent with save_changes
 * @property {() => void} save_changes
 * @property {(event: string, fn: (...args: any[]) => void) => void} on `change:<trait>` or `msg:custom`
 * @property {(event: string, fn: (...args: any[]) => void) => void} off
 * @property {(content: object, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]) => void} send
 */

/**
 * The anywidget module of a panel: `render` builds one view per output area and hands
 * anywidget the view's `dispose` to call when the output goes away.
 * @param {new (model: Model, el: HTMLElement) => {dispose: () => void}} View
 */
export function widgetOf(View) {
  return {
    /** @param {{model: Model, el: HTMLElement}} args */
    render({ model, el }) {
      const view = new View(model, el);
      return () => view.dispose();
    },
  };
}
