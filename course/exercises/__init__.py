"""Exercise specs: one declarative description per graded cell.

``course/exercises/lessonNN.py`` defines ``EXERCISES`` (one
:class:`~course.exercises.spec.Exercise`, or :class:`~course.exercises.spec.Question`
for a predict-then-run question, per graded test cell of that lesson, in notebook
order) and ``FORBIDDEN`` (the answer keys disabled while a
submission is graded). The learner's checks (:mod:`course.checks`), the grading
probes (:mod:`course.grading`) and the tests over all specs derive from them.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from course.exercises.spec import (Case, Exercise, Mistake, Question, Run, observations,
                                   run_case)

__all__ = ["Case", "Exercise", "Mistake", "Question", "Run", "lesson", "lessons", "observations",
           "run_case"]


def lessons() -> dict[str, ModuleType]:
    """``{"01": <module course.exercises.lesson01>, ...}`` for every lesson with specs."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("lesson"):
            found[info.name[-2:]] = importlib.import_module(f"{__name__}.{info.name}")
    return found


def lesson(assignment: str) -> ModuleType | None:
    """The spec module of an assignment (``"01-gradient-descent"`` or ``"01"``), if any."""
    try:
        return importlib.import_module(f"{__name__}.lesson{assignment[:2]}")
    except ModuleNotFoundError:
        return None
