"""The learner's workspace in a real browser, on a copy of the repository: work done
in `my-work/` survives `make release` and `make test`'s notebook checks; the start
page's `course check` runs in a JupyterLab terminal; a failing check shows no frame
of the course package."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest

from tests.e2e.conftest import Lab
from tests.e2e.helpers import open_notebook, wait_idle

ROOT = pathlib.Path(__file__).resolve().parents[2]
L01 = "01-gradient-descent"
NOTEBOOK = f"{L01}/{L01}.ipynb"
SOLVED = "return 2 * (w - 3)  # solved in the browser"

#: Replace the stub of the cell with this grade id and run it, then its test cell.
SOLVE_AND_RUN = """async ([gid, body]) => {
  const app = window.jupyterapp;
  const nb = app.shell.currentWidget.content;
  const ids = nb.widgets.map(w => ((w.model.getMetadata('nbgrader') || {}).grade_id));
  const i = ids.indexOf(gid);
  const cell = nb.widgets[i].model;
  cell.sharedModel.setSource(cell.sharedModel.getSource().replace(
      /# YOUR CODE HERE\\n(\\s*)raise NotImplementedError\\(\\)/, body));
  for (const j of [i, ids.indexOf('test_' + gid)]) {
    nb.activeCellIndex = j;
    await app.commands.execute('notebook:run-cell');
  }
  return i;
}"""

#: The text on the current terminal's screen.
TERMINAL_TEXT = """() => {
  const node = document.querySelector('.jp-Terminal .xterm-accessibility-tree');
  return node ? node.innerText : '';
}"""

ERROR_TEXT = """(gid) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const w = nb.widgets.find(w => ((w.model.getMetadata('nbgrader') || {}).grade_id) === gid);
  return w.node.querySelector('.jp-OutputArea-output').innerText;
}"""


def _tracked_copy(dest: pathlib.Path) -> None:
    """The repository as a learner's clone holds it (tracked and new files, not ignored ones)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")


@pytest.fixture(scope="module")
def repo(chromium_path, tmp_path_factory) -> pathlib.Path:
    dest = tmp_path_factory.mktemp("clone")
    _tracked_copy(dest)
    return dest


@pytest.fixture(scope="module")
def lab(repo, tmp_path_factory):
    # STAMP= : the copy uses this repo's .venv as it is (no reinstall into it).
    lab = Lab("lab", repo / "my-work", tmp_path_factory.mktemp("workspace-lab"),
              release=repo / "notebooks", cwd=repo, make_vars=("STAMP=",))
    yield lab
    lab.stop()


def _make(repo: pathlib.Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.run(["make", "-s", *args, "STAMP="], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_work_survives_release_and_tests_and_check_runs_in_a_terminal(page, lab, repo,
                                                                       screenshots):
    work = repo / "my-work" / NOTEBOOK
    assert work.is_file() and (repo / "my-work" / "START.md").is_file()
    open_notebook(page, lab, NOTEBOOK)
    page.evaluate(SOLVE_AND_RUN, ["derivative", SOLVED])
    page.evaluate(SOLVE_AND_RUN, ["gd_step", "return w + lr * grad  # uphill"])
    wait_idle(page)
    # a failing check: the message, no frame from course/
    shown = page.evaluate(ERROR_TEXT, "test_gd_step")
    assert "expected 4.6, got 5.4" in shown and "Diagnosis" in shown, shown
    assert "course/" not in shown and "derive.py" not in shown and "File " not in shown, shown
    assert len(shown.strip().splitlines()) <= 3, shown
    page.screenshot(path=str(screenshots / "workspace-failing-check.png"))
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty")
    assert SOLVED in work.read_text()

    # the maintainer's targets on the same repository leave the learner's work alone
    _make(repo, "release")
    tests = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "pytest", "-q",
                            "-p", "no:xdist", "tests/test_notebooks.py"], cwd=repo,
                           capture_output=True, text=True, timeout=900)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert SOLVED in work.read_text()

    # reload: the notebook the learner sees still holds the solution
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?reset&token={lab.token}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.content"
                           " && window.jupyterapp.shell.currentWidget.content.widgets.length > 5",
                           timeout=90_000)
    source = page.evaluate("""() => window.jupyterapp.shell.currentWidget.content.widgets
        .map(w => w.model.sharedModel.getSource()).join('\\n')""")
    assert SOLVED in source

    # the start page's command, typed into a JupyterLab terminal (it opens in my-work/)
    start = (repo / "my-work" / "START.md").read_text()
    command = re.search(r"^(course check 01)\s*$", start, re.M)
    assert command, "the start page shows `course check 01`"
    page.evaluate("() => window.jupyterapp.commands.execute('terminal:create-new')")
    page.wait_for_selector(".jp-Terminal .xterm-accessibility-tree", state="attached",
                           timeout=60_000)
    page.wait_for_function(f"() => ({TERMINAL_TEXT})().includes('$') || "
                           f"({TERMINAL_TEXT})().includes('#')", timeout=60_000)
    page.locator(".jp-Terminal .xterm-screen").first.click()
    page.keyboard.type(command.group(1) + "\n")
    page.wait_for_function(f"() => /total: \\d+ \\/ \\d+/.test(({TERMINAL_TEXT})())",
                           timeout=180_000)
    table = page.evaluate(TERMINAL_TEXT)
    page.screenshot(path=str(screenshots / "workspace-terminal.png"))
    assert re.search(r"test_derivative\s+passed\s+1 / 1", table), table
    assert re.search(r"test_gd_step\s+FAILED\s+0 / 2\s+case", table), table
    assert "TCP" not in table and "Traceback" not in table, table
