"""Lesson 08's class check under the name its notebook calls, derived from the
spec ``course.exercises.lesson08.FOREACH_SGD`` (the generated check is
``check_ForeachSGD``; the notebook's test cell calls ``check_foreach_sgd_class``)."""

from __future__ import annotations

from typing import Any

from course.checks._common import CheckFailure
from course.checks.derive import make_check
from course.exercises.lesson08 import FOREACH_SGD

__all__ = ["check_foreach_sgd_class"]

_check = make_check(FOREACH_SGD)


def check_foreach_sgd_class(ForeachSGD: Any) -> None:
    """Check ``class ForeachSGD(SGD)`` bit for bit against
    ``torch.optim.SGD(foreach=True)``: parameters and ``state`` after every
    step, over torch's option grid, two param groups, float32 and float64, a
    parameter whose first gradient arrives late and an lr change."""
    if not isinstance(ForeachSGD, type):
        raise CheckFailure("check_foreach_sgd_class expects your class `ForeachSGD` itself, "
                           f"got {type(ForeachSGD).__name__}: call "
                           "check_foreach_sgd_class(ForeachSGD) without parentheses.")
    _check(ForeachSGD)
