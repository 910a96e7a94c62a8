"""Fixtures for the real-browser tests: one JupyterLab server and one headless Chromium per session.

The tests in this folder open the tutorial notebooks in JupyterLab, run every cell through Lab's
own Run menu, and move the widgets the way a reader would, checking the page's DOM (not its
pixels). What they need and how it is arranged:

* Chromium: Debian's ``/usr/bin/chromium`` (``scripts/install_browser.sh``, which ``make test``
  calls, installs it), or any Chromium/Chrome named by ``$CHROMIUM``. Playwright drives it; its own
  browser download is not used. When no Chromium is found the tests FAIL and say what to install.
* JupyterLab: started once per session from this interpreter's environment, on 127.0.0.1, a free
  port and a random token, over a temporary copy of ``notebooks/`` with the stored outputs
  stripped (so everything the tests see was produced by this run; Lab's autosave cannot touch the
  real files), with fresh workspace and settings folders (no restored tabs, no news pop-up, no
  windowed notebook rendering). It is shut down at the end even when tests fail.
* Artifacts (element screenshots of every widget after it was moved, a full-page screenshot of
  every failure, the server log) go to ``.browser-artifacts/`` at the repository root, or to
  ``$TU_BROWSER_ARTIFACTS``.
* ``$TU_BROWSER_NOTEBOOKS`` points the tests at another folder of notebooks (for developing them).
"""

from __future__ import annotations

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
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = Path(os.environ.get("TU_BROWSER_NOTEBOOKS") or REPO / "notebooks")
ARTIFACTS = Path(os.environ.get("TU_BROWSER_ARTIFACTS") or REPO / ".browser-artifacts")

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
MISSING_CHROMIUM = (
    "No Chromium found for the browser tests (looked for {where}).\n"
    "Install it and run the tests again:\n"
    "  Debian/Ubuntu:  sudo apt-get install -y chromium   (Ubuntu: chromium-browser)\n"
    "  Fedora:         sudo dnf install -y chromium\n"
    "  macOS:          brew install --cask chromium, then\n"
    '                  export CHROMIUM="/Applications/Chromium.app/Contents/MacOS/Chromium"\n'
    "or set CHROMIUM to any Chromium/Chrome binary. ('make test' installs it with apt when run as\n"
    "root on Debian/Ubuntu; 'make test-fast' does not run the browser tests.)"
)

SERVER_START_TIMEOUT_S = 90
KERNEL_READY_TIMEOUT_MS = 120_000
DEFAULT_RUN_TIMEOUT_MS = 240_000  # notebooks 01-06 run in 90 s on a 2-core CPU; headroom for load

# Lab's user settings for the test server: no news or update pop-up, every cell in the DOM
# (the default windowed notebook only renders the cells near the viewport), no autosave.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


# ----------------------------------------------------------------------------- Chromium


def chromium_executable() -> str:
    """Path of the Chromium to drive, or fail the test with what to install."""
    wanted = os.environ.get("CHROMIUM")
    candidates = (wanted,) if wanted else CHROMIUM_CANDIDATES
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    where = f"CHROMIUM={wanted}" if wanted else " and ".join(CHROMIUM_CANDIDATES)
    pytest.fail(MISSING_CHROMIUM.format(where=where), pytrace=False)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a dev dependency
        pytest.fail("The browser tests need Playwright for Python: pip install playwright", pytrace=False)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# ----------------------------------------------------------------------------- JupyterLab server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_notebooks_without_outputs(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst``, dropping stored outputs and execution counts from every notebook."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for path in dst.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, path)


