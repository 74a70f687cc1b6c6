"""A failing check shows the learner's problem, not the checker's internals
(course/checks/display.py): in a real kernel, as a notebook shows it."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

from course.checks import display
from course.grading.learner_check import points

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TEST_META = {"nbgrader": {"grade": True, "grade_id": "test_gd_step", "points": 2,
                          "solution": False, "locked": True, "schema_version": 3}}

CELLS = {
    "wrong": "def gd_step(w, grad, lr):\n    return w + lr * grad\n",
    "raises": "def gd_step(w, grad, lr):\n    step = lr * grad\n    return w.detach() - step\n",
    "torch": "import torch\n\ndef gd_step(w, grad, lr):\n    return torch.add(w, 'x')\n",
}


@pytest.fixture(scope="module")
def executed():
    """Each learner definition followed by the released test cell, run in a kernel."""
    cells = []
    for source in CELLS.values():
        cells.append(nbformat.v4.new_code_cell(source))
        cells.append(nbformat.v4.new_code_cell(
            "from course.checks import check_gd_step\n\ncheck_gd_step(gd_step)", metadata=TEST_META))
    nb = nbformat.v4.new_notebook(cells=cells)
    NotebookClient(nb, timeout=60, allow_errors=True, kernel_name="python3",
                   extra_arguments=["--IPKernelApp.log_level=ERROR"]).execute()
    return {kind: nb.cells[2 * i + 1] for i, kind in enumerate(CELLS)}


def _error(cell) -> tuple[dict, str]:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 1, cell.outputs
    return errors[0], ANSI.sub("", "\n".join(errors[0].traceback))


@pytest.mark.parametrize("kind", list(CELLS))
def test_no_frame_of_the_course_package(executed, kind):
    error, text = _error(executed[kind])
    assert error.ename == "CheckFailure"
    assert "course/" not in text and "derive.py" not in text and "spec.py" not in text, text
    assert "check_gd_step(gd_step)" not in text, text       # nor the test cell's own line
    assert points(executed[kind]) == 0                        # the cell still fails for nbgrader


def test_a_wrong_value_shows_the_message_only(executed):
    error, text = _error(executed["wrong"])
    assert text.splitlines() == [f"CheckFailure: {error.evalue.splitlines()[0]}",
                                 *error.evalue.splitlines()[1:]]
    assert "expected 4.6, got 5.4" in text and "Diagnosis: your update moved w uphill" in text


@pytest.mark.parametrize("kind, line, exc", [
    ("raises", "return w.detach() - step", "AttributeError: 'float' object has no attribute 'detach'"),
    ("torch", "return torch.add(w, 'x')", "TypeError: add(): argument 'other'"),
])
def test_an_exception_in_learner_code_shows_their_line_and_the_case(executed, kind, line, exc):
    _, text = _error(executed[kind])
    assert re.search(rf"----> \d+\s+{re.escape(line)}", text), text
    assert "Cell In[" in text and exc in text, text
    assert re.search(r"CheckFailure: case '[^']+': `gd_step` raised", text), text
    assert len(text.splitlines()) < 16, text


def test_outside_ipython_nothing_changes():
    display.install()            # no IPython shell in pytest: a no-op
    from course.checks import CheckFailure
    assert display.learner_traceback(None) is None
    with pytest.raises(CheckFailure):
        from course.checks import check_gd_step
        check_gd_step(lambda w, grad, lr: w + lr * grad)
