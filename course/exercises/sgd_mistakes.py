r"""Known-wrong SGD update rules ("mutants") used to diagnose a learner's code.

Torch's rule for one tensor, with $s = -1$ under ``maximize`` (else $+1$):

.. math::

    g &\leftarrow s\,\nabla + \lambda\,\theta \\
    b &\leftarrow \operatorname{clone}(g) \ \text{(first step)} \quad\text{else}\quad
        b \leftarrow \beta\, b + (1 - \tau)\, g \\
    d &\leftarrow g + \beta\, b \ \text{(nesterov)} \quad\text{else}\quad d \leftarrow b \\
    \theta &\leftarrow \theta - \gamma\, d

Each :class:`Mistake` is ``(name, diagnosis, update)``: ``update`` has the
signature of :func:`course.sgd.sgd_update` and implements that rule with ONE
classic mistake. A check runs the mutants from the same state as the failing
step of the learner's code; when one of them gives the learner's result bit
for bit, its ``diagnosis`` tells the learner what is wrong and how to fix it.

* :data:`VALUE_MISTAKES` change the numbers (in diagnosis order: structural
  mistakes first, then the "natural arithmetic" ones that are only a few ulp
  off). Their diagnoses may contain ``{ulp}``: format them with
  :func:`diagnosis`.
* :data:`BEHAVIOUR_MISTAKES` give the right numbers but break the contract
  (grad modified, buffer aliasing grad, no in-place update, wrong return,
  delegating to torch). A check detects them directly; the implementations
  are here for tests and for class-level checks.
* :data:`MISTAKES` maps every name to its :class:`Mistake`.
* :func:`as_spec` turns one into a :class:`course.exercises.spec.Mistake`
  (the form an exercise spec lists), with ``{ulp}`` filled in from the run.

>>> p, g = torch.tensor([1.0]), torch.tensor([0.5])
>>> b = MISTAKES["dampening_on_first_step"].update(
...     p, g, None, lr=0.1, momentum=0.9, dampening=0.5)
>>> b.item()   # torch's first buffer is g itself, 0.5
0.25
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from course.exercises.spec import Mistake as SpecMistake
from course.exercises.spec import Run

__all__ = [
    "Mistake",
    "VALUE_MISTAKES",
    "BEHAVIOUR_MISTAKES",
    "MISTAKES",
    "ROUNDING",
    "as_spec",
    "diagnosis",
    "pick",
    "source_names",
]

Update = Callable[..., Any]


class Mistake(NamedTuple):
    """One classic mistake: its name, the learner-facing diagnosis, a wrong update."""

    name: str
    diagnosis: str
    update: Update


# --------------------------------------------------------------------------
# Diagnoses
# --------------------------------------------------------------------------

_FIRST_DAMPENED = (
    "you applied dampening on the first step (b = (1 − τ)·g). On a parameter's "
    "first step torch sets the buffer to a copy of the gradient, "
    "`buf = g.clone()`, with no dampening; from the second step on "
    "buf.mul_(momentum).add_(g, alpha=1 - dampening).")
_ZERO_START = (
    "your momentum buffer started at zeros, so the first buffer is "
    "β·0 + (1 − τ)·g = (1 − τ)·g. Torch does not start from zeros: when "
    "momentum_buffer is None the buffer is a copy of the gradient, "
    "`buf = g.clone()` (no dampening on that step).")
_FIRST_TWICE = (
    "on the first step you set buf = g.clone() AND then applied the update "
    "buf.mul_(momentum).add_(g, ...), so the first buffer is β·g + (1 − τ)·g. "
    "The clone IS the first buffer: use if/else, `if buf is None: buf = "
    "g.clone()` `else: buf.mul_(momentum).add_(g, alpha=1 - dampening)`.")
_NO_DAMPENING = (
    "you ignored dampening: from the second step on torch scales the new "
    "gradient by (1 − τ), buf.mul_(momentum).add_(g, alpha=1 - dampening).")
_DAMPENING_FACTOR = (
    "you multiplied the gradient by τ; torch multiplies it by (1 − τ): "
    "buf.mul_(momentum).add_(g, alpha=1 - dampening).")
_EMA = (
    "you scaled the gradient by (1 − momentum), an exponential moving average. "
    "Torch scales it by (1 − dampening): buf.mul_(momentum).add_(g, "
    "alpha=1 - dampening), so with dampening = 0 it adds the whole gradient.")
_LR_IN_BUFFER = (
    "the learning rate is inside your buffer (the 'velocity' convention "
    "v = β·v + lr·g, θ − v). Torch keeps lr outside: the buffer holds "
    "gradients, b = β·b + (1 − τ)·g, and the step is θ − lr·d.")
_STEP_WITH_GRAD = (
    "with momentum you stepped with the gradient g instead of the buffer: "
    "d = buf (or g + β·buf with nesterov), then param.add_(d, alpha=-lr).")
_DECAY_AFTER = (
    "you added weight decay after momentum (to the step, not to the gradient). "
    "Torch folds it into the gradient FIRST, g = grad + λ·θ, so the decay goes "
    "through the momentum buffer (coupled L2, not SGDW). Order: maximize → "
    "weight decay → momentum → nesterov → −lr.")
_DECAY_IGNORED = (
    "weight decay is missing: torch adds λ·θ to the gradient before momentum, "
    "`g = g.add(param, alpha=weight_decay)`.")
_DECAY_SIGN = (
    "weight decay has the wrong sign: it is the gradient of +½λ‖θ‖², so ADD "
    "λ·θ to the gradient, `g = g.add(param, alpha=weight_decay)`; the step "
    "θ − lr·g then shrinks θ.")
_DECAY_HALF = (
    "you added ½λ·θ: the gradient of the penalty ½λ‖θ‖² is λ·θ, so "
    "`g = g.add(param, alpha=weight_decay)`.")
_MAXIMIZE_FLIP = (
    "under maximize your weight decay has the wrong sign: you flipped the "
    "final update (or the sign of lr), or negated AFTER adding weight decay, "
    "−(grad + λ·θ). Either way λ·θ is flipped too and the weights grow. Torch "
    "negates the raw GRADIENT first, `g = -grad`, then adds weight decay, "
    "`g = g.add(param, alpha=weight_decay)`, and always steps with −lr.")
_MAXIMIZE_IGNORED = (
    "maximize is ignored: with maximize=True torch ascends by negating the "
    "gradient first, `g = -grad` (out of place), before weight decay.")
_NESTEROV_OLD = (
    "your Nesterov direction used the OLD buffer, g + β·b_(t−1), which is just "
    "the heavy-ball buffer b_t again. Torch updates the buffer first and then "
    "uses the NEW one: d = g + β·b_t = (1 + β)·g + β²·b_(t−1), "
    "`d = g.add(buf, alpha=momentum)` after buf.mul_(momentum).add_(g, ...).")
_NESTEROV_IGNORED = (
    "nesterov is ignored: with nesterov=True the step direction is "
    "d = g + β·buf (with the updated buffer), `d = g.add(buf, alpha=momentum)`.")
_NESTEROV_SWAPPED = (
    "your Nesterov direction is buf + β·g; torch's is g + β·buf, "
    "`d = g.add(buf, alpha=momentum)`.")
_ROUND_STEP = (
    "your result agrees to {ulp} ulp but not bit for bit: torch computes "
    "p + (−lr)·d as one fused multiply-add (one rounding), while `p - lr * d`, "
    "`p -= lr * d` or `p.sub_(lr * d)` round twice. Use "
    "`param.add_(d, alpha=-lr)`.")
_ROUND_DECAY = (
    "your result agrees to {ulp} ulp but not bit for bit: torch adds weight "
    "decay as one fused multiply-add, `g = g.add(param, alpha=weight_decay)`; "
    "`g + weight_decay * param` rounds twice.")
_ROUND_MOMENTUM = (
    "your result agrees to {ulp} ulp but not bit for bit: torch updates the "
    "buffer with `buf.mul_(momentum).add_(g, alpha=1 - dampening)` (the add is "
    "one fused multiply-add); `(1 - dampening) * g` as a separate product "
    "rounds twice.")
_ROUND_NESTEROV = (
    "your result agrees to {ulp} ulp but not bit for bit: torch's Nesterov "
    "direction is `g.add(buf, alpha=momentum)`, one fused multiply-add; "
    "`g + momentum * buf` rounds twice.")
_ROUND_ALL = (
    "your result agrees to {ulp} ulp but not bit for bit: you wrote the "
    "formulas with plain arithmetic (a + c * b rounds twice). Torch uses "
    "one-rounding fused multiply-adds: g.add(param, alpha=weight_decay), "
    "buf.mul_(momentum).add_(g, alpha=1 - dampening), g.add(buf, "
    "alpha=momentum) and param.add_(d, alpha=-lr).")

GRAD_IN_PLACE = (
    "your update changed `grad` in place (e.g. grad.neg_(), grad.add_(...) or "
    "grad.mul_(...)). torch.optim.SGD never modifies p.grad: build the "
    "negated/decayed gradient out of place, `g = -grad`, "
    "`g = g.add(param, alpha=weight_decay)`, `d = g.add(buf, alpha=momentum)`.")
BUFFER_ALIASES_GRAD = (
    "on the first step the buffer you returned shares memory with grad "
    "(`buf = grad` or `grad.detach()`). The next buf.mul_(...) would then "
    "overwrite the gradient, and zero_grad() would wipe your momentum. Make a "
    "copy: `buf = g.clone()`.")
BUFFER_ALIASES_PARAM = (
    "the buffer you returned shares memory with param: the buffer must be "
    "its own tensor, `buf = g.clone()` on the first step.")
RETURNED_NONE = (
    "your function returned None although momentum != 0: return the momentum "
    "buffer (the fresh `g.clone()` on the first step, the updated `buf` "
    "later); the caller passes it back in on the next step.")
RETURNED_BUFFER_WITHOUT_MOMENTUM = (
    "with momentum = 0 torch keeps no momentum buffer: return None (the "
    "update is simply param.add_(g, alpha=-lr)).")
STALE_BUFFER = (
    "the buffer you returned is the OLD one, not the updated buffer: update "
    "it in place, buf.mul_(momentum).add_(g, alpha=1 - dampening), and "
    "return buf.")
BUFFER_NOT_IN_PLACE = (
    "your buffer has the right values but is a NEW tensor: torch updates the "
    "momentum buffer in place (optimizer.state and state_dict() hold that "
    "very tensor), `buf.mul_(momentum).add_(g, alpha=1 - dampening)`, and "
    "returns the same object.")
PARAM_NOT_IN_PLACE = (
    "the caller's param tensor did not change: `param = param - ...` or "
    "`param.add(...)` makes a NEW tensor and leaves the model's parameter "
    "untouched. Update it in place: `param.add_(d, alpha=-lr)`.")
DELEGATES = (
    "your function calls torch's (or the course's) own SGD "
    "(torch.optim.SGD, torch.optim.sgd.sgd, torch.optim._functional.sgd, "
    "_single_tensor_sgd, course.sgd, ...). That is delegating, not "
    "implementing: write the update yourself with tensor operations "
    "(neg, add, mul_, add_, clone).")


# --------------------------------------------------------------------------
# The rule with one switchable mistake
# --------------------------------------------------------------------------

def _rule(param: Tensor, grad: Tensor, buf: Tensor | None, *, lr: Any,
          momentum: float = 0, dampening: float = 0, weight_decay: Any = 0,
          nesterov: bool = False, maximize: bool = False,
          bug: str = "") -> Tensor | None:
    """Torch's single-tensor SGD step, with the mistake ``bug`` (``""``: none)."""
    rounding = bug in ("rounding_everywhere",)
    negate = maximize and bug not in ("maximize_flips_update", "maximize_ignored")
    g = -grad if negate else grad
    decay_late = bug == "weight_decay_after_momentum"
    if weight_decay != 0 and not decay_late and bug != "weight_decay_ignored":
        alpha = {"weight_decay_wrong_sign": -weight_decay,
                 "weight_decay_half": weight_decay / 2}.get(bug, weight_decay)
        if bug == "rounding_weight_decay" or rounding:
            g = g + weight_decay * param
        else:
            g = g.add(param, alpha=alpha)
    d = g
    if momentum != 0:
        old = None if buf is None else buf.clone()
        if buf is None:
            if bug == "dampening_on_first_step":
                buf = g.mul(1 - dampening)
            elif bug == "zero_initial_buffer":
                buf = torch.zeros_like(g).mul_(momentum).add_(g, alpha=1 - dampening)
            elif bug == "lr_in_buffer":
                buf = g.mul(lr)
            elif bug == "first_step_updated_twice":
                buf = g.clone().mul_(momentum).add_(g, alpha=1 - dampening)
            else:
                buf = g.detach().clone()
        else:
            alpha = {"buffer_ignores_dampening": 1, "dampening_as_factor": dampening,
                     "ema_buffer": 1 - momentum,
                     "lr_in_buffer": lr * (1 - dampening)}.get(bug, 1 - dampening)
            if bug == "rounding_momentum" or rounding:
                buf.mul_(momentum).add_((1 - dampening) * g)
            else:
                buf.mul_(momentum).add_(g, alpha=alpha)
        if bug == "step_with_gradient":
            d = g
        elif nesterov and bug == "nesterov_old_buffer":  # first step: old := new
            d = g.add(buf if old is None else old, alpha=momentum)
        elif nesterov and bug == "nesterov_swapped":
            d = buf.add(g, alpha=momentum)
        elif nesterov and bug != "nesterov_ignored":
            if bug == "rounding_nesterov" or rounding:
                d = g + momentum * buf
            else:
                d = g.add(buf, alpha=momentum)
        else:
            d = buf
    if decay_late and weight_decay != 0:
        d = d.add(param, alpha=weight_decay)
    if bug == "lr_in_buffer" and momentum != 0:
        param.sub_(d)
    elif bug == "maximize_flips_update" and maximize:
        param.add_(d, alpha=lr)
    elif bug == "rounding_step" or rounding:
        param.sub_(lr * d)
    else:
        param.add_(d, alpha=-lr)
    return buf if momentum != 0 else None


