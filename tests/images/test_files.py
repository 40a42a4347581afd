"""Writing a file atomically: one function for derived images in a workspace and in a
plain folder (``images/_files.py``; the two kept their own copies before)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbbatch.errors import StorageError
from nbbatch.images._files import TMP_PREFIX, write_atomic


@pytest.mark.parametrize("fsync", [True, False])
def test_write_atomic_replaces_the_file_whole_and_leaves_no_temporary(
    tmp_path: Path, fsync: bool
) -> None:
    target = tmp_path / "derived" / "ab" / "copy.webp"
    write_atomic(target, b"first", fsync=fsync)
    write_atomic(target, b"second, longer", fsync=fsync)
    assert target.read_bytes() == b"second, longer"
    assert [p.name for p in target.parent.iterdir()] == ["copy.webp"]


def test_a_write_that_fails_says_so_in_words_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(StorageError, match=r"could not write .*free disk space"):
        write_atomic(target, b"data")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]
