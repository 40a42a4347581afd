"""Tasks from files: prompt lists (.txt / .csv / .jsonl) and folders of images (img2img).

**.txt** -- one prompt per line, as in A1111's "Prompts from file or textbox" script.
Blank lines and lines starting with ``#`` are skipped. A line may carry options after
the prompt, shell-quoted: ``a red fox --seed 5 --steps 20 --negative_prompt "blurry"``.
Options understood (A1111 names): ``--prompt``, ``--negative_prompt``, ``--seed``,
``--steps``, ``--cfg_scale``, ``--sampler_name`` (or ``--sampler``), ``--width`` and
``--height`` (together), ``--n_iter`` and ``--batch_size`` (images per task = their
product, at most 16), ``--sd_model`` (or ``--model``), ``--denoising_strength`` (or
``--strength``). Other options are reported with their line number and ignored; a line
whose options cannot be read (bad number, missing value, unbalanced quote) is skipped
and reported -- unlike A1111, which then sends the whole line, options and all, as the
prompt.

**.csv / .jsonl** -- one task per row; columns ``prompt`` (required), ``negative_prompt``,
``seed``, ``size`` (``"1024x768"``) or ``width`` + ``height``, ``steps``, ``cfg_scale``,
``sampler``, ``model``, ``strength``, ``n``, and ``image`` (a path relative to the file;
in JSONL also a list of paths) which becomes a reference (needs ``workspace=``). Image
paths must stay inside the file's folder (or ``image_root=``): absolute paths, ``..``
and links leading out are refused. A row with a bad value is skipped and reported with
its row and line number; unknown columns are reported once.

Only regular files are read, and never more than a byte cap: a FIFO, a device or a link
to ``/dev/zero`` named like a prompts file, image or caption is refused, not waited on
or read until memory runs out.

**Folder of images** -- :func:`tasks_from_folder`: one unified prompt x every image
(JPG/PNG/GIF/WebP, at most 50 per batch, at most 10 MiB each by default), with a per-image
override from a sidecar caption file of the same name (``cat.png`` + ``cat.txt``). Every
refused file is listed in ``skipped`` with its reason; nothing is raised for one bad file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..core._errors import ConfigError, ImageRejectedError, PromptSourceError
from ..core._model import MAX_PROMPT_CHARS, Params, Reference, Task, check_prompt
from ..images._decode import UPLOAD_LIMITS, ImageLimits
from ..images._files import NotAFileError as _NotAFile
from ..images._files import read_capped as _read_capped
from ._tasklist import Skipped, TaskList

if TYPE_CHECKING:
    from ..engine._store import Workspace

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_FOLDER_IMAGES",
    "ParsedLine",
    "parse_prompt_line",
    "read_prompts",
    "tasks_from_folder",
]

#: Images per folder batch unless the caller raises it (seed 001).
MAX_FOLDER_IMAGES = 50
#: File name endings taken from an image folder; the content is checked as well.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp")
#: A prompts file larger than this is refused before reading (a prompt list, not a dump).
MAX_SOURCE_BYTES = 50 * 1024 * 1024
#: A caption file is one prompt: anything longer than this is not a caption.
MAX_CAPTION_BYTES = 4 * MAX_PROMPT_CHARS

# ------------------------------------------------------------------ one .txt line

# An option starts at "--name" preceded by the start of the line or white space.
_OPTION_START = re.compile(r"(?:^|(?<=\s))--[A-Za-z_]")


@dataclass(frozen=True)
class ParsedLine:
    """A prompt line: its prompt, the parameters its options set, and notes on it.

    ``changes`` holds only what the options set (to lay over default parameters);
    ``params`` is the same as a :class:`Params`.
    """

    prompt: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def params(self) -> Params:
        return Params(**self.changes)


def _to_int(name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"--{name} needs a whole number, got {value!r}") from None


def _to_float(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError(f"--{name} needs a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"--{name} needs a finite number, got {value!r}")
    return number


_ALIASES = {
    "sampler": "sampler_name",
    "model": "sd_model",
    "strength": "denoising_strength",
    "negative": "negative_prompt",
}
_KNOWN_OPTIONS = frozenset(
    {
        "prompt",
        "negative_prompt",
        "seed",
        "steps",
        "cfg_scale",
        "sampler_name",
        "width",
        "height",
        "n_iter",
        "batch_size",
        "sd_model",
        "denoising_strength",
    }
)


def parse_prompt_line(line: str, *, where: str = "line") -> ParsedLine:
    """Read one prompt line with optional A1111-style options (see the module doc).

    Raises :class:`PromptSourceError` (``where`` names the line) when the line cannot be
    used; unknown options do not raise, they come back in ``warnings``.
    """
    if not isinstance(line, str):
        raise PromptSourceError(f"{where}: expected text, got {type(line).__name__}", where=where)
    if len(line) > MAX_PROMPT_CHARS + 10_000:
        raise PromptSourceError(
            f"{where}: the line has {len(line):,} characters; prompts are limited to "
            f"{MAX_PROMPT_CHARS:,}",
            where=where,
        )
    match = _OPTION_START.search(line)
    head = line if match is None else line[: match.start()]
    options: dict[str, str] = {}
    notes: list[str] = []
    if match is not None:
        try:
            tokens = shlex.split(line[match.start() :], comments=False, posix=True)
        except ValueError as exc:
            raise PromptSourceError(
                f"{where}: the options could not be read ({exc}); check the quotes",
                where=where,
            ) from None
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if not token.startswith("--") or len(token) == 2:
                raise PromptSourceError(
                    f"{where}: expected an option like --seed, got {token!r}; put the prompt "
                    "before the options or quote it with --prompt",
                    where=where,
                )
            name = token[2:]
            if i + 1 >= len(tokens) or (tokens[i + 1].startswith("--") and len(tokens[i + 1]) > 2):
                raise PromptSourceError(f"{where}: option --{name} needs a value", where=where)
            name = _ALIASES.get(name, name)
            if name in options:
                notes.append(f"{where}: --{name} given twice; the last value is used")
            options[name] = tokens[i + 1]
            i += 2
    unknown = sorted(k for k in options if k not in _KNOWN_OPTIONS)
    for name in unknown:
        notes.append(f"{where}: unknown option --{name} ignored")
        del options[name]
    prompt_text = head
    if "prompt" in options:
        if head.strip():
            notes.append(f"{where}: both a leading prompt and --prompt; --prompt is used")
        prompt_text = options.pop("prompt")
    try:
        prompt = check_prompt(prompt_text)
        changes = _line_changes(options)
        Params(**changes)  # validates ranges (steps, seed, strength, ...)
    except (ValueError, ConfigError) as exc:  # ConfigError covers InvalidPromptError
        raise PromptSourceError(f"{where}: {exc}", where=where) from None
    return ParsedLine(prompt, changes, tuple(notes))


def _line_changes(options: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "negative_prompt" in options:
        values["negative_prompt"] = options["negative_prompt"].strip() or None
    if "seed" in options:
        values["seed"] = _to_int("seed", options["seed"])
    if "steps" in options:
        values["steps"] = _to_int("steps", options["steps"])
    if "cfg_scale" in options:
        values["cfg_scale"] = _to_float("cfg_scale", options["cfg_scale"])
    if "sampler_name" in options:
        values["sampler"] = options["sampler_name"].strip() or None
    if "sd_model" in options:
        values["model"] = options["sd_model"].strip() or None
    if "denoising_strength" in options:
        values["strength"] = _to_float("denoising_strength", options["denoising_strength"])
    if ("width" in options) != ("height" in options):
        raise ValueError("give --width and --height together")
    if "width" in options:
        w = _to_int("width", options["width"])
        h = _to_int("height", options["height"])
        if not (1 <= w <= 99_999 and 1 <= h <= 99_999):
            raise ValueError(f"--width/--height must be positive, got {w}x{h}")
        values["size"] = f"{w}x{h}"
    if "n_iter" in options or "batch_size" in options:
        n = 1
        for name in ("n_iter", "batch_size"):
            if name in options:
                count = _to_int(name, options[name])
                if count < 1:
                    raise ValueError(f"--{name} must be at least 1, got {count}")
                n *= count
        if n > 16:
            raise ValueError(f"--n_iter x --batch_size is {n} images; the limit per task is 16")
        values["n"] = n
    return values


# ------------------------------------------------------------------ files


def read_prompts(
    path: str | os.PathLike[str],
    *,
    params: Params | Mapping[str, Any] | None = None,
    workspace: Workspace | None = None,
    encoding: str = "utf-8",
    image_root: str | os.PathLike[str] | None = None,
) -> TaskList:
    """Tasks from a ``.txt``, ``.csv`` or ``.jsonl`` prompts file (see the module doc).

    ``params`` are the defaults; a line's options or a row's columns override them.
    ``image`` paths are read relative to, and only from inside, ``image_root`` (default:
    the file's folder).
    Returns a :class:`TaskList`; ``skipped`` lists the lines/rows that were refused and
    why, ``warnings`` the options/columns that were ignored.
    """
    p = Path(path)
    base = params if isinstance(params, Params) else Params.from_dict(params)
    suffix = p.suffix.lower()
    readers: dict[str, Callable[[str, Path, Params, Workspace | None], TaskList]] = {
        ".txt": _read_txt,
        ".csv": _read_csv,
        ".jsonl": _read_jsonl,
    }
    reader = readers.get(suffix)
    if reader is None:
        raise PromptSourceError(
            f"{p.name}: unknown prompts file type {suffix or '(none)'!r}; use .txt (one prompt "
            "per line), .csv or .jsonl",
            where=str(p),
        )
    try:
        data = _read_capped(p, MAX_SOURCE_BYTES)
    except FileNotFoundError:
        raise PromptSourceError(f"{p}: no such file", where=str(p)) from None
    except _NotAFile as exc:
        raise PromptSourceError(
            f"{p.name}: {exc} (too big or not a plain prompts file)", where=str(p)
        ) from None
    except OSError as exc:
        raise PromptSourceError(f"{p}: cannot read ({exc.strerror or exc})", where=str(p)) from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise PromptSourceError(
            f"{p.name}: not {encoding} text ({exc.reason} at byte {exc.start}); save it as "
            "UTF-8 or pass encoding=",
            where=str(p),
        ) from None
    except LookupError:
        raise ConfigError(f"unknown text encoding {encoding!r}") from None
    root = Path(image_root) if image_root is not None else p.parent
    tasks = reader(text.lstrip("\ufeff"), root, base, workspace)
    tasks.source = str(p)
    return tasks


def _read_txt(text: str, base_dir: Path, base: Params, workspace: Workspace | None) -> TaskList:
    out = TaskList()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        try:
            parsed = parse_prompt_line(line, where=where)
        except PromptSourceError as exc:
            out.skipped.append(Skipped(where, _without_where(str(exc), where)))
            continue
        out.warnings.extend(parsed.warnings)
        out.append(Task(prompt=parsed.prompt, params=base.replace(**parsed.changes)))
    return out


def _without_where(message: str, where: str) -> str:
    prefix = f"{where}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


_COLUMNS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "negative": "negative_prompt",
    "seed": "seed",
    "size": "size",
    "width": "width",
    "height": "height",
    "steps": "steps",
    "cfg_scale": "cfg_scale",
    "cfg": "cfg_scale",
    "sampler": "sampler",
    "sampler_name": "sampler",
    "model": "model",
    "strength": "strength",
    "denoising_strength": "strength",
    "n": "n",
    "image": "image",
    "image_path": "image",
    "images": "image",
}


def _read_csv(text: str, base_dir: Path, base: Params, workspace: Workspace | None) -> TaskList:
    out = TaskList()
    # The delimiter comes from the header line only (the first of , ; tab found there):
    # csv.Sniffer guesses from prompt text too, and prompts are full of commas.
    first = next(iter(text.splitlines()), "")
    delimiter = next((d for d in (",", ";", "\t") if d in first), ",")
    # newline="": the csv module finds the line ends itself (\r\n, \n or a lone \r,
    # which a plain StringIO handed it inside a field: "new-line character seen")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        names = reader.fieldnames or []
    except csv.Error as exc:
        raise PromptSourceError(f"the CSV header is malformed: {exc}", where="line 1") from None
    header = [h.strip().lower() for h in names if h is not None]
    if "prompt" not in header:
        raise PromptSourceError(
            f"the CSV has no 'prompt' column (columns: {', '.join(header) or 'none'})",
            where="line 1",
        )
    unknown = [h for h in header if h not in _COLUMNS]
    if unknown:
        out.warnings.append(f"unknown column(s) ignored: {', '.join(unknown)}")
    row_number = 0
    try:
        for row in reader:
            row_number += 1
            where = f"row {row_number} (line {reader.line_num})"
            clean = {
                (k or "").strip().lower(): v
                for k, v in row.items()
                if k is not None and v not in (None, "")
            }
            if None in row:
                out.warnings.append(f"{where}: more values than columns; extras ignored")
            if not clean:
                continue
            _add_row(out, clean, where, base_dir, base, workspace)
    except csv.Error as exc:
        out.skipped.append(Skipped(f"line {reader.line_num}", f"the CSV is malformed: {exc}"))
    return out


def _read_jsonl(text: str, base_dir: Path, base: Params, workspace: Workspace | None) -> TaskList:
    out = TaskList()
    unknown: set[str] = set()
    row_number = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        row_number += 1
        where = f"row {row_number} (line {number})"
        try:
            row = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            out.skipped.append(Skipped(where, f"not valid JSON ({exc})"))
            continue
        if isinstance(row, str):
            row = {"prompt": row}
        if not isinstance(row, dict):
            out.skipped.append(
                Skipped(where, f"expected an object with a 'prompt', got {type(row).__name__}")
            )
            continue
        row = {str(k).lower(): v for k, v in row.items() if v is not None}
        unknown.update(k for k in row if k not in _COLUMNS)
        _add_row(out, row, where, base_dir, base, workspace)
    if unknown:
        out.warnings.append(f"unknown field(s) ignored: {', '.join(sorted(unknown))}")
    return out


def _add_row(
    out: TaskList,
    row: Mapping[str, Any],
    where: str,
    base_dir: Path,
    base: Params,
    workspace: Workspace | None,
) -> None:
    try:
        task = _row_task(row, base_dir, base, workspace)
    except (ValueError, ConfigError, PromptSourceError, ImageRejectedError) as exc:
        out.skipped.append(Skipped(where, str(exc)))
        return
    out.append(task)


def _field_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be a whole number, got {value!r}")


def _field_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if number != number or abs(number) == float("inf"):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _shown(text: str, limit: int = 80) -> str:
    """A quoted, bounded form of a value from the file, for messages."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _field_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    return value.strip()


def _row_task(
    row: Mapping[str, Any], base_dir: Path, base: Params, workspace: Workspace | None
) -> Task:
    fields = {_COLUMNS[k]: v for k, v in row.items() if k in _COLUMNS}
    if "prompt" not in fields:
        raise ValueError("no prompt")
    prompt = check_prompt(_field_str("prompt", fields["prompt"]))
    changes: dict[str, Any] = {}
    if "negative_prompt" in fields:
        changes["negative_prompt"] = (
            _field_str("negative_prompt", fields["negative_prompt"]) or None
        )
    for key in ("seed", "steps", "n"):
        if key in fields:
            changes[key] = _field_int(key, fields[key])
    for key in ("cfg_scale", "strength"):
        if key in fields:
            changes[key] = _field_float(key, fields[key])
    for key in ("sampler", "model"):
        if key in fields:
            changes[key] = _field_str(key, fields[key]) or None
    if "size" in fields:
        changes["size"] = _field_str("size", fields["size"]).lower().replace(" ", "")
    elif "width" in fields or "height" in fields:
        if "width" not in fields or "height" not in fields:
            raise ValueError("give width and height together (or size like 1024x768)")
        w, h = _field_int("width", fields["width"]), _field_int("height", fields["height"])
        changes["size"] = f"{w}x{h}"
    params = base.replace(**changes)
    references: list[Reference] = []
    if "image" in fields:
        value = fields["image"]
        paths = value if isinstance(value, list) else [value]
        if workspace is None:
            raise ValueError("this row names an image; pass workspace= to store references")
        root = base_dir.resolve()
        for item in paths:
            rel = _field_str("image", item)
            if not rel:
                continue
            # Paths are relative to the file's folder and must stay inside it: a shared
            # prompts file must not be able to pull in ~/.ssh/id_rsa.png or /etc/...
            if os.path.isabs(rel) or "\x00" in rel:
                raise ValueError(
                    f"image {_shown(rel)} is an absolute path; give it relative to "
                    f"{str(base_dir)!r} (or pass image_root=)"
                )
            image_path = (base_dir / rel).resolve()
            if not image_path.is_relative_to(root):
                raise ValueError(
                    f"image {_shown(rel)} points outside {str(base_dir)!r}; only images "
                    "inside the prompts file's folder (or image_root=) are read"
                )
            try:
                data = _read_capped(image_path, UPLOAD_LIMITS.max_bytes)
            except FileNotFoundError:
                raise ValueError(
                    f"image {_shown(rel)} not found (looked in {str(base_dir)!r})"
                ) from None
            except OSError as exc:  # _NotAFile included
                raise ValueError(f"image {_shown(rel)}: {exc}") from None
            references.append(workspace.add_reference(data, name=image_path.name))
    return Task(prompt=prompt, params=params, references=references)


# ------------------------------------------------------------------ image folders

CaptionMode = Literal["replace", "append", "ignore"]


def tasks_from_folder(
    folder: str | os.PathLike[str],
    prompt: str | None = None,
    *,
    workspace: Workspace,
    params: Params | Mapping[str, Any] | None = None,
    captions: CaptionMode = "replace",
    max_images: int = MAX_FOLDER_IMAGES,
    limits: ImageLimits = UPLOAD_LIMITS,
) -> TaskList:
    """One img2img task per image in ``folder``: ``prompt`` x every image.

    A caption file next to an image (``cat.png`` + ``cat.txt``) overrides the unified
    prompt for that image (``captions="replace"``), is appended to it (``"append"``) or
    is not read (``"ignore"``). Images are checked (type by content, at most
    ``limits.max_bytes`` each, pixel bombs refused) and stored as references in
    ``workspace``; at most ``max_images`` are taken (in name order). Every file that
    did not become a task is in ``skipped`` with its reason.
    """
    root = Path(folder)
    if not root.is_dir():
        raise PromptSourceError(f"{str(root)!r} is not a folder", where=str(root))
    if captions not in ("replace", "append", "ignore"):
        raise ConfigError(f"captions must be 'replace', 'append' or 'ignore', got {captions!r}")
    if not isinstance(max_images, int) or max_images < 1:
        raise ConfigError(f"max_images must be a whole number >= 1, got {max_images!r}")
    unified = check_prompt(prompt) if prompt is not None else None
    base = params if isinstance(params, Params) else Params.from_dict(params)
    entries = sorted(
        (e for e in root.iterdir() if not e.name.startswith(".")), key=lambda e: e.name.lower()
    )
    stems_with_images = {e.stem.lower() for e in entries if e.suffix.lower() in IMAGE_EXTENSIONS}
    # caption files by lower-cased stem, so cat.PNG finds cat.txt (and CAT.TXT)
    sidecars = {e.stem.lower(): e for e in entries if e.suffix.lower() == ".txt"}
    out = TaskList(source=str(root))
    for entry in entries:
        name = entry.name
        if entry.is_dir():
            out.skipped.append(Skipped(name, "a folder (sub-folders are not searched)"))
            continue
        suffix = entry.suffix.lower()
        if suffix == ".txt" and entry.stem.lower() in stems_with_images:
            continue  # a caption, read with its image
        if suffix not in IMAGE_EXTENSIONS:
            out.skipped.append(
                Skipped(
                    name,
                    f"not an accepted image type ({suffix or 'no extension'}); accepted: "
                    + ", ".join(IMAGE_EXTENSIONS),
                )
            )
            continue
        if len(out) >= max_images:
            out.skipped.append(
                Skipped(
                    name,
                    f"over the limit of {max_images} images per batch; pass max_images= or "
                    "split the folder",
                )
            )
            continue
        try:
            sidecar = sidecars.get(entry.stem.lower()) if captions != "ignore" else None
            text = _prompt_for(sidecar, unified, captions, out)
        except PromptSourceError as exc:
            out.skipped.append(Skipped(name, str(exc)))
            continue
        try:
            data = _read_capped(entry, limits.max_bytes)
            ref = workspace.add_reference(data, name=name, limits=limits)
        except ImageRejectedError as exc:
            reason = str(exc)
            out.skipped.append(Skipped(name, reason.removeprefix(f"{name}: ")))
            continue
        except _NotAFile as exc:
            out.skipped.append(Skipped(name, str(exc)))
            continue
        except OSError as exc:
            out.skipped.append(Skipped(name, f"cannot read ({exc.strerror or exc})"))
            continue
        out.append(Task(prompt=text, params=base, references=[ref]))
    return out


def _prompt_for(sidecar: Path | None, unified: str | None, mode: CaptionMode, out: TaskList) -> str:
    caption: str | None = None
    if sidecar is not None:
        try:
            raw = _read_capped(sidecar, MAX_CAPTION_BYTES).decode("utf-8")
            caption = " ".join(raw.split()) or None
        except (OSError, UnicodeDecodeError) as exc:
            out.warnings.append(f"{sidecar.name}: caption not read ({exc}); prompt used")
    if caption is not None and len(caption) > MAX_PROMPT_CHARS:
        raise PromptSourceError(
            f"its caption file has {len(caption):,} characters (limit {MAX_PROMPT_CHARS:,})"
        )
    if caption is not None and (mode == "replace" or unified is None):
        return caption
    if caption is not None and unified is not None:
        return check_prompt(f"{unified}, {caption}")
    if unified is None:
        raise PromptSourceError("no prompt: give one, or a caption file next to the image")
    return unified
