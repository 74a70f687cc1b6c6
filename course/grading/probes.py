"""The probes of a lesson, derived from its exercise specs (course.exercises),
and the answer keys the grading child neutralizes."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import sys
import types
from typing import Any, Callable

from course import exercises
from course.exercises import observations

#: The builtins as they were before any learner code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001


@dataclasses.dataclass(frozen=True)
class Probe:
    """How to re-verify one test cell.

    Attributes:
        run: called with the learner's namespace and the verification's
            seed, from which it draws its inputs (a fresh seed per
            verification: values recorded for another seed are wrong);
            returns a list of values (tensors, arrays, numbers, strings,
            None, nested lists).
        rtol: 0 means bit-for-bit equality; otherwise arrays are compared
            with ``np.allclose(rtol=rtol, atol=atol)``.
        atol: absolute tolerance used with ``rtol``.
    """

    run: Callable[[dict[str, Any], int], list[Any]]
    rtol: float = 0.0
    atol: float = 0.0


def _observe(exercise: Any, ns: dict[str, Any], seed: int) -> list[Any]:
    """A probe derived from an exercise spec: observe the learner's definition
    on the visible cases and the hidden ones drawn for ``seed``."""
    return observations(exercise, ns[exercise.name], seed)


def _predicted(question: Any, ns: dict[str, Any], seed: int) -> list[Any]:
    """A probe derived from a predict-then-run question: the learner's
    prediction, if well-formed (the expected one comes from the solution)."""
    return [question.observe(ns[question.name])]


def _probe(ex: Any) -> Probe:
    run = _predicted if isinstance(ex, exercises.Question) else _observe
    return Probe(functools.partial(run, ex), ex.rtol, ex.atol)


def lesson_probes(assignment: str) -> tuple[dict[str, Probe], list[str]]:
    """The probes of an assignment (grade_id -> Probe, derived from its
    exercise specs) and the answer keys disabled while it is graded."""
    specs = exercises.lesson(assignment)
    if specs is None:
        raise KeyError(f"no exercise specs for {assignment!r} (course/exercises/)")
    return ({ex.grade_id: _probe(ex) for ex in specs.EXERCISES}, list(specs.FORBIDDEN))


def answer_keys(assignment: str) -> list[tuple[str, Any]]:
    """What computes right answers in an assignment's spec module, as
    (label, object): every exercise's reference, every catalogued mistake's
    implementation (a correct rule with one switch), the module's extra
    ``ANSWER_KEYS`` names and the functions of the SGD mistake catalogue.

    The grading child needs none of them (the expected values come from the
    solution notebook in another child), yet learner code could reach them,
    e.g. through ``__globals__`` of a function a case passes to it: the child
    neutralizes them all before the learner's code runs.
    """
    specs = exercises.lesson(assignment)
    if specs is None:
        return []
    keys = []
    for ex in specs.EXERCISES:
        if isinstance(ex, exercises.Question):
            keys.append((f"{ex.grade_id} answer", ex.answer))
            continue
        keys.append((f"{ex.grade_id} reference", ex.reference))
        keys += [(f"{ex.grade_id} mistake {m.name}", m.impl) for m in ex.mistakes]
    for name in getattr(specs, "ANSWER_KEYS", ()):
        keys.append((f"{specs.__name__}.{name}", getattr(specs, name)))
    catalogue = sys.modules.get("course.exercises.sgd_mistakes")
    if catalogue is not None:
        keys += [(f"{catalogue.__name__}.{name}", value) for name, value in vars(catalogue).items()
                 if isinstance(value, types.FunctionType)
                 and value.__module__ == catalogue.__name__]
    return [(label, obj) for label, obj in keys
            if isinstance(obj, (types.FunctionType, type))
            and str(getattr(obj, "__module__", "")).startswith("course.")]


def has_probes(assignment: str) -> bool:
    """Whether an assignment's test cells are re-verified."""
    return exercises.lesson(assignment) is not None
