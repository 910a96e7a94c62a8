"""Make a tutorial notebook runnable where it is opened: in the project, on a fresh kernel, on Colab.

Every notebook starts with the same setup cell; its text is ``setup_cell.py.txt`` beside this file
(``$repository`` is ``[project.urls] Repository`` of ``pyproject.toml``, ``$clone`` is ``CLONE_NAME``,
``$data`` is ``"camvid"`` for notebook 07 and ``None`` for the others). ``setup_cells.json`` holds each notebook's rendered cell and
its "Open in Colab" badge; ``python notebooks/bootstrap.py`` prints that JSON again from the template.
The cell imports this module (on Colab it clones the project first, because a notebook opened from
GitHub has nothing beside it) and calls ``setup(repository, data)``:

* in the project (``make lab``), ``tutorial_lib`` is importable: nothing happens, nothing is printed;
* ``tutorial_lib`` is not importable and this is not Colab: ``SetupError`` says which command to run;
* on Colab: ``pip install -e`` the clone (pip keeps Colab's own torch, which satisfies ``torch>=2.4``),
  put it on ``sys.path``, change into its ``notebooks/`` folder (so ``../checkpoints`` and ``../data``
  work) and, with ``data="camvid"``, download CamVid with ``tutorial_lib.data.download`` (every file
  checked against ``data/camvid_manifest.sha256``) and set ``CAMVID_DIR`` for ``camvid_dir()``.

Only the standard library is used: this module runs before ``tutorial_lib`` can be imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from string import Template

NOTEBOOKS = Path(__file__).resolve().parent
PROJECT = NOTEBOOKS.parent  # the clone: pyproject.toml, tutorial_lib/, data/, checkpoints/
CLONE_NAME = "transunet-from-scratch"  # the folder the setup cell clones into on Colab
MANIFEST = Path("data") / "camvid_manifest.sha256"  # relative to PROJECT
DATASETS = ("camvid",)
NOTEBOOK_DATA = {"07_train_camvid.ipynb": "camvid"}  # the data set each notebook's setup cell fetches
TEMPLATE = NOTEBOOKS / "setup_cell.py.txt"
CELLS_JSON = NOTEBOOKS / "setup_cells.json"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


class SetupError(RuntimeError):
    """The notebook cannot run here; the message says what to do. Jupyter shows only the message."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook: print this instead of a traceback
        return [f"SetupError: {self}"]


def on_colab() -> bool:
    """True when ``google.colab`` is importable (only a Colab runtime has it)."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):  # no ``google`` package at all, or a module without a spec
        return False


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _imported_from(name: str, root: Path) -> bool:
    """True when ``name`` would be imported from inside ``root``."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None and Path(spec.origin).resolve().is_relative_to(root)


def not_importable_message(repository: str) -> str:
    """What to run when ``tutorial_lib`` cannot be imported here (outside Colab)."""
    lines = [f"tutorial_lib cannot be imported by this kernel ({sys.executable})."]
    if (PROJECT / "pyproject.toml").is_file() and (PROJECT / "tutorial_lib").is_dir():
        lines += [
            f"This notebook is in the project at {PROJECT}. Open it from there with",
            f"    cd {shlex.quote(str(PROJECT))} && make lab",
            "or install the project into this kernel's Python, then restart the kernel:",
            f"    {shlex.quote(sys.executable)} -m pip install -e {shlex.quote(str(PROJECT))}",
        ]
    else:
        lines += [
            "This notebook needs the whole project around it. Get it and open the notebooks from there:",
            f"    git clone {repository} {CLONE_NAME} && cd {CLONE_NAME} && make lab",
        ]
    return "\n".join(lines)


def _pip_install(root: Path, run) -> None:
    """``pip install -e root`` into this kernel's Python; a failure shows pip's own last lines."""
    print(f"Installing the project from {root} with pip (about a minute) ...", flush=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "-e", str(root)]
    result = run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(((result.stdout or "") + (result.stderr or "")).strip().splitlines()[-20:])
        raise SetupError(f"`{shlex.join(command)}` failed (exit status {result.returncode}):\n{tail}")


