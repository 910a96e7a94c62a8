"""Layers point one way and nothing imports in a circle.

The import graph of ``tutorial_lib`` is read from the source (every ``import`` statement,
including those inside functions): models import no data, engine or plotting code; data
imports no model; the engine (training, evaluation, checkpoints, runtime, losses, metrics)
imports no plotting code; and there is no cycle. Then fresh interpreters check what actually
gets loaded: losses and metrics without the image libraries, the engine without matplotlib.
"""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tutorial_lib"

MODELS = {"attention", "vit", "resnet", "decoder", "transunet", "setr", "pretrained"}
ENGINE = {"train", "evaluate", "checkpoint", "runtime", "losses", "metrics", "constants"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(module: str) -> set[str]:
    """The tutorial_lib modules that ``module`` imports (a package's ``__init__`` counts as the
    package; importing a submodule also imports its parent packages, except the importer's own)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
    targets = set()
    for name in found:
        if name != "tutorial_lib" and not name.startswith("tutorial_lib."):
            continue
        while name not in MODULES:
            name = name.rpartition(".")[0]
        parts = name.split(".")
        for i in range(2, len(parts) + 1):  # the module and its parent packages
            parent = ".".join(parts[:i])
            if not (module == parent or module.startswith(parent + ".")):
                targets.add(parent)
    return targets


GRAPH = {m: imported(m) for m in MODULES}


def layer(module: str) -> str:
    top = module.split(".")[1] if "." in module else ""
    if top in MODELS:
        return "model"
    if top in ENGINE:
        return "engine"
    return top  # data, viz, export, predict, profile, exercises, ...


def test_the_graph_is_read():
    assert "tutorial_lib.evaluate" in GRAPH["tutorial_lib.train.engine"]
    assert "tutorial_lib.train.loaders" in GRAPH["tutorial_lib.train.engine"]  # from . import loaders
    assert "tutorial_lib.metrics" in GRAPH["tutorial_lib.viz.patches"]  # from .. import metrics
    assert "tutorial_lib.data" in GRAPH["tutorial_lib.evaluate"]


def test_no_import_cycle():
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if state.get(t) == "open":
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("importer, forbidden", [
    ("model", {"data", "engine", "viz"}),
    ("data", {"model", "engine", "viz"}),
    ("engine", {"viz"}),
])
def test_layers_point_one_way(importer, forbidden):
    wrong = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() if layer(m) == importer
                   for t in targets if layer(t) in forbidden and t != "tutorial_lib.constants")
    assert not wrong, wrong


def test_losses_metrics_and_runtime_stand_on_torch_alone():
    for module in ("losses", "metrics", "runtime", "constants"):
        assert GRAPH[f"tutorial_lib.{module}"] <= {"tutorial_lib.constants"}, module


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def test_losses_and_metrics_load_no_image_library():
    loaded = loaded_after("import tutorial_lib.losses, tutorial_lib.metrics")
    assert not {"albumentations", "cv2", "PIL", "tutorial_lib.data"} & loaded


def test_the_engine_runs_headless():
    loaded = loaded_after("import tutorial_lib.train, tutorial_lib.evaluate")
    assert not {m for m in loaded if re.match(r"(matplotlib|ipywidgets|IPython|tutorial_lib\.viz)\b", m)}


USER_MODULES = {"tutorial_lib.train", "tutorial_lib.evaluate", "tutorial_lib.losses", "tutorial_lib.metrics"}


def names_imported_by_users() -> set[tuple[str, str]]:
    """(module, name) of every ``from tutorial_lib.{train,evaluate,losses,metrics} import ...`` in the
    notebooks, tests and benchmarks."""
    pairs = set()
    sources = [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("benchmarks/*.py")]
    for path in sources:
        text = path.read_text()
        if path.suffix == ".ipynb":
            cells = [c for c in json.loads(text)["cells"] if c["cell_type"] == "code"]
            lines = "".join("".join(c["source"]) + "\n" for c in cells).splitlines()
            text = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module in USER_MODULES:
                pairs.update((node.module, alias.name) for alias in node.names)
    return pairs


def test_every_name_users_import_still_exists():
    import importlib

    pairs = names_imported_by_users()
    assert ("tutorial_lib.train", "_SeededAugmentation") in pairs and ("tutorial_lib.evaluate", "EvalTransform") in pairs
    missing = [f"{m}.{n}" for m, n in sorted(pairs) if not hasattr(importlib.import_module(m), n)]
    assert not missing, missing


# the public names of tutorial_lib.train and tutorial_lib.evaluate before the engine was split
FORMER_NAMES = {
    "tutorial_lib.train": (
        "CHECKPOINT_FORMAT SHIPPED_CHECKPOINT PRECISIONS TrainConfig TrainResult TrainingDivergedError "
        "cpu_supports_bf16 pick_device resolve_precision config_to_dict config_from_dict read_checkpoint "
        "load_checkpoint export_checkpoint lr_factor train build_parser config_from_args resume_config main "
        "_SeededAugmentation SegmentationLoss get_config"
    ),
    "tutorial_lib.evaluate": (
        "SPLITS EvalTransform available_splits resolve_data_dir camvid_split autocast_context predict_logits "
        "evaluate_model metrics_report format_table evaluate_checkpoint build_parser main"
    ),
}


@pytest.mark.parametrize("module", sorted(FORMER_NAMES))
def test_former_public_names_still_exist(module):
    import importlib

    mod = importlib.import_module(module)
    assert not [n for n in FORMER_NAMES[module].split() if not hasattr(mod, n)]
