"""The package's folders show the flow: layers point down, no module imports in a circle.

The graph is read from the source (every ``import`` statement, also those inside
functions; only ``if TYPE_CHECKING:`` blocks are left out, as they never run), so a cycle
hidden in a function body fails here too.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "nbbatch"

# Lower number = lower layer. A module may import its own layer or lower ones only.
LAYERS = {
    "core": 0,
    "images": 1,
    "providers": 1,
    "engine": 2,
    "testing": 2,
    "planning": 3,
    "widgets": 4,
    "_cli": 4,
    "__main__": 5,
}
PUBLIC_NAMESPACES = ("errors", "events")  # thin re-export modules of the core layer


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("nbbatch"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("nbbatch"):
                found.add(target)
                for a in node.names:  # ``from . import x`` may name a submodule
                    if (SRC / Path(*target.split("."), a.name)).exists() or (
                        SRC / Path(*target.split("."), a.name + ".py")
                    ).exists():
                        found.add(f"{target}.{a.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(me)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        own = name.split(".")
        ancestors = {".".join(own[:i]) for i in range(1, len(own))}
        for target in _imports(path):
            if target == "nbbatch":
                deps.add(target)  # an explicit import of the root façade
                continue
            # importing a.b.c runs a/b/__init__ too, unless we are inside a.b already
            # (the root always runs first and is left out: it is the façade on top)
            parts = target.split(".")
            for i in range(2, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate in modules and candidate != name and candidate not in ancestors:
                    deps.add(candidate)
        graph[name] = deps
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package root is the façade over everything
    head = parts[1]
    if head in PUBLIC_NAMESPACES:
        return 0
    return LAYERS.get(head)


def test_no_module_imports_in_a_circle() -> None:
    graph = _graph()
    # the root façade imports everything; nothing below may import it back
    importers_of_root = sorted(m for m, deps in graph.items() if "nbbatch" in deps)
    assert importers_of_root == [], "modules importing the package root: " + ", ".join(
        importers_of_root
    )
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep == "nbbatch":
                continue
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                walk(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_point_down() -> None:
    wrong = []
    for module, deps in _graph().items():
        mine = _layer(module)
        if mine is None:
            continue
        for dep in deps:
            theirs = _layer(dep)
            if theirs is not None and theirs > mine:
                wrong.append(f"{module} -> {dep}")
    assert wrong == [], "a lower layer imports a higher one:\n" + "\n".join(sorted(wrong))


# Importing any ``nbbatch.X`` first runs ``nbbatch/__init__.py``, which imports a fixed
# set of modules (the baseline). So for a baseline module, "imported alone in a fresh
# interpreter" is exactly "``import nbbatch`` in a fresh interpreter"; for any other
# module it is the baseline plus that module and what it pulls in. The script below does
# just that in one interpreter: one fresh ``import nbbatch``, then each other module with
# every non-baseline nbbatch module forgotten (and unhooked from its parent package, so
# no attribute left by an earlier import can stand in for a missing import). Re-running
# the whole package for each of ~90 modules took ~0.4 s apiece idle and over the test's
# 120 s timeout on a loaded machine.
IMPORT_EACH_ALONE = """
import importlib, sys
import nbbatch
baseline = {m for m in sys.modules if m.split('.')[0] == 'nbbatch'}
for name in sorted(set(MODULES) - baseline):
    for loaded in [m for m in sys.modules if m.split('.')[0] == 'nbbatch']:
        if loaded in baseline:
            continue
        parent, _, leaf = loaded.rpartition('.')
        if getattr(sys.modules.get(parent), leaf, None) is sys.modules[loaded]:
            delattr(sys.modules[parent], leaf)
        del sys.modules[loaded]
    importlib.import_module(name)
