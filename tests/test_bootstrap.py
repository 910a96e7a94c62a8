"""The notebooks' setup cell (notebooks/setup_cell.py.txt, notebooks/bootstrap.py), offline.

The cell's exact text runs in a fresh ``python -S`` process (no site-packages: tutorial_lib, torch and
IPython are not importable, as on a fresh kernel), with the working folder on ``sys.path`` as ipykernel
puts it. "Colab" is a fake ``google.colab`` package on ``sys.path``; the repository URL is rewritten by
git's ``url.<base>.insteadOf`` to a throwaway ``file://`` repository (``GIT_ALLOW_PROTOCOL=file``: git
cannot reach the network); ``subprocess.run`` records the pip call instead of running it, and the
throwaway repository's ``tutorial_lib.data.download`` records the download call.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NOTEBOOK_NAMES = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _load_bootstrap():
    spec = importlib.util.spec_from_file_location("tutorial_bootstrap_under_test", NOTEBOOKS / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bootstrap = _load_bootstrap()
URL = bootstrap.repository_url()

# Runs the cell like a kernel would, records what it did into record.json.
DRIVER = r'''
import json, os, subprocess, sys
record = {"calls": []}
if sys.argv[2] != "-":  # a stand-in for Colab: google.colab importable
    sys.path.insert(0, sys.argv[2])
sys.path.insert(0, "")  # ipykernel puts the working folder first
real_run = subprocess.run

def recording_run(command, *args, **kwargs):
    record["calls"].append([str(part) for part in command])
    if command[0] == "git":
        return real_run(command, *args, **kwargs)
    return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

subprocess.run = recording_run
path_before = list(sys.path)
try:
    cell = compile(open(sys.argv[1]).read(), "<setup cell>", "exec")
    for _ in range(int(sys.argv[3])):  # the reader may run the cell more than once
        exec(cell, {"__name__": "__main__"})
except BaseException as err:
    render = getattr(err, "_render_traceback_", None)
    record["error"] = type(err).__name__
    record["message"] = render() if render else [str(err)]
record.update(cwd=os.getcwd(), camvid_dir=os.environ.get("CAMVID_DIR"),
              path_added=[p for p in sys.path if p not in path_before])
json.dump(record, open(os.environ["RECORD"], "w"))
'''

# The downloader in the throwaway repository: records its arguments and makes the folder.
DOWNLOAD_STUB = '''
import json, os
from pathlib import Path

def download_camvid(*args, **kwargs):
    Path(args[0]).mkdir(parents=True, exist_ok=True)
    with open(os.environ["DOWNLOAD_RECORD"], "w") as f:
        json.dump({"args": [str(a) for a in args], "kwargs": {k: str(v) for k, v in kwargs.items()}}, f)
    return Path(args[0])
'''


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
                   cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def source_repo(tmp_path_factory) -> Path:
    """A throwaway git repository shaped like the project: this checkout's bootstrap, pyproject and
    manifest, and a tutorial_lib whose downloader records its call."""
    src = tmp_path_factory.mktemp("upstream") / "repo"
    for name in ("notebooks/bootstrap.py", "notebooks/setup_cell.py.txt", "pyproject.toml",
                 "data/camvid_manifest.sha256"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, src / name)
    (src / "tutorial_lib" / "data").mkdir(parents=True)
    (src / "tutorial_lib" / "__init__.py").write_text("")
    (src / "tutorial_lib" / "data" / "__init__.py").write_text("")
    (src / "tutorial_lib" / "data" / "download.py").write_text(DOWNLOAD_STUB)
    _git("init", "-q", "-b", "main", cwd=src)
    _git("add", ".", cwd=src)
    _git("commit", "-q", "-m", "snapshot", cwd=src)
    return src


@pytest.fixture(scope="module")
def fake_colab(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("fake_colab_site")
    (site / "google" / "colab").mkdir(parents=True)
    (site / "google" / "__init__.py").write_text("")
    (site / "google" / "colab" / "__init__.py").write_text('"""A stand-in for Colab\'s google.colab."""\n')
    return site


