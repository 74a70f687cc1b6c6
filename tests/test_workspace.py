"""The learner's workspace (course/workspace.py): created from the release, never
overwritten, unaffected by `git pull`, `make release` and `make test`."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import nbformat
import pytest

from course import workspace
from course.__main__ import main
from tests.conftest import ROOT

L01 = "01-gradient-descent"


def _release(root: pathlib.Path, lessons=(L01, "02-autograd")) -> pathlib.Path:
    release = root / "notebooks"
    for lesson in lessons:
        shutil.copytree(ROOT / "notebooks" / lesson, release / lesson)
    shutil.copy(ROOT / "notebooks" / "START.md", release / "START.md")
    return release


def _solve(path: pathlib.Path) -> str:
    """Solve the derivative exercise as a learner would; return the new source."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "derivative")
    cell.source = cell.source.replace("# YOUR CODE HERE\n    raise NotImplementedError()",
                                      "return 2 * (w - 3)  # my answer")
    nbformat.write(nb, path)
    return cell.source


def _work_source(path: pathlib.Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "derivative")


def test_first_sync_copies_the_release(tmp_path):
    release, work = _release(tmp_path), tmp_path / "my-work"
    done = workspace.sync(release, work)
    assert f"copied {L01}/{L01}.ipynb" in done and "copied START.md" in done
    for path in release.rglob("*"):
        if path.is_file():
            assert (work / path.relative_to(release)).read_bytes() == path.read_bytes()
    assert workspace.sync(release, work) == []          # a second run does nothing


def test_sync_never_overwrites_the_learners_work(tmp_path):
    release, work = _release(tmp_path), tmp_path / "my-work"
    workspace.sync(release, work)
    mine = _solve(work / L01 / f"{L01}.ipynb")
    (work / L01 / "notes.txt").write_text("mine")
    nb = nbformat.read(release / L01 / f"{L01}.ipynb", as_version=4)   # the course changes
    nb.cells[0].source += "\n\nA new paragraph."
    nbformat.write(nb, release / L01 / f"{L01}.ipynb")
    shutil.copytree(ROOT / "notebooks" / "03-stochastic-gradient-descent",
                    release / "03-stochastic-gradient-descent")     # a lesson added upstream
    nb2 = nbformat.read(release / "02-autograd" / "02-autograd.ipynb", as_version=4)
    nb2.cells[0].source += "\n\nUpdated."
    nbformat.write(nb2, release / "02-autograd" / "02-autograd.ipynb")
    done = workspace.sync(release, work)
    assert _work_source(work / L01 / f"{L01}.ipynb") == mine
    assert (work / L01 / "notes.txt").read_text() == "mine"
    assert any(f"kept your {L01}/{L01}.ipynb" in line and "course fresh 01" in line for line in done)
    assert (work / "03-stochastic-gradient-descent" / "03-stochastic-gradient-descent.ipynb").is_file()
    # lesson 02 was never changed by the learner: it follows the release
    assert "Updated." in (work / "02-autograd" / "02-autograd.ipynb").read_text()


def test_fresh_copy_goes_next_to_the_learners(tmp_path, capsys):
    release, work = _release(tmp_path), tmp_path / "my-work"
    workspace.sync(release, work)
    mine = _solve(work / L01 / f"{L01}.ipynb")
    assert main(["fresh", "01", "--release", str(release), "--work", str(work)]) == 0
    assert main(["fresh", L01, "--release", str(release), "--work", str(work)]) == 0
    assert (work / L01 / f"{L01}.fresh.ipynb").read_bytes() == \
        (release / L01 / f"{L01}.ipynb").read_bytes()
    assert (work / L01 / f"{L01}.fresh-2.ipynb").is_file()
    assert _work_source(work / L01 / f"{L01}.ipynb") == mine
    assert main(["fresh", "42", "--release", str(release), "--work", str(work)]) == 2
    assert "no lesson '42'" in capsys.readouterr().err


def test_check_finds_the_learners_notebook_by_lesson(tmp_path, monkeypatch):
    release, work = _release(tmp_path), tmp_path / "my-work"
    workspace.sync(release, work)
    expected = work / L01 / f"{L01}.ipynb"
    for spec in ("01", L01, f"{L01}/"):
        assert workspace.find_notebook(spec, cwd=work, work=tmp_path / "elsewhere") == expected
        assert workspace.find_notebook(spec, cwd=tmp_path, work=work) == expected
    assert workspace.find_notebook(f"{L01}/{L01}.ipynb", cwd=work) == expected
    with pytest.raises(workspace.WorkspaceError, match="run `make lab` once"):
        workspace.find_notebook("05", cwd=work, work=work)


def _git(cwd: pathlib.Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


def test_solved_work_survives_git_pull_of_a_new_course_commit(tmp_path):
    upstream = tmp_path / "upstream"
    _release(upstream)
    shutil.copy(ROOT / ".gitignore", upstream / ".gitignore")
    _git(upstream, "init", "-q", "-b", "main")
    _git(upstream, "add", "-A")
    _git(upstream, "commit", "-qm", "course")
    learner = tmp_path / "learner"
    _git(tmp_path, "clone", "-q", str(upstream), str(learner))
    work = learner / "my-work"
    workspace.sync(learner / "notebooks", work)
    mine = _solve(work / L01 / f"{L01}.ipynb")
    assert _git(learner, "status", "--porcelain") == ""        # the workspace is ignored
    nb = nbformat.read(upstream / "notebooks" / L01 / f"{L01}.ipynb", as_version=4)
    nb.cells[0].source += "\n\nFixed a typo."
    nbformat.write(nb, upstream / "notebooks" / L01 / f"{L01}.ipynb")
    _git(upstream, "commit", "-qam", "a course update")
    _git(learner, "pull", "-q")
    assert "Fixed a typo." in (learner / "notebooks" / L01 / f"{L01}.ipynb").read_text()
    workspace.sync(learner / "notebooks", work)              # make lab again
    assert _work_source(work / L01 / f"{L01}.ipynb") == mine


def test_release_and_tests_never_look_into_the_workspace(tmp_path):
    """nbgrader's release writes notebooks/ only; pytest and ruff skip my-work/."""
    course = tmp_path / "course"
    shutil.copytree(ROOT / "solutions" / L01, course / "solutions" / L01)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    _release(course, lessons=(L01,))
    work = course / "my-work"
    workspace.sync(course / "notebooks", work)
    mine = _solve(work / L01 / f"{L01}.ipynb")
    subprocess.run([str(pathlib.Path(sys.executable).parent / "nbgrader"), "generate_assignment",
                    L01, "--force", "--log-level=ERROR"], cwd=course, check=True)
    assert _work_source(work / L01 / f"{L01}.ipynb") == mine
    import tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "my-work" in config["tool"]["pytest"]["ini_options"]["norecursedirs"]
    assert "my-work" in config["tool"]["ruff"]["extend-exclude"]
    assert "/my-work/" in (ROOT / ".gitignore").read_text().splitlines()
    record = json.loads((work / ".course" / "copied.json").read_text())
    assert f"{L01}/{L01}.ipynb" in record


@pytest.mark.parametrize("path", [
    "my-work/01-gradient-descent/01-gradient-descent.ipynb", "submitted/alice/01/x.ipynb",
    "autograded/alice/01/x.ipynb", "feedback/alice/01/x.html", "downloaded/01/archive.zip",
    "gradebook.db", "grades.csv", "reports/01-totals.png", "logs/course-grade.log",
    ".grading-cache/x"])
def test_learner_and_student_data_is_git_ignored(path):
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT)
    assert proc.returncode == 0, f"{path} is not git-ignored"
