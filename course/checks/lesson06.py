r"""Checks for lesson 06-optimizer-class.

The exercises use the ``torch.optim.Optimizer`` contract and end with a
hand-written ``class SGD(torch.optim.Optimizer)`` that must match
``torch.optim.SGD`` bit for bit:

- :func:`check_decay_groups` -- ``decay_groups(model, weight_decay)``
  builds two parameter groups: weights (``p.ndim >= 2``) with weight decay,
  everything else without.
- :func:`check_get_momentum_buffer` -- ``get_momentum_buffer(optimizer,
  param)`` reads ``optimizer.state`` without creating entries in it.
- :func:`check_sgd_init` -- the constructor: torch's signature, defaults,
  ``param_groups`` and validation (same exception types, messages, order).
- :func:`check_sgd_step` -- ``step``: trajectories compared with
  ``torch.equal`` in targeted scenarios, each designed to expose one classic
  mistake (dampening on the first step, a global step counter, weight decay
  after momentum, maximize by flipping the update, Nesterov with the old
  buffer, cached settings, ``p.grad`` modified, ``None`` gradients, ...).
- :func:`check_sgd_state` -- ``step(closure)``, the state layout,
  ``state_dict`` round trips with ``torch.optim.SGD`` in both directions,
  ``StepLR``, ``add_param_group``, ``zero_grad`` and ``deepcopy``.
- :func:`check_sgd_class` -- all of the above plus a grid over every option
  on the MLP ``Linear(10, 5) -> ReLU -> Linear(5, 1)`` in float32 and float64,
  and ``foreach=True`` runs that compare ``p.grad`` too (torch's foreach path
  with Nesterov adds the buffer into ``p.grad`` in place; the notebook gives
  ``foreach_nesterov_quirk`` for that).

When a trajectory differs, the check re-runs the failing scenario with each
wrong class of :mod:`course.checks.class_mistakes` and names the mistake whose
trajectory the learner's class follows; a result that is only a few ulp off
gets the fused multiply-add hint. A class that subclasses ``torch.optim.SGD``,
calls into ``torch.optim.sgd``, or hands a plain group to the notebook's given
fused helper (watched with :func:`sys.setprofile`) is rejected. The checks
never change the global RNG state.
"""

from __future__ import annotations

import copy
import inspect
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn

from course.checks import class_mistakes as cm
from course.checks._common import CheckFailure, call, fmt, passed, require_function
from course.sgd import option_grid

__all__ = [
    "check_decay_groups",
    "check_get_momentum_buffer",
    "check_sgd_init",
    "check_sgd_step",
    "check_sgd_state",
    "check_sgd_class",
]

_TORCH_SGD = torch.optim.SGD
_F32, _F64 = torch.float32, torch.float64


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def _mlp(dtype: torch.dtype = _F32, seed: int = 0) -> nn.Sequential:
    """The course's MLP, Linear(10, 5) -> ReLU -> Linear(5, 1), built without
    touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1))
    return model.to(dtype)


def _batch(dtype: torch.dtype = _F32, seed: int = 1) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(16, 10, generator=gen, dtype=dtype),
            torch.randn(16, 1, generator=gen, dtype=dtype))


def _same(x: Tensor, y: Tensor) -> bool:
    """Bit-identical (NaNs in the same places count as equal)."""
    if not (isinstance(x, Tensor) and isinstance(y, Tensor)):
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
    """x and y agree up to float32-level errors (for matching mutants)."""
    return x.shape == y.shape and bool(torch.allclose(
        x.double(), y.double(), rtol=2e-4, atol=2e-6, equal_nan=True))


def _source(cls: type) -> str:
    """The learner's source code (the methods of ``cls``), or '' if unavailable."""
    parts = []
    for klass in cls.__mro__:
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


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)}" if value.numel() > 1 else \
            f"tensor({value.item():g})"
    return fmt(value)


NOT_IMPLEMENTED = (
    "`{name}` is not implemented yet: replace `raise NotImplementedError()` "
    "with your code, run that cell, then run this check again.")


# --------------------------------------------------------------------------
# Exercise 6.1: decay_groups
# --------------------------------------------------------------------------

def _decay_models() -> list[tuple[str, nn.Module]]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return [
            ("the MLP Linear(10, 5) -> ReLU -> Linear(5, 1)", _mlp()),
            ("Linear(4, 8) -> LayerNorm(8) -> ReLU -> Linear(8, 2)",
             nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(),
                           nn.Linear(8, 2))),
            ("Conv2d(1, 2, 3) -> Flatten -> Linear(8, 3, bias=False)",
             nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(),
                           nn.Linear(8, 3, bias=False))),
        ]


def _names(model: nn.Module, tensors: Iterable[Tensor]) -> str:
    lookup = {id(p): n for n, p in model.named_parameters()}
    return "[" + ", ".join(lookup.get(id(t), "?") for t in tensors) + "]"


def check_decay_groups(fn: Callable[..., Any]) -> None:
    """Check ``decay_groups(model, weight_decay)``: two param groups, weights
    (``p.ndim >= 2``) with ``weight_decay``, all other tensors with 0."""
    require_function(fn, "decay_groups")
    n_cases = 0
    for (label, model), wd in zip(_decay_models(), (5e-4, 0.01, 0.1)):
        case = f"case '{label}, weight_decay={wd}'"
        params = list(model.parameters())
        named = dict((id(p), n) for n, p in model.named_parameters())
        before = [p.detach().clone() for p in params]
        out = call(fn, "decay_groups", case, model, wd)
        _check_groups_shape(out, case)
        groups = [dict(g) for g in out]
        for k, g in enumerate(groups):
            g["params"] = _group_params(g["params"], case, k, named)
        seen: list[Tensor] = [t for g in groups for t in g["params"]]
        ids = [id(t) for t in seen]
        for p in params:
            if ids.count(id(p)) > 1:
                raise CheckFailure(f"{case}: `{named[id(p)]}` is in your groups "
                                   "twice. Each parameter must be in exactly one group "
                                   "(torch raises ValueError otherwise).")
            if id(p) not in ids:
                raise CheckFailure(f"{case}: `{named[id(p)]}` is missing from your "
                                   "groups: every parameter of model.parameters() must "
                                   "be in one of the two groups.")
        want = ([p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2])
        got = (groups[0]["params"], groups[1]["params"])
        if [id(t) for t in got[0]] != [id(t) for t in want[0]] or \
                [id(t) for t in got[1]] != [id(t) for t in want[1]]:
            raise CheckFailure(_group_split_hint(case, model, got, want))
        _check_group_decay(groups, wd, case)
        if not all(torch.equal(p, b) for p, b in zip(params, before)):
            raise CheckFailure(f"{case}: decay_groups changed the parameters' values; "
                               "it must only sort them into groups.")
        opt = _TORCH_SGD(call(fn, "decay_groups", case, model, wd), lr=0.1,
                         weight_decay=0.5)
        got_wd = [g["weight_decay"] for g in opt.param_groups]
        if got_wd != [wd, 0.0]:
            raise CheckFailure(f"{case}: torch.optim.SGD(decay_groups(model, {wd}), "
                               f"lr=0.1, weight_decay=0.5) gives groups with weight "
                               f"decay {got_wd}, expected [{wd}, 0.0].")
        n_cases += 1
    passed(f"decay_groups: {n_cases} models split into [weights (ndim >= 2) with "
           "weight_decay, biases/norm scales with 0], in model order, "
           "accepted by torch.optim.SGD")


