"""Real-browser fixtures: JupyterLab / Notebook 7 servers and Chromium, started once.

Usage in a test (every test in tests/browser gets the ``browser`` marker)::

    def test_counter(lab):
        page = lab.open_notebook(["import nbbatch", "w = MyWidget(); w"])  # app="notebook7"
        page.get_by_role("button", name="Add").click()
        expect(page.get_by_text("count: 1")).to_be_visible()
        assert lab.execute(page, "print(w.count)") == "1\\n"
        lab.set_theme(page, "dark"); lab.reload(page); lab.screenshot(page, "after")

A test's first JupyterLab notebook opens as a new tab of a JupyterLab page kept open from
test to test (closed after it; see `SharedLab`); its other notebooks, Notebook 7's, and all
of a test that takes the ``context`` fixture get pages of their own.

Without /usr/bin/chromium or the playwright package the tests skip with the reason;
with ``CI=true`` they fail instead, so CI can never go green without having run them.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ._jupyter import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    EXECUTE_TIMEOUT_MS,
    JS_ALL_EXECUTED,
    JS_APPEND_CELL,
    JS_CELL_DONE,
    JS_CELLS,
    JS_COMMAND_RESULT,
    JS_EXECUTE,
    JS_LAYOUT_COLOR0,
    JS_READY,
    JS_START_COMMAND,
    PAGE_TIMEOUT_MS,
    App,
    JupyterServer,
    KernelError,
    error_outputs,
    strip_ansi,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

# Playwright's `expect` waits 5 s by default; a loaded 2-core CI machine (a JupyterLab, a
# kernel and Chromium, with other tests beside them) has taken longer than that to answer a
# first request in a kernel that had just started. Waiting longer costs a passing test
# nothing: `expect` returns as soon as the page matches.
EXPECT_TIMEOUT_MS = 20_000

THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}

# Closes every tab of the main area but the notebook at `path` (null: all of them) without
# asking to save: the tests' notebooks are throwaway files, their kernels are shut down
# through the REST API after. JupyterLab opens a Launcher when its last tab closes; it is
# closed once the next notebook is open, so screenshots show that notebook alone.
JS_CLOSE_OTHER_TABS = """
(path) => {
  for (const widget of Array.from(window.jupyterapp.shell.widgets('main'))) {
    if (!(path && widget.context && widget.context.path === path)) widget.dispose();
  }
}
"""


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # keep each phase's report on the item so fixtures can tell a failed test in teardown
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:120]


# -- once for all browser tests: Playwright, Chromium, servers ----------------------------
# Package scope, not session: Playwright's sync API keeps its own event loop marked as
# running in this thread while it is alive, and every asyncio test after it would then
# fail with "Cannot run the event loop while another loop is running". Torn down after
# the last test in tests/browser, it is still started once per run.


@pytest.fixture(scope="package")
def _playwright() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (Debian: apt-get install chromium fonts-noto-cjk)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[test]')")
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    # Playwright's own browsers are never downloaded (no network): Debian's is used.
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="package")
def browser(_playwright: Any) -> Iterator[Browser]:
    """One Chromium for all browser tests (see `SharedLab` for the pages they use)."""
    browser = _playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def jupyter_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[App], JupyterServer]]:
    """``jupyter_server("lab" | "notebook7")``: that server, started on first use.

    Each is started once per test process (for all its browser tests), with its own root
    dir (``server.root_dir``), config, data, runtime, settings and workspace dirs, token
    auth on a free port; its log goes to ``test-artifacts/jupyter-<app>[-<worker>].log``.
    Under pytest-xdist each worker has its own servers. All are stopped when the session
    ends (``pytest_sessionfinish``), not when this fixture is torn down: with
    ``--dist loadfile`` a worker may leave tests/browser and come back (the fixture is
    made again, the servers are not), and a package fixture's teardown runs inside the
    last test's pytest-timeout, which stopping two servers on a loaded machine has
    outlasted.
    """

    def get(app: App) -> JupyterServer:
        if app not in _SERVERS:
            worker = os.environ.get("PYTEST_XDIST_WORKER")
            log_name = f"jupyter-{app}-{worker}.log" if worker else f"jupyter-{app}.log"
            server = JupyterServer(
                app=app,
                base=tmp_path_factory.mktemp(f"jupyter-{app}"),
                log_path=ARTIFACTS / log_name,
            )
            _SERVERS[app] = server
            server.start()
        return _SERVERS[app]

    yield get


#: the Jupyter servers this test process started, stopped when the session ends
_SERVERS: dict[App, JupyterServer] = {}


def pytest_sessionfinish(session: pytest.Session) -> None:
    while _SERVERS:
        _SERVERS.popitem()[1].stop()


# -- one JupyterLab page kept open for the tests of a worker ------------------------------
# Loading JupyterLab costs Chromium ~7 s of CPU and the server ~2 s (measured with
# psutil over one load on an idle machine); opening a notebook in a JupyterLab already
# loaded, as a person does for their second notebook, costs ~1 s in all. On two CI cores
# that is most of the browser tests' time, so each test's first JupyterLab notebook opens
# as a new tab of this page; the tab is closed after the test. A test that failed, left a
# dialog open or broke the page gets a fresh page next time. Notebook 7 has no tabs (a
# notebook is its own page) and tests that set up their own browser context (taking the
# `context` or `page` fixture) always load their own page.


class SharedLab:
    """One browser context with one JupyterLab page, reused test after test."""

    def __init__(self, browser: Browser) -> None:
        self._browser = browser
        self._context: BrowserContext | None = None
        self.page: Page | None = None
        #: where this page's console messages go: the current test's list
        self.console: list[str] = []

    def usable(self) -> bool:
        return self.page is not None and not self.page.is_closed()

    def open(self, url: str) -> Page:
        """Load JupyterLab at ``url`` in a fresh context (the first test, or after a discard)."""
        self.discard()
        self._context = _new_context(self._browser)
        page = self._context.new_page()
        page.on("console", lambda msg: self.console.append(f"[{msg.type}] {msg.text}"))
        page.on("pageerror", lambda exc: self.console.append(f"[pageerror] {exc}"))
        page.goto(url)
        self.page = page
        return page

    def discard(self) -> None:
        if self._context is not None:
            with contextlib.suppress(Exception):
                self._context.close()
        self._context = None
        self.page = None


@pytest.fixture(scope="package")
def shared_lab(browser: Browser) -> Iterator[SharedLab]:
    shared = SharedLab(browser)
    yield shared
    shared.discard()


# -- per test: a context and page, the notebook helper ------------------------------------


def _new_context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """This test's own browser context: its notebooks are not opened in the shared page."""
    context = _new_context(browser)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A blank page in this test's own browser context."""
    return context.new_page()


