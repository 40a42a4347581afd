// @ts-check
// Every icon of the widgets: small stroke icons (16 px grid, currentColor) drawn for nbbatch.
/** @param {string} body @param {boolean} [fill] */
const wrap = (body, fill = false) =>
  `<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false" ` +
  `fill="${fill ? "currentColor" : "none"}" stroke="currentColor" stroke-width="1.6" ` +
  `stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;

// {name: [svg body, filled?] | whole svg} -> {name: svg}; pure, so a bundle that uses
// neither set of icons drops it
/** @param {Record<string, string | [string, boolean?]>} table @returns {Record<string, string>} */
const build = (table) => Object.fromEntries(Object.entries(table).map(([k, v]) => [k, typeof v === "string" ? v : wrap(v[0], v[1])]));

export const icons = /* @__PURE__ */ build({
  history: ['<path d="M2.6 8a5.4 5.4 0 1 0 1.6-3.8"/><path d="M2.4 2.6v2.6H5"/><path d="M8 5v3.2l2.2 1.4"/>'],
  download: ['<path d="M8 2.5v8"/><path d="M4.8 7.6L8 10.8l3.2-3.2"/><path d="M3 13.5h10"/>'],
  edit: ['<path d="M10.8 2.7l2.5 2.5L6 12.5 3 13l.5-3z"/><path d="M9.3 4.2l2.5 2.5"/>'],
  save: ['<path d="M3 8.5l3.2 3.2L13 4.8"/>'],
  cancel: ['<path d="M4.5 4.5l7 7M11.5 4.5l-7 7"/>'],
  retry: ['<path d="M12.9 9.2A5 5 0 1 1 11.6 4.4"/><path d="M12.2 1.9v3h-3"/>'],
  next: ['<path d="M3 2.8h10"/><path d="M8 13.2V5.6"/><path d="M4.8 8.6L8 5.4l3.2 3.2"/>'],
  duplicate: ['<rect x="5.5" y="5.5" width="7.5" height="7.5" rx="1.5"/><path d="M3 10.5V4a1 1 0 0 1 1-1h6.5"/>'],
  trash: ['<path d="M2.8 4.5h10.4"/><path d="M6.3 4.5V2.9h3.4v1.6"/><path d="M4.4 4.5l.7 8.6h5.8l.7-8.6"/>'],
  play: ['<path d="M5 3.2v9.6L12.8 8z"/>', true],
  pause: ['<path d="M5.5 3.5v9M10.5 3.5v9"/>'],
  stop: ['<rect x="4" y="4" width="8" height="8" rx="1.2"/>', true],
  search: ['<circle cx="7" cy="7" r="4.2"/><path d="M10.2 10.2l3.3 3.3"/>'],
  grip:
    '<svg viewBox="0 0 10 16" width="10" height="16" aria-hidden="true" focusable="false" fill="currentColor">' +
    '<circle cx="3" cy="4" r="1.2"/><circle cx="7" cy="4" r="1.2"/><circle cx="3" cy="8" r="1.2"/>' +
    '<circle cx="7" cy="8" r="1.2"/><circle cx="3" cy="12" r="1.2"/><circle cx="7" cy="12" r="1.2"/></svg>',
  image: ['<rect x="2.5" y="3" width="11" height="10" rx="1.5"/><circle cx="6" cy="6.5" r="1.2"/><path d="M3 12l3.5-3.5 2.5 2.5 1.5-1.5L13 12"/>'],
  // the input panels (upload, prompt, settings)
  folder: ['<path d="M2.5 4.5a1 1 0 0 1 1-1h3l1.5 1.5h4.5a1 1 0 0 1 1 1v6a1 1 0 0 1-1 1h-9a1 1 0 0 1-1-1z"/>'],
  upload: ['<path d="M8 10.5V2.8"/><path d="M4.8 5.8L8 2.6l3.2 3.2"/><path d="M2.8 10.5v1.7a1 1 0 0 0 1 1h8.4a1 1 0 0 0 1-1v-1.7"/>'],
  sparkle: ['<path d="M8 2.5l1.3 3.2 3.2 1.3-3.2 1.3L8 11.5 6.7 8.3 3.5 7l3.2-1.3z"/><path d="M12.5 11.5l.5 1.2 1.2.5-1.2.5-.5 1.2-.5-1.2-1.2-.5 1.2-.5z"/>'],
  gear: [
    '<circle cx="8" cy="8" r="2.2"/><path d="M8 1.8v1.6M8 12.6v1.6M1.8 8h1.6M12.6 8h1.6M3.6 3.6l1.1 1.1M11.3 11.3l1.1 1.1M3.6 12.4l1.1-1.1M11.3 4.7l1.1-1.1"/>',
  ],
  undo: ['<path d="M5.5 3.5L2.8 6.2l2.7 2.7"/><path d="M3 6.2h6.5a3.5 3.5 0 0 1 0 7H7"/>'],
});

const STAR = '<path d="M8 1.9l1.85 3.9 4.25.55-3.1 2.95.8 4.2L8 11.45 4.2 13.5l.8-4.2L1.9 6.35l4.25-.55z"/>';

// the gallery
export const gicons = /* @__PURE__ */ build({
  left: ['<path d="M10 3L5 8l5 5"/>'],
  right: ['<path d="M6 3l5 5-5 5"/>'],
  up: ['<path d="M3 10l5-5 5 5"/>'],
  down: ['<path d="M3 6l5 5 5-5"/>'],
  close: ['<path d="M4 4l8 8M12 4l-8 8"/>'],
  star: [STAR],
  starOn: [STAR, true],
  download: ['<path d="M8 2.5v7.5"/><path d="M4.8 7L8 10.2 11.2 7"/><path d="M2.8 12.8h10.4"/>'],
  zip: ['<rect x="3" y="2" width="10" height="12" rx="1.5"/><path d="M8 2v2M8 5v1.5M8 7.5V9"/><rect x="6.8" y="9.6" width="2.4" height="2" rx=".5"/>'],
  edit: ['<path d="M10.8 2.7l2.5 2.5L6 12.5 3 13l.5-3z"/><path d="M9.3 4.2l2.5 2.5"/>'],
  remix: [
    '<path d="M2 4.5h2.5c2.5 0 3.5 7 6 7H14"/><path d="M2 11.5h2.5c1 0 1.7-1 2.3-2.2M9 6.7c.6-1.2 1.3-2.2 2.5-2.2H14"/><path d="M12.2 2.7L14 4.5l-1.8 1.8M12.2 9.7l1.8 1.8-1.8 1.8"/>',
  ],
  keys: ['<rect x="1.5" y="4" width="13" height="8" rx="1.5"/><path d="M4 6.5h.01M6.5 6.5h.01M9 6.5h.01M11.5 6.5h.01M5 9.5h6"/>'],
  sheet: [
    '<rect x="2" y="2" width="5" height="5" rx="1"/><rect x="9" y="2" width="5" height="5" rx="1"/><rect x="2" y="9" width="5" height="5" rx="1"/><rect x="9" y="9" width="5" height="5" rx="1"/>',
  ],
  tune: [
    '<path d="M2 4h7M12 4h2M2 8h2M7 8h7M2 12h8M13 12h1"/><circle cx="10.5" cy="4" r="1.5"/><circle cx="5.5" cy="8" r="1.5"/><circle cx="11.5" cy="12" r="1.5"/>',
  ],
  gallery: [
    '<rect x="2" y="2.5" width="12" height="9" rx="1.5"/><circle cx="5.8" cy="5.8" r="1.1"/><path d="M2.5 10.5l3.2-3 2.4 2.2 1.7-1.5 3.7 3.3"/><path d="M4 14h8"/>',
  ],
});
