"""How a failing check looks in a notebook: the learner's problem, not the checker's.

IPython shows an exception with every frame it passed through: for a failing
check, 17 to 51 lines of ``course/`` internals (and, in places, the expected
formula). :func:`install` registers a handler for :class:`CheckFailure` with
IPython's own mechanism for that (``InteractiveShell.set_custom_exc``), which shows

* the check's message only: the case, expected vs actual, the diagnosis;
* when the learner's code raised inside the check, first the learner's own
  frames (rendered by IPython, ``Cell In[5], line 3``, with the exception), then
  the message naming the case that was being run.

The cell still fails as before (IPython records the error, the kernel sends an
``error`` output): nbgrader scores it 0 and ``course check`` reads its message.
Outside IPython nothing changes.
"""

from __future__ import annotations

import pathlib
import sys
import sysconfig
import types
from typing import Any

from course.exercises.spec import CheckFailure

_COURSE = str(pathlib.Path(__file__).resolve().parents[1]) + "/"
_LIBRARIES = tuple(dict.fromkeys(
    str(pathlib.Path(p).resolve()) + "/" for p in
    (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
     sysconfig.get_paths()["platlib"]) if p))


def _learners(filename: str) -> bool:
    """Whether a frame's file is the learner's (a notebook cell, a file of theirs),
    not the course package's, the standard library's or an installed package's."""
    try:
        path = str(pathlib.Path(filename).resolve())
    except (OSError, ValueError):
        return True
    return not path.startswith(_COURSE) and not path.startswith(_LIBRARIES)


def learner_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The frames of ``tb`` that are the learner's, relinked as one traceback."""
    kept = []
    while tb is not None:
        if _learners(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    for first, second in zip(kept, kept[1:]):
        first.tb_next = second
    if kept:
        kept[-1].tb_next = None
    return kept[0] if kept else None


def _message_lines(exc: BaseException) -> list[str]:
    red, reset = "\x1b[0;31m", "\x1b[0m"
    lines = str(exc).splitlines() or [""]
    return [f"{red}{type(exc).__name__}{reset}: {lines[0]}", *lines[1:]]


def structured_traceback(shell: Any, etype: type, value: BaseException,
                         tb: types.TracebackType | None, tb_offset: int | None = None) -> list[str]:
    """IPython's custom exception handler for :class:`CheckFailure` (see the module
    docstring): the learner's frames, if their code raised, then the message."""
    lines = []
    error = getattr(value, "learner_error", None)
    if error is not None:
        frames = learner_traceback(error.__traceback__)
        if frames is not None:
            lines += shell.InteractiveTB.structured_traceback(type(error), error, frames)
            lines.append("")
    return lines + _message_lines(value)


def _show(shell: Any, etype: type, value: BaseException, tb: types.TracebackType | None,
          tb_offset: int | None = None) -> list[str]:
    """The handler IPython calls: build the short traceback and show it the way
    IPython shows any error (in a kernel: an ``error`` output)."""
    stb = structured_traceback(shell, etype, value, tb, tb_offset)
    shell._showtraceback(etype, value, stb)
    return stb


def install() -> None:
    """Show check failures as :func:`structured_traceback` in the running IPython
    (a notebook kernel); nothing outside IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and hasattr(shell, "set_custom_exc"):
        shell.set_custom_exc((CheckFailure,), _show)
