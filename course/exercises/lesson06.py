r"""Exercise specs of 06-optimizer-class: the ``torch.optim.Optimizer`` contract,
ending with a hand-written ``class SGD(torch.optim.Optimizer)`` that matches
``torch.optim.SGD`` bit for bit.

- ``decay_groups(model, weight_decay)`` -- two parameter groups: weights
  (``p.ndim >= 2``) with weight decay, everything else without.
- ``get_momentum_buffer(optimizer, param)`` -- reads ``optimizer.state``
  without creating entries in it.
- ``SGD`` (four checks of one class):

  * ``check_sgd_init`` -- the constructor: torch's signature, defaults,
    ``param_groups`` and validation (same exception types, messages, order);
  * ``check_sgd_step`` -- ``step``: trajectories compared bit for bit in
    scenarios that each expose one classic mistake (the names are those of
    :mod:`course.exercises.sgd_mistakes` where the mistake is in the update
    rule, lesson-local for the mistakes of a class: cached settings, a global
    step counter, ...);
  * ``check_sgd_state`` -- ``step(closure)``, the state layout, ``state_dict``
    round trips, ``StepLR``, ``add_param_group``, ``zero_grad``, ``deepcopy``;
  * ``check_sgd_class`` -- all of the above plus a grid over every option on
    the MLP in float32 and float64, and ``foreach=True`` runs that compare
    ``p.grad`` too.

The class protocols are registered flows (``call=``): each case's flow builds
its own tensors, runs the class, and returns plain values (traces of tensors,
strings, numbers). In the check the reference is ``torch.optim.SGD``; the other
side of a state-dict round trip is :class:`CorrectSGD` (torch's for-loop
algorithm, bit-identical to it), so that the flows also run while grading, when
torch's SGD is disabled.

Hidden cases are drawn from each verification's seed: model sizes and weights,
weight decays, tensor shapes and values, every hyperparameter (including the
numbers the constructor's error messages show), step counts, which steps lose a
gradient, when the lr changes, scheduler settings and loaded state dicts.
"""

from __future__ import annotations

import builtins
import collections
import copy
import functools
import inspect
import io
import itertools
import math
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch._dynamo
from torch import Tensor, nn

from course.exercises.sgd_mistakes import MISTAKES as RULE_MISTAKES
from course.exercises.inputs import LossClosure, isolated
from course.exercises.spec import Case, CheckFailure, Exercise, Mistake, Question, Run
from course.exercises.values import (
    COURSE_SGD,
    TORCH_SGD,
    as_float,
    fmt,
    generator,
    real,
    snap,
    sub_seed,
    type_name,
)
from course.sgd import option_grid

#: Observations use the builtins as they were before the learner's code ran.
__builtins__ = dict(vars(builtins))

#: The course's answer keys and torch's SGD, disabled while a submission is graded
#: (this module's own references of the two functions too: grading never calls them).
FORBIDDEN = [*TORCH_SGD, *COURSE_SGD, "course.momentum.torch_momentum_step",
             "course.exercises.lesson06.decay_groups",
             "course.exercises.lesson06.get_momentum_buffer"]

_TORCH_SGD = torch.optim.SGD
_OPTIMIZER = torch.optim.Optimizer
_DEFAULTDICT = collections.defaultdict
_F32, _F64 = torch.float32, torch.float64
_TENSORS = (torch.Tensor, nn.Parameter)
_DEFAULT_RNG = np.random.default_rng


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def _module(seed: int, make: Callable[[], nn.Module]) -> nn.Module:
    """A module built with ``torch.manual_seed(seed)``, the global RNG left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def _mlp(dtype: torch.dtype = _F32, seed: int = 0) -> nn.Sequential:
    """The course's MLP, Linear(10, 5) -> ReLU -> Linear(5, 1)."""
    return _module(seed, lambda: nn.Sequential(nn.Linear(10, 5), nn.ReLU(),
                                               nn.Linear(5, 1))).to(dtype)


def _batch(dtype: torch.dtype = _F32, seed: int = 1) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(16, 10, generator=gen, dtype=dtype),
            torch.randn(16, 1, generator=gen, dtype=dtype))


def _shape(rng: np.random.Generator, min_ndim: int = 1, max_ndim: int = 3) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(min_ndim,
                                                                           max_ndim + 1))))


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _same(x: Any, y: Any) -> bool:
    """Bit-identical tensors (NaNs in the same places count as equal)."""
    if type(x) not in _TENSORS or type(y) not in _TENSORS:
        return False
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    return torch.equal(x, y) or (torch.equal(x.isnan(), y.isnan())
                                 and torch.equal(x.nan_to_num(), y.nan_to_num()))


def _ulps(x: Tensor, y: Tensor) -> int:
    """Largest distance between x and y in units in the last place."""
    a = x.detach().double().numpy()
    b = y.detach().double().numpy()
    np_dtype = np.float32 if x.dtype == _F32 else np.float64
    scale = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np_dtype)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(a == b, 0.0, np.abs(a - b) / scale)
    u = u[np.isfinite(u)]
    return int(np.ceil(u.max())) if u.size else 0


def _rounding_level(x: Tensor, y: Tensor) -> bool:
    """x and y differ only by accumulated rounding."""
    rtol, atol = (3e-5, 1e-6) if x.dtype == _F32 else (1e-12, 1e-14)
    return x.shape == y.shape and bool(torch.allclose(x.double(), y.double(),
                                                      rtol=rtol, atol=atol))


def _close(x: Tensor, y: Tensor) -> bool:
    """x and y agree up to float32-level errors (for matching mistakes)."""
    return x.shape == y.shape and bool(torch.allclose(
        x.double(), y.double(), rtol=2e-4, atol=2e-6, equal_nan=True))


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)}" if value.numel() > 1 else \
            f"tensor({value.item():g})"
    return fmt(value)


def _value(v: Any) -> Any:
    """A hyperparameter as a plain, typed value."""
    if type(v) in _TENSORS:
        return ["tensor", v.detach().clone()]
    if v is None or type(v) in (bool, int, float, str):
        return [type(v).__name__, v]
    return type_name(v)


def _groups(opt: Any, params: list[Any]) -> Any:
    """param_groups as plain values: settings in order, params as indices into params."""
    groups = getattr(opt, "param_groups", None)
    if type(groups) is not list or any(type(g) is not dict for g in groups):
        return type_name(groups)
    ids = {id(p): i for i, p in enumerate(params)}
    return [[[k, _value(v)] for k, v in g.items() if k != "params"]
            + [["params", [ids.get(id(p), -1) for p in g.get("params", ())]]]
            for g in groups]


# --------------------------------------------------------------------------
# Exercise 6.1: decay_groups
# --------------------------------------------------------------------------

def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weights (ndim >= 2) with ``weight_decay``, the other tensors with 0."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _decay_models() -> list[tuple[str, nn.Module]]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return [
            ("the MLP Linear(10, 5) -> ReLU -> Linear(5, 1)", _mlp()),
            ("Linear(4, 8) -> LayerNorm(8) -> ReLU -> Linear(8, 2)",
             nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))),
            ("Conv2d(1, 2, 3) -> Flatten -> Linear(8, 3, bias=False)",
             nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3, bias=False))),
        ]


def _names(model: nn.Module, tensors: Iterable[Tensor]) -> str:
    lookup = {id(p): n for n, p in model.named_parameters()}
    return "[" + ", ".join(lookup.get(id(t), "?") for t in tensors) + "]"


def _decay_observe(run: Run) -> Any:
    """Which parameters (as indices) are in which group, the weight decays
    (the given one a float), what an optimizer built from the groups makes of
    them, and whether the parameters' values are unchanged."""
    model, groups = run.args[0], run.result
    params = list(model.parameters())
    if type(groups) not in (list, tuple) or len(groups) != 2 or \
            any(type(g) is not dict or type(g.get("params")) not in (list, tuple)
                for g in groups):
        return type_name(groups)
    ids = {id(p): i for i, p in enumerate(params)}
    out: list[Any] = [[[sorted(str(k) for k in g), [ids.get(id(p), -1) for p in g["params"]]]
                       for g in groups],
                      [real(groups[0].get("weight_decay"), (float,)),
                       as_float(groups[1].get("weight_decay"))]]
    try:
        opt = _OPTIMIZER([dict(g, params=list(g["params"])) for g in groups],
                         {"lr": 0.1, "weight_decay": run.case.data})
        out.append([as_float(g["weight_decay"]) for g in opt.param_groups])
    except Exception as exc:  # noqa: BLE001 - torch refuses the groups
        out.append(f"{type(exc).__name__}: {exc}")
    before = list(run.case.args[0].parameters())
    out.append(all(type(p) in _TENSORS and _same(p.detach(), b.detach())
                   for p, b in zip(params, before)))
    return out


_NONE = ("did you forget `return [decay_group, no_decay_group]`?")
_SWAPPED = "the two groups are swapped: put the decayed weights first, the rest second."
_ORDER_KEPT = ("keep the order of model.parameters() inside each group (torch's "
               "state_dict numbers parameters in that order).")
_BY_NAME = ("you decided by name ('bias' or not). A LayerNorm/BatchNorm weight "
            "is a 1-D scale, not a weight matrix, and must not be decayed "
            "either: decide by shape, `p.ndim >= 2`.")
_BY_SHAPE = ("decay tensors with p.ndim >= 2 (weight matrices and conv "
             "kernels); 1-D tensors (biases, normalisation scales) go to the "
             "no-decay group.")
_NO_ZERO = ("a group without the key is filled from the optimizer's defaults "
            "(setdefault), so torch.optim.SGD(groups, weight_decay=0.5) would "
            "decay the biases too. Set 'weight_decay': 0.0 explicitly.")
_USED_UP = (" A generator or filter object is used up after one pass, so "
            "the groups would be empty the second time anyone reads them.")
_NOT_PARAMS = ("which is not one of the model's parameters. Put the Parameter objects "
               "themselves (no copies, no .data, no .detach()): the optimizer "
               "must update the model's own tensors.")


def _decay_contract(got: Run, expected: Run) -> str | None:
    """The old check's contract, in its order: the shape of the result, the
    tensors in it, each parameter once, the split, the keys and decays, the
    values left alone, and torch's reading of the groups."""
    out, model, wd = got.result, got.args[0], got.case.args[1]
    if out is None:
        return f"`decay_groups` returned None.\n  Diagnosis: {_NONE}"
    if not isinstance(out, (list, tuple)):
        return (f"`decay_groups` returned a {type(out).__name__}; return a list of two "
                "dicts, e.g. [{'params': [...], 'weight_decay': wd}, "
                "{'params': [...], 'weight_decay': 0.0}].")
    if len(out) != 2:
        return (f"`decay_groups` returned {len(out)} groups; return exactly two "
                "(decay first, then no decay).")
    for k, g in enumerate(out):
        if not isinstance(g, dict):
            return (f"group {k} is a {type(g).__name__}; each parameter group is a "
                    "dict with the key 'params'.")
        if "params" not in g:
            return (f"group {k} has no 'params' key (keys: {sorted(g)}); torch finds "
                    "a group's tensors under 'params'.")
    named = {id(p): n for n, p in model.named_parameters()}
    params = list(model.parameters())
    for k, g in enumerate(out):
        message = _group_params(g["params"], k, named)
        if message:
            return message
    seen = [id(t) for g in out for t in g["params"]]
    for p in params:
        if seen.count(id(p)) > 1:
            return (f"`{named[id(p)]}` is in your groups twice. Each parameter must be "
                    "in exactly one group (torch raises ValueError otherwise).")
        if id(p) not in seen:
            return (f"`{named[id(p)]}` is missing from your groups: every parameter of "
                    "model.parameters() must be in one of the two groups.")
    want = ([p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2])
    have = (list(out[0]["params"]), list(out[1]["params"]))
    if [id(t) for t in have[0]] != [id(t) for t in want[0]] or \
            [id(t) for t in have[1]] != [id(t) for t in want[1]]:
        return _group_split_hint(model, have, want)
    message = _group_decay(out, wd)
    if message:
        return message
    before = list(got.case.args[0].parameters())
    if not all(_same(p.detach(), b.detach()) for p, b in zip(params, before)):
        return "decay_groups changed the parameters' values; it must only sort them into groups."
    opt = _OPTIMIZER([dict(g, params=list(g["params"])) for g in out],
                     {"lr": 0.1, "weight_decay": 0.5})
    got_wd = [g["weight_decay"] for g in opt.param_groups]
    if got_wd != [wd, 0.0]:
        return (f"torch.optim.SGD(decay_groups(model, {wd}), lr=0.1, weight_decay=0.5) "
                f"gives groups with weight decay {got_wd}, expected [{wd}, 0.0].")
    return None


def _group_params(value: Any, k: int, named: dict[int, str]) -> str | None:
    if isinstance(value, Tensor) or not isinstance(value, (list, tuple)):
        kind = "a single tensor" if isinstance(value, Tensor) else f"a {type(value).__name__}"
        extra = _USED_UP if not isinstance(value, (Tensor, set, dict)) else ""
        return (f"group {k}['params'] is {kind}; make it a list of tensors, e.g. "
                f"`[p for p in model.parameters() if p.ndim >= 2]`.{extra}")
    for t in value:
        if isinstance(t, str):
            return (f"group {k}['params'] holds names like {t!r}; put the parameter "
                    "tensors themselves in it (from model.parameters(), or the second "
                    "item of each named_parameters() pair).")
        if isinstance(t, tuple):
            return f"group {k}['params'] holds (name, tensor) pairs; keep only the tensors."
        if not isinstance(t, Tensor) or id(t) not in named:
            return f"group {k}['params'] holds {_describe(t)}, {_NOT_PARAMS}"
    return None


def _group_split_hint(model: nn.Module, got: tuple, want: tuple) -> str:
    msg = (f"your groups are {_names(model, got[0])} and {_names(model, got[1])}; "
           f"expected {_names(model, want[0])} (ndim >= 2, decayed) and "
           f"{_names(model, want[1])} (no decay).")
    ids_got = [set(map(id, g)) for g in got]
    ids_want = [set(map(id, g)) for g in want]
    if ids_got == ids_want[::-1]:
        hint = _SWAPPED
    elif ids_got == ids_want:
        hint = _ORDER_KEPT
    elif any(p.ndim < 2 and "bias" not in n and id(p) in ids_got[0]
             for n, p in model.named_parameters()):
        hint = _BY_NAME
    else:
        hint = _BY_SHAPE
    return msg + "\n  Diagnosis: " + hint


def _group_decay(groups: list[dict], wd: float) -> str | None:
    for k, g in enumerate(groups):
        extra = set(g) - {"params", "weight_decay"}
        if extra:
            return (f"group {k} has extra keys {sorted(extra)}; give each group only "
                    "'params' and 'weight_decay' — every other setting comes from the "
                    "optimizer's defaults.")
    if "weight_decay" not in groups[0]:
        return f"the first group has no 'weight_decay' key; set 'weight_decay': weight_decay ({wd})."
    if "weight_decay" not in groups[1]:
        return f"the second group has no 'weight_decay' key.\n  Diagnosis: {_NO_ZERO}"
    if groups[0]["weight_decay"] != wd:
        return (f"the first group has weight_decay {fmt(groups[0]['weight_decay'])}, "
                f"expected {wd} (the argument).")
    if groups[1]["weight_decay"] != 0:
        return (f"the second group has weight_decay {fmt(groups[1]['weight_decay'])}, "
                "expected 0.0.")
    return None


def _decay_hidden(rng: np.random.Generator) -> Iterator[Case]:
    a, b, c, d = (int(n) for n in rng.integers(1, 7, size=4))
    models = [
        ("a random embedding/batch-norm/linear model",
         _module(sub_seed(rng), lambda: nn.Sequential(
             nn.Embedding(a + 1, b), nn.BatchNorm1d(b), nn.Linear(b, c),
             nn.Linear(c, d, bias=False)))),
        ("a random Linear without bias", _module(sub_seed(rng), lambda: nn.Linear(a, b, bias=False))),
        ("random norm layers only", _module(sub_seed(rng), lambda: nn.Sequential(
            nn.BatchNorm1d(c), nn.LayerNorm(c)))),
        ("a random conv/linear/GRU model", _module(sub_seed(rng), lambda: nn.Sequential(
            nn.Conv2d(a, b, 2), nn.Flatten(), nn.Linear(c, d), nn.GRU(d, a)))),
    ]
    order = [int(i) for i in rng.permutation(4)]      # the first model's layers shuffled
    models.append(("the first model's layers in a random order",
                   nn.Sequential(*[models[0][1][i] for i in order])))
    for label, model in models:
        wd = float(10.0 ** rng.uniform(-4, -0.3))
        yield Case(label, (model, wd), data=_u(rng, 0.5, 1.0))


