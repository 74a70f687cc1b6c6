"""The learner's check of an exercise, derived from its spec.

``make_check(exercise)`` returns ``check_<name>(obj)``, which keeps the
contract of every check (:mod:`course.checks._common`):

* a non-callable gets "call check_<name>(<name>) without parentheses";
* for each visible case, in order: the learner's code runs on a fresh copy of
  the inputs (a stub gets "not implemented yet", any other exception names
  the case and the exception, plus the spec's hint for it); the contract rules
  run; the observed values are compared with the reference's; a wrong value
  names the case, the expected and actual values and the diagnosis of the
  first catalogued mistake that gives the learner's value on this case;
* success prints one line, the spec's :attr:`~course.exercises.spec.Exercise.passed`.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

from course.checks._common import (CheckFailure, mismatch, not_answered, not_implemented, passed,
                                   raised_in, require_function)
from course.exercises.spec import Exercise, Question, Run, run_case
from course.exercises.values import fmt


class _TimeLimit(BaseException):
    """Raised inside the learner's code when a case takes too long."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread on POSIX only)."""
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def _alarm(signum: int, frame: Any) -> None:
        raise _TimeLimit()

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def agree(actual: Any, expected: Any, rtol: float = 0.0, atol: float = 0.0) -> bool:
    """Whether two observations are equal (both tolerances 0: exactly, tensors
    bit for bit with the same dtype and shape) or close within the tolerances."""
    if isinstance(expected, (list, tuple)):
        return isinstance(actual, (list, tuple)) and len(actual) == len(expected) and \
            all(agree(a, e, rtol, atol) for a, e in zip(actual, expected))
    if isinstance(expected, dict):
        return isinstance(actual, dict) and actual.keys() == expected.keys() and \
            all(agree(actual[k], expected[k], rtol, atol) for k in expected)
    a, e = _numeric(actual), _numeric(expected)
    if a is None or e is None:
        return type(actual) is type(expected) and bool(actual == expected)
    if a.shape != e.shape:
        return False
    if rtol == 0 and atol == 0:
        return a.dtype == e.dtype and bool(np.array_equal(a, e, equal_nan=True))
    try:
        return bool(np.allclose(a.astype(float), e.astype(float), rtol=rtol, atol=atol,
                                equal_nan=True))
    except (TypeError, ValueError):
        return False


def _numeric(x: Any) -> np.ndarray | None:
    """A numpy view of a number, array or tensor (None for anything else)."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        x = x.detach().cpu()
        if x.is_complex():
            return x.resolve_conj().numpy()
        return x.numpy() if x.dtype.is_floating_point or not x.dtype.is_complex else None
    if isinstance(x, np.ndarray) and x.dtype.kind in "biufc":
        return x
    if isinstance(x, (int, float, np.number)) and not isinstance(x, bool):
        return np.asarray(x)
    return None


def _learner_run(exercise: Exercise, fn: Any, case_name: str, run: Callable[[], Run],
                 hint: Callable[[BaseException], str | None]) -> Run:
    """Run the learner's code; turn what it raises into a learner's message."""
    name = exercise.name
    try:
        with time_limit(exercise.time_limit):
            return run()
    except _TimeLimit:
        extra = hint(TimeoutError())
        raise CheckFailure(
            f"{case_name}: `{name}` did not return within {exercise.time_limit:g} s "
            "(an endless loop?)." + (f"\n  Diagnosis: {extra}" if extra else "")) from None
    except CheckFailure:
        raise
    except NotImplementedError:
        raise not_implemented(name) from None
    except Exception as exc:  # noqa: BLE001 - reported to the learner
        extra = hint(exc)
        raise raised_in(exc, f"{case_name}: `{name}` raised {type(exc).__name__}: {exc}"
                        + (f"\n  Diagnosis: {extra}" if extra else "")) from None


def diagnosis(exercise: Exercise, got: Run, expected: Run) -> str | None:
    """The first catalogued mistake that gives the learner's observation on
    this case (and not the expected one); else the spec's own diagnosis."""
    try:
        seen, want = exercise.observe(got), exercise.observe(expected)
    except Exception:  # noqa: BLE001 - a malformed result: no diagnosis
        return None
    matching = [m for m in exercise.mistakes
                if _reproduces(exercise, m, got.case, seen, want)]
    if len(matching) > 1:       # the one that explains the learner's code best
        matching.sort(key=lambda m: -_agreements(exercise, m, got.fn))
    if matching:
        return matching[0].text(got)
    if exercise.diagnose is not None:
        return exercise.diagnose(got, expected)
    return None


