"""Prompt templates in Dynamic Prompts syntax, expanded into tasks.

The syntax and the expansion are those of the ``dynamicprompts`` library (so templates
written for the A1111 / ComfyUI extensions work unchanged): variants ``{a|b}``, weights
``{0.5::a|2::b}``, several picks ``{2$$a|b|c}`` (ordered, without repeats, exactly as
``dynamicprompts`` does it), ``__wildcards__`` read from a folder you name, variables.

``mode="combinatorial"`` yields every distinct prompt once; ``mode="random"`` draws
``n`` prompts with a seed. Before anything is expanded the number of prompts is known
(:func:`count_prompts`); more than ``cap`` (1,000 by default) is refused with
:class:`TemplateTooLargeError` unless the caller raises the cap, because a template
like ``{a|b|c|d|e} x 5`` silently turns into thousands of paid images.

Counting walks dynamicprompts' own lazy combinatorial generator and stops one past the
limit, so the count always equals what the expansion would produce (including its
de-duplication of repeated values) and never costs more than ``limit + 1`` prompts.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from collections.abc import Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..core._errors import ConfigError, InvalidPromptError, TemplateError, TemplateTooLargeError
from ..core._model import Params, Task
from ._tasklist import Skipped, TaskList

if TYPE_CHECKING:
    from dynamicprompts.commands import Command
    from dynamicprompts.wildcards import WildcardManager

__all__ = ["DEFAULT_CAP", "count_prompts", "expand"]

log = logging.getLogger("nbbatch")

#: Most prompts one template may expand to unless the caller raises ``cap``.
DEFAULT_CAP = 1_000
#: Most prompts :func:`count_prompts` walks before reporting "more than this".
COUNT_LIMIT = 100_000

Mode = Literal["combinatorial", "random"]


class _MissingWildcard(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _wildcard_manager(folder: str | os.PathLike[str] | None) -> WildcardManager:
    from dynamicprompts.wildcards import WildcardManager
    from dynamicprompts.wildcards.values import WildcardValues

    if folder is not None:
        path = Path(folder)
        if not path.is_dir():
            raise ConfigError(
                f"wildcards folder {str(path)!r} does not exist or is not a folder; "
                "pass the folder holding your __name__ .txt/.yaml/.json files"
            )

    class _StrictManager(WildcardManager):
        # dynamicprompts logs a warning and then yields the literal "__name__" forever
        # for a wildcard it cannot find (an endless stream for the combinatorial
        # sampler); refusing here turns that into a clear error instead.
        def get_values(self, wildcard: str) -> WildcardValues:
            values = super().get_values(wildcard)
            if not values:
                raise _MissingWildcard(wildcard)
            return values

    return _StrictManager(Path(folder) if folder is not None else None)


def _generator(
    template: str,
    mode: Mode,
    wildcards: str | os.PathLike[str] | None,
    seed: int | None,
) -> Iterator[str]:
    from dynamicprompts.enums import SamplingMethod
    from dynamicprompts.sampling_context import SamplingContext

    if not isinstance(template, str):
        raise TemplateError(f"a template must be text, got {type(template).__name__}")
    if mode not in ("combinatorial", "random"):
        raise ConfigError(f"mode must be 'combinatorial' or 'random', got {mode!r}")
    manager = _wildcard_manager(wildcards)
    # The same context dynamicprompts' Combinatorial/RandomPromptGenerator build, made
    # here so the generator stays lazy (their generate() returns a whole list).
    context = SamplingContext(
        wildcard_manager=manager,
        default_sampling_method=(
            SamplingMethod.COMBINATORIAL if mode == "combinatorial" else SamplingMethod.RANDOM
        ),
        rand=random.Random(seed),
    )
    try:
        command = _parse(template)
        results = context.sample_prompts(command, None)
    except Exception as exc:  # pyparsing.ParseException and friends
        raise _template_error(template, exc, wildcards) from None
    return _guarded(template, (str(r) for r in results), wildcards)


def _parse(template: str) -> Command:
    from dynamicprompts.parser.config import default_parser_config
    from dynamicprompts.parser.parse import parse

    # dynamicprompts builds (and caches) its pyparsing grammar on first use with an API
    # pyparsing 3.2 deprecates; the warning is theirs, not the user's, so keep it quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return parse(template, parser_config=default_parser_config)


def _guarded(
    template: str, results: Iterator[str], wildcards: str | os.PathLike[str] | None
) -> Iterator[str]:
    """Re-raise whatever dynamicprompts raises while sampling as a TemplateError."""
    try:
        yield from results
    except Exception as exc:
        raise _template_error(template, exc, wildcards) from None


def _template_error(
    template: str, exc: Exception, wildcards: str | os.PathLike[str] | None
) -> TemplateError:
    if isinstance(exc, _MissingWildcard):
        where = (
            f"in {str(wildcards)!r}" if wildcards is not None else "(no wildcards= folder given)"
        )
        return TemplateError(
            f"the template uses __{exc.name}__ but no wildcard file of that name was found "
            f"{where}; add {exc.name}.txt (one value per line) or fix the name"
        )
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    return TemplateError(
        f"the template could not be read ({text}). Check that every {{ has a matching }} "
        f"and wildcards look like __name__. Template: {template[:120]!r}"
    )


def count_prompts(
    template: str,
    *,
    wildcards: str | os.PathLike[str] | None = None,
    limit: int = COUNT_LIMIT,
) -> int:
    """How many distinct prompts combinatorial expansion of ``template`` gives.

    Walks at most ``limit + 1`` prompts; a template with more than ``limit`` raises
    :class:`TemplateTooLargeError` (``count`` is then a lower bound, ``exact`` false).
    """
    if not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a whole number >= 1, got {limit!r}")
    gen = _generator(template, "combinatorial", wildcards, None)
    counted = sum(1 for _ in islice(gen, limit + 1))
    if counted > limit:
        raise TemplateTooLargeError(
            f"the template expands to more than {limit:,} prompts",
            count=counted,
            cap=limit,
            exact=False,
        )
    return counted


def expand(
    template: str,
    *,
    mode: Mode = "combinatorial",
    n: int | None = None,
    seed: int | None = None,
    wildcards: str | os.PathLike[str] | None = None,
    cap: int = DEFAULT_CAP,
    params: Params | Mapping[str, Any] | None = None,
) -> TaskList:
    """Expand a Dynamic Prompts template into tasks (one per prompt), without any widget.

    >>> [t.prompt for t in nbbatch.expand("a {red|blue} car")]
    ['a red car', 'a blue car']

    ``combinatorial`` (default): every distinct prompt, refused when there are more than
    ``cap``; ``n`` then takes only the first ``n``. ``random``: ``n`` prompts (default 1)
    drawn with ``seed`` (same seed, same prompts). ``params`` apply to every task.
    Prompts that come out empty (e.g. from ``{0-1$$a|b}``) are skipped and listed in
    ``skipped``.
    """
    if not isinstance(cap, int) or cap < 1:
        raise ConfigError(f"cap must be a whole number >= 1, got {cap!r}")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ConfigError(f"n must be a whole number >= 1, got {n!r}")
    base = params if isinstance(params, Params) else Params.from_dict(params)
    prompts: list[str]
    if mode == "random":
        wanted = 1 if n is None else n
        if wanted > cap:
            raise TemplateTooLargeError(
                f"{wanted:,} random prompts asked for; the cap is {cap:,}. "
                f"Pass cap={wanted} to allow it.",
                count=wanted,
                cap=cap,
                exact=True,
            )
        prompts = list(islice(_generator(template, "random", wildcards, seed), wanted))
    else:
        gen = _generator(template, "combinatorial", wildcards, None)
        if n is not None:
            prompts = list(islice(gen, min(n, cap)))
        else:
            prompts = list(islice(gen, cap + 1))
            if len(prompts) > cap:
                raise TemplateTooLargeError(
                    f"the template expands to more than {cap:,} prompts (a combination "
                    f"explosion). Pass cap=<bigger> to allow it, n=<k> to take the first k, "
                    f"or mode='random' with n=<k> to sample k.",
                    count=len(prompts),
                    cap=cap,
                    exact=False,
                )
    tasks = TaskList(source=template)
    for i, prompt in enumerate(prompts, 1):
        try:
            tasks.append(Task(prompt=prompt, params=base))
        except InvalidPromptError as exc:
            tasks.skipped.append(Skipped(f"prompt {i}", str(exc)))
    if tasks.skipped:
        log.info("template %r: %d empty prompt(s) skipped", template[:60], len(tasks.skipped))
    return tasks