def run_cell(notebook: str, cwd: Path, tmp: Path, *, colab: Path | None = None, source: Path | None = None,
             times: int = 1, site: bool = False) -> tuple[dict, subprocess.CompletedProcess]:
    """Run ``notebook``'s exact setup cell in a new Python in ``cwd``; returns (record, process)."""
    cell = tmp / f"cell_{notebook}.py"
    cell.write_text(bootstrap.setup_cell(notebook, URL))
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if k not in ("CAMVID_DIR", "PYTHONPATH", "PYTHONSTARTUP")}
    env.update(RECORD=str(tmp / "record.json"), DOWNLOAD_RECORD=str(tmp / "download.json"), HOME=str(tmp),
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
               GIT_ALLOW_PROTOCOL="file")
    if source is not None:  # the project's URL, answered by the throwaway repository
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0=f"url.{source.as_uri()}.insteadOf", GIT_CONFIG_VALUE_0=URL)
    flags = [] if site else ["-S"]
    process = subprocess.run([sys.executable, *flags, str(driver), str(cell), str(colab or "-"), str(times)],
                             cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert (tmp / "record.json").is_file(), process.stderr
    return json.loads((tmp / "record.json").read_text()), process


# --- one URL ------------------------------------------------------------------------------------

def test_the_repository_url_is_configured_once_in_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the next test covers the reader for 3.10
    urls = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]
    assert bootstrap.repository_url() == urls["Repository"] == urls["Homepage"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", URL)
    text = (NOTEBOOKS / "bootstrap.py").read_text() + (NOTEBOOKS / "setup_cell.py.txt").read_text()
    assert "github.com/" + URL.split("github.com/")[1] not in text  # the module and template only read it


def test_repository_url_without_tomllib_reads_the_same_key(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.10
    assert bootstrap.repository_url() == URL
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\nname = "x"\n[project.urls]\nHomepage = "https://example.org"\n')
    with pytest.raises(ValueError, match=r"\[project\.urls\] Repository"):
        bootstrap.repository_url(bad)


def test_setup_cells_json_is_rendered_from_the_template_and_the_url():
    committed = json.loads((NOTEBOOKS / "setup_cells.json").read_text())
    assert committed == bootstrap.rendered_cells(URL), "regenerate: python notebooks/bootstrap.py > notebooks/setup_cells.json"
    assert sorted(committed) == NOTEBOOK_NAMES and len(NOTEBOOK_NAMES) == 7
    for name, entry in committed.items():
        data = '"camvid"' if name == "07_train_camvid.ipynb" else "None"
        assert entry["setup_cell"].endswith(f"bootstrap.setup(REPOSITORY, data={data})")
        assert f'REPOSITORY = "{URL}"' in entry["setup_cell"]
        assert entry["badge"] == (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                                  f"(https://colab.research.google.com/github/{URL[len('https://github.com/'):]}"
                                  f"/blob/main/notebooks/{name})")
        assert len(entry["setup_cell"].splitlines()) <= 12


def test_readme_has_a_colab_badge_per_notebook_and_one_at_the_top():
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+", readme)
    assert links and all(link in {bootstrap.colab_url(n, URL) for n in NOTEBOOK_NAMES} for link in links), links
    top = readme.split("\n## ", 1)[0]
    assert bootstrap.colab_badge("01_attention.ipynb", URL) in top
    for name in NOTEBOOK_NAMES:
        row = re.search(rf"^\| `{re.escape(name)}` \|.*$", readme, re.M)
        assert row and row.group(0).endswith(f"| {bootstrap.colab_badge(name, URL)} |"), name
    assert "### Running on Colab" in readme


def test_every_notebook_starts_with_its_badge_and_setup_cell():
    """Fails until the cell and badge from notebooks/setup_cells.json are inserted into each notebook."""
    cells = bootstrap.rendered_cells(URL)
    missing = []
    for name in NOTEBOOK_NAMES:
        nb = json.loads((NOTEBOOKS / name).read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        title = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
        if "".join(code[0]["source"]) != cells[name]["setup_cell"]:
            missing.append(f"{name}: first code cell is not its setup cell")
        elif code[0].get("outputs"):
            missing.append(f"{name}: the setup cell has stored outputs (in the project it prints nothing)")
        if cells[name]["badge"] not in "".join(title["source"]):
            missing.append(f"{name}: title cell lacks its Colab badge")
        text = json.dumps(nb)
        links = re.findall(r"https://colab\.research\.google\.com/github/[^)\s\\]+", text)
        for link in set(links) - {bootstrap.colab_url(name, URL)}:
            missing.append(f"{name}: {link} is not this notebook on the configured repository {URL}")
    assert not missing, "\n".join(missing) + "\n(insert them from notebooks/setup_cells.json)"


# --- the cell, run ------------------------------------------------------------------------------

def test_in_the_project_the_cell_does_nothing_and_prints_nothing(tmp_path):
    for name in ("01_attention.ipynb", "07_train_camvid.ipynb"):  # the kernel of `make lab`: the venv
        record, process = run_cell(name, NOTEBOOKS, tmp_path, site=True)
        assert (process.stdout, process.stderr, process.returncode) == ("", "", 0)
        assert "error" not in record, record
        assert record["calls"] == [] and record["camvid_dir"] is None
        assert record["cwd"] == str(NOTEBOOKS) and record["path_added"] == []


def test_a_copied_notebook_without_the_project_says_what_to_run(tmp_path):
    record, process = run_cell("03_vision_transformer.ipynb", tmp_path, tmp_path)
    command = f"git clone {URL} transunet-from-scratch && cd transunet-from-scratch && make lab"
    assert record["error"] == "SystemExit" and command in record["message"][0]
    assert record["calls"] == []


def test_a_kernel_without_tutorial_lib_in_a_clone_says_what_to_run(tmp_path, source_repo):
    clone = tmp_path / "clone"
    shutil.copytree(source_repo, clone, ignore=shutil.ignore_patterns(".git"))
    record, process = run_cell("01_attention.ipynb", clone / "notebooks", tmp_path)  # python -S: no tutorial_lib
    message = "\n".join(record["message"])
    assert record["error"] == "SetupError", record
    assert f"cd {clone} && make lab" in message
    assert f"{sys.executable} -m pip install -e {clone}" in message
    assert record["message"][0].startswith("SetupError: tutorial_lib cannot be imported")  # Jupyter shows only this
    assert record["calls"] == [] and process.stdout == ""


def test_on_colab_notebook_07_clones_installs_and_downloads_camvid(tmp_path, source_repo, fake_colab,
                                                                     monkeypatch):
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    record, process = run_cell("07_train_camvid.ipynb", content, tmp_path, colab=fake_colab, source=source_repo,
                               times=2)
    assert "error" not in record, (record, process.stderr)
    clone = content / "transunet-from-scratch"
    assert record["calls"] == [  # the second run of the cell neither clones nor installs again
        ["git", "clone", "--quiet", "--depth=1", URL, "transunet-from-scratch"],
        [sys.executable, "-m", "pip", "install", "--quiet", "-e", str(clone)],
    ]
    assert (clone / "notebooks" / "bootstrap.py").is_file() and (clone / ".git").is_dir()
    assert record["cwd"] == str(clone / "notebooks")
    assert str(clone) in record["path_added"] and str(clone / "notebooks") in record["path_added"]

    # the downloader got the data folder and the manifest, in a call the real downloader accepts
    call = json.loads((tmp_path / "download.json").read_text())
    from tutorial_lib.data import camvid_dir
    from tutorial_lib.data.download import download_camvid
    bound = inspect.signature(download_camvid).bind(*call["args"], **call["kwargs"]).arguments
    assert bound["dest"] == str(content / "camvid") == record["camvid_dir"]
    assert bound["manifest"] == str(clone / "data" / "camvid_manifest.sha256")
    monkeypatch.setenv("CAMVID_DIR", record["camvid_dir"])
    assert camvid_dir() == content / "camvid"  # the notebook finds the data the cell fetched
    assert "CamVid is in" in process.stdout


def test_on_colab_other_notebooks_install_without_data_and_reuse_a_clone(tmp_path, source_repo, fake_colab):
    content = tmp_path / "content"
    content.mkdir()
    record, _ = run_cell("01_attention.ipynb", content, tmp_path, colab=fake_colab, source=source_repo)
    clone = content / "transunet-from-scratch"
    assert [c[:2] for c in record["calls"]] == [["git", "clone"], [sys.executable, "-m"]]
    assert not (tmp_path / "download.json").exists() and record["camvid_dir"] is None
    # a restarted kernel starts in /content again: the clone is there, no second clone
    record, _ = run_cell("05_unet_decoder.ipynb", content, tmp_path, colab=fake_colab, source=source_repo)
    assert "error" not in record, record
    assert record["calls"] == [[sys.executable, "-m", "pip", "install", "--quiet", "-e", str(clone)]]
    assert record["cwd"] == str(clone / "notebooks")


def test_errors_show_as_one_message_in_ipython(tmp_path):
    """In a kernel, both ways the cell stops (no project: SystemExit; no tutorial_lib: SetupError)
    print the message without a traceback, and the run counts as failed (Jupyter stops Run All)."""
    script = tmp_path / "ipython_check.py"
    script.write_text(
        "import json, sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance(colors='NoColor')\n"
        f"sys.path.insert(0, {str(NOTEBOOKS)!r}) if sys.argv[1] == 'setup-error' else None\n"
        "code = open(sys.argv[2]).read()\n"
        "print('<<<')\n"
        "result = shell.run_cell(code)\n"
        "print('>>>', json.dumps(result.success))\n"
    )
    cell = tmp_path / "cell.py"
    cell.write_text(bootstrap.setup_cell("01_attention.ipynb", URL))
    raising = tmp_path / "raise.py"
    raising.write_text("import bootstrap\nraise bootstrap.SetupError(bootstrap.not_importable_message('URL'))\n")
    for kind, code, expected in (("system-exit", cell, f"git clone {URL} transunet-from-scratch"),
                                 ("setup-error", raising, "SetupError: tutorial_lib cannot be imported")):
        out = subprocess.run([sys.executable, str(script), kind, str(code)], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120).stdout
        shown = out.split("<<<", 1)[1].split(">>>", 1)[0]
        assert expected in shown and out.rstrip().endswith(">>> false"), out
        assert "Traceback" not in shown and not re.search(r"line \d+|Cell In\[", shown), shown


# --- the module's own parts ---------------------------------------------------------------------

def test_pip_failure_and_unknown_data_give_clear_errors(monkeypatch):
    monkeypatch.setattr(bootstrap, "on_colab", lambda: True)
    monkeypatch.setattr(bootstrap, "_imported_from", lambda name, root: False)

    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="Collecting x\n", stderr="ERROR: No space left\n")

    with pytest.raises(bootstrap.SetupError, match=r"(?s)pip install --quiet -e .*exit status 1.*No space left"):
        bootstrap.setup(URL, run=failing_pip)
    with pytest.raises(ValueError, match="knows only"):
        bootstrap.setup(URL, data="cityscapes")


def test_the_default_downloader_is_the_projects(monkeypatch, tmp_path):
    import tutorial_lib.data.download as download

    calls = []
    monkeypatch.setattr(download, "download_camvid", lambda *a, **k: calls.append((a, k)) or a[0])
    bootstrap._download_camvid(tmp_path / "camvid", REPO / bootstrap.MANIFEST)
    assert calls == [((tmp_path / "camvid",), {"manifest": REPO / bootstrap.MANIFEST})]
    assert REPO / bootstrap.MANIFEST == download.DEFAULT_MANIFEST


@pytest.mark.slow  # about 20 s: pip prepares the editable install's metadata
def test_pip_install_e_keeps_an_installed_torch(tmp_path):
    """``pip install -e`` of the project, offline and dry: every requirement, torch>=2.4 included, is met by
    what is installed (here torch 2.13.0+cpu, a local version as Colab's +cuXXX builds are), so pip would
    install the project alone and leave torch as it is."""
    import torch

    project = tmp_path / "project"
    for name in ("pyproject.toml", "README.md"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, project / name)
    (project / "tutorial_lib").mkdir()  # the requirements are all that matters here
    (project / "tutorial_lib" / "__init__.py").write_text("")
    report = tmp_path / "report.json"
    process = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation", "--quiet",
         "--report", str(report), "-e", str(project)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert process.returncode == 0, process.stderr
    install = json.loads(report.read_text())["install"]
    assert [item["metadata"]["name"] for item in install] == ["tutorial_lib"]
    assert any(r.replace(" ", "").startswith("torch>=2.4") for r in install[0]["metadata"]["requires_dist"])
    assert "+" in torch.__version__  # the installed torch has a local version label, and it was kept
