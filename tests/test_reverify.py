"""Re-verification that no submission can forge, replay or outlive.

Each test runs a learner's definitions in a re-verification child (forked
from the pristine zygote, course/grading/zygote.py) through the lesson-01 probe of
``derivative`` and asserts what comes back:

* inputs are drawn from a seed per verification: the same definitions give
  different values for different seeds, the same for the same seed;
* result lines written by the learner's code (forged, duplicated, extra,
  nested deeply) make the whole verification fail, never crash the parent;
* the zygote never held an earlier verification's source: nothing of it is
  in the memory a later child starts from (the replay attack);
* no new program (``_posixsubprocess.fork_exec``), no new process, no signal
  to the zygote; frames of the harness are out of reach;
* memory and file size are limited, and the zygote survives a bomb.
"""

from __future__ import annotations

import json
import os

import nbformat
import pytest

from course.grading import encoding, jail, reverify, source, zygote

LESSON = "01-gradient-descent"
GID = "test_derivative"
CORRECT = "def derivative(w):\n    return 2 * (w - 3)\n"
needs_sandbox = pytest.mark.skipif(
    not jail.available() and os.environ.get("CI", "").lower() != "true",
    reason="bubblewrap missing: apt-get install bubblewrap (CI installs it)")


def _run(source: str, seed: int = 1, timeout: float = 30) -> dict:
    return zygote.run_child(LESSON, [source], [GID], timeout, seed=seed)[GID]


def _outcome(code: str, seed: int = 1) -> object:
    """Run ``code`` before a correct ``derivative`` that returns OUTCOME in
    place of its first value; the outcome (or the error text)."""
    source = code + "\ndef derivative(w):\n    return OUTCOME + 0 * w\n"
    result = _run(source, seed)
    if "ok" not in result:
        return str(result["error"])
    value = result["ok"]
    while isinstance(value, list):
        value = value[0]
    return float(encoding.decode_numeric(value).reshape(-1)[0])


def test_inputs_are_drawn_from_the_seed():
    a, b, a_again = _run(CORRECT, 11), _run(CORRECT, 12), _run(CORRECT, 11)
    assert "ok" in a and "ok" in b
    assert a == a_again and a != b


def test_expected_values_are_computed_for_each_verification_seed():
    """The solution passes with any seed: its values are computed for that
    seed in the same verification (a lookup table is tested per lesson in
    test_probes_seeded_*)."""
    nb = nbformat.read(source.solution_path(LESSON), as_version=4)
    for seed in (5, 6):
        assert reverify.verify(nb, LESSON, seed=seed)[GID] == (
            True, "re-verified outside the notebook")


@pytest.mark.parametrize(("name", "lines"), [
    ("forged before the probes",
     lambda: [json.dumps({GID: {"ok": [0.0]}})]),
    ("extra grade id", lambda: [json.dumps({"test_other": {"ok": 1}})]),
    ("not JSON", lambda: ["{not json"]),
    ("nested deeply", lambda: ["[" * 100000 + "]" * 100000]),
])
def test_result_lines_written_by_the_submission_fail_the_verification(name, lines):
    payload = "\n".join(lines()) + "\n"
    code = ("import os, stat\n"
            f"_P = {payload!r}.encode()\n"
            "for _fd in range(3, 256):\n"
            "    try:\n"
            "        if stat.S_ISFIFO(os.fstat(_fd).st_mode):\n"
            "            os.write(_fd, _P)\n"
            "    except OSError:\n"
            "        pass\n")
    result = _run(code + CORRECT)
    assert "ok" not in result
    assert "re-run wrote" in result["error"], result


def test_the_parent_survives_any_reply():
    for raw in (b"[" * 10**6, b"\xff\xfe\n", b'{"test_derivative": {"ok": 1}}\n' * 2,
                b'{"test_derivative": {"ok": 1, "error": 2}}\n', b"null\n"):
        assert isinstance(encoding.parse_results(raw, [GID]), str)
    assert encoding.parse_results(b'{"test_derivative": {"ok": 1}}\n', [GID]) == {GID: {"ok": 1}}
    assert encoding.parse_results(b"", [GID]) == {}


