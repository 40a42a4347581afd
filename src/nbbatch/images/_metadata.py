"""Generation parameters inside image files: written by nbbatch, read from many tools.

Writing (:func:`embed_metadata`, called by the runner for every saved image):

* **PNG** — a ``parameters`` text chunk in AUTOMATIC1111's *infotext* format (prompt
  line(s), ``Negative prompt: …``, then ``Steps: 20, Sampler: Euler a, CFG scale: 7,
  Seed: 123, Size: 512x512, Model: …``), which A1111/Forge's PNG Info, SD.Next, Civitai
  and most image browsers read, plus an ``nbbatch`` text chunk holding nbbatch's full JSON
  record (task id, parent id, batch id, provider, params, timings). Both go right after
  ``IHDR``: tools that only read the header (Pillow's lazy ``Image.open``, hence A1111)
  see them, and the pixels are not re-encoded — the chunks are spliced into the bytes.
* **JPEG / WebP** — the infotext in EXIF ``UserComment`` (what A1111 writes for those
  formats) and the JSON record in an XMP packet. Segments/chunks are spliced in too; the
  compressed image data is copied byte for byte.
* GIF is left as it is (no widely read place for parameters).

Reading (:func:`read_generation_info`) understands nbbatch's own files, A1111/Forge
infotext (by the rules A1111's PNG Info applies, see :func:`parse_infotext`), ComfyUI's
``prompt`` / ``workflow`` JSON chunks, SwarmUI's ``sui_image_params`` JSON and
InvokeAI's ``invokeai_metadata`` JSON. It never
decodes pixels; every length read from the file is bounded. :func:`task_from_image` turns
a dropped file into a new task ("remix from file").
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import logging
import math
import os
import re
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..core._errors import ConfigError, ImageError, ImageRejectedError
from ..core._model import Params, Task
from ..core._secrets import scrub
from ._decode import DEFAULT_LIMITS, ImageInfo, ImageLimits, sniff_format

if TYPE_CHECKING:
    from ..core._model import GeneratedImage

__all__ = [
    "GenerationInfo",
    "embed_metadata",
    "format_infotext",
    "generation_record",
    "parse_infotext",
    "read_generation_info",
    "task_from_image",
]

log = logging.getLogger("nbbatch")

RECORD_FORMAT = "nbbatch/1"
#: PNG text keyword / XMP property holding nbbatch's JSON record.
RECORD_KEY = "nbbatch"
#: PNG text keyword of the A1111 infotext.
INFOTEXT_KEY = "parameters"

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# Bounds for untrusted metadata (Pillow uses 1 MB per text chunk and 64 MB in total;
# generation parameters are a few KB, ComfyUI workflows a few hundred KB).
_MAX_TEXT_CHUNK = 4 * 1024 * 1024
_MAX_TEXT_TOTAL = 16 * 1024 * 1024
# A JPEG segment holds at most 65,535 bytes including its 2-byte length.
_MAX_SEGMENT = 65_533
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_EXIF_HEADER = b"Exif\x00\x00"
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_XMP_NS = "urn:nbbatch:xmp:1"


# --------------------------------------------------------------------------- model
@dataclass(frozen=True)
class GenerationInfo:
    """Generation parameters found in an image file.

    ``source`` says who wrote them: ``"nbbatch"``, ``"a1111"`` (also Forge / SD.Next
    infotext), ``"comfyui"``, ``"swarmui"``, ``"invokeai"`` or ``"none"`` when the file
    carries none.
    ``extras`` holds every other key the writer recorded (e.g. ``"Schedule type"``);
    ``record`` is nbbatch's full JSON record when present; ``raw`` maps each metadata
    field found (PNG keyword, ``"UserComment"``, ``"XMP"``) to its text.
    """

    source: str = "none"
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    model: str | None = None
    width: int | None = None
    height: int | None = None
    strength: float | None = None
    provider: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    record: Mapping[str, Any] | None = None
    raw: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.prompt is not None

    def to_params(self) -> Params:
        """The fields nbbatch understands, as :class:`Params`; out-of-range values dropped."""
        if self.record is not None:
            try:
                params = Params.from_dict(self.record.get("params") or {})
            except (ConfigError, TypeError):
                params = Params()
            seed = self.seed if _valid_seed(self.seed) else params.seed
            if _server_infotext(self.record) is not None:
                # the service's own account of the image wins over what was asked
                server = GenerationInfo(
                    sampler=self.sampler, model=self.model, steps=self.steps,
                    cfg_scale=self.cfg_scale, width=self.width, height=self.height,
                ).to_params()  # fmt: skip
                changes = {
                    k: getattr(server, k)
                    for k in ("sampler", "model", "steps", "cfg_scale", "size")
                    if getattr(server, k) is not None
                }
                params = params.replace(**changes)
            return params.replace(seed=seed, n=1)
        size = None
        if self.width and self.height and 0 < self.width < 100_000 and 0 < self.height < 100_000:
            size = f"{self.width}x{self.height}"
        return Params(
            size=size,
            seed=self.seed if _valid_seed(self.seed) else None,
            steps=self.steps if self.steps is not None and 1 <= self.steps <= 1000 else None,
            cfg_scale=self.cfg_scale,
            negative_prompt=self.negative_prompt or None,
            sampler=self.sampler,
            strength=(
                self.strength if self.strength is not None and 0 <= self.strength <= 1 else None
            ),
            model=self.model,
        )

    def to_task(self, *, keep_seed: bool = True, provider: str | None = None) -> Task:
        """A new (idle) task that regenerates this image; ``keep_seed=False`` re-rolls it.

        The task is not pinned to the provider that made the image (``self.provider``)
        unless ``provider`` is given: it runs on whatever provider the batch runs with.
        """
        if not self.prompt:
            raise ImageError(
                f"the image carries no prompt (metadata source: {self.source}); nothing to "
                "remix. Images saved by chat apps and social sites usually lost it."
            )
        params = self.to_params()
        if not keep_seed:
            params = params.replace(seed=None)
        parent = None
        original = None
        if self.record is not None:
            parent = _str_or_none(self.record.get("task_id"))
            original = _str_or_none(self.record.get("original_prompt"))
        return Task(
            prompt=self.prompt,
            params=params,
            provider=provider,
            parent_id=parent,
            original_prompt=original,
        )


def _valid_seed(seed: int | None) -> bool:
    return seed is not None and 0 <= seed < 2**63


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --------------------------------------------------------------------------- records
def generation_record(
    task: Task,
    *,
    provider: str,
    seed: int | None,
    index: int = 0,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """nbbatch's JSON record for one image of ``task`` (what :func:`embed_metadata` writes)."""
    params = task.params.to_dict()
    params.pop("n", None)  # one file is one image
    record: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "task_id": task.id,
        "parent_id": task.parent_id,
        "batch_id": task.batch_id,
        "image_index": index,
        "prompt": task.prompt,
        "original_prompt": task.original_prompt,
        "negative_prompt": task.params.negative_prompt,
        "seed": seed,
        "provider": provider,
        "params": params,
        "references": [r.to_dict() for r in task.references],
        "attempts": task.attempts,
        "timings": {
            "created_at": task.created_at,
            "started_at": task.started_at,
            "saved_at": time.time(),
        },
    }
    if info:
        record["info"] = dict(info)
    return record