def _check_groups_shape(out: Any, case: str) -> None:
    if out is None:
        raise CheckFailure(f"{case}: `decay_groups` returned None.\n  Diagnosis: did "
                           "you forget `return [decay_group, no_decay_group]`?")
    if not isinstance(out, (list, tuple)):
        raise CheckFailure(f"{case}: `decay_groups` returned a {type(out).__name__}; "
                           "return a list of two dicts, e.g. "
                           "[{'params': [...], 'weight_decay': wd}, "
                           "{'params': [...], 'weight_decay': 0.0}].")
    if len(out) != 2:
        raise CheckFailure(f"{case}: `decay_groups` returned {len(out)} groups; "
                           "return exactly two (decay first, then no decay).")
    for k, g in enumerate(out):
        if not isinstance(g, dict):
            raise CheckFailure(f"{case}: group {k} is a {type(g).__name__}; each "
                               "parameter group is a dict with the key 'params'.")
        if "params" not in g:
            raise CheckFailure(f"{case}: group {k} has no 'params' key (keys: "
                               f"{sorted(g)}); torch finds a group's tensors "
                               "under 'params'.")


def _group_params(value: Any, case: str, k: int, named: dict[int, str]) -> list[Tensor]:
    if isinstance(value, Tensor) or not isinstance(value, (list, tuple)):
        kind = "a single tensor" if isinstance(value, Tensor) else \
            f"a {type(value).__name__}"
        extra = (" A generator or filter object is used up after one pass, so "
                 "the groups would be empty the second time anyone reads them."
                 if not isinstance(value, (Tensor, set, dict)) else "")
        raise CheckFailure(f"{case}: group {k}['params'] is {kind}; make it a list "
                           f"of tensors, e.g. `[p for p in model.parameters() if "
                           f"p.ndim >= 2]`.{extra}")
    for t in value:
        if isinstance(t, str):
            raise CheckFailure(f"{case}: group {k}['params'] holds names like {t!r}; "
                               "put the parameter tensors themselves in it (from "
                               "model.parameters(), or the second item of each "
                               "named_parameters() pair).")
        if isinstance(t, tuple):
            raise CheckFailure(f"{case}: group {k}['params'] holds (name, tensor) "
                               "pairs; keep only the tensors.")
        if not isinstance(t, Tensor) or id(t) not in named:
            raise CheckFailure(f"{case}: group {k}['params'] holds "
                               f"{_describe(t)}, which is not one of the model's "
                               "parameters. Put the Parameter objects themselves "
                               "(no copies, no .data, no .detach()): the optimizer "
                               "must update the model's own tensors.")
    return list(value)


def _group_split_hint(case: str, model: nn.Module, got: tuple, want: tuple) -> str:
    msg = (f"{case}: your groups are {_names(model, got[0])} and "
           f"{_names(model, got[1])}; expected {_names(model, want[0])} (ndim >= 2, "
           f"decayed) and {_names(model, want[1])} (no decay).")
    ids_got = [set(map(id, g)) for g in got]
    ids_want = [set(map(id, g)) for g in want]
    if ids_got == ids_want[::-1]:
        hint = ("the two groups are swapped: put the decayed weights first, the "
                "rest second.")
    elif ids_got == ids_want:
        hint = ("keep the order of model.parameters() inside each group (torch's "
                "state_dict numbers parameters in that order).")
    elif any(p.ndim < 2 and "bias" not in n and id(p) in ids_got[0]
             for n, p in model.named_parameters()):
        hint = ("you decided by name ('bias' or not). A LayerNorm/BatchNorm weight "
                "is a 1-D scale, not a weight matrix, and must not be decayed "
                "either: decide by shape, `p.ndim >= 2`.")
    else:
        hint = ("decay tensors with p.ndim >= 2 (weight matrices and conv "
                "kernels); 1-D tensors (biases, normalisation scales) go to the "
                "no-decay group.")
    return msg + "\n  Diagnosis: " + hint


def _check_group_decay(groups: list[dict], wd: float, case: str) -> None:
    for k, g in enumerate(groups):
        extra = set(g) - {"params", "weight_decay"}
        if extra:
            raise CheckFailure(f"{case}: group {k} has extra keys {sorted(extra)}; "
                               "give each group only 'params' and 'weight_decay' — "
                               "every other setting comes from the optimizer's "
                               "defaults.")
    if "weight_decay" not in groups[0]:
        raise CheckFailure(f"{case}: the first group has no 'weight_decay' key; "
                           f"set 'weight_decay': weight_decay ({wd}).")
    if "weight_decay" not in groups[1]:
        raise CheckFailure(
            f"{case}: the second group has no 'weight_decay' key.\n  Diagnosis: "
            "a group without the key is filled from the optimizer's defaults "
            "(setdefault), so torch.optim.SGD(groups, weight_decay=0.5) would "
            "decay the biases too. Set 'weight_decay': 0.0 explicitly.")
    if groups[0]["weight_decay"] != wd:
        raise CheckFailure(f"{case}: the first group has weight_decay "
                           f"{fmt(groups[0]['weight_decay'])}, expected {wd} "
                           "(the argument).")
    if groups[1]["weight_decay"] != 0:
        raise CheckFailure(f"{case}: the second group has weight_decay "
                           f"{fmt(groups[1]['weight_decay'])}, expected 0.0.")


