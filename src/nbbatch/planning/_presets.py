"""Presets: named prompt snippets (quality, style, lighting, ...) kept with a workspace.

A preset is a short piece of prompt text with a category, an optional negative part
and an on/off switch. Enabled presets are appended to a prompt (``presets.apply(p)``) in
list order, or one preset's text is used as the unified prompt (``presets.prompt(name)``).
A preset text holding ``{prompt}`` wraps the prompt instead of being appended (the A1111
``styles.csv`` convention), so A1111 style files import unchanged.

**Where they live.** ``Presets.load(workspace)`` reads ``presets.json`` in the workspace
folder, or starts from the default set shipped with nbbatch when there is none yet;
every change is written back at once. A JSON file (written to a temporary name, fsynced,
then renamed over the old one, so a crash leaves the old or the new file, never half of
one) rather than a table in the workspace database, because: the database schema
belongs to the run journal and its migrations; presets are a few KB that people like
to read, diff and copy between workspaces; and the file is the very format of
:meth:`Presets.export` / :meth:`Presets.import_file`. Two processes editing presets at
the same time: the last write wins.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core._errors import ConfigError
from ..core._model import Task, check_prompt, new_id

if TYPE_CHECKING:
    from ..engine._store import Workspace

__all__ = ["PRESETS_FILE", "Preset", "Presets"]

PRESETS_FILE = "presets.json"
_FORMAT = "nbbatch-presets"
_MAX_NAME = 80
_MAX_TEXT = 2_000
_MAX_PRESETS = 1_000


@dataclass(frozen=True)
class Preset:
    """One named snippet. ``negative`` is appended to the negative prompt when enabled."""

    name: str
    text: str
    category: str = "style"
    negative: str = ""
    enabled: bool = False

    def __post_init__(self) -> None:
        for label, value, limit in (
            ("name", self.name, _MAX_NAME),
            ("text", self.text, _MAX_TEXT),
            ("category", self.category, _MAX_NAME),
            ("negative", self.negative, _MAX_TEXT),
        ):
            if not isinstance(value, str):
                raise ConfigError(f"preset {label} must be text, got {type(value).__name__}")
            if len(value) > limit:
                raise ConfigError(f"preset {label} is {len(value)} characters; limit {limit}")
        if not self.name.strip():
            raise ConfigError("a preset needs a name")
        if not self.text.strip() and not self.negative.strip():
            raise ConfigError(f"preset {self.name!r} has no text")
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"preset enabled must be true or false, got {self.enabled!r}")
        object.__setattr__(self, "name", self.name.strip())
        object.__setattr__(self, "text", self.text.strip())
        object.__setattr__(self, "category", self.category.strip().lower() or "style")
        object.__setattr__(self, "negative", self.negative.strip())

    def apply(self, prompt: str) -> str:
        """``prompt`` with this preset: wrapped where the text has ``{prompt}``, else appended."""
        if not self.text:
            return prompt
        if "{prompt}" in self.text:
            return self.text.replace("{prompt}", prompt)
        return f"{prompt}, {self.text}" if prompt else self.text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preset:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a preset must be an object, got {type(data).__name__}")
        known = {"name", "text", "category", "negative", "enabled"}
        values = {k: v for k, v in data.items() if k in known}
        if "name" not in values or "text" not in values:
            raise ConfigError(f"a preset needs 'name' and 'text', got keys {sorted(data)}")
        return cls(**values)


def _key(name: str) -> str:
    return name.strip().casefold()


class Presets:
    """An ordered collection of presets; saved to ``path`` after every change when set."""

    def __init__(
        self, presets: Iterable[Preset] = (), *, path: str | os.PathLike[str] | None = None
    ):
        self.path = Path(path) if path is not None else None
        self._items: list[Preset] = []
        for p in presets:
            self._check_new(p.name)
            self._items.append(p)

    # ------------------------------------------------------------ loading
    @classmethod
    def defaults(cls) -> Presets:
        """The default set shipped with nbbatch (not bound to any file)."""
        raw = (
            resources.files("nbbatch.planning")
            .joinpath("_data/default_presets.json")
            .read_text("utf-8")
        )
        return cls(_parse_document(json.loads(raw), "the built-in presets"))

    @classmethod
    def load(cls, where: Workspace | str | os.PathLike[str]) -> Presets:
        """The presets of a workspace (or of a presets file); the defaults if none yet."""
        path = _presets_path(where)
        if not path.exists():
            fresh = cls.defaults()
            fresh.path = path
            return fresh
        return cls(_read_file(path), path=path)

    # ------------------------------------------------------------ views
    def __iter__(self) -> Iterator[Preset]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    def __getitem__(self, name: str) -> Preset:
        index = self._find(name)
        if index is None:
            raise KeyError(name)
        return self._items[index]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._items]

    @property
    def enabled(self) -> list[Preset]:
        return [p for p in self._items if p.enabled]

    def categories(self) -> list[str]:
        """Categories in first-use order."""
        return list(dict.fromkeys(p.category for p in self._items))

    def by_category(self, category: str) -> list[Preset]:
        return [p for p in self._items if p.category == category.strip().lower()]

    def __repr__(self) -> str:
        where = f" in '{self.path}'" if self.path else ""
        return f"<Presets{where}: {len(self)} ({len(self.enabled)} enabled)>"

    # ------------------------------------------------------------ editing
    def add(
        self,
        name: str,
        text: str,
        *,
        category: str = "style",
        negative: str = "",
        enabled: bool = False,
        index: int | None = None,
    ) -> Preset:
        """Add a preset (at the end, or at ``index``); names are unique, ignoring case."""
        preset = Preset(name, text, category, negative, enabled)
        self._check_new(preset.name)
        if len(self._items) >= _MAX_PRESETS:
            raise ConfigError(f"at most {_MAX_PRESETS} presets; remove some first")
        self._items.insert(len(self._items) if index is None else index, preset)
        self._changed()
        return preset

    def edit(self, name: str, /, **changes: Any) -> Preset:
        """Change fields of a preset (``name``, ``text``, ``category``, ``negative``,
        ``enabled``); renaming to another preset's name is refused."""
        index = self._index(name)
        unknown = set(changes) - {"name", "text", "category", "negative", "enabled"}
        if unknown:
            raise ConfigError(f"unknown preset field(s) {sorted(unknown)}")
        updated = replace(self._items[index], **changes)
        if _key(updated.name) != _key(name):
            self._check_new(updated.name)
        self._items[index] = updated
        self._changed()
        return updated

    def remove(self, name: str) -> Preset:
        removed = self._items.pop(self._index(name))
        self._changed()
        return removed

    def move(self, name: str, index: int) -> None:
        """Put a preset at position ``index`` (0 = first; negative counts from the end)."""
        current = self._index(name)
        size = len(self._items)
        if not isinstance(index, int) or not -size <= index < size:
            raise ConfigError(f"index {index!r} is outside 0..{size - 1}")
        preset = self._items.pop(current)
        self._items.insert(index % size, preset)
        self._changed()

    def reorder(self, names: Sequence[str]) -> None:
        """Put the presets in the order of ``names`` (all of them, each once)."""
        if sorted(map(_key, names)) != sorted(map(_key, self.names)):
            raise ConfigError("reorder needs every preset name exactly once")
        self._items = [self._items[self._index(n)] for n in names]
        self._changed()

    def enable(self, *names: str, on: bool = True) -> None:
        indexes = [self._index(n) for n in names]  # all or nothing
        for i in indexes:
            self._items[i] = replace(self._items[i], enabled=on)
        self._changed()

    def disable(self, *names: str) -> None:
        self.enable(*names, on=False)

    def disable_all(self) -> None:
        self._items = [replace(p, enabled=False) for p in self._items]
        self._changed()

    def reset(self) -> None:
        """Back to the default set shipped with nbbatch."""
        self._items = list(Presets.defaults())
        self._changed()

    # ------------------------------------------------------------ applying
    def apply(self, prompt: str, *, names: Sequence[str] | None = None) -> str:
        """``prompt`` with the enabled presets (or those in ``names``), in list order."""
        text = prompt.strip() if isinstance(prompt, str) else prompt
        for preset in self._chosen(names):
            text = preset.apply(text)
        return check_prompt(text)

    def negative(
        self, existing: str | None = None, *, names: Sequence[str] | None = None
    ) -> str | None:
        """``existing`` negative prompt plus the chosen presets' negative parts."""
        parts = [existing.strip()] if existing and existing.strip() else []
        parts += [p.negative for p in self._chosen(names) if p.negative]
        return ", ".join(parts) or None

    def prompt(self, name: str) -> str:
        """One preset's text as a unified prompt (e.g. for a folder of images)."""
        preset = self._items[self._index(name)]
        text = re.sub(r"\s+,", ",", preset.text.replace("{prompt}", ""))
        return check_prompt(" ".join(text.split()).strip(" ,"))

    def apply_to(self, tasks: Iterable[Task], *, names: Sequence[str] | None = None) -> list[Task]:
        """New tasks with the presets applied to prompt and negative prompt."""
        out = []
        for t in tasks:
            params = t.params.replace(
                negative_prompt=self.negative(t.params.negative_prompt, names=names)
            )
            out.append(
                Task(
                    prompt=self.apply(t.prompt, names=names),
                    params=params,
                    references=list(t.references),
                    provider=t.provider,
                    parent_id=t.parent_id,
                    original_prompt=t.original_prompt,
                )
            )
        return out

    # ------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the presets (to ``path``, default the bound file) atomically."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ConfigError("these presets are not bound to a file; pass a path")
        document = {
            "format": _FORMAT,
            "version": 1,
            "presets": [p.to_dict() for p in self._items],
        }
        data = json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8")
        _atomic_write(target, data)
        return target

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write every preset to a JSON file another workspace can import."""
        return self.save(path)

    def import_file(self, path: str | os.PathLike[str], *, replace_all: bool = False) -> int:
        """Add presets from a file (this JSON format, or an A1111 ``styles.csv``).

        Presets whose name exists are overwritten in place; new ones are appended.
        ``replace_all`` drops the current presets first. Returns how many were read.
        The file is fully validated before anything changes.
        """
        incoming = _read_file(Path(path))
        seen: set[str] = set()
        for p in incoming:
            if _key(p.name) in seen:
                raise ConfigError(f"{Path(path).name}: preset {p.name!r} appears twice")
            seen.add(_key(p.name))
        if replace_all:
            self._items = []
        for p in incoming:
            index = self._find(p.name)
            if index is None:
                self._items.append(p)
            else:
                self._items[index] = p
        if len(self._items) > _MAX_PRESETS:
            raise ConfigError(f"at most {_MAX_PRESETS} presets")
        self._changed()
        return len(incoming)

    # ------------------------------------------------------------ internals
    def _find(self, name: str) -> int | None:
        key = _key(name)
        for i, p in enumerate(self._items):
            if _key(p.name) == key:
                return i
        return None

    def _index(self, name: str) -> int:
        index = self._find(name)
        if index is None:
            known = ", ".join(self.names[:10]) + (" ..." if len(self) > 10 else "")
            raise ConfigError(f"no preset named {name!r} (presets: {known or 'none'})")
        return index

    def _check_new(self, name: str) -> None:
        if self._find(name) is not None:
            raise ConfigError(
                f"a preset named {name!r} already exists; edit it or pick another name"
            )

    def _chosen(self, names: Sequence[str] | None) -> list[Preset]:
        if names is None:
            return self.enabled
        wanted = {_key(n) for n in names}
        for n in names:
            self._index(n)
        return [p for p in self._items if _key(p.name) in wanted]

    def _changed(self) -> None:
        if self.path is not None:
            self.save()


def _presets_path(where: Workspace | str | os.PathLike[str]) -> Path:
    from ..engine._store import Workspace

    if isinstance(where, Workspace):
        return where.path / PRESETS_FILE
    path = Path(where)
    return path / PRESETS_FILE if path.is_dir() else path


def _parse_document(document: Any, label: str) -> list[Preset]:
    if isinstance(document, list):
        items = document
    elif isinstance(document, dict) and isinstance(document.get("presets"), list):
        if document.get("format", _FORMAT) != _FORMAT:
            raise ConfigError(f"{label} is not an nbbatch presets file")
        items = document["presets"]
    else:
        raise ConfigError(f'{label}: expected {{"presets": [...]}}')
    out = []
    for i, item in enumerate(items, 1):
        try:
            out.append(Preset.from_dict(item))
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{label}: preset {i}: {exc}") from None
    return out


def _read_file(path: Path) -> list[Preset]:
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such presets file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    if path.suffix.lower() == ".csv":
        return _read_styles_csv(raw, path.name)
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{path.name}: not valid JSON ({exc})") from None
    return _parse_document(document, path.name)


def _read_styles_csv(raw: str, label: str) -> list[Preset]:
    """A1111 ``styles.csv``: columns name, prompt, negative_prompt."""
    reader = csv.DictReader(io.StringIO(raw))
    if not reader.fieldnames or "name" not in reader.fieldnames:
        raise ConfigError(f"{label}: expected columns name, prompt, negative_prompt")
    out = []
    for row in reader:
        name = (row.get("name") or "").strip()
        text = (row.get("prompt") or "").strip()
        negative = (row.get("negative_prompt") or "").strip()
        if not name or name == "None" or not (text or negative):
            continue
        try:
            out.append(Preset(name, text, "style", negative))
        except ConfigError as exc:
            raise ConfigError(f"{label}: line {reader.line_num}: {exc}") from None
    return out


def _atomic_write(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{new_id()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(
            f"could not save presets to {str(target)!r} ({exc.strerror or exc})"
        ) from None