def _quote(value: str) -> str:
    # A value with a comma, colon, quote or newline would break the `key: value, …` line;
    # A1111 writes such values as JSON strings and unquotes them when parsing.
    if any(c in value for c in ',:"\n\r'):
        return json.dumps(value, ensure_ascii=False)
    return value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def format_infotext(
    prompt: str,
    negative_prompt: str | None = None,
    fields: Mapping[str, object] | None = None,
) -> str:
    """A1111 infotext: prompt, optional ``Negative prompt:`` line, ``key: value`` line."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    parts = []
    for key, value in (fields or {}).items():
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            text = str(value)
        elif isinstance(value, (int, float)):
            text = _num(value)
        else:
            text = _quote(str(value))
        parts.append(f"{key}: {text}")
    if parts:
        lines.append(", ".join(parts))
    return "\n".join(lines)


def _server_infotext(record: Mapping[str, Any]) -> str | None:
    """The infotext the service itself wrote for the image (A1111 / Forge), if any."""
    info = record.get("info")
    text = info.get("infotext") if isinstance(info, Mapping) else None
    return text if isinstance(text, str) and text.strip() else None


def _record_infotext(record: Mapping[str, Any], info: ImageInfo) -> str:
    server = _server_infotext(record)
    if server is not None:
        return server  # what really produced the image; the record keeps what was asked
    params = record.get("params") or {}
    from ..core._version import __version__

    fields: dict[str, object] = {
        "Steps": params.get("steps"),
        "Sampler": params.get("sampler"),
        "CFG scale": params.get("cfg_scale"),
        "Seed": record.get("seed"),
        "Size": f"{info.width}x{info.height}",
        "Model": params.get("model"),
        "Denoising strength": params.get("strength"),
        "Provider": record.get("provider"),
        # Always at least three fields (Size, Provider, Version): A1111's parser only
        # treats the last line as parameters when it holds three or more.
        "Version": f"nbbatch {__version__}",
    }
    return format_infotext(
        str(record.get("prompt") or ""), record.get("negative_prompt") or None, fields
    )


# --------------------------------------------------------------------------- writing
def embed_metadata(data: bytes, info: ImageInfo, record: Mapping[str, Any]) -> bytes:
    """Return ``data`` with the infotext and the JSON ``record`` embedded.

    Pixels are never re-encoded. Any existing ``parameters``/``nbbatch`` PNG chunk, EXIF
    ``UserComment`` and XMP packet is replaced; everything else the file carried is kept.
    A file whose container cannot be parsed is returned unchanged (logged): metadata
    must never cost a generated image.
    """
    # Files get shared: a key that leaked into a provider's info dict must not travel.
    infotext = scrub(_record_infotext(record, info))
    payload = scrub(json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str))
    try:
        if info.format == "PNG":
            return _png_embed(data, {INFOTEXT_KEY: infotext, RECORD_KEY: payload})
        if info.format == "JPEG":
            return _jpeg_embed(data, infotext, payload)
        if info.format == "WEBP":
            return _webp_embed(data, info, infotext, payload)
    except (_ContainerError, ValueError, struct.error, IndexError, KeyError, TypeError) as exc:
        log.warning("could not embed generation metadata in a %s: %s", info.format, exc)
    return data


class _ContainerError(ValueError):
    """The file's container structure (chunks / segments) is not what it should be."""


