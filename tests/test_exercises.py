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
  differ from one verification to the next;
* the check's contract: a value passed instead of the definition, an exception
  in the learner's code (case and exception named), the global random state
  left alone.

And for every lesson: every graded test cell of the solution notebook has
exactly one spec, in notebook order.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types

import nbformat
import numpy as np
import pytest
import torch
from nbgrader.utils import is_grade, is_solution

import course.optim
from course import checks, exercises

from course.grading import encoding, probes, source
from course.checks import CheckFailure
from course.exercises import observations, run_case
from tests.conftest import ROOT

SEEDS = (1, 2, 3)
LESSONS = exercises.lessons()
SPECS = [ex for module in LESSONS.values() for ex in module.EXERCISES]
EXERCISES = [ex for ex in SPECS if isinstance(ex, exercises.Exercise)]
QUESTIONS = [q for q in SPECS if isinstance(q, exercises.Question)]
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


#: The oracle an exercise forbids building on (the SGD class must not subclass
#: torch.optim.SGD): the course's own torch-exact class stands in for it.
STAND_INS = {torch.optim.SGD: course.optim.SGD}

#: Mistakes that give the same values as an earlier catalogued one on the first
#: case where they show, so the check names that one (its advice covers both).
#: (Lesson 06 names the mistake the learner's class follows in the most step
#: scenarios among those that coincide, so none of its mistakes is shadowed.)
SHADOWED = {
    # plain arithmetic everywhere shows first where only the step rounds
    ("test_sgd_update", "rounding_everywhere"): "rounding_step",
}


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_reference_passes_with_one_line(ex, capsys):
    _check(ex)(STAND_INS.get(ex.reference, ex.reference))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"\u2713 {ex.passed}"], lines


def _namespace(kind: str, lesson: str) -> dict:
    """A lesson notebook's definitions (``kind``: solutions or notebooks), in a
    module of their own, as the grading child runs them (pickle and deepcopy
    find the classes); a cell that raises is skipped, as there."""
    path = next((ROOT / kind).glob(f"{lesson}-*/{lesson}-*.ipynb"))
    module = types.ModuleType(f"_{kind}_{lesson}")
    sys.modules[module.__name__] = module
    for chunk in source.learner_source(nbformat.read(path, as_version=4)):
        try:
            exec(compile(chunk, str(path), "exec"), module.__dict__)  # noqa: S102 - ours
        except NotImplementedError:
            pass
    return module.__dict__


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_released_stub_is_not_implemented(ex):
    stub = _namespace("notebooks", _lesson_of(ex))[ex.name]
    with pytest.raises(CheckFailure, match=f"`{re.escape(ex.name)}` is not implemented yet"):
        _check(ex)(stub)


FUNCTIONS = [ex for ex in EXERCISES if not _is_class(ex)]


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_a_value_instead_of_the_definition_is_explained(ex):
    """``check_x(x(...))`` instead of ``check_x(x)``: say so."""
    for value in (42, 3.0):
        with pytest.raises(CheckFailure, match=rf"check_{ex.check_name} expects your "
                           rf"(function|class) `{ex.name}` itself"):
            _check(ex)(value)


@pytest.mark.parametrize("ex", FUNCTIONS, ids=[ex.grade_id for ex in FUNCTIONS])
def test_an_exception_in_learner_code_names_the_case_and_the_exception(ex):
    for error, shown in [(KeyError("oops"), "KeyError: 'oops'"),
                         (ValueError("boom"), "ValueError: boom")]:
        def broken(*args, _error=error, **kwargs):
            raise _error
        with pytest.raises(CheckFailure, match=rf"case '[^']*'[^\n]*`{ex.name}` raised {shown}"):
            _check(ex)(broken)


def test_checks_leave_the_global_random_state_alone():
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    for ex in EXERCISES:
        _check(ex)(STAND_INS.get(ex.reference, ex.reference))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


def _lesson_of(ex) -> str:
    return next(n for n, module in LESSONS.items() if any(ex is e for e in module.EXERCISES))


def _returns_values(ex) -> bool:
    """A function exercise whose reference returns something on every visible
    case (where None is a right answer, e.g. no momentum buffer, a function
    returning None is judged by what it did instead)."""
    if _is_class(ex):
        return False
    plain = dataclasses.replace(ex, call=None)
    try:
        return all(run_case(plain, ex.reference, case).result is not None
                   for case in ex.cases)
    except Exception:  # noqa: BLE001 - a flow's cases: the flow decides what None means
        return False


