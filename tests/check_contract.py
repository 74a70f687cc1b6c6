"""Helpers of the per-lesson check tests (tests/test_checks_lessonNN.py).

The contract every check keeps (the reference passes with one line, a stub is
told it is not implemented, a value instead of the definition, an exception
in the learner's code named with its case, None, the global random state left
alone) is tested once for every exercise spec in tests/test_exercises.py.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import pytest

from course.checks import CheckFailure


def not_implemented(*args: Any, **kwargs: Any) -> Any:
    """The exercise as released: the learner has not written it yet."""
    raise NotImplementedError()


def fails(check: Callable[[Any], None], obj: Any, pattern: str) -> str:
    """Assert that ``check(obj)`` fails with a message matching ``pattern``
    (searched, ``.`` matching newlines); return the message."""
    with pytest.raises(CheckFailure) as info:
        check(obj)
    message = str(info.value)
    assert re.search(pattern, message, re.S), message
    return message