DECAY_GROUPS = Exercise(
    grade_id="test_decay_groups",
    name="decay_groups",
    reference=decay_groups,
    cases=[Case(f"{label}, weight_decay={wd}", (model, wd), data=0.5)
           for (label, model), wd in zip(_decay_models(), (5e-4, 0.01, 0.1))],
    observe=_decay_observe,
    passed="decay_groups: 3 models split into [weights (ndim >= 2) with "
           "weight_decay, biases/norm scales with 0], in model order, "
           "accepted by torch.optim.SGD",
    hidden=_decay_hidden,
    rules=[_decay_contract],
    mistakes=[
        Mistake("returned_one_group", "return a list of two dicts",
                lambda model, wd: decay_groups(model, wd)[0]),
        Mistake("groups_swapped", _SWAPPED, lambda model, wd: decay_groups(model, wd)[::-1]),
        Mistake("decay_by_name", _BY_NAME, lambda model, wd: [
            {"params": [p for n, p in model.named_parameters() if "bias" not in n],
             "weight_decay": wd},
            {"params": [p for n, p in model.named_parameters() if "bias" in n],
             "weight_decay": 0.0}]),
        Mistake("no_decay_key_missing", _NO_ZERO, lambda model, wd: [
            {"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": wd},
            {"params": [p for p in model.parameters() if p.ndim < 2]}]),
        Mistake("params_generator", _USED_UP.strip(), lambda model, wd: [
            {"params": (p for p in model.parameters() if p.ndim >= 2), "weight_decay": wd},
            {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}]),
        Mistake("params_copied", _NOT_PARAMS, lambda model, wd: [
            {"params": [p.detach().clone() for p in model.parameters() if p.ndim >= 2],
             "weight_decay": wd},
            {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}]),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 6.2: get_momentum_buffer
# --------------------------------------------------------------------------

def get_momentum_buffer(optimizer: Any, param: Tensor) -> Tensor | None:
    """The momentum buffer of ``param`` itself, or None (no entry is created)."""
    return optimizer.state.get(param, {}).get("momentum_buffer")


def _plain(opt: Any) -> Any:
    """The same param_groups and state in a plain ``torch.optim.Optimizer``
    (which grading leaves enabled: it can be copied there)."""
    plain = _OPTIMIZER([dict(g) for g in opt.param_groups], dict(opt.defaults))
    for p, entry in opt.state.items():
        plain.state[p] = dict(entry)
    return plain


def _trained(momentum: float, frozen_last: bool = False) -> tuple[nn.Module, Any]:
    model = _mlp()
    X, y = _batch()
    opt = _TORCH_SGD(model.parameters(), lr=0.05, momentum=momentum)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.mse_loss(model(X), y).backward()
        if frozen_last:
            model[2].bias.grad = None
        opt.step()
    return model, _plain(opt)


def _buffer_cases() -> list[Case]:
    cases = []
    for momentum, label in ((0.0, "torch.optim.SGD(lr=0.05, momentum=0) after 2 steps"),
                            (0.9, "torch.optim.SGD(lr=0.05, momentum=0.9) after 2 steps")):
        model, opt = _trained(momentum)
        for pname, p in model.named_parameters():
            cases.append(Case(label, (opt, p), data=("momentum0" if momentum == 0 else
                                                     "buffer", pname)))
    model, opt = _trained(0.9, frozen_last=True)
    cases.append(Case("momentum=0.9, `2.bias` never had a gradient (frozen)",
                      (opt, model[2].bias), data=("frozen", "2.bias")))
    return cases


def _buffer_call(fn: Any, case: Case) -> Any:
    """Call ``fn(optimizer, param)``; record the buffer and the state before."""
    opt, p = case.args
    before = opt.state.get(p, {}).get("momentum_buffer")
    return [fn(opt, p), before]


def _buffer_observe(run: Run) -> Any:
    out, before = run.result
    opt, p = run.args
    state = opt.state
    if type(state) is not _DEFAULTDICT:
        return type_name(state)
    entry = dict.get(state, p)
    return [out is before and before is not None, snap(out), len(state),
            dict.__contains__(state, p),
            sorted(entry) if type(entry) is dict else type_name(entry)]


_INSERTS = ("optimizer.state is a defaultdict(dict): merely reading `optimizer.state[param]` "
            "inserts an empty dict for that parameter, which then shows up in "
            "state_dict(). Look it up without inserting: "
            "`optimizer.state.get(param, {}).get('momentum_buffer')`.")
_KEY_ERROR = ("a parameter without a buffer has no 'momentum_buffer' key (with "
              "momentum=0, or before its first step). Return None in that case: "
              "`optimizer.state.get(param, {}).get('momentum_buffer')`.")
_COPY = ("return the stored buffer tensor itself (the very object under 'momentum_buffer', "
         "found with `.get`, no clone), so that it shows what the optimizer will use at "
         "its next step.")
_NO_BUFFER = "with momentum=0 there is no buffer: return None."
_OTHER_PARAM = "Did you look up a different parameter?"


def _buffer_contract(got: Run, expected: Run) -> str | None:
    out, _ = got.result
    opt, p = got.args
    kind, pname = got.case.data
    if kind == "momentum0":
        if out is not None:
            return f"for `{pname}` you returned {_describe(out)}; {_NO_BUFFER}"
        if len(opt.state) != 0:
            return (f"after your call optimizer.state has {len(opt.state)} entry (it was "
                    f"empty).\n  Diagnosis: {_INSERTS}")
    elif kind == "buffer":
        buf = got.result[1]                       # the buffer before the call
        if out is None:
            return (f"for `{pname}` you returned None, but the parameter's state holds "
                    "a 'momentum_buffer'.")
        if not isinstance(out, Tensor):
            return (f"for `{pname}` you returned a {type(out).__name__}; return the "
                    "momentum buffer tensor stored in the parameter's state.")
        if out is not buf:
            same = out.shape == buf.shape and torch.equal(out, buf)
            return (f"for `{pname}` you returned "
                    + ("a copy of the buffer" if same else "a different tensor")
                    + f"; {_COPY}" + ("" if same else f" {_OTHER_PARAM}"))
    elif kind == "frozen":
        if out is not None:
            return (f"you returned {_describe(out)}; a parameter that has not been "
                    "stepped has no buffer: return None.")
        if p in opt.state:
            return ("your call created an empty entry optimizer.state[param].\n"
                    "  Diagnosis: optimizer.state is a defaultdict(dict), so "
                    "`optimizer.state[param]` inserts {} for a missing key. Use "
                    "`optimizer.state.get(param, {})` instead.")
    return None


def _buffer_on_error(case: Case, exc: BaseException) -> str | None:
    return _KEY_ERROR if isinstance(exc, KeyError) else None


def _buffer_hidden(rng: np.random.Generator) -> Iterator[Case]:
    gen = generator(sub_seed(rng))

    def tensor(shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=gen).requires_grad_()

    a, b, c = tensor(_shape(rng)), tensor(_shape(rng)), tensor(_shape(rng))
    opt = _OPTIMIZER([a, b, c], {"lr": _u(rng, 0.01, 1.0)})
    opt.state[a]["momentum_buffer"] = torch.randn(a.shape, generator=gen)
    opt.state[c]["step"] = torch.tensor(float(rng.integers(1, 100)))   # state without a buffer
    stranger = torch.randn(_shape(rng), generator=gen)
    opt.add_param_group({"params": [tensor(_shape(rng))]})
    none_buf = tensor(_shape(rng))
    opt.add_param_group({"params": [none_buf]})
    opt.state[none_buf]["momentum_buffer"] = None
    yield Case("a random parameter with a buffer", (opt, a))
    yield Case("a random parameter without state", (opt, b))
    yield Case("a random parameter with state but no buffer", (opt, c))
    yield Case("a random tensor the optimizer does not hold", (opt, stranger))
    yield Case("a random parameter of an added group", (opt, opt.param_groups[1]["params"][0]))
    yield Case("a random parameter whose buffer is None", (opt, none_buf))


GET_MOMENTUM_BUFFER = Exercise(
    grade_id="test_get_momentum_buffer",
    name="get_momentum_buffer",
    reference=get_momentum_buffer,
    cases=_buffer_cases(),
    call=_buffer_call,
    observe=_buffer_observe,
    show=lambda run: run.result[0],
    passed="get_momentum_buffer: 9 lookups return the buffer itself or None, and "
           "optimizer.state is never modified",
    hidden=_buffer_hidden,
    rules=[_buffer_contract],
    on_error=_buffer_on_error,
    mistakes=[
        Mistake("state_entry_inserted", _INSERTS,
                lambda opt, p: opt.state[p].get("momentum_buffer")),
        Mistake("buffer_copied", _COPY,
                lambda opt, p: (b.clone() if (b := get_momentum_buffer(opt, p)) is not None
                                else None)),
        Mistake("zeros_for_no_buffer", _NO_BUFFER,
                lambda opt, p: opt.state.get(p, {}).get("momentum_buffer", torch.zeros(1))),
        Mistake("first_parameter_looked_up", _OTHER_PARAM,
                lambda opt, p: get_momentum_buffer(opt, next(iter(opt.param_groups[0]["params"])))),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# The SGD class: learner-shaped wrong classes (the classic mistakes)
# --------------------------------------------------------------------------

_HYPER = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")


def _torch_rule(param: Tensor, grad: Tensor, buf: Tensor | None, *, lr: Any,
                momentum: float = 0, dampening: float = 0, weight_decay: Any = 0,
                nesterov: bool = False, maximize: bool = False) -> Tensor | None:
    """Torch's single-tensor SGD update (its for-loop path). Not the catalogue's
    sgd_mistakes.torch_update: this one must keep working in the grading child
    (CorrectSGD's round trips), where the catalogue is neutralized."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g.add(param, alpha=weight_decay)
    d = g
    if momentum != 0:
        if buf is None:
            buf = g.detach().clone()
        else:
            buf.mul_(momentum).add_(g, alpha=1 - dampening)
        d = g.add(buf, alpha=momentum) if nesterov else buf
    param.add_(d, alpha=-lr)
    return buf if momentum != 0 else None


class CorrectSGD(torch.optim.Optimizer):
    """torch.optim.SGD's for-loop algorithm, written as a learner would (no
    validation). Its subclasses below each make one classic mistake; it is
    also the "torch" side of the state-dict round trips (bit-identical)."""

    rule = staticmethod(_torch_rule)

    def __init__(self, params: Any, lr: Any = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        self.initial = dict(defaults)
        self.steps = 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.steps += 1
        for group in self.param_groups:
            settings = self.settings(group)
            for p in group["params"]:
                self.update(p, p.grad, settings)
        return loss

    def __getstate__(self) -> dict[str, Any]:
        # Optimizer.__getstate__ keeps defaults, state and param_groups only:
        # the mistakes below read these two after a deepcopy too.
        return dict(super().__getstate__(), initial=self.initial, steps=self.steps)

    def settings(self, group: dict[str, Any]) -> dict[str, Any]:
        return group

    def update(self, p: Tensor, grad: Tensor | None, group: dict[str, Any]) -> None:
        if grad is None:
            return
        hyper = {k: group[k] for k in _HYPER}
        hyper["lr"] = float(hyper["lr"])
        momentum = hyper["momentum"]
        buf = self.state[p].get("momentum_buffer") if momentum != 0 else None
        buf = self.rule(p, grad, buf, **hyper)
        if momentum != 0:
            self.state[p]["momentum_buffer"] = buf


def _rule_class(name: str, rule: Callable[..., Any]) -> type:
    return type(f"SGD_{name}", (CorrectSGD,), {"rule": staticmethod(rule)})


def _zeros_start(param: Tensor, grad: Tensor, buf: Tensor | None, **hyper: Any) -> Any:
    """The buffer starts at torch.zeros_like(param), then b = μ·b + (1 − τ)·g."""
    return RULE_MISTAKES["zero_initial_buffer"].update(param, grad, buf, **hyper)


class _BufferNotSaved(CorrectSGD):
    def update(self, p: Tensor, grad: Tensor | None, group: dict[str, Any]) -> None:
        if grad is not None:
            hyper = {k: group[k] for k in _HYPER}
            self.rule(p, grad, None, **dict(hyper, lr=float(hyper["lr"])))


class _MomentumIgnored(CorrectSGD):
    def settings(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(group, momentum=0)


class _GlobalStep(CorrectSGD):
    def update(self, p: Tensor, grad: Tensor | None, group: dict[str, Any]) -> None:
        if grad is None:
            return
        if group["momentum"] != 0 and self.steps > 1 and \
                self.state[p].get("momentum_buffer") is None:
            self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        super().update(p, grad, group)


class _CachedLr(CorrectSGD):
    def settings(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(group, lr=self.initial["lr"])


class _CachedMomentum(CorrectSGD):
    def settings(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(group, **{k: self.initial[k] for k in _HYPER if k != "lr"})


class _CachedAll(CorrectSGD):
    def settings(self, group: dict[str, Any]) -> dict[str, Any]:
        return self.initial


class _FirstGroup(CorrectSGD):
    def settings(self, group: dict[str, Any]) -> dict[str, Any]:
        return self.param_groups[0]


class _NoneAsZero(CorrectSGD):
    def update(self, p: Tensor, grad: Tensor | None, group: dict[str, Any]) -> None:
        super().update(p, torch.zeros_like(p) if grad is None else grad, group)


def _catalogued(name: str) -> type:
    return _rule_class(name, RULE_MISTAKES[name].update)


#: The diagnoses of the mistakes a trajectory shows (lesson 06's wording, for a class).
DIAGNOSES: dict[str, str] = {
    "maximize_ignored": (
        "maximize=True had no effect: torch negates the gradient first, "
        "`g = -p.grad if maximize else p.grad`."),
    "moved_uphill": (
        "your step moved the parameters uphill: torch subtracts, "
        "p ← p − lr·d, i.e. `p.add_(d, alpha=-lr)`."),
    "lr_missing": (
        "the learning rate is missing from your update: p ← p − lr·d, "
        "i.e. `p.add_(d, alpha=-lr)` with lr = group['lr']."),
    "buffer_not_saved": (
        "your momentum buffer is not kept from one step to the next (every "
        "step acts like a first step, b = g, so momentum has no effect). "
        "Store it: "
        "`self.state[p]['momentum_buffer'] = buf` when you create it, and "
        "update that same tensor in place on later steps."),
    "momentum_ignored": (
        "momentum had no effect: keep a buffer per parameter in "
        "self.state[p]['momentum_buffer'] and step along it, "
        "b = μ·b + (1 − τ)·g, d = b."),
    "dampening_on_first_step": (
        "you applied dampening on the first step: b = (1 − τ)·g. Torch sets "
        "the buffer to an undampened copy of the gradient on a parameter's "
        "first step, `buf = g.clone()`, and applies dampening only from the "
        "second step on, `buf.mul_(momentum).add_(g, alpha=1 - dampening)`."),
    "zero_initial_buffer": (
        "your momentum buffer starts at zeros, so the first step gives "
        "b = μ·0 + (1 − τ)·g = (1 − τ)·g. Torch does not start from zeros: "
        "when state[p] has no 'momentum_buffer' yet, the buffer is a copy of "
        "the gradient, `buf = g.clone()` (no dampening), created at that "
        "parameter's first step -- not in __init__."),
    "dampening_as_factor": (
        "you scaled the gradient by the dampening τ; torch scales it by "
        "(1 − τ): `buf.mul_(momentum).add_(g, alpha=1 - dampening)`."),
    "buffer_ignores_dampening": (
        "dampening had no effect: from the second step on torch updates "
        "`buf.mul_(momentum).add_(g, alpha=1 - dampening)`."),
    "ema_buffer": (
        "you scaled the gradient by (1 − momentum), an exponential moving "
        "average; torch scales it by (1 − dampening): "
        "`buf.mul_(momentum).add_(g, alpha=1 - dampening)`."),
    "weight_decay_ignored": (
        "weight_decay had no effect: torch folds it into the gradient before "
        "anything else, `g = g.add(p, alpha=weight_decay)` (g + λ·p)."),
    "maximize_flips_update": (
        "you implemented maximize by flipping the sign of the final update "
        "(p + lr·d). Torch negates the GRADIENT first, `g = -p.grad`, and "
        "only then adds weight decay, so weight decay still shrinks the "
        "weights; flipping the update makes weight decay grow them. (Without "
        "weight decay both give the same numbers, which is why this mistake "
        "hides.)"),
    "weight_decay_wrong_sign": (
        "weight decay has the wrong sign: torch ADDS λ·p to the gradient, "
        "`g = g.add(p, alpha=weight_decay)`, so that it pulls weights "
        "towards zero."),
    "weight_decay_after_momentum": (
        "you added weight decay after momentum (to the step direction). "
        "Torch folds it into the gradient BEFORE the momentum buffer "
        "(coupled L2): `g = g.add(p, alpha=weight_decay)` first, then the "
        "buffer is built from that g."),
    "nesterov_ignored": (
        "your nesterov=True steps are plain momentum steps. Torch first "
        "updates the buffer, b = μ·b + (1 − τ)·g, and then steps along "
        "`d = g.add(buf, alpha=momentum)` (g + μ·b with the NEW buffer) "
        "instead of d = b. (Using the old buffer, zero at the start, "
        "g + μ·b_old, gives exactly plain momentum.)"),
    "nesterov_old_buffer": (
        "your Nesterov step used the OLD buffer. Torch first updates the "
        "buffer, b = μ·b + (1 − τ)·g, and then uses the NEW one: "
        "`d = g.add(buf, alpha=momentum)`."),
    "cached_lr": (
        "your step used the learning rate given to the constructor after it "
        "had been changed in param_groups. Schedulers, load_state_dict and "
        "users all write `group['lr']`: read `lr = group['lr']` inside "
        "`for group in self.param_groups:` at every step; don't keep "
        "self.lr or read self.defaults."),
    "cached_momentum": (
        "your step kept using the momentum settings given to the "
        "constructor after param_groups had changed. Read momentum, "
        "dampening, weight_decay, nesterov and maximize from `group[...]` "
        "at every step, not from attributes set in __init__ or from "
        "self.defaults."),
    "cached_settings": (
        "your step uses the constructor's settings instead of "
        "param_groups: each group has its own lr, momentum, ... and anyone "
        "may change them between steps (a scheduler, load_state_dict). "
        "Read every setting from `group[...]` inside `for group in "
        "self.param_groups:` at every step; don't keep self.lr or read "
        "self.defaults."),
    "first_group_settings": (
        "every parameter group was stepped with the settings of the first "
        "group. Loop `for group in self.param_groups:` and read lr, "
        "momentum, ... from that `group` for the parameters in "
        "`group['params']`."),
    "global_step_counter": (
        "your 'first step' is decided by a global step counter, not per "
        "parameter. A parameter whose first gradient arrives late (a layer "
        "unfrozen later, a new param group) must also start with an "
        "undampened copy of its gradient. Test the parameter's own state: "
        "`buf = self.state[p].get('momentum_buffer')`; `if buf is None: "
        "buf = g.clone()`."),
    "none_grad_as_zero": (
        "parameters whose .grad is None were updated (as if their gradient "
        "were zero: they got weight decay or momentum). Torch skips them "
        "entirely, no update and no state: `if p.grad is None: continue`."),
}

#: The wrong classes, in the order they are tried (the first whose trajectory
#: the learner's follows is reported). Some give the same numbers as an earlier
#: one (ignoring momentum and not saving the buffer; caching every setting and
#: caching lr when only lr changes); dampening on the first step and a buffer
#: that starts at zeros give the same numbers too: the learner's source decides.
_CLASSES: list[tuple[str, type]] = [
    ("maximize_ignored", _catalogued("maximize_ignored")),
    ("moved_uphill", _rule_class("moved_uphill", lambda param, grad, buf, *, lr, **hyper:
                                  _torch_rule(param, grad, buf, lr=-lr, **hyper))),
    ("lr_missing", _rule_class("lr_missing", lambda param, grad, buf, *, lr, **hyper:
                               _torch_rule(param, grad, buf, lr=1.0, **hyper))),
    ("buffer_not_saved", _BufferNotSaved),
    ("momentum_ignored", _MomentumIgnored),
    ("dampening_on_first_step", _catalogued("dampening_on_first_step")),
    ("zero_initial_buffer", _rule_class("zero_initial_buffer", _zeros_start)),
    ("dampening_as_factor", _catalogued("dampening_as_factor")),
    ("buffer_ignores_dampening", _catalogued("buffer_ignores_dampening")),
    ("ema_buffer", _catalogued("ema_buffer")),
    ("weight_decay_ignored", _catalogued("weight_decay_ignored")),
    ("maximize_flips_update", _catalogued("maximize_flips_update")),
    ("weight_decay_wrong_sign", _catalogued("weight_decay_wrong_sign")),
    ("weight_decay_after_momentum", _catalogued("weight_decay_after_momentum")),
    ("nesterov_ignored", _catalogued("nesterov_ignored")),
    ("nesterov_old_buffer", _catalogued("nesterov_old_buffer")),
    ("cached_lr", _CachedLr),
    ("cached_momentum", _CachedMomentum),
    ("cached_settings", _CachedAll),
    ("first_group_settings", _FirstGroup),
    ("global_step_counter", _GlobalStep),
    ("none_grad_as_zero", _NoneAsZero),
]

#: The catalogued mistakes of ``step`` (learner-shaped wrong classes).
STEP_MISTAKES = [Mistake(name, DIAGNOSES[name], cls) for name, cls in _CLASSES]

# Texts of the mistakes that a trajectory does not show.
GRAD_MODIFIED = (
    "your step changed p.grad. Build the update out of place, "
    "`g = -p.grad if maximize else p.grad`, `g = g.add(p, alpha=weight_decay)` "
    "-- never `p.grad.add_(...)`, `p.grad.neg_()` or `g += ...` on the "
    "gradient itself: the caller (gradient clipping, logging, a second "
    "optimizer) expects p.grad to be the gradient it computed.")
GRAD_REPLACED = (
    "your step replaced p.grad by another tensor (`p.grad = ...`). step() "
    "only reads the gradients; leave p.grad as it is.")
BUFFER_ALIASES_GRAD = (
    "your momentum buffer shares memory with p.grad (`buf = p.grad` or "
    "`p.grad.detach()`), so updating the buffer in place overwrites the "
    "gradient, and `zero_grad(set_to_none=False)` wipes your momentum. On "
    "the first step store a copy: `buf = g.clone()`.")
NO_GRAD_MISSING = (
    "the parameter update ran with autograd recording, and torch refuses "
    "in-place changes of a leaf that requires grad. Decorate step with "
    "`@torch.no_grad()` (torch does that), so every update runs without "
    "building a graph. In the lesson's notebook, keep the given decorator "
    "`@no_grad_unless_differentiable` on step: it is torch.no_grad() unless "
    "the optimizer was built with differentiable=True.")
NONE_NOT_SKIPPED = (
    "a parameter whose .grad is None made your step fail. Torch skips such "
    "parameters entirely (frozen layers, unused branches): "
    "`if p.grad is None: continue` before using p.grad.")
LATE_GRAD_FAILED = (
    "your step failed on a parameter whose first gradient arrives after "
    "other parameters have already been stepped. Decide 'first step' per "
    "parameter: `buf = self.state[p].get('momentum_buffer')`, and "
    "`if buf is None: buf = g.clone()`; a global step counter gets this "
    "wrong.")
TENSOR_LR = (
    "a tensor learning rate (torch.tensor(0.01) or torch.tensor([0.01])) "
    "made your step fail. Torch accepts a 1-element tensor lr; convert it "
    "with `float(group['lr'])` (or `lr.item()`) before `alpha=-lr`.")
CLOSURE_NO_ENABLE_GRAD = (
    "the closure ran with gradients disabled, so its `loss.backward()` "
    "failed. step() runs under torch.no_grad(), and may itself be called "
    "inside `with torch.no_grad():`. Call the closure inside "
    "`with torch.enable_grad():` -- exactly as torch does.")
CLOSURE_TWICE = (
    "your step called the closure {n} times. Torch calls it exactly once, "
    "before the update: `with torch.enable_grad(): loss = closure()`. Each "
    "extra call re-runs forward and backward (and accumulates gradients).")
CLOSURE_NOT_CALLED = (
    "your step ignored the closure. With `step(closure)` torch calls it once "
    "(with gradients enabled) before updating, and returns its value.")
CLOSURE_VALUE = (
    "step(closure) must return exactly what the closure returned (the same "
    "object: `loss = closure()` ... `return loss`); yours returned {got}.")
CLOSURE_AFTER_UPDATE = (
    "the update did not use the gradients the closure computed: call the "
    "closure first (it runs zero_grad, forward and backward), then loop "
    "over the parameters.")
STEP_RETURN = (
    "step() without a closure must return None (torch returns the closure's "
    "value, and None when there is none); yours returned {got}.")
STATE_ELSEWHERE = (
    "self.state stayed empty although momentum={momentum}: your momentum "
    "buffers live somewhere else{where}. Store them in the optimizer's own "
    "state: `self.state[p]['momentum_buffer'] = buf`. Only self.state is "
    "saved by state_dict(), loaded by load_state_dict() and understood by "
    "torch.optim.SGD.")
STATE_KEY = (
    "state[p] has the keys {keys}; torch stores exactly one: "
    "'momentum_buffer'. That name is what a state_dict exchanged with "
    "torch.optim.SGD contains, so use `self.state[p]['momentum_buffer']` "
    "and nothing else.")
STATE_MOMENTUM0 = (
    "with momentum=0 torch keeps no state at all, but your optimizer stored "
    "entries for {n} parameter(s). Only touch self.state[p] when "
    "group['momentum'] != 0.")
STATE_PRECREATED = (
    "self.state already had entries before the first step. Torch creates a "
    "parameter's momentum buffer at its first step with a gradient (a copy "
    "of that gradient), not in __init__ -- don't pre-create zero buffers.")
STATE_NO_GRAD_PARAM = (
    "a parameter that never had a gradient got a state entry. Skip "
    "parameters with `p.grad is None` before touching self.state[p] (note "
    "that even reading `self.state[p]` creates an empty entry: it is a "
    "defaultdict).")
NOT_SUBCLASS = (
    "{name} must subclass torch.optim.Optimizer: `class SGD(torch.optim."
    "Optimizer):` and call `super().__init__(params, defaults)`. The base "
    "class gives you param_groups, state, zero_grad, add_param_group and "
    "state_dict, and lr schedulers refuse anything that is not "
    "`isinstance(opt, torch.optim.Optimizer)`.")
DELEGATES = (
    "{name} {how}. The exercise is to write the update yourself: subclass "
    "torch.optim.Optimizer (not torch.optim.SGD) and write step() with "
    "tensor operations, without torch.optim.SGD, torch.optim.sgd or "
    "torch.optim._functional.")
GIVEN_PATH = (
    "your step ran the given `{name}` for a group that does not ask for "
    "fused=True. The given fused path is only for groups with fused=True: "
    "`if foreach_or_fused_step(self, group): continue` hands those over and "
    "returns False for every other group (foreach=True included), which your "
    "own loop must then update: write the for-loop update yourself, parameter "
    "by parameter.")
FOREACH_QUIRK_MISSING = (
    "with foreach=True and nesterov=True (and neither maximize nor "
    "weight_decay) torch adds the momentum buffer into p.grad in place, "
    "`torch._foreach_add_(grads, bufs, alpha=momentum)`, so after its step "
    "p.grad holds g + μ·b; yours still holds the gradient. Call the given "
    "`foreach_nesterov_quirk(self, group)` once after your loop over the "
    "group's parameters (inside `for group in self.param_groups:`).")
FOREACH_QUIRK_WRONG = (
    "torch's p.grad after this step is g + μ·b (the gradient plus momentum "
    "times the NEW buffer, added once, in place); yours is neither that nor "
    "the untouched gradient. Don't change p.grad yourself: call the given "
    "`foreach_nesterov_quirk(self, group)` once, after your loop over the "
    "group's parameters.")
FOREACH_QUIRK_PLACE = (
    "with foreach=True your own loop steps the group, exactly as without it. "
    "Call the given `foreach_nesterov_quirk(self, group)` once, AFTER the loop "
    "over the group's parameters (not inside it): it reads every parameter's "
    "updated momentum buffer, and it changes p.grad, which the loop must not "
    "see.")
ULP = (
    "over all steps your parameters agree with torch's to within {ulps} ulp "
    "(max abs diff {diff:.3g}) but are not bit-identical. The formulas are right; the "
    "tensor operations are not torch's. On this CPU `p - lr * d` rounds "
    "twice (multiply, then subtract) while torch's `p.add_(d, alpha=-lr)` "
    "rounds once (a fused multiply-add). Use torch's ops: "
    "`g.add(p, alpha=weight_decay)`, "
    "`buf.mul_(momentum).add_(g, alpha=1 - dampening)`, "
    "`g.add(buf, alpha=momentum)`, `p.add_(d, alpha=-lr)`.")
NOT_IMPLEMENTED = (
    "`{name}` is not implemented yet: replace `raise NotImplementedError()` "
    "with your code, run that cell, then run this check again.")


# --------------------------------------------------------------------------
# The SGD class: guarding the learner's code
# --------------------------------------------------------------------------

_SGD_FILE = inspect.getsourcefile(_TORCH_SGD) or ""
#: The notebook's given fused helper: no case asks for that path, so a call
#: means the learner's loop was handed to it.
_GIVEN_PATHS = ("fused_sgd",)
#: Whether the learner's calls are watched for delegation (sys.setprofile): in
#: the check only (set by its first test); grading disables torch's SGD instead.
_WATCH = [False]


class _Guard:
    """Run the learner's code: watch for delegation to torch's SGD and turn
    exceptions into messages that name the case (with a hint if we know one)."""

    def __init__(self, case: str, what: str,
                 hint: Callable[[BaseException], str | None] | None = None) -> None:
        self.case, self.what, self.hint = case, what, hint
        self.hit: str | None = None

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if self.hit is not None:
            return
        if event == "call" and frame.f_code.co_filename == _SGD_FILE:
            self.hit = frame.f_code.co_qualname
        elif event == "call" and frame.f_code.co_name in _GIVEN_PATHS:
            self.hit = "given:" + frame.f_code.co_name
        elif event == "c_call" and "fused_sgd" in getattr(arg, "__name__", ""):
            self.hit = "torch._fused_sgd_"

    def __enter__(self) -> _Guard:
        self._watching = False
        if _WATCH[0]:
            self._old = sys.getprofile()
            # A C profiler (cProfile) cannot be re-installed from Python: leave it.
            self._watching = self._old is None or inspect.isfunction(self._old) \
                or inspect.ismethod(self._old)
            if self._watching:
                sys.setprofile(self._profile)
        return self

    def __exit__(self, typ: Any, exc: BaseException | None, tb: Any) -> bool:
        if self._watching:
            sys.setprofile(self._old)
        if self.hit is not None:
            raise CheckFailure(_delegation_message(self.hit)) from None
        if exc is None or isinstance(exc, CheckFailure):
            return False
        if isinstance(exc, NotImplementedError):
            raise CheckFailure(NOT_IMPLEMENTED.format(name="SGD")) from None
        if not isinstance(exc, Exception):
            return False
        msg = f"{self.case}: {self.what} raised {type(exc).__name__}: {exc}"
        hint = _exception_hint(exc) or (self.hint(exc) if self.hint else None)
        if hint:
            msg += f"\n  Diagnosis: {hint}"
        raise CheckFailure(msg) from None


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def _guards(case: str, learner: bool) -> Callable[[str], Any]:
    return (lambda what: _Guard(case, what)) if learner else (lambda what: _Null())


def _is_learner(cls: Any) -> bool:
    """Whether ``cls`` is the learner's class (not torch's reference nor one of
    the course's own classes)."""
    return cls is not _TORCH_SGD and not (isinstance(cls, type) and issubclass(cls, CorrectSGD))


def _delegation_message(hit: str) -> str:
    if hit.startswith("given:"):
        return GIVEN_PATH.format(name=hit.split(":", 1)[1])
    if hit == "torch._fused_sgd_":
        how = "calls torch._fused_sgd_"
    elif hit.startswith("SGD.__init__"):
        how = "creates a torch.optim.SGD"
    elif hit.startswith("SGD."):
        how = f"calls torch.optim.SGD's {hit.split('.', 1)[1]}"
    else:
        how = f"calls torch.optim.sgd.{hit} (torch's own SGD code)"
    return DELEGATES.format(name="Your SGD", how=how)


def _exception_hint(exc: BaseException) -> str | None:
    text = str(exc)
    if "leaf Variable that requires grad" in text:
        return NO_GRAD_MISSING
    if "must be Number, not Tensor" in text:
        return TENSOR_LR
    if isinstance(exc, AttributeError) and any(
            f"attribute '{name}" in text
            for name in ("param_groups'", "state'", "defaults'", "_optimizer")):
        return ("your optimizer lacks the attributes the base class sets up: call "
                "`super().__init__(params, defaults)` in __init__ (after your checks).")
    return None


def _require_class(check: str) -> Callable[[Any], None]:
    """The first test of an SGD check: the learner's class itself, a subclass
    of torch.optim.Optimizer and not of torch.optim.SGD."""
    def require(cls: Any) -> None:
        _WATCH[0] = True
        if isinstance(cls, torch.optim.Optimizer):
            raise CheckFailure(f"check_{check} expects your class `SGD` itself, got an "
                               f"optimizer instance: call check_{check}(SGD), not "
                               f"check_{check}(SGD(...)).")
        if not isinstance(cls, type):
            if callable(cls):
                raise CheckFailure(f"check_{check} expects your class `SGD`, got a "
                                   f"{type(cls).__name__}. Define "
                                   "`class SGD(torch.optim.Optimizer):` with __init__ and "
                                   "step methods.")
            raise CheckFailure(f"check_{check} expects your class `SGD` itself, got "
                               f"{type(cls).__name__}: call check_{check}(SGD) without "
                               "parentheses after the name.")
        if issubclass(cls, _TORCH_SGD):
            raise CheckFailure(DELEGATES.format(name=cls.__name__,
                                                how="subclasses torch.optim.SGD"))
        if not issubclass(cls, torch.optim.Optimizer):
            raise CheckFailure(NOT_SUBCLASS.format(name=cls.__name__))
    return require


class _GivenPathRefused:
    """While a flow runs the learner's class, the notebook's given fused helper
    (in the class's module) refuses a group with parameters: on a CPU without
    fused=True torch takes its for-loop, which the learner must write."""

    def __init__(self, cls: Any) -> None:
        module = sys.modules.get(getattr(cls, "__module__", None) or "")
        self.namespace = getattr(module, "__dict__", None)
        self.saved = None

    def __enter__(self) -> None:
        ns = self.namespace
        if type(ns) is dict and "fused_sgd" in ns:
            self.saved = ns["fused_sgd"]

            def fused_sgd(params: Any = (), *_a: Any, **_k: Any) -> Any:
                if len(params):                 # (a group without gradients may pass [])
                    raise RuntimeError("the for-loop path must not call fused_sgd")
            ns["fused_sgd"] = fused_sgd

    def __exit__(self, *exc: object) -> bool:
        if self.saved is not None:
            self.namespace["fused_sgd"] = self.saved
        return False


def _source(cls: type) -> str:
    """The learner's source code (the methods of ``cls``), or '' if unavailable."""
    parts = []
    for klass in getattr(cls, "__mro__", ()):
        if klass in (torch.optim.Optimizer, object):
            break
        for value in vars(klass).values():
            fn = getattr(value, "__wrapped__", value)
            if inspect.isfunction(fn):
                try:
                    parts.append(inspect.getsource(fn))
                except (OSError, TypeError):
                    pass
    return "\n".join(parts)


def _diff_dict(got: dict, want: dict) -> str:
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    wrong = [k for k in want if k in got and not _same_value(got[k], want[k])]
    parts = []
    if missing:
        parts.append(f"missing keys {missing}")
    if extra:
        parts.append(f"extra keys {extra}")
    for k in wrong:
        parts.append(f"{k!r} is {got[k]!r}, torch has {want[k]!r}")
    return "; ".join(parts)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and _same(a, b)
    return type(a) is type(b) and a == b or (
        isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


# --------------------------------------------------------------------------
# SGD.__init__
# --------------------------------------------------------------------------

def _signature_text() -> str:
    sig = inspect.signature(_TORCH_SGD)
    parts: list[str] = []
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and "*" not in parts:
            parts.append("*")
        parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return "SGD(" + ", ".join(parts) + ")"


def _signature_flow(cls: Any, case: Case) -> Any:
    """Subclass of Optimizer, and the parameters of the constructor."""
    out: list[Any] = [isinstance(cls, type) and _OPTIMIZER in type.mro(cls)]
    try:
        sig = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return out + ["no signature"]
    out.append([[p.name, str(p.kind), type(p.default).__name__,
                 repr(p.default) if p.default is not p.empty else "no default"] for p in sig])
    return out


def _signature_rule(got: Run, expected: Run) -> str | None:
    cls = got.fn
    want = list(inspect.signature(_TORCH_SGD).parameters.values())
    try:
        have = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - exotic classes
        return None
    sig = _signature_text()
    names_w, names_g = [p.name for p in want], [p.name for p in have]
    for p in want:
        if p.name not in names_g:
            return (f"your SGD.__init__ has no parameter `{p.name}`. "
                    f"Use torch's exact signature:\n    {sig}")
    extra = [n for n in names_g if n not in names_w]
    if extra:
        return (f"your SGD.__init__ has parameters torch's lacks: {extra}. "
                f"Use torch's exact signature:\n    {sig}")
    if names_g != names_w:
        return (f"your SGD.__init__ takes its parameters in the order "
                f"{names_g}; torch's order is {names_w}:\n    {sig}")
    for pw, pg in zip(want, have):
        if pw.kind != pg.kind:
            kind = ("keyword-only (after the `*`)" if pw.kind is pw.KEYWORD_ONLY
                    else "positional-or-keyword (before the `*`)")
            return f"`{pw.name}` must be {kind}, as in torch:\n    {sig}"
        if pw.default is not pw.empty and (
                pg.default is pg.empty or type(pg.default) is not type(pw.default)
                or pg.default != pw.default):
            got_d = "no default" if pg.default is pg.empty else \
                f"default {pg.default!r} ({type(pg.default).__name__})"
            return (f"`{pw.name}` has {got_d}; torch's default is {pw.default!r} "
                    f"({type(pw.default).__name__}). Defaults end up in defaults, "
                    f"param_groups and state_dict, so use torch's exactly:\n    {sig}")
    return None


def _params() -> list[Tensor]:
    gen = torch.Generator().manual_seed(7)
    return [torch.randn(3, generator=gen).requires_grad_(),
            torch.randn(2, 2, generator=gen).requires_grad_()]


def _two_params() -> list[Tensor]:
    return [torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)]


def _bare() -> Tensor:
    return torch.zeros(3, requires_grad=True)


def _flat(params: Any) -> list[Tensor]:
    """The tensors of a params argument (a list of tensors or of groups)."""
    out: list[Tensor] = []
    for item in params:
        out += list(item["params"]) if isinstance(item, dict) else [item]
    return out


def _groups_ab() -> list[dict[str, Any]]:
    a, b = _params()
    return [{"params": [a], "lr": 0.5}, {"params": [b], "momentum": 0.5}]


def _construct_flow(cls: Any, case: Case) -> Any:
    """Build the optimizer (then add a group, if the case says so)."""
    data = case.data
    params = data["make"]()
    tensors = _flat(params)
    guard = _guards(case.name, _is_learner(cls))
    with guard("SGD(...)"):
        opt = cls(params, *case.args, **case.kwargs)
    if data.get("add") is not None:
        extra = torch.zeros(2, requires_grad=True)
        tensors.append(extra)
        with guard("add_param_group"):
            opt.add_param_group(dict(data["add"], params=[extra]))
    return {"opt": opt, "params": tensors, "lr": case.kwargs.get("lr")}


def _construct_observe(run: Run) -> Any:
    opt, params, lr = run.result["opt"], run.result["params"], run.result["lr"]
    defaults = getattr(opt, "defaults", None)
    state = getattr(opt, "state", None)
    groups = getattr(opt, "param_groups", None)
    lr_kept = None
    if type(lr) in _TENSORS and type(groups) is list and groups and type(groups[0]) is dict:
        lr_kept = groups[0].get("lr") is lr or (type(defaults) is dict
                                                  and defaults.get("lr") is lr)
    return [[[k, _value(v)] for k, v in defaults.items()] if type(defaults) is dict
            else type_name(defaults),
            _groups(opt, params),
            len(state) if type(state) is _DEFAULTDICT else type_name(state),
            _OPTIMIZER in type(opt).__mro__, lr_kept]


def _construct_rule(got: Run, expected: Run) -> str | None:
    opt, ref = got.result["opt"], expected.result["opt"]
    defaults = getattr(opt, "defaults", None)
    if not isinstance(defaults, dict):
        return ("your optimizer has no `defaults` dict: call "
                "super().__init__(params, defaults).")
    diff = _diff_dict(defaults, ref.defaults)
    if diff:
        return (f"your `defaults` differ from torch's: {diff}.\n  Diagnosis: "
                + _DEFAULTS_HINT)
    groups = getattr(opt, "param_groups", None)
    if not isinstance(groups, list) or len(groups) != len(ref.param_groups):
        return (f"expected {len(ref.param_groups)} param group(s), "
                f"found {len(groups) if isinstance(groups, list) else groups!r}.")
    mine = {id(p): i for i, p in enumerate(got.result["params"])}
    theirs = {id(p): i for i, p in enumerate(expected.result["params"])}
    for k, (g, r) in enumerate(zip(groups, ref.param_groups)):
        if [mine.get(id(p), -1) for p in g.get("params", [])] != \
                [theirs[id(p)] for p in r["params"]]:
            return (f"param_groups[{k}]['params'] must hold the given tensors "
                    "themselves, in order.")
        diff = _diff_dict({k2: v for k2, v in g.items() if k2 != "params"},
                          {k2: v for k2, v in r.items() if k2 != "params"})
        if diff:
            return (f"param_groups[{k}] differs from torch's: {diff}.\n  Diagnosis: let "
                    "the base class build the groups -- super().__init__(params, "
                    "defaults) fills each group's missing keys from defaults "
                    "(setdefault), so group-specific values win.")
    if len(opt.state) != 0:
        return STATE_PRECREATED
    lr = got.result["lr"]
    if isinstance(lr, Tensor) and opt.param_groups[0]["lr"] is not lr \
            and opt.defaults["lr"] is not lr:
        return ("keep a tensor lr as the very tensor given (torch stores it as is; "
                "schedulers update it in place with fill_). Don't convert it in __init__.")
    return None


_DEFAULTS_HINT = (
    "build `defaults = dict(lr=lr, momentum=momentum, dampening=dampening, "
    "weight_decay=weight_decay, nesterov=nesterov, maximize=maximize, "
    "foreach=foreach, differentiable=differentiable, fused=fused)` with the "
    "values exactly as given, and pass it to super().__init__(params, "
    "defaults). Every key must be there: groups are filled from it, and "
    "state_dict() carries it to torch.optim.SGD.")
_AFTER_SUPER = ("you validated the arguments after calling super().__init__ "
                "(which checks params first). Validate lr, momentum, "
                "weight_decay and nesterov BEFORE super().__init__(params, "
                "defaults), as torch does. ")
_OTHER_ORDER = "your checks run in a different order. "
_SAME_TYPE = "use the same exception type as torch"
_FUSED_AFTER = " These two checks come AFTER super().__init__(params, defaults)."
_ORDER = ("torch checks, in this order: a multi-element tensor lr, lr < 0, "
          "momentum < 0, weight_decay < 0, nesterov with momentum <= 0 or "
          "dampening != 0 -- all BEFORE super().__init__(params, defaults), which "
          "then checks params -- and only after it `fused` with `differentiable` "
          "or with `foreach`.")
#: The order as the core exercise needs it (the fused checks are production parity).
_ORDER_CORE = _ORDER.split(" -- and only after")[0] + "."
_OVER_VALIDATION = (
    "don't add checks that torch doesn't have. Torch only rejects a multi-element "
    "tensor lr, lr < 0, momentum < 0, weight_decay < 0 and nesterov with "
    "momentum <= 0 or dampening != 0; dampening is never checked, momentum > 1 is "
    "allowed, and per-group values are not validated.")

_INVALID: list[tuple[str, Callable[[], Any], dict[str, Any]]] = [
    ("lr=torch.tensor([0.1, 0.2])", _params, dict(lr=torch.tensor([0.1, 0.2]))),
    ("lr=-0.1", _params, dict(lr=-0.1)),
    ("lr=torch.tensor(-0.5)", _params, dict(lr=torch.tensor(-0.5))),
    ("momentum=-0.5", _params, dict(momentum=-0.5)),
    ("weight_decay=-0.0001", _params, dict(weight_decay=-1e-4)),
    ("nesterov=True (momentum=0)", _params, dict(nesterov=True)),
    ("nesterov=True, momentum=0.9, dampening=0.1", _params,
     dict(nesterov=True, momentum=0.9, dampening=0.1)),
    ("lr=-1, momentum=-1 (both invalid)", _params, dict(lr=-1.0, momentum=-1.0)),
    ("momentum=-1, weight_decay=-1 (both invalid)", _params,
     dict(momentum=-1.0, weight_decay=-1.0)),
    ("weight_decay=-1, nesterov=True (both invalid)", _params,
     dict(weight_decay=-1.0, nesterov=True)),
    ("params=a bare tensor", _bare, {}),
    ("params=[] (empty)", list, {}),
    ("params=a bare tensor, lr=-1", _bare, dict(lr=-1.0)),
    ("params=a bare tensor, nesterov=True", _bare, dict(nesterov=True)),
]

#: The two `fused` errors (checked after super().__init__): production parity only.
_FUSED_INVALID: list[tuple[str, Callable[[], Any], dict[str, Any]]] = [
    ("fused=True, differentiable=True", _params, dict(fused=True, differentiable=True)),
    ("fused=True, foreach=True", _params, dict(fused=True, foreach=True)),
    ("params=a bare tensor, fused=True, foreach=True", _bare, dict(fused=True, foreach=True)),
]

_VALID: list[tuple[str, Callable[[], Any], dict[str, Any]]] = [
    ("lr=0", _params, dict(lr=0)),
    ("lr=1 (an int)", _params, dict(lr=1)),
    ("momentum=1.5", _params, dict(momentum=1.5)),
    ("dampening=0.5 without momentum", _params, dict(dampening=0.5)),
    ("momentum=0.9, dampening=-0.5", _params, dict(momentum=0.9, dampening=-0.5)),
    ("momentum=0.9, dampening=2.0", _params, dict(momentum=0.9, dampening=2.0)),
    ("lr=torch.tensor(0.01)", _params, dict(lr=torch.tensor(0.01))),
    ("lr=torch.tensor([0.01]) (1 element)", _params, dict(lr=torch.tensor([0.01]))),
    ("nesterov=True, momentum=0.9", _params, dict(nesterov=True, momentum=0.9)),
    ("maximize=True, foreach=False, differentiable=False, fused=None", _params,
     dict(maximize=True, foreach=False, differentiable=False, fused=None)),
    ("a generator of params", lambda: (p for p in _params()), {}),
    ("a group with lr=-0.1 (per-group values are not validated)",
     lambda: [{"params": _params(), "lr": -0.1}], dict(lr=0.1)),
    ("[{'params': []}], lr=0.1 (a group without parameters)",
     lambda: [{"params": []}], dict(lr=0.1)),
]


def _raise_flow(cls: Any, case: Case) -> Any:
    """What constructing raises (the exception, or None)."""
    params = case.data["make"]()
    with _guards(case.name, _is_learner(cls))("SGD(...)"):
        try:
            cls(params, **case.kwargs)
        except (NotImplementedError, CheckFailure):
            raise
        except Exception as exc:  # noqa: BLE001 - the exception is the result
            return exc
    return None


def _raise_observe(run: Run) -> Any:
    exc = run.result
    if exc is None:
        return "no error"
    return f"{type(exc).__name__}: {exc}" if run.case.data.get("exact") \
        else type(exc).__name__


@functools.lru_cache(maxsize=1)
def _torch_messages() -> frozenset[str]:
    msgs = set()
    for _, make, kw in _INVALID + _FUSED_INVALID:
        try:
            _TORCH_SGD(make(), **copy.deepcopy(kw))
        except Exception as exc:  # noqa: BLE001
            msgs.add(str(exc))
    return frozenset(msgs)


def _raise_rule(got: Run, expected: Run) -> str | None:
    have, want = got.result, expected.result
    label = got.case.data["label"]
    exact = got.case.data.get("exact", False)
    if want is None:
        if have is not None:
            return (f"torch accepts this, but your SGD raised {type(have).__name__}: "
                    f"{have}\n  Diagnosis: {_OVER_VALIDATION}")
        return None
    expected_text = (f"{type(want).__name__}({str(want)!r})" if exact
                     else f"{type(want).__name__} ({str(want)!r})")
    if have is None:
        where = (_FUSED_AFTER
                 if "fused" in label else "")
        return (f"torch raises {expected_text}; your SGD accepted the arguments.{where}"
                f"\n  Diagnosis: {_ORDER if exact else _ORDER_CORE}")
    if type(have) is type(want) and (not exact or str(have) == str(want)):
        return None
    actual = f"{type(have).__name__}({str(have)!r})"
    msg = f"torch raises {expected_text}; your SGD raised {actual}."
    if not exact and ("params argument" in str(have) or "empty parameter list" in str(have)):
        hint = _AFTER_SUPER + _ORDER_CORE
    elif not exact:
        hint = (f"{_SAME_TYPE}: `raise {type(want).__name__}(...)` (here any message "
                "passes; torch's exact text is checked in the optional production part).")
    elif str(have) in _torch_messages() and str(have) != str(want):
        if "params argument" in str(have) or "empty parameter list" in str(have):
            hint = _AFTER_SUPER + _ORDER
        else:
            hint = _OTHER_ORDER + _ORDER
    elif type(have) is not type(want):
        hint = (f"{_SAME_TYPE}: `raise "
                f"{type(want).__name__}(...)`, with the message {str(want)!r}.")
    else:
        hint = (f"use torch's message exactly: {str(want)!r} (an f-string with the "
                "value as given, e.g. f\"Invalid momentum value: {momentum}\").")
    return msg + "\n  Diagnosis: " + hint


def _raise_cases(entries: list, exact: bool) -> list[Case]:
    return [Case(f"SGD({label})", kwargs=kw, data={"kind": "raise", "make": make,
                                                   "label": label, "exact": exact})
            for label, make, kw in entries]


def _init_cases() -> list[Case]:
    sig = [Case("signature", data={"kind": "signature"})]
    construct = [
        Case("SGD(params)", data={"kind": "construct", "make": _params}),
        Case("SGD(params, 0.1, 0.9, 0.5, 0.0001)", (0.1, 0.9, 0.5, 1e-4),
             data={"kind": "construct", "make": _params}),
        Case("SGD(params, lr=0.1, momentum=0.9, nesterov=True, maximize=True, "
             "foreach=False)", kwargs=dict(lr=0.1, momentum=0.9, nesterov=True,
                                           maximize=True, foreach=False),
             data={"kind": "construct", "make": _params}),
        Case("SGD(params, lr=torch.tensor(0.01))", kwargs=dict(lr=torch.tensor(0.01)),
             data={"kind": "construct", "make": _params}),
        Case("SGD([{\"params\": [a], \"lr\": 0.5}, {\"params\": [b], \"momentum\": 0.5}], "
             "lr=0.1, momentum=0.9)", kwargs=dict(lr=0.1, momentum=0.9),
             data={"kind": "construct", "make": _groups_ab}),
        Case("add_param_group({\"params\": [c], \"dampening\": 0.3})",
             kwargs=dict(lr=0.1, momentum=0.9),
             data={"kind": "construct", "make": _groups_ab, "add": {"dampening": 0.3}}),
    ]
    return sig + construct + _raise_cases(_INVALID + _VALID, exact=False)


def _init_hidden(rng: np.random.Generator, exact: bool = False) -> Iterator[Case]:
    u = functools.partial(_u, rng)
    n = int(rng.integers(2, 5))
    invalid = [dict(lr=-u(1e-9, 1.0)), dict(momentum=-int(rng.integers(1, 10))),
               dict(weight_decay=-u(0.01, 2.0), momentum=-u(0.01, 2.0)),
               dict(lr=torch.tensor(-u(0.01, 1.0))), dict(lr=torch.ones(1, n)),
               dict(nesterov=True, momentum=u(0.1, 0.99), dampening=-u(0.01, 0.5)),
               dict(nesterov=True, momentum=-u(0.01, 1.0)), dict(nesterov=True),
               dict(nesterov=True, momentum=u(0.1, 0.99), dampening=u(0.01, 0.5)),
               dict(lr=torch.tensor([[-u(0.01, 1.0)]])),
               dict(weight_decay=-int(rng.integers(1, 5)), fused=True, foreach=True),
               dict(fused=True, foreach=True, differentiable=True),
               dict(fused=True, foreach=True), dict(fused=True, differentiable=True),
               dict(lr=-u(0.1, 2.0), momentum=-u(0.1, 2.0))]
    valid = [dict(momentum=u(1.0, 5.0)), dict(dampening=int(rng.integers(2, 10))),
             dict(lr=int(rng.integers(1, 5)), momentum=1, dampening=1),
             dict(lr=torch.tensor([[u(0.01, 1.0)]])), dict(weight_decay=0),
             dict(nesterov=True, momentum=u(0.01, 0.99)), dict(foreach=True),
             dict(fused=False, foreach=True), dict(differentiable=True),
             dict(lr=0.0, momentum=0.0, weight_decay=0.0), dict(dampening=-u(0.1, 2.0))]
    for kw in invalid + valid:
        if exact or not kw.get("fused"):     # the fused errors: production parity
            yield Case("random settings", kwargs=kw,
                       data={"kind": "raise", "make": _two_params, "label": "random",
                             "exact": exact})
    bad_momentum = -int(rng.integers(1, 10))
    yield Case("a bare tensor, a random negative momentum", kwargs=dict(momentum=bad_momentum),
               data={"kind": "raise", "make": lambda: torch.ones(2, requires_grad=True),
                     "label": "random", "exact": exact})
    if exact:
        return
    positional = tuple(u(0.0, 1.0) for _ in range(4))
    for args, kw in (((), {}), (positional, {"maximize": True}),
                     ((), {"lr": torch.tensor(u(0.01, 1.0)), "nesterov": True,
                           "momentum": u(0.1, 0.99)}),
                     (positional[:1], {"foreach": False, "differentiable": False,
                                       "fused": None})):
        yield Case("random settings", args, kw, data={"kind": "construct", "make": _two_params})
    lr0, m0, lr, wd = u(0.001, 0.1), u(0.1, 0.9), u(0.001, 0.1), u(0.001, 0.1)

    def groups() -> list[dict[str, Any]]:
        ps = _two_params() + [torch.zeros(4, requires_grad=True)]
        return [{"params": ps[:1], "lr": lr0, "momentum": m0}, {"params": ps[1:]}]
    yield Case("random groups", kwargs=dict(lr=lr, weight_decay=wd),
               data={"kind": "construct", "make": groups})


# --------------------------------------------------------------------------
# SGD.step: scenarios
# --------------------------------------------------------------------------

Trace = list[list[Tensor]]
Edit = Callable[[Any, int], None]


@dataclass
class Scenario:
    """A run of ``steps`` optimizer steps on raw tensors or on the MLP.

    ``groups``: list of (per-group options, parameter indices), or None for
    ``cls(params, **kwargs)``. ``none``: step -> indices whose grad is None at
    that step. ``edit(opt, t)`` runs before step ``t`` (0-based).
    """

    name: str
    kwargs: dict[str, Any]
    groups: list[tuple[dict[str, Any], list[int]]] | None = None
    steps: int = 4
    dtype: torch.dtype = _F32
    none: dict[int, tuple[int, ...]] = field(default_factory=dict)
    edit: Edit | None = None
    model: str = "raw"
    hint: str | None = None
    #: also compare p.grad after each step (torch's foreach path changes it)
    grads: bool = False

    @property
    def case(self) -> str:
        return f"case '{self.name}'"

    def _problem(self) -> tuple[list[Tensor], Callable[[int], None]]:
        if self.model == "mlp":
            net = _mlp(self.dtype)
            X, y = _batch(self.dtype)
            params = list(net.parameters())

            def grads(t: int) -> None:
                for p in params:
                    p.grad = None
                with torch.enable_grad():
                    nn.functional.mse_loss(net(X), y).backward()
            return params, grads
        gen = torch.Generator().manual_seed(1234)
        shapes = [(4,), (2, 3), ()]
        params = [torch.randn(s, generator=gen, dtype=self.dtype).requires_grad_()
                  for s in shapes]
        scale = [torch.rand(s, generator=gen, dtype=self.dtype) + 0.5 for s in shapes]
        shift = [torch.randn(s, generator=gen, dtype=self.dtype) for s in shapes]

        def grads(t: int) -> None:
            with torch.no_grad():
                for p, a, c in zip(params, scale, shift):
                    p.grad = a * p + c
        return params, grads

    def run(self, cls: Any) -> Trace:
        """Parameters after every step (the learner's class guarded and inspected)."""
        learner = _is_learner(cls)
        params, grads = self._problem()
        guard = (lambda what: _Guard(self.case, what, self._hint)) if learner else \
            (lambda what: _Null())
        if self.groups is None:
            spec: Any = params
        else:
            spec = [dict(opts, params=[params[i] for i in idx]) for opts, idx in self.groups]
        with guard("SGD(...)"):
            opt = cls(spec, **copy.deepcopy(self.kwargs))
        trace: Trace = []
        for t in range(self.steps):
            grads(t)
            for i in self.none.get(t, ()):
                params[i].grad = None
            if self.edit is not None:
                self.edit(opt, t)
            saved = [(p.grad, p.grad.clone()) if p.grad is not None else None
                     for p in params]
            with guard(f"step {t + 1}: SGD.step()"):
                opt.step()
            if learner:
                self._inspect(opt, params, saved, t)
            row = [p.detach().clone() for p in params]
            if self.grads:           # a None grad as an empty tensor
                row += [p.grad.detach().clone() if p.grad is not None
                        else torch.zeros(0) for p in params]
            trace.append(row)
        return trace

    def _hint(self, exc: BaseException) -> str | None:
        if self.none and ("NoneType" in str(exc) or "None" in str(exc)):
            return NONE_NOT_SKIPPED
        return self.hint

    def _inspect(self, opt: Any, params: list[Tensor], saved: list, t: int) -> None:
        where = f"{self.case}, step {t + 1}"
        for i, (p, s) in enumerate(zip(params, saved)):
            if s is None:
                continue
            if p.grad is not s[0]:
                raise CheckFailure(f"{where}: parameter {i}'s .grad is a different "
                                   f"tensor after step().\n  Diagnosis: {GRAD_REPLACED}")
            if not self.grads and not _same(p.grad, s[1]):
                raise CheckFailure(f"{where}: parameter {i}'s .grad was changed by "
                                   f"step().\n  Diagnosis: {GRAD_MODIFIED}")
            if p.grad_fn is not None or not p.is_leaf:
                raise CheckFailure(f"{where}: parameter {i} is no longer a leaf "
                                   "tensor (it has a grad_fn).\n  Diagnosis: "
                                   + NO_GRAD_MISSING)
            state = getattr(opt, "state", {})
            buf = state.get(p, {}).get("momentum_buffer") if hasattr(state, "get") \
                else None
            if isinstance(buf, Tensor) and buf.numel() and \
                    buf.untyped_storage().data_ptr() == p.grad.untyped_storage().data_ptr():
                raise CheckFailure(f"{where}: the momentum buffer of parameter {i} "
                                   "shares memory with its .grad.\n  Diagnosis: "
                                   + BUFFER_ALIASES_GRAD)


def _set_groups(at: int, **values: Any) -> Edit:
    """An edit that writes ``values`` into every param group before step ``at``."""
    def edit(opt: Any, t: int) -> None:
        if t == at:
            for group in opt.param_groups:
                group.update(values)
    return edit


def _step_scenarios() -> list[Scenario]:
    S = Scenario
    return [
        S("plain SGD, lr=0.1", dict(lr=0.1)),
        S("lr=0.1, weight_decay=0.1", dict(lr=0.1, weight_decay=0.1)),
        S("lr=0.1, maximize=True", dict(lr=0.1, maximize=True)),
        S("lr=0.1, momentum=0.9", dict(lr=0.1, momentum=0.9)),
        S("lr=0.1, momentum=0.9, dampening=0.5", dict(lr=0.1, momentum=0.9, dampening=0.5)),
        S("lr=0.1, momentum=0.9, weight_decay=0.1",
          dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
        S("lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True",
          dict(lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True)),
        S("lr=0.1, momentum=0.9, nesterov=True", dict(lr=0.1, momentum=0.9, nesterov=True)),
        S("lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05",
          dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05)),
        S("momentum=0.9, weight_decay=0.1; parameter 1's grad is None at step 2, "
          "parameter 2 never has a grad",
          dict(lr=0.1, momentum=0.9, weight_decay=0.1),
          none={0: (2,), 1: (1, 2), 2: (2,), 3: (2,)}),
        S("momentum=0.9, dampening=0.5; parameter 2's first grad arrives at step 3",
          dict(lr=0.1, momentum=0.9, dampening=0.5), none={0: (2,), 1: (2,)},
          hint=LATE_GRAD_FAILED),
        S("momentum=0.9; group['lr'] changed from 0.1 to 0.02 before step 3 "
          "(as a scheduler does)", dict(lr=0.1, momentum=0.9), edit=_set_groups(2, lr=0.02)),
        S("momentum=0.9; group['momentum'] 0.9 -> 0.5 and group['dampening'] 0 -> "
          "0.3 before step 3", dict(lr=0.1, momentum=0.9),
          edit=_set_groups(2, momentum=0.5, dampening=0.3)),
        S("two param groups: [{params 0, lr=0.05, momentum=0.5}, {params 1-2, "
          "weight_decay=0.1, nesterov=True}], lr=0.1, momentum=0.9",
          dict(lr=0.1, momentum=0.9),
          groups=[(dict(lr=0.05, momentum=0.5), [0]),
                  (dict(weight_decay=0.1, nesterov=True), [1, 2])]),
        S("float64, momentum=0.9, dampening=0.3, weight_decay=0.05, maximize=True",
          dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.05, maximize=True),
          dtype=_F64),
        S("lr=torch.tensor(0.05), momentum=0.9", dict(lr=torch.tensor(0.05), momentum=0.9),
          hint=TENSOR_LR),
        S("lr=torch.tensor([0.05]) (1-element, 1-D), float64",
          dict(lr=torch.tensor([0.05]), momentum=0.9, weight_decay=0.01), dtype=_F64,
          hint=TENSOR_LR),
    ]


def _first_diff(ref: Trace, got: Trace) -> tuple[int, int] | None:
    for t, (r, g) in enumerate(zip(ref, got)):
        for i, (x, y) in enumerate(zip(r, g)):
            if not _same(x, y):
                return t, i
    return None


def _traces_match(a: Trace, b: Trace, same: Callable[[Tensor, Tensor], bool]) -> bool:
    return len(a) == len(b) and all(
        len(ra) == len(rb) and all(same(x, y) for x, y in zip(ra, rb))
        for ra, rb in zip(a, b))


def _trace_diagnosis(cls: Any, run: Callable[[Any], Trace], ref: Trace,
                     got: Trace) -> str | None:
    """The diagnosis of the catalogued mistake whose trajectory ``got`` follows.

    Where several mistakes give the same trajectory in this run (after a
    state_dict is loaded, Nesterov with the old buffer is plain momentum), the
    one the learner's class follows in the most step scenarios is named, so
    that one mistake gets one diagnosis in every check."""
    matching = []
    for mistake in STEP_MISTAKES:
        try:
            trace = run(mistake.impl)
        except Exception:  # noqa: BLE001 - a mistake may not apply here
            continue
        if _traces_match(trace, ref, _close):
            continue  # indistinguishable from torch in this scenario
        if _traces_match(got, trace, _close):
            matching.append(mistake)
    if not matching:
        return None
    if len(matching) > 1:
        mine = _scenario_traces(cls)
        matching.sort(key=lambda m: -_agreements(mine, m.impl))   # stable: catalogue order
    mistake = matching[0]
    if mistake.name == "dampening_on_first_step" and "zeros" in _source(cls):
        return DIAGNOSES["zero_initial_buffer"]
    return mistake.text(None)  # type: ignore[arg-type]


def _scenario_traces(cls: Any) -> list[Trace | None]:
    """The learner's trajectories in the step scenarios (None where it fails)."""
    out: list[Trace | None] = []
    for sc in _step_scenarios():
        try:
            with _GivenPathRefused(cls):
                out.append(sc.run(cls))
        except Exception:  # noqa: BLE001 - no trajectory to compare
            out.append(None)
    return out


def _agreements(mine: list[Trace | None], impl: type) -> int:
    """In how many step scenarios the wrong class ``impl`` follows the learner's
    trajectory."""
    count = 0
    for sc, trace in zip(_step_scenarios(), mine):
        if trace is None:
            continue
        try:
            count += _traces_match(trace, sc.run(impl), _close)
        except Exception:  # noqa: BLE001 - this mistake does not apply here
            continue
    return count


def _compare(cls: Any, run: Callable[[Any], Trace], ref: Trace, got: Trace,
             what: str = "parameters", fallback: str | None = None) -> str | None:
    """The message (with a diagnosis) when ``got`` differs from ``ref``;
    ``fallback`` is the diagnosis when no known mistake explains the difference."""
    where = _first_diff(ref, got)
    if where is None:
        return None
    t, i = where
    x, y = ref[t][i], got[t][i]
    hint = _trace_diagnosis(cls, run, ref, got)
    if hint is None and _traces_match(ref, got, _rounding_level):
        ulps = max(_ulps(a, b) for ra, rb in zip(ref, got) for a, b in zip(ra, rb))
        diff = max(float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
                   for ra, rb in zip(ref, got) for a, b in zip(ra, rb))
        hint = ULP.format(ulps=ulps, diff=diff)
    hint = hint or fallback
    if x.shape != y.shape or x.dtype != y.dtype:
        detail = (f"expected a {x.dtype} tensor of shape {tuple(x.shape)}, got "
                  f"{y.dtype} of shape {tuple(y.shape)}")
    else:
        d = float((x.double() - y.double()).abs().max()) if x.numel() else 0.0
        digits = 6 if d > 1e-4 * float(x.double().abs().max().clamp(min=1)) else \
            (9 if x.dtype == _F32 else 17)
        detail = (f"max abs diff {d:.3g} ({_ulps(x, y)} ulp); expected "
                  f"{fmt(x, digits)}, got {fmt(y, digits)}")
    msg = (f"your {what} differ from torch.optim.SGD's after step {t + 1}, "
           f"tensor {i} (shape {tuple(x.shape)}): {detail}.")
    if hint:
        msg += f"\n  Diagnosis: {hint}"
    return msg


def _scenario_flow(cls: Any, case: Case) -> Trace:
    with _GivenPathRefused(cls):
        return case.data["scenario"].run(cls)


def _scenario_after(got: Run, expected: Run) -> str | None:
    sc: Scenario = got.case.data["scenario"]
    ref, have = expected.result, got.result
    if not sc.grads:
        return _compare(got.fn, sc.run, ref, have)
    n = len(ref[0]) // 2                       # rows: parameters, then their .grad
    message = _compare(got.fn, lambda k: [row[:n] for row in sc.run(k)],
                       [row[:n] for row in ref], [row[:n] for row in have],
                       fallback=sc.hint)
    return message or _compare_grads(sc, [row[n:] for row in ref], [row[n:] for row in have])


def _compare_grads(sc: Scenario, ref: Trace, got: Trace) -> str | None:
    """The parameters matched; now what step() left in p.grad."""
    where = _first_diff(ref, got)
    if where is None:
        return None
    t, i = where
    x, y = ref[t][i], got[t][i]
    untouched = [row[len(row) // 2:] for row in sc.run(CorrectSGD)]  # p.grad as given
    if _traces_match(got, untouched, _same):
        hint = FOREACH_QUIRK_MISSING
    elif _traces_match(ref, untouched, _same):
        hint = GRAD_MODIFIED
    else:
        hint = FOREACH_QUIRK_WRONG
    return (f"your parameters match torch.optim.SGD's, but p.grad of tensor {i} "
            f"(shape {tuple(x.shape)}) differs after step {t + 1}: expected {fmt(x)}, got "
            f"{fmt(y)}.\n  Diagnosis: {hint}")


def _label(kw: dict[str, Any]) -> str:
    shown = [f"{k}={v}" for k, v in kw.items() if k == "lr" or v not in (0, False)]
    return ", ".join(shown)


def _grid_scenarios() -> list[Scenario]:
    out = []
    for dtype, name in ((_F32, "float32"), (_F64, "float64")):
        for kw in option_grid():
            out.append(Scenario(f"MLP {name}, {_label(kw)}; 2.bias grad None at step 3",
                                kw, steps=5, dtype=dtype, none={2: (3,)}, model="mlp"))
    out.append(Scenario(
        "MLP float32, layer 0 frozen (grads None) for 2 steps, then trained; "
        "momentum=0.9, dampening=0.3, weight_decay=0.05",
        dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.05), steps=5,
        none={0: (0, 1), 1: (0, 1)}, model="mlp"))
    return out


def _foreach_scenarios() -> list[Scenario]:
    """foreach=True: the learner's loop gives torch's bits; p.grad is compared too."""
    S = Scenario
    return [
        S("MLP float32, foreach=True, momentum=0.9, nesterov=True; 2.bias grad None "
          "at step 3", dict(lr=0.05, momentum=0.9, nesterov=True, foreach=True),
          steps=4, none={2: (3,)}, model="mlp", grads=True, hint=FOREACH_QUIRK_PLACE),
        S("MLP float64, foreach=True, momentum=0.9, nesterov=True, weight_decay=0.05",
          dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05, foreach=True),
          steps=3, dtype=_F64, model="mlp", grads=True, hint=FOREACH_QUIRK_PLACE),
        S("MLP float32, foreach=True, momentum=0.9, dampening=0.3, maximize=True",
          dict(lr=0.05, momentum=0.9, dampening=0.3, maximize=True, foreach=True),
          steps=3, model="mlp", grads=True, hint=FOREACH_QUIRK_PLACE),
    ]


def _scenario_cases(scenarios: list[Scenario]) -> list[Case]:
    return [Case(sc.name, data={"kind": "scenario", "scenario": sc}) for sc in scenarios]


# --------------------------------------------------------------------------
# State, closure, state_dict, schedulers
# --------------------------------------------------------------------------

def _describe_return(ret: Any, record: list) -> str:
    if record and ret is record[-1]:
        return "the closure's value"
    return "None" if ret is None else (
        "a different tensor" if isinstance(ret, Tensor) else f"a {type(ret).__name__}")


def _closure_flow(cls: Any, case: Case) -> Any:
    """Two steps ``opt.step(closure)`` inside torch.no_grad(), then a step
    without a closure: per step the closure's calls, what step returned and
    the parameters; then what step() returned."""
    learner = _is_learner(cls)
    guard = _guards(case.name, learner)
    model = _mlp()
    X, y = _batch()
    with guard("SGD(...)"):
        opt = cls(model.parameters(), lr=0.05, momentum=0.9)
    # handed to the learner's step: a callable of course.exercises.inputs, not a
    # function of this module (whose namespace it would open to graded code)
    closure = LossClosure(opt, model, X, y, f"{case.name}: {CLOSURE_NO_ENABLE_GRAD}")
    record = closure.record

    steps = []
    with _GivenPathRefused(cls):
        for _ in range(2):
            with torch.no_grad(), guard("SGD.step(closure)"):
                ret = opt.step(closure)
            steps.append([len(record), _describe_return(ret, record),
                          [p.detach().clone() for p in model.parameters()]])
        nn.functional.mse_loss(model(X), y).backward()
        with _guards("case 'opt.step() without closure'", learner)("SGD.step()"):
            ret = opt.step()
    return [steps, ret is None, "None" if ret is None else _describe(ret)]


def _closure_rule(got: Run, expected: Run) -> str | None:
    steps, none, desc = got.result
    for step, (calls, returned, _) in enumerate(steps):
        if calls != step + 1:
            if calls == step:
                return CLOSURE_NOT_CALLED
            return CLOSURE_TWICE.format(n=calls - step)
        if returned != "the closure's value":
            return CLOSURE_VALUE.format(got=returned)
    ref = [row[2] for row in expected.result[0]]
    have = [row[2] for row in steps]
    if _first_diff(ref, have) is not None:
        return _compare(got.fn, lambda k: [row[2] for row in _closure_flow(k, got.case)[0]],
                        ref, have, fallback=_closure_fallback(got.fn))
    if not none:
        raise CheckFailure("case 'opt.step() without closure': " + STEP_RETURN.format(got=desc))
    return None


def _update_message(cls: Any, sc: Scenario) -> str | None:
    """The message of :func:`_compare` for ``cls`` in scenario ``sc`` (gradients
    set directly, no closure), or None when it follows torch's trajectory: what
    the step check would say about the update itself."""
    try:
        with _GivenPathRefused(cls):
            got = sc.run(cls)
    except Exception:  # noqa: BLE001 - the step check names that failure
        return None
    return _compare(cls, sc.run, sc.run(CorrectSGD), got)


def _closure_fallback(cls: Any) -> str:
    """The diagnosis when the parameters after step(closure) differ and no
    catalogued mistake explains it: the closure's order if the update is right
    without a closure, else the update."""
    sc = Scenario("no closure", dict(lr=0.05, momentum=0.9), steps=2, model="mlp")
    if _update_message(cls, sc) is None:
        return CLOSURE_AFTER_UPDATE
    return ("your update differs from torch's even when the gradients are computed "
            "before step() (no closure): run check_sgd_step and fix what it reports first.")


def _tensor_attrs(opt: Any) -> str:
    """Names of attributes (other than torch's) that hold tensors."""
    found = []
    for name, value in vars(opt).items():
        if name in ("state", "param_groups", "defaults") or name.startswith("_"):
            continue
        values = value.values() if isinstance(value, dict) else \
            value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, Tensor) or isinstance(v, dict) for v in values):
            found.append(f"self.{name}")
    return f" ({', '.join(found)})" if found else ""


