"""Keys stay masked: reprs, logs, error messages built from server text."""

from __future__ import annotations

import logging
import pickle

import httpx
import pytest

from nbbatch.core._secrets import Secret, resolve_key, scrub
from nbbatch.providers._http import error_from_response

SENTINEL = "test-key-test-SENTINEL-0123456789abcdef"


def test_secret_never_prints_its_value() -> None:
    s = Secret(SENTINEL)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", "%s" % s):  # noqa: UP031 (old-style formatting is a leak path too)
        assert SENTINEL not in text
    assert s.reveal() == SENTINEL
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(s)


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECOND_KEY", "from-env-2")
    assert resolve_key("explicit-key", ["FIRST_KEY", "SECOND_KEY"]).reveal() == "explicit-key"  # type: ignore[union-attr]
    assert resolve_key(None, ["FIRST_KEY", "SECOND_KEY"]).reveal() == "from-env-2"  # type: ignore[union-attr]
    assert resolve_key(None, ["FIRST_KEY"]) is None


def test_scrub_and_log_filter(caplog: pytest.LogCaptureFixture) -> None:
    Secret(SENTINEL)
    assert scrub(f"url?key={SENTINEL}&x") == "url?key=***&x"
    with caplog.at_level(logging.INFO, logger="nbbatch"):
        logging.getLogger("nbbatch").info("sending with %s", SENTINEL)
    assert SENTINEL not in caplog.text and "***" in caplog.text


def test_server_echoing_the_key_does_not_leak_into_the_error() -> None:
    Secret(SENTINEL)
    response = httpx.Response(
        401,
        json={"error": {"message": f"Incorrect API key provided: {SENTINEL}"}},
        request=httpx.Request("POST", "http://x"),
    )
    err = error_from_response(response, "openai")
    assert SENTINEL not in str(err) and "Incorrect API key" in str(err)


def test_logged_tracebacks_are_scrubbed_too(caplog: pytest.LogCaptureFixture) -> None:
    Secret(SENTINEL)
    with caplog.at_level(logging.ERROR, logger="nbbatch"):
        try:
            raise RuntimeError(f"upstream said: bad key {SENTINEL}")
        except RuntimeError:
            logging.getLogger("nbbatch").exception("request failed")
    assert "bad key ***" in caplog.text
    assert SENTINEL not in caplog.text


async def test_clients_carrying_a_key_do_not_follow_redirects() -> None:
    from nbbatch.providers._http import HttpClient

    keyed = HttpClient("x", "http://127.0.0.1:9", headers={"x-goog-api-key": "k" * 8})
    plain = HttpClient("x", "http://127.0.0.1:9", headers={"accept": "image/*"})
    assert not keyed.follow_redirects and plain.follow_redirects
    await keyed.aclose()
    await plain.aclose()
