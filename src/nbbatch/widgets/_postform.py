"""The gallery's post-process form: what the page sends, checked into a ``Pipeline``.

The page sends the form as it is (``{"resize": {"on", "width", "height", "mode"},
"crop": {"on", "aspect"}, "format": {"on", "format", "quality"}, "watermark": {"on",
"text", "position", "opacity"}, "strip": {"on"}}``); every value is checked here, and a
refusal names the field and says in words what is wrong, so the form can mark it.
Derived copies are labelled from their recipe (``Resize 512×512 · WebP 90``), the same
words wherever a copy is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nbbatch.images import (
    ConvertFormat,
    CropToAspect,
    Pipeline,
    Resize,
    StripMetadata,
    Watermark,
)
from nbbatch.images._postprocess import Step

from ._i18n import tr

__all__ = ["ASPECTS", "POSITIONS", "FormError", "pipeline_from", "recipe_label"]

ASPECTS = ("1:1", "4:3", "3:2", "16:9", "9:16", "2:3", "3:4")
POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
_MODES = ("fit", "fill", "exact")
_FORMATS = ("webp", "jpeg", "png")
_MAX_SIDE = 16_384
_MAX_TEXT = 200


class FormError(Exception):
    """A field of the form that cannot be used: ``field`` and the words to show."""

    def __init__(self, field: str, text: str) -> None:
        super().__init__(text)
        self.field = field
        self.text = text


def _part(form: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    part = form.get(name)
    if isinstance(part, Mapping) and part.get("on") is True:
        return part
    return None


def _whole(value: object, field: str, lo: int, hi: int, lang: str) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not lo <= number <= hi:
        raise FormError(field, tr(lang, "pp_bad_number", lo=lo, hi=hi))
    return number


def pipeline_from(form: object, lang: str) -> Pipeline:
    """The steps the form asks for, in the order resize, crop, watermark, format, strip."""
    if not isinstance(form, Mapping):
        raise FormError("", tr(lang, "pp_no_step"))
    steps: list[Step] = []
    if (crop := _part(form, "crop")) is not None:
        # crop first: a resize box then applies to the cropped picture
        aspect = crop.get("aspect")
        if aspect not in ASPECTS:
            raise FormError("crop.aspect", tr(lang, "pp_bad_aspect"))
        steps.append(CropToAspect(str(aspect)))
    if (resize := _part(form, "resize")) is not None:
        width = _whole(resize.get("width"), "resize.width", 1, _MAX_SIDE, lang)
        raw_h = resize.get("height")
        height = None
        if raw_h not in (None, ""):
            height = _whole(raw_h, "resize.height", 1, _MAX_SIDE, lang)
        mode = resize.get("mode", "fit")
        if mode not in _MODES:
            raise FormError("resize.mode", tr(lang, "pp_bad_mode"))
        steps.append(Resize(width, height, mode=mode))
    if (mark := _part(form, "watermark")) is not None:
        text = mark.get("text")
        text = text.strip() if isinstance(text, str) else ""
        if not text:
            raise FormError("watermark.text", tr(lang, "pp_no_text"))
        if len(text) > _MAX_TEXT:
            raise FormError("watermark.text", tr(lang, "pp_long_text", n=_MAX_TEXT))
        position = mark.get("position", "bottom-right")
        if position not in POSITIONS:
            raise FormError("watermark.position", tr(lang, "pp_bad_position"))
        opacity = _whole(mark.get("opacity", 50), "watermark.opacity", 1, 100, lang)
        steps.append(Watermark(text=text, position=position, opacity=opacity / 100))
    if (out := _part(form, "format")) is not None:
        fmt = out.get("format")
        if fmt not in _FORMATS:
            raise FormError("format.format", tr(lang, "pp_bad_format"))
        quality = _whole(out.get("quality", 90), "format.quality", 1, 100, lang)
        steps.append(ConvertFormat(str(fmt), quality=quality))
    if _part(form, "strip") is not None:
        steps.append(StripMetadata())
    if not steps:
        raise FormError("", tr(lang, "pp_no_step"))
    return Pipeline(steps)


def recipe_label(recipe: Iterable[Mapping[str, Any]], lang: str) -> str:
    """``Crop 16:9 · Resize 512×512 · WebP 90``: a derived copy in a few words."""
    parts = []
    for step in recipe:
        kind = step.get("step")
        if kind == "resize":
            w = step.get("width")
            h = step.get("height") or w
            parts.append(tr(lang, "pp_l_resize", w=w, h=h))
        elif kind == "crop":
            parts.append(tr(lang, "pp_l_crop", aspect=step.get("aspect")))
        elif kind == "watermark":
            parts.append(tr(lang, "pp_l_watermark"))
        elif kind == "format":
            name = str(step.get("format", "")).upper().replace("JPG", "JPEG")
            parts.append(f"{name} {step.get('quality')}")
        elif kind == "strip_metadata":
            parts.append(tr(lang, "pp_l_strip"))
        elif isinstance(kind, str):
            parts.append(kind)
    return " · ".join(parts)
