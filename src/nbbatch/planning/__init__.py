"""Planning: turning what a person wrote into tasks before anything runs.

``_llm`` (an OpenAI-compatible chat model splits a master prompt), ``_templates``
(Dynamic Prompts expansion), ``_sources`` (prompt files and image folders), ``_presets``
(named prompt snippets kept in a workspace), ``_tasklist`` (what every planner returns).
The public names are re-exported at the top level (``nbbatch.plan``, ``nbbatch.expand``…).
"""

from typing import Any

from ..core._names import renamed
from ._llm import LLMConfig, Plan, enhance, enhance_async, extract_json, plan, plan_async
from ._presets import Preset, Presets
from ._sources import ParsedLine, parse_prompt_line, read_prompts, tasks_from_folder
from ._tasklist import Skipped, TaskList
from ._templates import count_prompts, expand

__all__ = [
    "LLMConfig",
    "ParsedLine",
    "Plan",
    "Preset",
    "Presets",
    "Skipped",
    "TaskList",
    "count_prompts",
    "enhance",
    "enhance_async",
    "expand",
    "extract_json",
    "parse_prompt_line",
    "plan",
    "plan_async",
    "read_prompts",
    "tasks_from_folder",
]


_RENAMED = {
    "aplan": ("plan_async", lambda: plan_async),
    "aenhance": ("enhance_async", lambda: enhance_async),
}


def __getattr__(name: str) -> Any:
    return renamed(__name__, name, _RENAMED)
