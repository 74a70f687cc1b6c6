r"""Checks for lesson 08-fast-sgd.

The lesson makes ``step()`` fast without changing a single bit of its result:

- :func:`check_step_op_counts` -- how many tensor operations one step of the
  for-loop and of the foreach update dispatches (measured live on
  ``torch.optim.SGD``);
- :func:`check_group_by_device_and_dtype` -- indices of a list of tensors
  grouped by ``(device, dtype)``, first-seen order, ascending indices;
- :func:`check_foreach_sgd_update` -- the multi-tensor update of one group
  with ``torch._foreach_*`` kernels, compared **bit for bit** with torch's
  rule applied tensor by tensor; it must also be a real foreach update (its
  number of operations may not grow with the number of tensors);
- :func:`check_foreach_sgd_class` -- ``ForeachSGD(SGD)`` compared bit for bit
  with ``torch.optim.SGD(foreach=True)`` over torch's own option grid.

A wrong value is compared with the classic mistakes (``p - lr * d`` instead
of ``p.add_(d, alpha=-lr)``, a zero-initialised buffer, a buffer aliasing the
gradient, gradients changed in place, maximize as a flipped lr, ...): if the
learner's tensors equal one of those variants, the check names it. Results
within a few ulp of torch's get the fused multiply-add hint with the number
of ulp.
"""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any, Callable

import torch
from torch import Tensor

from course.checks._common import (
    CheckFailure,
    call,
    close,
    fmt,
    learner_code,
    mismatch,
    passed,
    require_function,
)
from course.floating_point import max_ulp_distance
from course.timing import count_ops, params_with_grads

__all__ = [
    "check_step_op_counts",
    "check_group_by_device_and_dtype",
    "check_foreach_sgd_update",
    "check_foreach_sgd_class",
]

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


def _ulp(a: Tensor, b: Tensor) -> float:
    """Largest distance in ulps between two float tensors (inf if incomparable)."""
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        return float("inf")
    try:
        return float(max_ulp_distance(a.detach(), b.detach()))
    except (TypeError, ValueError):  # other dtype/shape, inf or NaN
        return 0.0 if a.shape == b.shape and torch.equal(a, b) else float("inf")


def _bit_mismatch(case: str, expected: Any, actual: Any,
                  hint: str | None = None) -> CheckFailure:
    """Like :func:`mismatch`, but for tensors that should be equal bit for bit:
    names the first differing element with all its digits."""
    if (isinstance(expected, Tensor) and isinstance(actual, Tensor)
            and expected.shape == actual.shape and expected.dtype == actual.dtype
            and expected.is_floating_point()):
        e, a = expected.detach(), actual.detach()
        diff = (e != a) & ~(e.isnan() & a.isnan())
        where = diff.nonzero()
        if len(where):
            pos = tuple(int(i) for i in where[0])
            digits = 17 if e.dtype == torch.float64 else 9
            at = f"index {pos}" if pos else "the value"
            msg = (f"{case}: {int(diff.sum())} of {e.numel()} values differ; first at "
                   f"{at}: expected {float(e[pos]):.{digits}g}, got "
                   f"{float(a[pos]):.{digits}g} ({e.dtype}).")
            if hint:
                msg += f"\n  Diagnosis: {hint}"
            return CheckFailure(msg)
    return mismatch(case, expected, actual, hint)


def _max_ulp(actual: list[Tensor], expected: list[Tensor]) -> float:
    return max((_ulp(a, e) for a, e in zip(actual, expected)), default=0.0)


def _source(fn: Any) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


def _same_storage(a: Tensor, b: Tensor) -> bool:
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    except RuntimeError:  # pragma: no cover - exotic tensors
        return a is b


def _per_tensor_ops(counts: Counter[str]) -> Counter[str]:
    """The dispatched ops that are not foreach ops and not views."""
    return Counter({k: v for k, v in counts.items()
                    if not k.startswith("_foreach") and k not in ("detach", "alias")})


def _describe(counts: Counter[str]) -> str:
    return ", ".join(f"{k} ×{v}" for k, v in counts.most_common(4))


# --------------------------------------------------------------------------
# Exercise 8.1: step_op_counts
# --------------------------------------------------------------------------

def _measured_op_counts(n: int, opts: dict[str, Any]) -> tuple[int, int]:
    """Ops dispatched by a later step of torch.optim.SGD, for-loop and foreach."""
    gen = torch.Generator().manual_seed(n)
    out = []
    for foreach in (False, True):
        params = [torch.randn(3, generator=gen).requires_grad_() for _ in range(n)]
        for p in params:
            p.grad = torch.randn(3, generator=gen)
        opt = torch.optim.SGD(params, lr=0.1, foreach=foreach, **opts)
        opt.step()                                  # creates the buffers
        out.append(sum(count_ops(opt.step, include_views=False).values()))
    return out[0], out[1]