def torch_update(param: Tensor, grad: Tensor, momentum_buffer: Tensor | None, *, lr: Any,
                 momentum: float = 0, dampening: float = 0, weight_decay: Any = 0,
                 nesterov: bool = False, maximize: bool = False) -> Tensor | None:
    """The rule without a mistake: torch's single-tensor step, bit for bit (the
    reference of lesson 05's sgd_update; torch's own functions are what its
    check traps as delegation)."""
    return _rule(param, grad, momentum_buffer, lr=lr, momentum=momentum,
                 dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                 maximize=maximize)


def _mutant(bug: str) -> Update:
    """The update rule with the mistake ``bug``, as a function of its own."""
    def update(param: Tensor, grad: Tensor, momentum_buffer: Tensor | None, *,
               lr: Any, momentum: float = 0, dampening: float = 0,
               weight_decay: Any = 0, nesterov: bool = False,
               maximize: bool = False) -> Tensor | None:
        return _rule(param, grad, momentum_buffer, lr=lr, momentum=momentum,
                     dampening=dampening, weight_decay=weight_decay,
                     nesterov=nesterov, maximize=maximize, bug=bug)
    update.__name__ = update.__qualname__ = bug
    update.__doc__ = f"SGD update with the mistake '{bug}'."
    return update


VALUE_MISTAKES: tuple[Mistake, ...] = tuple(Mistake(n, d, _mutant(n)) for n, d in [
    ("dampening_on_first_step", _FIRST_DAMPENED),
    ("zero_initial_buffer", _ZERO_START),
    ("first_step_updated_twice", _FIRST_TWICE),
    ("buffer_ignores_dampening", _NO_DAMPENING),
    ("dampening_as_factor", _DAMPENING_FACTOR),
    ("ema_buffer", _EMA),
    ("lr_in_buffer", _LR_IN_BUFFER),
    ("weight_decay_after_momentum", _DECAY_AFTER),
    ("maximize_flips_update", _MAXIMIZE_FLIP),
    ("maximize_ignored", _MAXIMIZE_IGNORED),
    ("weight_decay_ignored", _DECAY_IGNORED),
    ("weight_decay_wrong_sign", _DECAY_SIGN),
    ("weight_decay_half", _DECAY_HALF),
    ("nesterov_old_buffer", _NESTEROV_OLD),
    ("nesterov_ignored", _NESTEROV_IGNORED),
    ("nesterov_swapped", _NESTEROV_SWAPPED),
    ("step_with_gradient", _STEP_WITH_GRAD),
    ("rounding_step", _ROUND_STEP),
    ("rounding_weight_decay", _ROUND_DECAY),
    ("rounding_momentum", _ROUND_MOMENTUM),
    ("rounding_nesterov", _ROUND_NESTEROV),
    ("rounding_everywhere", _ROUND_ALL),
])

