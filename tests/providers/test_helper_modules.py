"""The adapters' shared helpers live in modules of one job each (issue 25: the grab bag).

``providers/_support.py`` only re-exports them for code written against it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbbatch.providers._support as support

PROVIDERS = Path(support.__file__).parent

JOBS = {
    "_encoding.py": {"b64_image", "data_url", "decode_data_url", "guess_mime"},
    "_sizes.py": {"nearest_aspect_ratio"},
    "_offload.py": {"offload", "OFFLOAD_BYTES"},
    "_fetch.py": {"retry_fetch", "FETCH_ATTEMPTS", "FETCH_RETRY_DELAY", "DEFAULT_MAX_DOWNLOAD"},
}


def defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names - {"__all__", "T"}


def test_each_helper_is_defined_in_the_module_of_its_job() -> None:
    for module, names in JOBS.items():
        assert names <= defined(PROVIDERS / module), module


def test_support_defines_nothing_and_still_offers_every_old_name() -> None:
    assert defined(PROVIDERS / "_support.py") == set()
    for names in JOBS.values():
        for name in names:
            assert getattr(support, name) is not None
    assert support.same_origin("https://a.example/x", "https://a.example")


def test_no_adapter_imports_the_old_module() -> None:
    importers = [
        p.name
        for folder in (PROVIDERS, PROVIDERS.parent / "testing")
        for p in folder.glob("*.py")
        if p.name != "_support.py" and "_support import" in p.read_text()
    ]
    assert importers == []
