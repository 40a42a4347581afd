// Gallery icons (16 px grid, currentColor), drawn for nbbatch like ../icons.js.
const wrap = (body, fill = false) =>
  `<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false" ` +
  `fill="${fill ? "currentColor" : "none"}" stroke="currentColor" stroke-width="1.6" ` +
  `stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;

const STAR = '<path d="M8 1.9l1.85 3.9 4.25.55-3.1 2.95.8 4.2L8 11.45 4.2 13.5l.8-4.2L1.9 6.35l4.25-.55z"/>';

export const gicons = {
  left: wrap('<path d="M10 3L5 8l5 5"/>'),
  right: wrap('<path d="M6 3l5 5-5 5"/>'),
  up: wrap('<path d="M3 10l5-5 5 5"/>'),
  down: wrap('<path d="M3 6l5 5 5-5"/>'),
  close: wrap('<path d="M4 4l8 8M12 4l-8 8"/>'),
  star: wrap(STAR),
  starOn: wrap(STAR, true),
  download: wrap('<path d="M8 2.5v7.5"/><path d="M4.8 7L8 10.2 11.2 7"/><path d="M2.8 12.8h10.4"/>'),
  zip: wrap('<rect x="3" y="2" width="10" height="12" rx="1.5"/><path d="M8 2v2M8 5v1.5M8 7.5V9"/><rect x="6.8" y="9.6" width="2.4" height="2" rx=".5"/>'),
  edit: wrap('<path d="M10.8 2.7l2.5 2.5L6 12.5 3 13l.5-3z"/><path d="M9.3 4.2l2.5 2.5"/>'),
  remix: wrap('<path d="M2 4.5h2.5c2.5 0 3.5 7 6 7H14"/><path d="M2 11.5h2.5c1 0 1.7-1 2.3-2.2M9 6.7c.6-1.2 1.3-2.2 2.5-2.2H14"/><path d="M12.2 2.7L14 4.5l-1.8 1.8M12.2 9.7l1.8 1.8-1.8 1.8"/>'),
  keys: wrap('<rect x="1.5" y="4" width="13" height="8" rx="1.5"/><path d="M4 6.5h.01M6.5 6.5h.01M9 6.5h.01M11.5 6.5h.01M5 9.5h6"/>'),
  sheet: wrap('<rect x="2" y="2" width="5" height="5" rx="1"/><rect x="9" y="2" width="5" height="5" rx="1"/><rect x="2" y="9" width="5" height="5" rx="1"/><rect x="9" y="9" width="5" height="5" rx="1"/>'),
  tune: wrap('<path d="M2 4h7M12 4h2M2 8h2M7 8h7M2 12h8M13 12h1"/><circle cx="10.5" cy="4" r="1.5"/><circle cx="5.5" cy="8" r="1.5"/><circle cx="11.5" cy="12" r="1.5"/>'),
  gallery: wrap('<rect x="2" y="2.5" width="12" height="9" rx="1.5"/><circle cx="5.8" cy="5.8" r="1.1"/><path d="M2.5 10.5l3.2-3 2.4 2.2 1.7-1.5 3.7 3.3"/><path d="M4 14h8"/>'),
};