# --------------------------------------------------------------------------
# Exercise 6.2: get_momentum_buffer
# --------------------------------------------------------------------------

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
    return model, opt


def check_get_momentum_buffer(fn: Callable[..., Any]) -> None:
    """Check ``get_momentum_buffer(optimizer, param)``: the buffer tensor
    itself, or None, without adding entries to ``optimizer.state``."""
    require_function(fn, "get_momentum_buffer")
    name = "get_momentum_buffer"
    cases = 0
    # 1. momentum = 0: no state at all
    model, opt = _trained(0.0)
    case = "case 'torch.optim.SGD(lr=0.05, momentum=0) after 2 steps'"
    for pname, p in model.named_parameters():
        out = _call_buffer(fn, case, opt, p)
        if out is not None:
            raise CheckFailure(f"{case}: for `{pname}` you returned "
                               f"{_describe(out)}; with momentum=0 there is no "
                               "buffer: return None.")
        if len(opt.state) != 0:
            raise CheckFailure(
                f"{case}: after your call optimizer.state has {len(opt.state)} "
                "entry (it was empty).\n  Diagnosis: optimizer.state is a "
                "defaultdict(dict): merely reading `optimizer.state[param]` inserts "
                "an empty dict for that parameter, which then shows up in "
                "state_dict(). Look it up without inserting: "
                "`optimizer.state.get(param, {}).get('momentum_buffer')`.")
        cases += 1
    # 2. momentum: every parameter has a buffer
    model, opt = _trained(0.9)
    case = "case 'torch.optim.SGD(lr=0.05, momentum=0.9) after 2 steps'"
    for pname, p in model.named_parameters():
        out = _call_buffer(fn, case, opt, p)
        buf = opt.state[p]["momentum_buffer"]
        if out is None:
            raise CheckFailure(f"{case}: for `{pname}` you returned None, but "
                               "optimizer.state[param] holds a 'momentum_buffer'.")
        if not isinstance(out, Tensor):
            raise CheckFailure(f"{case}: for `{pname}` you returned a "
                               f"{type(out).__name__}; return the tensor "
                               "optimizer.state[param]['momentum_buffer'].")
        if out is not buf:
            same = out.shape == buf.shape and torch.equal(out, buf)
            raise CheckFailure(
                f"{case}: for `{pname}` you returned "
                + ("a copy of the buffer" if same else "a different tensor")
                + "; return the buffer object itself "
                "(`optimizer.state[param]['momentum_buffer']`, no clone), so that "
                "it shows what the optimizer will use next step."
                + ("" if same else " Did you look up a different parameter?"))
        cases += 1
    # 3. a parameter that never had a gradient
    model, opt = _trained(0.9, frozen_last=True)
    p = model[2].bias
    case = ("case 'momentum=0.9, `2.bias` never had a gradient (frozen)'")
    out = _call_buffer(fn, case, opt, p)
    if out is not None:
        raise CheckFailure(f"{case}: you returned {_describe(out)}; a parameter "
                           "that has not been stepped has no buffer: return None.")
    if p in opt.state:
        raise CheckFailure(
            f"{case}: your call created an empty entry optimizer.state[param].\n"
            "  Diagnosis: optimizer.state is a defaultdict(dict), so "
            "`optimizer.state[param]` inserts {} for a missing key. Use "
            "`optimizer.state.get(param, {})` instead.")
    passed(f"{name}: {cases + 1} lookups return the buffer itself or None, and "
           "optimizer.state is never modified")


def _call_buffer(fn: Callable[..., Any], case: str, opt: Any, p: Tensor) -> Any:
    try:
        return fn(opt, p)
    except NotImplementedError:
        raise CheckFailure(NOT_IMPLEMENTED.format(name="get_momentum_buffer")) from None
    except KeyError as exc:
        raise CheckFailure(
            f"{case}: `get_momentum_buffer` raised KeyError: {exc}.\n  Diagnosis: "
            "a parameter without a buffer has no 'momentum_buffer' key (with "
            "momentum=0, or before its first step). Return None in that case: "
            "`optimizer.state.get(param, {}).get('momentum_buffer')`.") from None
    except Exception as exc:  # noqa: BLE001 - reported to the learner
        raise CheckFailure(f"{case}: `get_momentum_buffer` raised "
                           f"{type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------
# The SGD class: guarding the learner's code
# --------------------------------------------------------------------------

_SGD_FILE = inspect.getsourcefile(_TORCH_SGD) or ""
#: The notebook's given fused helper: the checks' scenarios never ask for that
#: path, so a call means the learner's loop was handed to it. (foreach groups are
#: the learner's own loop, plus the given ``foreach_nesterov_quirk``.)
_GIVEN_PATHS = ("fused_sgd",)


class _Guard:
    """Run the learner's code: watch for delegation to torch's SGD and turn
    exceptions into messages that name the case (with a hint if we know one)."""

    def __init__(self, case: str, what: str, hint: Callable[[BaseException], str | None]
                 | None = None) -> None:
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

    def __enter__(self) -> "_Guard":
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


def _delegation_message(hit: str) -> str:
    if hit.startswith("given:"):
        return cm.GIVEN_PATH.format(name=hit.split(":", 1)[1])
    if hit == "torch._fused_sgd_":
        how = "calls torch._fused_sgd_"
    elif hit.startswith("SGD.__init__"):
        how = "creates a torch.optim.SGD"
    elif hit.startswith("SGD."):
        how = f"calls torch.optim.SGD's {hit.split('.', 1)[1]}"
    else:
        how = f"calls torch.optim.sgd.{hit} (torch's own SGD code)"
    return cm.DELEGATES.format(name="Your SGD", how=how)


def _exception_hint(exc: BaseException) -> str | None:
    text = str(exc)
    if "leaf Variable that requires grad" in text:
        return cm.NO_GRAD_MISSING
    if "must be Number, not Tensor" in text:
        return cm.TENSOR_LR
    if isinstance(exc, AttributeError) and any(
            f"attribute '{name}" in text
            for name in ("param_groups'", "state'", "defaults'", "_optimizer")):
        return ("your optimizer lacks the attributes the base class sets up: call "
                "`super().__init__(params, defaults)` in __init__ (after your checks).")
    return None


def _require_class(cls: Any, check: str) -> None:
    """``cls`` must be the learner's class: a subclass of Optimizer, not of
    torch.optim.SGD."""
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
        require_function(cls, check)
    if issubclass(cls, _TORCH_SGD):
        raise CheckFailure(cm.DELEGATES.format(name=cls.__name__,
                                               how="subclasses torch.optim.SGD"))
    if not issubclass(cls, torch.optim.Optimizer):
        raise CheckFailure(cm.NOT_SUBCLASS.format(name=cls.__name__))


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


def _check_signature(cls: type) -> None:
    want = list(inspect.signature(_TORCH_SGD).parameters.values())
    try:
        got = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - exotic classes
        return
    sig = _signature_text()
    names_w, names_g = [p.name for p in want], [p.name for p in got]
    for p in want:
        if p.name not in names_g:
            raise CheckFailure(f"your SGD.__init__ has no parameter `{p.name}`. "
                               f"Use torch's exact signature:\n    {sig}")
    extra = [n for n in names_g if n not in names_w]
    if extra:
        raise CheckFailure(f"your SGD.__init__ has parameters torch's lacks: {extra}. "
                           f"Use torch's exact signature:\n    {sig}")
    if names_g != names_w:
        raise CheckFailure(f"your SGD.__init__ takes its parameters in the order "
                           f"{names_g}; torch's order is {names_w}:\n    {sig}")
    for pw, pg in zip(want, got):
        if pw.kind != pg.kind:
            kind = ("keyword-only (after the `*`)" if pw.kind is pw.KEYWORD_ONLY
                    else "positional-or-keyword (before the `*`)")
            raise CheckFailure(f"`{pw.name}` must be {kind}, as in torch:\n    {sig}")
        if pw.default is not pw.empty and (
                pg.default is pg.empty or type(pg.default) is not type(pw.default)
                or pg.default != pw.default):
            got_d = "no default" if pg.default is pg.empty else \
                f"default {pg.default!r} ({type(pg.default).__name__})"
            raise CheckFailure(
                f"`{pw.name}` has {got_d}; torch's default is {pw.default!r} "
                f"({type(pw.default).__name__}). Defaults end up in defaults, "
                f"param_groups and state_dict, so use torch's exactly:\n    {sig}")


def _params() -> list[Tensor]:
    gen = torch.Generator().manual_seed(7)
    return [torch.randn(3, generator=gen).requires_grad_(),
            torch.randn(2, 2, generator=gen).requires_grad_()]


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
    ("params=a bare tensor", lambda: torch.zeros(3, requires_grad=True), {}),
    ("params=[] (empty)", lambda: [], {}),
    ("params=a bare tensor, lr=-1", lambda: torch.zeros(3, requires_grad=True),
     dict(lr=-1.0)),
    ("params=a bare tensor, nesterov=True", lambda: torch.zeros(3, requires_grad=True),
     dict(nesterov=True)),
    ("fused=True, differentiable=True", _params, dict(fused=True, differentiable=True)),
    ("fused=True, foreach=True", _params, dict(fused=True, foreach=True)),
    ("params=a bare tensor, fused=True, foreach=True",
     lambda: torch.zeros(3, requires_grad=True), dict(fused=True, foreach=True)),
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
]

