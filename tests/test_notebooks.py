"""The lesson notebooks as nbgrader sees them.

nbval (configured in pyproject.toml) re-executes every solution notebook and
compares its outputs. This module adds what nbval cannot check:

* every solution notebook is stored executed top to bottom without an error
  (with nbval's re-execution, that is what nbgrader's Validator checks);
* every student notebook is stored without outputs (that, run cell by cell,
  it raises only NotImplementedError and fails every test cell is checked in
  JupyterLab by tests/e2e/test_lab_learner.py);
* ``notebooks/`` is exactly what ``nbgrader generate_assignment`` makes now;
* no solution code and no hidden test text appears anywhere in ``notebooks/``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").glob("[0-9][0-9]-*") if p.is_dir())
BEGIN_END = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)(.*?)### END \1", re.S)


def solution(a: str) -> pathlib.Path:
    return ROOT / "solutions" / a / f"{a}.ipynb"


def student(a: str) -> pathlib.Path:
    return ROOT / "notebooks" / a / f"{a}.ipynb"


def grade_cells(nb) -> dict[str, dict]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade")}


def test_every_lesson_has_source_and_release():
    assert ASSIGNMENTS, "no lessons in solutions/"
    for a in ASSIGNMENTS:
        assert solution(a).is_file()
        assert student(a).is_file(), f"{a}: run `make release` to generate notebooks/{a}"


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_solution_is_stored_fully_executed_without_errors(a):
    """Every code cell of the solution ran, in order, and none failed. nbval
    re-executes the notebook on every run and requires the same outputs, so
    the solution also passes all of its tests today (what nbgrader's Validator
    would check, without a third execution of each notebook)."""
    nb = nbformat.read(solution(a), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{a}: cells never executed: run `make execute NB=...`"
    assert counts == list(range(1, len(code) + 1)), f"{a}: not executed top to bottom: {counts}"
    errors = [(c.metadata.get("nbgrader", {}).get("grade_id", i), o.get("ename"))
              for i, c in enumerate(code) for o in c.get("outputs", [])
              if o.output_type == "error" or o.get("name") == "stderr"
              and "Traceback" in o.get("text", "")]
    assert not errors, f"{a}: stored errors: {errors}"
    tests = [c for c in code if c.metadata.get("nbgrader", {}).get("grade")]
    assert tests, f"{a}: no graded test cells"


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_student_version_is_stored_without_outputs(a):
    """Run cell by cell, a student notebook raises only NotImplementedError and
    fails every test cell: tests/e2e/test_lab_learner.py checks that in
    JupyterLab, for every lesson (CI installs Chromium for it)."""
    stored = nbformat.read(student(a), as_version=4)
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert all(c.get("outputs", []) == [] and c.execution_count is None for c in code), \
        "student notebooks are stored without outputs"
    assert grade_cells(stored), f"{a}: no test cells in the student notebook"
    # no widget state (random model ids) carried to learners and back in submissions
    assert set(stored.metadata) <= {"kernelspec", "language_info"}, sorted(stored.metadata)


def _generated(tmp: pathlib.Path) -> None:
    """Run nbgrader generate_assignment for every lesson into ``tmp``."""
    script = textwrap.dedent(f"""
        from traitlets.config.loader import PyFileConfigLoader
        from nbgrader.apps import NbGraderAPI
        config = PyFileConfigLoader("nbgrader_config.py", path=".").load_config()
        config.CourseDirectory.release_directory = {str(tmp / 'release')!r}
        config.CourseDirectory.db_url = "sqlite:///{tmp / 'gradebook.db'}"
        config.Application.log_level = "WARN"
        api = NbGraderAPI(config=config)
        for a in {ASSIGNMENTS!r}:
            result = api.generate_assignment(a, force=True)
            assert result["success"], result["error"]
    """)
    env = dict(os.environ, PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, env=env)


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("release")
    _generated(tmp)
    return tmp / "release"


def _normalised(path: pathlib.Path) -> dict:
    nb = json.loads(path.read_text())
    return {"cells": nb["cells"], "metadata": nb["metadata"]}


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_notebooks_in_sync_with_solutions(a, fresh_release):
    fresh = fresh_release / a / f"{a}.ipynb"
    assert _normalised(student(a)) == _normalised(fresh), (
        f"notebooks/{a} is out of date: run `make release` (never edit notebooks/ by hand)")
    extra = {p.name for p in (ROOT / "notebooks" / a).iterdir()} - \
        {p.name for p in (fresh_release / a).iterdir()}
    assert not extra - {".ipynb_checkpoints"}, f"notebooks/{a} has files nbgrader did not make: {extra}"


def test_start_page_released():
    assert (ROOT / "notebooks" / "START.md").read_text() == \
        (ROOT / "solutions" / "START.md").read_text(), "run `make release`"
    text = (ROOT / "solutions" / "START.md").read_text()
    assert all(f"({a}/{a}.ipynb)" in text for a in ASSIGNMENTS)


def _secret_lines(a: str) -> list[str]:
    """Substantial lines of solution bodies and hidden tests in the source notebook."""
    nb = nbformat.read(solution(a), as_version=4)
    public = "\n".join(BEGIN_END.sub("", c.source) for c in nb.cells
                       if not c.metadata.get("nbgrader", {}).get("solution")
                       or c.cell_type == "code")
    lines = []
    for cell in nb.cells:
        for _, body in BEGIN_END.findall(cell.source):
            lines += [ln.strip() for ln in body.splitlines()
                      if len(ln.strip()) >= 16 and not ln.strip().startswith("#")]
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution"):
            lines += [ln.strip() for ln in cell.source.splitlines() if len(ln.strip()) >= 30]
    return [ln for ln in lines if ln not in public]   # also shown on purpose elsewhere


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_no_solution_or_hidden_test_in_notebooks(a):
    released = "\n".join(p.read_text() for p in (ROOT / "notebooks" / a).rglob("*") if p.is_file())
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in released
    decoded = "\n".join(
        c.source for p in (ROOT / "notebooks" / a).glob("*.ipynb")
        for c in nbformat.read(p, as_version=4).cells)
    leaked = [ln for ln in _secret_lines(a) if ln in decoded]
    assert not leaked, f"{a}: solution/hidden lines visible to students: {leaked[:5]}"