@needs_sandbox
def test_a_later_child_never_sees_an_earlier_source():
    """The zygote never reads a spec: a marker in one verification's source
    is nowhere in the memory the next child inherits (which, in the jail,
    it cannot even read: the zygote is not dumpable, nor are its children)."""
    marker = "REPLAY-MARKER-5e1f0c"
    assert "ok" in _run(f"_M = {marker!r}\n" + CORRECT)
    # the halves are searched apart: the whole marker is never built in the child
    scan = ("OUTCOME = 0.0\n"
            f"_A, _B = {marker[:7]!r}.encode(), {marker[7:]!r}.encode()\n"
            "try:\n"
            "    _maps, _mem = open('/proc/self/maps'), open('/proc/self/mem', 'rb', 0)\n"
            "except OSError:\n"
            "    _maps = []\n"
            "if True:\n"
            "    for _line in _maps:\n"
            "        _addr, _perm = _line.split()[:2]\n"
            "        if 'r' not in _perm or '[v' in _line:\n"
            "            continue\n"
            "        _lo, _hi = (int(x, 16) for x in _addr.split('-'))\n"
            "        try:\n"
            "            _mem.seek(_lo)\n"
            "            _chunk = _mem.read(_hi - _lo)\n"
            "        except (OSError, ValueError, OverflowError, MemoryError):\n"
            "            continue\n"
            "        _i = _chunk.find(_A)\n"
            "        while _i >= 0:\n"
            "            if _chunk[_i + len(_A):_i + len(_A) + len(_B)] == _B:\n"
            "                OUTCOME = 1.0\n"
            "            _i = _chunk.find(_A, _i + 1)\n")
    assert _outcome(scan) == 0.0


@needs_sandbox
@pytest.mark.parametrize("code", [
    "import _posixsubprocess, os\n"
    "_posixsubprocess.fork_exec(['/bin/true'], [b'/bin/true'], True, (), None, None,"
    " -1, -1, -1, -1, -1, -1, *os.pipe(), False, False, False, None, None, None, -1, None,"
    " False)\n",
    "import os\nos.fork()\n",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "import os\nos.execv('/bin/true', ['true'])\n",
])
def test_no_new_program_process_or_signal(code):
    guarded = f"OUTCOME = 1.0\ntry:\n{_indent(code)}\nexcept Exception:\n    OUTCOME = 2.0\n"
    assert _outcome(guarded) == 2.0
    assert _outcome("OUTCOME = 3.0") == 3.0          # the zygote is fine


@needs_sandbox
@pytest.mark.parametrize("code", [
    "import sys\n_f = sys._getframe(1)\n",
    "try:\n    1 / 0\nexcept ZeroDivisionError as _e:\n    _f = _e.__traceback__.tb_frame\n",
    "def _g():\n    yield 1\n_f = _g().gi_frame\n",
])
def test_harness_frames_are_out_of_reach(code):
    guarded = f"OUTCOME = 1.0\ntry:\n{_indent(code)}\nexcept PermissionError:\n    OUTCOME = 2.0\n"
    assert _outcome(guarded) == 2.0


@needs_sandbox
@pytest.mark.parametrize("code", [
    "import sys\ndef _f():\n    return sys._getframe(0).f_back.f_globals\n_f()\n",
    "import inspect\n_f = inspect.currentframe().f_back\n",
    "import traceback\n_f = next(traceback.walk_stack(None))\n",
])
def test_no_frame_of_the_grading_code_is_reachable(code):
    """A frame leads to every frame below it (f_back): graded code gets none,
    not even its own; library code that only reads a module name from one
    (typing, enum, namedtuple) still works."""
    guarded = f"OUTCOME = 1.0\ntry:\n{_indent(code)}\nexcept PermissionError:\n    OUTCOME = 2.0\n"
    assert _outcome(guarded) == 2.0
    ok = ("import typing, collections, enum\n"
          "class _P(typing.NamedTuple):\n    x: float\n"
          "_Q = collections.namedtuple('_Q', 'x')\n"
          "class _E(enum.Enum):\n    A = 1\n"
          "OUTCOME = 3.0 + _P(0.0).x + _Q(0.0).x\n")
    assert _outcome(ok) == 3.0