NONE_EXERCISES = [ex for ex in EXERCISES if _returns_values(ex)]


@pytest.mark.parametrize("ex", NONE_EXERCISES, ids=[ex.grade_id for ex in NONE_EXERCISES])
def test_returning_none_is_named(ex):
    with pytest.raises(CheckFailure, match="None"):
        _check(ex)(lambda *args, **kwargs: None)


@pytest.mark.parametrize(("ex", "mistake"), MISTAKES, ids=MISTAKE_IDS)
def test_each_mistake_gets_its_diagnosis_and_fails_grading(ex, mistake):
    with pytest.raises(CheckFailure) as info:
        _check(ex)(mistake.impl)
    message = str(info.value)
    shadow = SHADOWED.get((ex.grade_id, mistake.name))
    if shadow is not None:
        mistake = next(m for m in ex.mistakes if m.name == shadow)
    if isinstance(mistake.diagnosis, str):
        assert mistake.diagnosis.split("{ulp}")[-1] in message, message
    else:       # a diagnosis written for the run: as it reads on one of the cases
        texts = []
        for case in ex.cases:
            try:
                with np.errstate(all="ignore"):
                    texts.append(mistake.text(run_case(ex, mistake.impl, case)))
            except Exception:  # noqa: BLE001, S112 - the mistake fails on this case
                continue
        assert any(text and text in message for text in texts), (message, texts[:2])
    if mistake.name.startswith("delegates_"):
        return      # stopped by the grading child's disabled answer keys: tests/test_probes.py
    assert not all(_graded(ex, mistake.impl, seed) for seed in SEEDS)


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_mistake_names_are_unique(ex):
    names = [m.name for m in ex.mistakes]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_solution_notebook_observes_what_the_reference_does(lesson):
    ns = _namespace("solutions", lesson)
    for ex in LESSONS[lesson].EXERCISES:
        if isinstance(ex, exercises.Question):
            assert ex.accepts(ns[ex.name]) and ex.right(ns[ex.name]), ex.grade_id
            continue
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


# ----------------------------------------------------------------- predict-then-run questions

@pytest.mark.parametrize("q", QUESTIONS, ids=[q.grade_id for q in QUESTIONS])
def test_a_question_explains_the_answer_right_or_wrong(q, capsys):
    check = getattr(checks, f"check_{q.name}")
    answer = q.answer()
    assert q.accepts(answer), (q.grade_id, answer)
    check(answer)
    out = capsys.readouterr().out
    assert out.startswith("\u2713 ") and q.why in out, out
    wrong = [c for c in q.choices if c != answer] if q.choices else [answer * 2 + 10, -answer - 1]
    for value in wrong:
        with pytest.raises(CheckFailure, match="you predicted") as info:
            check(value)
        assert q.why in str(info.value)


@pytest.mark.parametrize("q", QUESTIONS, ids=[q.grade_id for q in QUESTIONS])
def test_a_missing_or_malformed_prediction_is_named(q):
    check = getattr(checks, f"check_{q.name}")
    for value in (None, ...):
        with pytest.raises(CheckFailure, match=f"`{q.name}` is not answered yet"):
            check(value)
    for value in (["diverges"], "not a choice" if q.choices else "12", float("nan"), check):
        with pytest.raises(CheckFailure, match=f"`{q.name}` must be"):
            check(value)


@pytest.mark.parametrize("q", QUESTIONS, ids=[q.grade_id for q in QUESTIONS])
def test_a_question_is_graded_against_the_solution(q):
    """Grading observes the well-formed prediction only (None for anything else),
    so a wrong or malformed prediction scores 0."""
    lesson = _lesson_of(q)
    solution = _namespace("solutions", lesson)[q.name]
    probe = probes.lesson_probes(lesson)[0][q.grade_id]
    want = encoding.encode(probe.run({q.name: solution}, 1))
    assert encoding.same(encoding.encode(probe.run({q.name: solution}, 2)), want, probe)
    wrong = [c for c in q.choices if c != solution] if q.choices else [solution * 2 + 10]
    for value in wrong + [None, str(solution) if not q.choices else 0, object()]:
        got = encoding.encode(probe.run({q.name: value}, 1))
        assert not encoding.same(got, want, probe), value
