"""The message catalogue of the widgets: English and Simplified Chinese, as JSON.

Every string the studio shows comes from ``locales/<lang>/<part>.json`` (package data).
The parts follow the front end: each panel's page is sent only its own part and
``common`` (the words several panels show) in its snapshot, so the front end holds no
text of its own and no panel carries the others' words; ``kernel`` holds what only the
kernel says (errors, "while {action}" names). Placeholders use ``str.format`` names
(``{n}``) and the browser fills them the same way. A key lives in one part per language.

The English names of controls are also their accessible names, which tests and screen
readers look up (``Run all``, ``Retry failed``, ...): change them only on purpose.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from importlib import resources
from typing import Literal

__all__ = ["LANGS", "PANELS", "PARTS", "catalogue", "resolve_lang", "tr"]

log = logging.getLogger("nbbatch")

Panel = Literal["studio", "gallery", "upload", "prompt", "settings", "history", "compare"]
#: the panels of the page, one catalogue slice each
PANELS: tuple[Panel, ...] = (
    "studio",
    "gallery",
    "upload",
    "prompt",
    "settings",
    "history",
    "compare",
)
#: the parts of a language's catalogue (one JSON file each)
PARTS: tuple[str, ...] = (*PANELS, "common", "kernel")


def _load(lang: str) -> dict[str, dict[str, str]]:
    folder = resources.files("nbbatch.widgets") / "locales" / lang
    parts: dict[str, dict[str, str]] = {}
    for part in PARTS:
        data = json.loads(folder.joinpath(f"{part}.json").read_text(encoding="utf-8"))
        parts[part] = {str(k): str(v) for k, v in data.items()}
    return parts


_PARTS: dict[str, dict[str, dict[str, str]]] = {lang: _load(lang) for lang in ("en", "zh")}

#: language -> every message of it (all parts)
LANGS: Mapping[str, Mapping[str, str]] = {
    lang: {k: v for part in parts.values() for k, v in part.items()}
    for lang, parts in _PARTS.items()
}
_EN = LANGS["en"]

_ALIASES = {"zh-cn": "zh", "zh_cn": "zh", "zh-hans": "zh", "zh-sg": "zh", "cn": "zh", "en-us": "en"}


def resolve_lang(lang: str | None = None) -> str:
    """``lang``, else ``$NBBATCH_LANG``, else English; unknown languages fall back to English."""
    raw = lang if lang is not None else os.environ.get("NBBATCH_LANG", "")
    key = raw.strip().lower().replace(" ", "")
    key = _ALIASES.get(key, key.split(".")[0])  # "zh_CN.UTF-8" -> "zh_cn" -> "zh"
    key = _ALIASES.get(key, key)
    if key in LANGS:
        return key
    if key:
        log.warning("nbbatch widgets: no messages for language %r; using English", raw)
    return "en"


def catalogue(lang: str, panel: Panel | None = None) -> dict[str, str]:
    """The messages of ``lang`` the page of ``panel`` shows: its part and ``common``
    (English where a translation is missing); without ``panel``, every message."""
    if panel is None:
        return {**_EN, **LANGS.get(lang, {})}
    en, given = _PARTS["en"], _PARTS.get(lang, {})
    out = {**en[panel], **en["common"]}
    out.update(given.get(panel, {}))
    out.update(given.get("common", {}))
    return out


def tr(lang: str, key: str, **values: object) -> str:
    """The message ``key`` in ``lang`` with its placeholders filled."""
    text = LANGS.get(lang, _EN).get(key) or _EN.get(key, key)
    return text.format(**values) if values else text
