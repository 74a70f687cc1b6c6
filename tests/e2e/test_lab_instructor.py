"""The instructor's JupyterLab (`make lab-instructor`): solutions run and render, Validate."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import ASSIGNMENTS, OUTPUTS, open_notebook, wait_idle


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_solution_notebook_runs_and_renders_figures(a, notebook_page, instructor_lab, screenshots):
    page = notebook_page
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
