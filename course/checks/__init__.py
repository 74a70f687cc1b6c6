"""Learner-facing checks, one per exercise: ``check_<exercise>(obj)``.

The checks of each lesson live in ``course/checks/lessonNN.py``; every name in
a lesson module's ``__all__`` is re-exported here, so notebooks simply write
``from course.checks import check_gd_step``.
"""

from __future__ import annotations

import importlib
import pkgutil

from course.checks._common import CheckFailure

__all__ = ["CheckFailure"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("lesson"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in getattr(_module, "__all__", ()):
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