#: Names of the mistakes that are only a few ulp off (their diagnosis has ``{ulp}``).
ROUNDING = frozenset(m.name for m in VALUE_MISTAKES if m.name.startswith("rounding_"))


# --------------------------------------------------------------------------
# Contract mistakes: right numbers, wrong behaviour
# --------------------------------------------------------------------------

def _grad_modified_in_place(param: Tensor, grad: Tensor, momentum_buffer: Tensor | None,
                            *, lr: Any, momentum: float = 0, dampening: float = 0,
                            weight_decay: Any = 0, nesterov: bool = False,
                            maximize: bool = False) -> Tensor | None:
    """Right values, but ``grad`` is negated / decayed / nesterov-ed in place."""
    g = grad.neg_() if maximize else grad
    if weight_decay != 0:
        g = g.add_(param, alpha=weight_decay)
    buf = momentum_buffer
    if momentum != 0:
        if buf is None:
            buf = g.clone()
        else:
            buf.mul_(momentum).add_(g, alpha=1 - dampening)
        g = g.add_(buf, alpha=momentum) if nesterov else buf
    param.add_(g, alpha=-lr)
    return buf


def _buffer_aliases_grad(param: Tensor, grad: Tensor, momentum_buffer: Tensor | None,
                         *, lr: Any, momentum: float = 0, dampening: float = 0,
                         weight_decay: Any = 0, nesterov: bool = False,
                         maximize: bool = False) -> Tensor | None:
    """The first buffer IS the (decayed) gradient: ``buf = g`` without clone."""
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g.add(param, alpha=weight_decay)
    buf = momentum_buffer
    d = g
    if momentum != 0:
        if buf is None:
            buf = g.detach()
        else:
            buf.mul_(momentum).add_(g, alpha=1 - dampening)
        d = g.add(buf, alpha=momentum) if nesterov else buf
    param.add_(d, alpha=-lr)
    return buf if momentum != 0 else None


