// Small stroke icons (16 px grid, currentColor) drawn for nbbatch.
const wrap = (body, fill = false) =>
  `<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false" ` +
  `fill="${fill ? "currentColor" : "none"}" stroke="currentColor" stroke-width="1.6" ` +
  `stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;

export const icons = {
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
  grip:
    '<svg viewBox="0 0 10 16" width="10" height="16" aria-hidden="true" focusable="false" fill="currentColor">' +
    '<circle cx="3" cy="4" r="1.2"/><circle cx="7" cy="4" r="1.2"/><circle cx="3" cy="8" r="1.2"/>' +
    '<circle cx="7" cy="8" r="1.2"/><circle cx="3" cy="12" r="1.2"/><circle cx="7" cy="12" r="1.2"/></svg>',
  image: wrap('<rect x="2.5" y="3" width="11" height="10" rx="1.5"/><circle cx="6" cy="6.5" r="1.2"/><path d="M3 12l3.5-3.5 2.5 2.5 1.5-1.5L13 12"/>'),
};
