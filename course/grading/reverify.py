"""Re-verify a learner's exercises outside their kernel, so that no code in the
notebook can decide its own grade.

Threat model: a submission may patch anything in its kernel (torch, numpy,
``course``, builtins, IPython) before any test cell runs. So the grade does
not rest on the in-kernel test cells alone. For every test cell that has a
*probe* (derived from its exercise spec, ``course/exercises/lessonNN.py``) we

1. start a fresh interpreter: a child forked from a *zygote* process that
   has torch and the probes imported and runs inside a bubblewrap sandbox
   when available (read-only file system, no network, solutions and
   gradebook hidden); each child starts from the zygote's clean state;
2. in it, import the probes first, then disable the answer keys the lesson
   forbids (``torch.optim.SGD``, ``course.sgd.sgd_update``, ...), then run
   the learner's definitions (their exercise cells, plus imports and
   definitions from the other cells);
3. call each probe, which runs the learner's functions on the visible cases
   and on hidden ones drawn from the verification's seed, and
   returns plain values; these are encoded as raw bytes (tensors, arrays) or
   JSON scalars, never as learner-defined objects;
4. back in the trusted parent, compare them with the values the *solution*
   notebook's definitions produce in the same harness: byte for byte, or
   within a tolerance where the probe allows it.

A learner's code runs only in the child, and the comparison happens only in
the parent, so monkeypatching, always-equal objects or patched tracebacks
cannot change the verdict; delegating to torch's optimizer or to the course's
answer key fails because those are disabled in the child.

Inside the child the harness and the probes do not trust anything the
learner's code can reach: they use a snapshot of the builtins taken before it
runs (a patched ``type`` or ``isinstance`` cannot lie to them) and torch's C
methods (a patched ``Tensor.numpy`` cannot corrupt an encoding), and an audit
hook (:func:`lock_down`) stops the learner's code from reading the course's
or torch's SGD source files (to re-run a fresh copy of an answer key), from
starting processes, and from ctypes and the garbage collector's object lists.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import pathlib
import re
import secrets
from typing import Any

from course.grading.encoding import same
from course.grading.lockdown import ALWAYS_FORBIDDEN
from course.grading.probes import lesson_probes
from course.grading.source import (
    REPO,
    defined_names,
    learner_source,
    solution_path,
    solution_source,
)
from course.grading.zygote import run_child

#: Messages of the parent's own making, passed on as they are.
_OWN_MESSAGES = re.compile(
    r"timed out after [0-9.]+ s \(an infinite loop\?\)"
    r"|the re-run of your code crashed before reporting \(did it exit the process\?\)"
    r"|the re-run wrote [a-z ()]+|no result")


_BUILTIN_EXCEPTIONS = frozenset(
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException))


def canned(error: str, names: frozenset[str], forbidden: frozenset[str]) -> str:
    """The learner-facing text for a child's error report.

    The child ran the learner's code, so its report may carry anything that
    code could read (a secret in an exception message). Feedback quotes only
    what the grader can vouch for: its own messages, the name of a built-in
    exception, a missing definition among ``names`` (those the solution
    defines), a forbidden name among ``forbidden``.
    """
    error = str(error)
    if _OWN_MESSAGES.fullmatch(error):
        return error
    head, _, rest = error.partition(": ")
    blocked = re.match(r"([\w.]+) may not be used by this exercise", rest)
    if head == "Forbidden" and blocked and any(
            blocked.group(1) == f or blocked.group(1).startswith(f + ".") for f in forbidden):
        return f"{blocked.group(1)} may not be used by this exercise"
    missing = re.match(r"'(\w+)'", rest)
    if head in ("KeyError", "NameError") and missing and missing.group(1) in names:
        return f"your code does not define {missing.group(1)!r} (or defining it failed)"
    if head in _BUILTIN_EXCEPTIONS:
        return f"your code raised {head}"
    return "your code raised an exception"


def draw_seed() -> int:
    """A fresh seed for one verification: the probes draw their inputs from it,
    so values computed, cached or recorded for another verification are wrong."""
    return secrets.randbits(63)


def expected_results(assignment: str, source: list[str], seed: int,
                     root: pathlib.Path | None = None) -> dict[str, Any]:
    """Probe values of the solution's definitions (``source``, see
    :func:`solution_source`) for ``seed``.

    Computed in a fresh interpreter for every verification (never cached: the
    inputs are new each time), and never shown to graded code.
    """
    probes, _ = lesson_probes(assignment)
    results = run_child(assignment, source, sorted(probes), 300, root, seed)
    bad = {g: r for g, r in results.items() if "ok" not in r}
    if bad:
        raise RuntimeError(f"the solution of {assignment} fails its own probes "
                           f"(seed {seed}): {bad}")
    return results


def verify(nb: Any, assignment: str, root: pathlib.Path = REPO,
           timeout: float = 60.0, seed: int | None = None) -> dict[str, tuple[bool, str]]:
    """Re-verify every probed test cell of an executed or raw notebook.

    Args:
        nb: the learner's notebook (nbformat).
        assignment: its lesson id, e.g. ``"01-gradient-descent"``.
        root: the course folder; the expected values come from its
            ``solutions/`` (or the package's own when it has none).
        seed: the inputs' seed (default: a fresh one, drawn here).

    Returns:
        grade_id -> (passed, message) for each test cell that has a probe.
    """
    probes, answer_keys = lesson_probes(assignment)
    reference = solution_source(solution_path(assignment, root))
    names = defined_names(reference)
    forbidden = frozenset([*ALWAYS_FORBIDDEN, *answer_keys])
    seed = draw_seed() if seed is None else seed
    source = learner_source(nb)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        want = pool.submit(expected_results, assignment, reference, seed, root)
        actual = run_child(assignment, source, sorted(probes), timeout, root, seed)
        expected = want.result()
    verdicts = {}
    for gid, probe in probes.items():
        got = actual.get(gid, {"error": "no result"})
        if "ok" not in got or "error" in got:
            error = canned(got.get("error", "no result"), names, forbidden)
            verdicts[gid] = (False, f"re-verification outside the notebook failed: {error}")
        elif not same(got["ok"], expected[gid]["ok"], probe):
            verdicts[gid] = (False, "re-verification outside the notebook failed: your "
                                    "definitions give different results in a fresh interpreter")
        else:
            verdicts[gid] = (True, "re-verified outside the notebook")
    return verdicts