_ORDER = ("torch checks, in this order: a multi-element tensor lr, lr < 0, "
          "momentum < 0, weight_decay < 0, nesterov with momentum <= 0 or "
          "dampening != 0 -- all BEFORE super().__init__(params, defaults), which "
          "then checks params -- and only after it `fused` with `differentiable` "
          "or with `foreach`.")


def _raised(ctor: Callable[[], Any]) -> BaseException | None:
    try:
        ctor()
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


def _torch_messages() -> set[str]:
    msgs = set()
    for _, make, kw in _INVALID:
        exc = _raised(lambda: _TORCH_SGD(make(), **kw))
        if exc is not None:
            msgs.add(str(exc))
    return msgs


def _check_validation(cls: type) -> tuple[int, int]:
    known = _torch_messages()
    for label, make, kw in _INVALID:
        case = f"case 'SGD({label})'"
        want = _raised(lambda: _TORCH_SGD(make(), **kw))
        assert want is not None, label
        got = _construct_raising(cls, make, kw)
        _compare_exception(case, label, want, got, known)
    for label, make, kw in _VALID:
        case = f"case 'SGD({label})'"
        got = _construct_raising(cls, make, kw)
        if got is not None:
            raise CheckFailure(
                f"{case}: torch accepts this, but your SGD raised "
                f"{type(got).__name__}: {got}\n  Diagnosis: don't add checks that "
                "torch doesn't have. Torch only rejects a multi-element tensor lr, "
                "lr < 0, momentum < 0, weight_decay < 0 and nesterov with "
                "momentum <= 0 or dampening != 0; dampening is never checked, "
                "momentum > 1 is allowed, and per-group values are not validated.")
    return len(_INVALID), len(_VALID)


def _construct_raising(cls: type, make: Callable[[], Any], kw: dict) -> BaseException | None:
    guard = _Guard("", "")
    try:
        with guard:
            try:
                cls(make(), **copy.deepcopy(kw))
            except NotImplementedError:
                raise
            except Exception as exc:  # noqa: BLE001
                return exc
    except CheckFailure:
        raise
    return None


def _compare_exception(case: str, label: str, want: BaseException,
                       got: BaseException | None, known: set[str]) -> None:
    expected = f"{type(want).__name__}({str(want)!r})"
    if got is None:
        where = (" These two checks come AFTER super().__init__(params, defaults)."
                 if "fused" in label else "")
        raise CheckFailure(f"{case}: torch raises {expected}; your SGD accepted "
                           f"the arguments.{where}\n  Diagnosis: {_ORDER}")
    if type(got) is type(want) and str(got) == str(want):
        return
    actual = f"{type(got).__name__}({str(got)!r})"
    msg = f"{case}: torch raises {expected}; your SGD raised {actual}."
    if str(got) in known and str(got) != str(want):
        if "params argument" in str(got) or "empty parameter list" in str(got):
            hint = ("you validated the arguments after calling super().__init__ "
                    "(which checks params first). Validate lr, momentum, "
                    "weight_decay and nesterov BEFORE super().__init__(params, "
                    "defaults), as torch does. " + _ORDER)
        else:
            hint = "your checks run in a different order. " + _ORDER
    elif type(got) is not type(want):
        hint = (f"use the same exception type as torch: `raise "
                f"{type(want).__name__}(...)`, with the message {str(want)!r}.")
    else:
        hint = (f"use torch's message exactly: {str(want)!r} (an f-string with the "
                "value as given, e.g. f\"Invalid momentum value: {momentum}\").")
    raise CheckFailure(msg + "\n  Diagnosis: " + hint)