def _with_return(kind: str) -> Update:
    """The right update with a wrong return value or an out-of-place update."""
    def update(param: Tensor, grad: Tensor, momentum_buffer: Tensor | None, *,
               lr: Any, momentum: float = 0, dampening: float = 0,
               weight_decay: Any = 0, nesterov: bool = False,
               maximize: bool = False) -> Any:
        g = -grad if maximize else grad
        if weight_decay != 0:
            g = g.add(param, alpha=weight_decay)
        buf = old = momentum_buffer
        d = g
        if momentum != 0:
            if buf is None:
                buf = g.clone()
            elif kind in ("returns_old_buffer", "buffer_not_in_place"):
                buf = buf.mul(momentum).add(g, alpha=1 - dampening)
            else:
                buf.mul_(momentum).add_(g, alpha=1 - dampening)
            d = g.add(buf, alpha=momentum) if nesterov else buf
        elif kind == "returns_buffer_without_momentum":
            buf = g.clone()
        if kind == "param_not_in_place":
            param = param.add(d, alpha=-lr)
        else:
            param.add_(d, alpha=-lr)
        if kind == "returns_none":
            return None
        if kind == "returns_old_buffer" and old is not None:
            return old
        return buf
    update.__name__ = update.__qualname__ = kind
    return update


