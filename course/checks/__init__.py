"""Learner-facing checks, one per exercise: ``check_<exercise>(obj)``.

Each check is derived from its exercise's spec in :mod:`course.exercises`
(:func:`course.checks.derive.make_check`), named ``check_<name>`` after the
learner's definition (or the spec's ``check``). Notebooks simply write
``from course.checks import check_gd_step``.
"""

from __future__ import annotations

from course.checks import display
from course.checks._common import CheckFailure
from course.checks.derive import make_check
from course.exercises import lessons

__all__ = ["CheckFailure"]

for _module in lessons().values():
    for _exercise in _module.EXERCISES:
        _name = f"check_{_exercise.check_name}"
        globals()[_name] = make_check(_exercise)
        __all__.append(_name)

display.install()