def _check_construction(cls: type) -> None:
    # defaults and param_groups with only params
    params = _params()
    opt = _build(cls, "case 'SGD(params)'", params)
    ref = _TORCH_SGD(params)
    _compare_layout(opt, ref, "case 'SGD(params)'")
    if len(opt.state) != 0:
        raise CheckFailure(f"case 'SGD(params)': {cm.STATE_PRECREATED}")
    for label, args, kw in [
        ("SGD(params, 0.1, 0.9, 0.5, 0.0001)", (0.1, 0.9, 0.5, 1e-4), {}),
        ("SGD(params, lr=0.1, momentum=0.9, nesterov=True, maximize=True, "
         "foreach=False)", (), dict(lr=0.1, momentum=0.9, nesterov=True,
                                    maximize=True, foreach=False)),
        ("SGD(params, lr=torch.tensor(0.01))", (), dict(lr=torch.tensor(0.01))),
    ]:
        case = f"case '{label}'"
        params = _params()
        opt = _build(cls, case, params, *args, **kw)
        _compare_layout(opt, _TORCH_SGD(params, *args, **kw), case)
        if isinstance(kw.get("lr"), Tensor) and opt.param_groups[0]["lr"] is not kw["lr"] \
                and opt.defaults["lr"] is not kw["lr"]:
            raise CheckFailure(f"{case}: keep a tensor lr as the very tensor given "
                               "(torch stores it as is; schedulers update it in "
                               "place with fill_). Don't convert it in __init__.")
    # groups: defaults are filled in with setdefault
    a, b = _params()
    groups = lambda: [{"params": [a], "lr": 0.5}, {"params": [b], "momentum": 0.5}]
    case = ("case 'SGD([{\"params\": [a], \"lr\": 0.5}, {\"params\": [b], "
            "\"momentum\": 0.5}], lr=0.1, momentum=0.9)'")
    opt = _build(cls, case, groups(), lr=0.1, momentum=0.9)
    ref = _TORCH_SGD(groups(), lr=0.1, momentum=0.9)
    _compare_layout(opt, ref, case)
    # add_param_group fills in the defaults as well
    c = torch.zeros(2, requires_grad=True)
    case = "case 'add_param_group({\"params\": [c], \"dampening\": 0.3})'"
    with _Guard(case, "add_param_group"):
        opt.add_param_group({"params": [c], "dampening": 0.3})
    ref.add_param_group({"params": [c], "dampening": 0.3})
    _compare_layout(opt, ref, case)


def _build(cls: type, case: str, *args: Any, **kw: Any) -> Any:
    with _Guard(case, "SGD(...)"):
        return cls(*args, **kw)


def _compare_layout(opt: Any, ref: Any, case: str) -> None:
    defaults = getattr(opt, "defaults", None)
    if not isinstance(defaults, dict):
        raise CheckFailure(f"{case}: your optimizer has no `defaults` dict: call "
                           "super().__init__(params, defaults).")
    diff = _diff_dict(defaults, ref.defaults)
    if diff:
        raise CheckFailure(
            f"{case}: your `defaults` differ from torch's: {diff}.\n  Diagnosis: "
            "build `defaults = dict(lr=lr, momentum=momentum, dampening=dampening, "
            "weight_decay=weight_decay, nesterov=nesterov, maximize=maximize, "
            "foreach=foreach, differentiable=differentiable, fused=fused)` with the "
            "values exactly as given, and pass it to super().__init__(params, "
            "defaults). Every key must be there: groups are filled from it, and "
            "state_dict() carries it to torch.optim.SGD.")
    groups = getattr(opt, "param_groups", None)
    if not isinstance(groups, list) or len(groups) != len(ref.param_groups):
        raise CheckFailure(f"{case}: expected {len(ref.param_groups)} param group(s), "
                           f"found {len(groups) if isinstance(groups, list) else groups!r}.")
    for k, (g, r) in enumerate(zip(groups, ref.param_groups)):
        if [id(p) for p in g.get("params", [])] != [id(p) for p in r["params"]]:
            raise CheckFailure(f"{case}: param_groups[{k}]['params'] must hold the "
                               "given tensors themselves, in order.")
        diff = _diff_dict({k2: v for k2, v in g.items() if k2 != "params"},
                          {k2: v for k2, v in r.items() if k2 != "params"})
        if diff:
            raise CheckFailure(f"{case}: param_groups[{k}] differs from torch's: "
                               f"{diff}.\n  Diagnosis: let the base class build the "
                               "groups -- super().__init__(params, defaults) fills each "
                               "group's missing keys from defaults (setdefault), so "
                               "group-specific values win.")


def _init_checks(cls: type) -> str:
    _require_class(cls, "sgd_init")
    _check_signature(cls)
    _check_construction(cls)
    n_bad, n_ok = _check_validation(cls)
    return (f"torch's signature and defaults, defaults/param_groups as torch builds "
            f"them, {n_bad} invalid argument sets rejected with torch's exception "
            f"and message (in torch's order), {n_ok} valid ones accepted")