def _descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class LabServer:
    base_url: str
    token: str
    root_dir: Path
    process: subprocess.Popen
    log_path: Path

    def lab_url(self, notebook: str) -> str:
        return f"{self.base_url}/lab/tree/{notebook}?reset&token={self.token}"

    def api(self, method: str, path: str, timeout: float = 10.0):
        request = urllib.request.Request(
            f"{self.base_url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        if method in ("POST", "PUT", "PATCH"):
            request.data = b""
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"

    def shutdown_kernels_of(self, notebook: str) -> None:
        """End the kernel sessions of one notebook (frees its CPU and memory for the next one)."""
        try:
            for session in self.api("GET", "/api/sessions"):
                if session.get("path", "").endswith(notebook):
                    self.api("DELETE", f"/api/sessions/{session['id']}")
        except (OSError, urllib.error.URLError, ValueError):
            pass

    def stop(self) -> None:
        """Shut the server down: politely over the API, then the process group, then stragglers.

        Kernels run in sessions of their own (jupyter_client starts them with setsid), so killing
        the server's process group alone would not reach them; their PIDs are noted first.
        """
        proc = self.process
        leftovers = _descendants(proc.pid)
        if proc.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=5)
            except (OSError, urllib.error.URLError, ValueError):
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                pass
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory, artifacts_dir):
    """JupyterLab on a stripped temporary copy of the notebooks; stopped at the end of the session."""
    if not NOTEBOOKS.is_dir():
        pytest.fail(f"no notebooks folder at {NOTEBOOKS}", pytrace=False)
    root = tmp_path_factory.mktemp("jupyterlab")
    notebooks = root / "notebooks"
    _copy_notebooks_without_outputs(NOTEBOOKS, notebooks)
    settings = root / "settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    for sub in ("workspaces", "config", "runtime"):
        (root / sub).mkdir()

    token = secrets.token_hex(24)
    port = _free_port()
    env = dict(os.environ)
    env.update(
        JUPYTERLAB_WORKSPACES_DIR=str(root / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTER_CONFIG_DIR=str(root / "config"),  # ignore the user's own Jupyter configuration
        JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        NO_ALBUMENTATIONS_UPDATE="1",
        TU_NOTEBOOK_QUICK="1",  # notebook 07's training demo: the short version
        PYTHONHASHSEED=env.get("PYTHONHASHSEED", "0"),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    env.pop("JUPYTER_TOKEN", None)
    # `python -m jupyterlab` (= `jupyter lab`) from pytest's own interpreter, so the server, its
    # python3 kernel and tutorial_lib all come from the same environment as the tests.
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={notebooks}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, for diagnostics
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # never query PyPI
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    log_path = artifacts_dir / f"jupyterlab-{worker}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LabServer(f"http://127.0.0.1:{port}", token, notebooks, process, log_path)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}:\n{server.log_tail()}", pytrace=False)
            try:
                server.api("GET", "/api/status", timeout=2)
                break
            except (OSError, urllib.error.URLError, ValueError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}",
                                pytrace=False)  # fmt: skip
                time.sleep(0.2)  # polling a socket: there is no event to await
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------------------- notebooks in Lab

# The notebook panel on screen (Lab keeps restored/closed panels around as hidden widgets).
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# Runs in the page: has every cell run? Reports errors as soon as one shows up (Lab's Run All stops
# at the first failing cell, so the remaining cells would never get an execution count).
_RUN_STATE_JS = """
([panelSel, expected, allowed]) => {
  const panel = document.querySelector(panelSel);
  if (!panel) return {state: 'no-panel'};
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const prompts = cells.map(c => (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '');
  const running = prompts.filter(t => t.includes('*')).length;
  const done = prompts.filter(t => /\\[\\d+\\]/.test(t)).length;
  const errors = [];
  cells.forEach((cell, i) => {
    if (allowed.includes(i)) return;
    const bad = [...cell.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type*="error"], .jp-RenderedText[data-mime-type*="error"],' +
        ' .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .filter(el => !el.matches('[data-mime-type="application/vnd.jupyter.stderr"]')
                    || /Traceback/.test(el.textContent));
    for (const el of cell.querySelectorAll('.jp-OutputArea-output'))
      if (/Error displaying widget|Failed to (load|create) (view|model)/.test(el.textContent)) bad.push(el);
    if (bad.length) errors.push({cell: i, text: bad.map(e => e.textContent).join('\\n').slice(0, 3000)});
  });
  return {state: errors.length ? 'error' : (running === 0 && done >= expected ? 'done' : 'running'),
          cells: cells.length, running, done, errors};
}
"""


@dataclass
class OpenNotebook:
    """A notebook open in its own page, all cells run through the Lab UI."""

    name: str
    page: object
    panel: object
    run_seconds: float
    console: list[str] = field(default_factory=list)


class LabSession:
    """Opens notebooks in Lab one at a time (one page each) and remembers the result per notebook."""

    def __init__(self, browser, server: LabServer, artifacts: Path):
        self.browser = browser
        self.server = server
        self.artifacts = artifacts
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        self.current: OpenNotebook | None = None
        self.failures: dict[str, str] = {}

    def close_current(self) -> None:
        if self.current is not None:
            self.current.page.close()
            self.server.shutdown_kernels_of(self.current.name)
            self.current = None

    def close(self) -> None:
        self.close_current()
        self.context.close()

    def notebook(self, name: str, run_timeout_ms: int = DEFAULT_RUN_TIMEOUT_MS) -> OpenNotebook:
        """Open ``name`` in Lab and run all its cells (once; later calls return the same page)."""
        if name in self.failures:
            pytest.fail(f"{name} could not be run in JupyterLab (see its first failing test):\n"
                        f"{self.failures[name]}", pytrace=False)  # fmt: skip
        if self.current is not None and self.current.name == name:
            return self.current
        if not (self.server.root_dir / name).is_file():
            self.failures[name] = f"notebooks/{name} does not exist"
            pytest.fail(self.failures[name], pytrace=False)
        self.close_current()
        page = self.context.new_page()
        page.set_default_timeout(30_000)
        opened = OpenNotebook(name, page, page.locator(PANEL), 0.0)
        page.on("console", lambda m: opened.console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: opened.console.append(f"pageerror: {e}"))
        self.current = opened
        try:
            self._open_and_run(opened, run_timeout_ms)
        except BaseException as exc:
            self.failures[name] = str(exc)
            raise
        return opened

    def _open_and_run(self, nb: OpenNotebook, run_timeout_ms: int) -> None:
        from playwright.sync_api import expect

        page = nb.page
        source = nbformat.read(self.server.root_dir / nb.name, as_version=4)
        code_cells = [c for c in source.cells if c.cell_type == "code"]
        # Lab does not run empty cells, and a cell whose source is hidden (the exercises' solutions) has no
        # prompt in the page while it is hidden; the cells after it only run once it has run, without error.
        expected = sum(1 for c in code_cells
                       if c.source.strip() and not c.metadata.get("jupyter", {}).get("source_hidden"))
        allowed = [i for i, c in enumerate(code_cells) if "raises-exception" in c.metadata.get("tags", [])]

        page.goto(self.server.lab_url(nb.name), wait_until="domcontentloaded")
        expect(nb.panel).to_be_visible(timeout=60_000)
        expect(nb.panel.locator(".jp-Notebook .jp-Cell").first).to_be_visible()
        # The toolbar's kernel indicator says idle before the kernel exists, and a run sent then is
        # dropped; the status bar's "Python 3 (ipykernel) | Idle" only shows once it is really up.
        expect(page.locator("#jp-main-statusbar")).to_contain_text(
            re.compile(r"\(ipykernel\) \| Idle"), timeout=KERNEL_READY_TIMEOUT_MS
        )

        start = time.monotonic()
        page.locator("#jp-menu-panel .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel",
                     has_text=re.compile(r"^Run All Cells$")).click()  # fmt: skip
        handle = page.wait_for_function(
            f"(args) => {{ const s = ({_RUN_STATE_JS})(args); return s.state === 'done' || s.state === 'error' ? s : null; }}",
            arg=[PANEL, expected, allowed],
            timeout=run_timeout_ms,
            polling=250,
        )
        state = handle.json_value()
        if state["state"] == "error":
            first = state["errors"][0]
            lines = code_cells[first["cell"]].source.strip().splitlines() or [""]
            raise AssertionError(
                f"{nb.name}: the code cell starting {lines[0][:80]!r} (code cell #{first['cell']}, "
                f"0-based) shows an error in JupyterLab:\n{first['text']}"
            )
        expect(page.locator("#jp-main-statusbar")).to_contain_text(re.compile(r"\(ipykernel\) \| Idle"))
        nb.run_seconds = time.monotonic() - start

    def run_state(self, nb: OpenNotebook) -> dict:
        source = nbformat.read(self.server.root_dir / nb.name, as_version=4)
        code_cells = [c for c in source.cells if c.cell_type == "code"]
        allowed = [i for i, c in enumerate(code_cells) if "raises-exception" in c.metadata.get("tags", [])]
        return nb.page.evaluate(f"({_RUN_STATE_JS})", [PANEL, 0, allowed])


@pytest.fixture(scope="session")
def lab(browser, lab_server, artifacts_dir):
    """The session's JupyterLab, driven by Chromium: ``lab.notebook("03_....ipynb")``."""
    session = LabSession(browser, lab_server, artifacts_dir)
    try:
        yield session
    finally:
        session.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request, artifacts_dir):
    """After a failed test, save the whole Lab page (what the reader would have seen)."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed or "lab" not in request.fixturenames:
        return
    session: LabSession = request.getfixturevalue("lab")
    if session.current is None or session.current.page.is_closed():
        return
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    try:
        session.current.page.screenshot(path=str(artifacts_dir / f"FAILED-{safe}.png"), full_page=True)
    except Exception:  # noqa: BLE001 - a failing screenshot must not hide the test's own failure
        pass


def pytest_collection_modifyitems(config, items):
    """Group the browser tests by notebook, so each notebook is opened and run once.

    Test ids start with the notebook's number ("03", "03-patch-size"); a stable sort keeps the
    "runs in Lab" test ahead of the widget tests of the same notebook.
    """
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if Path(item.path).parent == here]

    def notebook_key(item):
        callspec = getattr(item, "callspec", None)
        return callspec.id.split("-")[0] if callspec else ""

    ordered = sorted((items[i] for i in slots), key=notebook_key)
    for slot, item in zip(slots, ordered):
        items[slot] = item