#: The layout case's steps as a step scenario (to diagnose its buffers).
_LAYOUT = Scenario("momentum=0.9, 3 steps, parameter 2 never has a grad",
                   dict(lr=0.1, momentum=0.9), steps=3, none={0: (2,), 1: (2,), 2: (2,)})


#: The step scenario with missing gradients (to tell a None gradient used as a
#: zero from a state entry merely read into being).
_NONE_GRADS = Scenario("momentum=0.9, weight_decay=0.1; parameter 1's grad is None at step 2, "
                       "parameter 2 never has a grad", dict(lr=0.1, momentum=0.9, weight_decay=0.1),
                       none={0: (2,), 1: (1, 2), 2: (2,), 3: (2,)})


def _layout_flow(cls: Any, case: Case) -> Any:
    """momentum=0.9, 3 steps, parameter 2 never has a grad; then momentum=0:
    what ``state`` holds."""
    guard = _guards(case.name, _is_learner(cls))
    sc = Scenario("layout", dict(lr=0.1, momentum=0.9), steps=3)
    params, grads = sc._problem()
    with guard("SGD(...)"):
        opt = cls(params, lr=0.1, momentum=0.9)
    state = getattr(opt, "state", None)
    pre = len(state) if type(state) is _DEFAULTDICT else type_name(state)
    with _GivenPathRefused(cls):
        for t in range(3):
            grads(t)
            params[2].grad = None
            with guard(f"step {t + 1}: SGD.step()"):
                opt.step()
    state = getattr(opt, "state", None)
    if type(state) is not _DEFAULTDICT:
        return [pre, type_name(state)]
    frozen, entries = params[2], []
    for p in params[:2]:
        entry = dict.get(state, p)
        entries.append([sorted(str(k) for k in entry), snap(entry.get("momentum_buffer"))]
                       if type(entry) is dict else type_name(entry))
    where = _tensor_attrs(opt)
    # momentum = 0: no state at all
    case0 = "case 'momentum=0, 3 steps'"
    guard0 = _guards(case0, _is_learner(cls))
    sc0 = Scenario("momentum=0, 3 steps", dict(lr=0.1), steps=3)
    params, grads = sc0._problem()
    with guard0("SGD(...)"):
        opt0 = cls(params, lr=0.1)
    with _GivenPathRefused(cls):
        for t in range(3):
            grads(t)
            with guard0(f"step {t + 1}: SGD.step()"):
                opt0.step()
    state0 = getattr(opt0, "state", None)
    return [pre, len(state), dict.__contains__(state, frozen), entries, where,
            len(state0) if type(state0) is _DEFAULTDICT else type_name(state0)]