def check_sgd_init(cls: Any) -> None:
    """Check the constructor of the learner's ``SGD`` class against
    ``torch.optim.SGD``: signature, defaults, param_groups and validation."""
    with torch.random.fork_rng(devices=[]):
        summary = _init_checks(cls)
    passed("SGD.__init__: " + summary)


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

    def run(self, cls: type, learner: bool = False) -> Trace:
        """Parameters after every step (``learner``: guarded and inspected)."""
        params, grads = self._problem()
        guard = (lambda what: _Guard(self.case, what, self._hint)) if learner else \
            (lambda what: _Null())
        if self.groups is None:
            spec: Any = params
        else:
            spec = [dict(opts, params=[params[i] for i in idx])
                    for opts, idx in self.groups]
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
            return cm.NONE_NOT_SKIPPED
        return self.hint

    def _inspect(self, opt: Any, params: list[Tensor], saved: list, t: int) -> None:
        where = f"{self.case}, step {t + 1}"
        for i, (p, s) in enumerate(zip(params, saved)):
            if s is None:
                continue
            if p.grad is not s[0]:
                raise CheckFailure(f"{where}: parameter {i}'s .grad is a different "
                                   f"tensor after step().\n  Diagnosis: {cm.GRAD_REPLACED}")
            if not self.grads and not _same(p.grad, s[1]):
                raise CheckFailure(f"{where}: parameter {i}'s .grad was changed by "
                                   f"step().\n  Diagnosis: {cm.GRAD_MODIFIED}")
            if p.grad_fn is not None or not p.is_leaf:
                raise CheckFailure(f"{where}: parameter {i} is no longer a leaf "
                                   "tensor (it has a grad_fn).\n  Diagnosis: "
                                   + cm.NO_GRAD_MISSING)
            state = getattr(opt, "state", {})
            buf = state.get(p, {}).get("momentum_buffer") if hasattr(state, "get") \
                else None
            if isinstance(buf, Tensor) and buf.numel() and \
                    buf.untyped_storage().data_ptr() == p.grad.untyped_storage().data_ptr():
                raise CheckFailure(f"{where}: the momentum buffer of parameter {i} "
                                   "shares memory with its .grad.\n  Diagnosis: "
                                   + cm.BUFFER_ALIASES_GRAD)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return False


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
        S("lr=0.1, momentum=0.9, dampening=0.5",
          dict(lr=0.1, momentum=0.9, dampening=0.5)),
        S("lr=0.1, momentum=0.9, weight_decay=0.1",
          dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
        S("lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True",
          dict(lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True)),
        S("lr=0.1, momentum=0.9, nesterov=True",
          dict(lr=0.1, momentum=0.9, nesterov=True)),
        S("lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05",
          dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05)),
        S("momentum=0.9, weight_decay=0.1; parameter 1's grad is None at step 2, "
          "parameter 2 never has a grad",
          dict(lr=0.1, momentum=0.9, weight_decay=0.1),
          none={0: (2,), 1: (1, 2), 2: (2,), 3: (2,)}),
        S("momentum=0.9, dampening=0.5; parameter 2's first grad arrives at step 3",
          dict(lr=0.1, momentum=0.9, dampening=0.5), none={0: (2,), 1: (2,)},
          hint=cm.LATE_GRAD_FAILED),
        S("momentum=0.9; group['lr'] changed from 0.1 to 0.02 before step 3 "
          "(as a scheduler does)", dict(lr=0.1, momentum=0.9),
          edit=_set_groups(2, lr=0.02)),
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
          hint=cm.TENSOR_LR),
        S("lr=torch.tensor([0.05]) (1-element, 1-D), float64",
          dict(lr=torch.tensor([0.05]), momentum=0.9, weight_decay=0.01), dtype=_F64,
          hint=cm.TENSOR_LR),
    ]


def _first_diff(ref: Trace, got: Trace) -> tuple[int, int] | None:
    for t, (r, g) in enumerate(zip(ref, got)):
        for i, (x, y) in enumerate(zip(r, g)):
            if not _same(x, y):
                return t, i
    return None


