"""Learner-facing checks, one per exercise: ``check_<exercise>(obj)``.

Each check is derived from its exercise's spec in :mod:`course.exercises`
(:func:`course.checks.derive.make_check`); lessons not yet described by specs
keep a hand-written ``course/checks/lessonNN.py``, whose ``__all__`` is
re-exported here. Notebooks simply write
``from course.checks import check_gd_step``.
"""

from __future__ import annotations

import importlib
import pkgutil

from course.checks._common import CheckFailure
from course.checks.derive import make_check
from course.exercises import lessons

__all__ = ["CheckFailure"]

for _module in lessons().values():
    for _exercise in _module.EXERCISES:
        _name = f"check_{_exercise.check_name}"
        globals()[_name] = make_check(_exercise)
        __all__.append(_name)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("lesson"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in getattr(_module, "__all__", ()):
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
