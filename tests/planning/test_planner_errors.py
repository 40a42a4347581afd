"""One error family: the planner raises the provider errors, refuses keyless hosted calls,
and takes ``retry=0`` as a number (issues 25 and 26)."""

from __future__ import annotations

import pickle
import traceback

import pytest

import nbbatch
import nbbatch.errors
from nbbatch import LLMConfig
from nbbatch.core._retry import PLANNER_RETRY
from nbbatch.planning._llm import _check_key
from nbbatch.testing import FakeChat, Fault

KEY = "sk-test-planner-errors"


def test_a_planner_key_problem_is_caught_as_the_providers_authentication_error() -> None:
    with FakeChat("openai", api_key="sk-other") as server:
        llm = {"base_url": server.base_url, "api_key": KEY}
        with pytest.raises(nbbatch.errors.AuthenticationError) as info:
            nbbatch.plan("a fox", llm=llm)
    assert info.value.provider == "planner"
    assert info.value.status_code == 401
    assert "refused the API key" in str(info.value) and KEY not in str(info.value)


def test_the_old_planner_names_still_catch_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="catch that instead"):
        old = nbbatch.errors.PlannerAuthError  # type: ignore[attr-defined]
    assert old is nbbatch.errors.AuthenticationError
    with pytest.warns(DeprecationWarning):
        from nbbatch.errors import PlannerUnavailableError  # type: ignore[attr-defined]
    assert PlannerUnavailableError is nbbatch.errors.ProviderError
    with pytest.raises(AttributeError):
        nbbatch.errors.NoSuchError  # type: ignore[attr-defined]  # noqa: B018


def test_errors_name_the_module_people_import_them_from() -> None:
    error = nbbatch.errors.AuthenticationError("no", provider="planner")
    assert type(error).__module__ == "nbbatch.errors"
    shown = "".join(traceback.format_exception_only(type(error), error))
    assert shown.startswith("nbbatch.errors.AuthenticationError: no")
    assert type(pickle.loads(pickle.dumps(error))) is nbbatch.errors.AuthenticationError


def test_plan_without_a_key_for_a_hosted_api_refuses_before_sending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    sent: list[object] = []
    monkeypatch.setattr(
        "nbbatch.providers._http.HttpClient.__init__",
        lambda *a, **k: sent.append(a),  # would open a connection: must not be reached
    )
    with pytest.raises(nbbatch.errors.ConfigError, match="needs an API key") as info:
        nbbatch.plan("a fox")
    assert "OPENAI_API_KEY" in str(info.value) and "localhost:11434" in str(info.value)
    with pytest.raises(nbbatch.errors.ConfigError, match="needs an API key"):
        nbbatch.enhance("a fox", llm={"base_url": "https://openrouter.ai/api/v1"})
    assert sent == []


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost:11434/v1",
        "http://127.0.0.1:1234/v1",
        "http://192.168.1.20:8000/v1",
        "http://gpu-box:8000/v1",
        "http://studio.local:1234/v1",
    ],
)
def test_a_local_server_needs_no_key(base_url: str) -> None:
    _check_key(LLMConfig(base_url=base_url))  # does not raise


def test_a_keyless_plan_against_a_local_server_is_sent() -> None:
    with FakeChat("openai") as server:
        plan = nbbatch.plan("a; b", llm={"base_url": server.base_url})
        assert "authorization" not in server.calls("*/chat/completions")[0].headers
    assert len(plan.tasks) == 2


def test_require_key_false_lets_a_keyless_call_go_anywhere() -> None:
    _check_key(LLMConfig(base_url="https://llm.example.com/v1", require_key=False))
    with pytest.raises(nbbatch.errors.ConfigError):
        _check_key(LLMConfig(base_url="http://localhost:1/v1", require_key=True))


def test_retry_zero_sends_once_and_fails_in_words() -> None:
    # issue 26: LLMConfig(retry=0) used to fail later with AttributeError
    config = LLMConfig(retry=0)
    assert config.retry.max_retries == 0  # type: ignore[union-attr]
    assert config.retry.name == PLANNER_RETRY.name  # type: ignore[union-attr]
    with FakeChat("openai") as server:
        server.add_fault(Fault.status_code(503))
        with pytest.raises(nbbatch.errors.ServerError, match="HTTP 503"):
            nbbatch.plan("a", llm=LLMConfig(base_url=server.base_url, retry=0))
        assert len(server.calls("*/chat/completions")) == 1
    with pytest.raises(nbbatch.errors.ConfigError, match="retry must be a number"):
        LLMConfig(retry="twice")  # type: ignore[arg-type]
    with pytest.raises(nbbatch.errors.ConfigError, match="max_retries"):
        LLMConfig(retry=-1)
