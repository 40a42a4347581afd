"""Image containers at the byte level: where metadata lives in PNG, JPEG, WebP, EXIF, XMP.

This module splices text into a file and reads it back without decoding pixels; what
the text *means* (A1111 infotext, nbbatch's record, ComfyUI graphs, ...) is
``_metadata``'s job. Every length read from a file is bounded.

* PNG — ``tEXt`` / ``zTXt`` / ``iTXt`` chunks, written right after ``IHDR``;
* JPEG — an EXIF ``APP1`` segment (``UserComment``) and an XMP ``APP1`` packet;
* WebP — ``EXIF`` and ``XMP `` RIFF chunks (turning a simple file into ``VP8X``).

:func:`embed_texts` writes, :func:`read_texts` reads (a ``{keyword: text}`` dict: PNG
keywords, ``UserComment``, ``XMP``, ``Comment``), :func:`xmp_fields` reads nbbatch's XMP
packet back. A broken structure raises :class:`ContainerError`.
"""

from __future__ import annotations

import html
import logging
import re
import struct
import zlib
from collections.abc import Iterator, Mapping

from PIL import Image

from ._decode import ImageInfo

__all__ = [
    "INFOTEXT_KEY",
    "RECORD_KEY",
    "ContainerError",
    "embed_texts",
    "read_texts",
    "xmp_fields",
]

log = logging.getLogger("nbbatch")

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


class ContainerError(ValueError):
    """The file's container structure (chunks / segments) is not what it should be."""


# PNG ------------------------------------------------------------------------
def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, start offset of the chunk, end offset after its CRC) for each chunk."""
    if not data.startswith(_PNG_SIG):
        raise ContainerError("not a PNG")
    pos = len(_PNG_SIG)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ContainerError("PNG chunk runs past the end of the file")
        yield ctype, pos, end
        if ctype == b"IEND":
            return
        pos = end
    raise ContainerError("PNG has no IEND chunk")


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
        raise ContainerError("PNG has no IHDR chunk")
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
        raise ContainerError("not a JPEG")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ContainerError(f"JPEG marker expected at byte {pos}")
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
            raise ContainerError("JPEG segment runs past the end of the file")
        yield marker, pos, end
        pos = end
    raise ContainerError("JPEG has no image data")


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
        raise ContainerError("not a WebP")
    (riff_size,) = struct.unpack("<I", data[4:8])
    limit = min(len(data), riff_size + 8)
    pos = 12
    while pos + 8 <= limit:
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        end = pos + 8 + size + (size & 1)
        if pos + 8 + size > limit:
            raise ContainerError("WebP chunk runs past the end of the file")
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
        raise ContainerError("WebP has no chunks")
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


def _bounded_inflate(blob: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(blob, _MAX_TEXT_CHUNK)
    if inflater.unconsumed_tail:
        raise ContainerError("compressed text chunk is larger than the limit")
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


def embed_texts(data: bytes, info: ImageInfo, infotext: str, record_json: str) -> bytes:
    """``data`` with the infotext and the JSON record spliced in (pixels untouched).

    GIF (and any other format) comes back unchanged. Raises :class:`ContainerError` (or
    ``ValueError`` / ``struct.error``) when the container cannot be parsed.
    """
    if info.format == "PNG":
        return _png_embed(data, {INFOTEXT_KEY: infotext, RECORD_KEY: record_json})
    if info.format == "JPEG":
        return _jpeg_embed(data, infotext, record_json)
    if info.format == "WEBP":
        return _webp_embed(data, info, infotext, record_json)
    return data


def read_texts(data: bytes, fmt: str) -> dict[str, str]:
    """The text fields a file of format ``fmt`` carries (see the module docstring)."""
    if fmt == "PNG":
        return _png_texts(data)
    if fmt == "JPEG":
        return _jpeg_texts(data)
    if fmt == "WEBP":
        return _webp_texts(data)
    return {}


def xmp_fields(xmp: str) -> tuple[str | None, str | None]:
    """``(record JSON, UserComment)`` from an XMP packet like the one nbbatch writes."""
    record = _XMP_RECORD.search(xmp)
    comment = _XMP_COMMENT.search(xmp)
    return (
        html.unescape(record.group(1)) if record else None,
        html.unescape(comment.group(1)) if comment else None,
    )
