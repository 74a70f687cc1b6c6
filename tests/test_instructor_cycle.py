"""The instructor cycle of README "For instructors": LMS collection (nbgrader zip_collect)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
import make_lms_zips as lms  # noqa: E402

LESSON = "01-gradient-descent"
NBGRADER = pathlib.Path(sys.executable).parent / "nbgrader"


@pytest.fixture
def course(tmp_path) -> pathlib.Path:
    """A course folder: the lesson's source and release, and the repository's nbgrader config."""
    for part in ("solutions", "notebooks"):
        shutil.copytree(ROOT / part / LESSON, tmp_path / part / LESSON)
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    (tmp_path / "downloaded" / LESSON / "archive").mkdir(parents=True)
    return tmp_path


def nbgrader(course: pathlib.Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([str(NBGRADER), *argv], cwd=course, env=env, capture_output=True,
                          text=True, timeout=120)


def submissions(course: pathlib.Path) -> dict[str, bytes]:
    found = sorted((course / "submitted").glob(f"*/{LESSON}/*.ipynb"))
    return {p.relative_to(course / "submitted").as_posix(): p.read_bytes() for p in found}


def notebooks(ids: list[str]) -> dict[str, bytes]:
    release = (ROOT / "notebooks" / LESSON / f"{LESSON}.ipynb").read_bytes()
    # Each student's notebook is told apart by a trailing marker in its JSON.
    return {i: release + f"\n{i}".encode() for i in ids}


def test_canvas_download_is_collected(course):
    nbs = notebooks(["101", "202", "303"])
    lms.canvas(course / "downloaded" / LESSON / "archive" / "submissions.zip", nbs, LESSON)
    result = nbgrader(course, "zip_collect", LESSON)
    assert result.returncode == 0, result.stderr
    assert "3 files collected" in result.stderr
    # Late (_LATE_) and resubmitted (-1) files too, under the release's notebook name.
    assert submissions(course) == {f"{i}/{LESSON}/{LESSON}.ipynb": nbs[i] for i in nbs}
    assert not (course / "submitted" / "tmp").exists()


def test_moodle_download_is_collected(course):
    nbs = notebooks(["4711", "4712"])
    lms.moodle(course / "downloaded" / LESSON / "archive" / "moodle.zip", nbs, LESSON)
    result = nbgrader(course, "zip_collect", LESSON)
    assert result.returncode == 0, result.stderr
    assert submissions(course) == {f"{i}/{LESSON}/{LESSON}.ipynb": nbs[i] for i in nbs}


def test_collecting_nothing_fails_loudly(course):
    archive = course / "downloaded" / LESSON / "archive" / "other.zip"
    import zipfile
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("some_notebook.ipynb", b"{}")
    result = nbgrader(course, "zip_collect", LESSON)
    assert result.returncode == 1
    assert "No submission collected for 01-gradient-descent" in result.stderr
    assert submissions(course) == {}


def test_empty_download_folder_fails_loudly(course):
    result = nbgrader(course, "zip_collect", LESSON)
    assert result.returncode == 1
    assert "No submission collected" in result.stderr
