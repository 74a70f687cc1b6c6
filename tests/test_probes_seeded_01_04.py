"""Seeded re-verification probes of lessons 01-04 (course/probes/lesson01.py .. lesson04.py).

Each verification draws a fresh seed and the probes draw their inputs from
it, so answers recorded for one verification are wrong for the next. For
each lesson:

* the solution passes every probe for three different seeds;
* a lookup-table submission -- each exercise replaced by a function that
  replays what the solution's function returned (and did to its arguments,
  and which calls it made to the functions it was given) for the inputs of
  one seed's probes -- passes re-verification with that seed, and fails every
  probe with another seed;
* the solution notebook keeps no hidden tests: they were folded into the
  probes, and nothing of them runs in the learner's kernel.

Each verification is two sandboxed children (course.grading); lessons run two
at a time, in one job per lesson, started once per module.
"""

from __future__ import annotations

import base64
import concurrent.futures
import pathlib
import pickle
from typing import Any

import nbformat
import pytest

from course.grading import probes, reverify, source

ROOT = pathlib.Path(__file__).resolve().parents[1]
LESSONS = ["01-gradient-descent", "02-autograd", "03-stochastic-gradient-descent",
           "04-momentum"]


def _solution(lesson: str) -> Any:
    return nbformat.read(ROOT / "solutions" / lesson / f"{lesson}.ipynb", as_version=4)


def _questions(lesson: str) -> dict[str, str]:
    """Answer cell (grade_id) -> test cell of the lesson's predict-then-run questions."""
    from course.exercises import Question, lesson as spec
    return {q.name: q.grade_id for q in spec(lesson).EXERCISES if isinstance(q, Question)}


def _exercises(nb: Any, lesson: str) -> list[Any]:
    """The exercise (solution) code cells; their grade_id is the function's name.
    (Not the answers of predict-then-run questions: a value, nothing to replay.)"""
    questions = _questions(lesson)
    return [c for c in nb.cells if c.cell_type == "code"
            and c.get("metadata", {}).get("nbgrader", {}).get("solution")
            and c.metadata.nbgrader.grade_id not in questions]


# ------------------------------------------------------------ lookup table

#: Runs both here (recording) and in the submission (replaying), so that the
#: keys are computed the same way. Tensors are stored as numpy arrays.
REPLAYER = '''\
import base64 as _b64
import pickle as _pickle

import numpy as _np
import torch as _torch

_TENSORS = (_torch.Tensor, _torch.nn.Parameter)


def _flat(x, out):
    """Arguments in order, lists and tuples flattened."""
    if type(x) in (list, tuple):
        for v in x:
            _flat(v, out)
    else:
        out.append(x)
    return out


def _is_fn(x):
    return callable(x) and type(x) not in (*_TENSORS, _np.ndarray, _torch.Generator)


def _key(args):
    """The arguments' values as a string (a function: only its place)."""
    parts = []
    for x in _flat(list(args), []):
        if type(x) in _TENSORS:
            t = x.detach().contiguous()
            parts.append(("t", str(t.dtype), tuple(t.shape), t.numpy().tobytes()))
        elif type(x) is _np.ndarray:
            parts.append(("a", str(x.dtype), x.shape, x.tobytes()))
        elif type(x) is _torch.Generator:
            parts.append(("g", x.get_state().numpy().tobytes()))
        elif _is_fn(x):
            parts.append(("f",))
        else:
            parts.append(("v", type(x).__name__, repr(x)))
    return repr(parts)


def _store(x):
    """A picklable copy (tensors as numpy arrays)."""
    if type(x) in _TENSORS:
        return ("tensor", x.detach().clone().numpy())
    if type(x) is _np.ndarray:
        return ("array", x.copy())
    if type(x) is _torch.Generator:
        return ("generator", x.get_state().numpy())
    if type(x) in (list, tuple):
        return (type(x).__name__, [_store(v) for v in x])
    return ("value", x)


def _load(s):
    kind, x = s
    if kind == "tensor":
        return _torch.from_numpy(x.copy())
    if kind == "array":
        return x.copy()
    if kind == "list":
        return [_load(v) for v in x]
    if kind == "tuple":
        return tuple(_load(v) for v in x)
    return x


def _state(args):
    """What a function may change in its arguments: tensors, arrays, generators."""
    return [_store(x) for x in _flat(list(args), [])
            if type(x) in (*_TENSORS, _np.ndarray, _torch.Generator)]


def _restore(args, states):
    mutable = [x for x in _flat(list(args), [])
               if type(x) in (*_TENSORS, _np.ndarray, _torch.Generator)]
    for x, (kind, value) in zip(mutable, states):
        if kind == "generator":
            x.set_state(_torch.from_numpy(value.copy()))
        elif kind == "tensor":
            with _torch.no_grad():
                x.copy_(_torch.from_numpy(value.copy()))
        else:
            x[...] = value


def _replayer(table):
    """A function that answers from the table, or raises KeyError."""
    table = _pickle.loads(_b64.b64decode(table))
    used = {}

    def replay(*args):
        key = _key(args)
        outcomes = table[key]
        i = used.get(key, 0)
        used[key] = i + 1
        calls, states, result = outcomes[min(i, len(outcomes) - 1)]
        fns = [x for x in _flat(list(args), []) if _is_fn(x)]
        for index, call_args in calls:          # the calls made to the functions given
            fns[index](*_load(call_args))
        _restore(args, states)
        return _load(result)
    return replay
'''


