"""The contract every learner-facing ``check_<exercise>`` keeps, tested once.

A lesson's test module lists its checks and the reference solutions as
``ALL = [(check, reference, name), ...]`` and binds the shared tests with::

    class TestContract(CheckContract):
        ALL = ALL

Each test method below then runs once per entry of ``ALL``:

* the reference passes and prints exactly one ``✓ <name>: ...`` line;
* a stub that still raises ``NotImplementedError`` gets the friendly
  "not implemented yet" message (and no diagnosis);
* a non-callable (a value, i.e. ``check(fn())``) gets a clear message;
* any other exception in the learner's code names the case and the exception.

:class:`ReturnValueContract` adds: a function that returns None is told it
forgot ``return``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import pytest
import torch

from course.checks import CheckFailure

Case = tuple[Callable[[Any], None], Any, str]  # (check, reference, name)


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


def run_leaving_global_rng_alone(cases: Sequence[Case]) -> None:
    """Run every check on its reference; neither torch's nor numpy's global
    random state may move."""
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    for check, reference, *_ in cases:
        check(reference)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


class CheckContract:
    """The shared contract tests; subclass as ``TestContract`` and set ``ALL``."""

    #: (check, reference, name) for every check that takes the learner's function.
    ALL: ClassVar[Sequence[Case]] = ()
    #: What must pass with one line, if more than ``ALL`` (e.g. a class check).
    REFERENCES: ClassVar[Sequence[Case] | None] = None
    #: name -> regex the success line must match (default: it starts "✓ name: ").
    PASS_LINES: ClassVar[dict[str, str]] = {}

    def cases(self, test_name: str) -> Sequence[Case]:
        """The entries the test method ``test_name`` runs on."""
        if test_name == "test_reference_passes_with_one_line" and self.REFERENCES is not None:
            return self.REFERENCES
        return self.ALL

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if {"check", "reference", "name"} <= set(metafunc.fixturenames):
            metafunc.parametrize("check, reference, name",
                                 self.cases(metafunc.function.__name__))

    def test_reference_passes_with_one_line(self, check, reference, name, capsys):
        check(reference)
        out = capsys.readouterr().out
        assert out.count("\n") == 1, out
        line = self.PASS_LINES.get(name, re.escape(f"\u2713 {name}: "))
        assert re.match(line, out), out

    def test_stub_is_not_implemented_yet(self, check, reference, name):
        message = fails(check, not_implemented, rf"`{name}` is not implemented yet: "
                        r"replace `raise NotImplementedError\(\)`")
        assert "Diagnosis" not in message

    def test_non_callable(self, check, reference, name):
        for value in (42, 3.0):
            fails(check, value, rf"check_{name} expects your function `{name}` itself, "
                  rf"got {type(value).__name__}: call check_{name}\({name}\) "
                  "without parentheses")

    def test_other_exception_names_case_and_exception(self, check, reference, name):
        for error, shown in [(KeyError("oops"), "KeyError: 'oops'"),
                             (ValueError("boom"), "ValueError: boom")]:
            def broken(*args, _error=error, **kwargs):
                raise _error
            fails(check, broken, rf"case '[^']*'[^:]*: `{name}` raised {shown}")


class ReturnValueContract(CheckContract):
    """The contract of checks whose function must return its result."""

    #: The entries of ``ALL`` whose function must return something (default: all).
    RETURNING: ClassVar[Sequence[Case] | None] = None

    def cases(self, test_name: str) -> Sequence[Case]:
        if test_name == "test_returning_none_is_explained" and self.RETURNING is not None:
            return self.RETURNING
        return super().cases(test_name)

    def test_returning_none_is_explained(self, check, reference, name):
        fails(check, lambda *args, **kwargs: None, "returned None.*forget `return")
