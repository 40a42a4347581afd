"""The messages between the kernel and the studio's page, declared once.

The ``TypedDict``\\s here are the wire shapes; ``js/src/types.js`` (the JSDoc
``@typedef``\\s the front end's ``// @ts-check`` uses) is generated from them::

    python -m nbbatch.widgets._protocol > js/src/types.js

and a test fails when the committed file differs. The task status sets are sent by the
kernel (``hello`` → ``statuses``), not typed a second time in JavaScript.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Any, Literal, TypedDict, Union, get_args, get_origin

__all__ = [
    "EDITABLE",
    "RETRYABLE",
    "STATUSES",
    "BatchHead",
    "CancelRequest",
    "GridHello",
    "Notice",
    "ParentRef",
    "Patch",
    "PatchRow",
    "Reply",
    "Row",
    "RowsReply",
    "RowsRequest",
    "RunModes",
    "StatusSets",
    "Summary",
    "js_typedefs",
    "status_sets",
]

Status = Literal["idle", "queued", "running", "succeeded", "failed", "cancelled", "interrupted"]

#: status values as the wire (and TaskStatus.value) spells them, in the grid's order
STATUSES: tuple[Status, ...] = get_args(Status)
#: a task whose prompt can still be edited
EDITABLE: frozenset[str] = frozenset({"idle", "queued", "failed", "cancelled", "interrupted"})
#: a task Retry runs again
RETRYABLE: frozenset[str] = frozenset({"failed", "cancelled", "interrupted"})


class StatusSets(TypedDict):
    """The status sets the page needs (sent in ``hello``)."""

    all: list[Status]
    editable: list[Status]
    retryable: list[Status]


def status_sets() -> StatusSets:
    return {
        "all": list(STATUSES),
        "editable": [s for s in STATUSES if s in EDITABLE],
        "retryable": [s for s in STATUSES if s in RETRYABLE],
    }


# Optional keys: a TypedDict with total=False over a base with the required ones
# (typing.NotRequired needs Python 3.11).


class _Reply(TypedDict):
    type: Literal["reply"]
    uuid: str | None
    ok: bool


class Reply(_Reply, total=False):
    """The one answer to a request: ``ok`` with the handler's fields, or ``error`` in words."""

    error: str


class CancelRequest(TypedDict):
    """The page no longer waits for request ``uuid``: its deferred work is cancelled."""

    type: Literal["cancel_request"]
    uuid: str


class _Notice(TypedDict):
    level: str
    text: str


class Notice(_Notice, total=False):
    """An error or hint in words, unasked."""

    type: Literal["notice"]


class _ParentRef(TypedDict):
    id: str
    i: int
    k: str


class ParentRef(_ParentRef, total=False):
    """The image a derived task was made from: task, image index, thumbnail key, number."""

    n: int


class _Row(TypedDict):
    id: str
    n: int  # the task's number, 1-based
    p: str  # prompt
    st: Status
    pc: int | None  # percent while running
    at: int  # attempts
    pm: str  # the parameters chip ("768×512 · seed 5")
    rf: list[str]  # thumbnail keys of the first references
    nr: int  # references in all
    im: list[str]  # thumbnail keys of the first results
    ni: int  # results in all


class Row(_Row, total=False):
    """One grid row (keys are short: thousands of rows are scrolled through)."""

    pa: ParentRef
    np: str  # negative prompt
    er: str  # error in words
    ek: str | None  # error kind


#: a status patch: [id, status, percent, attempts, images, full (1: re-ask the row)]
PatchRow = tuple[str, Status, int | None, int, int, int]