def _download_camvid(dest: Path, manifest: Path) -> Path:
    """The project's checksum-verified downloader (``python -m tutorial_lib.data.download camvid DEST``)."""
    download = importlib.import_module("tutorial_lib.data.download")
    return download.download_camvid(dest, manifest=manifest)


def setup(repository: str, data: str | None = None, *, run=None, download=None) -> Path | None:
    """Prepare this kernel for the notebook; returns the project folder on Colab, else None.

    ``run`` stands in for ``subprocess.run`` (the pip call) and ``download(dest, manifest)`` for the
    CamVid downloader; both default to the real ones.
    """
    if data is not None and data not in DATASETS:
        raise ValueError(f"data={data!r}: the setup cell knows only {DATASETS} (or None)")
    if not on_colab():
        if _importable("tutorial_lib"):
            return None  # in the project: silent, nbval compares this cell's (empty) output
        raise SetupError(not_importable_message(repository))

    run = run or subprocess.run
    download = download or _download_camvid
    if not _imported_from("tutorial_lib", PROJECT):  # a restarted kernel has the editable install already
        _pip_install(PROJECT, run)
    if str(PROJECT) not in sys.path:  # this kernel started before the install: it did not see its .pth
        sys.path.insert(0, str(PROJECT))
    importlib.invalidate_caches()
    os.chdir(NOTEBOOKS)
    print(f"Colab: tutorial_lib from {PROJECT}; working folder {NOTEBOOKS}")
    if data == "camvid":
        dest = Path(os.environ.get("CAMVID_DIR") or PROJECT.parent / "camvid")
        download(dest, PROJECT / MANIFEST)
        os.environ["CAMVID_DIR"] = str(dest)
        print(f"CamVid is in {dest} (CAMVID_DIR)")
    return PROJECT


# --- the cell and badge texts, rendered from pyproject.toml's one URL -----------------------------

def repository_url(pyproject: Path = PROJECT / "pyproject.toml") -> str:
    """``[project.urls] Repository`` of pyproject.toml: ``https://github.com/ORG/REPO``."""
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # Python 3.10: the one key, read with a regular expression
        section = re.search(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        match = section and re.search(r'^Repository\s*=\s*"([^"]+)"', section.group(1), re.M)
        url = match.group(1) if match else None
    else:
        url = tomllib.loads(text).get("project", {}).get("urls", {}).get("Repository")
    if not url or not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"{pyproject}: [project.urls] Repository must be https://github.com/ORG/REPO, "
                         f"not {url!r}")
    return url


def setup_cell(notebook: str, repository: str) -> str:
    """The exact text of ``notebook``'s setup cell (its first code cell)."""
    data = NOTEBOOK_DATA.get(notebook)
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        repository=repository, clone=CLONE_NAME, data="None" if data is None else json.dumps(data)).rstrip("\n")


def colab_url(notebook: str, repository: str) -> str:
    org_repo = repository.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{org_repo}/blob/main/notebooks/{notebook}"


def colab_badge(notebook: str, repository: str) -> str:
    """Markdown for an "Open in Colab" badge that opens ``notebook`` from the repository."""
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(notebook, repository)})"


def rendered_cells(repository: str | None = None) -> dict[str, dict[str, str]]:
    """{notebook: {"badge": title-cell markdown, "setup_cell": first code cell}} for every notebook."""
    repository = repository or repository_url()
    return {
        path.name: {"badge": colab_badge(path.name, repository), "setup_cell": setup_cell(path.name, repository)}
        for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    }


if __name__ == "__main__":  # python notebooks/bootstrap.py > notebooks/setup_cells.json
    print(json.dumps(rendered_cells(), indent=1))