def _op_count_variants(n: int, opts: dict[str, Any]) -> list[tuple[str, tuple[int, int]]]:
    mom = int(opts.get("momentum", 0) != 0)
    mx = int(bool(opts.get("maximize", False)))
    wd = int(opts.get("weight_decay", 0) != 0)
    nest = int(bool(opts.get("nesterov", False)))
    k = 1 + mx + wd + 2 * mom + nest

    def both(per: int) -> tuple[int, int]:
        return n * per, per

    return [
        ("you returned (foreach_ops, loop_ops): the FIRST number is the "
         "for-loop's count.", (k, n * k)),
        ("your foreach count grows with the number of tensors: one "
         "`torch._foreach_*` call handles the whole list, so foreach_ops is the "
         "number of LINES of the update, independent of n_tensors.", (n * k, n * k)),
        ("your foreach count is 1: each line of the update is its own foreach "
         "call (neg, add for weight decay, mul_ and add_ for momentum, add for "
         "nesterov, add_ for the parameter).", (n * k, 1)),
        ("you forgot the parameter update itself: `p.add_(d, alpha=-lr)` is one "
         "op per tensor (and one `_foreach_add_` for the list).", both(k - 1)),
        ("momentum costs TWO ops per tensor on a later step: `buf.mul_(momentum)` "
         "and `.add_(g, alpha=1 - dampening)` (a chained call is still two ops).",
         both(k - mom)),
        ("on a later step the buffers already exist: there is no clone, only "
         "`buf.mul_(momentum).add_(g, alpha=1 - dampening)`.", both(k + mom)),
        ("maximize costs one op: the gradient is negated (`-g`, aten::neg) "
         "before anything else.", both(k - mx)),
        ("weight decay costs one op: `g.add(p, alpha=weight_decay)`.", both(k - wd)),
        ("nesterov costs one more op: `g.add(buf, alpha=momentum)`.", both(k - nest)),
    ]


def check_step_op_counts(step_op_counts: Callable[..., Any]) -> None:
    """Check ``step_op_counts(n_tensors, *, momentum, weight_decay, nesterov,
    maximize) -> (loop_ops, foreach_ops)`` against the ops that
    ``torch.optim.SGD`` really dispatches on a later step."""
    name = "step_op_counts"
    require_function(step_op_counts, name)
    cases: list[tuple[int, dict[str, Any]]] = [
        (4, {}),
        (100, {"momentum": 0.9}),
        (10, {"momentum": 0.9, "weight_decay": 1e-4}),
        (7, {"momentum": 0.9, "nesterov": True}),
        (3, {"weight_decay": 0.1, "maximize": True}),
        (1, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1, "maximize": True}),
        (5, {"weight_decay": 0.1}),
    ]
    results = []
    for n, opts in cases:
        label = ", ".join([f"n_tensors={n}"] + [f"{k}={v}" for k, v in opts.items()])
        case = f"case '{label}'"
        out = call(step_op_counts, name, case, n, **opts)
        if out is None:
            raise CheckFailure(f"{case}: `{name}` returned None.\n  Diagnosis: did "
                               "you forget `return loop_ops, foreach_ops`?")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise CheckFailure(f"{case}: `{name}` must return a pair (loop_ops, "
                               f"foreach_ops), got {type(out).__name__} {fmt(out)}.")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in out):
            raise CheckFailure(f"{case}: both counts must be ints, got "
                               f"{fmt(tuple(out))} ({', '.join(type(v).__name__ for v in out)}).")
        results.append((case, n, opts, (int(out[0]), int(out[1])),
                        _measured_op_counts(n, opts)))
    for case, n, opts, got, expected in results:
        if got == expected:
            continue
        # A mistake explains the learner's answers if it reproduces ALL of them.
        variants = [_op_count_variants(n_, o_) for _, n_, o_, _, _ in results]
        hint = None
        for j, (h, v) in enumerate(_op_count_variants(n, opts)):
            if v == got and v != expected and all(
                    vs[j][1] == g for vs, (_, _, _, g, _) in zip(variants, results)):
                hint = h
                break
        if hint is None:
            hint = next((h for h, v in _op_count_variants(n, opts)
                         if v == got and v != expected), None)
        raise mismatch(f"{case} (measured on torch.optim.SGD)", expected, got, hint)
    passed(f"{name}: {len(cases)} cases equal the ops torch.optim.SGD dispatches "
           "on a later step (n_tensors × ops per tensor for the for-loop, one "
           "foreach call per line of the update)")


# --------------------------------------------------------------------------
# Exercise 8.2: group_by_device_and_dtype
# --------------------------------------------------------------------------

def _group_cases() -> list[tuple[str, list[Tensor]]]:
    f32, f64, f16 = torch.float32, torch.float64, torch.float16
    cpu = lambda *shape, dtype=f32: torch.zeros(*shape, dtype=dtype)  # noqa: E731
    meta = lambda *shape, dtype=f32: torch.empty(*shape, dtype=dtype, device="meta")  # noqa: E731
    return [
        ("empty list", []),
        ("4 float32 tensors of different shapes", [cpu(3, 2), cpu(3), cpu(1, 3), cpu(1)]),
        ("float32/float64 interleaved", [cpu(2), cpu(2, dtype=f64), cpu(4),
                                         cpu(1, dtype=f64), cpu(3, dtype=f64)]),
        ("float64 first, then float16 and float32",
         [cpu(2, dtype=f64), cpu(2, dtype=f16), cpu(5, dtype=f64), cpu(1)]),
        ("cpu and meta devices, float32 and float64",
         [cpu(2), meta(2), cpu(3), meta(1, dtype=f64), cpu(2, dtype=f64), meta(4)]),
    ]


def _group_reference(tensors: list[Tensor]) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return groups


