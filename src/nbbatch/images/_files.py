"""Reading a file someone named: only a regular file, never more than a cap.

A path from a user (an upload picked by name, a prompts file, an image folder) may be a
named pipe, a device or a link to one: opening a FIFO with no writer blocks forever,
and ``/dev/zero`` never ends. These read nothing from such paths, and stop reading a
regular file as soon as it passes the cap (its size may change while it is read).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._decode import format_bytes

__all__ = ["NotAFileError", "read_capped"]

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
