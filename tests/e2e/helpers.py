"""Helpers for the browser tests (JupyterLab, as `make lab` starts it, in headless Chromium).

* learner (test_lab_learner.py): every student notebook runs cell by cell and the
  only errors are the exercise stubs' NotImplementedError (and the checks that
  report them); the start page links the lessons; no news pop-up, no instructor panels;
* instructor (test_lab_instructor.py): every solution notebook runs with no error and
  every figure renders; nbgrader's Validate passes a solution and fails a student notebook;
  formgrader shows a submission full of script (tests/fixtures/attacks_render.py) and none of
  it runs, not even injected into the page (CSP), while manual grading still saves.
"""

from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").glob("[0-9][0-9]-*") if p.is_dir())

KERNEL_READY = """async () => {
  const panel = window.jupyterapp.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  await panel.sessionContext.session.kernel.info;
}"""

RUN_CELL_BY_CELL = """async () => {
  const app = window.jupyterapp;
  const nb = app.shell.currentWidget.content;
  const n = nb.widgets.length;   // fixed: running the last cell appends a new one
  nb.activeCellIndex = 0;
  for (let i = 0; i < n; i++) {
    await app.commands.execute('notebook:run-cell-and-select-next');
  }
}"""

OUTPUTS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i).toJSON();
    out.push({type: c.cell_type, nbgrader: (c.metadata || {}).nbgrader || null,
              outputs: c.outputs || []});
  }
  return out;
}"""


#: Close every tab without asking (the tests never save) and open one file.
OPEN_IN_APP = """async (path) => {
  const app = window.jupyterapp;
  for (const w of Array.from(app.shell.widgets('main'))) { w.dispose(); }
  await app.commands.execute('docmanager:open', {path});
}"""


def _app_ready(page, lab) -> bool:
    """This page already shows ``lab``'s JupyterLab, with no dialog open."""
    return page.url.startswith(lab.url) and page.evaluate(
        "() => !!window.jupyterapp && !document.querySelector('.jp-Dialog')")


def open_notebook(page, lab, path: str) -> None:
    """Open ``path`` and wait for its kernel. A page that already runs this
    JupyterLab opens it in place (loading the app once saves seconds per notebook)."""
    if _app_ready(page, lab):
        page.evaluate(OPEN_IN_APP, path)
    else:
        page.goto(f"{lab.url}/lab/tree/{path}?reset&token={lab.token}")
    page.wait_for_function(f"() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           f" && window.jupyterapp.shell.currentWidget.context"
                           f" && window.jupyterapp.shell.currentWidget.context.path === {path!r}",
                           timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    page.evaluate(KERNEL_READY)


def wait_idle(page, timeout: int = 120_000) -> None:
    page.wait_for_function("""() => {
        const busy = [...document.querySelectorAll('.jp-InputArea-prompt')]
            .some(p => p.textContent.includes('*'));
        const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
        return !busy && ind && ind.dataset.status === 'idle';
    }""", timeout=timeout)