def _key_hint(key: Any) -> str | None:
    """Diagnosis for a dict key that is not a (torch.device, torch.dtype) pair."""
    if isinstance(key, torch.dtype):
        return ("your keys are dtypes only. A foreach kernel takes tensors of ONE "
                "device and ONE dtype, so group by both: "
                "`key = (t.device, t.dtype)`.")
    if isinstance(key, torch.device):
        return "your keys are devices only: group by `(t.device, t.dtype)`."
    if not isinstance(key, tuple):
        return f"each key must be the tuple `(t.device, t.dtype)`, got {type(key).__name__}."
    if len(key) == 2 and isinstance(key[0], torch.dtype) and isinstance(key[1], torch.device):
        return "your keys are (dtype, device): use the order `(t.device, t.dtype)`."
    if len(key) > 2:
        return ("your keys have more than device and dtype (the shape?). Foreach "
                "kernels accept tensors of different shapes in one list: group only "
                "by `(t.device, t.dtype)`, or you split the update into needlessly "
                "many calls.")
    if len(key) == 2 and isinstance(key[1], torch.dtype) and not isinstance(key[0], torch.device):
        return ("the device in your key is a " + type(key[0]).__name__ + " (" +
                repr(key[0]) + "): use the tensor's `t.device` itself, a torch.device.")
    if len(key) == 2 and isinstance(key[0], torch.device) and not isinstance(key[1], torch.dtype):
        return "the second element of each key must be `t.dtype` (a torch.dtype)."
    return None


def check_group_by_device_and_dtype(group_by_device_and_dtype: Callable[..., Any]) -> None:
    """Check ``group_by_device_and_dtype(tensors) -> {(device, dtype): [indices]}``."""
    name = "group_by_device_and_dtype"
    require_function(group_by_device_and_dtype, name)
    cases = _group_cases()
    for label, tensors in cases:
        case = f"case '{label}'"
        given = list(tensors)
        out = call(group_by_device_and_dtype, name, case, given)
        if out is None:
            raise CheckFailure(f"{case}: `{name}` returned None.\n  Diagnosis: did "
                               "you forget `return groups`?")
        if len(given) != len(tensors) or any(a is not b for a, b in zip(given, tensors)):
            raise CheckFailure(f"{case}: `{name}` changed the list it was given "
                               "(sorted or removed items).\n  Diagnosis: only read "
                               "`tensors`; build a new dict.")
        if not isinstance(out, dict):
            raise CheckFailure(f"{case}: expected a dict {{(device, dtype): [indices]}}, "
                               f"got {type(out).__name__} {fmt(out)}.")
        expected = _group_reference(tensors)
        for key, value in out.items():
            hint = _key_hint(key)
            if hint is not None:
                raise CheckFailure(f"{case}: got the key {key!r}.\n  Diagnosis: {hint}")
            if not isinstance(value, list):
                raise CheckFailure(f"{case}: the value for {key!r} must be a list of "
                                   f"indices, got {type(value).__name__}.\n  Diagnosis: "
                                   "`groups.setdefault(key, []).append(i)`.")
            if any(isinstance(v, Tensor) for v in value):
                raise CheckFailure(
                    f"{case}: the values must be INDICES (ints), you stored tensors."
                    "\n  Diagnosis: append `i` (from `enumerate(tensors)`), not `t`: "
                    "the caller needs the positions to put each group's new momentum "
                    "buffers back in the right place.")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise CheckFailure(f"{case}: the indices for {key!r} must be ints, got "
                                   f"{value!r}.")
        if set(out) != set(expected):
            raise CheckFailure(f"{case}: expected the groups {list(expected)}, got "
                               f"{list(out)}.\n  Diagnosis: one group per distinct "
                               "`(t.device, t.dtype)` of the tensors.")
        for key, idx in expected.items():
            got = out[key]
            if got != idx:
                if sorted(got) == idx:
                    hint = ("you lost the order: the indices of a group must be "
                            "ascending, in the order of the input list (a set or a "
                            "sort by something else reorders them). Loop "
                            "`for i, t in enumerate(tensors)` and append.")
                else:
                    hint = ("every index 0 … len(tensors) − 1 must appear exactly once, "
                            "in the group of its tensor's (device, dtype).")
                raise mismatch(f"{case}, group {key}", idx, got, hint)
        if list(out) != list(expected):
            raise CheckFailure(
                f"{case}: the groups come in the order {list(out)}, expected "
                f"{list(expected)}.\n  Diagnosis: keep the order in which each "
                "(device, dtype) first appears (a plain dict with setdefault does; "
                "don't sort the keys) so the update runs in a predictable order.")
    passed(f"{name}: {len(cases)} cases (empty, one group, mixed dtypes, cpu and meta "
           "devices) give {(device, dtype): [ascending indices]} in first-seen order")


# --------------------------------------------------------------------------
# Exercise 8.3: foreach_sgd_update
# --------------------------------------------------------------------------

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


def _update_inputs(n: int, dtype: torch.dtype, state: str, seed: int
                   ) -> tuple[list[Tensor], list[Tensor], list[Tensor | None]]:
    gen = torch.Generator().manual_seed(seed)

    def rand(shape: tuple[int, ...], scale: float = 1.0) -> Tensor:
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    shapes = [_SHAPES[i % len(_SHAPES)] for i in range(n)]
    params = [rand(s) for s in shapes]
    grads = [rand(s, 0.7) for s in shapes]
    if state == "first":
        bufs: list[Tensor | None] = [None] * n
    elif state == "later":
        bufs = [rand(s, 0.5) for s in shapes]
    else:
        bufs = [None if i % 3 == 1 else rand(s, 0.5) for i, s in enumerate(shapes)]
    return params, grads, bufs


