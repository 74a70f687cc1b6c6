"""The learner's JupyterLab (`make lab`): student notebooks, start page, no instructor UI."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import ASSIGNMENTS, OUTPUTS, RUN_CELL_BY_CELL, open_notebook, wait_idle


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_student_notebook_only_stub_errors(a, notebook_page, learner_lab, screenshots):
    page = notebook_page
    open_notebook(page, learner_lab, f"{a}/{a}.ipynb")
    page.evaluate(RUN_CELL_BY_CELL)
    wait_idle(page)
    cells = page.evaluate(OUTPUTS)
    errors = [(c["nbgrader"], o) for c in cells for o in c["outputs"]
              if o["output_type"] == "error"]
    assert errors, "the unsolved notebook should show the stubs' errors"
    # what nbgrader's Validator (invert=True) requires: every test cell fails
    for c in cells:
        meta = c["nbgrader"] or {}
        if c["type"] == "code" and meta.get("grade"):
            failed = [o for o in c["outputs"] if o["output_type"] == "error"]
            assert failed, f"{a}: test cell {meta.get('grade_id')} passed on the unsolved notebook"
    for meta, out in errors:
        is_test = bool(meta and meta.get("grade"))
        ok = out["ename"] == "NotImplementedError" or \
            (is_test and ("not implemented yet" in out["evalue"]
                          or "is not answered yet" in out["evalue"]))
        assert ok, f"{a}: unexpected {out['ename']}: {out['evalue'][:200]}"
    shown = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert shown.filter(has_text="NotImplementedError").count() > 0
    page.screenshot(path=str(screenshots / f"student-{a}.png"), full_page=False)
    learner_lab.shutdown_kernels()


def test_learner_lab_has_no_news_and_no_instructor_panels(page, learner_lab):
    page.goto(f"{learner_lab.url}/lab?token={learner_lab.token}")
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    config = page.evaluate("() => JSON.parse(document.getElementById("
                           "'jupyter-config-data').textContent)")
    disabled = set(config.get("disabledExtensions", []))
    assert {"@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:formgrader"} <= disabled
    commands = page.evaluate("() => window.jupyterapp.commands.listCommands()")
    assert "nbgrader:open-formgrader" not in commands
    # no exchange in self-study: no Assignment List (and its "Error fetching courses!")
    assert "@jupyter/nbgrader:assignment-list" in disabled
    assert "nbgrader:open-assignment-list" not in commands
    # the grading sandbox kernel is the instructor's, not offered to the learner
    assert set(learner_lab.api("/api/kernelspecs")["kernelspecs"]) == {"python3"}
    page.wait_for_timeout(1500)
    assert page.locator("text=Would you like to get notified about official Jupyter news?").count() == 0


def test_start_page_links_every_lesson_in_order(page, learner_lab, screenshots):
    """`make lab` opens START.md, rendered (not as source), linking the lessons in order."""
    page.goto(f"{learner_lab.url}/?token={learner_lab.token}")
    page.wait_for_url("**/lab/tree/START.md**", timeout=60_000)
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
