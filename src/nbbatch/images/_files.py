"""Reading a file someone named (only a regular file, never more than a cap), and
writing one atomically.

A path from a user (an upload picked by name, a prompts file, an image folder) may be a
named pipe, a device or a link to one: opening a FIFO with no writer blocks forever,
and ``/dev/zero`` never ends. These read nothing from such paths, and stop reading a
regular file as soon as it passes the cap (its size may change while it is read).

:func:`write_atomic` writes a file under a temporary name in its final folder and
renames it into place, so a reader (or a crash) never sees half of it: derived images
and their records, in a workspace and in a plain folder alike.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from ..core._errors import StorageError
from ..core._model import new_id
from ._decode import format_bytes

__all__ = ["TMP_PREFIX", "NotAFileError", "read_capped", "write_atomic"]

#: the name a file has while it is written (a workspace's repair removes leftovers)
TMP_PREFIX = ".tmp-"

_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


class NotAFileError(OSError):
    """A path that is not a regular file, or is larger than allowed.

    ``too_large`` tells the two apart; ``size`` is the size seen when it is too large.
    """

    def __init__(self, message: str, *, too_large: bool = False, size: int = 0) -> None:
        super().__init__(message)
        self.too_large = too_large
        self.size = size


def read_capped(path: str | os.PathLike[str], cap: int) -> bytes:
    """The bytes of ``path`` when it is a regular file of at most ``cap`` bytes.

    Opened without blocking (a FIFO with no writer would otherwise hang the open) and
    checked with ``fstat`` on the open descriptor, so a link swapped between check and
    read cannot slip a device in. Raises :class:`NotAFileError` with a readable reason.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(Path(path), flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file")
            raise NotAFileError(f"{kind}, not a regular file; only regular files are read")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                size = max(total, os.fstat(fd).st_size)
                raise NotAFileError(
                    f"file is {format_bytes(size)}; the limit is {format_bytes(cap)}",
                    too_large=True,
                    size=size,
                )
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place.

    ``fsync`` makes the bytes durable before the rename. A failure is a
    :class:`~nbbatch.errors.StorageError` in words, and leaves no temporary file.
    """
    tmp = path.parent / f"{TMP_PREFIX}{new_id()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(
            f"could not write {str(path)!r} ({exc.strerror or exc}); free disk space or "
            "check permissions"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