class Lab:
    """Opens notebooks in a real front end and drives them; see the module docstring."""

    def __init__(
        self,
        servers: Callable[[App], JupyterServer],
        context: BrowserContext,
        test_name: str,
        shared: SharedLab | None = None,
    ) -> None:
        self._servers = servers
        self._context = context
        self._test = _safe_name(test_name)
        self._opened: dict[App, set[str]] = {}
        self._pages: list[tuple[Page, App, str]] = []
        self.console: list[str] = []  # console messages and page errors of every page
        # None when this test set up its own context; else taken by its first lab notebook
        self._shared = shared
        self._shared_page: Page | None = None

    def server(self, app: App = "lab") -> JupyterServer:
        return self._servers(app)

    # -- opening and running ---------------------------------------------------------

    def open_notebook(
        self,
        cells: list[str],
        *,
        name: str | None = None,
        app: App = "lab",
        run: bool = True,
        raise_on_error: bool = True,
    ) -> Page:
        """Write a notebook of these code cells, open it, wait for the kernel, run all.

        Returns when every cell has executed and the kernel is idle (widgets are then in
        the DOM or about to be: wait for their own elements). A cell that raised fails
        the test with its traceback unless ``raise_on_error=False``.
        """
        server = self.server(app)
        opened = self._opened.setdefault(app, set())
        name = name or f"{self._test}-{len(opened) + 1}.ipynb"
        server.write_notebook(name, cells)
        opened.add(name)
        shared = self._shared
        if app == "lab" and shared is not None and self._shared_page is None:
            # this test's first JupyterLab notebook: a new tab of the page kept open
            shared.console = self.console
            if shared.usable():
                page = shared.page
                assert page is not None
                self._pages.append((page, app, name))
                self.command(page, "docmanager:open", {"path": name, "factory": "Notebook"})
            else:
                page = shared.open(server.notebook_url(name))
                self._pages.append((page, app, name))
            self._shared_page = page
            self.wait_ready(page)
            page.evaluate(JS_CLOSE_OTHER_TABS, name)
        else:
            page = self._context.new_page()
            page.on("console", lambda msg: self.console.append(f"[{msg.type}] {msg.text}"))
            page.on("pageerror", lambda exc: self.console.append(f"[pageerror] {exc}"))
            self._pages.append((page, app, name))
            page.goto(server.notebook_url(name))
            self.wait_ready(page)
        if run:
            self.run_all(page, raise_on_error=raise_on_error)
        return page

    def _path(self, page: Page) -> str:
        for known, _, name in self._pages:
            if known is page:
                return name
        raise ValueError("this page was not opened by lab.open_notebook")

    def wait_ready(self, page: Page) -> None:
        """Wait until the notebook is open with its kernel idle and connected."""
        page.wait_for_function(JS_READY, arg=self._path(page), timeout=PAGE_TIMEOUT_MS)
        self._wait_no_splash(page)

    @staticmethod
    def _wait_no_splash(page: Page) -> None:
        # JupyterLab covers the page with its splash while it starts and while a theme
        # loads; clicks and screenshots must wait for it to go.
        page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=PAGE_TIMEOUT_MS)

    def command(self, page: Page, command_id: str, args: dict[str, Any] | None = None) -> None:
        """Run a front-end command (``app.commands.execute``) and wait for it to finish."""
        key = f"cmd{len(self.console)}-{command_id}"
        page.evaluate(JS_START_COMMAND, [key, command_id, args])
        handle = page.wait_for_function(JS_COMMAND_RESULT, arg=key, timeout=EXECUTE_TIMEOUT_MS)
        result = handle.json_value()
        if result["error"]:
            raise AssertionError(f"command {command_id} failed: {result['error']}")

    def run_all(self, page: Page, *, raise_on_error: bool = True) -> None:
        self.command(page, "notebook:run-all-cells")
        page.wait_for_function(JS_ALL_EXECUTED, timeout=EXECUTE_TIMEOUT_MS)
        if raise_on_error:
            errors = error_outputs(page.evaluate(JS_CELLS))
            if errors:
                raise KernelError("a notebook cell raised:\n" + "\n\n".join(errors))

    def add_cell(self, page: Page, source: str) -> None:
        """Append a code cell to the open notebook, run it and wait until it finished."""
        index = page.evaluate(JS_APPEND_CELL, source)
        self.command(page, "notebook:run-cell")
        page.wait_for_function(JS_CELL_DONE, arg=index, timeout=EXECUTE_TIMEOUT_MS)
        cells = page.evaluate(JS_CELLS)
        errors = error_outputs(cells[-1:])
        if errors:
            raise KernelError("the added cell raised:\n" + "\n\n".join(errors))

    def execute(self, page: Page, code: str) -> str:
        """Run code in the notebook's kernel (no cell) and return its text output.

        Stream output plus the ``text/plain`` of results and displays; raises
        :class:`KernelError` with the traceback when the code raised.
        """
        result = page.evaluate(JS_EXECUTE, [code, EXECUTE_TIMEOUT_MS])
        if result["error"]:
            raise KernelError(strip_ansi(result["error"]))
        return str(result["out"])

    # -- look and lifecycle ----------------------------------------------------------

    def set_theme(self, page: Page, theme: str) -> None:
        """Switch to ``"dark"`` or ``"light"`` and wait until its colours apply."""
        wanted = THEMES[theme]
        before = page.evaluate(JS_LAYOUT_COLOR0)
        if page.evaluate("() => document.body.dataset.jpThemeName") == wanted:
            return
        self.command(page, "apputils:change-theme", {"theme": wanted})
        page.wait_for_function(
            """([name, before]) => document.body.dataset.jpThemeName === name
                && getComputedStyle(document.body).getPropertyValue('--jp-layout-color0')
                   .trim() !== before""",
            arg=[wanted, before],
        )
        self._wait_no_splash(page)

    def reload(self, page: Page, *, save: bool = True) -> None:
        """Save (so widget outputs are in the file), reload, wait for the kernel again.

        The kernel and its widget models live on; widget views re-render from them once
        the page is back: wait for the widget's own DOM after this.
        """
        if save:
            self.command(page, "docmanager:save")
        if page is self._shared_page:
            # the shared page's address is that of the notebook it was first opened on:
            # load this notebook's own, as a reload of its own page would
            page.goto(self.server("lab").notebook_url(self._path(page)))
        else:
            page.reload()
        self.wait_ready(page)

    def screenshot(self, page: Page, name: str, **kwargs: Any) -> Path:
        """Write ``test-artifacts/screenshots/<test>-<name>.png`` and return its path."""
        path = ARTIFACTS / "screenshots" / f"{self._test}-{_safe_name(name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), **kwargs)
        return path

    # -- teardown --------------------------------------------------------------------

    def _release_shared_page(self, failed: bool) -> None:
        """Close this test's tab of the shared page, or discard the page if not clean."""
        shared, page = self._shared, self._shared_page
        if shared is None or page is None:
            return
        shared.console = []
        if failed or page.is_closed():
            shared.discard()
            return
        try:
            # a dialog left open (JupyterLab's own) would block the next test's clicks
            if page.locator(".jp-Dialog").count():
                shared.discard()
                return
            if page.evaluate("() => document.body.dataset.jpThemeName") != THEMES["light"]:
                self.set_theme(page, "light")
            page.evaluate(JS_CLOSE_OTHER_TABS, None)
        except Exception:  # a page that cannot even be asked is not reused
            shared.discard()

    def _finish(self, failed: bool) -> None:
        if failed:
            for index, (page, _, _) in enumerate(self._pages):
                if not page.is_closed():
                    # a crashed page must not hide the real failure
                    with contextlib.suppress(Exception):
                        self.screenshot(page, f"failure-{index + 1}")
            if self.console:
                log = ARTIFACTS / "screenshots" / f"{self._test}-console.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text("\n".join(self.console))
        self._context.close()
        self._release_shared_page(failed)
        for app, names in self._opened.items():
            server = self._servers(app)
            server.shutdown_sessions(names)
            # theme and other settings a test changed must not leak into the next test
            server.write_baseline_settings()


@pytest.fixture
def lab(
    request: pytest.FixtureRequest,
    jupyter_server: Callable[[App], JupyterServer],
    context: BrowserContext,
    shared_lab: SharedLab,
) -> Iterator[Lab]:
    """Notebook helper for one test: ``lab.open_notebook(cells, app="lab"|"notebook7")``.

    A test that takes the ``context`` or ``page`` fixture itself (to set its context up:
    an init script, a permission) has all its notebooks opened in that context.
    """
    own = {"context", "page"} & set(inspect.signature(request.function).parameters)
    helper = Lab(jupyter_server, context, request.node.name, None if own else shared_lab)
    yield helper
    report = getattr(request.node, "_report_call", None)
    helper._finish(failed=bool(report is not None and report.failed))
