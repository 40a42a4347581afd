"""Dynamic Prompts templates: counts agree with dynamicprompts, the explosion cap holds."""

from __future__ import annotations

import pytest
from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator
from dynamicprompts.wildcards import WildcardManager
from hypothesis import given, settings
from hypothesis import strategies as st

import nbbatch
from nbbatch import Params, Task
from nbbatch.errors import TemplateError, TemplateTooLargeError


@pytest.fixture(autouse=True)
def _grammar_built() -> None:
    # dynamicprompts builds its grammar lazily with a pyparsing API that warns; nbbatch
    # builds it quietly, so let nbbatch go first before the tests call dynamicprompts.
    nbbatch.count_prompts("warm {up|}")


TEMPLATES = [
    "a {red|blue} car",
    "a {red|blue|green} {car|bike} at {dawn|dusk}",
    "{2$$a|b|c}",
    "{1-2$$ and $$cat|dog|fox}",
    "{0.5::oil|2::watercolor} painting of {a|a|b}",
    "plain prompt, no variants",
    "{x|{y|z}} {1|2}",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_count_and_expansion_agree_with_dynamicprompts(template: str) -> None:
    theirs = CombinatorialPromptGenerator().generate(template, max_prompts=None)
    assert nbbatch.count_prompts(template) == len(theirs)
    assert [t.prompt for t in nbbatch.expand(template)] == [p.strip() for p in theirs]


def test_expand_returns_tasks_without_any_widget() -> None:
    tasks = nbbatch.expand("a {red|blue} car")
    assert all(isinstance(t, Task) for t in tasks)
    assert [t.prompt for t in tasks] == ["a red car", "a blue car"]
    assert "2 tasks -> 2 images" in tasks.summary()


def test_params_apply_to_every_task_and_count_images() -> None:
    tasks = nbbatch.expand("{a|b|c} fox", params={"n": 2, "size": "512x512"})
    assert all(t.params == Params(n=2, size="512x512") for t in tasks)
    assert tasks.image_count == 6
    assert tasks.summary(price_per_image=0.04).endswith("about $0.24 at $0.040/image")


def test_explosion_is_refused_at_the_cap_unless_raised() -> None:
    template = "{a|b|c|d|e|f|g|h|i|j} {1|2|3|4|5|6|7|8|9|10} {x|y|z|w|v|u|t|s|r|q} {A|B}"
    with pytest.raises(TemplateTooLargeError) as info:
        nbbatch.expand(template)
    assert info.value.cap == 1000
    assert info.value.count > 1000
    assert "cap=" in str(info.value)
    # exactly at the cap is fine; one over is not
    assert len(nbbatch.expand(template, cap=2000)) == 2000
    with pytest.raises(TemplateTooLargeError):
        nbbatch.expand(template, cap=1999)
    assert len(nbbatch.expand(template, n=5)) == 5


def test_count_reports_more_than_its_limit_without_walking_everything() -> None:
    template = "{a|b|c|d|e|f|g|h|i|j} " * 8  # 10^8 prompts
    with pytest.raises(TemplateTooLargeError) as info:
        nbbatch.count_prompts(template, limit=500)
    assert info.value.exact is False
    assert info.value.count == 501


def test_random_mode_is_reproducible_with_a_seed_and_matches_dynamicprompts() -> None:
    template = "{red|green|blue} {cat|dog} in {rain|snow|fog}"
    ours = [t.prompt for t in nbbatch.expand(template, mode="random", n=6, seed=42)]
    theirs = RandomPromptGenerator(seed=42).generate(template, 6)
    assert ours == theirs
    assert ours == [t.prompt for t in nbbatch.expand(template, mode="random", n=6, seed=42)]
    with pytest.raises(TemplateTooLargeError):
        nbbatch.expand(template, mode="random", n=5000)


def test_wildcards_come_from_the_named_folder(tmp_path) -> None:
    (tmp_path / "colours.txt").write_text("# comment\ncrimson\nteal\n", encoding="utf-8")
    (tmp_path / "animals.txt").write_text("owl\n{small|big} heron\n", encoding="utf-8")
    template = "a __colours__ __animals__"
    theirs = CombinatorialPromptGenerator(wildcard_manager=WildcardManager(tmp_path)).generate(
        template, max_prompts=None
    )
    got = [t.prompt for t in nbbatch.expand(template, wildcards=tmp_path)]
    assert got == theirs
    assert "a teal big heron" in got
    assert nbbatch.count_prompts(template, wildcards=tmp_path) == len(theirs) == 6


def test_unknown_wildcard_is_an_error_not_an_endless_stream(tmp_path) -> None:
    with pytest.raises(TemplateError, match="__colors__"):
        nbbatch.expand("a __colors__ car", wildcards=tmp_path)
    with pytest.raises(TemplateError, match="no wildcards= folder"):
        nbbatch.count_prompts("a __colors__ car")
    with pytest.raises(nbbatch.errors.ConfigError, match="does not exist"):
        nbbatch.expand("a car", wildcards=tmp_path / "missing")


def test_bad_syntax_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="matching"):
        nbbatch.expand("a {red|blue car")


def test_empty_results_are_skipped_and_listed() -> None:
    tasks = nbbatch.expand("{0-1$$a|b}")
    assert [t.prompt for t in tasks] == ["a", "b"]
    assert len(tasks.skipped) == 1
    assert "empty" in tasks.skipped[0].reason


_word = st.text(alphabet="abcxyz ", min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_word, min_size=1, max_size=4), min_size=1, max_size=4))
def test_counts_agree_for_generated_templates(groups: list[list[str]]) -> None:
    template = " ".join("{" + "|".join(g) + "}" for g in groups)
    theirs = CombinatorialPromptGenerator().generate(template, max_prompts=None)
    assert nbbatch.count_prompts(template) == len(theirs)