def _delegates_to_torch_optim(param: Tensor, grad: Tensor,
                              momentum_buffer: Tensor | None, *, lr: Any,
                              momentum: float = 0, dampening: float = 0,
                              weight_decay: Any = 0, nesterov: bool = False,
                              maximize: bool = False) -> Tensor | None:
    """Bit-exact by cheating: one step of a throw-away ``torch.optim.SGD``."""
    p = torch.nn.Parameter(param.detach().clone())
    p.grad = grad.clone()
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay, nesterov=nesterov,
                          maximize=maximize)
    if momentum_buffer is not None:
        opt.state[p]["momentum_buffer"] = momentum_buffer
    opt.step()
    param.copy_(p.detach())
    return opt.state[p].get("momentum_buffer")


def _delegates_to_functional(param: Tensor, grad: Tensor,
                             momentum_buffer: Tensor | None, *, lr: Any,
                             momentum: float = 0, dampening: float = 0,
                             weight_decay: Any = 0, nesterov: bool = False,
                             maximize: bool = False) -> Tensor | None:
    """Bit-exact by cheating: torch's functional ``sgd`` on a list of one."""
    bufs = [momentum_buffer]
    torch.optim._functional.sgd([param], [grad], bufs, lr=float(lr),
                                momentum=momentum, dampening=dampening,
                                weight_decay=weight_decay, nesterov=nesterov,
                                maximize=maximize, foreach=False)
    return bufs[0] if momentum != 0 else None


