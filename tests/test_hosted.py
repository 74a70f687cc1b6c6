"""The course on hosted notebooks (course/hosted.py): the set-up cell every released
notebook starts with, and README's "Open in Colab" links."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import venv

import nbformat
import pytest

from course import hosted
from tests.conftest import ROOT

LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]-*") if p.is_dir())


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_released_notebook_starts_with_the_setup_cell(lesson):
    nb = nbformat.read(ROOT / "notebooks" / lesson / f"{lesson}.ipynb", as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "code" and first.source == hosted.setup_cell(), lesson
    assert [c.id for c in nb.cells].count(hosted.TAG) == 1
    assert not first.get("outputs") and "nbgrader" not in first.metadata


def test_readme_opens_every_lesson_in_colab():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\(https://colab\.research\.google\.com/github/[^)\s]+\)", readme)
    assert [link[1:-1] for link in links] == [hosted.colab_url(lesson) for lesson in LESSONS]
    assert hosted.colab_url("01-gradient-descent").endswith(
        "/blob/main/notebooks/01-gradient-descent/01-gradient-descent.ipynb")


def run_cell(python: pathlib.Path | str, source: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run([str(python), "-c", source], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_setup_cell_does_nothing_where_the_course_is_installed(tmp_path):
    """In `make lab` (this venv) the cell prints nothing and installs nothing."""
    result = run_cell(sys.executable, hosted.setup_cell("file:///nonexistent") + "\nprint('after')",
                      tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "after\n", "")


def test_setup_cell_installs_the_course_in_a_fresh_environment(tmp_path):
    """A fresh venv without the course package but with torch and the scientific stack
    (what Colab has): the cell installs the package from the repository (a local clone
    here, by file:// URL at this commit) without touching torch, the lesson's imports
    work, and a second run does nothing."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    env_dir = tmp_path / "colab"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # Colab's preinstalled packages: everything of this venv but the course itself.
    preinstalled = tmp_path / "preinstalled"
    preinstalled.mkdir()
    site = pathlib.Path(__import__("torch").__file__).parents[1]
    for entry in site.iterdir():
        if not entry.name.startswith(("sgd_from_scratch", "__editable__", "course")):
            (preinstalled / entry.name).symlink_to(entry)
    own_site = next((env_dir / "lib").glob("python3*/site-packages"))
    (own_site / "colab_preinstalled.pth").write_text(f"{preinstalled}\n")
    probe = "import importlib.util; print(importlib.util.find_spec('course'))"
    assert run_cell(python, probe, tmp_path).stdout.strip() == "None"

    cell = hosted.setup_cell(f"file://{clone}", commit)
    first = run_cell(python, cell, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Installing the course package" in first.stdout and "Done" in first.stdout
    check = run_cell(python, cell + "\nimport course, torch\n"
                     "from course.checks import check_derivative\n"
                     "print(course.__file__)\nprint(torch.__file__)", tmp_path)
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert lines[0].startswith(str(own_site)), lines       # installed, not this repository
    assert lines[1].startswith(str(preinstalled)), lines   # Colab's torch kept
    assert "Installing" not in check.stdout                 # the second run does nothing


def test_grading_treats_the_unchanged_setup_cell_as_course_code():
    """Re-verification runs the learner's imports and definitions; the release's set-up
    cell is course code (its importlib/subprocess are not the learner's), unless changed."""
    from course.grading.source import banned_constructs, learner_source
    nb = nbformat.read(ROOT / "notebooks" / LESSONS[0] / f"{LESSONS[0]}.ipynb", as_version=4)
    assert banned_constructs("\n".join(learner_source(nb))) == []
    nb.cells[0].source += "\nimportlib.import_module('os')"
    assert "importlib" in banned_constructs("\n".join(learner_source(nb)))
