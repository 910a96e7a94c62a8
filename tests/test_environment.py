"""The two install routes (pip and conda) must list the same dependencies."""

import re
import tomllib
from pathlib import Path

import yaml  # comes with jupyterlab (jupyter_events)

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_side = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    for req in extras["dev"]:
        if _name(req) == "tutorial-lib":  # the dev extra includes other extras of this project
            group = re.search(r"\[(.*)\]", req).group(1)
            pip_side |= {_name(r) for r in extras[group]}
        else:
            pip_side.add(_name(req))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_side = set()
    for item in env["dependencies"]:
        items = item["pip"] if isinstance(item, dict) else [item]
        conda_side |= {_name(i) for i in items if not i.startswith("-e")}
    conda_side -= {"python", "pip"}
    assert conda_side == pip_side, (
        f"only in environment.yml: {sorted(conda_side - pip_side)}; "
        f"only in pyproject.toml: {sorted(pip_side - conda_side)}"
    )
