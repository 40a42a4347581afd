"""``History``: the past batches of a workspace and their statistics (one anywidget).

In a studio it is a modal ``<dialog>`` opened by the toolbar's *History* button, and its
Open / Resume / Retry failed switch the studio to that batch; alone
(``History(workspace)``) it shows the same panel in the cell, without those three.

Wire protocol (custom messages, the same request/reply rules as the grid: every request
carries a ``uuid`` and gets exactly one ``{"type": "reply", "uuid", "ok", ...}``, with
``error`` in words when ``ok`` is false):

page → kernel
    ``hello``                   strings and whether a studio is attached
    ``list``                    every batch, newest first (read off the loop)
    ``thumbs {id}``             WebP thumbnails of the batch's first images (binary buffers)
    ``stats``                   per-provider numbers and the saved prices (off the loop)
    ``open {id}`` / ``resume {id}`` / ``retry_failed {id}``   through the studio
    ``rename {id, name}``       ``Workspace.rename_batch`` (``Batch.rename`` if open)
    ``delete {id}``             ``Workspace.delete_batch`` off the loop (the page asked
                                the person to confirm first)
    ``set_price {provider, price}``   saves ``Settings.prices[provider]`` (``null`` clears)
kernel → page (unsolicited)
    ``changed``                 the list changed (a run ended, a batch was opened): the
                                page asks again if it shows it

Synced traits are small: ``lang``, ``studio`` (attached to one), ``current`` (the id of
the batch the studio shows), ``live`` (it runs), ``opened`` (a counter Python bumps to
open the dialog). The rows travel as messages only.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import traitlets

from nbbatch.engine import Workspace, load_settings, save_settings
from nbbatch.errors import NbbatchError
from nbbatch.images import ThumbnailCache

from ._dispatch import DEFERRED as _DEFERRED
from ._i18n import catalogue
from ._panel import Panel
from ._words import UserFacingError, describe

if TYPE_CHECKING:
    from ._session import StudioSession

__all__ = ["History"]

log = logging.getLogger("nbbatch")

_STATIC = pathlib.Path(__file__).parent / "static"
_THUMBS = 4  # per batch in the strip (the row says how many more)
_THUMB_SIZE = 96  # px on the longer side: 48 css px at 2x density


class _Stored(NamedTuple):
    """A workspace file as the thumbnail cache takes it (named by its digest: no re-hash)."""

    sha256: str
    path: pathlib.Path


class History(Panel):
    """The batches of ``workspace``: open, resume, retry, rename, delete; and stats.

    ``History(workspace)`` displays in a cell; a studio has one behind its *History*
    button (``studio.history``), whose Open / Resume / Retry failed switch the studio.
    """

    _esm = _STATIC / "history.js"
    _css = _STATIC / "history.css"

    studio = traitlets.Bool(False).tag(sync=True)
    current = traitlets.Unicode("").tag(sync=True)
    live = traitlets.Bool(False).tag(sync=True)
    opened = traitlets.Int(0).tag(sync=True)

    def __init__(
        self,
        workspace: Workspace | str | os.PathLike[str] | None = None,
        *,
        lang: str | None = None,
        session: StudioSession | None = None,
        **kwargs: Any,
    ) -> None:
        if session is not None:
            workspace = session.batch.workspace
        owned = not isinstance(workspace, Workspace)
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        super().__init__(lang=lang, studio=session is not None, **kwargs)
        self.workspace = ws
        self._owns_workspace = owned  # opened here from a path: closed with the widget
        self._session = session
        self.thumbs = ThumbnailCache(ws)
        self._handle(
            {
                "hello": ("doing_request", self._on_hello),
                "list": ("doing_hist_list", self._on_list),
                "thumbs": ("doing_thumbs", self._on_thumbs),
                "stats": ("doing_hist_stats", self._on_stats),
                "open": ("doing_hist_open", self._on_open),
                "resume": ("doing_hist_open", self._on_resume),
                "retry_failed": ("doing_hist_open", self._on_retry_failed),
                "rename": ("doing_hist_rename", self._on_rename),
                "delete": ("doing_hist_delete", self._on_delete),
                "set_price": ("doing_hist_price", self._on_set_price),
            }
        )

    def _repr_detail(self) -> str:
        return f"workspace {str(self.workspace.path)!r}"

    # ----------------------------------------------------------- public API
    def show(self) -> None:
        """Open the dialog (in a studio: what its History button does)."""
        self.opened += 1

    def close(self) -> None:
        if getattr(self, "_owns_workspace", False):
            self.workspace.close()
        super().close()

    def changed(self) -> None:
        """Tell the page the list is out of date (it asks again when it shows it)."""
        if getattr(self, "comm", None) is not None:
            self._post({"type": "changed"})

    # ----------------------------------------------------------- plumbing
    def _session_or_refuse(self) -> StudioSession:
        if self._session is None:
            raise UserFacingError("hist_no_studio")
        return self._session

    @staticmethod
    def _id(content: dict[str, Any]) -> str:
        bid = content.get("id")
        if not isinstance(bid, str) or not bid or len(bid) > 64:
            raise UserFacingError("bad_request", type=str(content.get("type")))
        return bid

    # ----------------------------------------------------------- handlers
    def _on_hello(self, content: dict[str, Any]) -> dict[str, Any]:
        self._sync_studio()
        return {"strings": catalogue(self.lang, "history"), "studio": self.studio}

    def _sync_studio(self) -> None:
        session = self._session
        if session is not None:
            self.current = session.batch.id
            self.live = session.live_runner is not None

    def _on_list(self, content: dict[str, Any]) -> dict[str, Any]:
        self._sync_studio()

        def reply(rows: list[dict[str, Any]]) -> None:
            self._reply(content.get("uuid"), True, {"rows": rows})

        current = self.current

        def work() -> list[dict[str, Any]]:
            # Every studio starts an empty batch to fill: those left empty are noise here
            # (they hold nothing to open or resume), except the one the studio shows.
            return [
                dict(r.to_dict(), resumable=r.resumable)
                for r in self.workspace.history()
                if r.total or r.id == current
            ]

        return self._off_loop(content.get("uuid"), "doing_hist_list", work, reply)

    def _on_thumbs(self, content: dict[str, Any]) -> dict[str, Any]:
        bid = self._id(content)
        uid = content.get("uuid")

        def work() -> list[bytes]:
            out = []
            for path in self.workspace.batch_thumbnails(bid, _THUMBS):
                try:
                    # the cache reads only .sha256 and .path of a stored image
                    source = cast(Any, _Stored(path.stem, path))
                    out.append(self.thumbs.get_bytes(source, _THUMB_SIZE))
                except Exception as exc:  # a missing or broken file: show the others
                    log.warning("nbbatch history: no thumbnail for %s: %s", path.name, exc)
            return out

        def reply(found: list[bytes]) -> None:
            self._reply(uid, True, {"id": bid, "count": len(found)}, found)

        return self._off_loop(uid, "doing_thumbs", work, reply)

    def _on_stats(self, content: dict[str, Any]) -> dict[str, Any]:
        uid = content.get("uuid")

        def work() -> dict[str, Any]:
            try:
                prices = dict(load_settings().prices)
            except NbbatchError:
                prices = {}
            rows = [s.to_dict() for s in self.workspace.provider_stats(prices)]
            return {"rows": rows, "prices": prices}

        return self._off_loop(uid, "doing_hist_stats", work, lambda r: self._reply(uid, True, r))

    def _on_open(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._through_studio(content, "open")

    def _on_resume(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._through_studio(content, "resume")

    def _on_retry_failed(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._through_studio(content, "retry_failed")

    def _through_studio(self, content: dict[str, Any], what: str) -> dict[str, Any]:
        session = self._session_or_refuse()
        bid = self._id(content)
        uid = content.get("uuid")

        def done(error: BaseException | None) -> None:
            self._sync_studio()
            if error is None:
                self._reply(uid, True, {"id": bid, "what": what})
            else:
                self._reply(uid, False, {"error": describe(error, self.lang, "doing_hist_open")})

        session.open_from_history(bid, what, done)
        return _DEFERRED

    def _on_rename(self, content: dict[str, Any]) -> dict[str, Any]:
        bid = self._id(content)
        name = content.get("name")
        if not isinstance(name, str) or not name.strip():
            raise UserFacingError("hist_name_empty")
        if len(" ".join(name.split())) > 200:
            raise UserFacingError("hist_name_long")
        session = self._session
        batch = session.known_batch(bid) if session is not None else None
        clean = batch.rename(name) if batch is not None else self.workspace.rename_batch(bid, name)
        if session is not None and session.batch.id == bid:
            session.renamed()
        return {"id": bid, "name": clean}

    def _on_delete(self, content: dict[str, Any]) -> dict[str, Any]:
        bid = self._id(content)
        session = self._session
        if session is not None and session.batch.id == bid:
            raise UserFacingError("hist_delete_open")
        uid = content.get("uuid")

        def reply(removed: int) -> None:
            if session is not None:
                session.forget_batch(bid)
            self._reply(uid, True, {"id": bid, "files": removed})

        work = lambda: self.workspace.delete_batch(bid)  # noqa: E731 - one call, named
        return self._off_loop(uid, "doing_hist_delete", work, reply)

    def _on_set_price(self, content: dict[str, Any]) -> dict[str, Any]:
        provider = content.get("provider")
        price = content.get("price")
        if not isinstance(provider, str) or not provider.strip() or len(provider) > 200:
            raise UserFacingError("bad_request", type="set_price")
        if price is not None and (
            isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 <= price < 1e9
        ):
            raise UserFacingError("hist_bad_price")
        settings = load_settings()
        if price is None:
            settings.prices.pop(provider, None)
        else:
            settings.prices[provider] = float(price)
        save_settings(settings)
        return {"provider": provider, "price": price}
