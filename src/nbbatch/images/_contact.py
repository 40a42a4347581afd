"""Contact sheets: one image showing many, with captions, or laid out on X/Y axes.

:func:`contact_sheet` tiles a batch, tasks, stored images, paths or PIL images in a grid
(captions: task number, seed and the start of the prompt). :func:`xy_grid` lays out the
images of tasks that differ in one or two parameters — seed × CFG scale, prompt × model —
with the values as column and row headers, like A1111's X/Y plot; with no axes given it
picks the parameters that actually vary (:func:`varying_parameters`).

Every cell is decoded through the guarded decoder at reduced size (JPEG draft mode) and
shrunk at once, so a sheet of hundreds of 1024² images needs the memory of one image plus
the sheet itself.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from ..core._errors import ConfigError, ImageError
from ..core._protocols import TaskSource
from ._decode import DEFAULT_LIMITS, ImageLimits, decode_image

log = logging.getLogger("nbbatch")

if TYPE_CHECKING:
    from ..core._model import GeneratedImage, Task

__all__ = ["contact_sheet", "varying_parameters", "xy_grid"]

#: Largest sheet produced (pixels); beyond it, ask for smaller cells.
MAX_SHEET_PIXELS = 120_000_000
_MAX_CAPTION = 200  # ImageFont DoS on very long text (CVE-2023-44271)
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


@dataclass(frozen=True)
class _Cell:
    load: Callable[[], bytes] | None
    pil: Image.Image | None
    caption: str


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def _caption_for(task: Task | None, image: GeneratedImage | None) -> str:
    parts = []
    if task is not None:
        parts.append(f"#{task.order + 1}")
    if image is not None and image.seed is not None:
        parts.append(f"seed {image.seed}")
    head = " · ".join(parts)
    if task is not None:
        return f"{head}\n{task.prompt}" if head else task.prompt
    return head


def _cells(items: object) -> list[_Cell]:
    from ..core._model import GeneratedImage, Task

    if isinstance(items, (TaskSource, Task, GeneratedImage, Image.Image, str, os.PathLike, bytes)):
        items = [items]
    if not isinstance(items, Iterable):
        raise ConfigError(f"cannot make a contact sheet of {type(items).__name__}")
    out: list[_Cell] = []
    for item in items:
        if isinstance(item, TaskSource):
            out.extend(_cells(item.tasks))
        elif isinstance(item, Task):
            out.extend(_Cell(im.read_bytes, None, _caption_for(item, im)) for im in item.images)
        elif isinstance(item, GeneratedImage):
            out.append(_Cell(item.read_bytes, None, _caption_for(None, item)))
        elif isinstance(item, Image.Image):
            out.append(_Cell(None, item, ""))
        elif isinstance(item, (bytes, bytearray)):
            data = bytes(item)
            out.append(_Cell(lambda data=data: data, None, ""))  # type: ignore[misc]
        elif isinstance(item, (str, os.PathLike)):
            p = Path(item)
            out.append(_Cell(p.read_bytes, None, p.name))
        else:
            raise ConfigError(
                f"cannot put {type(item).__name__} on a contact sheet; give a Batch, tasks, "
                "GeneratedImage objects, paths, bytes or PIL images"
            )
    return out


class _Skipped(str):
    """Why a cell's picture could not be shown (a word for the crossed box)."""