def _full_opts(opts: dict[str, Any]) -> dict[str, Any]:
    full = {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
            "nesterov": False, "maximize": False}
    full.update(opts)
    return full


def _variant(params: list[Tensor], grads: list[Tensor], bufs: list[Tensor | None],
             o: dict[str, Any], variant: str | None = None
             ) -> tuple[list[Tensor], list[Tensor | None]]:
    """Torch's per-tensor update (variant None) or a classic mistake, out of place."""
    lr = float(o["lr"])
    m, tau, wd = o["momentum"], o["dampening"], o["weight_decay"]
    new_p: list[Tensor] = []
    new_b: list[Tensor | None] = []
    mixed = any(b is None for b in bufs) and any(b is not None for b in bufs)
    flip = variant == "flip_lr" and o["maximize"]
    negate_last = variant == "maximize_after_wd" and o["maximize"]
    for p, grad, buf in zip(params, grads, bufs):
        p = p.clone()
        g = grad
        if o["maximize"] and not (flip or negate_last):
            g = -g
        if wd != 0 and variant != "decoupled_wd":
            g = g + p * wd if variant == "fma_wd" else g.add(p, alpha=wd)
        if negate_last:
            g = -g
        b_new: Tensor | None = None
        if m != 0:
            restart = variant == "restart" or (variant == "restart_mixed" and mixed)
            if buf is None or restart:
                if variant == "zero_init" and buf is None:
                    b_new = torch.zeros_like(g).mul_(m).add_(g, alpha=1 - tau)
                else:
                    b_new = g.clone()
            elif variant == "fma_momentum":
                b_new = buf * m + g * (1 - tau)
            elif variant == "no_dampening":
                b_new = buf.mul(m).add_(g)
            elif variant == "ema":
                b_new = buf.mul(m).add_(g, alpha=1 - m)
            elif variant == "no_decay":
                b_new = buf.add(g, alpha=1 - tau)
            else:
                b_new = buf.mul(m).add_(g, alpha=1 - tau)
            if variant == "old_buffer" and buf is not None:
                d = buf
            elif o["nesterov"] and variant == "nesterov_ignored":
                d = b_new
            elif o["nesterov"] and variant == "nesterov_old" and buf is not None:
                d = g.add(buf, alpha=m)
            elif o["nesterov"]:
                d = g + b_new * m if variant == "fma_nesterov" else g.add(b_new, alpha=m)
            else:
                d = b_new
        else:
            d = g
        if variant == "decoupled_wd" and wd != 0:
            d = d.add(p, alpha=wd)
        if variant == "fma_param":
            p = p + d * (-lr)
        elif variant == "uphill" or flip:
            p.add_(d, alpha=lr)
        elif variant == "no_lr":
            p.sub_(d)
        elif variant == "params_unchanged":
            pass
        else:
            p.add_(d, alpha=-lr)
        new_p.append(p)
        new_b.append(buf.clone() if variant == "stale" and buf is not None else b_new)
    return new_p, new_b


_FMA_VARIANTS = {
    "fma_param": ("your parameter update rounds twice (`p - lr * d` or "
                  "`_foreach_add(params, _foreach_mul(d, -lr))`): use "
                  "`torch._foreach_add_(params, d, alpha=-lr)`, one rounding (a "
                  "fused multiply-add on this CPU)."),
    "fma_wd": ("your weight decay rounds twice (`g + weight_decay * p` or a "
               "`_foreach_mul` then `_foreach_add`): use `torch._foreach_add(grads, "
               "params, alpha=weight_decay)`, one rounding."),
    "fma_momentum": ("your buffer update rounds the gradient term separately "
                     "(`momentum * b + (1 - dampening) * g`): use "
                     "`torch._foreach_mul_(bufs, momentum)` then "
                     "`torch._foreach_add_(bufs, grads, alpha=1 - dampening)`."),
    "fma_nesterov": ("your nesterov direction rounds twice (`g + momentum * b`): use "
                     "`torch._foreach_add(grads, bufs, alpha=momentum)`."),
}

