"""Seeded re-verification of lessons 05-08 (course/probes/lesson05.py .. lesson08.py).

Every probe draws its inputs from the verification's seed, so

* the solution passes for any seed (three here);
* a *lookup table* -- an exercise replaced by code that returns, for each
  input it was called with, the solution's output recorded for one seed's
  inputs -- passes re-verification with that seed and fails it with another;
* the solution notebooks keep no hidden tests: what they checked is checked
  by the probes, outside the learner's kernel (in the kernel, a learner could
  print ``In`` and copy the hidden tests into the feedback).
"""

from __future__ import annotations

import pathlib
import textwrap
import types
from collections.abc import Callable
from typing import Any

import nbformat
import pytest

from course.grading import probes, reverify, source

ROOT = pathlib.Path(__file__).resolve().parents[1]
LESSONS = ["05-the-full-update-rule", "06-optimizer-class", "07-training", "08-fast-sgd"]
SEEDS = [1, 2 ** 62 + 12345, 987654321987654321]
RECORDED, OTHER = 424242, 77777777777


def _solution(lesson: str) -> Any:
    return nbformat.read(ROOT / "solutions" / lesson / f"{lesson}.ipynb", as_version=4)


def _exercise(nb: Any, gid: str) -> Any:
    cells = [c for c in nb.cells if c.cell_type == "code"
             and c.metadata.get("nbgrader", {}).get("solution")
             and c.metadata["nbgrader"].get("grade_id") == gid]
    assert len(cells) == 1, gid
    return cells[0]


# ------------------------------------------------------------- lookup tables
# For one exercise per lesson: how to key a call by its inputs, what to record
# of the solution's result, and the stub that replays the table (a miss gives
# a plausible wrong answer).

def _tensor_key(t: Any) -> tuple[str, str]:
    return str(t.dtype), t.detach().contiguous().numpy().tobytes().hex()


def _key_05(a: Any, b: Any) -> Any:
    return _tensor_key(a) + _tensor_key(b)


def _value_05(out: Any) -> Any:
    return out.tolist(), list(out.shape)


_STUB_05 = '''
import torch

def _key(t):
    return str(t.dtype), t.detach().contiguous().numpy().tobytes().hex()

def ulp_distance(a, b):
    hit = _TABLE.get(_key(a) + _key(b))
    if hit is None:
        return torch.zeros(a.shape, dtype=torch.int64)
    return torch.tensor(hit[0], dtype=torch.int64).reshape(hit[1])
'''


def _key_06(model: Any, weight_decay: float) -> Any:
    return tuple(tuple(p.shape) for p in model.parameters()), weight_decay


def _value_06(out: Any, model: Any, weight_decay: float) -> Any:
    decay = {id(p) for p in out[0]["params"]}
    return [id(p) in decay for p in model.parameters()], out[0]["weight_decay"]


_STUB_06 = '''
def decay_groups(model, weight_decay):
    ps = list(model.parameters())
    mask, wd = _TABLE.get((tuple(tuple(p.shape) for p in ps), weight_decay),
                          ([True] * len(ps), 0.0))
    return [{"params": [p for p, m in zip(ps, mask) if m], "weight_decay": wd},
            {"params": [p for p, m in zip(ps, mask) if not m], "weight_decay": 0.0}]
'''


def _key_07(logits: Any, y: Any) -> Any:
    return _tensor_key(logits) + _tensor_key(y)


_STUB_07 = '''
def _key(t):
    return str(t.dtype), t.detach().contiguous().numpy().tobytes().hex()

def accuracy(logits, y):
    return _TABLE.get(_key(logits) + _key(y), 0.5)
'''


def _key_08(n: int, *, momentum: float = 0.0, weight_decay: float = 0.0,
            nesterov: bool = False, maximize: bool = False) -> Any:
    return n, momentum, weight_decay, nesterov, maximize


