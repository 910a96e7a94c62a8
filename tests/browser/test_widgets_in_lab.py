"""The notebooks' widgets, used in JupyterLab in a real (headless) Chromium.

nbval checks what the notebooks print, but it cannot see a widget: the widget cells are tagged
``nbval-ignore-output`` and their front end (ipywidgets' JavaScript in Lab) never runs under it.
These tests do what a reader does: open each notebook with a widget in JupyterLab, run all cells
from Lab's Run menu, then move each widget and check that what it shows changes. They assert on
the page's DOM (readouts, text, the ``src`` of the drawn images), never on pixels.

Run with the README's ``make test`` (all in one pytest-xdist worker) or alone with
``.venv/bin/python -m pytest tests/browser``; they need Chromium (see conftest.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

# Every notebook with a widget, and how long "Run All Cells" may take in Lab (the notebooks' own
# budgets on a 2-core CPU are 90 s for 01-06 and 5 min for 07; Lab shares the CPU with the rest
# of the test suite, hence the headroom).
NOTEBOOKS = {
    "01": ("01_attention.ipynb", 240_000),
    "03": ("03_vision_transformer.ipynb", 240_000),
    "04": ("04_resnet_stages.ipynb", 240_000),
    "07": ("07_train_camvid.ipynb", 480_000),  # Lab runs it with TU_NOTEBOOK_QUICK=1 (conftest.py)
}

REDRAW_TIMEOUT_MS = 60_000  # one widget callback (a forward pass and a plot) on a loaded 2-core CPU

# The widget's parts that a reader moves: sliders, drop-downs, toggle buttons, ...
CONTROL = (
    ".widget-slider, .widget-dropdown, .widget-toggle-buttons, .widget-radio, "
    ".widget-inline-hbox.widget-text, .widget-checkbox"
)

# Everything a widget draws: images inside its output areas or ipywidgets.Image views.
IMAGES_JS = "el => [...el.querySelectorAll('img')].map(i => i.src).join('\\n')"


@dataclass(frozen=True)
class WidgetCase:
    id: str
    notebook: str  # key of NOTEBOOKS
    root: str  # CSS class the notebook gives the widget, or its box of controls (widget.add_class)
    # The controls to move, one after the other: CSS selectors inside the root (or, failing that,
    # anywhere in the notebook); None: the first control inside the root.
    controls: tuple[str | None, ...] = (None,)
    output: str | None = None  # CSS class of a separately displayed output that must redraw
    stats: str | None = None  # CSS class of a text that must change with the controls
    stats_value: str | None = None  # regex: its first group in the stats text must change too

    def __str__(self) -> str:
        return self.id


WIDGETS = [
    # Softmax saturation for growing d_k, with and without the 1/sqrt(d_k) scaling.
    WidgetCase("01-sqrt-dk", "01", "tu-sqrt-dk", (".widget-slider", ".widget-checkbox"), output="tu-sqrt-dk-output"),
    # A Non-local block's attention map for one query pixel: follows the query and the locality.
    WidgetCase("01-nonlocal", "01", "tu-nonlocal", (".widget-slider", ".widget-dropdown"), output="tu-nonlocal-output"),
    # P -> N = HW/P^2 tokens: the reported count and the drawn patch grid both follow the slider.
    WidgetCase("03-patch-size", "03", "tu-patch-widget", (".tu-patch-slider",),
               stats="tu-patch-stats", stats_value=r"([\d,]+) tokens"),
    # A query token's attention map over the patch grid: follows the query, head, layer and image.
    WidgetCase("03-attention", "03", "tu-attention-widget", (".tu-query", ".tu-head", ".tu-layer", ".tu-example")),
    # Feature maps of the ResNet stages.
    WidgetCase("04-feature-maps", "04", "tu-feature-widget"),
    # CamVid predictions: another val image redraws the overlay and changes the image's scores ...
    WidgetCase("07-prediction", "07", "tu-prediction-widget", (".tu-pred-image",),
               stats="tu-prediction-stats", stats_value=r"pixel accuracy ([\d.]+)%"),
    # ... and the opacity and "errors only" redraw it too.
    WidgetCase("07-prediction-overlay", "07", "tu-prediction-widget", (".tu-pred-opacity", ".tu-pred-errors")),
    # The trained transformer's attention on CamVid: the query patch and the image move the map
    # and the readout (class under the query, classes attended to) ...
    WidgetCase("07-attention", "07", "tu-camvid-attention-widget", (".tu-att-col", ".tu-att-row", ".tu-att-image"),
               stats="tu-camvid-attention-stats"),
    # ... and so do the layer and the head.
    WidgetCase("07-attention-head", "07", "tu-camvid-attention-widget", (".tu-att-layer", ".tu-att-head")),
]


def open_notebook(lab, key: str):
    name, timeout_ms = NOTEBOOKS[key]
    return lab.notebook(name, run_timeout_ms=timeout_ms)


def wait_kernel_idle(page) -> None:
    expect(page.locator("#jp-main-statusbar")).to_contain_text(re.compile(r"\(ipykernel\) \| Idle"))


def move_control(control) -> str:
    """Change a widget control the way a reader would; return what was done (for messages)."""
    kind = control.evaluate(
        """el => el.querySelector('.noUi-handle') ? 'slider'
              : el.querySelector('select') ? 'select'
              : el.querySelector('.widget-toggle-button, button') ? 'buttons'
              : el.querySelector('input[type=radio]') ? 'radio'
              : el.querySelector('input[type=checkbox]') ? 'checkbox'
              : el.querySelector('input[type=number], input[type=text]') ? 'number'
              : 'unknown'"""
    )
    if kind == "slider":
        # ipywidgets 8 sliders are noUiSlider: focus the handle and use the arrow keys.
        handle = control.locator(".noUi-handle").first
        before = handle.get_attribute("aria-valuenow")
        at_max = float(before) >= float(handle.get_attribute("aria-valuemax"))
        key = "ArrowLeft" if at_max else "ArrowRight"
        handle.focus()
        handle.press(key)
        expect(handle).not_to_have_attribute("aria-valuenow", before)
        readout = control.locator(".widget-readout")
        shown = readout.first.inner_text() if readout.count() else handle.get_attribute("aria-valuenow")
        return f"slider {key} -> {shown}"
    if kind == "select":
        select = control.locator("select").first
        options = [o.replace("\xa0", " ") for o in select.locator("option").all_inner_texts()]
        assert len(options) > 1, f"drop-down has only {options}"
        current = select.evaluate("s => s.selectedIndex")
        target = (current + 1) % len(options)
        select.select_option(index=target)
        return f"drop-down {options[current]!r} -> {options[target]!r}"
    if kind == "buttons":
        button = control.locator("button:not(.mod-active)").first
        label = button.inner_text()
        button.click()
        return f"button {label!r}"
    if kind == "radio":
        radio = control.locator("input[type=radio]:not(:checked)").first
        radio.check()
        return "radio button"
    if kind == "checkbox":
        control.locator("input[type=checkbox]").first.click()
        return "checkbox"
    if kind == "number":
        box = control.locator("input").first
        value = float(box.input_value() or 0)
        box.fill(str(int(value) + 1 if value.is_integer() else value + 0.1))
        box.press("Enter")
        return f"text box -> {box.input_value()}"
    raise AssertionError(f"don't know how to move this control: {control.evaluate('el => el.outerHTML')[:500]}")


def numbers_in(text: str) -> list[str]:
    return re.findall(r"\d[\d,.]*", text)


@pytest.mark.parametrize("key", sorted(NOTEBOOKS))
def test_notebook_runs_in_lab(lab, key):
    """Run All Cells from Lab's menu: every code cell gets an execution count, no cell shows an
    error (exception, traceback on stderr, widget that failed to display), the kernel ends idle,
    and at least one ipywidget rendered."""
    nb = open_notebook(lab, key)
    state = lab.run_state(nb)
    assert state["running"] == 0 and not state["errors"], state
    expect(nb.panel.locator(".jp-OutputArea-output .jupyter-widgets").first).to_be_visible()
    print(f"{nb.name}: all cells ran in JupyterLab in {nb.run_seconds:.1f} s")


@pytest.mark.parametrize("case", WIDGETS, ids=str)
def test_widget_responds(lab, artifacts_dir, case: WidgetCase):
    """The widget rendered with a drawing, and moving each of its controls redraws it (the ``src``
    of its images changes), updates its stats text where it has one, and raises no error."""
    nb = open_notebook(lab, case.notebook)
    page = nb.page
    root = nb.panel.locator(f".{case.root}").first
    expect(root, f"no element with class {case.root} in {nb.name}").to_be_visible()
    assert root.evaluate("el => el.matches('.jupyter-widgets') || !!el.querySelector('.jupyter-widgets')"), (
        f".{case.root} is not an ipywidget"
    )
    # What the widget draws: a separately displayed output, else the widget's own box, else (an
    # output displayed without a class) the rest of the same cell's output.
    cell_output = root.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-OutputArea ')][1]")
    if case.output:
        scope = nb.panel.locator(f".{case.output}").first
        expect(scope, f"no output with class {case.output} in {nb.name}").to_be_attached()
    elif root.evaluate("el => !!el.querySelector('.widget-output, img')"):
        scope = root
    else:
        scope = cell_output
    page.wait_for_function(f"el => ({IMAGES_JS})(el).length > 0", arg=scope.element_handle())
    stats = nb.panel.locator(f".{case.stats}").first if case.stats else None

    for selector in case.controls:
        control = root.locator(selector or CONTROL).first
        if selector and not control.count():
            control = nb.panel.locator(selector).first
        expect(control, f"no control {selector or CONTROL} in .{case.root}").to_be_visible()
        before_images = scope.evaluate(IMAGES_JS)
        before_stats = stats.inner_text() if stats else None

        action = move_control(control)

        try:
            page.wait_for_function(
                f"([el, old]) => {{ const now = ({IMAGES_JS})(el); return now.length > 0 && now !== old; }}",
                arg=[scope.element_handle(), before_images],
                timeout=REDRAW_TIMEOUT_MS,
            )
        except PlaywrightTimeoutError:
            state = lab.run_state(nb)
            raise AssertionError(
                f"{case.id}: the drawing did not change within {REDRAW_TIMEOUT_MS / 1000:.0f} s after {action}"
                + (f"; errors on the page: {state['errors']}" if state["errors"] else "")
            ) from None
        if stats is not None:
            expect(stats, f"{case.stats} did not change after {action}").not_to_have_text(before_stats)
        wait_kernel_idle(page)

        state = lab.run_state(nb)
        assert not state["errors"], f"after {action}: {state['errors']}"
        after_images = scope.evaluate(IMAGES_JS)
        assert after_images and after_images != before_images, f"the drawing did not change after {action}"
        if stats is not None:
            after_stats = stats.inner_text()
            assert numbers_in(after_stats) != numbers_in(before_stats), (
                f"the numbers in .{case.stats} did not change after {action}: {before_stats!r} -> {after_stats!r}"
            )
            if case.stats_value:
                old_value, new_value = (re.search(case.stats_value, t) for t in (before_stats, after_stats))
                assert old_value and new_value, f"{case.stats_value!r} not found in {before_stats!r} / {after_stats!r}"
                assert new_value.group(1) != old_value.group(1), (
                    f"{case.stats_value!r} stayed {old_value.group(1)} after {action}"
                )
                print(f"{case.id}: {action}; {old_value.group(0)!r} -> {new_value.group(0)!r}")
            else:
                print(f"{case.id}: {action}; {before_stats!r} -> {after_stats!r}")
        else:
            print(f"{case.id}: {action}; drawing changed")

    shot = cell_output if case.output else root  # controls and drawing together
    shot.scroll_into_view_if_needed()
    shot.screenshot(path=str(artifacts_dir / f"{case.id}.png"))