_SEMANTIC_VARIANTS = {
    "zero_init": None,   # message chosen from the source (zeros or dampening)
    "flip_lr": ("you implemented maximize by flipping the sign of lr. Torch negates "
                "the GRADIENT first (`grads = torch._foreach_neg(grads)`), then adds "
                "weight decay: flipping lr makes weight decay grow the weights."),
    "maximize_after_wd": ("you negated the decayed gradient −(∇ + λθ). Torch negates "
                          "the raw gradient first and then adds weight decay: "
                          "g = −∇ + λθ."),
    "decoupled_wd": ("you added weight decay after the momentum (decoupled, like "
                     "SGDW). Torch folds it into the gradient BEFORE the buffer: "
                     "`grads = torch._foreach_add(grads, params, alpha=weight_decay)` "
                     "first."),
    "nesterov_ignored": ("you ignored nesterov: the direction is d = g + μ·b "
                         "(`torch._foreach_add(grads, bufs, alpha=momentum)`), not b."),
    "nesterov_old": ("your nesterov direction used the OLD buffer: update the "
                     "buffers first, then d = g + μ·b_new."),
    "old_buffer": ("you stepped with the OLD buffers: update the buffers first, then "
                   "step with the new ones."),
    "no_dampening": ("you ignored dampening: from the second step on "
                     "b = μ·b + (1 − τ)·g, `torch._foreach_add_(bufs, grads, "
                     "alpha=1 - dampening)`."),
    "ema": ("you scaled the gradient by (1 − momentum); torch uses (1 − dampening): "
            "b = μ·b + (1 − τ)·g."),
    "no_decay": ("you forgot to multiply the old buffers by momentum: "
                 "`torch._foreach_mul_(bufs, momentum)` before adding the gradients."),
    "restart_mixed": ("when SOME buffers are None you restarted ALL of them from the "
                      "gradients. Torch clones only the missing ones (one by one) and "
                      "updates the others: `if buf is None: bufs[i] = g.detach().clone()`"
                      " else `buf.mul_(momentum).add_(g, alpha=1 - dampening)`."),
    "restart": ("you restarted every buffer from the gradient: clone only where the "
                "buffer is None; existing buffers are updated, b = μ·b + (1 − τ)·g."),
    "uphill": ("your update moved the parameters uphill: add d with alpha=-lr, "
               "`torch._foreach_add_(params, d, alpha=-lr)`."),
    "no_lr": "you forgot the learning rate: `torch._foreach_add_(params, d, alpha=-lr)`.",
    "params_unchanged": ("the parameters did not change. `torch._foreach_add(params, "
                         "...)` (no underscore) returns NEW tensors; update them in "
                         "place with `torch._foreach_add_(params, d, alpha=-lr)`."),
    "stale": ("your buffers did not change: `torch._foreach_mul(bufs, m)` (no "
              "underscore) returns new tensors. Update them in place with "
              "`torch._foreach_mul_` and `torch._foreach_add_`."),
}

_ZERO_START = ("your first-step buffers started from zeros: b = μ·0 + (1 − τ)·g. Torch "
               "does not start from zeros: a missing buffer becomes a COPY of the "
               "gradient, `bufs[i] = grads[i].detach().clone()` (no dampening).")
_FIRST_DAMPENED = ("you applied dampening on the first step, b = (1 − τ)·g. A missing "
                   "buffer becomes a copy of the gradient, "
                   "`bufs[i] = grads[i].detach().clone()`; dampening only applies "
                   "from the second step on.")
_ALIAS = ("a new buffer shares memory with the gradient (`bufs[i] = grads[i]`). "
          "The next `zero_grad()`/`backward()` would overwrite your momentum, and "
          "updating the buffer in place would change p.grad. Make a copy: "
          "`bufs[i] = grads[i].detach().clone()`.")


def _tensors_equal(a: list[Any], b: list[Any]) -> bool:
    return all(x is None and y is None or (isinstance(x, Tensor) and isinstance(y, Tensor)
               and x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y))
               for x, y in zip(a, b))


def _tensors_close(a: list[Any], b: list[Any]) -> bool:
    return all(x is None and y is None or (isinstance(x, Tensor) and isinstance(y, Tensor)
               and close(x, y, rtol=1e-6, atol=1e-9)) for x, y in zip(a, b))


def _diagnose_update(fn: Any, params: list[Tensor], grads: list[Tensor],
                     bufs: list[Tensor | None], o: dict[str, Any],
                     got_p: list[Tensor], got_b: list[Tensor | None],
                     exp_p: list[Tensor], exp_b: list[Tensor | None]) -> str | None:
    got = got_p + got_b
    exp = exp_p + exp_b
    for variant, hint in _FMA_VARIANTS.items():
        vp, vb = _variant(params, grads, bufs, o, variant)
        if _tensors_equal(got, vp + vb) and not _tensors_equal(vp + vb, exp):
            n = _max_ulp([t for t in got if t is not None], [t for t in exp if t is not None])
            return f"your result is {n:.0f} ulp from torch's: {hint}"
    for variant, hint in _SEMANTIC_VARIANTS.items():
        vp, vb = _variant(params, grads, bufs, o, variant)
        if _tensors_close(got, vp + vb) and not _tensors_close(vp + vb, exp):
            if variant == "zero_init":
                hint = _ZERO_START if "zeros" in _source(fn) else _FIRST_DAMPENED
            return hint
    pairs = [(g, e) for g, e in zip(got, exp) if not (g is None and e is None)]
    if all(isinstance(g, Tensor) and isinstance(e, Tensor) for g, e in pairs):
        n = _max_ulp([g for g, _ in pairs], [e for _, e in pairs])
        if 0 < n <= _ULP_HINT:
            return (f"your values agree with torch's to {n:.0f} ulp but not bit for bit: "
                    + _FMA)
    return None


def _first_difference(got: list[Any], exp: list[Any], what: str) -> tuple[str, Any, Any]:
    for i, (g, e) in enumerate(zip(got, exp)):
        if not (isinstance(g, Tensor) and g.shape == e.shape and g.dtype == e.dtype
                and torch.equal(g, e)):
            return f"{what}[{i}]", e, g
    return what, exp, got  # pragma: no cover


