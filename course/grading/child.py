"""One re-verification in a freshly forked child: limits and seccomp first,
then the probes, the lockdown, the learner's code, and one JSON line per probe."""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import json
import os
import signal
import sys
import types
import warnings
from typing import Any

from course.grading.encoding import MAX_OUTPUT, encode, torch_originals
from course.grading.lockdown import (
    ALWAYS_FORBIDDEN,
    disable,
    is_module,
    lock_down,
    neutralize,
)
from course.grading.probes import answer_keys, lesson_probes

#: The builtins as they were before any learner code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001


_JSON_DUMPS = json.dumps


#: Limits of one re-verification child (bytes): its memory (address space:
#: torch alone maps about 0.8 GiB), each file it writes, its result pipe.
CHILD_MEMORY = 4 << 30


CHILD_FILE_SIZE = 64 << 20


def child_main(spec_fd: int, out_fd: int) -> None:
    """One verification in a freshly forked child: limits and the seccomp
    filter first, then the spec from its pipe, then :func:`_serve`."""
    import resource

    from course.grading import seccomp
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    resource.setrlimit(resource.RLIMIT_FSIZE, (CHILD_FILE_SIZE, CHILD_FILE_SIZE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    seccomp.install()
    with os.fdopen(spec_fd, "rb") as spec_in:
        spec = json.loads(spec_in.read(MAX_OUTPUT))
    _serve(spec, os.fdopen(out_fd, "w"))


def _serve(spec: dict[str, Any], out: Any) -> None:
    """One verification: probes first, then the learner's code, then the probes;
    a JSON line per probe to ``out``."""
    probes, forbidden = lesson_probes(spec["assignment"])
    runs = {gid: probe.run for gid, probe in probes.items()}
    torch_originals()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    # Nobody reads the child's warnings, and showing one reads the warning's source line
    # (linecache), which the lockdown refuses for torch's optimizer files (e.g. torch's
    # lr_scheduler warnings): a solution must not fail its own probes over a warning.
    warnings.simplefilter("ignore")
    for label, key in answer_keys(spec["assignment"]):
        neutralize(key, label)
    disable(forbidden + list(ALWAYS_FORBIDDEN))     # names first: then whole modules
    _preimport(spec["source"])
    lock_down()
    # The learner's code runs in a fresh ``__main__`` module, as in a notebook
    # kernel, so that pickle finds the classes it defines.
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    ns: dict[str, Any] = main.__dict__
    ns["__builtins__"] = builtins    # the real ones, not the harness's snapshot
    errors = []
    step = float(spec.get("step_seconds", STEP_SECONDS))
    seed = int(spec["seed"])

    def time_up(*_args: Any) -> None:
        raise _TimeUp(f"timed out after {step:g} s (an infinite loop?)")
    signal.signal(signal.SIGALRM, time_up)
    for chunk in spec["source"]:
        try:
            signal.setitimer(signal.ITIMER_REAL, step)
            exec(compile(chunk, "<submission>", "exec"), ns)  # noqa: S102 - sandboxed child
        except BaseException as exc:  # noqa: BLE001 - a broken cell must not stop grading
            if not isinstance(exc, ImportError):
                errors.append(_describe(exc))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    # One line per probe, written as soon as it is known: if the learner's
    # code hangs (and even ignores the alarm), the probes done so far count.
    for gid in spec["grade_ids"]:
        result: dict[str, Any] = {"error": f"timed out after {step:g} s (an infinite loop?)"}
        try:
            signal.setitimer(signal.ITIMER_REAL, step)
            try:
                result = {"ok": encode(runs[gid](ns, seed))}
            except BaseException as exc:  # noqa: BLE001
                message = _describe(exc)
                if errors and isinstance(exc, (NameError, KeyError)):   # a definition is missing
                    message += f" (running your code raised {errors[0]})"
                result = {"error": message[:500]}
        except BaseException:  # noqa: BLE001 - the alarm, while describing an error
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        out.write(_JSON_DUMPS({gid: result}) + "\n")
        out.flush()


#: Seconds for each exercise cell and each probe in the child (at most; a
#: quarter of the whole run's time limit when that is shorter), so that one
#: endless loop costs only its own exercise.
STEP_SECONDS = 20.0


class _TimeUp(BaseException):
    """Raised in the child when a cell or a probe runs out of time."""


def _describe(exc: BaseException) -> str:
    """``"TypeName: message"`` for any exception, even one whose str() fails."""
    try:
        return f"{type(exc).__name__}: {str(exc)[:400]}"
    except BaseException:  # noqa: BLE001 - a learner-defined exception
        return type(exc).__name__


def _preimport(source: list[str]) -> None:
    """Import the ``course`` and ``torch`` modules the notebook imports, now,
    while their files can still be read (see :func:`lock_down`)."""
    names = set()
    for chunk in source:
        try:
            tree = ast.parse(chunk)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
    for name in sorted(names):
        if name.split(".")[0] in ("course", "torch") and is_module(name):
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 - the learner's own problem
                pass