def _traces_match(a: Trace, b: Trace, same: Callable[[Tensor, Tensor], bool]) -> bool:
    return all(same(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def _diagnose(cls: type, run: Callable[[type], Trace], ref: Trace, got: Trace) -> str | None:
    """The diagnosis of the first mutant whose trajectory ``got`` follows."""
    for key in cm.MUTANTS:
        try:
            trace = run(cm.mutant(key))
        except Exception:  # noqa: BLE001 - a mutant may not apply here
            continue
        if _traces_match(trace, ref, _close):
            continue  # indistinguishable from torch in this scenario
        if _traces_match(got, trace, _close):
            if key == "dampen_first" and "zeros" in _source(cls):
                return cm.DIAGNOSES["zeros_buffer"]
            return cm.diagnosis(key)
    return None


def _compare(cls: type, case: str, run: Callable[[type], Trace], ref: Trace,
             got: Trace, what: str = "parameters", fallback: str | None = None) -> None:
    """Raise a CheckFailure (with a diagnosis) unless ``got`` equals ``ref``;
    ``fallback`` is the diagnosis when no known mistake explains the difference."""
    where = _first_diff(ref, got)
    if where is None:
        return
    t, i = where
    x, y = ref[t][i], got[t][i]
    hint = _diagnose(cls, run, ref, got)
    if hint is None and _traces_match(ref, got, _rounding_level):
        ulps = max(_ulps(a, b) for ra, rb in zip(ref, got) for a, b in zip(ra, rb))
        diff = max(float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
                   for ra, rb in zip(ref, got) for a, b in zip(ra, rb))
        hint = cm.ULP.format(ulps=ulps, diff=diff)
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
    msg = (f"{case}: your {what} differ from torch.optim.SGD's after step {t + 1}, "
           f"tensor {i} (shape {tuple(x.shape)}): {detail}.")
    if hint:
        msg += f"\n  Diagnosis: {hint}"
    raise CheckFailure(msg)


def _run_scenario(cls: type, sc: Scenario) -> None:
    ref = sc.run(_TORCH_SGD)
    got = sc.run(cls, learner=True)
    if not sc.grads:
        _compare(cls, sc.case, sc.run, ref, got)
        return
    n = len(ref[0]) // 2                       # rows: parameters, then their .grad
    _compare(cls, sc.case, lambda k: [row[:n] for row in sc.run(k)],
             [row[:n] for row in ref], [row[:n] for row in got], fallback=sc.hint)
    _compare_grads(sc, [row[n:] for row in ref], [row[n:] for row in got])


def _compare_grads(sc: Scenario, ref: Trace, got: Trace) -> None:
    """The parameters matched; now what step() left in p.grad."""
    where = _first_diff(ref, got)
    if where is None:
        return
    t, i = where
    x, y = ref[t][i], got[t][i]
    untouched = [row[len(row) // 2:] for row in sc.run(cm.mutant(""))]  # p.grad as given
    if _traces_match(got, untouched, _same):
        hint = cm.FOREACH_QUIRK_MISSING
    elif _traces_match(ref, untouched, _same):
        hint = cm.GRAD_MODIFIED
    else:
        hint = cm.FOREACH_QUIRK_WRONG
    raise CheckFailure(
        f"{sc.case}: your parameters match torch.optim.SGD's, but p.grad of tensor {i} "
        f"(shape {tuple(x.shape)}) differs after step {t + 1}: expected {fmt(x)}, got "
        f"{fmt(y)}.\n  Diagnosis: {hint}")


def _step_checks(cls: type) -> str:
    _require_class(cls, "sgd_step")
    scenarios = _step_scenarios()
    for sc in scenarios:
        _run_scenario(cls, sc)
    return (f"{len(scenarios)} scenarios x 4 steps bit-identical to torch.optim.SGD "
            "(momentum, dampening, nesterov, weight decay, maximize, None and late "
            "gradients, settings changed mid-run, param groups, float64, tensor lr), "
            "p.grad left untouched")


def check_sgd_step(cls: Any) -> None:
    """Check ``SGD.step`` against ``torch.optim.SGD`` with ``torch.equal`` in
    scenarios that each expose one classic mistake."""
    with torch.random.fork_rng(devices=[]):
        summary = _step_checks(cls)
    passed("SGD.step: " + summary)


# --------------------------------------------------------------------------
# State, closure, state_dict, schedulers
# --------------------------------------------------------------------------

class _ClosureNoGrad(CheckFailure):
    pass


def _check_closure(cls: type) -> None:
    case = "case 'loss = opt.step(closure), called inside torch.no_grad()'"

    def setup(k: type) -> tuple[Any, Any, Callable[[], Tensor], list]:
        model = _mlp()
        X, y = _batch()
        with _guards(case, k is not _TORCH_SGD)("SGD(...)"):
            opt = k(model.parameters(), lr=0.05, momentum=0.9)
        record: list = []

        def closure() -> Tensor:
            if not torch.is_grad_enabled():
                raise _ClosureNoGrad(f"{case}: {cm.CLOSURE_NO_ENABLE_GRAD}")
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(X), y)
            loss.backward()
            record.append(loss)
            return loss
        return model, opt, closure, record

    tm, topt, tclosure, _ = setup(_TORCH_SGD)
    lm, lopt, lclosure, record = setup(cls)
    for step in range(2):
        with torch.no_grad():
            topt.step(tclosure)
            with _Guard(case, "SGD.step(closure)"):
                ret = lopt.step(lclosure)
        if len(record) != step + 1:
            if len(record) == step:
                raise CheckFailure(f"{case}: {cm.CLOSURE_NOT_CALLED}")
            raise CheckFailure(f"{case}: "
                               + cm.CLOSURE_TWICE.format(n=len(record) - step))
        if ret is not record[-1]:
            got = "None" if ret is None else (
                "a different tensor" if isinstance(ret, Tensor) else
                f"a {type(ret).__name__}")
            raise CheckFailure(f"{case}: " + cm.CLOSURE_VALUE.format(got=got))
        for i, (a, b) in enumerate(zip(tm.parameters(), lm.parameters())):
            if not _same(a.detach(), b.detach()):
                raise CheckFailure(f"{case}: after step {step + 1} tensor {i} differs "
                                   f"from torch's.\n  Diagnosis: {cm.CLOSURE_AFTER_UPDATE}")
    # without a closure, step returns None
    X, y = _batch()
    nn.functional.mse_loss(lm(X), y).backward()
    with _Guard("case 'opt.step() without closure'", "SGD.step()"):
        ret = lopt.step()
    if ret is not None:
        raise CheckFailure("case 'opt.step() without closure': "
                           + cm.STEP_RETURN.format(got=_describe(ret)))


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


def _check_state_layout(cls: type) -> None:
    sc = Scenario("momentum=0.9, 3 steps, parameter 2 never has a grad",
                  dict(lr=0.1, momentum=0.9), steps=3, none={0: (2,), 1: (2,), 2: (2,)})
    case = sc.case
    params, grads = sc._problem()
    ref_params = [p.detach().clone().requires_grad_() for p in params]
    with _Guard(case, "SGD(...)"):
        opt = cls(params, lr=0.1, momentum=0.9)
    ref = _TORCH_SGD(ref_params, lr=0.1, momentum=0.9)
    if len(opt.state) != 0:
        raise CheckFailure(f"{case}: {cm.STATE_PRECREATED}")
    for t in range(sc.steps):
        grads(t)
        params[2].grad = None
        for p, q in zip(params, ref_params):
            q.grad = None if p.grad is None else p.grad.clone()
        with _Guard(case, f"step {t + 1}: SGD.step()"):
            opt.step()
        ref.step()
    state = opt.state
    if len(state) == 0:
        raise CheckFailure(f"{case}: " + cm.STATE_ELSEWHERE.format(
            momentum=0.9, where=_tensor_attrs(opt)))
    if params[2] in state:
        raise CheckFailure(f"{case}: {cm.STATE_NO_GRAD_PARAM}")
    for i, (p, q) in enumerate(zip(params[:2], ref_params[:2])):
        entry = state.get(p) if hasattr(state, "get") else None
        if not isinstance(entry, dict) or set(entry) != {"momentum_buffer"}:
            keys = sorted(entry) if isinstance(entry, dict) else entry
            if not entry:
                raise CheckFailure(f"{case}: state has no entry for parameter {i}; "
                                   + cm.STATE_ELSEWHERE.format(momentum=0.9,
                                                               where=_tensor_attrs(opt)))
            raise CheckFailure(f"{case}: " + cm.STATE_KEY.format(keys=keys))
        buf, want = entry["momentum_buffer"], ref.state[q]["momentum_buffer"]
        if not _same(buf, want):
            raise CheckFailure(
                f"{case}: state[p]['momentum_buffer'] of parameter {i} differs from "
                f"torch's buffer (expected {fmt(want)}, got {fmt(buf)}).\n  Diagnosis: "
                "store the momentum buffer b itself (updated in place), not the "
                "step direction d or a copy made before the update.")
    # momentum = 0: no state at all
    sc0 = Scenario("momentum=0, 3 steps", dict(lr=0.1), steps=3)
    params, grads = sc0._problem()
    with _Guard(sc0.case, "SGD(...)"):
        opt = cls(params, lr=0.1)
    for t in range(3):
        grads(t)
        with _Guard(sc0.case, f"step {t + 1}: SGD.step()"):
            opt.step()
    if len(opt.state) != 0:
        raise CheckFailure(f"{sc0.case}: " + cm.STATE_MOMENTUM0.format(n=len(opt.state)))


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
            row.append(torch.tensor([float(g["lr"]) for g in opt.param_groups],
                                    dtype=_F64))
        trace.append(row)


def _guards(case: str, learner: bool) -> Callable[[str], Any]:
    return (lambda what: _Guard(case, what)) if learner else (lambda what: _Null())


_OPTS = dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)


def _flow_torch_to_yours(cls: type, learner: bool = False) -> Trace:
    case = "case 'state_dict from torch.optim.SGD loaded into your SGD'"
    guard = _guards(case, learner)
    X, y = _batch()
    model = _mlp()
    tor = _TORCH_SGD(model.parameters(), **_OPTS)
    trace: Trace = []
    _train(model, tor, 3, trace, _guards(case, False), X, y)
    mine = copy.deepcopy(model)
    with guard("SGD(...)"):
        opt = cls(mine.parameters(), lr=0.5)
    with guard("load_state_dict()"):
        opt.load_state_dict(copy.deepcopy(tor.state_dict()))
    _train(mine, opt, 3, trace, guard, X, y)
    return trace


def _flow_yours_to_torch(cls: type, learner: bool = False) -> Trace:
    case = "case 'state_dict of your SGD loaded into torch.optim.SGD'"
    guard = _guards(case, learner)
    X, y = _batch()
    model = _mlp()
    with guard("SGD(...)"):
        opt = cls(model.parameters(), **_OPTS)
    trace: Trace = []
    _train(model, opt, 3, trace, guard, X, y)
    with guard("state_dict()"):
        sd = copy.deepcopy(opt.state_dict())
    theirs = copy.deepcopy(model)
    tor = _TORCH_SGD(theirs.parameters(), lr=0.5)
    if learner:
        ref_sd = _reference_state_dict()
        _compare_state_dicts(case, sd, ref_sd)
    try:
        tor.load_state_dict(sd)
    except Exception as exc:  # noqa: BLE001
        raise CheckFailure(f"{case}: torch.optim.SGD.load_state_dict(your state_dict) "
                           f"raised {type(exc).__name__}: {exc}") from None
    _train(theirs, tor, 3, trace, _guards(case, False), X, y)
    return trace


def _reference_state_dict() -> dict:
    X, y = _batch()
    model = _mlp()
    opt = _TORCH_SGD(model.parameters(), **_OPTS)
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
            raise CheckFailure(f"{case}: " + cm.STATE_KEY.format(keys=sorted(g)))


def _flow_scheduler(cls: type, learner: bool = False) -> Trace:
    case = "case 'StepLR(opt, step_size=2, gamma=0.5) for 6 epochs'"
    guard = _guards(case, learner)
    X, y = _batch()
    model = _mlp()
    with guard("SGD(...)"):
        opt = cls(model.parameters(), lr=0.1, momentum=0.9)
    with guard("StepLR(...)"):
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    trace: Trace = []
    _train(model, opt, 6, trace, guard, X, y, sched)
    return trace


def _flow_add_group(cls: type, learner: bool = False) -> Trace:
    case = ("case 'SGD(model[0].parameters(), lr=0.1, momentum=0.9); after 2 steps "
            "add_param_group({params: model[2], lr: 0.05, dampening: 0.3})'")
    guard = _guards(case, learner)
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


def _flow_deepcopy(cls: type, learner: bool = False) -> Trace:
    case = "case 'copy.deepcopy((model, opt)) after 2 steps, then both continue'"
    guard = _guards(case, learner)
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


def _flow_zero_grad(cls: type, learner: bool = False) -> Trace:
    case = "case 'zero_grad() and zero_grad(set_to_none=False)'"
    guard = _guards(case, learner)
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


_FLOWS: list[tuple[str, Callable[..., Trace]]] = [
    ("case 'zero_grad() and zero_grad(set_to_none=False)'", _flow_zero_grad),
    ("case 'state_dict from torch.optim.SGD loaded into your SGD, then 3 more steps'",
     _flow_torch_to_yours),
    ("case 'state_dict of your SGD loaded into torch.optim.SGD, then 3 more steps'",
     _flow_yours_to_torch),
    ("case 'StepLR(opt, step_size=2, gamma=0.5) for 6 epochs'", _flow_scheduler),
    ("case 'add_param_group after 2 steps'", _flow_add_group),
    ("case 'copy.deepcopy((model, opt)) after 2 steps, then both continue'",
     _flow_deepcopy),
]


def _state_checks(cls: type) -> str:
    _require_class(cls, "sgd_state")
    _check_closure(cls)
    _check_state_layout(cls)
    for case, flow in _FLOWS:
        ref = flow(_TORCH_SGD)
        got = flow(cls, learner=True)
        _compare(cls, case, flow, ref, got, what="results")
    return ("step(closure) calls the closure once with grad enabled and returns its "
            "value; state[p] == {'momentum_buffer': ...} only for stepped params; "
            "state_dict round trips with torch.optim.SGD both ways, StepLR, "
            "add_param_group, zero_grad and deepcopy match torch bit for bit")


def check_sgd_state(cls: Any) -> None:
    """Check the learner's ``SGD`` as an Optimizer: closure, state layout,
    state_dict with torch.optim.SGD both ways, StepLR, add_param_group, copies."""
    with torch.random.fork_rng(devices=[]):
        summary = _state_checks(cls)
    passed("SGD state: " + summary)


# --------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------

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
          steps=4, none={2: (3,)}, model="mlp", grads=True, hint=cm.FOREACH_QUIRK_PLACE),
        S("MLP float64, foreach=True, momentum=0.9, nesterov=True, weight_decay=0.05",
          dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05, foreach=True),
          steps=3, dtype=_F64, model="mlp", grads=True, hint=cm.FOREACH_QUIRK_PLACE),
        S("MLP float32, foreach=True, momentum=0.9, dampening=0.3, maximize=True",
          dict(lr=0.05, momentum=0.9, dampening=0.3, maximize=True, foreach=True),
          steps=3, model="mlp", grads=True, hint=cm.FOREACH_QUIRK_PLACE),
    ]


def check_sgd_class(cls: Any) -> None:
    """Check the learner's whole ``SGD`` class: constructor, step scenarios,
    state/closure/state_dict/scheduler, then a grid of every option on the MLP
    in float32 and float64 -- all bit-identical to torch.optim.SGD."""
    _require_class(cls, "sgd_class")
    with torch.random.fork_rng(devices=[]):
        _init_checks(cls)
        _step_checks(cls)
        _state_checks(cls)
        grid = _grid_scenarios()
        foreach = _foreach_scenarios()
        for sc in grid + foreach:
            _run_scenario(cls, sc)
    passed(f"SGD: constructor, {len(_step_scenarios())} step scenarios, "
           f"closure/state/state_dict/StepLR, {len(grid)} MLP runs (every option, "
           f"float32 and float64) and {len(foreach)} foreach=True runs (p.grad too) "
           "bit-identical to torch.optim.SGD")
