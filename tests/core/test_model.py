"""Task lifecycle, parameter validation and prompt checks."""

from __future__ import annotations

import json

import pytest

from nbbatch import Params, Task
from nbbatch import TaskStatus as S
from nbbatch.core._model import ALLOWED_TRANSITIONS, MAX_PROMPT_CHARS, check_prompt, clean_text
from nbbatch.errors import (
    ConfigError,
    InvalidPromptError,
    InvalidTransitionError,
)
from tests.support import CLEAN, HOSTILE


def test_happy_path_transitions_stamp_times() -> None:
    task = Task("a red car")
    task.transition(S.QUEUED, now=1.0)
    task.transition(S.RUNNING, now=2.0)
    task.transition(S.SUCCEEDED, now=5.0)
    assert (task.started_at, task.finished_at, task.duration) == (2.0, 5.0, 3.0)


@pytest.mark.parametrize("start", list(S))
def test_every_illegal_transition_raises(start: S) -> None:
    for target in S:
        task = Task("x", status=start)
        if target in ALLOWED_TRANSITIONS[start]:
            task.transition(target)
            assert task.status is target
        else:
            with pytest.raises(InvalidTransitionError, match=f"from {start.value} to"):
                task.transition(target)
            assert task.status is start


def test_succeeded_is_final_and_retry_clears_the_error() -> None:
    task = Task("x", status=S.FAILED, error="boom", error_kind="server")
    task.transition(S.QUEUED)
    assert task.error is None and task.error_kind is None
    assert not S.SUCCEEDED.is_resumable and S.INTERRUPTED.is_resumable


@pytest.mark.parametrize("bad", ["", "   \n\t", None, 42])
def test_empty_or_non_text_prompts_are_refused(bad: object) -> None:
    with pytest.raises(InvalidPromptError):
        Task(bad)  # type: ignore[arg-type]


def test_huge_prompt_is_refused_with_the_numbers() -> None:
    with pytest.raises(InvalidPromptError, match="32,001 characters"):
        Task("x" * (MAX_PROMPT_CHARS + 1))
    assert Task("  padded  ").prompt == "padded"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": "big"}, "size"),
        ({"n": 0}, "n"),
        ({"n": 17}, "n"),
        ({"steps": 0}, "steps"),
        ({"strength": 1.5}, "strength"),
        ({"seed": 2**64}, "seed"),
    ],
)
def test_bad_params_are_config_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Params(**kwargs)  # type: ignore[arg-type]


def test_params_round_trip_and_reject_unknown_keys() -> None:
    p = Params(size="1024x768", n=2, seed=5, cfg_scale=6.5, extras={"quality": "high"})
    assert Params.from_dict(p.to_dict()) == p
    assert p.dimensions == (1024, 768)
    assert Params(size="auto").dimensions is None
    with pytest.raises(ConfigError, match="unknown parameter"):
        Params.from_dict({"sizee": "1x1"})


def test_task_repr_is_short_and_record_is_json_ready() -> None:

    task = Task("a" * 100, params={"seed": 3})
    assert len(repr(task)) < 120
    assert json.loads(json.dumps(task.to_record()))["params"] == {"seed": 3}


# -- hostile input at the model boundary ---------------------------------------
# Defect 6: control and bidi characters reached prompts, terminals and PNG text chunks.


def test_control_and_bidi_characters_are_removed_at_the_model_boundary() -> None:
    assert check_prompt(HOSTILE) == CLEAN
    assert clean_text("tab\tand\nnewline stay") == "tab\tand\nnewline stay"
    assert Params(negative_prompt="blur\x00ry\x1b").negative_prompt == "blurry"
    task = Task(HOSTILE, original_prompt="orig\x00inal")
    assert task.prompt == CLEAN and task.original_prompt == "original"