def _layout_observe(run: Run) -> Any:
    out = run.result
    return out[:4] + out[5:] if len(out) > 4 else out     # (not the attribute names)


def _layout_rule(got: Run, expected: Run) -> str | None:
    out = got.result
    if out[0] != 0:
        return STATE_PRECREATED
    if len(out) < 6:
        return None
    _, n, frozen, entries, where, n0 = out
    if n == 0:
        return STATE_ELSEWHERE.format(momentum=0.9, where=where)
    if frozen:      # updated like a zero gradient, or only an entry read into being
        return _update_message(got.fn, _NONE_GRADS) or STATE_NO_GRAD_PARAM
    for i, (entry, want) in enumerate(zip(entries, expected.result[3])):
        if type(entry) is not list or entry[0] != ["momentum_buffer"]:
            if type(entry) is not list or not entry[0]:
                return (f"state has no entry for parameter {i}; "
                        + STATE_ELSEWHERE.format(momentum=0.9, where=where))
            return STATE_KEY.format(keys=entry[0])
        if not _same(entry[1], want[1]):
            message = _update_message(got.fn, _LAYOUT)
            if message is not None:     # the update itself differs: say what is wrong there
                return message
            return (f"state[p]['momentum_buffer'] of parameter {i} differs from torch's "
                    f"buffer (expected {fmt(want[1])}, got {fmt(entry[1])}).\n  Diagnosis: "
                    "store the momentum buffer b itself (updated in place), not the "
                    "step direction d or a copy made before the update.")
    if n0 != 0:
        raise CheckFailure("case 'momentum=0, 3 steps': " + STATE_MOMENTUM0.format(n=n0))
    return None