# PNG ------------------------------------------------------------------------
def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, start offset of the chunk, end offset after its CRC) for each chunk."""
    if not data.startswith(_PNG_SIG):
        raise _ContainerError("not a PNG")
    pos = len(_PNG_SIG)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise _ContainerError("PNG chunk runs past the end of the file")
        yield ctype, pos, end
        if ctype == b"IEND":
            return
        pos = end
    raise _ContainerError("PNG has no IEND chunk")


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def _png_text_chunk(key: str, text: str) -> bytes:
    keyword = key.encode("latin-1")
    try:
        return _png_chunk(b"tEXt", keyword + b"\x00" + text.encode("latin-1"))
    except UnicodeEncodeError:
        # iTXt: keyword, NUL, compression flag 0, method 0, empty language, NUL,
        # empty translated keyword, NUL, UTF-8 text.
        return _png_chunk(b"iTXt", keyword + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))


def _png_text_key(data: bytes, start: int, end: int) -> str | None:
    body = data[start + 8 : end - 4]
    nul = body.find(b"\x00", 0, 80)
    return body[:nul].decode("latin-1") if nul > 0 else None


def _png_embed(data: bytes, texts: Mapping[str, str]) -> bytes:
    out = bytearray()
    inserted = False
    last = 0
    for ctype, start, end in _png_chunks(data):
        if ctype in (b"tEXt", b"iTXt", b"zTXt") and _png_text_key(data, start, end) in texts:
            out += data[last:start]  # drop the stale chunk
            last = end
            continue
        if ctype == b"IHDR":
            out += data[last:end]
            last = end
            for key, text in texts.items():
                out += _png_text_chunk(key, text)
            inserted = True
    if not inserted:
        raise _ContainerError("PNG has no IHDR chunk")
    out += data[last:]
    return bytes(out)


# EXIF / XMP -------------------------------------------------------------------
def _user_comment(text: str) -> bytes:
    # EXIF 2.3 UserComment: 8-byte character-code prefix, then the text. "UNICODE" means
    # UCS-2/UTF-16; big-endian is what piexif (used by A1111) writes and reads.
    return b"UNICODE\x00" + text.encode("utf-16-be")


def _decode_user_comment(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw.strip("\x00")
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\x00":
        if body.startswith((b"\xfe\xff", b"\xff\xfe")):
            return body.decode("utf-16", "replace")
        # No BOM: guess the byte order from where the zero bytes of ASCII text fall.
        even_zeros = body[0::2].count(0)
        odd_zeros = body[1::2].count(0)
        return body.decode("utf-16-le" if odd_zeros > even_zeros else "utf-16-be", "replace")
    if prefix in (b"ASCII\x00\x00\x00", b"\x00" * 8):
        return body.decode("utf-8", "replace").strip("\x00")
    return raw.decode("utf-8", "replace").strip("\x00")


def _exif_bytes(existing: bytes | None, comment: str) -> bytes:
    exif = Image.Exif()
    if existing:
        try:
            exif.load(existing)
            exif.get_ifd(_EXIF_IFD)
        except (OSError, ValueError, SyntaxError, struct.error, KeyError, TypeError, UserWarning):
            exif = Image.Exif()  # unreadable: replace rather than fail
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _user_comment(comment)
    out: bytes = exif.tobytes()
    return out if out.startswith(_EXIF_HEADER) else _EXIF_HEADER + out


def _xmp_packet(infotext: str, record_json: str) -> bytes:
    esc = html.escape
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
        f'xmlns:nbbatch="{_XMP_NS}">'
        "<exif:UserComment><rdf:Alt>"
        f'<rdf:li xml:lang="x-default">{esc(infotext, quote=False)}</rdf:li>'
        "</rdf:Alt></exif:UserComment>"
        f"<nbbatch:record>{esc(record_json, quote=False)}</nbbatch:record>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()


_XMP_RECORD = re.compile(r"<nbbatch:record>(.*?)</nbbatch:record>", re.S)
_XMP_COMMENT = re.compile(r"<exif:UserComment>\s*<rdf:Alt>\s*<rdf:li[^>]*>(.*?)</rdf:li>", re.S)


# JPEG -------------------------------------------------------------------------
def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each header segment, up to (excluding) start of scan."""
    if not data.startswith(b"\xff\xd8"):
        raise _ContainerError("not a JPEG")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise _ContainerError(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan / end of image
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise _ContainerError("JPEG segment runs past the end of the file")
        yield marker, pos, end
        pos = end
    raise _ContainerError("JPEG has no image data")


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_embed(data: bytes, infotext: str, record_json: str) -> bytes:
    existing_exif: bytes | None = None
    keep: list[tuple[int, int]] = []
    insert_at = 2
    last_end = 2
    for marker, start, end in _jpeg_segments(data):
        payload = data[start + 4 : end]
        if marker == 0xE1 and payload.startswith(_EXIF_HEADER):
            existing_exif = payload
        elif marker == 0xE1 and payload.startswith(_XMP_HEADER):
            pass
        else:
            keep.append((start, end))
            if marker == 0xE0 and insert_at == start:  # JFIF/JFXX APP0 must stay first
                insert_at = end
        last_end = end
    new_segments = b""
    exif = _exif_bytes(existing_exif, infotext)
    if len(exif) <= _MAX_SEGMENT:
        new_segments += _jpeg_segment(0xE1, exif)
    else:
        log.warning("generation parameters too long for JPEG EXIF (%d bytes); skipped", len(exif))
    xmp = _XMP_HEADER + _xmp_packet(infotext, record_json)
    if len(xmp) <= _MAX_SEGMENT:
        new_segments += _jpeg_segment(0xE1, xmp)
    else:
        log.warning(
            "nbbatch record too long for one JPEG XMP segment (%d bytes); skipped", len(xmp)
        )
    out = bytearray(data[:2])
    placed = insert_at == 2
    if placed:
        out += new_segments
    for start, end in keep:
        out += data[start:end]
        if not placed and end == insert_at:
            out += new_segments
            placed = True
    out += data[last_end:]
    return bytes(out)


# WebP -------------------------------------------------------------------------
def _webp_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(fourcc, start, end incl. padding) of each RIFF chunk."""
    if not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        raise _ContainerError("not a WebP")
    (riff_size,) = struct.unpack("<I", data[4:8])
    limit = min(len(data), riff_size + 8)
    pos = 12
    while pos + 8 <= limit:
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        end = pos + 8 + size + (size & 1)
        if pos + 8 + size > limit:
            raise _ContainerError("WebP chunk runs past the end of the file")
        yield fourcc, pos, min(end, limit)
        pos = end


def _riff_chunk(fourcc: bytes, payload: bytes) -> bytes:
    pad = b"\x00" if len(payload) & 1 else b""
    return fourcc + struct.pack("<I", len(payload)) + payload + pad


def _webp_has_alpha(data: bytes, chunks: list[tuple[bytes, int, int]]) -> bool:
    for fourcc, start, _end in chunks:
        if fourcc == b"ALPH":
            return True
        if fourcc == b"VP8L" and len(data) >= start + 13:
            # VP8L header: signature 0x2f, then 14+14 bits of size, then the alpha bit.
            (bits,) = struct.unpack("<I", data[start + 9 : start + 13])
            return bool((bits >> 28) & 1)
    return False


def _webp_embed(data: bytes, info: ImageInfo, infotext: str, record_json: str) -> bytes:
    chunks = list(_webp_chunks(data))
    if not chunks:
        raise _ContainerError("WebP has no chunks")
    exif_existing: bytes | None = None
    body = bytearray()
    vp8x: bytearray | None = None
    for fourcc, start, end in chunks:
        if fourcc == b"VP8X":
            vp8x = bytearray(data[start + 8 : start + 18])
        elif fourcc == b"EXIF":
            (size,) = struct.unpack("<I", data[start + 4 : start + 8])
            exif_existing = data[start + 8 : start + 8 + size]
        elif fourcc != b"XMP ":
            body += data[start:end]
    if vp8x is None or len(vp8x) < 10:
        # Simple (lossy or lossless) WebP: extended metadata needs a VP8X header.
        vp8x = bytearray(10)
        if _webp_has_alpha(data, chunks):
            vp8x[0] |= 0x10
        w, h = info.width - 1, info.height - 1
        vp8x[4:7] = w.to_bytes(3, "little")
        vp8x[7:10] = h.to_bytes(3, "little")
    vp8x[0] |= 0x08 | 0x04  # EXIF and XMP present
    if exif_existing is not None and not exif_existing.startswith(_EXIF_HEADER):
        exif_existing = _EXIF_HEADER + exif_existing
    exif = _exif_bytes(exif_existing, infotext)[len(_EXIF_HEADER) :]  # WebP: bare TIFF
    xmp = _xmp_packet(infotext, record_json)
    chunks_out = _riff_chunk(b"VP8X", bytes(vp8x)) + body
    chunks_out += _riff_chunk(b"EXIF", exif) + _riff_chunk(b"XMP ", xmp)
    return b"RIFF" + struct.pack("<I", len(chunks_out) + 4) + b"WEBP" + bytes(chunks_out)


# --------------------------------------------------------------------------- reading
def _bounded_inflate(blob: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(blob, _MAX_TEXT_CHUNK)
    if inflater.unconsumed_tail:
        raise _ContainerError("compressed text chunk is larger than the limit")
    return out


def _png_texts(data: bytes) -> dict[str, str]:
    texts: dict[str, str] = {}
    total = 0
    for ctype, start, end in _png_chunks(data):
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        body = data[start + 8 : end - 4]
        if len(body) > _MAX_TEXT_CHUNK:
            continue
        key_b, sep, rest = body.partition(b"\x00")
        if not sep or not key_b:
            continue
        key = key_b.decode("latin-1")
        try:
            if ctype == b"tEXt":
                text = rest.decode("latin-1")
            elif ctype == b"zTXt":
                text = _bounded_inflate(rest[1:]).decode("latin-1")
            else:
                flag = rest[0]
                lang_end = rest.index(b"\x00", 2)
                trans_end = rest.index(b"\x00", lang_end + 1)
                raw = rest[trans_end + 1 :]
                text = (_bounded_inflate(raw) if flag else raw).decode("utf-8", "replace")
        except (IndexError, ValueError, zlib.error):
            continue
        total += len(text)
        if total > _MAX_TEXT_TOTAL:
            break
        texts.setdefault(key, text)
    return texts


def _exif_comment(exif_payload: bytes) -> str | None:
    exif = Image.Exif()
    # Pillow reports corrupt EXIF with a UserWarning; it is an exception only where the
    # app turned warnings into errors (no catch_warnings: it is not thread-safe).
    try:
        exif.load(exif_payload)
        raw = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except (OSError, ValueError, SyntaxError, struct.error, KeyError, TypeError, UserWarning):
        return None
    if isinstance(raw, (bytes, str)) and raw:
        return _decode_user_comment(raw) or None
    return None


def _jpeg_texts(data: bytes) -> dict[str, str]:
    texts: dict[str, str] = {}
    for marker, start, end in _jpeg_segments(data):
        payload = data[start + 4 : end]
        if marker == 0xE1 and payload.startswith(_EXIF_HEADER):
            comment = _exif_comment(payload)
            if comment:
                texts.setdefault("UserComment", comment)
        elif marker == 0xE1 and payload.startswith(_XMP_HEADER):
            texts.setdefault("XMP", payload[len(_XMP_HEADER) :].decode("utf-8", "replace"))
        elif marker == 0xFE:
            texts.setdefault("Comment", payload.decode("utf-8", "replace"))
    return texts


def _webp_texts(data: bytes) -> dict[str, str]:
    texts: dict[str, str] = {}
    for fourcc, start, _end in _webp_chunks(data):
        (size,) = struct.unpack("<I", data[start + 4 : start + 8])
        payload = data[start + 8 : start + 8 + size]
        if fourcc == b"EXIF":
            comment = _exif_comment(
                payload if payload.startswith(_EXIF_HEADER) else _EXIF_HEADER + payload
            )
            if comment:
                texts.setdefault("UserComment", comment)
        elif fourcc == b"XMP ":
            texts.setdefault("XMP", payload.decode("utf-8", "replace"))
    return texts


def read_generation_info(
    source: bytes | str | os.PathLike[str] | GeneratedImage,
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> GenerationInfo:
    """Generation parameters embedded in an image (path, bytes or ``GeneratedImage``).

    Returns ``GenerationInfo(source="none")`` (falsy) when the file carries none; raises
    :class:`ImageRejectedError` for files that are too large or not PNG/JPEG/WebP/GIF.
    """
    data = _read_capped(source, limits)
    fmt = sniff_format(data)
    if fmt is None or fmt not in limits.formats:
        raise ImageRejectedError(
            f"{fmt or 'unknown data'} is not an accepted image format; accepted: "
            f"{', '.join(limits.formats)}",
            reason="format",
        )
    try:
        if fmt == "PNG":
            texts = _png_texts(data)
        elif fmt == "JPEG":
            texts = _jpeg_texts(data)
        elif fmt == "WEBP":
            texts = _webp_texts(data)
        else:
            texts = {}
    except _ContainerError as exc:
        raise ImageRejectedError(
            f"{fmt} file structure is damaged: {exc}", reason="corrupt"
        ) from None
    return parse_texts(texts)


def _read_capped(
    source: bytes | str | os.PathLike[str] | GeneratedImage, limits: ImageLimits
) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source.path) if hasattr(source, "path") else Path(source)
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageRejectedError(
                f"{path.name}: file is {size / 1e6:.1f} MB; the limit is "
                f"{limits.max_bytes / 1e6:.1f} MB",
                reason="too_many_bytes",
                limit=limits.max_bytes,
                actual=size,
            )
        data = path.read_bytes()
    if len(data) > limits.max_bytes:
        raise ImageRejectedError(
            f"image is {len(data) / 1e6:.1f} MB; the limit is {limits.max_bytes / 1e6:.1f} MB",
            reason="too_many_bytes",
            limit=limits.max_bytes,
            actual=len(data),
        )
    return data


def parse_texts(texts: Mapping[str, str]) -> GenerationInfo:
    """Interpret metadata fields (PNG keywords, ``UserComment``, ``XMP``) by who wrote them."""
    raw = dict(texts)
    record = _load_record(raw.get(RECORD_KEY))
    xmp = raw.get("XMP")
    if record is None and xmp:
        m = _XMP_RECORD.search(xmp)
        if m:
            record = _load_record(html.unescape(m.group(1)))
    if record is not None:
        return _from_record(record, raw)
    # Infotext: PNG "parameters", else EXIF UserComment, else the XMP copy, else a JPEG
    # comment (some converters move it there).
    infotext = raw.get(INFOTEXT_KEY) or raw.get("UserComment")
    if not infotext and xmp:
        m = _XMP_COMMENT.search(xmp)
        if m:
            infotext = html.unescape(m.group(1))
    for candidate in (infotext, raw.get("Comment")):
        if not candidate:
            continue
        stripped = candidate.strip()
        if stripped.startswith("{"):
            swarm = _from_swarm(stripped, raw)
            if swarm is not None:
                return swarm
            continue
        return dataclasses.replace(parse_infotext(candidate), raw=raw)
    invoke = _from_invoke(raw)
    if invoke is not None:
        return invoke
    if "prompt" in raw or "workflow" in raw:
        comfy = _from_comfy(raw)
        if comfy is not None:
            return comfy
    return GenerationInfo(raw=raw)


def _load_record(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if isinstance(record, dict) and str(record.get("format", "")).startswith("nbbatch/"):
        return record
    return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                return _as_int(float(value))
            except ValueError:
                return None
    return None


def _as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, str):
        try:
            return _as_float(float(value.strip()))
        except ValueError:
            return None
    return None


def _as_str(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _from_record(record: dict[str, Any], raw: dict[str, str]) -> GenerationInfo:
    params = record.get("params") if isinstance(record.get("params"), dict) else {}
    assert isinstance(params, dict)
    dims = _parse_size(str(params.get("size") or ""))
    if dims is None:
        # No size was asked for: the infotext written alongside has the actual one.
        text = raw.get(INFOTEXT_KEY) or raw.get("UserComment")
        if text:
            found = parse_infotext(text)
            if found.width and found.height:
                dims = (found.width, found.height)
    found = GenerationInfo(
        source="nbbatch",
        prompt=_as_str(record.get("prompt")),
        negative_prompt=_as_str(record.get("negative_prompt")),
        seed=_as_int(record.get("seed")),
        steps=_as_int(params.get("steps")),
        cfg_scale=_as_float(params.get("cfg_scale")),
        sampler=_as_str(params.get("sampler")),
        model=_as_str(params.get("model")),
        width=dims[0] if dims else None,
        height=dims[1] if dims else None,
        strength=_as_float(params.get("strength")),
        provider=_as_str(record.get("provider")),
        extras={k: v for k, v in params.items() if k == "extras"},
        record=record,
        raw=raw,
    )
    server = _server_infotext(record)
    if server is None:
        return found
    # The service wrote what it really did (sampler it fell back to, checkpoint, size it
    # rendered): that describes the image; the record beside it keeps what was asked.
    truth = parse_infotext(server)
    return dataclasses.replace(
        found,
        **{
            k: getattr(truth, k)
            for k in ("seed", "steps", "cfg_scale", "sampler", "model", "width", "height")
            if getattr(truth, k) is not None
        },
        extras={**truth.extras, **found.extras},
    )


# A1111 infotext --------------------------------------------------------------
#: One ``key: value`` pair of the last line: a key starts with a word character and may
#: hold spaces, dashes and slashes; a value is a JSON-quoted string or runs to the comma.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def _parse_size(text: str) -> tuple[int, int] | None:
    m = _SIZE_RE.match(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_infotext(text: str) -> GenerationInfo:
    """Parse A1111/Forge infotext by the rules of A1111's PNG Info.

    * The last line holds the ``key: value`` pairs — but only when it has at least three
      of them; otherwise it is part of the prompt.
    * Lines before it are the prompt, until a line starting ``Negative prompt:``; that
      line (minus the label) and every line after it are the negative prompt.
    * Values in double quotes are JSON strings (they may contain commas and newlines).
    """
    lines = text.strip().split("\n")
    last = lines[-1]
    pairs = _PARAM_RE.findall(last)
    if len(pairs) < 3:
        pairs = []
        body = lines
    else:
        body = lines[:-1]
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in body:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    fields: dict[str, str] = {}
    for key, value in pairs:
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            with contextlib.suppress(ValueError):
                value = str(json.loads(value))
        fields[key.strip()] = value
    dims = _parse_size(fields.pop("Size", ""))
    known = {
        "Steps",
        "Sampler",
        "CFG scale",
        "Seed",
        "Model",
        "Denoising strength",
        "Provider",
    }
    return GenerationInfo(
        source="a1111",
        prompt="\n".join(prompt_lines),
        negative_prompt="\n".join(negative_lines) if in_negative else None,
        seed=_as_int(fields.get("Seed")),
        steps=_as_int(fields.get("Steps")),
        cfg_scale=_as_float(fields.get("CFG scale")),
        sampler=fields.get("Sampler") or None,
        model=fields.get("Model") or None,
        width=dims[0] if dims else None,
        height=dims[1] if dims else None,
        strength=_as_float(fields.get("Denoising strength")),
        provider=fields.get("Provider") or None,
        extras={k: v for k, v in fields.items() if k not in known},
        raw={INFOTEXT_KEY: text},
    )


# SwarmUI -------------------------------------------------------------------------
def _from_swarm(text: str, raw: dict[str, str]) -> GenerationInfo | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    params = doc.get("sui_image_params") if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        return None
    known = {"prompt", "negativeprompt", "seed", "steps", "cfgscale", "sampler", "model"}
    known |= {"width", "height", "initimagecreativity"}
    creativity = _as_float(params.get("initimagecreativity"))
    return GenerationInfo(
        source="swarmui",
        prompt=_as_str(params.get("prompt")),
        negative_prompt=_as_str(params.get("negativeprompt")),
        seed=_as_int(params.get("seed")),
        steps=_as_int(params.get("steps")),
        cfg_scale=_as_float(params.get("cfgscale")),
        sampler=_as_str(params.get("sampler")),
        model=_as_str(params.get("model")),
        width=_as_int(params.get("width")),
        height=_as_int(params.get("height")),
        strength=creativity,
        extras={k: v for k, v in params.items() if k not in known},
        raw=raw,
    )


# InvokeAI ------------------------------------------------------------------------
def _from_invoke(raw: dict[str, str]) -> GenerationInfo | None:
    """InvokeAI's ``invokeai_metadata`` PNG chunk: one flat JSON object."""
    doc = _json_obj(raw.get("invokeai_metadata"))
    if doc is None:
        return None
    model = doc.get("model")
    model_name = (
        (model.get("name") or model.get("model_name")) if isinstance(model, dict) else model
    )
    known = {"positive_prompt", "negative_prompt", "seed", "steps", "cfg_scale", "scheduler"}
    known |= {"width", "height", "model", "strength"}
    return GenerationInfo(
        source="invokeai",
        prompt=_as_str(doc.get("positive_prompt")),
        negative_prompt=_as_str(doc.get("negative_prompt")),
        seed=_as_int(doc.get("seed")),
        steps=_as_int(doc.get("steps")),
        cfg_scale=_as_float(doc.get("cfg_scale")),
        sampler=_as_str(doc.get("scheduler")),
        model=_as_str(model_name),
        width=_as_int(doc.get("width")),
        height=_as_int(doc.get("height")),
        strength=_as_float(doc.get("strength")),
        extras={k: v for k, v in doc.items() if k not in known},
        raw=raw,
    )


# ComfyUI -------------------------------------------------------------------------
_SAMPLER_HINTS = ("KSampler", "SamplerCustom")
_MAX_HOPS = 8


def _from_comfy(raw: dict[str, str]) -> GenerationInfo | None:
    graph = _json_obj(raw.get("prompt"))
    if graph:
        found = _comfy_api_graph(graph)
        if found is not None:
            return dataclasses.replace(found, raw=raw)
    workflow = _json_obj(raw.get("workflow"))
    if workflow:
        found = _comfy_workflow(workflow)
        if found is not None:
            return dataclasses.replace(found, raw=raw)
    return None


def _json_obj(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _comfy_api_graph(graph: dict[str, Any]) -> GenerationInfo | None:
    """The executable ``prompt`` graph: ``{node_id: {class_type, inputs}}``."""
    nodes = {k: v for k, v in graph.items() if isinstance(v, dict)}
    samplers = [
        n
        for n in nodes.values()
        if any(h in str(n.get("class_type", "")) for h in _SAMPLER_HINTS)
        and isinstance(n.get("inputs"), dict)
    ]
    if not samplers:
        return None
    inputs: dict[str, Any] = samplers[0]["inputs"]

    def follow(link: object, want: tuple[str, ...]) -> Any:
        # Inputs are either literal values or links [node_id, output_index]; walk links
        # (through LoRA loaders, reroutes, primitive nodes) a bounded number of hops.
        for _ in range(_MAX_HOPS):
            if not (isinstance(link, list) and len(link) == 2):
                return link
            node = nodes.get(str(link[0]))
            if node is None or not isinstance(node.get("inputs"), dict):
                return None
            node_inputs = node["inputs"]
            for name in want:
                if name in node_inputs:
                    link = node_inputs[name]
                    break
            else:
                return None
        return None

    # Conditioning may pass through ControlNet / combine nodes that carry both a
    # positive and a negative input: follow the side we are looking for.
    text_keys = ("text", "text_g", "prompt", "string", "value", "conditioning")
    positive = follow(inputs.get("positive"), (*text_keys, "positive", "conditioning_1"))
    negative = follow(inputs.get("negative"), (*text_keys, "negative", "conditioning_1"))
    model = follow(inputs.get("model"), ("ckpt_name", "unet_name", "model_name", "model"))
    latent = inputs.get("latent_image")
    width = height = None
    if isinstance(latent, list) and len(latent) == 2:
        node = nodes.get(str(latent[0]))
        if node is not None and isinstance(node.get("inputs"), dict):
            width = _as_int(follow(node["inputs"].get("width"), ("value",)))
            height = _as_int(follow(node["inputs"].get("height"), ("value",)))
    seed = inputs.get("seed", inputs.get("noise_seed"))
    return GenerationInfo(
        source="comfyui",
        prompt=_as_str(positive),
        negative_prompt=_as_str(negative),
        seed=_as_int(follow(seed, ("seed", "value", "noise_seed"))),
        steps=_as_int(follow(inputs.get("steps"), ("value", "steps"))),
        cfg_scale=_as_float(follow(inputs.get("cfg"), ("value", "cfg"))),
        sampler=_as_str(follow(inputs.get("sampler_name"), ("value", "sampler_name"))),
        model=_as_str(model),
        width=width,
        height=height,
        strength=_as_float(inputs.get("denoise")),
        extras={"scheduler": inputs["scheduler"]}
        if isinstance(inputs.get("scheduler"), str)
        else {},
    )


def _comfy_workflow(workflow: dict[str, Any]) -> GenerationInfo | None:
    """The UI ``workflow`` graph: nodes with ``widgets_values`` and a ``links`` table."""
    nodes_list = workflow.get("nodes")
    links_list = workflow.get("links")
    if not isinstance(nodes_list, list):
        return None
    nodes = {n.get("id"): n for n in nodes_list if isinstance(n, dict)}
    origin: dict[Any, Any] = {}
    for link in links_list if isinstance(links_list, list) else []:
        if isinstance(link, list) and len(link) >= 3:
            origin[link[0]] = link[1]
    sampler = next(
        (n for n in nodes.values() if any(h in str(n.get("type", "")) for h in _SAMPLER_HINTS)),
        None,
    )
    if sampler is None:
        return None

    def source_text(input_name: str) -> str | None:
        for inp in sampler.get("inputs") or []:
            if isinstance(inp, dict) and inp.get("name") == input_name:
                node = nodes.get(origin.get(inp.get("link")))
                values = node.get("widgets_values") if node else None
                if isinstance(values, list) and values and isinstance(values[0], str):
                    return values[0]
        return None

    values = sampler.get("widgets_values")
    values = values if isinstance(values, list) else []
    # KSampler widgets: seed, control_after_generate, steps, cfg, sampler, scheduler, denoise
    pick = dict(enumerate(values))
    return GenerationInfo(
        source="comfyui",
        prompt=source_text("positive"),
        negative_prompt=source_text("negative"),
        seed=_as_int(pick.get(0)),
        steps=_as_int(pick.get(2)),
        cfg_scale=_as_float(pick.get(3)),
        sampler=_as_str(pick.get(4)),
        strength=_as_float(pick.get(6)),
    )


# --------------------------------------------------------------------------- remix
def task_from_image(
    source: bytes | str | os.PathLike[str] | GeneratedImage,
    *,
    keep_seed: bool = True,
    provider: str | None = None,
) -> Task:
    """A new task that regenerates the image in ``source`` ("remix from file").

    Reads nbbatch, A1111/Forge, ComfyUI and SwarmUI metadata; raises :class:`ImageError`
    when the file carries no prompt. Images made by nbbatch keep their lineage: the new
    task's ``parent_id`` is the task that made the image.
    """
    return read_generation_info(source).to_task(keep_seed=keep_seed, provider=provider)
