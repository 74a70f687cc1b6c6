"""Shared machinery of the learner-facing checks.

Every ``check_<exercise>(obj)`` follows one contract:

* it calls the learner's code on a list of named cases;
* a learner function that still raises ``NotImplementedError`` gets a
  friendly "not implemented yet" message;
* any other exception in the learner's code becomes a message that names the
  case and the exception (no deep traceback);
* a wrong value raises :class:`CheckFailure` (an ``AssertionError``) whose
  message names the case, the expected and actual values and, for a known
  classic mistake, the diagnosis and the fix;
* success prints one line saying what was verified.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator
from contextlib import contextmanager

import numpy as np

from course.exercises.spec import CheckFailure  # defined with the specs, whose flows raise it
from course.exercises.values import fmt

PASS_MARK = "\u2713"  # ✓
#: What a failing check says when the learner has not tried yet (a stub, an unset
#: prediction); ``course report`` counts these as "not attempted", not as failures.
NOT_ATTEMPTED = ("is not implemented yet", "is not answered yet")


def not_implemented(name: str) -> CheckFailure:
    """The failure for a function that still raises ``NotImplementedError``."""
    return CheckFailure(f"`{name}` {NOT_ATTEMPTED[0]}: replace `raise NotImplementedError()`"
                        " with your code, run that cell, then run this check again.")


def not_answered(name: str, allowed: str) -> CheckFailure:
    """The failure for a prediction still set to ``None``."""
    return CheckFailure(f"`{name}` {NOT_ATTEMPTED[1]}: set it to your prediction ({allowed}) "
                        "before you run the experiment, run that cell, then run this check again.")


def passed(message: str) -> None:
    """Print the one-line success message of a check."""
    print(f"{PASS_MARK} {message}")


def require_function(obj: Any, name: str) -> None:
    """Fail clearly when the learner passes something that is not callable."""
    if not callable(obj):
        raise CheckFailure(
            f"check_{name} expects your function `{name}` itself, "
            f"got {type(obj).__name__}: call check_{name}({name}) without parentheses"
            " after the name.")


@contextmanager
def learner_code(name: str, case: str) -> Iterator[None]:
    """Turn exceptions raised inside the learner's code into clear messages."""
    try:
        yield
    except CheckFailure:
        raise
    except NotImplementedError:
        raise not_implemented(name) from None
    except Exception as exc:  # noqa: BLE001 - reported to the learner
        raise raised_in(exc, f"{case}: `{name}` raised {type(exc).__name__}: {exc}") from None


def raised_in(exc: BaseException, message: str) -> CheckFailure:
    """The failure for an exception the learner's code raised: ``message`` (the
    case and the exception), carrying the exception so that the notebook shows the
    learner's own frame and line (:mod:`course.checks.display`)."""
    failure = CheckFailure(message)
    failure.learner_error = exc
    return failure


def call(fn: Callable[..., Any], name: str, case: str, *args: Any,
         **kwargs: Any) -> Any:
    """Call the learner's ``fn`` with readable error reporting."""
    with learner_code(name, case):
        return fn(*args, **kwargs)


def close(actual: Any, expected: Any, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """True if ``actual`` has ``expected``'s shape and is close to it."""
    try:
        a = np.asarray(_to_numpy(actual), dtype=float)
    except (TypeError, ValueError):
        return False
    e = np.asarray(_to_numpy(expected), dtype=float)
    return a.shape == e.shape and bool(np.allclose(a, e, rtol=rtol, atol=atol,
                                                   equal_nan=True))


def _to_numpy(x: Any) -> Any:
    """Tensors (with or without grad) to numpy; everything else as is."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        return x.detach().cpu().numpy()
    return x


def mismatch(case: str, expected: Any, actual: Any, hint: str | None = None) -> CheckFailure:
    """Build the standard failure: case, expected, actual and an optional diagnosis."""
    msg = f"{case}: expected {fmt(expected)}, got {fmt(actual)}."
    if hint:
        msg += f"\n  Diagnosis: {hint}"
    return CheckFailure(msg)


def is_finite_number(x: Any) -> bool:
    """True for a finite Python/numpy real number."""
    return isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))
