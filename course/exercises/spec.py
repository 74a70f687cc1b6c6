"""What an exercise spec is made of: cases, rules, mistakes, the exercise.

One :class:`Exercise` describes one graded cell, once, as data (in the spirit of
otter-grader's test files and minitorch's test tables). Everything else is
derived from it:

* the learner's check, ``course.checks.check_<name>`` (:mod:`course.checks.derive`):
  the visible cases, the contract rules, and for a wrong value the diagnosis of
  the catalogued mistake that gives the learner's value on that case;
* the grading probe (:func:`observations`): the visible cases and the hidden
  ones, which :attr:`Exercise.hidden` draws from the seed of one verification
  (the package holds how to draw them, never the cases themselves);
* the tests over all specs (``tests/test_exercises.py``).

A case is run on a fresh deep copy of its arguments (:func:`run_case`); what is
compared is :attr:`Exercise.observe` of the run: plain values only (numbers,
strings, None, lists, tensors, arrays), never the learner's objects.

This module runs in the grading child after the learner's code (see
:mod:`course.grading.child`): it binds the builtins as they were at import, so a
patched ``type``, ``len`` or ``isinstance`` cannot change what it observes.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

#: The builtins as they were before any learner code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001

_DEEPCOPY = copy.deepcopy
_DEFAULT_RNG = np.random.default_rng


class CheckFailure(AssertionError):
    """A check found a mistake. The message is written for the learner.

    (Also :class:`course.checks.CheckFailure`; defined here so that a spec's
    flow can raise it for a protocol broken midway, even while grading, where
    :mod:`course.checks` is disabled.)"""


@dataclasses.dataclass(frozen=True)
class Case:
    """One input of an exercise.

    Attributes:
        label: what the learner reads, e.g. ``"w=5.0"`` (shown as ``case 'w=5.0'``).
        args: positional arguments (deep-copied for every call).
        kwargs: keyword arguments (deep-copied for every call).
        hidden: drawn at grading time (:attr:`Exercise.hidden`), never shown.
        data: anything the spec's rules, diagnoses or flow need about this case
            (e.g. the hint for this case, the expected shape).
    """

    label: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    hidden: bool = False
    data: Any = None

    @property
    def name(self) -> str:
        """How messages name the case: ``case '<label>'``."""
        return f"case '{self.label}'"


@dataclasses.dataclass
class Run:
    """One call of a definition on a case.

    Attributes:
        case: the case.
        args: the (copied) arguments as they are after the call: a function
            that changed its input in place shows it here.
        kwargs: the (copied) keyword arguments after the call.
        result: what the call returned (or the flow's result).
        fn: the definition that was called.
    """

    case: Case
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any
    fn: Any


@dataclasses.dataclass(frozen=True)
class Mistake:
    """A classic mistake: one name, the learner-facing diagnosis, and a wrong
    implementation shaped like a learner's (same signature as the exercise).

    ``diagnosis`` may be a function of the learner's :class:`Run` (to put a
    number such as an ulp distance into the text).
    """

    name: str
    diagnosis: str | Callable[[Run], str]
    impl: Callable[..., Any]

    def text(self, run: Run) -> str:
        """The diagnosis for this run."""
        return self.diagnosis(run) if callable(self.diagnosis) else self.diagnosis


#: A contract rule: given the learner's run and the reference's run on the same
#: case, the message after ``case '<label>': `` when the rule is broken, else None.
Rule = Callable[[Run, Run], "str | None"]


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One graded cell, described once.

    Attributes:
        grade_id: the test cell's nbgrader grade id (``test_<name>``).
        name: the learner's definition (function or class) the cell checks.
        reference: the oracle, same signature as the learner's definition
            (torch wherever torch has one).
        cases: the visible cases, in the order the check runs them.
        observe: a run -> plain values (what is compared, here and in grading).
        passed: the check's one-line success message (after ``✓ ``).
        passed_text: the success message computed from the visible cases'
            (learner run, reference run) pairs, when it depends on them (e.g.
            "bit for bit" or "to rounding"); default: :attr:`passed`.
        hidden: draws the hidden cases of one verification from its generator.
        rtol, atol: tolerance of the comparison; both 0: exactly equal.
        rules: contract rules checked on every case before the values.
        after: contract rules that explain a difference in the observation
            other than a wrong value (an input changed in place, ...): checked
            when the observations differ, before the values are reported.
        mistakes: the catalogued mistakes, in diagnosis order.
        diagnose: a further diagnosis for a wrong value that no mistake
            reproduces on its own (learner run, reference run) -> text or None.
        call: how a case is run when it is not ``fn(*args, **kwargs)``: a
            registered flow ``(fn, case) -> result`` (sequential protocols).
        on_error: (case, exception) -> a diagnosis to add when the learner's
            code raised on this case, or None.
        show: how a value is rendered in "expected ..., got ..." (default: the result).
        forbidden: dotted names disabled while the learner's code is graded
            (answer keys this exercise must not delegate to).
        time_limit: seconds a single case may take in the check.
        check: the check's name, ``check_<check>`` (default: ``name``; several
            exercises may check one definition, e.g. a class).
        require: the check's first test of the learner's object, instead of
            "it must be callable" (e.g. "a subclass of torch.optim.Optimizer").
    """

    grade_id: str
    name: str
    reference: Callable[..., Any]
    cases: Sequence[Case]
    observe: Callable[[Run], Any]
    passed: str
    hidden: Callable[[np.random.Generator], Iterable[Case]] | None = None
    rtol: float = 0.0
    atol: float = 0.0
    rules: Sequence[Rule] = ()
    after: Sequence[Rule] = ()
    mistakes: Sequence[Mistake] = ()
    diagnose: Callable[[Run, Run], "str | None"] | None = None
    call: Callable[[Any, Case], Any] | None = None
    on_error: Callable[[Case, BaseException], "str | None"] | None = None
    show: Callable[[Run], Any] | None = None
    forbidden: Sequence[str] = ()
    time_limit: float | None = None
    passed_text: Callable[[list[tuple[Run, Run]]], str] | None = None
    check: str | None = None
    require: Callable[[Any], None] | None = None

    @property
    def check_name(self) -> str:
        """The check's name without ``check_``."""
        return self.check or self.name

    def hidden_cases(self, seed: int) -> list[Case]:
        """The hidden cases of the verification with this seed."""
        if self.hidden is None:
            return []
        rng = _DEFAULT_RNG([_salt(self.grade_id), seed])
        return [dataclasses.replace(c, hidden=True) for c in self.hidden(rng)]

    def shown(self, run: Run) -> Any:
        """The value of ``run`` as a message shows it."""
        return self.show(run) if self.show is not None else run.result