def _train(model: nn.Module, opt: Any, steps: int, trace: Trace, guard: Callable[[str], Any],
           X: Tensor, y: Tensor, sched: Any = None) -> None:
    for _ in range(steps):
        with guard("zero_grad()"):
            opt.zero_grad()
        nn.functional.mse_loss(model(X), y).backward()
        with guard("SGD.step()"):
            opt.step()
        row = [p.detach().clone() for p in model.parameters()]
        if sched is not None:
            sched.step()
            row.append(torch.tensor([float(g["lr"]) for g in opt.param_groups], dtype=_F64))
        trace.append(row)


_OPTS = dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)


def _flow_torch_to_yours(cls: Any, case: Case) -> Trace:
    guard = _guards("case 'state_dict from torch.optim.SGD loaded into your SGD'",
                    _is_learner(cls))
    X, y = _batch()
    model = _mlp()
    tor = CorrectSGD(model.parameters(), **_OPTS)
    trace: Trace = []
    _train(model, tor, 3, trace, _guards("", False), X, y)
    mine = copy.deepcopy(model)
    with guard("SGD(...)"):
        opt = cls(mine.parameters(), lr=0.5)
    with guard("load_state_dict()"):
        opt.load_state_dict(copy.deepcopy(tor.state_dict()))
    _train(mine, opt, 3, trace, guard, X, y)
    return trace