class Summary(TypedDict):
    """The batch's counts and run figures (toolbar, filter chips, progress)."""

    total: int
    counts: dict[str, int]
    done: int
    images: int
    refs: bool
    starred: int
    elapsed: float | None
    ticking: bool
    eta: float | None
    ipm: float | None
    #: why the run paused (a server not answering, a full disk) or stopped (a refused
    #: key) by itself, in words
    paused_reason: str | None
    #: what holds the live run back, in words (budget, deadline, rate limits), or None
    pace: str | None
    #: the live run's deadline ("07:00", or with its date when not today), or None
    deadline: str | None


class BatchHead(TypedDict):
    id: str
    name: str


class _Patch(TypedDict):
    type: Literal["patch"]
    summary: Summary


class Patch(_Patch, total=False):
    """What changed since the last patch (a few a second at most while running)."""

    invalidate: bool
    rows: list[PatchRow]
    full: list[Row]


class RowsRequest(TypedDict):
    type: Literal["rows"]
    uuid: str
    start: int
    end: int
    filter: str
    query: str


class RowsReply(TypedDict):
    start: int
    total: int
    rows: list[Row]


class GridHello(TypedDict):
    """The grid's snapshot on (re)render."""

    strings: dict[str, str]
    summary: Summary
    notice: Notice | None
    batch: BatchHead
    statuses: StatusSets


class RunModes(TypedDict, total=False):
    """The toolbar's run modes (the grid's ``run_modes``; empty: the provider has no batch
    API): the price of one image now and through the batch API, null when unknown."""

    now: float | None
    batch: float | None


# ------------------------------------------------------------------ JSDoc generation
_SHAPES: tuple[Any, ...] = (
    StatusSets,
    Reply,
    CancelRequest,
    Notice,
    ParentRef,
    Row,
    Summary,
    BatchHead,
    Patch,
    RowsRequest,
    RowsReply,
    GridHello,
    RunModes,
)
_SCALARS = {str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _js(tp: Any) -> str:
    if tp in _SCALARS:
        return _SCALARS[tp]
    if tp is Any:
        return "any"
    if tp is PatchRow:
        return "PatchRow"
    if tp is Status:
        return "Status"
    if isinstance(tp, type) and tp in _SHAPES:
        return tp.__name__
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return " | ".join(f'"{a}"' for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_js(a) for a in args)
    if origin is list:
        inner = _js(args[0])
        return f"({inner})[]" if "|" in inner else f"{inner}[]"
    if origin is tuple:
        return "[" + ", ".join(_js(a) for a in args) + "]"
    if origin is dict:
        return f"Record<{_js(args[0])}, {_js(args[1])}>"
    raise TypeError(f"no JavaScript spelling for {tp!r}")


def js_typedefs() -> str:
    """``js/src/types.js``: a JSDoc ``@typedef`` per wire shape above."""
    out = [
        "// @ts-check",
        "// generated by `python -m nbbatch.widgets._protocol` from",
        "// src/nbbatch/widgets/_protocol.py — do not edit: edit that file and regenerate.",
        "// The kernel <-> page messages; import a type with",
        '// /** @typedef {import("./types.js").Row} Row */',
        "",
        "/** @typedef {" + " | ".join(f'"{a}"' for a in STATUSES) + "} Status */",
        "",
        "/**",
        " * @typedef {[" + ", ".join(_js(a) for a in get_args(PatchRow)) + "]} PatchRow",
        " * a status patch: [id, status, percent, attempts, images, full (1: re-ask the row)]",
        " */",
    ]
    for shape in _SHAPES:
        hints = typing.get_type_hints(shape)
        doc = (shape.__doc__ or "").replace("``", "`").strip().splitlines()
        out.append("")
        out.append("/**")
        out.append(f" * @typedef {{object}} {shape.__name__}{(' ' + doc[0]) if doc else ''}")
        for name, hint in hints.items():
            optional = name in shape.__optional_keys__
            label = f"[{name}]" if optional else name
            out.append(f" * @property {{{_js(hint)}}} {label}")
        out.append(" */")
    out.append("")
    out.append("export {};")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover - the generator's command line
    sys.stdout.write(js_typedefs())