def _tile(cell: _Cell, box: int, limits: ImageLimits) -> Image.Image | _Skipped:
    """The cell's picture shrunk to fit ``box``, or why it cannot be shown."""
    try:
        if cell.pil is not None:
            img = cell.pil.copy()
        else:
            assert cell.load is not None
            img = decode_image(cell.load(), limits, draft=(box, box))
    except FileNotFoundError:
        # A missing or refused file must not sink the whole sheet: it shows as a cross
        # with the reason, and the sheet lists what it skipped.
        return _Skipped("file missing")
    except (OSError, ImageError) as exc:
        return _Skipped("refused" if isinstance(exc, ImageError) else "unreadable")
    img.thumbnail((box, box), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return img if img.mode in ("RGB", "RGBA") else img.convert("RGBA")


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int, lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels, at most ``lines`` lines (ellipsis if cut)."""
    text = " ".join(text[:_MAX_CAPTION].split()) if "\n" not in text else text[:_MAX_CAPTION]
    out: list[str] = []
    for para in text.split("\n"):
        words = para.split()
        line = ""
        for word in words:
            trial = f"{line} {word}".strip()
            if draw.textlength(trial, font=font) <= width or not line:
                line = trial
            else:
                out.append(line)
                line = word
        out.append(line)
    if len(out) > lines:
        out = out[:lines]
        last = out[-1]
        while last and draw.textlength(last + "…", font=font) > width:
            last = last[:-1]
        out[-1] = last + "…"
    return [_fit(draw, line, font, width) for line in out]


def _fit(draw: ImageDraw.ImageDraw, line: str, font: Font, width: int) -> str:
    if draw.textlength(line, font=font) <= width:
        return line
    while line and draw.textlength(line + "…", font=font) > width:
        line = line[:-1]
    return line + "…"


def _check_sheet(width: int, height: int) -> None:
    if width * height > MAX_SHEET_PIXELS:
        raise ConfigError(
            f"the sheet would be {width}x{height} pixels; the limit is "
            f"{MAX_SHEET_PIXELS:,}. Use a smaller cell= or fewer images."
        )


def _load_tiles(
    cells: Sequence[_Cell], box: int, limits: ImageLimits, max_workers: int | None
) -> list[Image.Image | _Skipped]:
    workers = max_workers or min(4, os.cpu_count() or 2)
    if workers <= 1 or len(cells) <= 1:
        return [_tile(c, box, limits) for c in cells]
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="nbbatch-sheet") as ex:
        return list(ex.map(lambda c: _tile(c, box, limits), cells))


def _paste_centered(
    sheet: Image.Image, tile: Image.Image | _Skipped, x: int, y: int, box: int
) -> None:
    if isinstance(tile, _Skipped):
        draw = ImageDraw.Draw(sheet)
        draw.rectangle((x, y, x + box - 1, y + box - 1), outline=(128, 128, 128))
        draw.line((x, y, x + box - 1, y + box - 1), fill=(128, 128, 128))
        if not tile:
            return
        font = _font(max(10, box // 14))
        draw.text((x + 6, y + 6), _fit(draw, str(tile), font, box - 12), font=font,
                  fill=(200, 200, 200))  # fmt: skip
        return
    ox, oy = x + (box - tile.width) // 2, y + (box - tile.height) // 2
    if tile.mode == "RGBA":
        sheet.paste(tile, (ox, oy), tile)
    else:
        sheet.paste(tile, (ox, oy))


def _tell_skipped(sheet: Image.Image, skipped: list[str]) -> None:
    """Say which images a sheet shows as crossed boxes: ``sheet.info["skipped"]`` lists
    them and the ``nbbatch`` logger warns once per sheet."""
    sheet.info["skipped"] = skipped
    if skipped:
        log.warning(
            "contact sheet: %d image(s) could not be shown and are crossed out: %s",
            len(skipped),
            "; ".join(skipped[:10]) + (" …" if len(skipped) > 10 else ""),
        )


def contact_sheet(
    images: TaskSource | Task | GeneratedImage | Iterable[Any],
    *,
    columns: int | None = None,
    cell: int = 256,
    captions: bool | Sequence[str] = True,
    caption_lines: int = 2,
    padding: int = 8,
    background: tuple[int, int, int] = (30, 30, 30),
    text_color: tuple[int, int, int] = (225, 225, 225),
    title: str | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    max_workers: int | None = None,
) -> Image.Image:
    """A grid image of ``images`` (a batch, tasks, stored images, paths, bytes, PIL images).

    ``captions=True`` writes task number, seed and prompt under each cell; a list gives
    one caption per image; ``False`` writes none. An image that cannot be shown (its
    file missing, unreadable or refused) is a crossed box saying why, listed in
    ``sheet.info["skipped"]`` and in a warning of the ``nbbatch`` logger. Returns a PIL
    image (``.save(...)`` it, or let the notebook display it).
    """
    cells = _cells(images)
    if not cells:
        raise ConfigError("nothing to put on the contact sheet (no images)")
    if not 32 <= cell <= 2048:
        raise ConfigError(f"cell must be from 32 to 2048 pixels, got {cell!r}")
    if isinstance(captions, Sequence) and not isinstance(captions, str):
        if len(captions) != len(cells):
            raise ConfigError(f"got {len(captions)} captions for {len(cells)} images")
        texts = [str(c) for c in captions]
    else:
        texts = [c.caption for c in cells] if captions else ["" for _ in cells]
    cols = columns or max(1, math.ceil(math.sqrt(len(cells))))
    if cols < 1:
        raise ConfigError(f"columns must be at least 1, got {columns!r}")
    rows = math.ceil(len(cells) / cols)
    font_size = max(10, cell // 18)
    font = _font(font_size)
    line_h = font_size + 3
    cap_h = line_h * caption_lines + 4 if any(texts) else 0
    title_h = font_size * 2 + padding if title else 0
    width = padding + cols * (cell + padding)
    height = title_h + padding + rows * (cell + cap_h + padding)
    _check_sheet(width, height)
    tiles = _load_tiles(cells, cell, limits, max_workers)
    skipped: list[str] = []
    sheet = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(sheet)
    if title:
        title_font = _font(round(font_size * 1.4))
        draw.text(
            (padding, padding),
            _fit(draw, title[:_MAX_CAPTION], title_font, width - 2 * padding),
            font=title_font,
            fill=text_color,
        )
    for i, (tile, text) in enumerate(zip(tiles, texts, strict=True)):
        r, c = divmod(i, cols)
        x = padding + c * (cell + padding)
        y = title_h + padding + r * (cell + cap_h + padding)
        _paste_centered(sheet, tile, x, y, cell)
        if text and caption_lines > 0:
            for j, line in enumerate(_wrap(draw, text, font, cell, caption_lines)):
                draw.text((x, y + cell + 3 + j * line_h), line, font=font, fill=text_color)
        if isinstance(tile, _Skipped):
            skipped.append(f"{text.splitlines()[0] if text else f'image {i + 1}'}: {tile}")
        else:
            tile.close()
    _tell_skipped(sheet, skipped)
    return sheet


# --------------------------------------------------------------------------- X/Y grid
def _axis_values(task: Task, image: GeneratedImage) -> dict[str, Any]:
    values: dict[str, Any] = {"prompt": task.prompt}
    params = task.params.to_dict()
    params.pop("n", None)
    extras = params.pop("extras", {}) or {}
    values.update(params)
    for k, v in extras.items():
        values[f"extras.{k}"] = v
    values["seed"] = image.seed if image.seed is not None else task.params.seed
    values["provider"] = task.provider or image.params.get("provider")
    return values


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _rows(items: TaskSource | Iterable[Task]) -> list[tuple[Task, GeneratedImage, dict[str, Any]]]:
    from ..core._model import Task

    tasks = items.tasks if isinstance(items, TaskSource) else list(items)
    rows = []
    for t in tasks:
        if not isinstance(t, Task):
            raise ConfigError("xy_grid needs a Batch or tasks (it reads their parameters)")
        for im in t.images:
            rows.append((t, im, _axis_values(t, im)))
    return rows


def varying_parameters(items: TaskSource | Iterable[Task]) -> dict[str, list[Any]]:
    """Parameters whose value differs between the images of ``items``, with the values.

    Keys are ``prompt``, ``seed``, ``provider`` and :class:`~nbbatch.Params` field names
    (``extras.<name>`` for extras); values are in first-seen order.
    """
    found: dict[str, dict[str, Any]] = {}
    rows = _rows(items)
    for _, _, values in rows:
        for k in values:
            found.setdefault(k, {})
    for _, _, values in rows:
        for k in found:
            v = values.get(k)
            found[k].setdefault(_key(v), v)
    return {k: list(v.values()) for k, v in found.items() if len(v) > 1}


def _sorted_values(values: list[Any]) -> list[Any]:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return sorted(values)
    return values


def _label(axis: str, value: Any) -> str:
    text = "(default)" if value is None else str(value)
    return f"{axis}: {text}" if axis != "prompt" else text


def xy_grid(
    items: TaskSource | Iterable[Task],
    x: str | None = None,
    y: str | None = None,
    *,
    cell: int = 256,
    padding: int = 6,
    background: tuple[int, int, int] = (30, 30, 30),
    text_color: tuple[int, int, int] = (225, 225, 225),
    limits: ImageLimits = DEFAULT_LIMITS,
    max_workers: int | None = None,
) -> Image.Image:
    """Images laid out by parameter values: ``x`` along the columns, ``y`` down the rows.

    With no axes given, the parameters that vary are used (at most two may vary). Each
    cell shows the first image whose values match; missing combinations are crossed.
    """
    rows = _rows(items)
    if not rows:
        raise ConfigError("no images to lay out (run the tasks first)")
    varying = varying_parameters(items)
    if x is None and y is None:
        if not varying:
            raise ConfigError("no parameter varies between these images; use contact_sheet()")
        if len(varying) > 2:
            raise ConfigError(
                f"{len(varying)} parameters vary ({', '.join(varying)}); choose the axes "
                "with x=... and y=..."
            )
        names = list(varying)
        x, y = names[0], (names[1] if len(names) > 1 else None)
    elif x is None:
        x, y = y, None
    assert x is not None
    known = set(rows[0][2]) | set(varying)
    for axis in (x, y):
        if axis is not None and axis not in known:
            raise ConfigError(f"unknown axis {axis!r}; choose from {sorted(known)}")
    xs = _sorted_values(list({_key(v[x]): v[x] for _, _, v in rows}.values()))
    ys = (
        _sorted_values(list({_key(v.get(y)): v.get(y) for _, _, v in rows}.values()))
        if y is not None
        else [None]
    )
    if len(xs) * len(ys) > 2500:
        raise ConfigError(f"{len(xs)}x{len(ys)} cells is too many for one grid")
    chosen: dict[tuple[str, str], GeneratedImage] = {}
    for _, im, values in rows:
        k = (_key(values[x]), _key(values.get(y)) if y is not None else _key(None))
        chosen.setdefault(k, im)

    font_size = max(10, cell // 18)
    font = _font(font_size)
    line_h = font_size + 3
    header_h = line_h * 3 + padding
    label_w = cell if y is not None else 0
    width = label_w + padding + len(xs) * (cell + padding)
    height = header_h + padding + len(ys) * (cell + padding)
    _check_sheet(width, height)
    order = [chosen.get((_key(xv), _key(yv))) for yv in ys for xv in xs]
    cells = [_Cell(im.read_bytes, None, "") if im is not None else None for im in order]
    present = [c for c in cells if c is not None]
    loaded = iter(_load_tiles(present, cell, limits, max_workers))
    skipped: list[str] = []
    sheet = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(sheet)
    for ci, xv in enumerate(xs):
        cx = label_w + padding + ci * (cell + padding)
        for j, line in enumerate(_wrap(draw, _label(x, xv), font, cell, 3)):
            draw.text((cx, padding + j * line_h), line, font=font, fill=text_color)
    for ri, yv in enumerate(ys):
        ry = header_h + padding + ri * (cell + padding)
        if y is not None:
            lines = _wrap(draw, _label(y, yv), font, label_w - padding, max(1, cell // line_h))
            for j, line in enumerate(lines):
                draw.text((padding, ry + j * line_h), line, font=font, fill=text_color)
        for ci in range(len(xs)):
            cx = label_w + padding + ci * (cell + padding)
            slot = cells[ri * len(xs) + ci]
            tile = next(loaded) if slot is not None else _Skipped("")  # no such image
            _paste_centered(sheet, tile, cx, ry, cell)
            if not isinstance(tile, _Skipped):
                tile.close()
            elif tile:
                where = _label(x, xs[ci]) + (f", {_label(y, yv)}" if y is not None else "")
                skipped.append(f"{where}: {tile}")
    _tell_skipped(sheet, skipped)
    return sheet


def sheet_bytes(sheet: Image.Image, format: str = "PNG", **options: Any) -> bytes:
    """Encode a sheet (helper for widgets and exports)."""
    buf = io.BytesIO()
    sheet.save(buf, format=format, **options)
    return buf.getvalue()
