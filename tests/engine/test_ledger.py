"""The cost ledger: billed usage priced by the token table, else the per-image price."""

from __future__ import annotations

import pytest

from nbbatch import Batch, Workspace
from nbbatch.engine._ledger import BATCH_API_KEY, check_token_prices, image_cost, task_cost
from nbbatch.errors import ConfigError
from nbbatch.providers import OpenAIProvider
from nbbatch.testing import FakeOpenAI

OPENAI_USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"text_tokens": 40, "image_tokens": 10},
    "output_tokens": 4160,
    "total_tokens": 4210,
}


def test_openai_usage_is_priced_token_by_token() -> None:
    params = {"provider": "openai", "model": "gpt-image-1", "info": {"usage": OPENAI_USAGE}}
    cost = image_cost(params, {})
    assert cost.basis == "usage"
    assert cost.amount == pytest.approx((40 * 5.0 + 10 * 10.0 + 4160 * 40.0) / 1e6)


def test_gemini_usage_metadata_is_priced_by_modality() -> None:
    usage = {
        "promptTokenCount": 10,
        "candidatesTokenCount": 1290,
        "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
    }
    params = {
        "provider": "gemini",
        "info": {"usage": usage, "modelVersion": "gemini-2.5-flash-image"},
    }
    cost = image_cost(params, {})
    assert cost.basis == "usage"
    assert cost.amount == pytest.approx((10 * 0.30 + 1290 * 30.0) / 1e6)


def test_replicate_compute_time_is_priced_per_second_from_the_settings_table() -> None:
    table = check_token_prices({"replicate/flux": {"date": "2026-12-01", "per_second": 0.001}})
    params = {"provider": "replicate", "model": "flux", "info": {"predict_time": 2.5}}
    assert image_cost(params, {}, table).amount == pytest.approx(0.0025)


def test_without_usage_the_price_table_and_a_batch_api_image_costs_half() -> None:
    prices = {"demo": 0.04, "openai/gpt-image-1": 0.2}
    assert image_cost({"provider": "demo"}, prices).amount == pytest.approx(0.04)
    assert image_cost({"provider": "demo"}, prices).basis == "price table"
    batch_api = {"provider": "openai", "model": "gpt-image-1", "info": {BATCH_API_KEY: True}}
    assert image_cost(batch_api, prices).amount == pytest.approx(0.1)
    # the batch-API runner marks its images with the provider's name (engine/_batchapi.py)
    marked = {"provider": "openai", "model": "gpt-image-1", "info": {BATCH_API_KEY: "openai"}}
    assert image_cost(marked, prices).amount == pytest.approx(0.1)
    billed = {"provider": "openai", "model": "gpt-image-1"}
    billed["info"] = {"usage": OPENAI_USAGE, BATCH_API_KEY: True}
    assert image_cost(billed, {}).amount == pytest.approx(
        image_cost(
            {"provider": "openai", "model": "gpt-image-1", "info": {"usage": OPENAI_USAGE}}, {}
        ).amount
        / 2
    )
    assert image_cost({"provider": "nobody"}, prices).amount is None


def test_usage_on_the_first_image_covers_the_whole_request() -> None:
    first = {"provider": "openai", "model": "gpt-image-1", "info": {"usage": OPENAI_USAGE}}
    second = {"provider": "openai", "model": "gpt-image-1", "info": {}}
    both = task_cost([first, second], {"openai": 99.0})
    assert both.basis == "usage"
    assert both.amount == pytest.approx(image_cost(first, {}).amount)


def test_token_prices_are_checked_in_words() -> None:
    with pytest.raises(ConfigError, match="unknown token price 'output'"):
        check_token_prices({"openai/x": {"output": 1.0}})


@pytest.mark.slow  # a loopback server and a real run: about a second
def test_a_run_on_openai_carries_billed_cost_into_the_dataframe_and_stats(
    workspace: Workspace,
) -> None:
    with FakeOpenAI(render="fast") as server:
        provider = OpenAIProvider(api_key="k", base_url=server.base_url, model="gpt-image-1")
        batch = Batch.create(["a red fox", "a koi pond"], workspace=workspace)
        batch.run_sync(provider)
    frame = batch.to_dataframe()
    assert list(frame["cost_basis"]) == ["usage", "usage"]
    words = [3, 3]  # the fake bills a token per word in, 272 per image out
    expected = [(w * 5.0 + 272 * 40.0) / 1e6 for w in words]
    assert list(frame["cost"]) == pytest.approx(expected)
    row = next(s for s in workspace.provider_stats({}) if s.provider == "openai")
    assert row.spend == pytest.approx(sum(expected)) and row.billed_images == 2


def test_prices_given_to_a_run_stay_with_the_batch(workspace: Workspace) -> None:
    demo = Batch.create(["x"], workspace=workspace)
    demo.run_sync("demo", prices={"demo": 0.01})
    frame = Batch.load(demo.id, workspace).to_dataframe()
    assert frame["cost"].tolist() == [0.01] and frame["cost_basis"].tolist() == ["price table"]
