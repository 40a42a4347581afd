"""``Upload``: a drop zone for reference images (its own anywidget, works alone).

Files travel from the page in chunks, because the Jupyter server drops any websocket
message over 10 MiB without a word. Wire protocol (custom messages; each request carries a
``uuid`` and gets exactly one ``{"type": "reply", "uuid", "ok", ...}``, ``error`` in words
when ``ok`` is false):

page → kernel
    ``hello``                        strings, limits (incl. ``chunk`` bytes), items, refused
    ``list``                         items and refused (after ``version`` changed)
    ``begin {fid, name, size}``      announce a file; refused at once when too big / too many
    ``chunk {fid, index}`` + 1 buffer   bytes ``[index*chunk, …)``; any order, each once
    ``end {fid}``                    all chunks sent: decode (guarded), store, reply the item
    ``abort {fid}``                  forget a file part-way (the page gave up on it)
    ``remove {id}``, ``move {id, index}``, ``clear``, ``dismiss``   (``id`` is the sha256)
    ``thumbs {ids}``                 kernel thumbnails (WebP) as buffers, in ``ids`` order
    ``server_folder``                open the ``Choose folder on server`` picker (an
                                     ipywidget under the drop zone, see _serverfolder)
    ``remix {id}``                   an image made by nbbatch, A1111/Forge, ComfyUI or
                                     SwarmUI becomes a task in ``remix_into`` (from its
                                     embedded parameters) and leaves the references
    ``keep {id}``                    "Use as reference": keep it, drop the Remix offer

Synced traits are small: ``lang``, ``count`` and ``version`` (bumped whenever the set or
the refusals change, so every view asks ``list`` again). Image bytes never become traits:
widget state may be saved into the notebook file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import ipywidgets  # type: ignore[import-untyped]  # (no stubs; only Box layout used)
import traitlets

from nbbatch.core._model import Reference, Task
from nbbatch.engine import Batch, Workspace
from nbbatch.errors import ImageRejectedError, NbbatchError
from nbbatch.images import (
    GenerationInfo,
    ImageLimits,
    ThumbnailCache,
    read_generation_info,
    sniff_format,
)

from ._dispatch import DEFERRED as _DEFERRED
from ._i18n import catalogue, tr
from ._panel import Panel
from ._serverfolder import FolderRead, ServerFolderPicker, read_image_folder
from ._words import UserFacingError, clip, describe

__all__ = ["CHUNK_BYTES", "Upload"]

log = logging.getLogger("nbbatch")

_STATIC = pathlib.Path(__file__).parent / "static"
#: Bytes per chunk message: well under the server's 10 MiB cap, large enough to be fast.
CHUNK_BYTES = 4 * 1024 * 1024
#: Files being received at once (each holds at most ``max_bytes`` in memory).
_MAX_PENDING = 8
_MAX_NAME = 255
THUMB_SIZE = 192  # px on the longer side: 96 css px tiles at 2x density
_FORMAT_LABELS = {"JPEG": "JPG", "PNG": "PNG", "GIF": "GIF", "WEBP": "WebP"}
#: who wrote an image's parameters (``GenerationInfo.source``): names, alike in every language
_SOURCE_LABELS = {
    "nbbatch": "nbbatch",
    "a1111": "AUTOMATIC1111 / Forge",
    "comfyui": "ComfyUI",
    "swarmui": "SwarmUI",
    "invokeai": "InvokeAI",
}


@dataclasses.dataclass
class _Pending:
    """A file on its way: bytes land at their offset, in whatever order they come."""

    name: str
    size: int
    data: bytearray
    chunks: int
    seq: int  # order of announcement: files land in the order they were dropped
    seen: set[int] = dataclasses.field(default_factory=set)


class Upload(Panel):
    """Reference images for a batch: drop files or a folder, reorder, remove.

    ``Upload()`` stores into the default workspace (``Upload(workspace=ws)`` into
    another); ``upload.references`` is the current set in its order, ``upload.clear()``
    empties it. Limits: ``max_files`` (50), ``max_bytes`` per file (10 MiB), ``formats``
    (Pillow names, default JPEG, PNG, GIF, WEBP). Every refused file is listed in the
    widget with its name and the reason (``upload.refused`` in Python).
    """

    _esm = _STATIC / "upload.js"
    _css = _STATIC / "upload.css"

    count = traitlets.Int(0).tag(sync=True)
    version = traitlets.Int(0).tag(sync=True)
    _takes_buffers = True  # file chunks arrive as binary buffers

    def __init__(
        self,
        workspace: Workspace | str | os.PathLike[str] | None = None,
        *,
        max_files: int = 50,
        max_bytes: int = 10 * 1024 * 1024,
        formats: Sequence[str] = ("JPEG", "PNG", "GIF", "WEBP"),
        server_root: str | os.PathLike[str] | None = None,
        remix_into: Batch | None = None,
        lang: str | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1:
            raise TypeError("max_files must be a whole number >= 1")
        self.limits = ImageLimits(max_bytes=max_bytes, formats=tuple(f.upper() for f in formats))
        self.max_files = max_files
        super().__init__(lang=lang, **kwargs)
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self._thumbs = ThumbnailCache(self.workspace)
        self._refs: list[Reference] = []
        self._sizes: dict[str, int] = {}
        self._refused: list[dict[str, str]] = []
        self._pending: dict[str, _Pending] = {}
        self._seq: dict[str, int] = {}  # sha256 -> when its file was announced
        self._next_seq = 0
        #: where ``Remix`` puts the task made from a dropped image's embedded parameters
        #: (the studio sets its batch); without one, Remix is not offered
        self.remix_into = remix_into
        self._embedded: dict[str, GenerationInfo] = {}  # sha256 -> parameters found
        root = pathlib.Path(server_root) if server_root is not None else pathlib.Path.cwd()
        self._server = ServerFolderPicker(root.resolve(), self._server_picked, self.lang)
        self._view: Any = None
        self._handle(
            {
                "hello": ("doing_request", self._on_hello),
                "list": ("doing_request", self._on_list),
                "begin": ("doing_upload", self._on_begin),
                "chunk": ("doing_upload", self._on_chunk),
                "end": ("doing_upload", self._on_end),
                "abort": ("doing_upload", self._on_abort),
                "remove": ("doing_remove", self._on_remove),
                "move": ("doing_move_image", self._on_move),
                "clear": ("doing_remove", self._on_clear),
                "dismiss": ("doing_request", self._on_dismiss),
                "thumbs": ("doing_thumbs", self._on_thumbs),
                "server_folder": ("doing_server_folder", self._on_server_folder),
                "remix": ("doing_remix", self._on_remix),
                "keep": ("doing_request", self._on_keep),
            }
        )

    def _repr_detail(self) -> str:
        return f"{len(self._refs)} images · {len(self._refused)} refused"

    # ----------------------------------------------------------- public API
    @property
    def references(self) -> list[Reference]:
        """The uploaded images, in the order shown."""
        return list(self._refs)

    @property
    def refused(self) -> list[dict[str, str]]:
        """Files refused since the last ``clear()``: ``{"name", "reason"}`` each."""
        return [dict(r) for r in self._refused]

    def add(self, source: bytes | str | os.PathLike[str], name: str | None = None) -> Reference:
        """Add an image from Python (a path or bytes), through the same checks as a drop."""
        if len(self._refs) >= self.max_files:
            label = name or pathlib.Path(str(source)).name if not isinstance(source, bytes) else ""
            raise UserFacingError("too_many_files", name=label or "image", n=self.max_files)
        ref = self.workspace.add_reference(source, name, limits=self.limits)
        self._accept(ref, _size_of(source))
        return ref

    def add_folder(self, folder: str | os.PathLike[str]) -> list[Reference]:
        """Add the images directly in a folder next to the kernel (as the server folder
        picker does); refusals go to ``refused`` with their reasons. Blocking."""
        read = read_image_folder(
            pathlib.Path(folder), self.workspace, self.limits, self._room(), self.lang
        )
        return self._take(read)

    def remix(self, ref: Reference | str) -> Task:
        """The task an image's embedded parameters describe, added to ``remix_into``;
        the image leaves the references (it was a result to redo, not an input)."""
        sha = ref.sha256 if isinstance(ref, Reference) else ref
        info = self._embedded.get(sha)
        if info is None:
            raise UserFacingError("remix_nothing")
        if self.remix_into is None:
            raise UserFacingError("remix_no_batch")
        (task,) = self.remix_into.add([info.to_task()])
        self._embedded.pop(sha, None)
        self.remove(sha)
        return task

    def remove(self, ref: Reference | str) -> None:
        sha = ref.sha256 if isinstance(ref, Reference) else ref
        self._refs = [r for r in self._refs if r.sha256 != sha]
        self._changed()

    def move(self, ref: Reference | str, index: int) -> None:
        sha = ref.sha256 if isinstance(ref, Reference) else ref
        found = [r for r in self._refs if r.sha256 == sha]
        if not found:
            raise UserFacingError("upload_image_gone")
        rest = [r for r in self._refs if r.sha256 != sha]
        rest.insert(max(0, min(index, len(rest))), found[0])
        self._refs = rest
        self._changed()

    def clear(self) -> None:
        """Empty the set (the files stay in the workspace, deduplicated by content)."""
        self._refs = []
        self._embedded.clear()
        self._refused = []
        self._pending.clear()
        self._changed()

    # ----------------------------------------------------------- state
    def _changed(self) -> None:
        self.count = len(self._refs)
        self.version += 1

    def _accept(self, ref: Reference, size: int, seq: int | None = None) -> None:
        if any(r.sha256 == ref.sha256 for r in self._refs):
            first = next(r for r in self._refs if r.sha256 == ref.sha256)
            self._refuse(ref.name, tr(self.lang, "duplicate_image", other=first.name))
            return
        if seq is None:
            self._next_seq += 1
            seq = self._next_seq
        # Files finish out of order (several travel at once): place this one after the
        # last image announced before it, so the set keeps the order of the drop.
        at = len(self._refs)
        while at > 0 and self._seq.get(self._refs[at - 1].sha256, 0) > seq:
            at -= 1
        self._seq[ref.sha256] = seq
        self._refs.insert(at, ref)
        self._sizes[ref.sha256] = size
        self._changed()

    def _refuse(self, name: str, reason: str) -> None:
        self._refused.append({"name": name, "reason": reason})
        del self._refused[:-200]  # a hostile page cannot grow this without bound
        self._changed()

    def _items(self) -> dict[str, Any]:
        return {
            "items": [
                {
                    "id": r.sha256,
                    "name": r.name,
                    "width": r.width,
                    "height": r.height,
                    "format": _FORMAT_LABELS.get(r.format, r.format),
                    "size": self._sizes.get(r.sha256, 0),
                    **self._offer(r.sha256),
                }
                for r in self._refs
            ],
            "refused": self._refused,
        }

    def _offer(self, sha: str) -> dict[str, Any]:
        info = self._embedded.get(sha)
        if info is None:
            return {}
        return {
            "embedded": {
                "source": info.source,
                "label": _SOURCE_LABELS.get(info.source, info.source),
                "prompt": clip(info.prompt or "", 160),
                "remix": self.remix_into is not None,
            }
        }

    def _room(self) -> int:
        return max(0, self.max_files - len(self._refs) - len(self._pending))

    def _take(self, read: FolderRead) -> list[Reference]:
        taken = []
        for ref, size in read.images:
            before = len(self._refs)
            self._accept(ref, size)
            if len(self._refs) > before:
                taken.append(ref)
        for name, reason in read.refused:
            self._refuse(name, reason)
        return taken

    def _store(self, data: bytes, name: str) -> tuple[Reference, GenerationInfo | None]:
        """Decode and store (guarded), then look for embedded generation parameters:
        metadata is read from the bytes already checked, without decoding pixels."""
        ref = self.workspace.add_reference(data, name, limits=self.limits)
        try:
            info: GenerationInfo | None = read_generation_info(data, limits=self.limits)
        except NbbatchError:
            info = None
        return ref, info if info else None

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.view._repr_mimebundle_(**kwargs)

    @property
    def view(self) -> Any:
        """The drop zone with the server folder picker under it (what is displayed)."""
        if self._view is None:
            self._view = ipywidgets.VBox(
                [self, self._server.box], layout=ipywidgets.Layout(width="100%")
            )
        return self._view

    # ----------------------------------------------------------- receiving
    def _on_hello(self, content: dict[str, Any], buffers: Sequence[Any]) -> dict[str, Any]:
        return {
            "strings": catalogue(self.lang, "upload"),
            "limits": {
                "max_files": self.max_files,
                "max_bytes": self.limits.max_bytes,
                "formats": [_FORMAT_LABELS.get(f, f) for f in self.limits.formats],
                "chunk": CHUNK_BYTES,
            },
            **self._items(),
        }

    def _on_list(self, content: dict[str, Any], buffers: Sequence[Any]) -> dict[str, Any]:
        return self._items()

    def _on_begin(self, content: dict[str, Any], buffers: Sequence[Any]) -> dict[str, Any]:
        fid = _text(content.get("fid"), "begin")
        name = _text(content.get("name"), "begin")[:_MAX_NAME] or "image"
        size = content.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UserFacingError("bad_request", type="begin")
        reason = None
        if size > self.limits.max_bytes:
            reason = tr(self.lang, "too_big", size=_mb(size), limit=_mb(self.limits.max_bytes))
        elif size == 0:
            reason = tr(self.lang, "empty_file")
        elif len(self._refs) + len(self._pending) >= self.max_files:
            reason = tr(self.lang, "too_many_files", name=name, n=self.max_files)
        elif len(self._pending) >= _MAX_PENDING:
            raise UserFacingError("busy_upload")
        if reason is not None:
            self._refuse(name, reason)
            return {"refused": reason}
        chunks = -(-size // CHUNK_BYTES)
        self._next_seq += 1
        self._pending[fid] = _Pending(name, size, bytearray(size), chunks, self._next_seq)
        return {"chunks": chunks}

    def _pending_of(self, content: dict[str, Any], kind: str) -> tuple[str, _Pending]:
        fid = _text(content.get("fid"), kind)
        pending = self._pending.get(fid)
        if pending is None:
            raise UserFacingError("upload_gone")
        return fid, pending

    def _on_chunk(self, content: dict[str, Any], buffers: Sequence[Any]) -> dict[str, Any]:
        fid, p = self._pending_of(content, "chunk")
        index = content.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < p.chunks:
            self._drop(fid, tr(self.lang, "upload_broken", name=p.name))
            raise UserFacingError("bad_request", type="chunk index")
        if len(buffers) != 1:
            self._drop(fid, tr(self.lang, "upload_broken", name=p.name))
            raise UserFacingError("bad_request", type="chunk buffers")
        view = memoryview(buffers[0]).cast("B")
        start = index * CHUNK_BYTES
        expected = min(CHUNK_BYTES, p.size - start)
        if view.nbytes != expected or index in p.seen:
            self._drop(fid, tr(self.lang, "upload_broken", name=p.name))
            raise UserFacingError("bad_request", type="chunk size")
        if index == 0:
            # The first bytes say what the file really is: refuse early, not after 10 MB.
            fmt = sniff_format(bytes(view[:16]))
            if fmt not in self.limits.formats:
                reason = tr(
                    self.lang,
                    "wrong_type",
                    kind=fmt or tr(self.lang, "unknown_data"),
                    formats=", ".join(_FORMAT_LABELS.get(f, f) for f in self.limits.formats),
                )
                self._drop(fid, reason)
                return {"refused": reason}
        p.data[start : start + expected] = view
        p.seen.add(index)
        return {"received": len(p.seen)}

    def _on_abort(self, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        self._pending.pop(_text(content.get("fid"), "abort"), None)

    def _drop(self, fid: str, reason: str) -> None:
        p = self._pending.pop(fid, None)
        if p is not None:
            self._refuse(p.name, reason)

    def _on_end(self, content: dict[str, Any], buffers: Sequence[Any]) -> dict[str, Any]:
        fid, p = self._pending_of(content, "end")
        uid = content.get("uuid")
        if len(p.seen) != p.chunks:
            self._drop(fid, tr(self.lang, "upload_broken", name=p.name))
            raise UserFacingError("bad_request", type="end before every chunk")
        del self._pending[fid]
        data = bytes(p.data)
        p.data = bytearray()

        def finish(
            stored: tuple[Reference, GenerationInfo | None] | None, error: BaseException | None
        ) -> None:
            ref = stored[0] if stored is not None else None
            if error is None and stored is not None and ref is not None:
                if stored[1] is not None:
                    self._embedded[ref.sha256] = stored[1]
                if len(self._refs) >= self.max_files:
                    reason = tr(self.lang, "too_many_files", name=p.name, n=self.max_files)
                    self._refuse(p.name, reason)
                    self._reply(uid, True, {"refused": reason})
                    return
                before = len(self._refs)
                self._accept(ref, p.size, p.seq)
                if len(self._refs) == before:
                    self._reply(uid, True, {"refused": self._refused[-1]["reason"]})
                else:
                    self._reply(uid, True, {"id": ref.sha256})
                return
            if isinstance(error, ImageRejectedError):
                reason = _rejection(error, p.name)
                self._refuse(p.name, reason)
                self._reply(uid, True, {"refused": reason})
                return
            assert error is not None
            text = describe(error, self.lang, "doing_upload")
            self._refuse(p.name, text)
            self._reply(uid, False, {"error": text})

        # Decoding, hashing and fsync take tens of ms per MB: off the loop, so the kernel
        # keeps answering the page (and a run keeps going) while a 40 MB drop lands.
        self._in_thread(
            lambda: self._store(data, p.name),
            lambda stored: finish(stored, None),
            lambda exc: finish(None, exc),
        )
        return _DEFERRED

    def _on_remove(self, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        self.remove(_text(content.get("id"), "remove"))

    def _on_move(self, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        index = content.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise UserFacingError("bad_request", type="move")
        self.move(_text(content.get("id"), "move"), index)

    def _on_clear(self, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        self.clear()

    def _on_dismiss(self, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        self._refused = []
        self._changed()

    def _on_server_folder(self, content: dict[str, Any], buffers: Sequence[Any]) -> dict[str, Any]:
        self._server.open()
        return {"root": str(self._server.root)}

    def _server_picked(self, folder: pathlib.Path) -> None:
        """A folder chosen in the picker: read it off the loop, then show the result."""
        room = self._room()
        self._in_thread(
            lambda: read_image_folder(folder, self.workspace, self.limits, room, self.lang),
            self._take,
            lambda exc: self._refuse(folder.name, describe(exc, self.lang, "doing_server_folder")),
        )

    def _on_remix(self, content: dict[str, Any], buffers: Sequence[Any]) -> dict[str, Any]:
        task = self.remix(_text(content.get("id"), "remix"))
        return {"task": task.id}

    def _on_keep(self, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        self._embedded.pop(_text(content.get("id"), "keep"), None)
        self._changed()

    def _on_thumbs(self, content: dict[str, Any], buffers: Sequence[Any]) -> dict[str, Any]:
        raw = content.get("ids")
        ids = [i for i in raw if isinstance(i, str)][:64] if isinstance(raw, list) else []
        by_id = {r.sha256: r for r in self._refs}
        uid = content.get("uuid")

        def work() -> list[bytes | None]:
            out: list[bytes | None] = []
            for i in ids:
                ref = by_id.get(i)
                try:
                    out.append(None if ref is None else self._thumbs.get_bytes(ref, THUMB_SIZE))
                except Exception as exc:  # a broken file: show the others
                    log.warning("nbbatch upload: no thumbnail for %s: %s", ref, exc)
                    out.append(None)
            return out

        def reply(found: list[bytes | None]) -> None:
            sent = [i for i, b in zip(ids, found, strict=True) if b is not None]
            self._reply(uid, True, {"ids": sent}, [b for b in found if b is not None])

        return self._off_loop(uid, "doing_thumbs", work, reply)


def _text(value: object, kind: str) -> str:
    if not isinstance(value, str) or len(value) > 1000:
        raise UserFacingError("bad_request", type=kind)
    return value


def _mb(n: int) -> str:
    # binary megabytes, as the limits are set (10 MB = 10 × 1024 × 1024 bytes)
    value = n / (1024 * 1024)
    return f"{value:.0f} MB" if value >= 10 or value.is_integer() else f"{value:.1f} MB"


def _size_of(source: bytes | str | os.PathLike[str]) -> int:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source)
    try:
        return os.stat(source).st_size
    except OSError:
        return 0


def _rejection(exc: ImageRejectedError, name: str) -> str:
    """The decoder's own words, without the file name the list already shows."""
    text = exc.message
    prefix = f"{name}: "
    return clip(text[len(prefix) :] if text.startswith(prefix) else text, 300)