def _flow_yours_to_torch(cls: Any, case: Case) -> Trace:
    name = "case 'state_dict of your SGD loaded into torch.optim.SGD'"
    learner = _is_learner(cls)
    guard = _guards(name, learner)
    X, y = _batch()
    model = _mlp()
    with guard("SGD(...)"):
        opt = cls(model.parameters(), **_OPTS)
    trace: Trace = []
    _train(model, opt, 3, trace, guard, X, y)
    with guard("state_dict()"):
        sd = copy.deepcopy(opt.state_dict())
    theirs = copy.deepcopy(model)
    tor = CorrectSGD(theirs.parameters(), lr=0.5)
    if learner:
        _compare_state_dicts(name, sd, _reference_state_dict())
    try:
        tor.load_state_dict(sd)
    except Exception as exc:  # noqa: BLE001
        raise CheckFailure(f"{name}: torch.optim.SGD.load_state_dict(your state_dict) "
                           f"raised {type(exc).__name__}: {exc}") from None
    _train(theirs, tor, 3, trace, _guards(name, False), X, y)
    return trace


def _reference_state_dict() -> dict:
    X, y = _batch()
    model = _mlp()
    opt = CorrectSGD(model.parameters(), **_OPTS)
    _train(model, opt, 3, [], _guards("", False), X, y)
    return copy.deepcopy(opt.state_dict())


def _compare_state_dicts(case: str, got: Any, want: dict) -> None:
    if not isinstance(got, dict) or set(got) != {"state", "param_groups"}:
        raise CheckFailure(f"{case}: your state_dict() should be a dict with the keys "
                           "'state' and 'param_groups' (inherit it from "
                           "torch.optim.Optimizer; don't override it).")
    diff = [_diff_dict(g, w) for g, w in zip(got["param_groups"], want["param_groups"])]
    if len(got["param_groups"]) != len(want["param_groups"]) or any(diff):
        raise CheckFailure(f"{case}: your state_dict()['param_groups'] differ from "
                           f"torch's: {'; '.join(d for d in diff if d)}.")
    if set(got["state"]) != set(want["state"]):
        raise CheckFailure(f"{case}: your state_dict()['state'] has entries for "
                           f"parameter ids {sorted(got['state'])}, torch's for "
                           f"{sorted(want['state'])}.")
    for k, w in want["state"].items():
        g = got["state"][k]
        if set(g) != set(w):
            raise CheckFailure(f"{case}: " + STATE_KEY.format(keys=sorted(g)))