def _run_update_case(fn: Any, name: str, label: str, n: int, dtype: torch.dtype,
                     state: str, opts: dict[str, Any], seed: int) -> bool:
    """Run one case; raise CheckFailure on a mistake. Returns whether the
    gradients were changed in place (allowed only in torch's nesterov quirk)."""
    case = f"case '{label}'"
    o = _full_opts(opts)
    params, grads, bufs = _update_inputs(n, dtype, state, seed)
    exp_p, exp_b = _variant(params, grads, bufs, o)
    p_in = [p.clone() for p in params]
    g_in = [g.clone() for g in grads]
    b_objs = [None if b is None else b.clone() for b in bufs]
    b_in = list(b_objs)
    call(fn, name, case, list(p_in), list(g_in), b_in, **opts)
    if not isinstance(b_in, list) or len(b_in) != n:
        raise CheckFailure(f"{case}: the bufs list must keep its {n} entries, it now has "
                           f"{len(b_in)}.\n  Diagnosis: assign `bufs[i] = ...`; don't "
                           "append or remove entries.")
    momentum = o["momentum"]
    for i, (b, old) in enumerate(zip(b_in, b_objs)):
        if momentum == 0:
            if b is not None:
                raise CheckFailure(f"{case}: bufs[{i}] is {type(b).__name__}, expected "
                                   "None.\n  Diagnosis: with momentum = 0 there are no "
                                   "buffers: leave bufs untouched.")
            continue
        if b is None:
            raise CheckFailure(
                f"{case}: bufs[{i}] is still None after your update.\n  Diagnosis: fill "
                "the CALLER's list in place, `bufs[i] = grads[i].detach().clone()` for a "
                "missing buffer; `bufs = [...]` only rebinds your local name (the "
                "optimizer never sees it).")
        if not isinstance(b, Tensor):
            raise CheckFailure(f"{case}: bufs[{i}] must be a tensor, got "
                               f"{type(b).__name__}.")
        if old is not None and b is not old:
            hint = None
            if not (_tensors_equal(p_in, exp_p) and _tensors_equal(b_in, exp_b)):
                hint = _diagnose_update(fn, params, grads, bufs, o, p_in, b_in,
                                        exp_p, exp_b)
            if hint is not None:
                raise CheckFailure(f"{case}: bufs[{i}] was replaced by a new tensor "
                                   f"with wrong values.\n  Diagnosis: {hint}")
            raise CheckFailure(
                f"{case}: bufs[{i}] is a new tensor; the existing buffer must be "
                "updated IN PLACE.\n  Diagnosis: the optimizer's state holds these very "
                "tensors (and torch updates them in place, with no new memory): "
                "`torch._foreach_mul_(bufs, momentum)` then "
                "`torch._foreach_add_(bufs, grads, alpha=1 - dampening)`.")
        if old is None and (_same_storage(b, g_in[i]) or _same_storage(b, p_in[i])):
            what = "grads" if _same_storage(b, g_in[i]) else "params"
            raise CheckFailure(f"{case}: the new bufs[{i}] shares memory with {what}[{i}]."
                               f"\n  Diagnosis: {_ALIAS}")
    for what, got, exp in (("params", p_in, exp_p), ("bufs", b_in, exp_b)):
        for t, e in zip(got, exp):
            if isinstance(t, Tensor) and isinstance(e, Tensor) and (
                    t.dtype != e.dtype or t.shape != e.shape):
                raise CheckFailure(f"{case}: a tensor of {what} has dtype {t.dtype} "
                                   f"and shape {tuple(t.shape)}, expected {e.dtype}, "
                                   f"{tuple(e.shape)}.")
    if not (_tensors_equal(p_in, exp_p) and _tensors_equal(b_in, exp_b)):
        hint = _diagnose_update(fn, params, grads, bufs, o, p_in, b_in, exp_p, exp_b)
        if _tensors_equal(p_in, exp_p):
            where, e, g = _first_difference(b_in, exp_b, "bufs")
        else:
            where, e, g = _first_difference(p_in, exp_p, "params")
        raise _bit_mismatch(f"{case}, {where}", e, g, hint)
    changed = not _tensors_equal(g_in, grads)
    quirk = o["nesterov"] and not o["maximize"] and o["weight_decay"] == 0
    if changed and not quirk:
        raise CheckFailure(
            f"{case}: your update changed the gradients in place (grads = p.grad).\n"
            "  Diagnosis: torch never modifies p.grad here: build the negated and "
            "decayed gradients as NEW lists, `grads = torch._foreach_neg(grads)` and "
            "`grads = torch._foreach_add(grads, params, alpha=weight_decay)` (no "
            "trailing underscore).")
    return changed


def _steady_state_ops(fn: Any, name: str, n: int = 12) -> Counter[str]:
    o = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "nesterov": True}
    params, grads, bufs = _update_inputs(n, torch.float32, "later", 99)
    case = f"case 'op count: {n} tensors, every buffer present'"
    with learner_code(name, case):
        return count_ops(lambda: fn(params, grads, bufs, **o), include_views=False)


