"""A real Jupyter server (JupyterLab or Notebook 7) in a subprocess, and notebook helpers.

Everything a test needs to drive the real front ends through Playwright: start a server
on a free port with its own config/settings/runtime dirs, write a notebook into its root,
open it, wait for the kernel, run all cells, run more code in the same kernel, change the
theme, reload, take screenshots. Used by ``tests/browser/conftest.py``; tests use the
fixtures there, not this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nbformat

App = Literal["lab", "notebook7"]

CHROMIUM = Path("/usr/bin/chromium")
#: screenshots, server logs and measurements of the browser tests
ARTIFACTS = Path(
    os.environ.get("NBBATCH_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)
CHROMIUM_ARGS = [
    # we run as root in CI containers, where Chromium's sandbox cannot start
    "--no-sandbox",
    "--disable-gpu",
    # no network here: keep Chromium from trying (and from slowing down doing so)
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# generous: two cores, a cold kernel and a cold JupyterLab bundle in CI
SERVER_START_TIMEOUT_S = 60.0
PAGE_TIMEOUT_MS = 60_000
EXECUTE_TIMEOUT_MS = 60_000

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class KernelError(AssertionError):
    """Code run by a helper raised in the kernel (the message carries its traceback)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class JupyterServer:
    """One ``jupyter lab`` or ``jupyter notebook`` subprocess with isolated state."""

    app: App
    base: Path  # everything this server owns lives below here
    log_path: Path
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root_dir(self) -> Path:
        return self.base / "root"

    @property
    def settings_dir(self) -> Path:
        return self.base / "lab-settings"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, name: str) -> str:
        path = urllib.parse.quote(name)
        if self.app == "lab":
            # `reset` drops the saved workspace (open tabs, layout) of earlier pages
            return f"{self.url}/lab/tree/{path}?token={self.token}&reset"
        return f"{self.url}/notebooks/{path}?token={self.token}"

    # -- lifecycle ---------------------------------------------------------------------

    def write_baseline_settings(self) -> None:
        """(Re)write the settings every page starts from; drops whatever a test changed."""
        shutil.rmtree(self.settings_dir, ignore_errors=True)
        notif = self.settings_dir / "@jupyterlab" / "apputils-extension"
        notif.mkdir(parents=True)
        # The "get notified about official Jupyter news?" toast covers controls at the
        # bottom right and would need network anyway.
        (notif / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )

    def _write_kernelspec(self, data_dir: Path) -> None:
        # The user data dir comes first in Jupyter's search path, so this `python3` wins
        # over any kernelspec on the host: the kernel is this venv's Python, where
        # nbbatch (and anywidget) are installed.
        spec = data_dir / "kernels" / "python3"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python 3 (nbbatch tests)",
                    "language": "python",
                    "metadata": {"debugger": False},
                }
            )
        )

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("JUPYTER_PATH", None)  # a host's extra data dirs must not leak in
        env.update(
            JUPYTER_CONFIG_DIR=str(self.base / "config"),
            JUPYTER_DATA_DIR=str(self.base / "data"),
            JUPYTER_RUNTIME_DIR=str(self.base / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(self.settings_dir),
            JUPYTERLAB_WORKSPACES_DIR=str(self.base / "workspaces"),
            JUPYTER_PLATFORM_DIRS="1",  # silences jupyter_core's deprecation warning
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self) -> None:
        self.root_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("config", "runtime", "workspaces"):
            (self.base / sub).mkdir(exist_ok=True)
        self._write_kernelspec(self.base / "data")
        self.write_baseline_settings()
        command = "lab" if self.app == "lab" else "notebook"
        expose = "LabApp" if self.app == "lab" else "JupyterNotebookApp"
        argv = [
            sys.executable,
            "-m",
            "jupyter",
            command,
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",  # a taken port fails, never a silent other port
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--allow-root",
            # window.jupyterapp: the handle the helpers drive the front end through
            f"--{expose}.expose_app_in_browser=True",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # own session: teardown can signal the server and every kernel it started
            self.proc = subprocess.Popen(
                argv,
                cwd=self.root_dir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter {self.app} exited with {self.proc.returncode}; "
                    f"log ({self.log_path}):\n{self.log_tail()}"
                )
            try:
                self.api("GET", "status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jupyter {self.app} not ready after {SERVER_START_TIMEOUT_S:.0f} s; "
                    f"log ({self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(0.2)  # polling a socket, not waiting for the browser

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            try:
                # kernels first, politely, so none outlives the server
                for kernel in self.api("GET", "kernels", timeout=5):
                    self.api("DELETE", f"kernels/{kernel['id']}", timeout=10)
            except (OSError, urllib.error.URLError, ValueError):
                pass
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in the server's session

    # -- REST --------------------------------------------------------------------------

    def api(self, method: str, path: str, *, timeout: float = 10) -> Any:
        request = urllib.request.Request(
            f"{self.url}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_sessions(self, paths: set[str]) -> None:
        """Stop the kernels of these notebooks: two cores do not carry a kernel per test."""
        try:
            for session in self.api("GET", "sessions"):
                if session.get("path") in paths:
                    self.api("DELETE", f"sessions/{session['id']}")
        except (OSError, urllib.error.URLError, ValueError):
            pass

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        nb = nbformat.v4.new_notebook()
        # Without a kernelspec the front end asks "Select Kernel" in a dialog that
        # blocks every click.
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nb.metadata["language_info"] = {"name": "python"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        path = self.root_dir / name
        nbformat.write(nb, path)
        return path


# -- in-page JavaScript -------------------------------------------------------------------
# All of it goes through window.jupyterapp (exposed by the server flag above); the shell's
# current widget is the notebook panel in both JupyterLab and Notebook 7.

JS_READY = """
(path) => {
  const app = window.jupyterapp;
  const panel = app && app.shell && app.shell.currentWidget;
  if (!panel || !panel.context || panel.context.path !== path) return false;
  const session = panel.sessionContext && panel.sessionContext.session;
  const kernel = session && session.kernel;
  return !!kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected'
    && app.commands.hasCommand('notebook:run-all-cells');
}
"""

# Commands are started here and their outcome parked on window; Python then waits for it
# with a Playwright timeout (an awaited page.evaluate would have none).
JS_START_COMMAND = """
([key, id, args]) => {
  window.__nbbHarness = window.__nbbHarness || {};
  const slot = window.__nbbHarness[key] = {done: false, error: null};
  window.jupyterapp.commands.execute(id, args || {}).then(
    () => { slot.done = true; },
    (e) => { slot.error = String(e && e.stack || e); slot.done = true; },
  );
}
"""

JS_COMMAND_RESULT = """
(key) => { const s = (window.__nbbHarness || {})[key]; return s && s.done ? s : null; }
"""

JS_CELLS = """
() => {
  const panel = window.jupyterapp.shell.currentWidget;
  return panel.content.model.toJSON().cells
    .filter((c) => c.cell_type === 'code')
    .map((c) => ({execution_count: c.execution_count, outputs: c.outputs}));
}
"""

JS_ALL_EXECUTED = """
() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const cells = panel.content.model.toJSON().cells.filter((c) => c.cell_type === 'code');
  return cells.every((c) => c.execution_count !== null || !c.source.length);
}
"""

JS_EXECUTE = """
async ([code, timeoutMs]) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, store_history: false});
  let out = '';
  let error = null;
  future.onIOPub = (msg) => {
    const type = msg.header.msg_type;
    if (type === 'stream') out += msg.content.text;
    else if (type === 'execute_result' || type === 'display_data') {
      out += (msg.content.data['text/plain'] || '') + '\\n';
    } else if (type === 'error') {
      error = msg.content.ename + ': ' + msg.content.evalue + '\\n'
        + msg.content.traceback.join('\\n');
    }
  };
  const timeout = new Promise((_, reject) => setTimeout(
    () => reject(new Error('kernel did not answer within ' + timeoutMs + ' ms')), timeoutMs));
  await Promise.race([future.done, timeout]);
  return {out, error};
}
"""

JS_APPEND_CELL = """
(source) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const model = panel.content.model;
  model.sharedModel.insertCell(model.cells.length, {cell_type: 'code', source});
  panel.content.activeCellIndex = model.cells.length - 1;
  return model.cells.length - 1;
}
"""

JS_CELL_DONE = """
(index) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session.kernel;
  const cell = panel.content.model.toJSON().cells[index];
  return kernel.status === 'idle' && cell.execution_count !== null;
}
"""

JS_LAYOUT_COLOR0 = """
() => getComputedStyle(document.body).getPropertyValue('--jp-layout-color0').trim()
"""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def error_outputs(cells: list[dict[str, Any]]) -> list[str]:
    errors = []
    for index, cell in enumerate(cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                traceback = strip_ansi("\n".join(output.get("traceback", [])))
                head = f"code cell {index}: {output['ename']}: {output['evalue']}"
                errors.append(f"{head}\n{traceback}")
    return errors
