"""The explorers of lessons 01 and 04 in the learner's JupyterLab (student notebooks).

The solution code goes into the exercise cells through the notebook model (the
learner's own functions are stubs in the release), the notebook runs up to the
explorer, a slider moves (its readout is edited, as a learner can), and the
test checks that the widget draws a different figure and that the measured rate
it prints matches the computed one. Unsolved, the explorer says it runs the
course's reference, and still works.
"""

from __future__ import annotations

import re

import pytest

from course.explorers import heavy_ball_rate
from tests.e2e.helpers import open_notebook, wait_idle

L01, L04 = "01-gradient-descent", "04-momentum"

#: Replace each listed stub by its body ($1 is the stub's indentation).
SOLVE = """([pairs]) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  for (const [gid, body] of pairs) {
    const w = nb.widgets.find(w => ((w.model.getMetadata('nbgrader') || {}).grade_id) === gid);
    const src = w.model.sharedModel.getSource();
    const solved = src.replace(/# YOUR CODE HERE\\n(\\s*)raise NotImplementedError\\(\\)/, body);
    if (solved === src) { throw new Error('no stub in ' + gid); }
    w.model.sharedModel.setSource(solved);
  }
}"""

#: Run every cell up to and including the explorer's; return its index.
RUN_TO_EXPLORER = """async () => {
  const app = window.jupyterapp;
  const nb = app.shell.currentWidget.content;
  const last = nb.widgets.findIndex(w => w.model.sharedModel.getSource().includes('_explorer('));
  for (let i = 0; i <= last; i++) {
    nb.activeCellIndex = i;
    await app.commands.execute('notebook:run-cell');
  }
  return last;
}"""

GD_BODY = ("w = w0\n$1history = [w0]\n$1for _ in range(n_steps):\n"
           "$1    w = w - lr * f_grad(w)\n$1    history.append(w)\n$1return history")
MOMENTUM_BODY = ("if buf is None:\n$1    new_buf = grad.clone()\n$1else:\n"
                 "$1    new_buf = buf.mul(momentum).add(grad, alpha=1 - dampening)\n"
                 "$1return p.add(new_buf, alpha=-lr), new_buf")
SOLUTIONS = {
    L01: [["derivative", "return 2 * (w - 3)"], ["gradient_descent", GD_BODY]],
    L04: [["momentum_step", MOMENTUM_BODY]],
}

FLOAT = r"([+-]?\d+\.\d+)"


def _run_to_explorer(page, lab, lesson: str, solve: bool):
    open_notebook(page, lab, f"{lesson}/{lesson}.ipynb")
    if solve:
        page.evaluate(SOLVE, [SOLUTIONS[lesson]])
    index = page.evaluate(RUN_TO_EXPLORER)
    wait_idle(page)
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.scroll_into_view_if_needed()
    cell.locator(".widget-slider").first.wait_for(timeout=60_000)
    static = cell.locator(".jp-OutputArea-output img").first.get_attribute("src")
    text = cell.locator(".jp-OutputArea-output").all_inner_texts()
    return cell, static, "\n".join(text)


def _set_slider(cell, n: int, value: str) -> None:
    """Type a value into the n-th slider's readout, as a learner can."""
    readout = cell.locator(".widget-readout").nth(n)
    readout.click()
    readout.press("Control+a")
    readout.type(value)
    readout.press("Enter")


def _widget_text(cell, needle: str, page) -> tuple[str, str]:
    """Wait for the Output widget to show ``needle``; return its text and image."""
    out = cell.locator(".widget-output")
    out.filter(has_text=needle).wait_for(timeout=60_000)
    out.locator("img").first.wait_for(timeout=60_000)
    return out.inner_text(), out.locator("img").first.get_attribute("src")


@pytest.mark.parametrize("solve", [True, False], ids=["solved", "stub"])
def test_lesson01_lr_slider(solve, notebook_page, learner_lab):
    page = notebook_page
    cell, static, text = _run_to_explorer(page, learner_lab, L01, solve)
    assert "lr = 0.100: monotone; measured e_1/e_0 = +0.8000, 1 - 2 lr = +0.8000" in text
    assert ("not implemented yet" in text) is (not solve)
    _set_slider(cell, 0, "0.9")
    shown, image = _widget_text(cell, "lr = 0.900", page)
    assert image and image != static
    m = re.search(rf"lr = 0\.900: (\w+); measured e_1/e_0 = {FLOAT}, 1 - 2 lr = {FLOAT}", shown)
    assert m, shown
    # one step on (w - 3)^2 multiplies the error by exactly 1 - 2 lr (up to float64
    # rounding, 1e-15); both are printed to 4 decimals, so they must print the same
    assert m.group(1) == "oscillating"
    assert m.group(2) == m.group(3) == "-0.8000"
    learner_lab.shutdown_kernels()


@pytest.mark.parametrize("solve", [True, False], ids=["solved", "stub"])
def test_lesson04_gamma_beta_sliders(solve, notebook_page, learner_lab, screenshots):
    page = notebook_page
    cell, static, text = _run_to_explorer(page, learner_lab, L04, solve)
    assert "γ = 0.040, β = 0.70: computed rate 0.8367" in text
    assert ("not implemented yet" in text) is (not solve)
    _set_slider(cell, 1, "0.5")          # beta first: lr stays 0.04
    shown, image = _widget_text(cell, "β = 0.50", page)
    assert image and image != static
    m = re.search(rf"γ = {FLOAT}, β = {FLOAT}: computed rate {FLOAT}, measured rate {FLOAT}",
                  shown)
    assert m, shown
    lr, beta, computed, measured = map(float, m.groups())
    assert (lr, beta) == (0.04, 0.5)
    assert computed == pytest.approx(float(heavy_ball_rate(0.04, 0.5, [1.0, 25.0])), abs=1e-4)
    # 0.02: the measured rate compares sums of two 60-loss windows; over a grid of
    # (lr, beta) on this valley it never differed from the computed one by more than
    # 0.011 (tests/test_explorers.py)
    assert measured == pytest.approx(computed, abs=0.02)
    assert ("not implemented yet" in shown) is (not solve)
    shot = screenshots / f"explorer-04-{'solved' if solve else 'stub'}.png"
    cell.screenshot(path=str(shot))
    print(f"lesson-04 explorer after the slider moved: {shot}")
    learner_lab.shutdown_kernels()