def check_foreach_sgd_update(foreach_sgd_update: Callable[..., Any]) -> None:
    """Check ``foreach_sgd_update(params, grads, bufs, *, lr, momentum=0,
    dampening=0, weight_decay=0, nesterov=False, maximize=False)`` bit for
    bit against torch's rule applied to each tensor."""
    name = "foreach_sgd_update"
    require_function(foreach_sgd_update, name)
    for seed, (label, n, dtype, state, opts) in enumerate(_UPDATE_CASES):
        _run_update_case(foreach_sgd_update, name, label, n, dtype, state, opts, seed)
    n = 12
    per_tensor = _per_tensor_ops(_steady_state_ops(foreach_sgd_update, name, n))
    if sum(per_tensor.values()) >= n:
        raise CheckFailure(
            f"case 'op count: {n} tensors, every buffer present': your update "
            f"dispatched {sum(per_tensor.values())} per-tensor ops "
            f"({_describe(per_tensor)}): that is a for-loop over the tensors.\n"
            "  Diagnosis: call each `torch._foreach_*` op ONCE on the whole lists "
            "(`torch._foreach_mul_(bufs, momentum)`, ...). Only missing buffers are "
            "cloned one by one.")
    passed(f"{name}: {len(_UPDATE_CASES)} cases (every option, first/later/mixed "
           "buffers, float32/float64, tensor lr) equal torch's update bit for bit; "
           "buffers filled and updated in place, grads left alone, a constant "
           "number of foreach calls")


# --------------------------------------------------------------------------
# Exercise 8.4: ForeachSGD
# --------------------------------------------------------------------------

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
_STEPS = 4
_LATE = 2      # step index at which the first layer's bias gets its first gradient
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


def _drive(make: Callable[[list[dict[str, Any]]], Any], opts: dict[str, Any]
           ) -> list[tuple[list[Tensor], dict[int, dict[str, Tensor]], Any]]:
    """Run the scenario; return (params, state by index, optimizer) after each step."""
    mlp, x, y, groups = _scenario()
    opt = make(groups)
    params = [p for g in opt.param_groups for p in g["params"]]
    out = []
    for t in range(_STEPS):
        opt.zero_grad()
        _loss(mlp, x, y).backward()
        if t < _LATE:
            mlp[0].bias.grad = None
        if t == _LR_CHANGE:
            for g in opt.param_groups:
                g["lr"] = g["lr"] * 0.5
        opt.step()
        state = {i: {k: (v.clone() if isinstance(v, Tensor) else v)
                     for k, v in opt.state[p].items()}
                 for i, p in enumerate(params) if p in opt.state}
        out.append(([p.detach().clone() for p in params], state, opt))
    return out


def _class_exception_hint(exc: Exception) -> str:
    text = str(exc)
    if "leaf Variable" in text or "requires grad" in text:
        return ("\n  Diagnosis: run the update without autograd: decorate step with "
                "`@torch.no_grad()` (the closure, if any, runs inside "
                "`with torch.enable_grad():`).")
    if "NoneType" in text:
        return ("\n  Diagnosis: skip parameters whose .grad is None (here the first "
                "layer's bias has no gradient in steps 1–2): "
                "`params = [p for p in group['params'] if p.grad is not None]`.")
    return ""


def _run_class(cls: type, label: str, opts: dict[str, Any]) -> list[Any]:
    case = f"case '{label}'"
    try:
        return _drive(lambda groups: cls(groups, **opts), opts)
    except CheckFailure:
        raise
    except NotImplementedError:
        raise CheckFailure(
            "`ForeachSGD` is not implemented yet: replace `raise NotImplementedError()`"
            " with your code, run that cell, then run this check again.") from None
    except Exception as exc:  # noqa: BLE001 - reported to the learner
        raise CheckFailure(f"{case}: `ForeachSGD` raised {type(exc).__name__}: {exc}"
                           + _class_exception_hint(exc)) from None


def _compare_class_run(label: str, opts: dict[str, Any], ours: list[Any],
                       theirs: list[Any]) -> None:
    case = f"case '{label}'"
    momentum = opts.get("momentum", 0)
    n_group0 = 4
    for t, ((p_o, s_o, _), (p_t, s_t, _)) in enumerate(zip(ours, theirs)):
        step = f"{case}, step {t + 1}"
        if not all(torch.equal(a, b) for a, b in zip(p_o, p_t)):
            bad = [i for i, (a, b) in enumerate(zip(p_o, p_t)) if not torch.equal(a, b)]
            n_ulp = _max_ulp(p_o, p_t)
            if n_ulp <= _ULP_HINT:
                hint = (f"your parameters agree with torch's to {n_ulp:.0f} ulp but not "
                        "bit for bit: " + _FMA)
            elif t == _LR_CHANGE:
                hint = ("everything matched until the learning rate changed (the check "
                        "halves group['lr'] before this step, as a scheduler does): "
                        "read `group['lr']` (and every other option) from the param "
                        "group at EVERY step; don't store it in __init__.")
            elif t == _LATE and momentum != 0:
                hint = ("the first layer's bias gets its FIRST gradient at this step "
                        "while the other buffers exist: it needs a fresh buffer "
                        "(a clone of its gradient) and the others a normal update.")
            elif all(i >= n_group0 for i in bad):
                hint = ("only the second param group (its own lr = 0.02) is wrong: "
                        "loop over `self.param_groups` and take lr, momentum, ... "
                        "from each `group`, not from self.defaults.")
            else:
                hint = None
            i = bad[0]
            raise _bit_mismatch(f"{step}, parameter {i}", p_t[i], p_o[i], hint)
        if momentum == 0:
            if s_o:
                raise CheckFailure(
                    f"{step}: with momentum = 0 torch keeps opt.state empty, yours has "
                    f"{len(s_o)} entries.\n  Diagnosis: reading `self.state[p]` creates "
                    "an entry (it is a defaultdict): only touch the state when "
                    "momentum != 0.")
            continue
        if set(s_o) != set(s_t):
            raise CheckFailure(
                f"{step}: state entries for parameters {sorted(s_o)}, torch has "
                f"{sorted(s_t)}.\n  Diagnosis: after the update write every buffer "
                "back, `self.state[p]['momentum_buffer'] = buf`, only for parameters "
                "that had a gradient.")
        for i, st in s_t.items():
            if set(s_o[i]) != set(st):
                raise CheckFailure(
                    f"{step}: state of parameter {i} has keys {sorted(s_o[i])}, expected "
                    f"{sorted(st)}.\n  Diagnosis: torch's SGD stores exactly one entry "
                    "per parameter, `state[p]['momentum_buffer']` (that is what "
                    "state_dict and load_state_dict exchange).")
            b_o = s_o[i]["momentum_buffer"]
            if b_o is None:
                raise CheckFailure(
                    f"{step}: state[p]['momentum_buffer'] of parameter {i} is None.\n"
                    "  Diagnosis: foreach_sgd_update fills the list you pass it: keep "
                    "that list (`bufs = [...]`, then call, then store `bufs[k]`), don't "
                    "pass a copy or store the old entries.")
            if not (isinstance(b_o, Tensor) and b_o.shape == st["momentum_buffer"].shape
                    and torch.equal(b_o, st["momentum_buffer"])):
                raise _bit_mismatch(f"{step}, momentum_buffer of parameter {i}",
                                    st["momentum_buffer"], b_o)


