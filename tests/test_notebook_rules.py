"""The output rule of notebooks/README.md, checked on every notebook.

A cell tagged `nbval-ignore-output` frees its digits from nbval's comparison; the claim the prose makes about them
must then be asserted by the next code cell. Cells that print no text (a live widget, which the browser tests drive,
or a figure) are the exception.
"""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def code_cells(path):
    cells = json.loads(path.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code"]


def prints_text(cell) -> bool:
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream" and out.get("name") == "stdout" and "".join(out["text"]).strip():
            return True
        data = out.get("data", {})
        if "text/plain" in data and WIDGET_MIME not in data and "image/png" not in data:
            return True
    return False


def asserts(cell) -> bool:
    return re.search(r"^\s*assert\b", "".join(cell["source"]), flags=re.M) is not None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_ignored_output_is_followed_by_an_assert_of_its_claim(path):
    cells = code_cells(path)
    defects = []
    for i, cell in enumerate(cells):
        if "nbval-ignore-output" not in cell.get("metadata", {}).get("tags", []):
            continue
        if not prints_text(cell):
            continue  # a live widget (tested in the browser) or a figure: no digits to free
        following = cells[i + 1] if i + 1 < len(cells) else None
        if following is None or not asserts(following):
            first = "".join(cell["source"]).splitlines()[0]
            defects.append(f"code cell {i} ({first!r}) has free digits but no assert of its claim after it")
    assert not defects, "\n".join(defects)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_raw_float_differences_are_printed(path):
    """`max |difference|: 3.6e-07` depends on the CPU; print the comparison instead."""
    pattern = re.compile(r"difference[^\n<]*?\d(\.\d+)?e-\d+", re.I)
    bad = []
    for i, cell in enumerate(code_cells(path)):
        if "nbval-ignore-output" in cell.get("metadata", {}).get("tags", []):
            continue
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", [])) + "".join(out.get("data", {}).get("text/plain", []))
            if pattern.search(text):
                bad.append(f"code cell {i}: {pattern.search(text).group(0)!r}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_stay_small_and_carry_no_widget_state(path):
    """Well under 2 MB each; executed widget state (hundreds of kB, useless without a kernel) is not stored."""
    assert path.stat().st_size < 1.5 * 2**20, f"{path.name} is {path.stat().st_size / 2**20:.2f} MB"
    assert "widgets" not in json.loads(path.read_text())["metadata"]