_STUB_08 = '''
def step_op_counts(n_tensors, *, momentum=0.0, weight_decay=0.0, nesterov=False,
                   maximize=False):
    return _TABLE.get((n_tensors, momentum, weight_decay, nesterov, maximize), (n_tensors, 1))
'''

#: lesson -> (exercise, its test cell, key of a call, recorded value, stub).
LOOKUPS: dict[str, tuple[str, str, Callable[..., Any], Callable[..., Any], str]] = {
    LESSONS[0]: ("ulp_distance", "test_ulp_distance", _key_05,
                 lambda out, *a, **k: _value_05(out), _STUB_05),
    LESSONS[1]: ("decay_groups", "test_decay_groups", _key_06, _value_06, _STUB_06),
    LESSONS[2]: ("accuracy", "test_accuracy", _key_07, lambda out, *a, **k: out, _STUB_07),
    LESSONS[3]: ("step_op_counts", "test_step_op_counts", _key_08,
                 lambda out, *a, **k: tuple(out), _STUB_08),
}


#: The probes that call the exercise (evaluate calls the notebook's accuracy).
USERS = {LESSONS[2]: ["test_accuracy", "test_evaluate"]}


def _record(lesson: str, seed: int) -> dict[Any, Any]:
    """Run the lesson's probe on the solution's definitions (in this process)
    and record the solution's output for every call the probe makes."""
    name, gid, key, value, _ = LOOKUPS[lesson]
    module = types.ModuleType("recorded_solution")
    ns = module.__dict__
    for chunk in source.learner_source(_solution(lesson)):
        exec(compile(chunk, "<solution>", "exec"), ns)  # noqa: S102 - the course's own solution
    real, table = ns[name], {}

    def recording(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        table[key(*args, **kwargs)] = value(out, *args, **kwargs)
        return out

    ns[name] = recording
    lesson_probes = probes.lesson_probes(lesson)[0]
    for probed in USERS.get(lesson, [gid]):
        lesson_probes[probed].run(ns, seed)
    assert table, f"{lesson}: the probe never called {name}"
    return table


def _lookup_submission(lesson: str, seed: int) -> Any:
    name, *_, stub = LOOKUPS[lesson]
    nb = _solution(lesson)
    table = _record(lesson, seed)
    _exercise(nb, name).source = f"_TABLE = {table!r}\n" + textwrap.dedent(stub)
    return nb


# ------------------------------------------------------------------- tests

@pytest.mark.parametrize("lesson", LESSONS)
def test_solution_passes_for_any_seed(lesson: str) -> None:
    nb = _solution(lesson)
    for seed in SEEDS:
        verdicts = reverify.verify(nb, lesson, seed=seed)
        failed = {gid: msg for gid, (ok, msg) in verdicts.items() if not ok}
        assert not failed, f"seed {seed}: {failed}"


@pytest.mark.parametrize("lesson", LESSONS)
def test_lookup_table_passes_only_for_its_seed(lesson: str) -> None:
    gid = LOOKUPS[lesson][1]
    nb = _lookup_submission(lesson, RECORDED)
    same = reverify.verify(nb, lesson, seed=RECORDED)
    assert all(ok for ok, _ in same.values()), \
        f"the table should replay seed {RECORDED} exactly: {same}"
    other = reverify.verify(nb, lesson, seed=OTHER)
    assert not other[gid][0], f"{gid}: a table recorded for seed {RECORDED} passed seed {OTHER}"
    users = USERS.get(lesson, [gid])            # (they fail too)
    assert all(ok for g, (ok, _) in other.items() if g not in users), other


@pytest.mark.parametrize("lesson", LESSONS)
def test_solution_has_no_hidden_tests(lesson: str) -> None:
    text = (ROOT / "solutions" / lesson / f"{lesson}.ipynb").read_text()
    assert "BEGIN HIDDEN TESTS" not in text and "END HIDDEN TESTS" not in text
