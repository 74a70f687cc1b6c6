"""The course in a real browser: JupyterLab (as `make lab` starts it) in headless Chromium.

* learner: every student notebook runs cell by cell; the only errors are the
  exercise stubs' NotImplementedError (and the checks that report them);
* solutions: every solution notebook runs with no error and every figure renders;
* instructor: nbgrader's Validate passes a solution and fails a student notebook;
* the learner's JupyterLab has no news pop-up and no instructor panels.
"""

from __future__ import annotations

import pathlib

import pytest

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


def open_notebook(page, lab, path: str) -> None:
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


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    yield p
    context.close()


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_student_notebook_only_stub_errors(a, page, learner_lab, screenshots):
    open_notebook(page, learner_lab, f"{a}/{a}.ipynb")
    page.evaluate(RUN_CELL_BY_CELL)
    wait_idle(page)
    cells = page.evaluate(OUTPUTS)
    errors = [(c["nbgrader"], o) for c in cells for o in c["outputs"]
              if o["output_type"] == "error"]
    assert errors, "the unsolved notebook should show the stubs' errors"
    for meta, out in errors:
        is_test = bool(meta and meta.get("grade"))
        ok = out["ename"] == "NotImplementedError" or \
            (is_test and "not implemented yet" in out["evalue"])
        assert ok, f"{a}: unexpected {out['ename']}: {out['evalue'][:200]}"
    shown = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert shown.filter(has_text="NotImplementedError").count() > 0
    page.screenshot(path=str(screenshots / f"student-{a}.png"), full_page=False)
    learner_lab.shutdown_kernels()


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_solution_notebook_runs_and_renders_figures(a, page, instructor_lab, screenshots):
    open_notebook(page, instructor_lab, f"solutions/{a}/{a}.ipynb")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_timeout(500)
    wait_idle(page)
    cells = page.evaluate(OUTPUTS)
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{a}: {errors[0]['ename']}: {errors[0]['evalue'][:300]}"
    n_png = sum("image/png" in o.get("data", {}) for c in cells for o in c["outputs"])
    assert n_png >= 2, f"{a}: expected at least two figures, got {n_png}"
    page.wait_for_function(
        f"() => [...document.querySelectorAll('.jp-RenderedImage img')]"
        f".filter(i => i.complete && i.naturalWidth > 0).length >= {n_png}", timeout=30_000)
    sizes = page.evaluate("() => [...document.querySelectorAll('.jp-RenderedImage img')]"
                          ".map(i => [i.naturalWidth, i.naturalHeight])")
    assert len(sizes) == n_png and all(w > 0 and h > 0 for w, h in sizes)
    shot = screenshots / f"solution-{a}.png"
    page.locator(".jp-RenderedImage img").first.scroll_into_view_if_needed()
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    instructor_lab.shutdown_kernels()


@pytest.mark.parametrize("which, expected", [("solutions", "validation-success"),
                                             ("notebooks", "validation-failed")])
def test_instructor_validate_button(which, expected, page, instructor_lab):
    a = ASSIGNMENTS[0]
    open_notebook(page, instructor_lab, f"{which}/{a}/{a}.ipynb")
    page.locator(".validate-button button, button.validate-button").first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=120_000)
    page.wait_for_selector(f".jp-Dialog .{expected}", timeout=120_000)
    instructor_lab.shutdown_kernels()


def test_learner_lab_has_no_news_and_no_instructor_panels(page, learner_lab):
    page.goto(f"{learner_lab.url}/lab?token={learner_lab.token}")
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    config = page.evaluate("() => JSON.parse(document.getElementById("
                           "'jupyter-config-data').textContent)")
    disabled = set(config.get("disabledExtensions", []))
    assert {"@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:formgrader"} <= disabled
    commands = page.evaluate("() => window.jupyterapp.commands.listCommands()")
    assert "nbgrader:open-formgrader" not in commands
    assert "nbgrader:open-assignment-list" in commands
    page.wait_for_timeout(1500)
    assert page.locator("text=Would you like to get notified about official Jupyter news?").count() == 0


def test_start_page_links_every_lesson_in_order(page, learner_lab, screenshots):
    """`make lab` opens START.md, rendered (not as source), linking the lessons in order."""
    page.goto(f"{learner_lab.url}/lab/tree/START.md?reset&token={learner_lab.token}")
    page.wait_for_selector(".jp-RenderedMarkdown a[href*='01-gradient-descent']", timeout=60_000)
    hrefs = page.evaluate("() => [...document.querySelectorAll('.jp-RenderedMarkdown a')]"
                          ".map(a => a.getAttribute('href'))")
    lessons = [h.split("?")[0].split("/files/")[-1] for h in hrefs if ".ipynb" in h]
    assert lessons == [f"{a}/{a}.ipynb" for a in ASSIGNMENTS], hrefs
    page.screenshot(path=str(screenshots / "start.png"))
    page.locator(".jp-RenderedMarkdown a[href*='01-gradient-descent']").first.click()
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.context.path"
                           " === '01-gradient-descent/01-gradient-descent.ipynb'", timeout=60_000)
    learner_lab.shutdown_kernels()