print(len(baseline), len(set(MODULES) - baseline))
"""


def test_each_module_imports_alone() -> None:
    # An import that works only because another module happened to be imported first
    # fails here (see IMPORT_EACH_ALONE for why one interpreter proves each alone).
    modules = sorted(_module_name(p) for p in PKG.rglob("*.py") if p.name != "__main__.py")
    script = f"MODULES = {modules!r}\n" + IMPORT_EACH_ALONE
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        # on a timeout, end the interpreter here: left running, its Popen object would
        # warn (ResourceWarning) inside whichever test comes next
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    in_baseline, alone = map(int, out.split())
    assert in_baseline + alone == len(modules)  # each proven one way or the other


def test_public_namespaces_are_importable() -> None:
    for name in ("errors", "events", "images", "planning", "providers", "testing"):
        assert importlib.import_module(f"nbbatch.{name}").__all__


WIDGETS = PKG / "widgets"
#: function-level imports allowed in widgets/: only where they save import time or keep an
#: optional dependency optional (module -> imported name)
LAZY_IN_WIDGETS = {"nbbatch.widgets._serverfolder": {"ipyfilechooser"}}


def _widget_imports(path: Path) -> tuple[set[str], set[str]]:
    """(every widgets module ``path`` imports, type-only imports included; the names it
    imports inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    lazy: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
                if node.level == 1:
                    targets = [node.module] if node.module else [a.name for a in node.names]
                    found.update(f"nbbatch.widgets.{t}" for t in targets if t)
            else:
                names = [a.name for a in node.names]
            if in_function:
                lazy.update(names or [f".{node.module}"])  # type: ignore[union-attr]
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    found.discard(_module_name(path))
    return found, lazy


def test_widgets_import_no_circle_not_even_for_types() -> None:
    # The studio's panels once imported each other in a circle (_compose -> _grid ->
    # _history -> _grid), hidden behind function-level and TYPE_CHECKING imports.
    graph = {_module_name(p): _widget_imports(p)[0] for p in WIDGETS.glob("*.py")}
    cycles: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state and dep in graph:
                walk(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert cycles == []


def test_widgets_import_inside_functions_only_to_save_time() -> None:
    lazy = {}
    for path in WIDGETS.glob("*.py"):
        names = _widget_imports(path)[1] - LAZY_IN_WIDGETS.get(_module_name(path), set())
        if names:
            lazy[_module_name(path)] = sorted(names)
    assert lazy == {}


# The workspace is split by job behind the ``Workspace`` façade (engine/_store.py), and
# image metadata into byte-level containers and generation-info dialects. Each job may
# use only the jobs listed for it (inside its package), so no arrow points back up.
JOBS = {
    "nbbatch.engine._journal": set(),  # SQLite: schema, connection, transactions, errors
    "nbbatch.engine._blobs": set(),  # content-addressed files and the derived/ layout
    "nbbatch.engine._history": set(),  # history rows and statistics, in SQL
    "nbbatch.engine._recovery": {"nbbatch.engine._journal", "nbbatch.engine._blobs"},
    "nbbatch.engine._tasks": {
        "nbbatch.engine._journal",
        "nbbatch.engine._blobs",
        "nbbatch.engine._recovery",
        "nbbatch.engine._history",
    },
    "nbbatch.engine._salvage": {
        "nbbatch.engine._journal",
        "nbbatch.engine._blobs",
        "nbbatch.engine._recovery",
    },
    "nbbatch.images._containers": {"nbbatch.images._decode"},
    "nbbatch.images._metadata": {"nbbatch.images._containers", "nbbatch.images._decode"},
}


def test_workspace_and_metadata_jobs_import_only_the_jobs_below_them() -> None:
    graph = _graph()
    wrong = []
    for module, allowed in JOBS.items():
        assert module in graph, f"{module} is gone: update JOBS"
        package = module.rpartition(".")[0]
        siblings = {d for d in graph[module] if d.startswith(package + ".")}
        wrong += [f"{module} -> {d}" for d in sorted(siblings - allowed)]
    assert wrong == [], "a job imports one it must not:\n" + "\n".join(wrong)


def test_only_the_facade_reads_settings_and_images_never_guess_a_workspace() -> None:
    graph = _graph()
    readers = sorted(
        m for m, deps in graph.items() if m.startswith("nbbatch.engine._") and
        "nbbatch.engine._settings" in deps and m in JOBS
    )  # fmt: skip
    assert readers == [], f"store jobs reading the saved settings: {readers}"
    source = (PKG / "images" / "_postprocess.py").read_text()
    assert "_workspace_root" not in source and '.name == "images"' not in source
