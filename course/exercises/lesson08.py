r"""Exercise specs of 08-fast-sgd: make ``step()`` fast without changing a bit.

- ``step_op_counts`` -- how many tensor operations one later step of the
  for-loop and of the foreach update dispatches (the reference measures them
  live on ``torch.optim.SGD``);
- ``group_by_device_and_dtype`` -- indices of a list of tensors grouped by
  ``(device, dtype)``, first-seen order, ascending indices;
- ``foreach_sgd_update`` -- the multi-tensor update of one group with
  ``torch._foreach_*`` kernels, compared **bit for bit** with torch's foreach
  rule (itself bit-identical to the rule applied tensor by tensor); it must be
  a real foreach update (its number of operations may not grow with the
  number of tensors);
- ``ForeachSGD`` -- ``ForeachSGD(SGD)`` compared bit for bit with
  ``torch.optim.SGD(foreach=True)`` (class check ``check_foreach_sgd_class``).

A wrong value is compared with the classic mistakes (``p - lr * d`` instead of
``p.add_(d, alpha=-lr)``, a zero-initialised buffer, a buffer aliasing the
gradient, gradients changed in place, maximize as a flipped lr, ...): if the
learner's tensors equal one of those variants, the check names it. Results
within a few ulp of torch's get the fused multiply-add hint with the number of
ulp.

Hidden cases are drawn from each verification's seed: tensor counts, shapes,
values, devices and dtypes, every hyperparameter and step count (the grids of
flags and buffer states stay fixed: every path of torch's rule).
"""

from __future__ import annotations

import builtins
import itertools
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch._dynamo
from torch import Tensor

from course.exercises.sgd_mistakes import source_names
from course.exercises.inputs import isolated
from course.exercises.spec import CheckFailure, Case, Exercise, Mistake, Question, Run, run_case
from course.exercises.values import (
    COURSE_SGD,
    TORCH_SGD,
    fmt,
    generator,
    pair,
    same_storage,
    snap,
    sub_seed,
    type_name,
    uniform,
)
from course.floating_point import max_ulp_distance
from course.optim import SGD as CourseSGD
from course.timing import count_ops, params_with_grads

#: Observations use the builtins as they were before the learner's code ran.
__builtins__ = dict(vars(builtins))

#: The answer keys disabled while a submission is graded. ``course.optim.SGD``
#: stays: the notebook's ForeachSGD subclasses it.
FORBIDDEN = [*TORCH_SGD, *[n for n in COURSE_SGD if n != "course.optim.SGD"],
             "course.momentum.torch_momentum_step"]

_TENSOR = Tensor
_LIST = list

#: Results at most this many ulp away from torch's get the FMA hint.
_ULP_HINT = 16

_FMA = (
    "torch computes x + a·y with ONE rounding (`add(y, alpha=a)` is a fused "
    "multiply-add on AVX2/AVX-512 CPUs); writing the product separately "
    "(`_foreach_mul(grads, -lr)` then `_foreach_add`, or `p - lr * d`) rounds "
    "twice. Use the `alpha=` forms: `torch._foreach_add(grads, params, "
    "alpha=weight_decay)`, `torch._foreach_add_(bufs, grads, alpha=1 - dampening)`"
    " after `torch._foreach_mul_(bufs, momentum)`, `torch._foreach_add(grads, bufs,"
    " alpha=momentum)` and `torch._foreach_add_(params, d, alpha=-lr)`.")


def _shape(rng: np.random.Generator, max_ndim: int = 3) -> tuple[int, ...]:
    """A random shape of 0 to ``max_ndim`` axes of 1 to 5 entries."""
    return tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(0, max_ndim + 1))))


def _ulp(a: Any, b: Any) -> float:
    """Largest distance in ulps between two float tensors (inf if incomparable)."""
    if type(a) is not _TENSOR or type(b) is not _TENSOR:
        return float("inf")
    try:
        return float(max_ulp_distance(a.detach(), b.detach()))
    except (TypeError, ValueError):  # other dtype/shape, inf or NaN
        return 0.0 if a.shape == b.shape and torch.equal(a, b) else float("inf")


def _max_ulp(actual: list[Any], expected: list[Any]) -> float:
    return max((_ulp(a, e) for a, e in zip(actual, expected)), default=0.0)


def _per_tensor(counts: Counter[str]) -> Counter[str]:
    """The dispatched ops that are not foreach ops and not views."""
    return Counter({k: v for k, v in counts.items()
                    if not k.startswith("_foreach") and k not in ("detach", "alias")})


def _describe(counts: Counter[str]) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in counts.most_common(4))


def _returned_none(name: str, what: str) -> str:
    return f"`{name}` returned None.\n  Diagnosis: did you forget `return {what}`?"


# --------------------------------------------------------------------------
# Exercise 8.1: step_op_counts
# --------------------------------------------------------------------------

def measured_op_counts(n_tensors: int, *, momentum: float = 0.0, weight_decay: float = 0.0,
                       nesterov: bool = False, maximize: bool = False) -> tuple[int, int]:
    """Ops dispatched by a later step of torch.optim.SGD: (for-loop, foreach)."""
    gen = torch.Generator().manual_seed(n_tensors)
    out = []
    for foreach in (False, True):
        params = [torch.randn(3, generator=gen).requires_grad_() for _ in range(n_tensors)]
        for p in params:
            p.grad = torch.randn(3, generator=gen)
        opt = torch.optim.SGD(params, lr=0.1, foreach=foreach, momentum=momentum,
                              weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        opt.step()                                  # creates the buffers
        out.append(sum(count_ops(opt.step, include_views=False).values()))
    return out[0], out[1]


class _Measured(tuple):
    """The reference's counts, shown as measured: ``(4, 1) (measured on torch.optim.SGD)``."""

    def __repr__(self) -> str:
        return f"{tuple.__repr__(self)} (measured on torch.optim.SGD)"


def _counts_show(run: Run) -> Any:
    if run.fn is measured_op_counts:
        return _Measured(run.result)
    return tuple(run.result) if type(run.result) in (tuple, list) else run.result


def _counts_observe(run: Run) -> Any:
    return [int(x) if type(x) is int else type_name(x) for x in pair(run.result)]


def _counts_contract(got: Run, expected: Run) -> str | None:
    out, name = got.result, "step_op_counts"
    if out is None:
        return _returned_none(name, "loop_ops, foreach_ops")
    if type(out) not in (tuple, list) or len(out) != 2:
        return (f"`{name}` must return a pair (loop_ops, foreach_ops), got "
                f"{type(out).__name__} {fmt(out)}.")
    if not all(type(v) is int for v in out):
        return (f"both counts must be ints, got {fmt(tuple(out))} "
                f"({', '.join(type(v).__name__ for v in out)}).")
    return None


def _op_counts(base: int = 1, max_: int = 1, wd: int = 1, mom: int = 2, nest: int = 1,
               shape: str = "") -> Callable[..., Any]:
    """A learner's step_op_counts with one wrong per-line cost or a wrong shape."""
    def step_op_counts(n_tensors: int, *, momentum: float = 0.0, weight_decay: float = 0.0,
                       nesterov: bool = False, maximize: bool = False) -> tuple[int, int]:
        per = base
        per += max_ if maximize else 0
        per += wd if weight_decay != 0 else 0
        per += mom if momentum != 0 else 0
        per += nest if nesterov else 0
        if shape == "swapped":
            return per, n_tensors * per
        if shape == "scaled":
            return n_tensors * per, n_tensors * per
        if shape == "one":
            return n_tensors * per, 1
        return n_tensors * per, per
    return step_op_counts


def _counts_hidden(rng: np.random.Generator) -> Iterator[Case]:
    sizes = [int(rng.integers(1, 4))] + [int(n) for n in rng.integers(2, 500, size=4)]
    momenta = (0.0, uniform(rng, 0.1, 0.6), uniform(rng, 0.6, 0.99))
    for n, m, wd, nest, mx in itertools.product(sizes, momenta, (0.0, uniform(rng, 1e-4, 0.3)),
                                                (False, True), (False, True)):
        if nest and m == 0:
            continue
        yield Case("a random option set", (n,), {"momentum": m, "weight_decay": wd,
                                                  "nesterov": nest, "maximize": mx})
    yield Case("the defaults", (int(rng.integers(1, 500)),))


_COUNT_CASES: list[tuple[int, dict[str, Any]]] = [
    (4, {}),
    (100, {"momentum": 0.9}),
    (10, {"momentum": 0.9, "weight_decay": 1e-4}),
    (7, {"momentum": 0.9, "nesterov": True}),
    (3, {"weight_decay": 0.1, "maximize": True}),
    (1, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1, "maximize": True}),
    (5, {"weight_decay": 0.1}),
]

