"""The solutions' probe values are computed once and kept on disk
(course.verify.expected_results), keyed by everything they depend on."""

from __future__ import annotations

import json
import pathlib
import shutil

import nbformat
import pytest

from course import verify

ROOT = pathlib.Path(__file__).resolve().parents[1]
LESSON = "01-gradient-descent"


@pytest.fixture
def course(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "solutions" / LESSON, tmp_path / "solutions" / LESSON)
    monkeypatch.setattr(verify, "_EXPECTED", {})        # nothing remembered in memory
    return tmp_path


def _solution(root: pathlib.Path) -> pathlib.Path:
    return root / "solutions" / LESSON / f"{LESSON}.ipynb"


def _no_child(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("recomputed although a valid cache entry exists")
    monkeypatch.setattr(verify, "run_child", refuse)


def test_computed_once_then_read_from_disk(course, monkeypatch):
    cache = course / verify.CACHE_DIR
    first = verify.expected_results(LESSON, _solution(course), cache)
    files = list(cache.glob(f"expected-{LESSON}-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text()) == first
    assert all("ok" in v for v in first.values())
    monkeypatch.setattr(verify, "_EXPECTED", {})
    _no_child(monkeypatch)
    assert verify.expected_results(LESSON, _solution(course), cache) == first


def test_a_changed_solution_is_recomputed(course, monkeypatch):
    cache = course / verify.CACHE_DIR
    verify.expected_results(LESSON, _solution(course), cache)
    nb = nbformat.read(_solution(course), as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("An instructor's late edit."))
    nbformat.write(nb, _solution(course))
    monkeypatch.setattr(verify, "_EXPECTED", {})
    _no_child(monkeypatch)
    with pytest.raises(AssertionError, match="recomputed"):
        verify.expected_results(LESSON, _solution(course), cache)


def test_a_corrupt_entry_is_recomputed_and_replaced(course, monkeypatch):
    cache = course / verify.CACHE_DIR
    good = verify.expected_results(LESSON, _solution(course), cache)
    (entry,) = cache.glob("expected-*.json")
    for junk in ("{not json", json.dumps({"test_gd_step": {"error": "x"}}), "[]"):
        entry.write_text(junk)
        monkeypatch.setattr(verify, "_EXPECTED", {})
        assert verify.expected_results(LESSON, _solution(course), cache) == good
        assert json.loads(entry.read_text()) == good


def test_a_read_only_course_folder_still_grades(course, monkeypatch):
    blocked = course / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    assert verify.expected_results(LESSON, _solution(course), blocked / "cache")


def test_the_cache_is_hidden_from_graded_code(course):
    assert course / verify.CACHE_DIR in verify.course_secrets(course)
