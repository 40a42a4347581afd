"""Post-processing: composable steps that turn images into new files.

    >>> nbbatch.postprocess(batch, [Resize(1024), Watermark(text="© me"),
    ...                             ConvertFormat("webp", quality=85)])

Steps are small frozen dataclasses (:class:`Resize`, :class:`CropToAspect`,
:class:`PadToAspect`, :class:`Adjust`, :class:`Watermark`, :class:`ConvertFormat`,
:class:`StripMetadata`) applied in order by a :class:`Pipeline`. Originals are never
touched.

Where results go (the design): a derived image is a pure function of its source bytes
and its recipe, so it is stored content-addressed by *both*::

    <workspace>/derived/ab/<source sha256>/<recipe hash>.webp

The workspace owns that layout (:class:`DerivedStore`: ``Workspace.derived_path``,
``write_derived``, ``record_derived``, ``derived``): the folder name is the lineage
(which stored image it came from) and a journal row (table ``derived``) records the
task, image index, recipe and result sha256, written after the file. Images of a loaded
batch find their workspace through their batch; paths and bytes need ``workspace=``.
Reconciling ``images/`` never sees these files, running the same recipe twice is free
(the row and file are already there), and deleting ``derived/`` loses nothing that
cannot be recomputed. :func:`derived_images` lists what exists for a source. Older
versions kept a JSON file beside each copy instead of a row: those are journaled the
first time a copy of that source is looked for, then removed. A plain folder given as
``workspace="…"`` (no workspace) keeps such JSON files, having no journal.

By default results keep the generation metadata of their source (plus a ``derived``
entry naming the source and the recipe); :class:`StripMetadata` writes none at all.
Work runs in a thread pool: Pillow releases the GIL while decoding, resizing and
encoding, so the kernel stays responsive; :func:`postprocess_async` awaits it from a
notebook cell without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Union, runtime_checkable

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from ..core._errors import ConfigError, ImageRejectedError
from ..core._events import TaskSucceeded
from ..core._protocols import BatchLike, TaskSource, WorkspaceLike
from ._decode import (
    DEFAULT_LIMITS,
    UPLOAD_LIMITS,
    ImageInfo,
    ImageLimits,
    decode_image,
    sniff_format,
)
from ._files import write_atomic
from ._metadata import RECORD_FORMAT, embed_metadata, read_generation_info

if TYPE_CHECKING:
    from ..core._model import GeneratedImage, Task

__all__ = [
    "Adjust",
    "AutoPostprocess",
    "ConvertFormat",
    "CropToAspect",
    "DerivedImage",
    "PadToAspect",
    "Pipeline",
    "Resize",
    "Step",
    "StripMetadata",
    "Watermark",
    "auto_postprocess",
    "derived_images",
    "postprocess",
    "postprocess_async",
]

Position = Literal[
    "top-left",
    "top",
    "top-right",
    "left",
    "center",
    "right",
    "bottom-left",
    "bottom",
    "bottom-right",
]
_POSITIONS = {
    "top-left": (0.0, 0.0),
    "top": (0.5, 0.0),
    "top-right": (1.0, 0.0),
    "left": (0.0, 0.5),
    "center": (0.5, 0.5),
    "right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0),
    "bottom": (0.5, 1.0),
    "bottom-right": (1.0, 1.0),
}
#: Longest watermark text: ImageFont has had DoS bugs on very long strings (CVE-2023-44271).
MAX_WATERMARK_CHARS = 200
_MAX_SIDE = 16_384
_COLOR_RE = re.compile(r"^#?[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$")


def _check_side(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_SIDE:
        raise ConfigError(f"{name} must be a whole number from 1 to {_MAX_SIDE}, got {value!r}")


def _parse_aspect(aspect: str | float) -> float:
    if isinstance(aspect, (int, float)) and not isinstance(aspect, bool):
        ratio = float(aspect)
    elif isinstance(aspect, str) and re.match(r"^\s*\d+(\.\d+)?\s*[:/x]\s*\d+(\.\d+)?\s*$", aspect):
        a, b = re.split(r"[:/x]", aspect.replace(" ", ""))
        ratio = float(a) / float(b) if float(b) else 0.0
    else:
        raise ConfigError(f"aspect must look like '16:9' or be a number, got {aspect!r}")
    if not 0.01 <= ratio <= 100:
        raise ConfigError(f"aspect ratio {aspect!r} is out of range (0.01 to 100)")
    return ratio


def _parse_color(color: str | tuple[int, ...]) -> tuple[int, int, int, int]:
    if isinstance(color, tuple) and len(color) in (3, 4) and all(0 <= c <= 255 for c in color):
        return (color[0], color[1], color[2], color[3] if len(color) == 4 else 255)
    if isinstance(color, str) and _COLOR_RE.match(color):
        h = color.lstrip("#")
        rgba = [int(h[i : i + 2], 16) for i in range(0, len(h), 2)]
        return (rgba[0], rgba[1], rgba[2], rgba[3] if len(rgba) == 4 else 255)
    raise ConfigError(f"colour must be '#rrggbb', '#rrggbbaa' or an (r, g, b) tuple, got {color!r}")


class Step:
    """One operation on a decoded image. Subclasses are frozen dataclasses."""

    kind: ClassVar[str] = "step"

    def apply(self, img: Image.Image) -> Image.Image:
        return img

    def describe(self) -> dict[str, Any]:
        """JSON-ready description; part of the recipe hash."""
        out: dict[str, Any] = {"step": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata.get("recipe", True):
                value = getattr(self, f.name)
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class Resize(Step):
    """Resize to ``width`` × ``height`` (``height`` defaults to ``width``).

    ``mode="fit"`` keeps the aspect ratio inside the box, ``"fill"`` covers the box and
    crops the overflow (centred), ``"exact"`` stretches. ``upscale=False`` never enlarges.
    """

    width: int
    height: int | None = None
    mode: Literal["fit", "fill", "exact"] = "fit"
    upscale: bool = False
    kind: ClassVar[str] = "resize"

    def __post_init__(self) -> None:
        _check_side("width", self.width)
        _check_side("height", self.height)
        if self.mode not in ("fit", "fill", "exact"):
            raise ConfigError(f"resize mode must be 'fit', 'fill' or 'exact', got {self.mode!r}")

    def apply(self, img: Image.Image) -> Image.Image:
        box = (self.width, self.height or self.width)
        w, h = img.size
        if not self.upscale and w <= box[0] and h <= box[1]:
            return img
        if self.mode == "exact":
            return img.resize(box, Image.Resampling.LANCZOS, reducing_gap=3.0)
        if self.mode == "fill":
            if not self.upscale and (w < box[0] or h < box[1]):
                box = (min(box[0], w), min(box[1], h))
            return ImageOps.fit(img, box, Image.Resampling.LANCZOS)
        scale = min(box[0] / w, box[1] / h)
        if scale >= 1 and not self.upscale:
            return img
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


@dataclass(frozen=True)
class CropToAspect(Step):
    """Crop to an aspect ratio (``"16:9"``, ``"1:1"``, ``1.5``) around ``anchor``."""

    aspect: str | float
    anchor: Position = "center"
    kind: ClassVar[str] = "crop"

    def __post_init__(self) -> None:
        _parse_aspect(self.aspect)
        if self.anchor not in _POSITIONS:
            raise ConfigError(f"anchor must be one of {sorted(_POSITIONS)}, got {self.anchor!r}")

    def apply(self, img: Image.Image) -> Image.Image:
        ratio = _parse_aspect(self.aspect)
        w, h = img.size
        if w / h > ratio:
            nw, nh = max(1, round(h * ratio)), h
        else:
            nw, nh = w, max(1, round(w / ratio))
        fx, fy = _POSITIONS[self.anchor]
        left, top = round((w - nw) * fx), round((h - nh) * fy)
        return img.crop((left, top, left + nw, top + nh))


@dataclass(frozen=True)
class PadToAspect(Step):
    """Pad (letterbox) to an aspect ratio with ``color``, image placed at ``anchor``."""

    aspect: str | float
    color: str | tuple[int, ...] = "#000000"
    anchor: Position = "center"
    kind: ClassVar[str] = "pad"

    def __post_init__(self) -> None:
        _parse_aspect(self.aspect)
        _parse_color(self.color)
        if self.anchor not in _POSITIONS:
            raise ConfigError(f"anchor must be one of {sorted(_POSITIONS)}, got {self.anchor!r}")

    def apply(self, img: Image.Image) -> Image.Image:
        ratio = _parse_aspect(self.aspect)
        w, h = img.size
        if w / h > ratio:
            nw, nh = w, round(w / ratio)
        else:
            nw, nh = round(h * ratio), h
        if (nw, nh) == (w, h):
            return img
        if max(nw, nh) > _MAX_SIDE:
            raise ConfigError(f"padding to {self.aspect} would make a {nw}x{nh} image")
        rgba = _parse_color(self.color)
        mode = "RGBA" if rgba[3] < 255 or img.mode in ("RGBA", "LA", "PA") else "RGB"
        canvas = Image.new(mode, (nw, nh), rgba if mode == "RGBA" else rgba[:3])
        fx, fy = _POSITIONS[self.anchor]
        src = img if img.mode == mode else img.convert(mode)
        canvas.paste(src, (round((nw - w) * fx), round((nh - h) * fy)))
        return canvas


@dataclass(frozen=True)
class Adjust(Step):
    """Colour adjustments; 1.0 leaves a property unchanged, 0.0 removes it."""

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    kind: ClassVar[str] = "adjust"

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= 10
            ):
                raise ConfigError(f"{name} must be a number from 0 to 10, got {value!r}")

    def apply(self, img: Image.Image) -> Image.Image:
        alpha = img.getchannel("A") if img.mode == "RGBA" else None
        out = img.convert("RGB") if img.mode not in ("RGB", "L") else img
        if self.brightness != 1.0:
            out = ImageEnhance.Brightness(out).enhance(self.brightness)
        if self.contrast != 1.0:
            out = ImageEnhance.Contrast(out).enhance(self.contrast)
        if self.saturation != 1.0 and out.mode == "RGB":
            out = ImageEnhance.Color(out).enhance(self.saturation)
        if alpha is not None:
            out = out.convert("RGBA")
            out.putalpha(alpha)
        return out


@dataclass(frozen=True)
class Watermark(Step):
    """Text or image watermark at ``position`` with ``opacity`` (0..1).

    ``scale`` is the watermark's width as a share of the image width (for an image mark)
    or the text height as a share of the image height (for text). ``image`` is a path to
    a PNG/JPEG/WebP logo; it is read through the guarded decoder.
    """

    text: str | None = None
    image: str | None = None
    position: Position = "bottom-right"
    opacity: float = 0.5
    scale: float = 0.05
    margin: float = 0.02
    color: str | tuple[int, ...] = "#ffffff"
    kind: ClassVar[str] = "watermark"
    _logo: list[Image.Image] = field(
        default_factory=list, init=False, repr=False, compare=False, metadata={"recipe": False}
    )
    _lock: threading.Lock = field(
        default_factory=threading.Lock,
        init=False,
        repr=False,
        compare=False,
        metadata={"recipe": False},
    )

    def __post_init__(self) -> None:
        if (self.text is None) == (self.image is None):
            raise ConfigError("Watermark needs exactly one of text=... or image=...")
        if self.text is not None and not 0 < len(self.text) <= MAX_WATERMARK_CHARS:
            raise ConfigError(
                f"watermark text must have 1 to {MAX_WATERMARK_CHARS} characters, "
                f"got {len(self.text)}"
            )
        if self.position not in _POSITIONS:
            raise ConfigError(
                f"position must be one of {sorted(_POSITIONS)}, got {self.position!r}"
            )
        if not 0 <= self.opacity <= 1:
            raise ConfigError(f"opacity must be between 0 and 1, got {self.opacity!r}")
        if not 0 < self.scale <= 1 or not 0 <= self.margin < 0.5:
            raise ConfigError("scale must be in (0, 1] and margin in [0, 0.5)")
        _parse_color(self.color)
        if self.image is not None and not Path(self.image).is_file():
            raise ConfigError(f"watermark image {self.image!r} does not exist")

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.image is not None:
            # The logo's content, not only its path, decides the result.
            out["image_sha256"] = hashlib.sha256(Path(self.image).read_bytes()).hexdigest()
        return out

    def _mark(self) -> Image.Image:
        with self._lock:
            if not self._logo:
                assert self.image is not None
                data = Path(self.image).read_bytes()
                self._logo.append(decode_image(data, UPLOAD_LIMITS).convert("RGBA"))
            return self._logo[0]

    def apply(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        margin = round(min(w, h) * self.margin)
        if self.text is not None:
            size = max(8, round(h * self.scale))
            try:
                font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size)
            except (TypeError, OSError):  # Pillow without FreeType
                font = ImageFont.load_default()
            probe = ImageDraw.Draw(Image.new("L", (1, 1)))
            left, top, right, bottom = (
                round(v) for v in probe.textbbox((0, 0), self.text, font=font)
            )
            mark = Image.new("RGBA", (max(1, right - left), max(1, bottom - top)), (0, 0, 0, 0))
            r, g, b, a = _parse_color(self.color)
            ImageDraw.Draw(mark).text((-left, -top), self.text, font=font, fill=(r, g, b, a))
        else:
            logo = self._mark()
            target_w = max(1, round(w * self.scale))
            target_h = max(1, round(logo.height * target_w / logo.width))
            mark = logo.resize((target_w, target_h), Image.Resampling.LANCZOS)
        if self.opacity < 1:
            alpha = mark.getchannel("A").point(lambda v: round(v * self.opacity))
            mark.putalpha(alpha)
        fx, fy = _POSITIONS[self.position]
        x = margin + round((w - 2 * margin - mark.width) * fx)
        y = margin + round((h - 2 * margin - mark.height) * fy)
        base = img.convert("RGBA")
        layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
        layer.paste(mark, (x, y))
        out = Image.alpha_composite(base, layer)
        return out if img.mode == "RGBA" else out.convert("RGB")


_OUT_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


@dataclass(frozen=True)
class ConvertFormat(Step):
    """Write the result as ``format`` (png/jpeg/webp) at ``quality`` (1-100)."""

    format: str = "webp"
    quality: int = 90
    lossless: bool = False
    kind: ClassVar[str] = "format"

    def __post_init__(self) -> None:
        if self.format.lower() not in _OUT_FORMATS:
            raise ConfigError(f"format must be png, jpeg or webp, got {self.format!r}")
        if (
            isinstance(self.quality, bool)
            or not isinstance(self.quality, int)
            or not 1 <= self.quality <= 100
        ):
            raise ConfigError(f"quality must be a whole number from 1 to 100, got {self.quality!r}")

    @property
    def pil_format(self) -> str:
        return _OUT_FORMATS[self.format.lower()]


@dataclass(frozen=True)
class StripMetadata(Step):
    """Write no metadata at all (no generation parameters, EXIF, XMP or ICC profile)."""

    kind: ClassVar[str] = "strip_metadata"


StepLike = Union[Step, "Pipeline"]


class Pipeline:
    """An ordered list of steps; ``run(data)`` returns the new image bytes."""

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self.steps: tuple[Step, ...] = tuple(steps)
        for s in self.steps:
            if not isinstance(s, Step):
                raise ConfigError(f"post-processing steps must be Step objects, got {s!r}")
        formats = [s for s in self.steps if isinstance(s, ConvertFormat)]
        if len(formats) > 1:
            raise ConfigError("give at most one ConvertFormat step (it decides the output file)")
        self.output: ConvertFormat | None = formats[0] if formats else None
        self.strip = any(isinstance(s, StripMetadata) for s in self.steps)

    def recipe(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.steps]

    @property
    def recipe_hash(self) -> str:
        text = json.dumps(self.recipe(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def output_format(self, source_format: str) -> str:
        if self.output is not None:
            return self.output.pil_format
        return source_format if source_format in ("PNG", "JPEG", "WEBP") else "PNG"

    def run(
        self,
        data: bytes,
        *,
        limits: ImageLimits = DEFAULT_LIMITS,
        source_sha256: str | None = None,
    ) -> tuple[bytes, ImageInfo]:
        """Decode ``data`` (guarded), apply the steps, encode; embed metadata unless stripped."""
        src_fmt = data[:16]
        img = decode_image(data, limits)
        try:
            for step in self.steps:
                img = step.apply(img)
            fmt = self.output_format(sniff_format(src_fmt) or "PNG")
            out = _encode(img, fmt, self.output, keep_icc=not self.strip)
            info = ImageInfo(format=fmt, width=img.width, height=img.height)
        finally:
            img.close()
        if self.strip:
            return out, info
        found = read_generation_info(data, limits=limits)
        if not found:
            return out, info
        record: dict[str, Any] = (
            dict(found.record)
            if found.record
            else {
                "format": RECORD_FORMAT,
                "prompt": found.prompt,
                "negative_prompt": found.negative_prompt,
                "seed": found.seed,
                "provider": found.provider,
                "params": found.to_params().to_dict(),
                "source": found.source,
            }
        )
        record["derived"] = {
            "source_sha256": source_sha256 or hashlib.sha256(data).hexdigest(),
            "recipe": self.recipe(),
        }
        return embed_metadata(out, info, record), info

    def __repr__(self) -> str:
        return f"Pipeline({list(self.steps)!r})"


def _encode(img: Image.Image, fmt: str, opts: ConvertFormat | None, *, keep_icc: bool) -> bytes:
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {}
    icc = img.info.get("icc_profile") if keep_icc else None
    if icc:
        kwargs["icc_profile"] = icc
    quality = opts.quality if opts is not None else 95
    if fmt == "JPEG":
        if img.mode not in ("RGB", "L"):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            img = flat
        img.save(buf, format="JPEG", quality=quality, **kwargs)
    elif fmt == "WEBP":
        if img.mode not in ("RGB", "RGBA"):
            img = img.convert("RGBA")
        lossless = opts.lossless if opts is not None else True
        img.save(buf, format="WEBP", quality=quality, lossless=lossless, **kwargs)
    else:
        if img.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
            img = img.convert("RGBA")
        img.save(buf, format="PNG", compress_level=6, **kwargs)
    return buf.getvalue()


# --------------------------------------------------------------------------- storage
@dataclass(frozen=True)
class DerivedImage:
    """A post-processed copy of a stored image (see the module docstring for the layout)."""

    path: Path
    sha256: str
    source_sha256: str
    recipe: tuple[dict[str, Any], ...]
    width: int
    height: int
    format: str
    task_id: str | None = None
    index: int | None = None

    @property
    def pil(self) -> Image.Image:
        img = Image.open(self.path)
        img.load()
        return img

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def _repr_png_(self) -> bytes | None:
        return self.read_bytes() if self.format == "PNG" else None

    def _repr_jpeg_(self) -> bytes | None:
        return self.read_bytes() if self.format == "JPEG" else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "source_sha256": self.source_sha256,
            "recipe": list(self.recipe),
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "task_id": self.task_id,
            "index": self.index,
            "file": self.path.name,
        }


_EXTS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


@dataclass(frozen=True)
class _Source:
    data_path: Path | None
    data: bytes | None
    sha256: str
    task_id: str | None
    index: int | None
    #: the workspace of the batch the image belongs to, when it knows one
    owner: object = None

    def read(self, limits: ImageLimits) -> bytes:
        if self.data is not None:
            return self.data
        assert self.data_path is not None
        size = self.data_path.stat().st_size
        if size > limits.max_bytes:
            raise ImageRejectedError(
                f"{self.data_path.name} is {size / 1e6:.1f} MB; the limit is "
                f"{limits.max_bytes / 1e6:.1f} MB",
                reason="too_many_bytes",
                limit=limits.max_bytes,
                actual=size,
            )
        return self.data_path.read_bytes()


def _owner(image: GeneratedImage) -> object:
    """The workspace of the batch a stored image belongs to (None when not attached)."""
    return getattr(image._owner, "workspace", None)


def _sources(items: object) -> list[_Source]:
    from ..core._model import GeneratedImage, Task

    if isinstance(items, (TaskSource, Task, GeneratedImage, str, os.PathLike, bytes)):
        items = [items]
    if not isinstance(items, Iterable):
        raise ConfigError(f"cannot post-process {type(items).__name__}")
    out: list[_Source] = []
    for item in items:
        if isinstance(item, Task):
            out.extend(_sources(item.images))
        elif isinstance(item, TaskSource):
            out.extend(_sources(item.tasks))
        elif isinstance(item, GeneratedImage):
            out.append(
                _Source(item.path, None, item.sha256, item.task_id, item.index, _owner(item))
            )
        elif isinstance(item, (bytes, bytearray)):
            data = bytes(item)
            out.append(_Source(None, data, hashlib.sha256(data).hexdigest(), None, None))
        elif isinstance(item, (str, os.PathLike)):
            p = Path(item)
            out.append(_Source(p, None, hashlib.sha256(p.read_bytes()).hexdigest(), None, None))
        else:
            raise ConfigError(
                f"cannot post-process {type(item).__name__}; give a Batch, tasks, "
                "GeneratedImage objects, paths or bytes"
            )
    return out


@runtime_checkable
class DerivedStore(Protocol):
    """What post-processing asks of a workspace (``nbbatch.Workspace`` does all of it).

    The workspace decides where a copy goes (its ``derived/`` layout), writes it and
    journals it; this module never guesses a workspace's folder from an image's path.
    """

    @property
    def path(self) -> Path: ...

    def derived_path(self, source_sha256: str, recipe_hash: str, ext: str) -> Path: ...

    def write_derived(
        self, source_sha256: str, recipe_hash: str, ext: str, data: bytes
    ) -> tuple[Path, str]: ...

    def record_derived(self, rows: Sequence[dict[str, Any]]) -> None: ...

    def derived(
        self, source_sha256: str, recipe_hash: str | None = None
    ) -> list[dict[str, Any]]: ...


class _FolderStore:
    """Results for a plain folder that is no workspace (paths and bytes given with
    ``workspace="some/folder"``): the same ``derived/`` layout, a JSON file beside each
    copy instead of a journal row."""

    def __init__(self, root: Path) -> None:
        self.path = root

    def derived_path(self, source_sha256: str, recipe_hash: str, ext: str) -> Path:
        return self.path / "derived" / source_sha256[:2] / source_sha256 / f"{recipe_hash}.{ext}"

    def write_derived(
        self, source_sha256: str, recipe_hash: str, ext: str, data: bytes
    ) -> tuple[Path, str]:
        path = self.derived_path(source_sha256, recipe_hash, ext)
        write_atomic(path, data, fsync=False)
        return path, hashlib.sha256(data).hexdigest()

    def record_derived(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            path = self.derived_path(row["source_sha256"], row["recipe_hash"], row["ext"])
            meta = {k: v for k, v in row.items() if k not in ("path", "ext", "recipe_hash")}
            meta["file"] = path.name
            write_atomic(
                path.with_suffix(".json"), json.dumps(meta, indent=1).encode(), fsync=False
            )

    def derived(self, source_sha256: str, recipe_hash: str | None = None) -> list[dict[str, Any]]:
        folder = self.path / "derived" / source_sha256[:2] / source_sha256
        return [row for row in _sidecars(folder, recipe_hash)]


def _sidecars(folder: Path, recipe_hash: str | None = None) -> list[dict[str, Any]]:
    """The JSON files beside derived copies (a plain folder, or a workspace written by an
    older nbbatch), as rows; damaged ones and ones whose image is gone are skipped."""
    pattern = f"{recipe_hash}.json" if recipe_hash else "*.json"
    out = []
    for sidecar in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        try:
            meta = json.loads(sidecar.read_text())
            path = folder / meta["file"]
            if not path.exists():
                continue
            out.append(
                {
                    "source_sha256": meta["source_sha256"],
                    "recipe_hash": sidecar.stem,
                    "sha256": meta["sha256"],
                    "ext": path.suffix.lstrip("."),
                    "width": meta["width"],
                    "height": meta["height"],
                    "format": meta["format"],
                    "recipe": meta["recipe"],
                    "task_id": meta.get("task_id"),
                    "index": meta.get("index"),
                    "created_at": meta.get("created_at", 0.0),
                    "path": path,
                    "sidecar": sidecar,
                }
            )
        except (ValueError, KeyError, TypeError, OSError):
            continue
    return out


def _store_for(
    workspace: WorkspaceLike | DerivedStore | str | os.PathLike[str] | None,
    sources: Sequence[_Source],
) -> DerivedStore:
    """The store the results go to: the workspace given, else the one the stored images
    belong to (their batch knows it), else a plain folder given as a path."""
    if isinstance(workspace, DerivedStore):
        return workspace
    if isinstance(workspace, (str, os.PathLike)) and not isinstance(workspace, WorkspaceLike):
        return _FolderStore(Path(workspace))
    if workspace is not None:
        raise ConfigError(
            f"workspace={type(workspace).__name__} cannot keep post-processed images; pass "
            "an nbbatch.Workspace or a folder"
        )
    for s in sources:
        if isinstance(s.owner, DerivedStore):
            return s.owner
    raise ConfigError(
        "pass workspace=... to say where the results go (only images of a loaded batch "
        "find their workspace by themselves)"
    )


def _fold_sidecars(store: DerivedStore, source_sha256: str, recipe_hash: str | None) -> None:
    """Journal the copies an older nbbatch described in JSON files, once, then drop the
    files (the copies stay where they are)."""
    if isinstance(store, _FolderStore):
        return
    folder = store.derived_path(source_sha256, "x", "x").parent
    found = _sidecars(folder, recipe_hash)
    if not found:
        return
    store.record_derived(found)
    for row in found:
        with contextlib.suppress(OSError):
            row["sidecar"].unlink()


def _made(store: DerivedStore, src: _Source, recipe_hash: str) -> DerivedImage | None:
    for row in store.derived(src.sha256, recipe_hash):
        path = row.get("path") or store.derived_path(src.sha256, recipe_hash, row["ext"])
        if Path(path).exists():
            return _derived_from_row(Path(path), row)
    return None


def _process_one(
    src: _Source, pipeline: Pipeline, store: DerivedStore, limits: ImageLimits
) -> DerivedImage:
    recipe_hash = pipeline.recipe_hash
    made = _made(store, src, recipe_hash)  # same source + same recipe = same result
    if made is None:
        _fold_sidecars(store, src.sha256, recipe_hash)
        made = _made(store, src, recipe_hash)
    if made is not None:
        return made
    data, info = pipeline.run(src.read(limits), limits=limits, source_sha256=src.sha256)
    ext = _EXTS[info.format]
    path, sha = store.write_derived(src.sha256, recipe_hash, ext, data)
    row = {
        "source_sha256": src.sha256,
        "recipe_hash": recipe_hash,
        "sha256": sha,
        "ext": ext,
        "width": info.width,
        "height": info.height,
        "format": info.format,
        "recipe": pipeline.recipe(),
        "task_id": src.task_id,
        "index": src.index,
        "created_at": time.time(),
    }
    # The row goes last: its presence means the file it names is complete.
    store.record_derived([row])
    return _derived_from_row(path, row)


def _derived_from_row(path: Path, row: dict[str, Any]) -> DerivedImage:
    return DerivedImage(
        path=path,
        sha256=row["sha256"],
        source_sha256=row["source_sha256"],
        recipe=tuple(row["recipe"]),
        width=row["width"],
        height=row["height"],
        format=row["format"],
        task_id=row.get("task_id"),
        index=row.get("index"),
    )


def _as_pipeline(steps: Pipeline | Iterable[Step]) -> Pipeline:
    pipeline = steps if isinstance(steps, Pipeline) else Pipeline(steps)
    if not pipeline.steps:
        raise ConfigError("give at least one post-processing step")
    return pipeline


def postprocess(
    images: TaskSource | Task | GeneratedImage | Iterable[Any] | str | os.PathLike[str] | bytes,
    steps: Pipeline | Iterable[Step],
    *,
    workspace: WorkspaceLike | str | os.PathLike[str] | None = None,
    max_workers: int | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    progress: Callable[[int, int], None] | None = None,
) -> list[DerivedImage]:
    """Apply ``steps`` to every image; return the new files, in input order.

    ``images`` is a batch, tasks, stored images, paths or bytes. Results go to
    ``<workspace>/derived/`` (see the module docstring); stored images find their
    workspace themselves. Blocking but parallel (thread pool); from a notebook cell
    prefer ``await postprocess_async(...)``. ``progress(done, total)`` is called after
    each image (from a worker thread).
    """
    pipeline = _as_pipeline(steps)
    sources = _sources(images)
    if not sources:
        return []
    store = _store_for(workspace, sources)
    workers = max_workers or min(4, os.cpu_count() or 2)
    total = len(sources)
    counted = [0]
    lock = threading.Lock()

    def one(src: _Source) -> DerivedImage:
        made = _process_one(src, pipeline, store, limits)
        if progress is not None:
            with lock:
                counted[0] += 1
                done = counted[0]
            progress(done, total)
        return made

    if workers == 1 or total == 1:
        return [one(s) for s in sources]
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="nbbatch-post") as ex:
        return list(ex.map(one, sources))


async def postprocess_async(
    images: TaskSource | Task | GeneratedImage | Iterable[Any] | str | os.PathLike[str] | bytes,
    steps: Pipeline | Iterable[Step],
    *,
    workspace: WorkspaceLike | str | os.PathLike[str] | None = None,
    max_workers: int | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    progress: Callable[[int, int], None] | None = None,
) -> list[DerivedImage]:
    """:func:`postprocess` without blocking the event loop (for notebook cells)."""
    return await asyncio.to_thread(
        postprocess,
        images,
        steps,
        workspace=workspace,
        max_workers=max_workers,
        limits=limits,
        progress=progress,
    )


def derived_images(
    source: GeneratedImage | str,
    *,
    workspace: WorkspaceLike | str | os.PathLike[str] | None = None,
) -> list[DerivedImage]:
    """Every post-processed copy made so far of ``source`` (a stored image or its sha256)."""
    from ..core._model import GeneratedImage

    if isinstance(source, GeneratedImage):
        sha = source.sha256
        store = _store_for(workspace, [_Source(source.path, None, sha, None, None, _owner(source))])
    else:
        sha = source
        store = _store_for(workspace, [])
    _fold_sidecars(store, sha, None)
    out = []
    for row in store.derived(sha):
        path = Path(row.get("path") or store.derived_path(sha, row["recipe_hash"], row["ext"]))
        if path.exists():
            out.append(_derived_from_row(path, row))
    return out


class AutoPostprocess:
    """Post-process every image of a batch as soon as its task succeeds.

    Subscribes to the batch's events; each new image goes to a thread pool while the run
    goes on, so results are ready when the batch is. Use :func:`auto_postprocess`::

        auto = nbbatch.auto_postprocess(batch, [Resize(1024), ConvertFormat("webp")])
        await batch.run("demo")
        derived = await auto.wait_async()
        auto.close()
    """

    def __init__(
        self,
        batch: BatchLike,
        steps: Pipeline | Iterable[Step],
        *,
        max_workers: int = 2,
        limits: ImageLimits = DEFAULT_LIMITS,
    ) -> None:
        self.pipeline = _as_pipeline(steps)
        self.store = _store_for(batch.workspace, [])
        self.limits = limits
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers, thread_name_prefix="nbbatch-auto-post"
        )
        self._lock = threading.Lock()
        self._futures: list[concurrent.futures.Future[DerivedImage]] = []
        self._closed = False
        self._unsubscribe = batch.subscribe(self._on_event)

    def _on_event(self, event: object) -> None:
        if not isinstance(event, TaskSucceeded):
            return
        with self._lock:
            if self._closed:
                return
            for im in event.images:
                src = _Source(im.path, None, im.sha256, im.task_id, im.index)
                self._futures.append(
                    self._pool.submit(_process_one, src, self.pipeline, self.store, self.limits)
                )

    def wait(self, timeout: float | None = None) -> list[DerivedImage]:
        """Block until every submitted image is done; return the results in order.

        The first failure (e.g. an image the guard refuses) is raised after all finished.
        """
        with self._lock:
            futures = list(self._futures)
        concurrent.futures.wait(futures, timeout)
        return [f.result(timeout=0) for f in futures]

    async def wait_async(self, timeout: float | None = None) -> list[DerivedImage]:
        """:meth:`wait` without blocking the event loop."""
        return await asyncio.to_thread(self.wait, timeout)

    def close(self) -> None:
        """Stop following the batch and wait for the work already submitted."""
        with self._lock:
            self._closed = True
        self._unsubscribe()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> AutoPostprocess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def auto_postprocess(
    batch: BatchLike,
    steps: Pipeline | Iterable[Step],
    *,
    max_workers: int = 2,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> AutoPostprocess:
    """Post-process each image of ``batch`` as soon as it is generated (see the class)."""
    return AutoPostprocess(batch, steps, max_workers=max_workers, limits=limits)