def _salt(grade_id: str) -> int:
    """A stable number per exercise, so that its hidden cases differ from its
    neighbours' for the same seed."""
    return sum((i + 1) * ord(ch) for i, ch in enumerate(grade_id))


def run_case(exercise: Exercise, fn: Any, case: Case) -> Run:
    """Call ``fn`` on a fresh copy of the case's inputs (exceptions propagate)."""
    args = _DEEPCOPY(tuple(case.args))
    kwargs = _DEEPCOPY(dict(case.kwargs))
    if exercise.call is not None:
        result = exercise.call(fn, dataclasses.replace(case, args=args, kwargs=kwargs))
    else:
        result = fn(*args, **kwargs)
    return Run(case, args, kwargs, result, fn)


def observations(exercise: Exercise, fn: Any, seed: int) -> list[Any]:
    """What grading compares: the observation of every visible case, then of
    every hidden case drawn for ``seed``, as one list of plain values."""
    cases = list(exercise.cases) + exercise.hidden_cases(seed)
    return [exercise.observe(run_case(exercise, fn, case)) for case in cases]


#: Python types a prediction may have (anything else is not an answer).
_ANSWER_TYPES = (str, int, float)


@dataclasses.dataclass(frozen=True)
class Question:
    """A "predict, then run" question, graded automatically.

    The learner writes a prediction into a variable *before* running the
    experiment below it (a choice such as ``"diverges"``, or a number); the
    check, ``check_<name>(<name>)``, runs the experiment through
    :attr:`answer` and explains the right answer either way.

    Attributes:
        grade_id: the test cell's nbgrader grade id (``test_<name>``).
        name: the learner's variable, e.g. ``predict_regime``.
        answer: computes the right answer (by running the experiment, not
            from a stored literal); grading compares with the solution
            notebook's value instead.
        why: the explanation the check shows after any answer.
        choices: the allowed answers; empty: the answer is a number.
        rtol, atol: tolerance for a numeric answer (both 0: exactly).
        unit: how a numeric answer is described, e.g. "steps".
    """

    grade_id: str
    name: str
    answer: Callable[[], Any]
    why: str
    choices: Sequence[str] = ()
    rtol: float = 0.0
    atol: float = 0.0
    unit: str = ""

    @property
    def check_name(self) -> str:
        """The check's name without ``check_``."""
        return self.name

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is a well-formed answer (one of the choices, or a
        finite number)."""
        if self.choices:
            return type(value) is str and value in self.choices
        return type(value) in (int, float) and value == value and abs(value) != float("inf")

    def observe(self, value: Any) -> Any:
        """What grading compares: the prediction when it is well-formed, else None."""
        return value if type(value) in _ANSWER_TYPES and self.accepts(value) else None

    def right(self, value: Any) -> bool:
        """Whether a well-formed prediction is the answer."""
        expected = self.answer()
        if self.choices:
            return value == expected
        return abs(value - expected) <= self.atol + self.rtol * abs(expected)