def _observed(exercise: Exercise, fn: Any, case: Any) -> Any:
    """The observation of ``fn`` on ``case`` (raises what the code raises)."""
    with np.errstate(all="ignore"):
        return exercise.observe(run_case(exercise, fn, case))


def _reproduces(exercise: Exercise, mistake: Any, case: Any, seen: Any, want: Any) -> bool:
    """Whether ``mistake`` gives the learner's observation on ``case`` (and
    not the expected one)."""
    try:
        wrong = _observed(exercise, mistake.impl, case)
    except Exception:  # noqa: BLE001 - this mistake does not apply here
        return False
    return agree(seen, wrong, exercise.rtol, exercise.atol) and \
        not agree(wrong, want, exercise.rtol, exercise.atol)


def _agreements(exercise: Exercise, mistake: Any, learner: Any) -> int:
    """On how many visible cases ``mistake`` gives what the learner's code gives
    (to tell apart mistakes that coincide on the failing case)."""
    count = 0
    for case in exercise.cases:
        try:
            with time_limit(exercise.time_limit):
                mine = _observed(exercise, learner, case)
            count += agree(mine, _observed(exercise, mistake.impl, case),
                           exercise.rtol, exercise.atol)
        except BaseException:  # noqa: BLE001 - no agreement on this case
            continue
    return count


def make_check(exercise: Exercise | Question) -> Callable[[Any], None]:
    """``check_<name>(obj)`` for this exercise (see the module docstring), or
    for a predict-then-run question (:func:`make_question_check`)."""
    if isinstance(exercise, Question):
        return make_question_check(exercise)
    name = exercise.name

    def check(obj: Any) -> None:
        if exercise.require is not None:
            exercise.require(obj)
        else:
            require_function(obj, name)
        runs = []
        for case in exercise.cases:
            def hint(exc: BaseException, case: Any = case) -> str | None:
                return exercise.on_error(case, exc) if exercise.on_error else None
            got = _learner_run(exercise, obj, case.name,
                               lambda case=case: run_case(exercise, obj, case), hint)
            expected = run_case(exercise, exercise.reference, case)
            for rule in exercise.rules:
                message = rule(got, expected)
                if message:
                    raise CheckFailure(f"{case.name}: {message}")
            if not _same(exercise, got, expected):
                for rule in exercise.after:
                    message = rule(got, expected)
                    if message:
                        raise CheckFailure(f"{case.name}: {message}")
                raise mismatch(case.name, exercise.shown(expected), exercise.shown(got),
                               diagnosis(exercise, got, expected))
            runs.append((got, expected))
        passed(exercise.passed if exercise.passed_text is None else exercise.passed_text(runs))

    check.__name__ = check.__qualname__ = f"check_{exercise.check_name}"
    check.__doc__ = (f"Check your ``{name}`` on {len(exercise.cases)} cases "
                     f"({exercise.passed.split(':', 1)[-1].strip()}).")
    return check


def _same(exercise: Exercise, got: Run, expected: Run) -> bool:
    try:
        with np.errstate(all="ignore"):
            return agree(exercise.observe(got), exercise.observe(expected),
                         exercise.rtol, exercise.atol)
    except Exception:  # noqa: BLE001 - a result the observation cannot read is wrong
        return False



def make_question_check(question: Question) -> Callable[[Any], None]:
    """``check_<name>(prediction)`` for a predict-then-run question: a missing
    or malformed prediction is named; otherwise the experiment runs and the
    learner reads whether the prediction was right and why."""
    name = question.name
    allowed = (", ".join(repr(c) for c in question.choices) if question.choices
               else f"a number{f' of {question.unit}' if question.unit else ''}")

    def check(value: Any) -> None:
        if value is None or value is Ellipsis:
            raise not_answered(name, allowed)
        if not question.accepts(value):
            raise CheckFailure(f"`{name}` must be {'one of ' if question.choices else ''}"
                               f"{allowed}; got {fmt(value)}.")
        expected = question.answer()
        shown = fmt(expected) + (f" {question.unit}" if question.unit and not question.choices
                                 else "")
        if not question.right(value):
            raise CheckFailure(f"`{name}`: you predicted {fmt(value)}; the experiment gives "
                               f"{shown}.\n  Why: {question.why}")
        passed(f"{name}: {fmt(value)} is right.\n  Why: {question.why}")

    check.__name__ = check.__qualname__ = f"check_{name}"
    check.__doc__ = f"Check your prediction ``{name}`` ({allowed}) against the experiment."
    return check
