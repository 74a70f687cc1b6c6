"""One test module over every exercise spec (course/exercises/lessonNN.py).

For every exercise:

* the reference passes its derived check and prints exactly one line;
* a stub that still raises ``NotImplementedError`` gets the not-implemented message;
* a function that returns None is told so;
* every catalogued mistake gets its own diagnosis from the check AND fails
  grading (its observations differ from the reference's as re-verification
  compares them);
* the solution notebook's definition observes the same values as the
  reference, on the visible cases and on hidden ones drawn for several seeds;
* hidden cases are drawn from the seed (none is written in the package), and
  differ from one verification to the next.

And for every lesson: every graded test cell of the solution notebook has
exactly one spec, in notebook order.
"""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pytest
from nbgrader.utils import is_grade, is_solution

from course import checks, exercises

from course.grading import encoding, probes, source
from course.checks import CheckFailure
from course.exercises import observations
from tests.conftest import ROOT

SEEDS = (1, 2, 3)
LESSONS = exercises.lessons()
EXERCISES = [ex for module in LESSONS.values() for ex in module.EXERCISES]
IDS = [ex.grade_id for ex in EXERCISES]
MISTAKES = [(ex, m) for ex in EXERCISES for m in ex.mistakes]
MISTAKE_IDS = [f"{ex.grade_id}-{m.name}" for ex, m in MISTAKES]


def _check(ex):
    return getattr(checks, f"check_{ex.check_name}")


def _is_class(ex) -> bool:
    return isinstance(ex.reference, type)


def _graded(ex, fn, seed):
    """Whether ``fn`` passes re-verification's comparison for ``seed``
    (encoded and compared exactly as the trusted parent does)."""
    probe = probes.Probe(lambda ns, s: observations(ex, ns[ex.name], s), ex.rtol, ex.atol)
    with np.errstate(all="ignore"):
        want = encoding.encode(observations(ex, ex.reference, seed))
        try:
            got = encoding.encode(observations(ex, fn, seed))
        except Exception:  # noqa: BLE001 - an error in the child scores 0 too
            return False
    return encoding.same(got, want, probe)


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_reference_passes_with_one_line(ex, capsys):
    _check(ex)(ex.reference)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"\u2713 {ex.passed}"], lines


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_stub_is_not_implemented(ex):
    def stub(*args, **kwargs):
        raise NotImplementedError()
    if _is_class(ex):
        stub = type(ex.name, (), {"__init__": stub})
    with pytest.raises(CheckFailure, match=f"`{re.escape(ex.name)}` is not implemented yet"):
        _check(ex)(stub)


@pytest.mark.parametrize("ex", [ex for ex in EXERCISES if not _is_class(ex)],
                         ids=[ex.grade_id for ex in EXERCISES if not _is_class(ex)])
def test_returning_none_is_named(ex):
    with pytest.raises(CheckFailure, match="None"):
        _check(ex)(lambda *args, **kwargs: None)


@pytest.mark.parametrize(("ex", "mistake"), MISTAKES, ids=MISTAKE_IDS)
def test_each_mistake_gets_its_diagnosis_and_fails_grading(ex, mistake):
    with pytest.raises(CheckFailure) as info:
        _check(ex)(mistake.impl)
    message = str(info.value)
    if isinstance(mistake.diagnosis, str):
        assert f"Diagnosis: {mistake.diagnosis}" in message, message
    else:
        assert "Diagnosis: " in message, message
    assert not all(_graded(ex, mistake.impl, seed) for seed in SEEDS)


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_mistake_names_are_unique(ex):
    names = [m.name for m in ex.mistakes]
    assert len(names) == len(set(names)), names


def _solution_namespace(lesson: str) -> dict:
    assignment = next(p.name for p in (ROOT / "solutions").iterdir() if p.name[:2] == lesson)
    ns: dict = {"__name__": "__solution__"}
    for chunk in source.solution_source(source.solution_path(assignment)):
        exec(compile(chunk, f"<solution {assignment}>", "exec"), ns)  # noqa: S102 - our own
    return ns


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_solution_notebook_observes_what_the_reference_does(lesson):
    ns = _solution_namespace(lesson)
    for ex in LESSONS[lesson].EXERCISES:
        for seed in SEEDS:
            assert _graded(ex, ns[ex.name], seed), (ex.grade_id, seed)


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_hidden_cases_are_drawn_not_written(ex):
    assert not any(case.hidden for case in ex.cases), "a hidden case is written in the package"
    assert ex.hidden is not None, "no hidden cases: grading would only repeat the check"
    drawn = [ex.hidden_cases(seed) for seed in SEEDS]
    assert all(drawn) and all(c.hidden for cases in drawn for c in cases)
    values = [encoding.encode(observations(ex, ex.reference, seed)) for seed in SEEDS]
    assert values[0] != values[1] != values[2], "hidden cases do not change with the seed"
    assert values[0] == encoding.encode(observations(ex, ex.reference, SEEDS[0]))


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_every_graded_cell_has_exactly_one_spec(lesson):
    path = next((ROOT / "solutions").glob(f"{lesson}-*/{lesson}-*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    graded = [c.metadata.nbgrader.grade_id for c in nb.cells
              if c.cell_type == "code" and is_grade(c) and not is_solution(c)]
    assert graded == [ex.grade_id for ex in LESSONS[lesson].EXERCISES]
    names = [ex.name for ex in LESSONS[lesson].EXERCISES]
    for ex in LESSONS[lesson].EXERCISES:
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                    == ex.grade_id)
        assert f"check_{ex.check_name}({ex.name})" in cell.source, (ex.grade_id, names)