STEP_OP_COUNTS = Exercise(
    grade_id="test_step_op_counts",
    name="step_op_counts",
    reference=measured_op_counts,
    cases=[Case(", ".join([f"n_tensors={n}"] + [f"{k}={v}" for k, v in opts.items()]),
                (n,), opts) for n, opts in _COUNT_CASES],
    observe=_counts_observe,
    show=_counts_show,
    passed="step_op_counts: 7 cases equal the ops torch.optim.SGD dispatches on a later "
           "step (n_tensors × ops per tensor for the for-loop, one foreach call per line "
           "of the update)",
    hidden=_counts_hidden,
    rules=[_counts_contract],
    # Each mistake's first failing case is one no earlier mistake reproduces.
    mistakes=[
        Mistake("counts_swapped", "you returned (foreach_ops, loop_ops): the FIRST number "
                "is the for-loop's count.", _op_counts(shape="swapped")),
        Mistake("foreach_count_grows", "your foreach count grows with the number of "
                "tensors: one `torch._foreach_*` call handles the whole list, so "
                "foreach_ops is the number of LINES of the update, independent of "
                "n_tensors.", _op_counts(shape="scaled")),
        Mistake("foreach_count_one", "your foreach count is 1: each line of the update is "
                "its own foreach call (neg, add for weight decay, mul_ and add_ for "
                "momentum, add for nesterov, add_ for the parameter).", _op_counts(shape="one")),
        Mistake("nesterov_op_missing", "nesterov costs one more op: `g.add(buf, "
                "alpha=momentum)`.", _op_counts(nest=0)),
        Mistake("maximize_op_missing", "maximize costs one op: the gradient is negated "
                "(`-g`, aten::neg) before anything else.", _op_counts(max_=0)),
        Mistake("weight_decay_op_missing", "weight decay costs one op: `g.add(p, "
                "alpha=weight_decay)`.", _op_counts(wd=0)),
        Mistake("momentum_one_op", "momentum costs TWO ops per tensor on a later step: "
                "`buf.mul_(momentum)` and `.add_(g, alpha=1 - dampening)` (a chained call "
                "is still two ops).", _op_counts(mom=1)),
        Mistake("buffer_clone_counted", "on a later step the buffers already exist: there "
                "is no clone, only `buf.mul_(momentum).add_(g, alpha=1 - dampening)`.",
                _op_counts(mom=3)),
        Mistake("param_update_missing", "you forgot the parameter update itself: "
                "`p.add_(d, alpha=-lr)` is one op per tensor (and one `_foreach_add_` for "
                "the list).", _op_counts(base=0)),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 8.2: group_by_device_and_dtype
# --------------------------------------------------------------------------

def group_by_device_and_dtype(tensors: list[Tensor]) -> dict[tuple[Any, Any], list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype), first-seen order."""
    groups: dict[tuple[Any, Any], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return groups


def _group_flow(fn: Any, case: Case) -> Any:
    """Call ``fn`` on the list; remember which tensors it held before."""
    given = case.args[0]
    before = list(given)
    return fn(given), before


def _describe_groups(groups: Any) -> Any:
    if type(groups) is not dict:
        return type_name(groups)
    rows = []
    for key, idx in groups.items():
        if type(key) is not tuple or len(key) != 2:
            rows.append(type_name(key))
            continue
        rows.append([type(key[0]) is torch.device, type(key[1]) is torch.dtype,
                     str(key[0]), str(key[1]),
                     [int(i) if type(i) is int else type_name(i) for i in idx]
                     if type(idx) is list else type_name(idx)])
    return rows


def _list_unchanged(run: Run) -> bool:
    given, before = run.args[0], run.result[1]
    return type(given) is _LIST and len(given) == len(before) and \
        all(a is b for a, b in zip(given, before))


def _group_observe(run: Run) -> Any:
    return [_describe_groups(run.result[0]), _list_unchanged(run)]


_KEYS_DTYPE = ("your keys are dtypes only. A foreach kernel takes tensors of ONE device "
               "and ONE dtype, so group by both: `key = (t.device, t.dtype)`.")
_KEYS_DEVICE = "your keys are devices only: group by `(t.device, t.dtype)`."
_KEYS_SWAPPED = "your keys are (dtype, device): use the order `(t.device, t.dtype)`."
_KEYS_SHAPE = ("your keys have more than device and dtype (the shape?). Foreach kernels "
               "accept tensors of different shapes in one list: group only by "
               "`(t.device, t.dtype)`, or you split the update into needlessly many calls.")
_VALUES_TENSORS = ("append `i` (from `enumerate(tensors)`), not `t`: the caller needs the "
                   "positions to put each group's new momentum buffers back in the right "
                   "place.")
_ORDER_LOST = ("you lost the order: the indices of a group must be ascending, in the "
               "order of the input list (a set or a sort by something else reorders "
               "them). Loop `for i, t in enumerate(tensors)` and append.")
_KEYS_SORTED = ("keep the order in which each (device, dtype) first appears (a plain dict "
                "with setdefault does; don't sort the keys) so the update runs in a "
                "predictable order.")
_INPUT_CHANGED = "only read `tensors`; build a new dict."


def _key_hint(key: Any) -> str | None:
    """Diagnosis for a dict key that is not a (torch.device, torch.dtype) pair."""
    if type(key) is torch.dtype:
        return _KEYS_DTYPE
    if type(key) is torch.device:
        return _KEYS_DEVICE
    if type(key) is not tuple:
        return f"each key must be the tuple `(t.device, t.dtype)`, got {type(key).__name__}."
    if len(key) == 2 and type(key[0]) is torch.dtype and type(key[1]) is torch.device:
        return _KEYS_SWAPPED
    if len(key) > 2:
        return _KEYS_SHAPE
    if len(key) == 2 and type(key[1]) is torch.dtype and type(key[0]) is not torch.device:
        return ("the device in your key is a " + type(key[0]).__name__ + " (" +
                repr(key[0]) + "): use the tensor's `t.device` itself, a torch.device.")
    if len(key) == 2 and type(key[0]) is torch.device and type(key[1]) is not torch.dtype:
        return "the second element of each key must be `t.dtype` (a torch.dtype)."
    if len(key) != 2:
        return f"each key must be the tuple `(t.device, t.dtype)`, got {fmt(key)}."
    return None


def _group_contract(got: Run, expected: Run) -> str | None:
    (out, _), name = got.result, "group_by_device_and_dtype"
    if out is None:
        return _returned_none(name, "groups")
    if not _list_unchanged(got):
        return (f"`{name}` changed the list it was given (sorted or removed items).\n"
                f"  Diagnosis: {_INPUT_CHANGED}")
    if type(out) is not dict:
        return f"expected a dict {{(device, dtype): [indices]}}, got {type(out).__name__} {fmt(out)}."
    want = expected.result[0]
    for key, value in out.items():
        hint = _key_hint(key)
        if hint is not None:
            return f"got the key {key!r}.\n  Diagnosis: {hint}"
        if type(value) is not list:
            return (f"the value for {key!r} must be a list of indices, got "
                    f"{type(value).__name__}.\n  Diagnosis: "
                    "`groups.setdefault(key, []).append(i)`.")
        if any(isinstance(v, Tensor) for v in value):
            return ("the values must be INDICES (ints), you stored tensors.\n  Diagnosis: "
                    + _VALUES_TENSORS)
        if not all(type(v) is int for v in value):
            return f"the indices for {key!r} must be ints, got {value!r}."
    if set(out) != set(want):
        return (f"expected the groups {list(want)}, got {list(out)}.\n  Diagnosis: one "
                "group per distinct `(t.device, t.dtype)` of the tensors.")
    for key, idx in want.items():
        if out[key] != idx:
            hint = _ORDER_LOST if sorted(out[key]) == idx else (
                "every index 0 … len(tensors) − 1 must appear exactly once, in the group "
                "of its tensor's (device, dtype).")
            return (f"group {key}: expected {fmt(idx)}, got {fmt(out[key])}.\n"
                    f"  Diagnosis: {hint}")
    if list(out) != list(want):
        return (f"the groups come in the order {list(out)}, expected {list(want)}.\n"
                f"  Diagnosis: {_KEYS_SORTED}")
    return None


def _grouped_by(key: Callable[[Tensor], Any], value: Callable[[int, Tensor], Any] = lambda i, t: i,
                order: str = "") -> Callable[..., Any]:
    """A learner's grouping with a wrong key, value or order."""
    def group_by_device_and_dtype(tensors: list[Tensor]) -> Any:
        groups: dict[Any, list[Any]] = {}
        for i, t in enumerate(tensors):
            if order == "reversed":
                groups.setdefault(key(t), []).insert(0, value(i, t))
            else:
                groups.setdefault(key(t), []).append(value(i, t))
        if order == "sorted":
            return dict(sorted(groups.items(), key=lambda kv: str(kv[0])))
        return groups
    return group_by_device_and_dtype


def _sorting_in_place(tensors: list[Tensor]) -> Any:
    tensors.sort(key=lambda t: str(t.dtype))
    return group_by_device_and_dtype(tensors)


_KINDS = [(d, t) for d in ("cpu", "meta")
          for t in (torch.float32, torch.float64, torch.float16, torch.bfloat16)]


def _group_hidden(rng: np.random.Generator) -> Iterator[Case]:
    kinds = [_KINDS[int(i)] for i in rng.permutation(len(_KINDS))]

    def tensors(pick: list[int]) -> list[Tensor]:
        return [torch.empty(_shape(rng, 2), device=kinds[k][0], dtype=kinds[k][1])
                for k in pick]

    yield Case("one random kind", (tensors([0] * int(rng.integers(1, 6))),))
    for _ in range(3):                               # a few kinds, interleaved
        k, n = int(rng.integers(2, 6)), int(rng.integers(5, 13))
        yield Case("a few kinds, interleaved",
                   (tensors([int(i) for i in rng.integers(0, k, size=n)]),))
    for _ in range(12):                              # any kinds
        n = int(rng.integers(0, 12))
        yield Case("random kinds", (tensors([int(i) for i in rng.integers(0, 8, size=n)]),))
    cpu0 = torch.zeros(_shape(rng))
    yield Case("one tensor in two dtypes", ([cpu0, torch.zeros(_shape(rng), device="cpu"),
                                             cpu0.double()],))


def _group_cases() -> list[Case]:
    f32, f64, f16 = torch.float32, torch.float64, torch.float16

    def cpu(*shape: int, dtype: torch.dtype = f32) -> Tensor:
        return torch.zeros(*shape, dtype=dtype)

    def meta(*shape: int, dtype: torch.dtype = f32) -> Tensor:
        return torch.empty(*shape, dtype=dtype, device="meta")

    return [Case(label, (tensors,)) for label, tensors in [
        ("empty list", []),
        ("4 float32 tensors of different shapes", [cpu(3, 2), cpu(3), cpu(1, 3), cpu(1)]),
        ("float32/float64 interleaved", [cpu(2), cpu(2, dtype=f64), cpu(4),
                                         cpu(1, dtype=f64), cpu(3, dtype=f64)]),
        ("float64 first, then float16 and float32",
         [cpu(2, dtype=f64), cpu(2, dtype=f16), cpu(5, dtype=f64), cpu(1)]),
        ("cpu and meta devices, float32 and float64",
         [cpu(2), meta(2), cpu(3), meta(1, dtype=f64), cpu(2, dtype=f64), meta(4)]),
    ]]


GROUP_BY_DEVICE_AND_DTYPE = Exercise(
    grade_id="test_group_by_device_and_dtype",
    name="group_by_device_and_dtype",
    reference=group_by_device_and_dtype,
    cases=_group_cases(),
    call=_group_flow,
    observe=_group_observe,
    show=lambda run: run.result[0],
    passed="group_by_device_and_dtype: 5 cases (empty, one group, mixed dtypes, cpu and "
           "meta devices) give {(device, dtype): [ascending indices]} in first-seen order",
    hidden=_group_hidden,
    rules=[_group_contract],
    mistakes=[
        Mistake("keys_dtype_only", _KEYS_DTYPE, _grouped_by(lambda t: t.dtype)),
        Mistake("keys_device_only", _KEYS_DEVICE, _grouped_by(lambda t: t.device)),
        Mistake("keys_dtype_device", _KEYS_SWAPPED, _grouped_by(lambda t: (t.dtype, t.device))),
        Mistake("keys_with_shape", _KEYS_SHAPE,
                _grouped_by(lambda t: (t.device, t.dtype, tuple(t.shape)))),
        Mistake("values_are_tensors", _VALUES_TENSORS,
                _grouped_by(lambda t: (t.device, t.dtype), lambda i, t: t)),
        Mistake("order_lost", _ORDER_LOST,
                _grouped_by(lambda t: (t.device, t.dtype), order="reversed")),
        Mistake("keys_sorted", _KEYS_SORTED,
                _grouped_by(lambda t: (t.device, t.dtype), order="sorted")),
        Mistake("input_list_changed", _INPUT_CHANGED, _sorting_in_place),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 8.3: foreach_sgd_update
# --------------------------------------------------------------------------

def foreach_sgd_update(params: list[Tensor], grads: list[Tensor], bufs: list[Any], *,
                       lr: Any, momentum: float = 0.0, dampening: float = 0.0,
                       weight_decay: float = 0.0, nesterov: bool = False,
                       maximize: bool = False) -> None:
    """The oracle: torch's own foreach SGD (bit-identical to its for-loop on CPU)."""
    torch.optim._functional.sgd(params, grads, bufs, lr=lr, momentum=momentum,
                                dampening=dampening, weight_decay=weight_decay,
                                nesterov=nesterov, maximize=maximize, foreach=True)


def _quirk(kw: dict[str, Any]) -> bool:
    """torch's foreach nesterov writes into the caller's grads (no maximize, no decay)."""
    return bool(kw.get("nesterov")) and not kw.get("maximize") and kw.get("weight_decay", 0) == 0


def _update_flow(fn: Any, case: Case) -> Any:
    """Run the update for ``case.data['steps']`` steps (buffers reused, gradients
    drifting); or, for an op-count case, count the ops of one later step."""
    if case.data.get("mode") == "ops":
        return _ops_flow(fn, case)
    params, grads, bufs = case.args
    steps = []
    for _ in range(case.data["steps"]):
        olds = list(bufs)
        grads_in = [g.clone() for g in grads]
        fn(list(params), list(grads_in), bufs, **case.kwargs)
        steps.append({"params": [snap(p) for p in params], "param_objs": list(params),
                      "bufs": list(bufs) if type(bufs) is _LIST else bufs, "olds": olds,
                      "grads": grads, "grads_in": grads_in})
        grads = [g * case.data["decay"] + case.data["shift"] for g in grads]
    return steps


def _ops_flow(fn: Any, case: Case) -> Any:
    out = {}
    for which, (params, grads, bufs) in (("few", case.data["few"]), ("many", case.args)):
        ps, gs = [p.clone() for p in params], [g.clone() for g in grads]
        bs = [b.clone() for b in bufs]
        out[which] = count_ops(lambda ps=ps, gs=gs, bs=bs: fn(ps, gs, bs, **case.kwargs),
                               include_views=False)
        out[f"n_{which}"] = len(params)
    return out


def _update_observe(run: Run) -> Any:
    if run.case.data.get("mode") == "ops":
        few, many = run.result["few"], run.result["many"]
        return [sum(few.values()) == sum(many.values()), sum(many.values()) <= 10,
                sum(_per_tensor(many).values()) < run.result["n_many"]]
    quirk = _quirk(run.case.kwargs)
    out = []
    for step in run.result:
        bufs = step["bufs"]
        if type(bufs) is not _LIST:
            out.append(type_name(bufs))
            continue
        out.append([
            step["params"], [snap(b) for b in bufs],
            "grads may change (torch's nesterov quirk)" if quirk
            else [snap(g) for g in step["grads_in"]],
            [o is None or b is o for b, o in zip(bufs, step["olds"])],          # in place
            [same_storage(b, g) or same_storage(b, p)                           # no aliases
             for b, g, p in zip(bufs, step["grads_in"], step["param_objs"])]])
    return out


def _values(run: Run) -> list[Any]:
    """The parameters and buffers after the first step (what a mistake changes)."""
    step = run.result[0]
    return step["params"] + [snap(b) for b in step["bufs"]]


def _equal(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        x is None and y is None or (type(x) is _TENSOR and type(y) is _TENSOR
                                    and x.shape == y.shape and x.dtype == y.dtype
                                    and torch.equal(x, y)) for x, y in zip(a, b))


def _close(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        x is None and y is None or (type(x) is _TENSOR and type(y) is _TENSOR
                                    and x.shape == y.shape and x.dtype == y.dtype
                                    and torch.allclose(x.double(), y.double(), rtol=1e-6,
                                                       atol=1e-9, equal_nan=True))
        for x, y in zip(a, b))


def _diagnose_update(got: Run, expected: Run) -> str | None:
    """The first catalogued mistake that gives the learner's parameters and
    buffers on this case (rounding mistakes bit for bit, the others within
    1e-6: a learner may write them with other ops); else the few-ulp hint."""
    seen, want = _values(got), _values(expected)
    for mistake in FOREACH_SGD_UPDATE.mistakes:
        try:
            with np.errstate(all="ignore"):
                wrong = _values(run_case(FOREACH_SGD_UPDATE, mistake.impl, got.case))
        except Exception:  # noqa: BLE001, S112 - this mistake does not apply here
            continue
        same = _equal if mistake.name.startswith("rounding_") else _close
        if same(seen, wrong) and not same(wrong, want):
            return mistake.text(got)
    pairs = [(g, e) for g, e in zip(seen, want) if not (g is None and e is None)]
    if all(type(g) is _TENSOR and type(e) is _TENSOR for g, e in pairs):
        n = _max_ulp([g for g, _ in pairs], [e for _, e in pairs])
        if 0 < n <= _ULP_HINT:
            return f"your values agree with torch's to {n:.0f} ulp but not bit for bit: " + _FMA
    return None


_ALIAS = ("a new buffer shares memory with the gradient (`bufs[i] = grads[i]`). "
          "The next `zero_grad()`/`backward()` would overwrite your momentum, and "
          "updating the buffer in place would change p.grad. Make a copy: "
          "`bufs[i] = grads[i].detach().clone()`.")
_REBOUND = ("fill the CALLER's list in place, `bufs[i] = grads[i].detach().clone()` for a "
            "missing buffer; `bufs = [...]` only rebinds your local name (the optimizer "
            "never sees it).")
_NOT_IN_PLACE = ("the optimizer's state holds these very tensors (and torch updates them "
                 "in place, with no new memory): `torch._foreach_mul_(bufs, momentum)` then "
                 "`torch._foreach_add_(bufs, grads, alpha=1 - dampening)`.")
_NO_MOMENTUM = "with momentum = 0 there are no buffers: leave bufs untouched."
_GRADS_CHANGED = ("torch never modifies p.grad here: build the negated and decayed "
                  "gradients as NEW lists, `grads = torch._foreach_neg(grads)` and "
                  "`grads = torch._foreach_add(grads, params, alpha=weight_decay)` (no "
                  "trailing underscore).")
_PER_TENSOR = ("call each `torch._foreach_*` op ONCE on the whole lists "
               "(`torch._foreach_mul_(bufs, momentum)`, ...). Only missing buffers are "
               "cloned one by one.")


def _update_contract(got: Run, expected: Run) -> str | None:
    """The buffer list's contract on the first step: filled and updated in
    place, no aliases, dtypes and shapes kept."""
    if got.case.data.get("mode") == "ops":
        return None
    step, want = got.result[0], expected.result[0]
    bufs, n = step["bufs"], len(step["olds"])
    if type(bufs) is not _LIST or len(bufs) != n:
        return (f"the bufs list must keep its {n} entries, it now has {len(bufs)}.\n"
                "  Diagnosis: assign `bufs[i] = ...`; don't append or remove entries.")
    momentum = got.case.kwargs.get("momentum", 0)
    for i, (b, old) in enumerate(zip(bufs, step["olds"])):
        if momentum == 0:
            if b is not None:
                return (f"bufs[{i}] is {type(b).__name__}, expected None.\n"
                        f"  Diagnosis: {_NO_MOMENTUM}")
            continue
        if b is None:
            return f"bufs[{i}] is still None after your update.\n  Diagnosis: {_REBOUND}"
        if type(b) is not _TENSOR:
            return f"bufs[{i}] must be a tensor, got {type(b).__name__}."
        if old is not None and b is not old:
            hint = None if _equal(_values(got), _values(expected)) else \
                _diagnose_update(got, expected)
            if hint is not None:
                return (f"bufs[{i}] was replaced by a new tensor with wrong values.\n"
                        f"  Diagnosis: {hint}")
            return (f"bufs[{i}] is a new tensor; the existing buffer must be updated IN "
                    f"PLACE.\n  Diagnosis: {_NOT_IN_PLACE}")
        if old is None and (same_storage(b, step["grads_in"][i])
                            or same_storage(b, step["param_objs"][i])):
            what = "grads" if same_storage(b, step["grads_in"][i]) else "params"
            return f"the new bufs[{i}] shares memory with {what}[{i}].\n  Diagnosis: {_ALIAS}"
    for what, mine, theirs in (("params", step["params"], want["params"]),
                               ("bufs", bufs, want["bufs"])):
        for t, e in zip(mine, theirs):
            if type(t) is _TENSOR and type(e) is _TENSOR and (
                    t.dtype != e.dtype or t.shape != e.shape):
                return (f"a tensor of {what} has dtype {t.dtype} and shape "
                        f"{tuple(t.shape)}, expected {e.dtype}, {tuple(e.shape)}.")
    return None


def _bit_difference(where: str, expected: Any, actual: Any, hint: str | None) -> str:
    """The first differing element of two tensors that should be equal bit for
    bit, with all its digits (else the plain "expected X, got Y")."""
    msg = f"{where}: expected {fmt(expected)}, got {fmt(actual)}."
    if (type(expected) is _TENSOR and type(actual) is _TENSOR and expected.shape == actual.shape
            and expected.dtype == actual.dtype and expected.is_floating_point()):
        e, a = expected.detach(), actual.detach()
        diff = (e != a) & ~(e.isnan() & a.isnan())
        spots = diff.nonzero()
        if len(spots):
            pos = tuple(int(i) for i in spots[0])
            digits = 17 if e.dtype == torch.float64 else 9
            at = f"index {pos}" if pos else "the value"
            msg = (f"{where}: {int(diff.sum())} of {e.numel()} values differ; first at {at}: "
                   f"expected {float(e[pos]):.{digits}g}, got {float(a[pos]):.{digits}g} "
                   f"({e.dtype}).")
    return msg + (f"\n  Diagnosis: {hint}" if hint else "")


def _update_after(got: Run, expected: Run) -> str | None:
    """What differs: the op count, the values (first differing element and the
    mistake that explains it), or gradients changed in place."""
    if got.case.data.get("mode") == "ops":
        many = _per_tensor(got.result["many"])
        n = got.result["n_many"]
        if sum(many.values()) >= n:
            return (f"your update dispatched {sum(many.values())} per-tensor ops "
                    f"({_describe(many)}): that is a for-loop over the tensors.\n"
                    f"  Diagnosis: {_PER_TENSOR}")
        few, lots = sum(got.result["few"].values()), sum(got.result["many"].values())
        return (f"your update dispatched {few} ops for {got.result['n_few']} tensors and "
                f"{lots} for {n}: the number of operations must not grow with the number "
                f"of tensors (nor exceed one per line of the update).\n  Diagnosis: "
                f"{_PER_TENSOR}")
    step = got.result[0]
    mine, theirs = _values(got), _values(expected)
    if not _equal(mine, theirs):
        hint = _diagnose_update(got, expected)
        k = len(step["params"])
        for i, (t, e) in enumerate(zip(mine, theirs)):
            if not _equal([t], [e]):
                where = f"params[{i}]" if i < k else f"bufs[{i - k}]"
                return _bit_difference(where, e, t, hint)
    if not _quirk(got.case.kwargs) and not _equal(step["grads_in"], step["grads"]):
        return ("your update changed the gradients in place (grads = p.grad).\n"
                f"  Diagnosis: {_GRADS_CHANGED}")
    return None


def _diagnosis_fma(hint: str) -> Callable[[Run], str]:
    def text(run: Run) -> str:
        expected = run_case(FOREACH_SGD_UPDATE, FOREACH_SGD_UPDATE.reference, run.case)
        mine = [t for t in _values(run) if t is not None]
        n = _max_ulp(mine, [t for t in _values(expected) if t is not None])
        return f"your result is {n:.0f} ulp from torch's: {hint}"
    return text


_ZERO_START = ("your first-step buffers started from zeros: b = β·0 + (1 − τ)·g. Torch "
               "does not start from zeros: a missing buffer becomes a COPY of the "
               "gradient, `bufs[i] = grads[i].detach().clone()` (no dampening).")
_FIRST_DAMPENED = ("you applied dampening on the first step, b = (1 − τ)·g. A missing "
                   "buffer becomes a copy of the gradient, "
                   "`bufs[i] = grads[i].detach().clone()`; dampening only applies "
                   "from the second step on.")


def _zero_or_dampened(run: Run) -> str:
    """A zero start and a dampened first step give the same bits: the
    learner's source decides."""
    zeros = {"zeros", "zeros_like", "new_zeros"} & source_names(run.fn)
    return _ZERO_START if zeros else _FIRST_DAMPENED


def _wrong_update(bug: str) -> Callable[..., None]:
    """A learner's foreach_sgd_update with the classic mistake ``bug``."""
    def foreach_sgd_update(params: list[Tensor], grads: list[Tensor], bufs: list[Any], *,
                           lr: Any, momentum: float = 0.0, dampening: float = 0.0,
                           weight_decay: float = 0.0, nesterov: bool = False,
                           maximize: bool = False) -> None:
        if bug == "maximize_flips_update" and maximize:
            lr = -lr
        elif maximize:
            if bug == "grad_modified_in_place":
                torch._foreach_neg_(grads)
            else:
                grads = torch._foreach_neg(grads)
        if weight_decay != 0 and bug != "weight_decay_after_momentum":
            if bug == "rounding_weight_decay":
                grads = torch._foreach_add(grads, torch._foreach_mul(params, weight_decay))
            elif bug == "grad_modified_in_place":
                torch._foreach_add_(grads, params, alpha=weight_decay)
            else:
                grads = torch._foreach_add(grads, params, alpha=weight_decay)
        if momentum != 0:
            missing = any(b is None for b in bufs)
            if bug == "bufs_rebound" and missing:
                bufs = [g.detach().clone() for g in grads]
            elif bug == "restart_mixed_buffers" and missing or bug == "restart_all_buffers":
                for i, g in enumerate(grads):
                    bufs[i] = g.detach().clone()
            elif missing:
                for i, g in enumerate(grads):
                    if bufs[i] is None:
                        if bug == "zero_initial_buffer":
                            bufs[i] = torch.zeros_like(g).mul_(momentum).add_(
                                g, alpha=1 - dampening)
                        elif bug == "buffer_aliases_grad":
                            bufs[i] = g
                        else:
                            bufs[i] = g.detach().clone()
                    else:
                        bufs[i].mul_(momentum).add_(g, alpha=1 - dampening)
            elif bug == "buffer_not_in_place":
                bufs[:] = [b.mul(momentum).add(g, alpha=1 - dampening)
                           for b, g in zip(bufs, grads)]
            elif bug == "buffers_not_updated":
                new = torch._foreach_mul(bufs, momentum)
                torch._foreach_add_(new, grads, alpha=1 - dampening)
                grads = new if not nesterov else torch._foreach_add(grads, new, alpha=momentum)
                torch._foreach_add_(params, grads, alpha=-lr)
                return
            elif bug == "step_with_old_buffer":
                old = [b.clone() for b in bufs]
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads, alpha=1 - dampening)
                torch._foreach_add_(params, old, alpha=-lr)
                return
            else:
                if bug != "buffer_not_decayed":
                    torch._foreach_mul_(bufs, momentum)
                if bug == "rounding_momentum":
                    torch._foreach_add_(bufs, torch._foreach_mul(grads, 1 - dampening))
                elif bug == "ema_buffer":
                    torch._foreach_add_(bufs, grads, alpha=1 - momentum)
                elif bug == "buffer_ignores_dampening":
                    torch._foreach_add_(bufs, grads)
                else:
                    torch._foreach_add_(bufs, grads, alpha=1 - dampening)
            if nesterov and bug != "nesterov_ignored":
                if bug == "rounding_nesterov":
                    grads = torch._foreach_add(grads, torch._foreach_mul(bufs, momentum))
                else:
                    grads = torch._foreach_add(grads, bufs, alpha=momentum)
            else:
                grads = bufs
        if weight_decay != 0 and bug == "weight_decay_after_momentum":
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        if bug == "rounding_step":
            torch._foreach_add_(params, torch._foreach_mul(grads, -lr))
        elif bug == "param_not_in_place":
            torch._foreach_add(params, grads, alpha=-lr)
        elif bug == "moved_uphill":
            torch._foreach_add_(params, grads, alpha=lr)
        elif bug == "lr_missing":
            torch._foreach_sub_(params, grads)
        else:
            torch._foreach_add_(params, grads, alpha=-lr)
        if bug == "buffers_without_momentum" and momentum == 0:
            for i, g in enumerate(grads):
                bufs[i] = g.clone()
    return foreach_sgd_update


def _dampened_first_step(params: list[Tensor], grads: list[Tensor], bufs: list[Any], *,
                         lr: Any, momentum: float = 0.0, dampening: float = 0.0,
                         weight_decay: float = 0.0, nesterov: bool = False,
                         maximize: bool = False) -> None:
    """A learner's update whose missing buffers start dampened, (1 − τ)·g."""
    if maximize:
        grads = torch._foreach_neg(grads)
    if weight_decay != 0:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if momentum != 0:
        for i, g in enumerate(grads):
            if bufs[i] is None:
                bufs[i] = g.mul(1 - dampening)
            else:
                bufs[i].mul_(momentum).add_(g, alpha=1 - dampening)
        grads = torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs
    torch._foreach_add_(params, grads, alpha=-lr)


def _per_tensor_loop(params: list[Tensor], grads: list[Tensor], bufs: list[Any], *,
                     lr: Any, momentum: float = 0.0, dampening: float = 0.0,
                     weight_decay: float = 0.0, nesterov: bool = False,
                     maximize: bool = False) -> None:
    """Right values, but a for-loop over the tensors (no foreach kernel)."""
    for i, (p, grad) in enumerate(zip(params, grads)):
        g = -grad if maximize else grad
        if weight_decay != 0:
            g = g.add(p, alpha=weight_decay)
        if momentum != 0:
            if bufs[i] is None:
                bufs[i] = g.detach().clone()
            else:
                bufs[i].mul_(momentum).add_(g, alpha=1 - dampening)
            g = g.add(bufs[i], alpha=momentum) if nesterov else bufs[i]
        p.add_(g, alpha=-lr)


#: (label, n_tensors, dtype, state of the buffers, options). States: "first"
#: (all None), "later" (all tensors), "mixed" (some None).
_UPDATE_CASES: list[tuple[str, int, torch.dtype, str, dict[str, Any]]] = [
    ("plain, lr=0.1", 3, torch.float32, "first", {"lr": 0.1}),
    ("momentum=0.9, first step", 3, torch.float32, "first", {"lr": 0.1, "momentum": 0.9}),
    ("momentum=0.9, dampening=0.5, first step", 3, torch.float32, "first",
     {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("momentum=0.9, later step", 4, torch.float32, "later", {"lr": 0.1, "momentum": 0.9}),
    ("momentum=0.9, dampening=0.3, later step", 3, torch.float32, "later",
     {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("weight_decay=0.1", 3, torch.float32, "first", {"lr": 0.1, "weight_decay": 0.1}),
    ("momentum=0.9, weight_decay=0.1, later step", 3, torch.float32, "later",
     {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
    ("maximize, weight_decay=0.1", 3, torch.float32, "first",
     {"lr": 0.1, "weight_decay": 0.1, "maximize": True}),
    ("maximize, momentum=0.9, weight_decay=0.1, later step", 3, torch.float32, "later",
     {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1, "maximize": True}),
    ("nesterov, momentum=0.9, weight_decay=0.1, later step", 3, torch.float32, "later",
     {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1, "nesterov": True}),
    ("nesterov, momentum=0.9, later step", 3, torch.float32, "later",
     {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("mixed: 2 of 5 buffers are None, momentum=0.9, dampening=0.5", 5, torch.float32,
     "mixed", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("float64, momentum=0.9, dampening=0.1, weight_decay=0.01, later step", 3,
     torch.float64, "later",
     {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    ("0-d tensor lr=0.05, momentum=0.9, later step", 3, torch.float32, "later",
     {"lr": torch.tensor(0.05), "momentum": 0.9}),
]

_SHAPES = [(4, 3), (3,), (2, 2), (), (5,), (1, 4), (3, 1), (2,)]


def _fixed_inputs(n: int, dtype: torch.dtype, state: str, seed: int) -> tuple[list, list, list]:
    """The visible cases' tensors (from a fixed seed per case)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(shape: tuple[int, ...], scale: float = 1.0) -> Tensor:
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    shapes = [_SHAPES[i % len(_SHAPES)] for i in range(n)]
    params = [rand(s) for s in shapes]
    grads = [rand(s, 0.7) for s in shapes]
    bufs: list[Any] = {"first": [None] * n, "later": [rand(s, 0.5) for s in shapes],
                       "mixed": [None if i % 3 == 1 else rand(s, 0.5)
                                 for i, s in enumerate(shapes)]}[state]
    return params, grads, bufs


def _random_inputs(rng: np.random.Generator, dtype: torch.dtype,
                   state: str) -> tuple[list, list, list]:
    gen = generator(sub_seed(rng))
    shapes = [_shape(rng) for _ in range(int(rng.integers(3, 8)))]
    shapes[int(rng.integers(len(shapes)))] = ()              # a 0-d tensor

    def rand(s: tuple[int, ...], c: float = 1.0) -> Tensor:
        return (torch.randn(s, generator=gen, dtype=torch.float64) * c).to(dtype)

    params = [rand(s) for s in shapes]
    grads = [rand(s, 0.7) for s in shapes]
    bufs = {"first": [None] * len(shapes), "later": [rand(s, 0.5) for s in shapes],
            "mixed": [None if i % 2 else rand(s, 0.5) for i, s in enumerate(shapes)]}[state]
    return params, grads, bufs


#: Which flags each hidden scenario sets, and the buffers it starts from (none
#: yet, all, some); the values are drawn from the verification's seed.
_UPDATE_GRID = [
    ((), "first"), (("momentum", "dampening"), "first"),
    (("momentum", "dampening", "weight_decay"), "later"),
    (("momentum", "nesterov", "weight_decay", "maximize"), "later"),
    (("momentum", "nesterov"), "later"), (("weight_decay", "maximize"), "first"),
    (("momentum", "dampening"), "mixed"),
    (("momentum", "dampening", "weight_decay", "maximize"), "mixed"),
    (("momentum", "tensor lr"), "later"),
]


def _hyper(rng: np.random.Generator, flags: tuple[str, ...]) -> dict[str, Any]:
    lr = float(10.0 ** rng.uniform(-2.5, -0.5))
    hyper: dict[str, Any] = {"lr": torch.tensor(lr) if "tensor lr" in flags else lr}
    if "momentum" in flags:
        hyper["momentum"] = uniform(rng, 0.5, 0.99)
    if "dampening" in flags:
        hyper["dampening"] = uniform(rng, 0.05, 0.6)
    if "weight_decay" in flags:
        hyper["weight_decay"] = float(10.0 ** rng.uniform(-3, -0.5))
    for flag in ("nesterov", "maximize"):
        if flag in flags:
            hyper[flag] = True
    return hyper


def _later_step(rng: np.random.Generator | None, n: int, seed: int) -> tuple[list, list, list]:
    """Parameters, gradients and buffers of a later step (random shapes if ``rng``)."""
    gen = generator(seed)
    shapes = [_SHAPES[i % len(_SHAPES)] if rng is None else _shape(rng, 2) for i in range(n)]
    ps = [torch.randn(s, generator=gen) for s in shapes]
    return ps, [torch.randn(p.shape, generator=gen) for p in ps], \
        [torch.randn(p.shape, generator=gen) for p in ps]


def _update_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for flags, state in _UPDATE_GRID:
        kw = _hyper(rng, flags)
        for dtype in (torch.float32, torch.float64):
            args = _random_inputs(rng, dtype, state)
            yield Case("random steps", args, kw, data={
                "steps": int(rng.integers(2, 5)), "decay": uniform(rng, 0.5, 1.0),
                "shift": uniform(rng, -0.05, 0.05)})
    few, many = int(rng.integers(3, 9)), int(rng.integers(30, 60))
    for extra in ({"weight_decay": 0.1, "maximize": True}, {"nesterov": True}):
        kw = dict(lr=uniform(rng, 0.01, 0.2), momentum=uniform(rng, 0.5, 0.99), **extra)
        small = _later_step(rng, few, sub_seed(rng))
        yield Case("op count", _later_step(rng, many, sub_seed(rng)), kw,
                   data={"mode": "ops", "few": small})


FOREACH_SGD_UPDATE = Exercise(
    grade_id="test_foreach_sgd_update",
    name="foreach_sgd_update",
    reference=foreach_sgd_update,
    cases=[Case(label, _fixed_inputs(n, dtype, state, seed), opts,
                data={"steps": 1, "decay": 1.0, "shift": 0.0})
           for seed, (label, n, dtype, state, opts) in enumerate(_UPDATE_CASES)] + [
        Case("op count: 12 tensors, every buffer present", _later_step(None, 12, 99),
             {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "nesterov": True},
             data={"mode": "ops", "few": _later_step(None, 3, 98)})],
    call=_update_flow,
    observe=_update_observe,
    show=lambda run: run.result[0]["params"] if type(run.result) is _LIST else run.result,
    passed="foreach_sgd_update: 14 cases (every option, first/later/mixed buffers, "
           "float32/float64, tensor lr) equal torch's update bit for bit; buffers filled "
           "and updated in place, grads left alone, a constant number of foreach calls",
    hidden=_update_hidden,
    rules=[_update_contract],
    after=[_update_after],
    diagnose=lambda got, expected: None if got.case.data.get("mode") == "ops"
    else _diagnose_update(got, expected),
    mistakes=[
        Mistake("rounding_step", _diagnosis_fma(
            "your parameter update rounds twice (`p - lr * d` or "
            "`_foreach_add(params, _foreach_mul(d, -lr))`): use "
            "`torch._foreach_add_(params, d, alpha=-lr)`, one rounding (a "
            "fused multiply-add on this CPU)."), _wrong_update("rounding_step")),
        Mistake("rounding_weight_decay", _diagnosis_fma(
            "your weight decay rounds twice (`g + weight_decay * p` or a "
            "`_foreach_mul` then `_foreach_add`): use `torch._foreach_add(grads, "
            "params, alpha=weight_decay)`, one rounding."), _wrong_update("rounding_weight_decay")),
        Mistake("rounding_momentum", _diagnosis_fma(
            "your buffer update rounds the gradient term separately "
            "(`momentum * b + (1 - dampening) * g`): use "
            "`torch._foreach_mul_(bufs, momentum)` then "
            "`torch._foreach_add_(bufs, grads, alpha=1 - dampening)`."),
            _wrong_update("rounding_momentum")),
        Mistake("rounding_nesterov", _diagnosis_fma(
            "your nesterov direction rounds twice (`g + momentum * b`): use "
            "`torch._foreach_add(grads, bufs, alpha=momentum)`."),
            _wrong_update("rounding_nesterov")),
        Mistake("zero_initial_buffer", _zero_or_dampened, _wrong_update("zero_initial_buffer")),
        Mistake("dampening_on_first_step", _FIRST_DAMPENED, _dampened_first_step),
        Mistake("maximize_flips_update", (
            "you implemented maximize by flipping the sign of lr. Torch negates "
            "the GRADIENT first (`grads = torch._foreach_neg(grads)`), then adds "
            "weight decay: flipping lr makes weight decay grow the weights."),
            _wrong_update("maximize_flips_update")),
        Mistake("weight_decay_after_momentum", (
            "you added weight decay after the momentum (decoupled, like "
            "SGDW). Torch folds it into the gradient BEFORE the buffer: "
            "`grads = torch._foreach_add(grads, params, alpha=weight_decay)` first."),
            _wrong_update("weight_decay_after_momentum")),
        Mistake("nesterov_ignored", (
            "you ignored nesterov: the direction is d = g + β·b "
            "(`torch._foreach_add(grads, bufs, alpha=momentum)`), not b."),
            _wrong_update("nesterov_ignored")),
        Mistake("step_with_old_buffer", (
            "you stepped with the OLD buffers: update the buffers first, then "
            "step with the new ones."), _wrong_update("step_with_old_buffer")),
        Mistake("buffer_ignores_dampening", (
            "you ignored dampening: from the second step on "
            "b = β·b + (1 − τ)·g, `torch._foreach_add_(bufs, grads, alpha=1 - dampening)`."),
            _wrong_update("buffer_ignores_dampening")),
        Mistake("ema_buffer", (
            "you scaled the gradient by (1 − momentum); torch uses (1 − dampening): "
            "b = β·b + (1 − τ)·g."), _wrong_update("ema_buffer")),
        Mistake("buffer_not_decayed", (
            "you forgot to multiply the old buffers by momentum: "
            "`torch._foreach_mul_(bufs, momentum)` before adding the gradients."),
            _wrong_update("buffer_not_decayed")),
        Mistake("restart_mixed_buffers", (
            "when SOME buffers are None you restarted ALL of them from the "
            "gradients. Torch clones only the missing ones (one by one) and "
            "updates the others: `if buf is None: bufs[i] = g.detach().clone()`"
            " else `buf.mul_(momentum).add_(g, alpha=1 - dampening)`."),
            _wrong_update("restart_mixed_buffers")),
        Mistake("restart_all_buffers", (
            "you restarted every buffer from the gradient: clone only where the "
            "buffer is None; existing buffers are updated, b = β·b + (1 − τ)·g."),
            _wrong_update("restart_all_buffers")),
        Mistake("moved_uphill", (
            "your update moved the parameters uphill: add d with alpha=-lr, "
            "`torch._foreach_add_(params, d, alpha=-lr)`."), _wrong_update("moved_uphill")),
        Mistake("lr_missing", "you forgot the learning rate: `torch._foreach_add_(params, "
                "d, alpha=-lr)`.", _wrong_update("lr_missing")),
        Mistake("param_not_in_place", (
            "the parameters did not change. `torch._foreach_add(params, "
            "...)` (no underscore) returns NEW tensors; update them in "
            "place with `torch._foreach_add_(params, d, alpha=-lr)`."),
            _wrong_update("param_not_in_place")),
        Mistake("buffers_not_updated", (
            "your buffers did not change: `torch._foreach_mul(bufs, m)` (no "
            "underscore) returns new tensors. Update them in place with "
            "`torch._foreach_mul_` and `torch._foreach_add_`."),
            _wrong_update("buffers_not_updated")),
        # Right values, wrong behaviour: diagnosed by the contract rules.
        Mistake("buffer_aliases_grad", _ALIAS, _wrong_update("buffer_aliases_grad")),
        Mistake("bufs_rebound", _REBOUND, _wrong_update("bufs_rebound")),
        Mistake("buffer_not_in_place", _NOT_IN_PLACE, _wrong_update("buffer_not_in_place")),
        Mistake("grad_modified_in_place", _GRADS_CHANGED, _wrong_update("grad_modified_in_place")),
        Mistake("buffers_without_momentum", _NO_MOMENTUM,
                _wrong_update("buffers_without_momentum")),
        Mistake("per_tensor_loop", _PER_TENSOR, _per_tensor_loop),
    ],
    forbidden=FORBIDDEN,
)



# --------------------------------------------------------------------------
# Exercise 8.4: ForeachSGD
# --------------------------------------------------------------------------

_TORCH_SGD = torch.optim.SGD          # captured before any answer key is disabled
_COURSE_SGD = CourseSGD
_OPTIMIZER = torch.optim.Optimizer
_SYS_MODULES = sys.modules
_DICT = dict

#: The calls of the notebook's ``foreach_sgd_update`` during one step (list
#: lengths), while a run records them; None when the namespace has none.
_RECORDING: dict[str, Any] = {"calls": None}


class ForeachSGD(_TORCH_SGD):
    """The oracle: ``torch.optim.SGD(foreach=True)``; while calls are recorded
    it notes the calls of ``foreach_sgd_update`` the exercise asks for (one per
    (device, dtype) group of each param group's parameters with a gradient)."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, foreach=True, **kwargs)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        calls = _RECORDING["calls"]
        if calls is not None:
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                calls.extend(len(i) for i in group_by_device_and_dtype(params).values())
        super().step()
        return loss


@contextmanager
def _recording_calls() -> Iterator[None]:
    """Count the calls of the notebook's ``foreach_sgd_update`` (in ``__main__``:
    the kernel's namespace, or the grading child's)."""
    main = _SYS_MODULES.get("__main__")
    ns = getattr(main, "__dict__", None)
    real = ns.get("foreach_sgd_update") if type(ns) is _DICT else None
    if not callable(real):
        yield
        return
    calls: list[int] = []

    def counting(params: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(params) if type(params) in (list, tuple) else -1)
        return real(params, *args, **kwargs)

    ns["foreach_sgd_update"] = counting
    _RECORDING["calls"] = calls
    try:
        yield
    finally:
        ns["foreach_sgd_update"] = real
        _RECORDING["calls"] = None


def _step_calls() -> Any:
    """The calls recorded since the last step (sorted), and start afresh."""
    calls = _RECORDING["calls"]
    if calls is None:
        return None
    out = sorted(calls)
    calls.clear()
    return out


def _state_of(opt: Any, params: list[Tensor]) -> list[Any]:
    """Per parameter: "no state", or its state's keys and momentum buffer."""
    out = []
    for p in params:
        if p not in opt.state:
            out.append("no state")
            continue
        st = opt.state[p]
        keys = [k if type(k) is str else type_name(k) for k in st]
        out.append([sorted(keys), snap(st.get("momentum_buffer"))])
    return out


_STEPS = 4
_LATE = 2       # step index at which the first layer's bias gets its first gradient
_LR_CHANGE = 3  # step index before which every group's lr is halved


def _scenario() -> tuple[torch.nn.Module, Tensor, Tensor, list[dict[str, Any]]]:
    """An MLP (float32) plus a float64 vector and a 0-d float32 parameter, in two
    param groups (the second with its own lr)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mlp = torch.nn.Sequential(torch.nn.Linear(10, 5), torch.nn.ReLU(),
                                  torch.nn.Linear(5, 1))
        mlp.extra = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
        mlp.scale = torch.nn.Parameter(torch.tensor(0.5))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 10, generator=gen), torch.randn(16, 1, generator=gen)
    groups = [{"params": list(mlp[0].parameters()) + list(mlp[2].parameters())},
              {"params": [mlp.extra, mlp.scale], "lr": 0.02}]
    return mlp, x, y, groups


def _loss(mlp: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    pred = mlp(x) * mlp.scale
    return torch.nn.functional.mse_loss(pred, y) + ((mlp.extra - 1) ** 2).sum()


def _run_fixed(cls: Any, case: Case) -> dict[str, Any]:
    """The visible scenario: 4 explicit steps, a late first gradient, an lr change."""
    mlp, x, y, groups = _scenario()
    opt = cls(groups, **case.kwargs)
    params = [p for g in groups for p in g["params"]]
    steps = []
    for t in range(_STEPS):
        opt.zero_grad()
        _loss(mlp, x, y).backward()
        if t < _LATE:
            mlp[0].bias.grad = None
        if t == _LR_CHANGE:
            for g in opt.param_groups:
                g["lr"] = g["lr"] * 0.5
        _step_calls()
        opt.step()
        steps.append({"params": [snap(p) for p in params], "state": _state_of(opt, params),
                      "calls": _step_calls()})
    return {"steps": steps}


def _model(seed: int) -> torch.nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(6, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))


def _run_random(cls: Any, case: Case) -> dict[str, Any]:
    """A hidden scenario: a random model, a float64 extra parameter in the first
    group, a second group with its own lr, 5 steps through a closure."""
    d = case.data
    gen = generator(d["seed"])
    net = _model(d["model_seed"])
    x, y = torch.randn(d["batch"], 6, generator=gen), torch.randn(d["batch"], 2, generator=gen)
    extra = torch.nn.Parameter(torch.randn(d["extra_shape"], generator=gen, dtype=torch.float64))
    other = torch.nn.Parameter(torch.randn(d["other_shape"], generator=gen))
    opt = cls([{"params": list(net.parameters()) + [extra]},
               {"params": [other], "lr": d["other_lr"]}], **case.kwargs)
    params = list(net.parameters()) + [extra, other]
    steps = []
    for t in range(5):
        def closure(t: int = t, late: int = d["late"]) -> Tensor:
            opt.zero_grad()
            loss = (torch.nn.functional.mse_loss(net(x), y) + ((extra - 1) ** 2).sum()
                    + (other ** 2).sum() * 0.5)
            loss.backward()
            if t < late:
                net[0].bias.grad = None       # its first gradient comes late
            return loss
        closure = isolated(closure)
        if t == d["change"]:
            for g in opt.param_groups:
                g["lr"] = g["lr"] * d["factor"]
        _step_calls()
        loss = opt.step(closure)
        steps.append({"params": [snap(p) for p in params], "loss": snap(loss),
                      "calls": _step_calls()})
    last = opt.step()
    return {"steps": steps, "end": [len(opt.state), _state_of(opt, params), last is None]}


def _run_loaded(cls: Any, case: Case) -> dict[str, Any]:
    """Load a state dict (torch's format), then step on."""
    d = case.data
    net = _model(d["model_seed"])
    gen = generator(d["seed"])
    x, y = torch.randn(d["batch"], 6, generator=gen), torch.randn(d["batch"], 2, generator=gen)
    opt = cls(net.parameters(), **case.kwargs)
    sgen = generator(d["state_seed"])
    opt.load_state_dict({
        "state": {i: {"momentum_buffer": torch.randn(p.shape, generator=sgen)}
                  for i, p in enumerate(net.parameters()) if i != d["skip"]},
        "param_groups": [{**d["group"], "dampening": 0.0, "nesterov": True, "maximize": False,
                          "foreach": None, "differentiable": False, "fused": None,
                          "params": [0, 1, 2, 3]}]})
    for _ in range(d["steps"]):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return {"end": [[snap(p) for p in net.parameters()], _state_of(opt, list(net.parameters()))]}


def _run_closure(cls: Any, case: Case) -> dict[str, Any]:
    """step(closure) under no_grad: the closure must run once, with gradients."""
    mlp, x, y, groups = _scenario()
    opt = cls(groups, **case.kwargs)
    calls: list[bool] = []

    def closure() -> Tensor:
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = (torch.nn.functional.mse_loss(mlp(x) * mlp.scale, y)
                + ((mlp.extra - 1) ** 2).sum())          # _loss, inline: see isolated
        if loss.requires_grad:
            loss.backward()
        else:  # gradients disabled: keep the step well defined
            for p in mlp.parameters():
                p.grad = torch.zeros_like(p)
        return loss

    with torch.no_grad():
        out = opt.step(isolated(closure))
    return {"closure_calls": calls, "returned": out}


def _run_ops(cls: Any, case: Case) -> dict[str, Any]:
    """The ops a later step dispatches, many parameters of one dtype."""
    gen = generator(case.data["seed"])
    params = []
    for shape in case.data["shapes"]:
        p = torch.nn.Parameter(torch.randn(shape, generator=gen))
        p.grad = torch.randn(shape, generator=gen) * 1e-3
        params.append(p)
    opt = cls(params, **case.kwargs)
    opt.step()
    return {"counts": count_ops(opt.step, include_views=False), "n": len(params)}


_RUNS = {"fixed": _run_fixed, "random": _run_random, "loaded": _run_loaded,
         "closure": _run_closure, "ops": _run_ops}


def _class_flow(cls: Any, case: Case) -> dict[str, Any]:
    if not isinstance(cls, type):
        return {"kind": "not a class", "type": type(cls).__name__}
    if not issubclass(cls, _OPTIMIZER):
        return {"kind": "not an optimizer"}
    mode = case.data["mode"]
    with _recording_calls():
        out = _RUNS[mode](cls, case)
    return {"kind": mode, "base": issubclass(cls, (_COURSE_SGD, _TORCH_SGD)), **out}


def _class_observe(run: Run) -> Any:
    r = run.result
    kind = r["kind"]
    if kind in ("not a class", "not an optimizer"):
        return [kind]
    out: list[Any] = [kind, r["base"]]
    if kind in ("fixed", "random"):
        out.append([[s.get("loss"), s["params"], s.get("state"), s["calls"]] for s in r["steps"]])
    if kind in ("random", "loaded"):
        out.append(r["end"])
    if kind == "closure":
        ret = r["returned"]
        out += [r["closure_calls"], snap(ret) if type(ret) in (_TENSOR,) else type_name(ret)]
    if kind == "ops":
        out.append(sum(_per_tensor(r["counts"]).values()) < r["n"])
    return out


def _class_contract(got: Run, expected: Run) -> str | None:
    r = got.result
    if r["kind"] == "not a class":
        return (f"check_foreach_sgd_class expects your class `ForeachSGD` itself, got "
                f"{r['type']}: call check_foreach_sgd_class(ForeachSGD) without parentheses.")
    if r["kind"] == "not an optimizer":
        return ("`ForeachSGD` must subclass `SGD` (course.optim.SGD, itself a "
                "torch.optim.Optimizer): `class ForeachSGD(SGD):` keeps the constructor, "
                "param_groups, state and state_dict.")
    if not r["base"]:
        return ("`ForeachSGD` must subclass `SGD` (course.optim.SGD): `class "
                "ForeachSGD(SGD):` keeps its constructor, param_groups, state and "
                "state_dict; only `step` is yours.")
    if r["kind"] == "closure":
        calls, out = r["closure_calls"], r["returned"]
        if calls != [True]:
            return (f"the closure was called {len(calls)} times"
                    + ("" if not calls or all(calls) else " with gradients disabled")
                    + f", expected once with gradients enabled.\n  Diagnosis: {_ENABLE_GRAD}")
        if type(out) is not _TENSOR:
            return (f"step(closure) returned {type(out).__name__}, expected the closure's "
                    f"loss.\n  Diagnosis: {_RETURN_LOSS}")
    if r["kind"] == "ops":
        per_tensor = _per_tensor(r["counts"])
        if sum(per_tensor.values()) >= r["n"]:
            return (f"your step dispatched {sum(per_tensor.values())} per-tensor ops "
                    f"({_describe(per_tensor)}): it updates the tensors one by one.\n  "
                    f"Diagnosis: {_NOT_SUPER}")
    return None


_FIRST_GROUP = 4        # parameters of the visible scenario's first param group


def _class_steps(got: Run, expected: Run) -> str | None:
    """What differs, step by step: parameters (with the likely cause), the
    state, the calls of foreach_sgd_update."""
    if got.result["kind"] != "fixed":
        return None
    momentum = got.case.kwargs.get("momentum", 0)
    for t, (mine, theirs) in enumerate(zip(got.result["steps"], expected.result["steps"])):
        step = f"step {t + 1}"
        p_o, p_t = mine["params"], theirs["params"]
        bad = [i for i, (a, b) in enumerate(zip(p_o, p_t)) if not _equal([a], [b])]
        if bad:
            n_ulp = _max_ulp(p_o, p_t)
            if n_ulp <= _ULP_HINT:
                hint = (f"your parameters agree with torch's to {n_ulp:.0f} ulp but not "
                        "bit for bit: " + _FMA)
            elif t == _LR_CHANGE:
                hint = _LR_CHANGED
            elif t == _LATE and momentum != 0:
                hint = _LATE_FIRST
            elif all(i >= _FIRST_GROUP for i in bad):
                hint = _SECOND_GROUP
            else:
                hint = None
            i = bad[0]
            return _bit_difference(f"{step}, parameter {i}", p_t[i], p_o[i], hint)
        s_o, s_t = mine["state"], theirs["state"]
        have_o = [i for i, s in enumerate(s_o) if s != "no state"]
        have_t = [i for i, s in enumerate(s_t) if s != "no state"]
        if momentum == 0 and have_o:
            return (f"{step}: with momentum = 0 torch keeps opt.state empty, yours has "
                    f"{len(have_o)} entries.\n  Diagnosis: {_STATE_EMPTY}")
        if have_o != have_t:
            return (f"{step}: state entries for parameters {have_o}, torch has {have_t}.\n"
                    "  Diagnosis: after the update write every buffer back, "
                    "`self.state[p]['momentum_buffer'] = buf`, only for parameters that "
                    "had a gradient.")
        for i in have_t:
            (keys_o, b_o), (keys_t, b_t) = s_o[i], s_t[i]
            if keys_o != keys_t:
                return (f"{step}: state of parameter {i} has keys {keys_o}, expected "
                        f"{keys_t}.\n  Diagnosis: {_ONE_KEY}")
            if b_o is None:
                return (f"{step}: state[p]['momentum_buffer'] of parameter {i} is None.\n"
                        f"  Diagnosis: {_BUFFERS_KEPT}")
            if not _equal([b_o], [b_t]):
                return _bit_difference(f"{step}, momentum_buffer of parameter {i}", b_t,
                                       b_o, None)
        if mine["calls"] != theirs["calls"]:
            return (f"{step}: your step called foreach_sgd_update on lists of "
                    f"{mine['calls']} tensors, expected {theirs['calls']}.\n  Diagnosis: "
                    "call foreach_sgd_update once per (device, dtype) group of each param "
                    "group (`group_by_device_and_dtype` of the parameters that have a "
                    "gradient), not per tensor and not on a mixed list.")
    return None


def _class_on_error(case: Case, exc: BaseException) -> str | None:
    text = str(exc)
    if "leaf Variable" in text or "requires grad" in text:
        return _NO_GRAD
    if "NoneType" in text:
        return _SKIP_NONE
    return None


_LR_CHANGED = ("everything matched until the learning rate changed (the check halves "
               "group['lr'] before this step, as a scheduler does): read `group['lr']` (and "
               "every other option) from the param group at EVERY step; don't store it in "
               "__init__.")
_LATE_FIRST = ("the first layer's bias gets its FIRST gradient at this step while the other "
               "buffers exist: it needs a fresh buffer (a clone of its gradient) and the "
               "others a normal update.")
_SECOND_GROUP = ("only the second param group (its own lr = 0.02) is wrong: loop over "
                 "`self.param_groups` and take lr, momentum, ... from each `group`, not "
                 "from self.defaults.")
_STATE_EMPTY = ("reading `self.state[p]` creates an entry (it is a defaultdict): only touch "
                "the state when momentum != 0.")
_ONE_KEY = ("torch's SGD stores exactly one entry per parameter, "
            "`state[p]['momentum_buffer']` (that is what state_dict and load_state_dict "
            "exchange).")
_BUFFERS_KEPT = ("foreach_sgd_update fills the list you pass it: keep that list (`bufs = "
                 "[...]`, then call, then store `bufs[k]`), don't pass a copy or store the "
                 "old entries.")
_ENABLE_GRAD = ("`if closure is not None:` then `with torch.enable_grad(): loss = closure()`"
                ", before the update.")
_RETURN_LOSS = "`return loss` (None when there is no closure)."
_NOT_SUPER = ("call your foreach_sgd_update once per (device, dtype) group (not "
              "super().step(), which is the for-loop).")
_NO_GRAD = ("run the update without autograd: decorate step with `@torch.no_grad()` (the "
            "closure, if any, runs inside `with torch.enable_grad():`).")
_SKIP_NONE = ("skip parameters whose .grad is None (here the first layer's bias has no "
              "gradient in steps 1–2): "
              "`params = [p for p in group['params'] if p.grad is not None]`.")


def _wrong_class(bug: str, update: Callable[..., None] | None = None) -> type:
    """A learner's ForeachSGD with the classic mistake ``bug`` (``update``: its
    foreach_sgd_update, by default a right one)."""
    update = update or _wrong_update("")

    class ForeachSGD(CourseSGD):
        def __init__(self, params: Any, **kwargs: Any) -> None:
            super().__init__(params, **kwargs)
            self._lrs = [g["lr"] for g in self.param_groups]

        def step(self, closure: Any = None) -> Any:
            if bug == "per_tensor_step":
                return super().step(closure)
            if bug == "no_grad_missing":
                return self._step(closure)
            with torch.no_grad():
                return self._step(closure)

        def _step(self, closure: Any) -> Any:
            loss = None
            if closure is not None:
                if bug == "closure_without_enable_grad":
                    loss = closure()
                else:
                    with torch.enable_grad():
                        loss = closure()
            for k, group in enumerate(self.param_groups):
                opts = self.defaults if bug == "cached_settings" else group
                lr = self._lrs[k] if bug == "cached_lr" else opts["lr"]
                params = [p for p in group["params"]
                          if bug == "grad_none_not_skipped" or p.grad is not None]
                momentum = opts["momentum"]
                for idx in group_by_device_and_dtype(params).values():
                    ps = [params[i] for i in idx]
                    if bug == "state_without_momentum":
                        for p in ps:
                            self.state[p]
                    bufs = [self.state[p].get("momentum_buffer") if momentum != 0 else None
                            for p in ps]
                    update(ps, [p.grad for p in ps],
                           list(bufs) if bug == "buffer_not_saved" else bufs, lr=lr,
                           momentum=momentum, dampening=opts["dampening"],
                           weight_decay=opts["weight_decay"], nesterov=opts["nesterov"],
                           maximize=opts["maximize"])
                    if momentum != 0:
                        for p, buf in zip(ps, bufs):
                            self.state[p]["momentum_buffer"] = buf
                            if bug == "extra_state_keys":
                                self.state[p]["step"] = 1
            return None if bug == "loss_not_returned" else loss

    return ForeachSGD


#: torch's own SGD test inputs (common_optimizers.py) plus two extras.
_CLASS_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("default", {}),
    ("lr=0.01", {"lr": 1e-2}),
    ("tensor lr", {"lr": torch.tensor(0.001)}),
    ("weight_decay=0.5", {"weight_decay": 0.5}),
    ("momentum=0.9", {"momentum": 0.9}),
    ("maximize, weight_decay=0.1", {"weight_decay": 0.1, "maximize": True}),
    ("momentum=0.9, dampening=0.5", {"momentum": 0.9, "dampening": 0.5}),
    ("momentum=0.9, weight_decay=0.1", {"momentum": 0.9, "weight_decay": 0.1}),
    ("nesterov, weight_decay=0.1", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("nesterov", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("maximize, momentum, dampening, weight_decay",
     {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01, "maximize": True}),
]


def _class_hidden(rng: np.random.Generator) -> Iterator[Case]:
    u = lambda low, high: uniform(rng, low, high)
    configs = [{"lr": u(0.01, 0.1)},
               {"lr": u(0.01, 0.1), "momentum": u(0.5, 0.95), "dampening": u(0.05, 0.3)},
               {"lr": u(0.01, 0.05), "momentum": u(0.8, 0.99), "nesterov": True,
                "weight_decay": u(0.001, 0.05)},
               {"lr": u(0.01, 0.1), "momentum": u(0.3, 0.7), "maximize": True,
                "weight_decay": u(0.01, 0.2)},
               {"lr": u(0.05, 0.15), "momentum": u(0.8, 0.99), "dampening": u(0.1, 0.5),
                "weight_decay": u(0.005, 0.05)}]
    seed, batch = sub_seed(rng), int(rng.integers(8, 17))
    for kw in configs:
        yield Case("a random model", (), kw, data={
            "mode": "random", "seed": seed, "batch": batch, "model_seed": sub_seed(rng),
            "extra_shape": _shape(rng), "other_shape": _shape(rng),
            "other_lr": u(0.005, 0.05), "late": int(rng.integers(1, 3)),
            "change": int(rng.integers(2, 5)), "factor": u(0.2, 0.8)})
    yield Case("a loaded state dict", (), {"lr": u(0.1, 1.0)}, data={
        "mode": "loaded", "seed": seed, "batch": batch, "model_seed": sub_seed(rng),
        "state_seed": sub_seed(rng), "skip": int(rng.integers(4)),
        "group": {"lr": u(0.01, 0.1), "momentum": u(0.5, 0.95),
                  "weight_decay": u(0.001, 0.05)},
        "steps": int(rng.integers(2, 5))})
    yield Case("many parameters", (), {"lr": u(0.001, 0.1), "momentum": u(0.5, 0.95),
                                       "weight_decay": u(0.001, 0.05)},
               data={"mode": "ops", "seed": sub_seed(rng),
                     "shapes": [_shape(rng, 2) for _ in range(int(rng.integers(30, 50)))]})


def _require_foreach_class(cls: Any) -> None:
    """The learner's class itself, not an instance or a call's result."""
    if not isinstance(cls, type):
        raise CheckFailure("check_foreach_sgd_class expects your class `ForeachSGD` itself, "
                           f"got {type(cls).__name__}: call "
                           "check_foreach_sgd_class(ForeachSGD) without parentheses.")


FOREACH_SGD = Exercise(
    grade_id="test_ForeachSGD",
    name="ForeachSGD",
    check="foreach_sgd_class",
    require=_require_foreach_class,
    reference=ForeachSGD,
    cases=[Case(label, (), opts, data={"mode": "fixed"}) for label, opts in _CLASS_CONFIGS] + [
        Case("step(closure)", (), {"lr": 0.01, "momentum": 0.9}, data={"mode": "closure"}),
        Case("op count: 40 tensors, momentum=0.9, later step", (),
             {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01},
             data={"mode": "ops", "seed": 0, "shapes": [(2, 2), (2,)] * 20})],
    call=_class_flow,
    observe=_class_observe,
    passed="ForeachSGD: 11 option sets × 4 steps equal torch.optim.SGD(foreach=True) bit for "
           "bit (2 param groups, float32 + float64, a late first gradient, an lr change); "
           "state holds only momentum_buffer; step(closure) returns the loss; one foreach "
           "call per op",
    hidden=_class_hidden,
    rules=[_class_contract],
    after=[_class_steps],
    on_error=_class_on_error,
    show=lambda run: run.result.get("returned", run.result["kind"]),
    mistakes=[
        Mistake("cached_lr", _LR_CHANGED, _wrong_class("cached_lr")),
        Mistake("restart_mixed_buffers", _LATE_FIRST,
                _wrong_class("", _wrong_update("restart_mixed_buffers"))),
        Mistake("cached_settings", _SECOND_GROUP, _wrong_class("cached_settings")),
        Mistake("state_without_momentum", _STATE_EMPTY, _wrong_class("state_without_momentum")),
        Mistake("extra_state_keys", _ONE_KEY, _wrong_class("extra_state_keys")),
        Mistake("buffer_not_saved", _BUFFERS_KEPT, _wrong_class("buffer_not_saved")),
        Mistake("closure_without_enable_grad", _ENABLE_GRAD,
                _wrong_class("closure_without_enable_grad")),
        Mistake("loss_not_returned", _RETURN_LOSS, _wrong_class("loss_not_returned")),
        Mistake("per_tensor_step", _NOT_SUPER, _wrong_class("per_tensor_step")),
        Mistake("no_grad_missing", _NO_GRAD, _wrong_class("no_grad_missing")),
        Mistake("grad_none_not_skipped", _SKIP_NONE, _wrong_class("grad_none_not_skipped")),
        Mistake("rounding_step", _FMA, _wrong_class("", _wrong_update("rounding_step"))),
    ],
    forbidden=FORBIDDEN,
)



# ----------------------------------------------------------------- predict, then run

#: Module-level functions that compute right answers (besides the questions'
#: answers): neutralized in the grading child (course.grading.probes.answer_keys).
ANSWER_KEYS = ["_later_step_ops"]

_TORCH_SGD = torch.optim.SGD
_LINEAR = torch.nn.Linear


def _later_step_ops(**options: Any) -> Counter:
    """The ops of a later step (buffers exist) of torch.optim.SGD(lr=0.01,
    momentum=0.9, **options) on lesson 8's 50 x Linear(64, 64)."""
    params = params_with_grads(lambda: [_LINEAR(64, 64) for _ in range(50)])
    opt = _TORCH_SGD(params, lr=0.01, momentum=0.9, **options)
    opt.step()
    return count_ops(opt.step)


PREDICT_STEP_OPS = Question(
    grade_id="test_predict_step_ops",
    name="predict_step_ops",
    answer=lambda: sum(_later_step_ops(foreach=False).values()),
    unit="ops",
    why=("a later momentum step runs three ops per tensor, buf.mul_(momentum), "
         "buf.add_(g, alpha=1 - dampening) and p.add_(buf, alpha=-lr) (g itself is p.grad, "
         "no op): 3 × 100 tensors = 300 ops, each paying the fixed cost of a call."),
)

#: The choices of PREDICT_DEFAULT_PATH.
PATHS = ("the for-loop", "foreach", "fused")


def _default_path() -> str:
    """Which path torch.optim.SGD takes on CPU tensors without foreach= or fused=."""
    ops = _later_step_ops()
    if any(name.startswith("_fused") for name in ops):
        return PATHS[2]
    return PATHS[1] if any(name.startswith("_foreach") for name in ops) else PATHS[0]


PREDICT_DEFAULT_PATH = Question(
    grade_id="test_predict_default_path",
    name="predict_default_path",
    answer=_default_path,
    choices=PATHS,
    why=("with foreach=None and fused=None, torch picks foreach only when every parameter "
         "is on a device of its foreach list (CUDA, XPU, MTIA, a custom backend), never for "
         "CPU tensors, whose foreach ops just loop over the tensors in C++: on a CPU the "
         "default is the for-loop (300 ops here). Fused is never the default for SGD: you "
         "ask for it with fused=True."),
)


#: The graded cells, in notebook order.
EXERCISES = [PREDICT_STEP_OPS, PREDICT_DEFAULT_PATH, STEP_OP_COUNTS, GROUP_BY_DEVICE_AND_DTYPE,
             FOREACH_SGD_UPDATE, FOREACH_SGD]