def _helpers() -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(REPLAYER, ns)  # noqa: S102 - our own code
    return ns


def _record(lesson: str, seed: int) -> dict[str, dict[str, list[Any]]]:
    """Run the lesson's probes for ``seed`` on the solution's functions, here,
    and record every call: function name -> key -> [(calls, states, result)]."""
    h = _helpers()
    nb = _solution(lesson)
    ns: dict[str, Any] = {"__name__": "__main__"}
    for chunk in source.learner_source(nb):
        exec(compile(chunk, "<solution>", "exec"), ns)  # noqa: S102 - the solution
    tables: dict[str, dict[str, list[Any]]] = {}

    def recorder(name: str, fn: Any) -> Any:
        def call(*args: Any) -> Any:
            key = h["_key"](args)
            calls: list[Any] = []
            flat = h["_flat"](list(args), [])
            fns = [x for x in flat if h["_is_fn"](x)]

            def spy(index: int, f: Any) -> Any:
                def logged(*a: Any) -> Any:
                    calls.append((index, h["_store"](list(a))))
                    return f(*a)
                return logged
            spies = {id(f): spy(i, f) for i, f in enumerate(fns)}

            def swap(x: Any) -> Any:
                if type(x) in (list, tuple) and any(h["_is_fn"](v) for v in x):
                    return type(x)(swap(v) for v in x)
                return spies.get(id(x), x) if h["_is_fn"](x) else x
            result = fn(*[swap(a) for a in args])
            tables.setdefault(name, {}).setdefault(key, []).append(
                (calls, h["_state"](args), h["_store"](result)))
            return result
        return call

    for cell in _exercises(nb, lesson):
        name = cell.metadata["nbgrader"]["grade_id"]
        ns[name] = recorder(name, ns[name])
    for probe in probes.lesson_probes(lesson)[0].values():
        probe.run(ns, seed)
    return tables


def _lookup_submission(lesson: str, seed: int) -> Any:
    """The solution with every exercise replaced by a replay of the solution's
    answers to the probes' inputs for ``seed``."""
    tables = _record(lesson, seed)
    nb = _solution(lesson)
    for cell in _exercises(nb, lesson):
        name = cell.metadata["nbgrader"]["grade_id"]
        blob = base64.b64encode(pickle.dumps(tables.get(name, {}))).decode()
        cell.source = f"{REPLAYER}\n\n{name} = _replayer({blob!r})\n"
    return nb


# --------------------------------------------------------------- running

def _lesson_job(lesson: str) -> dict[str, Any]:
    seeds = [reverify.draw_seed() for _ in range(3)]
    out: dict[str, Any] = {"seeds": seeds}
    for seed in seeds:
        out[("solution", seed)] = reverify.verify(_solution(lesson), lesson, seed=seed)
    lookup = _lookup_submission(lesson, seeds[0])
    for seed in seeds[:2]:
        out[("lookup", seed)] = reverify.verify(lookup, lesson, seed=seed)
    return out


@pytest.fixture(scope="module")
def runs() -> Any:
    """lesson -> future of its job's results; two children at a time."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    futures = {lesson: pool.submit(_lesson_job, lesson) for lesson in LESSONS}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _failing(verdicts: dict[str, tuple[bool, str]]) -> dict[str, str]:
    return {gid: msg for gid, (ok, msg) in verdicts.items() if not ok}


# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("lesson", LESSONS)
def test_solution_passes_for_three_seeds(runs: Any, lesson: str) -> None:
    job = runs[lesson].result()
    lesson_probes = probes.lesson_probes(lesson)[0]
    assert len(set(job["seeds"])) == 3
    for seed in job["seeds"]:
        verdicts = job[("solution", seed)]
        assert sorted(verdicts) == sorted(lesson_probes)
        assert not _failing(verdicts), (seed, _failing(verdicts))


@pytest.mark.parametrize("lesson", LESSONS)
def test_lookup_table_passes_only_for_its_own_seed(runs: Any, lesson: str) -> None:
    job = runs[lesson].result()
    recorded, other = job["seeds"][:2]
    own = job[("lookup", recorded)]
    assert not _failing(own), (recorded, _failing(own))
    fresh = job[("lookup", other)]
    # every exercise fails; a prediction (kept as the solution's) is the same for any seed
    replayed = set(fresh) - set(_questions(lesson).values())
    assert set(_failing(fresh)) == replayed, (other, sorted(replayed - set(_failing(fresh))))


@pytest.mark.parametrize("lesson", LESSONS)
def test_no_hidden_tests_left_in_the_solution(lesson: str) -> None:
    text = (ROOT / "solutions" / lesson / f"{lesson}.ipynb").read_text()
    assert "BEGIN HIDDEN TESTS" not in text and "END HIDDEN TESTS" not in text