def _check_closure(cls: type) -> None:
    case = "case 'step(closure)'"
    mlp, x, y, groups = _scenario()
    opt = cls(groups, lr=0.01, momentum=0.9)
    calls = []

    def closure() -> Tensor:
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = _loss(mlp, x, y)
        if loss.requires_grad:
            loss.backward()
        else:  # gradients disabled: keep the step well defined
            for p in mlp.parameters():
                p.grad = torch.zeros_like(p)
        return loss

    with learner_code("ForeachSGD", case):
        with torch.no_grad():
            out = opt.step(closure)
    if calls != [True]:
        raise CheckFailure(
            f"{case}: the closure was called {len(calls)} times"
            + ("" if not calls or all(calls) else " with gradients disabled")
            + ", expected once with gradients enabled.\n  Diagnosis: "
            "`if closure is not None:` then `with torch.enable_grad(): loss = closure()`"
            ", before the update.")
    if not isinstance(out, Tensor):
        raise CheckFailure(f"{case}: step(closure) returned {type(out).__name__}, "
                           "expected the closure's loss.\n  Diagnosis: `return loss` "
                           "(None when there is no closure).")


def check_foreach_sgd_class(ForeachSGD: Any) -> None:  # noqa: N803 - class argument
    """Check ``class ForeachSGD(SGD)`` bit for bit against
    ``torch.optim.SGD(foreach=True)``: parameters and ``state`` after every
    step, over torch's option grid, two param groups, float32 and float64, a
    parameter whose first gradient arrives late and an lr change."""
    if not isinstance(ForeachSGD, type):
        raise CheckFailure("check_foreach_sgd_class expects your class `ForeachSGD` itself, "
                           f"got {type(ForeachSGD).__name__}: call "
                           "check_foreach_sgd_class(ForeachSGD) without parentheses.")
    if not issubclass(ForeachSGD, torch.optim.Optimizer):
        raise CheckFailure("`ForeachSGD` must subclass `SGD` (course.optim.SGD, itself a "
                           "torch.optim.Optimizer): `class ForeachSGD(SGD):` keeps the "
                           "constructor, param_groups, state and state_dict.")
    for label, opts in _CLASS_CONFIGS:
        ours = _run_class(ForeachSGD, label, opts)
        theirs = _drive(lambda groups: torch.optim.SGD(groups, foreach=True, **opts), opts)
        _compare_class_run(label, opts, ours, theirs)
    _check_closure(ForeachSGD)
    params = params_with_grads(lambda: [torch.nn.Linear(2, 2) for _ in range(20)])
    case = "case 'op count: 40 tensors, momentum=0.9, later step'"
    with learner_code("ForeachSGD", case):
        opt = ForeachSGD(params, lr=0.01, momentum=0.9, weight_decay=0.01)
        opt.step()
        per_tensor = _per_tensor_ops(count_ops(opt.step, include_views=False))
    if sum(per_tensor.values()) >= len(params):
        raise CheckFailure(
            f"{case}: your step dispatched {sum(per_tensor.values())} per-tensor ops "
            f"({_describe(per_tensor)}): it updates the tensors one by one.\n  "
            "Diagnosis: call your foreach_sgd_update once per (device, dtype) group "
            "(not super().step(), which is the for-loop).")
    passed(f"ForeachSGD: {len(_CLASS_CONFIGS)} option sets × {_STEPS} steps equal "
           "torch.optim.SGD(foreach=True) bit for bit (2 param groups, float32 + "
           "float64, a late first gradient, an lr change); state holds only "
           "momentum_buffer; step(closure) returns the loss; one foreach call per op")