@needs_sandbox
def test_specs_and_harness_cannot_be_imported_by_graded_code():
    for module in ("course.exercises.lesson06", "course.grading.child", "course.checks"):
        code = f"OUTCOME = 1.0\ntry:\n    import {module}\nexcept ImportError:\n    OUTCOME = 2.0\n"
        assert _outcome(code) == 2.0, module


@needs_sandbox
@pytest.mark.parametrize("code", [
    "import sys\nsys.setprofile(lambda *a: None)\n",
    "import threading, sys\nsys.settrace(lambda *a: None)\n",
])
def test_no_tracing_of_the_harness(code):
    guarded = f"OUTCOME = 1.0\ntry:\n{_indent(code)}\nexcept PermissionError:\n    OUTCOME = 2.0\n"
    assert _outcome(guarded) == 2.0


@needs_sandbox
def test_answer_keys_in_reach_of_learner_code_are_neutralized():
    """A spec module's reference and its correct-with-defaults helpers are
    reachable through ``__globals__`` of a function a case passes in (here
    f_grad): in the grading child they refuse to run."""
    source = ("def gradient_descent(f_grad, w0, lr, n_steps):\n"
              "    return f_grad.__globals__['gradient_descent'](f_grad, w0, lr, n_steps)\n"
              "def steps_to_tolerance(lr, e0, tol, L=2.0):\n"
              "    from course.exercises import lesson01\n"
              "    return lesson01._variant(lr, e0, tol, L)\n")
    gids = ["test_gradient_descent", "test_steps_to_tolerance"]
    results = zygote.run_child(LESSON, [source], gids, 30, seed=5)
    assert "may not be used" in results["test_gradient_descent"].get("error", "")
    assert "course.exercises" in results["test_steps_to_tolerance"].get("error", ""), \
        results["test_steps_to_tolerance"]          # not even importable


@needs_sandbox
def test_memory_and_file_size_are_limited():
    bomb = ("OUTCOME = 1.0\ntry:\n    _x = bytearray(8 << 30)\nexcept MemoryError:\n"
            "    OUTCOME = 2.0\n")
    assert _outcome(bomb) == 2.0
    big = ("import os\nOUTCOME = 1.0\ntry:\n"
           "    with open(os.path.join(os.environ['TMPDIR'], 'big'), 'wb') as _f:\n"
           "        _f.write(b'x' * (200 << 20))\n"
           "except OSError:\n    OUTCOME = 2.0\n")
    assert _outcome(big) == 2.0
    assert _outcome("OUTCOME = 3.0") == 3.0


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


@pytest.mark.parametrize(("error", "shown"), [
    ("timed out after 3 s (an infinite loop?)", "timed out after 3 s (an infinite loop?)"),
    ("NotImplementedError: ", "your code raised NotImplementedError"),
    ("ValueError: ghp_SECRET-TOKEN in the message", "your code raised ValueError"),
    ("KeyError: 'derivative'", "your code does not define 'derivative' (or defining it failed)"),
    ("KeyError: 'ghp_SECRET'", "your code raised KeyError"),
    ("Forbidden: torch.optim.SGD.step may not be used by this exercise",
     "torch.optim.SGD.step may not be used by this exercise"),
    ("Forbidden: ghp_SECRET may not be used by this exercise", "your code raised an exception"),
    ("MyError: /etc/shadow says root:$6$...", "your code raised an exception"),
    ("\x1b]52;c;ZWNobyBwd25lZA==\x07", "your code raised an exception"),
])
def test_feedback_quotes_only_what_the_grader_vouches_for(error, shown):
    """A child's error report may carry anything the learner's code read:
    only the grader's own messages and known names reach the feedback."""
    names, forbidden = frozenset({"derivative"}), frozenset({"torch.optim.SGD"})
    assert reverify.canned(error, names, forbidden) == shown


def test_a_secret_in_an_exception_never_reaches_the_verdict():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "def derivative(w):\n    raise ValueError('INSTRUCTOR-SECRET-' + 'x' * 3)\n",
        metadata={"nbgrader": {"solution": True, "grade_id": "derivative"}})])
    ok, message = reverify.verify(nb, LESSON)[GID]
    assert not ok and "SECRET" not in message and "ValueError" in message