def _flow_scheduler(cls: Any, case: Case) -> Trace:
    guard = _guards("case 'StepLR(opt, step_size=2, gamma=0.5) for 6 epochs'", _is_learner(cls))
    X, y = _batch()
    model = _mlp()
    with guard("SGD(...)"):
        opt = cls(model.parameters(), lr=0.1, momentum=0.9)
    with guard("StepLR(...)"):
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    trace: Trace = []
    _train(model, opt, 6, trace, guard, X, y, sched)
    return trace


def _flow_add_group(cls: Any, case: Case) -> Trace:
    guard = _guards("case 'SGD(model[0].parameters(), lr=0.1, momentum=0.9); after 2 steps "
                    "add_param_group({params: model[2], lr: 0.05, dampening: 0.3})'",
                    _is_learner(cls))
    X, y = _batch()
    model = _mlp()
    with guard("SGD(...)"):
        opt = cls(model[0].parameters(), lr=0.1, momentum=0.9)
    trace: Trace = []
    _train(model, opt, 2, trace, guard, X, y)
    with guard("add_param_group()"):
        opt.add_param_group({"params": list(model[2].parameters()), "lr": 0.05,
                             "dampening": 0.3})
    _train(model, opt, 3, trace, guard, X, y)
    return trace


def _flow_deepcopy(cls: Any, case: Case) -> Trace:
    guard = _guards("case 'copy.deepcopy((model, opt)) after 2 steps, then both continue'",
                    _is_learner(cls))
    X, y = _batch()
    model = _mlp()
    with guard("SGD(...)"):
        opt = cls(model.parameters(), lr=0.05, momentum=0.9, dampening=0.2)
    trace: Trace = []
    _train(model, opt, 2, trace, guard, X, y)
    with guard("copy.deepcopy"):
        model2, opt2 = copy.deepcopy((model, opt))
    _train(model2, opt2, 2, trace, guard, X, y)
    _train(model, opt, 2, trace, guard, X, y)
    return trace


def _flow_zero_grad(cls: Any, case: Case) -> Trace:
    guard = _guards("case 'zero_grad() and zero_grad(set_to_none=False)'", _is_learner(cls))
    X, y = _batch()
    model = _mlp()
    with guard("SGD(...)"):
        opt = cls(model.parameters(), lr=0.05, momentum=0.9)
    nn.functional.mse_loss(model(X), y).backward()
    with guard("zero_grad(set_to_none=False)"):
        opt.zero_grad(set_to_none=False)
    row = [torch.zeros(1) if p.grad is None else p.grad.clone() for p in model.parameters()]
    with guard("zero_grad()"):
        opt.zero_grad()
    row += [torch.ones(1) if p.grad is None else torch.full((1,), 7.0)
            for p in model.parameters()]
    return [row]


_FLOWS: list[tuple[str, Callable[[Any, Case], Trace]]] = [
    ("zero_grad() and zero_grad(set_to_none=False)", _flow_zero_grad),
    ("state_dict from torch.optim.SGD loaded into your SGD, then 3 more steps",
     _flow_torch_to_yours),
    ("state_dict of your SGD loaded into torch.optim.SGD, then 3 more steps",
     _flow_yours_to_torch),
    ("StepLR(opt, step_size=2, gamma=0.5) for 6 epochs", _flow_scheduler),
    ("add_param_group after 2 steps", _flow_add_group),
    ("copy.deepcopy((model, opt)) after 2 steps, then both continue", _flow_deepcopy),
]


def _trace_flow(cls: Any, case: Case) -> Trace:
    with _GivenPathRefused(cls):
        return case.data["flow"](cls, case)


def _trace_after(got: Run, expected: Run) -> str | None:
    flow = got.case.data["flow"]
    return _compare(got.fn, lambda k: flow(k, got.case), expected.result, got.result,
                    what="results")


def _state_cases() -> list[Case]:
    return ([Case("loss = opt.step(closure), called inside torch.no_grad()",
                  data={"kind": "closure"}),
             Case("momentum=0.9, 3 steps, parameter 2 never has a grad",
                  data={"kind": "layout"})]
            + [Case(label, data={"kind": "trace", "flow": flow}) for label, flow in _FLOWS])


# --------------------------------------------------------------------------
# Hidden protocols: drawn from the verification's seed
# --------------------------------------------------------------------------

def _buffers(opt: Any, params: list[Any]) -> list[Any]:
    state = opt.state
    if type(state) is not _DEFAULTDICT:
        return [type_name(state)]
    out = []
    for p in params:
        entry = dict.get(state, p)
        out.append([sorted(str(k) for k in entry), snap(entry.get("momentum_buffer"))]
                   if type(entry) is dict else "no state")
    return out


def _random_steps_flow(cls: Any, case: Case) -> Any:
    """Steps on random tensors: groups, gradients that disappear, an lr changed
    midway (all drawn in :func:`_step_hidden`)."""
    d = case.data
    gen = generator(d["seed"])
    dtype = d["dtype"]
    ps = [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in d["shapes"]]
    out: list[Any] = []
    with _GivenPathRefused(cls), _guards(case.name, _is_learner(cls))("SGD"):
        with (torch.no_grad() if d["no_grad"] else _Null()):
            opt = cls([{"params": ps[:1], "lr": d["lr0"]}, {"params": ps[1:]}],
                      **copy.deepcopy(case.kwargs))
            for t in range(d["steps"]):
                for i, p in enumerate(ps):
                    p.grad = None if (t + i + d["skip"]) % 5 == 4 or (i == 3 and t < 3) else \
                        torch.randn(p.shape, generator=gen, dtype=dtype) + p.detach()
                if t == d["change"]:                           # what an lr scheduler does
                    opt.param_groups[1]["lr"] = opt.param_groups[1]["lr"] * d["factor"]
                result = opt.step()
                out.append([snap(p) for p in ps] + [result is None])
    out.append(_buffers(opt, ps))
    return out


def _step_hidden(rng: np.random.Generator) -> Iterator[Case]:
    u = functools.partial(_u, rng)
    settings = [dict(lr=u(0.01, 0.1), momentum=u(0.3, 0.9), dampening=u(0.1, 0.5),
                     weight_decay=u(0.001, 0.05)),
                dict(lr=u(0.01, 0.1), momentum=u(0.85, 0.99), nesterov=True, maximize=True,
                     weight_decay=u(0.05, 0.3)),
                dict(lr=u(0.1, 0.4), momentum=1.0, dampening=1.0),
                dict(lr=u(0.01, 0.2), maximize=True),
                dict(lr=torch.tensor(u(0.01, 0.1)), momentum=u(0.3, 0.7),
                     weight_decay=u(1e-4, 1e-2)),
                dict(lr=u(0.005, 0.05), momentum=u(0.8, 0.95), dampening=-u(0.1, 0.9),
                     maximize=True),
                dict(lr=u(0.01, 0.2)),
                dict(lr=torch.tensor([[u(0.01, 0.05)]]), momentum=u(0.8, 0.95), nesterov=True)]
    runs = [(kw, dtype, False) for kw, dtype in itertools.product(settings, (_F32, _F64))]
    runs.append((dict(lr=u(0.01, 0.2), momentum=u(0.5, 0.95)), _F32, True))  # under no_grad
    for kw, dtype, no_grad in runs:
        yield Case("random steps", kwargs=kw, data={
            "kind": "random_steps", "seed": sub_seed(rng), "dtype": dtype, "no_grad": no_grad,
            "shapes": [_shape(rng), _shape(rng), _shape(rng, 2), ()],
            "lr0": u(0.005, 0.05), "skip": int(rng.integers(5)),
            "change": int(rng.integers(3, 9)), "factor": u(0.2, 0.8),
            "steps": int(rng.integers(10, 13))})


def _mlp_seeded(seed: int, dtype: torch.dtype = _F64) -> nn.Sequential:
    gen = generator(seed)
    net = _module(0, lambda: nn.Sequential(nn.Linear(10, 5), nn.ReLU(),
                                           nn.Linear(5, 1))).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.4)
    return net


def _fit(net: nn.Module, opt: Any, n: int, sched: Any = None, seed: int = 9) -> list[Any]:
    gen = generator(seed)
    dtype = next(net.parameters()).dtype
    for _ in range(n):
        x = torch.randn(8, 10, generator=gen, dtype=dtype)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
        if sched is not None:
            sched.step()
    return [p.detach().clone() for p in net.parameters()]


def _state_dict(opt: Any) -> list[Any]:
    sd = opt.state_dict()
    if type(sd) is not dict or type(sd.get("state")) is not dict or \
            type(sd.get("param_groups")) is not list:
        return [type_name(sd)]
    return [sorted(str(k) for k in sd),
            [[k, sorted(str(k2) for k2 in v), snap(v.get("momentum_buffer"))]
             for k, v in sd["state"].items()],
            [[[k, _value(v) if k != "params" else list(v)] for k, v in g.items()]
             for g in sd["param_groups"]]]


def _torch_format(net: nn.Module, rng: np.random.Generator,
                  legacy: bool = False) -> dict[str, Any]:
    """A state dict as torch.optim.SGD writes it."""
    gen = generator(sub_seed(rng))
    group = {"lr": _u(rng, 0.05, 0.3), "momentum": _u(rng, 0.3, 0.95), "dampening": 0.0,
             "weight_decay": _u(rng, 0.001, 0.05), "nesterov": True, "maximize": False,
             "foreach": None, "differentiable": False, "fused": None}
    if legacy:
        group = {k: group[k] for k in ("lr", "momentum", "dampening", "weight_decay")}
    skip = int(rng.integers(4))                     # a parameter without a buffer yet
    state = {i: {"momentum_buffer": torch.randn(p.shape, generator=gen, dtype=p.dtype)}
             for i, p in enumerate(net.parameters()) if i != skip}
    return {"state": state, "param_groups": [dict(group, params=[0, 1, 2, 3])]}


def _random_state_flow(cls: Any, case: Case) -> list[Any]:
    """The closure, state_dict() through torch.save/load, torch-format and
    legacy state dicts, momentum 0, schedulers and add_param_group, with
    every number drawn from the seed :func:`_state_hidden` drew."""
    rng = _DEFAULT_RNG(case.data["seed"])
    with _GivenPathRefused(cls), _guards(case.name, _is_learner(cls))("SGD"):
        return _random_state(cls, rng)


def _random_state(cls: Any, rng: np.random.Generator) -> list[Any]:
    out: list[Any] = []
    kw = dict(lr=_u(rng, 0.01, 0.05), momentum=_u(rng, 0.5, 0.95), dampening=_u(rng, 0.05, 0.3),
              weight_decay=_u(rng, 0.005, 0.05))
    # closure: called once, with gradients enabled, its value returned
    net = _mlp_seeded(sub_seed(rng))
    opt = cls(net.parameters(), **kw)
    calls: list[bool] = []
    x = torch.randn(8, 10, generator=generator(sub_seed(rng)), dtype=_F64)

    def closure() -> Tensor:
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = net(x).pow(2).mean()
        loss.backward()
        return loss

    with torch.no_grad():
        ret = opt.step(isolated(closure))
    out += [calls, type(ret) is torch.Tensor and ret.requires_grad, snap(ret),
            [snap(p) for p in net.parameters()], opt.step() is None]
    # state layout and state_dict(), two groups; a parameter that never gets a gradient
    net = _mlp_seeded(sub_seed(rng))
    frozen = nn.Parameter(torch.ones(3, dtype=_F64))
    opt = cls([{"params": list(net[0].parameters()) + [frozen]},
               {"params": net[2].parameters(), "lr": _u(rng, 0.005, 0.05)}], **kw)
    out += [_fit(net, opt, int(rng.integers(3, 6)), seed=sub_seed(rng)), len(opt.state),
            frozen in opt.state, _buffers(opt, list(net.parameters())), _state_dict(opt)]
    # state_dict survives torch.save / torch.load(weights_only=True)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    net2 = copy.deepcopy(net)
    opt2 = cls([{"params": list(net2[0].parameters()) + [nn.Parameter(torch.ones(3))]},
                {"params": net2[2].parameters()}], lr=1.0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    data, n = sub_seed(rng), int(rng.integers(2, 5))
    out += [_fit(net, opt, n, seed=data), _fit(net2, opt2, n, seed=data), _state_dict(opt2)]
    # load torch's format (current and legacy), then train on with a scheduler
    for legacy in (False, True):
        net = _mlp_seeded(sub_seed(rng))
        opt = cls(net.parameters(), lr=_u(rng, 0.1, 1.0))
        opt.load_state_dict(_torch_format(net, rng, legacy))
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=_u(rng, 0.5, 0.9))
        out += [_groups(opt, list(net.parameters())),
                _fit(net, opt, int(rng.integers(2, 5)), sched, seed=sub_seed(rng)),
                _buffers(opt, list(net.parameters())), _state_dict(opt)]
    # momentum 0: no state at all
    net = _mlp_seeded(sub_seed(rng))
    opt = cls(net.parameters(), lr=_u(rng, 0.01, 0.2), weight_decay=_u(rng, 0.01, 0.2))
    out += [_fit(net, opt, 2, seed=sub_seed(rng)), len(opt.state), _state_dict(opt)]
    # lr schedulers read and write group["lr"]
    gamma, step_size = _u(rng, 0.2, 0.9), int(rng.integers(1, 4))
    for make in (lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=gamma),
                 lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=step_size, gamma=gamma)):
        net = _mlp_seeded(sub_seed(rng))
        opt = cls(net.parameters(), lr=_u(rng, 0.01, 0.2), momentum=_u(rng, 0.5, 0.95))
        sched = make(opt)
        lrs = []
        data_gen = generator(sub_seed(rng))
        for _ in range(int(rng.integers(4, 7))):
            lrs.append(as_float(opt.param_groups[0]["lr"]))
            _fit(net, opt, 1, sched, seed=int(torch.randint(2 ** 62, (), generator=data_gen)))
        out += [lrs, [snap(p) for p in net.parameters()]]
    # add_param_group fills in the defaults; the new group trains with its own lr
    net = _mlp_seeded(sub_seed(rng))
    opt = cls(net[0].parameters(), lr=_u(rng, 0.01, 0.1), momentum=_u(rng, 0.5, 0.95),
              nesterov=True)
    opt.add_param_group({"params": net[2].parameters(), "lr": _u(rng, 0.05, 0.3)})
    out += [_groups(opt, list(net.parameters())), _fit(net, opt, 3, seed=sub_seed(rng))]
    return out


def _run_on(net: nn.Module, opt: Any, n: int, seed: int) -> list[Any]:
    gen = generator(seed)
    dtype = next(net.parameters()).dtype
    for _ in range(n):
        opt.zero_grad()
        net(torch.randn(4, 3, generator=gen, dtype=dtype)).sum().backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def _net3(seed: int, dtype: torch.dtype = _F32) -> nn.Sequential:
    return _module(seed, lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(),
                                               nn.Linear(4, 2))).to(dtype)


def _random_class_flow(cls: Any, case: Case) -> list[Any]:
    """Pickle and deepcopy mid-run, every option of the grid in float32 and
    float64 (a parameter without gradients), foreach=True with p.grad."""
    rng = _DEFAULT_RNG(case.data["seed"])
    with _GivenPathRefused(cls), _guards(case.name, _is_learner(cls))("SGD"):
        return _random_class(cls, rng)


def _random_class(cls: Any, rng: np.random.Generator) -> list[Any]:
    out: list[Any] = []
    net = _net3(sub_seed(rng))
    opt = cls(net.parameters(), lr=_u(rng, 0.01, 0.1), momentum=_u(rng, 0.5, 0.95),
              nesterov=True, weight_decay=_u(rng, 0.001, 0.05))
    out.append(_run_on(net, opt, 3, sub_seed(rng)))
    net2, opt2 = pickle.loads(pickle.dumps((net, opt)))
    net3, opt3 = copy.deepcopy((net, opt))
    data = sub_seed(rng)
    out += [type(opt2) is cls, type(opt3) is cls, repr(opt).startswith("SGD ("),
            _run_on(net, opt, 4, data), _run_on(net2, opt2, 4, data),
            _run_on(net3, opt3, 4, data)]
    # every option torch accepts (the grid's settings), float32 and float64
    lr = _u(rng, 0.01, 0.1)
    for dtype in (_F32, _F64):
        for kw in option_grid(lr):
            net = _net3(sub_seed(rng), dtype)
            opt = cls(net.parameters(), **kw)
            with torch.no_grad():
                net[2].bias.requires_grad_(False)        # a parameter without gradients
            trained = _run_on(net, opt, 3, sub_seed(rng))
            net[2].bias.requires_grad_(True)
            out.append([trained, _run_on(net, opt, 2, sub_seed(rng)),
                        _buffers(opt, list(net.parameters()))])
    return out