BEHAVIOUR_MISTAKES: tuple[Mistake, ...] = (
    Mistake("grad_modified_in_place", GRAD_IN_PLACE, _grad_modified_in_place),
    Mistake("buffer_aliases_grad", BUFFER_ALIASES_GRAD, _buffer_aliases_grad),
    Mistake("returns_none", RETURNED_NONE, _with_return("returns_none")),
    Mistake("returns_buffer_without_momentum", RETURNED_BUFFER_WITHOUT_MOMENTUM,
            _with_return("returns_buffer_without_momentum")),
    Mistake("returns_old_buffer", STALE_BUFFER, _with_return("returns_old_buffer")),
    Mistake("buffer_not_in_place", BUFFER_NOT_IN_PLACE,
            _with_return("buffer_not_in_place")),
    Mistake("param_not_in_place", PARAM_NOT_IN_PLACE,
            _with_return("param_not_in_place")),
    Mistake("delegates_to_torch_optim", DELEGATES, _delegates_to_torch_optim),
    Mistake("delegates_to_functional", DELEGATES, _delegates_to_functional),
)

MISTAKES: dict[str, Mistake] = {m.name: m for m in VALUE_MISTAKES + BEHAVIOUR_MISTAKES}


# --------------------------------------------------------------------------
# Helpers for checks
# --------------------------------------------------------------------------

def diagnosis(mistake: Mistake, ulp: int = 0) -> str:
    """The mistake's diagnosis, with ``{ulp}`` filled in for rounding mistakes."""
    return mistake.diagnosis.replace("{ulp}", str(ulp))


def as_spec(mistake: Mistake | str, impl: Update | None = None,
            ulp: Callable[[Run], int] | None = None) -> SpecMistake:
    """The catalogued mistake as an exercise spec's :class:`~course.exercises.spec.Mistake`.

    Args:
        mistake: a :class:`Mistake` or its name in :data:`MISTAKES`.
        impl: the learner-shaped wrong implementation of the exercise
            (default: ``mistake.update``, shaped like ``sgd_update``); lessons
            whose exercise has another signature build it from ``update``.
        ulp: for a rounding mistake, the learner's distance in ulp from a
            run (default 0), put into the diagnosis.
    """
    m = MISTAKES[mistake] if isinstance(mistake, str) else mistake
    if "{ulp}" not in m.diagnosis:
        return SpecMistake(m.name, m.diagnosis, impl or m.update)

    def text(run: Run) -> str:
        return diagnosis(m, ulp(run) if ulp is not None else 0)
    return SpecMistake(m.name, text, impl or m.update)


def source_names(fn: Any) -> set[str]:
    """Names and attribute names used in ``fn``'s code (not its docstring or
    comments), plus the modules it imports; empty if the source is unknown."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def pick(matching: list[Mistake], learner: Any = None) -> Mistake:
    """Choose the diagnosis among mutants that all reproduce the learner's result.

    A zero-initialised buffer and a dampened first step give the same bits;
    the learner's source decides (``zeros``/``zeros_like``/``new_zeros``).
    """
    names = [m.name for m in matching]
    if "zero_initial_buffer" in names and "dampening_on_first_step" in names:
        zero = {"zeros", "zeros_like", "new_zeros"} & source_names(learner)
        drop = "dampening_on_first_step" if zero else "zero_initial_buffer"
        matching = [m for m in matching if m.name != drop]
    return matching[0]