def _random_foreach_flow(cls: Any, case: Case) -> list[Any]:
    """foreach=True with random settings: the same bits as the loop, p.grad too."""
    rng = _DEFAULT_RNG(case.data["seed"])
    with _GivenPathRefused(cls), _guards(case.name, _is_learner(cls))("SGD"):
        return _random_foreach(cls, rng)


def _random_foreach(cls: Any, rng: np.random.Generator) -> list[Any]:
    out: list[Any] = []
    # foreach=True: the same bits as the loop; p.grad too (torch's nesterov quirk)
    for kw in [dict(nesterov=True), dict(nesterov=True, weight_decay=_u(rng, 0.001, 0.05)),
               dict(dampening=_u(rng, 0.05, 0.5), maximize=True)]:
        net = _net3(sub_seed(rng))
        opt = cls(net.parameters(), lr=_u(rng, 0.01, 0.1), momentum=_u(rng, 0.5, 0.95),
                  foreach=True, **kw)
        rows = []
        for _ in range(3):
            rows.append(_run_on(net, opt, 1, sub_seed(rng))
                        + [snap(p.grad) for p in net.parameters()])
        out.append(rows)
    return out


def _state_hidden(rng: np.random.Generator) -> Iterator[Case]:
    yield Case("a random closure/state_dict/scheduler protocol",
               data={"kind": "random_state", "seed": sub_seed(rng)})


def _class_hidden(rng: np.random.Generator) -> Iterator[Case]:
    yield from _init_hidden(rng)
    yield from _step_hidden(rng)
    yield from _state_hidden(rng)
    yield Case("a random pickle/deepcopy/option-grid protocol",
               data={"kind": "random_class", "seed": sub_seed(rng)})


#: What torch's constructor sets on the optimizer for GradScaler when fused=True.
_AMP_FLAGS = ("_step_supports_amp_scaling", "_need_device_dtype_check_for_fused")
_ABSENT = "absent"
_AMP_HINT = (
    "with fused=True torch's __init__ sets self._step_supports_amp_scaling = True (a "
    "GradScaler then hands the unscaling to the fused step instead of calling "
    "unscale_ first) and self._need_device_dtype_check_for_fused = True, after "
    "super().__init__ and before the two fused checks; without fused=True it sets "
    "neither attribute. Keep the given `if fused:` lines at the end of your __init__.")


def _flags_flow(cls: Any, case: Case) -> Any:
    """Build the optimizer; return the GradScaler flags it carries."""
    with _guards(case.name, _is_learner(cls))("SGD(...)"):
        opt = cls(_params(), **case.kwargs)
    return [_value(getattr(opt, name)) if hasattr(opt, name) else _ABSENT
            for name in _AMP_FLAGS]


def _flags_rule(got: Run, expected: Run) -> str | None:
    for name, have, want in zip(_AMP_FLAGS, got.result, expected.result):
        if not _same_value(have, want):
            return (f"self.{name}: torch's is {want!r}, yours is {have!r}.\n  "
                    f"Diagnosis: {_AMP_HINT}")
    return None


def _flag_cases() -> list[Case]:
    return [Case(f"SGD(params, {label}): GradScaler flags", kwargs=kw,
                 data={"kind": "flags"})
            for label, kw in (("fused=True", dict(fused=True)),
                              ("fused=None", {}), ("fused=False", dict(fused=False)),
                              ("fused=True, momentum=0.9", dict(fused=True, momentum=0.9)))]


def _production_cases() -> list[Case]:
    return (_raise_cases(_INVALID + _FUSED_INVALID + _VALID, exact=True) + _flag_cases()
            + _scenario_cases(_foreach_scenarios()))


def _production_hidden(rng: np.random.Generator) -> Iterator[Case]:
    yield from _init_hidden(rng, exact=True)
    yield Case("random fused settings: GradScaler flags",
               kwargs=dict(fused=True, lr=_u(rng, 0.01, 1.0), momentum=_u(rng, 0.0, 0.99)),
               data={"kind": "flags"})
    yield Case("a random foreach=True protocol",
               data={"kind": "random_foreach", "seed": sub_seed(rng)})


# --------------------------------------------------------------------------
# The SGD exercises: one flow, observation and rule per kind of case
# --------------------------------------------------------------------------

_CALLS: dict[str, Callable[[Any, Case], Any]] = {
    "signature": _signature_flow, "construct": _construct_flow, "raise": _raise_flow,
    "scenario": _scenario_flow, "closure": _closure_flow, "layout": _layout_flow,
    "trace": _trace_flow, "random_steps": _random_steps_flow,
    "random_state": _random_state_flow, "random_class": _random_class_flow,
    "random_foreach": _random_foreach_flow, "flags": _flags_flow,
}
_OBSERVE: dict[str, Callable[[Run], Any]] = {
    "construct": _construct_observe, "raise": _raise_observe, "layout": _layout_observe,
}
_RULES: dict[str, Callable[[Run, Run], str | None]] = {
    "signature": _signature_rule, "construct": _construct_rule, "raise": _raise_rule,
    "closure": _closure_rule, "layout": _layout_rule, "flags": _flags_rule,
}
_AFTER: dict[str, Callable[[Run, Run], str | None]] = {
    "scenario": _scenario_after, "trace": _trace_after,
}


def _sgd_call(cls: Any, case: Case) -> Any:
    return _CALLS[case.data["kind"]](cls, case)


def _sgd_observe(run: Run) -> Any:
    observe = _OBSERVE.get(run.case.data["kind"])
    return observe(run) if observe is not None else run.result


def _sgd_rule(got: Run, expected: Run) -> str | None:
    rule = _RULES.get(got.case.data["kind"])
    return rule(got, expected) if rule is not None else None


def _sgd_after(got: Run, expected: Run) -> str | None:
    rule = _AFTER.get(got.case.data["kind"])
    return rule(got, expected) if rule is not None else None


def _sgd_exercise(grade_id: str, check: str, cases: list[Case], passed: str,
                  hidden: Callable[[np.random.Generator], Iterable[Case]],
                  mistakes: list[Mistake] | None = None) -> Exercise:
    return Exercise(
        grade_id=grade_id, name="SGD", check=check, reference=_TORCH_SGD, cases=cases,
        call=_sgd_call, observe=_sgd_observe, passed=passed, hidden=hidden,
        rules=[_sgd_rule], after=[_sgd_after], mistakes=mistakes or [],
        require=_require_class(check), show=_sgd_observe,
        forbidden=FORBIDDEN)




# --------------------------------------------------------------------------
# The constructor's classic mistakes, as learner-shaped classes
# --------------------------------------------------------------------------

class _Validating(CorrectSGD):
    """torch's constructor: checks, super().__init__, then the fused checks
    (``after_super``, ``order``, ``error``, ``extra``, ``fused_checks`` and
    ``keys`` switch one mistake on)."""

    order = ("tensor", "lr", "momentum", "wd", "nesterov")
    error: type = ValueError
    after_super = False
    fused_checks = True
    amp_flags = True
    keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
            "foreach", "differentiable", "fused")

    def __init__(self, params: Any, lr: Any = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        given = dict(lr=lr, momentum=momentum, dampening=dampening,
                     weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                     foreach=foreach, differentiable=differentiable, fused=fused)
        if not self.after_super:
            self.validate(lr, momentum, dampening, weight_decay, nesterov)
        torch.optim.Optimizer.__init__(self, params, {k: given[k] for k in self.keys})
        self.initial, self.steps = dict(given), 0
        if self.after_super:
            self.validate(lr, momentum, dampening, weight_decay, nesterov)
        if self.amp_flags and fused:
            self._step_supports_amp_scaling = True
            self._need_device_dtype_check_for_fused = True
        if self.fused_checks and fused and differentiable:
            raise RuntimeError("`fused` does not support `differentiable`")
        if self.fused_checks and fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        self.extra(momentum)

    def validate(self, lr: Any, momentum: Any, dampening: Any, weight_decay: Any,
                 nesterov: Any) -> None:
        checks = {
            "tensor": (isinstance(lr, Tensor) and lr.numel() != 1, ValueError,
                       "Tensor lr must be 1-element"),
            "lr": (lambda: lr < 0.0, ValueError, f"Invalid learning rate: {lr}"),
            "momentum": (lambda: momentum < 0.0, self.error,
                         f"Invalid momentum value: {momentum}"),
            "wd": (lambda: weight_decay < 0.0, ValueError,
                   f"Invalid weight_decay value: {weight_decay}"),
            "nesterov": (lambda: nesterov and (momentum <= 0 or dampening != 0), ValueError,
                         "Nesterov momentum requires a momentum and zero dampening"),
        }
        for key in self.order:
            cond, error, message = checks[key]
            if cond() if callable(cond) else cond:
                raise error(message)

    def extra(self, momentum: Any) -> None:
        pass


class _ChecksAfterSuper(_Validating):
    after_super = True


class _ChecksInOtherOrder(_Validating):
    order = ("tensor", "momentum", "lr", "wd", "nesterov")


class _WrongErrorType(_Validating):
    error = TypeError


class _FusedChecksMissing(_Validating):
    fused_checks = False


class _DefaultsIncomplete(_Validating):
    keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")


class _MomentumAboveOneRejected(_Validating):
    def extra(self, momentum: Any) -> None:
        if momentum > 1:
            raise ValueError(f"Invalid momentum value: {momentum}")


class _ZeroBuffersInInit(_Validating):
    def extra(self, momentum: Any) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)


#: The catalogued mistakes of the constructor (their diagnoses are the rules').
INIT_MISTAKES = [
    Mistake("zero_buffers_in_init", STATE_PRECREATED, _ZeroBuffersInInit),
    Mistake("defaults_incomplete", _DEFAULTS_HINT, _DefaultsIncomplete),
    Mistake("wrong_exception_type", _SAME_TYPE, _WrongErrorType),
    Mistake("checks_after_super", _AFTER_SUPER.strip(), _ChecksAfterSuper),
    Mistake("momentum_above_one_rejected", _OVER_VALIDATION, _MomentumAboveOneRejected),
]


class _AmpFlagsMissing(_Validating):
    amp_flags = False


#: The production-parity mistakes: torch's exact messages and order, the fused
#: checks, the GradScaler flags.
PRODUCTION_MISTAKES = [
    Mistake("checks_in_other_order", _OTHER_ORDER.strip(), _ChecksInOtherOrder),
    Mistake("fused_checks_missing", _FUSED_AFTER.strip(), _FusedChecksMissing),
    Mistake("amp_flags_missing", _AMP_HINT, _AmpFlagsMissing),
]


# --------------------------------------------------------------------------
# The exercises
# --------------------------------------------------------------------------

_STEP_SCENARIOS = _step_scenarios()
_GRID = _grid_scenarios()
_FOREACH = _foreach_scenarios()
_INIT_PASSED = (f"torch's signature and defaults, defaults/param_groups as torch builds "
                f"them, {len(_INVALID)} invalid argument sets rejected with torch's exception "
                f"type, {len(_VALID)} valid ones accepted")

SGD_INIT = _sgd_exercise(
    "test_sgd_init", "sgd_init", _init_cases(), "SGD.__init__: " + _INIT_PASSED, _init_hidden,
    INIT_MISTAKES)

SGD_STEP = _sgd_exercise(
    "test_sgd_step", "sgd_step", _scenario_cases(_STEP_SCENARIOS),
    f"SGD.step: {len(_STEP_SCENARIOS)} scenarios x 4 steps bit-identical to torch.optim.SGD "
    "(momentum, dampening, nesterov, weight decay, maximize, None and late "
    "gradients, settings changed mid-run, param groups, float64, tensor lr), "
    "p.grad left untouched", _step_hidden, STEP_MISTAKES)

SGD_STATE = _sgd_exercise(
    "test_sgd_state", "sgd_state", _state_cases(),
    "SGD state: step(closure) calls the closure once with grad enabled and returns its "
    "value; state[p] == {'momentum_buffer': ...} only for stepped params; "
    "state_dict round trips with torch.optim.SGD both ways, StepLR, "
    "add_param_group, zero_grad and deepcopy match torch bit for bit", _state_hidden)

SGD_CLASS = _sgd_exercise(
    "test_sgd_class", "sgd_class",
    _init_cases() + _scenario_cases(_STEP_SCENARIOS) + _state_cases()
    + _scenario_cases(_GRID),
    f"SGD: constructor, {len(_STEP_SCENARIOS)} step scenarios, "
    f"closure/state/state_dict/StepLR and {len(_GRID)} MLP runs (every option, "
    "float32 and float64) bit-identical to torch.optim.SGD", _class_hidden,
    # the whole class: a step mistake comes with torch's constructor checks
    INIT_MISTAKES + [Mistake(m.name, m.diagnosis, type(m.impl.__name__, (m.impl, _Validating), {}))
                     for m in STEP_MISTAKES])

SGD_PRODUCTION = _sgd_exercise(
    "test_sgd_production", "sgd_production", _production_cases(),
    f"SGD production parity: {len(_INVALID) + len(_FUSED_INVALID)} invalid argument sets "
    "rejected with torch's exact exception and message in torch's order (the fused "
    "checks included), the GradScaler flags of fused=True, and "
    f"{len(_FOREACH)} foreach=True runs bit-identical to torch.optim.SGD (p.grad too)",
    _production_hidden, PRODUCTION_MISTAKES)


# --------------------------------------------------------------------------
# Predict, then run
# --------------------------------------------------------------------------

SAVED_BUFFER = ("unchanged", "changed")


def _saved_buffer_after_step() -> str:
    """sd = opt.state_dict() after one step, then one more step: is the buffer
    in sd still the one it held when sd was taken?"""
    model = _mlp()
    X, y = _batch()
    opt = _TORCH_SGD(model.parameters(), lr=0.1, momentum=0.9)
    for t in range(2):
        opt.zero_grad()
        nn.functional.mse_loss(model(X), y).backward()
        opt.step()
        if t == 0:
            sd = opt.state_dict()
            before = sd["state"][0]["momentum_buffer"].clone()
    return SAVED_BUFFER[0] if torch.equal(sd["state"][0]["momentum_buffer"], before) \
        else SAVED_BUFFER[1]


PREDICT_SAVED_BUFFER = Question(
    grade_id="test_predict_saved_buffer",
    name="predict_saved_buffer",
    answer=_saved_buffer_after_step,
    choices=SAVED_BUFFER,
    why=("state_dict() copies no tensor: sd['state'][0] is the optimizer's own entry for "
         "parameter 0, holding the live buffer tensor. The next step updates that buffer "
         "in place (buf.mul_(momentum).add_(g, ...)), so the 'saved' dict changes with it. "
         "Take a snapshot with copy.deepcopy(opt.state_dict()), or torch.save it."),
)


def _lr_after_three_steplr_steps() -> float:
    """lr of StepLR(step_size=2, gamma=0.1) from 0.1 after three scheduler steps."""
    opt = _TORCH_SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(3):
        opt.step()                       # (no gradient: nothing to update)
        sched.step()
    return float(opt.param_groups[0]["lr"])


PREDICT_STEPLR_LR = Question(
    grade_id="test_predict_steplr_lr",
    name="predict_steplr_lr",
    answer=_lr_after_three_steplr_steps,
    rtol=0.05,
    why=("StepLR multiplies group['lr'] by gamma once every step_size scheduler steps: "
         "after 3 steps the epoch counter is 3 and the lr has been decayed 3 // 2 = 1 "
         "time, 0.1 · 0.1 = 0.01 (the second decay comes at step 4)."),
)

#: The graded cells, in notebook order.
EXERCISES = [DECAY_GROUPS, GET_MOMENTUM_BUFFER, PREDICT_SAVED_BUFFER, SGD_INIT, SGD_STEP,
             SGD_STATE, SGD_CLASS, PREDICT_STEPLR_LR, SGD_PRODUCTION]


def mistake_class(name: str) -> type:
    """The wrong class of a catalogued mistake of ``step`` (for the notebook's
    demonstrations), e.g. ``mistake_class("cached_lr")``."""
    return {m.name: m.impl for m in STEP_MISTAKES}[name]
