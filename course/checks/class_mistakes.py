r"""Wrong SGD *classes*: the classic mistakes of a hand-written optimizer.

:func:`course.checks.check_sgd_step` and friends (lesson 06) compare a
learner's ``SGD`` class with ``torch.optim.SGD`` bit for bit. When the two
disagree, the check runs the same scenario with each class in
:data:`MUTANTS` -- torch's algorithm with exactly one mistake switched on --
and if the learner's trajectory follows one of them, it reports that
mistake's diagnosis from :data:`DIAGNOSES`.

Torch's update for a parameter :math:`\theta` with gradient :math:`\nabla`
(:math:`s = -1` if maximize else :math:`+1`):

.. math::

    g &= s\,\nabla + \lambda\,\theta \\
    b &= g \ \text{(first step of this parameter)}, \quad
        \text{else } b = \mu\, b + (1 - \tau)\, g \\
    d &= g + \mu\, b \ \text{(nesterov)}, \quad \text{else } d = b \\
    \theta &\leftarrow \theta - \gamma\, d

The module also holds the texts of the mistakes that are not visible in a
trajectory (a modified ``p.grad``, closure handling, the state layout, the
validation errors, delegation to torch), so that every message a learner
can get lives in one place.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

__all__ = ["MutantSGD", "MUTANTS", "DIAGNOSES", "mutant", "diagnosis"]

_HYPER = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")

# --------------------------------------------------------------------------
# Diagnoses of the trajectory mistakes (one per mutant key)
# --------------------------------------------------------------------------

DIAGNOSES: dict[str, str] = {
    "uphill": (
        "your step moved the parameters uphill: torch subtracts, "
        "p ← p − lr·d, i.e. `p.add_(d, alpha=-lr)`."),
    "no_lr": (
        "the learning rate is missing from your update: p ← p − lr·d, "
        "i.e. `p.add_(d, alpha=-lr)` with lr = group['lr']."),
    "ignore_wd": (
        "weight_decay had no effect: torch folds it into the gradient before "
        "anything else, `g = g.add(p, alpha=weight_decay)` (g + λ·p)."),
    "wd_sign": (
        "weight decay has the wrong sign: torch ADDS λ·p to the gradient, "
        "`g = g.add(p, alpha=weight_decay)`, so that it pulls weights "
        "towards zero."),
    "ignore_maximize": (
        "maximize=True had no effect: torch negates the gradient first, "
        "`g = -p.grad if maximize else p.grad`."),
    "maximize_flip": (
        "you implemented maximize by flipping the sign of the final update "
        "(p + lr·d). Torch negates the GRADIENT first, `g = -p.grad`, and "
        "only then adds weight decay, so weight decay still shrinks the "
        "weights; flipping the update makes weight decay grow them. (Without "
        "weight decay both give the same numbers, which is why this mistake "
        "hides.)"),
    "ignore_momentum": (
        "momentum had no effect: keep a buffer per parameter in "
        "self.state[p]['momentum_buffer'] and step along it, "
        "b = μ·b + (1 − τ)·g, d = b."),
    "buffer_not_saved": (
        "your momentum buffer is not kept from one step to the next (every "
        "step acts like a first step, b = g, so momentum has no effect). "
        "Store it: "
        "`self.state[p]['momentum_buffer'] = buf` when you create it, and "
        "update that same tensor in place on later steps."),
    "dampen_first": (
        "you applied dampening on the first step: b = (1 − τ)·g. Torch sets "
        "the buffer to an undampened copy of the gradient on a parameter's "
        "first step, `buf = g.clone()`, and applies dampening only from the "
        "second step on, `buf.mul_(momentum).add_(g, alpha=1 - dampening)`."),
    "zeros_buffer": (
        "your momentum buffer starts at zeros, so the first step gives "
        "b = μ·0 + (1 − τ)·g = (1 − τ)·g. Torch does not start from zeros: "
        "when state[p] has no 'momentum_buffer' yet, the buffer is a copy of "
        "the gradient, `buf = g.clone()` (no dampening), created at that "
        "parameter's first step -- not in __init__."),
    "dampening_tau": (
        "you scaled the gradient by the dampening τ; torch scales it by "
        "(1 − τ): `buf.mul_(momentum).add_(g, alpha=1 - dampening)`."),
    "ignore_dampening": (
        "dampening had no effect: from the second step on torch updates "
        "`buf.mul_(momentum).add_(g, alpha=1 - dampening)`."),
    "ema": (
        "you scaled the gradient by (1 − momentum), an exponential moving "
        "average; torch scales it by (1 − dampening): "
        "`buf.mul_(momentum).add_(g, alpha=1 - dampening)`."),
    "global_step": (
        "your 'first step' is decided by a global step counter, not per "
        "parameter. A parameter whose first gradient arrives late (a layer "
        "unfrozen later, a new param group) must also start with an "
        "undampened copy of its gradient. Test the parameter's own state: "
        "`buf = self.state[p].get('momentum_buffer')`; `if buf is None: "
        "buf = g.clone()`."),
    "wd_after_momentum": (
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
    "nesterov_old": (
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
    "cached_all": (
        "your step uses the constructor's settings instead of "
        "param_groups: each group has its own lr, momentum, ... and anyone "
        "may change them between steps (a scheduler, load_state_dict). "
        "Read every setting from `group[...]` inside `for group in "
        "self.param_groups:` at every step; don't keep self.lr or read "
        "self.defaults."),
    "group0": (
        "every parameter group was stepped with the settings of the first "
        "group. Loop `for group in self.param_groups:` and read lr, "
        "momentum, ... from that `group` for the parameters in "
        "`group['params']`."),
    "none_as_zero": (
        "parameters whose .grad is None were updated (as if their gradient "
        "were zero: they got weight decay or momentum). Torch skips them "
        "entirely, no update and no state: `if p.grad is None: continue`."),
}

# --------------------------------------------------------------------------
# Texts of the mistakes that a trajectory does not show
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# The mutants
# --------------------------------------------------------------------------

class MutantSGD(torch.optim.Optimizer):
    """``torch.optim.SGD``'s for-loop algorithm with one mistake (``mistake``).

    ``mistake = ""`` is the correct algorithm. The constructor does not
    validate anything: mutants only serve to reproduce wrong trajectories.
    """

    mistake: str = ""

    def __init__(self, params: Any, lr: Any = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0,
                 nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        self._constructor = dict(defaults)
        self._calls = 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of the (wrong) algorithm; returns the closure's value."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._calls += 1
        for group in self.param_groups:
            hyper = self._settings(group)
            for p in group["params"]:
                self._update(p, **hyper)
        return loss

    def _settings(self, group: dict[str, Any]) -> dict[str, Any]:
        """The settings the mutant (wrongly) uses for ``group``."""
        m = self.mistake
        source = group
        if m == "cached_all":
            source = self._constructor
        elif m == "group0":
            source = self.param_groups[0]
        hyper = {k: source[k] for k in _HYPER}
        if m == "cached_lr":
            hyper["lr"] = self._constructor["lr"]
        if m == "cached_momentum":
            for k in ("momentum", "dampening", "weight_decay", "nesterov", "maximize"):
                hyper[k] = self._constructor[k]
        return hyper

    def _update(self, p: Tensor, *, lr: Any, momentum: float, dampening: float,
                weight_decay: float, nesterov: bool, maximize: bool) -> None:
        m = self.mistake
        g = p.grad
        if g is None:
            if m != "none_as_zero":
                return
            g = torch.zeros_like(p)
        lr = float(lr)
        if maximize and m not in ("ignore_maximize", "maximize_flip"):
            g = -g
        if weight_decay != 0 and m not in ("ignore_wd", "wd_after_momentum"):
            g = g.add(p, alpha=-weight_decay if m == "wd_sign" else weight_decay)
        d = g
        if momentum != 0 and m != "ignore_momentum":
            state = self.state[p]
            buf = state.get("momentum_buffer")
            first = buf is None
            if m == "global_step":
                first = self._calls == 1
            elif m == "buffer_not_saved":
                first = True
            old = None
            if first:
                buf = g.mul(1 - dampening) if m == "dampen_first" else g.clone()
                if m != "buffer_not_saved":
                    state["momentum_buffer"] = buf
            else:
                if buf is None:  # global_step: a late parameter starts at zeros
                    buf = state["momentum_buffer"] = torch.zeros_like(g)
                old = buf.clone()
                alpha = {"dampening_tau": dampening, "ignore_dampening": 1,
                         "ema": 1 - momentum}.get(m, 1 - dampening)
                buf.mul_(momentum).add_(g, alpha=alpha)
            if nesterov and m != "nesterov_ignored":
                if m == "nesterov_old":
                    d = g.add(buf if old is None else old, alpha=momentum)
                else:
                    d = g.add(buf, alpha=momentum)
            else:
                d = buf
        if m == "wd_after_momentum" and weight_decay != 0:
            d = d.add(p, alpha=weight_decay)
        if m == "no_lr":
            p.sub_(d)
        elif m == "uphill" or (m == "maximize_flip" and maximize):
            p.add_(d, alpha=lr)
        else:
            p.add_(d, alpha=-lr)


#: Mutant keys in the order they are tried (the first match is reported);
#: each maps to its diagnosis in :data:`DIAGNOSES`. Some mistakes give the
#: same numbers as another one (ignoring momentum and not saving the buffer;
#: dampening on the first step and a zero-initialised buffer; caching every
#: setting and caching lr when only lr changes): the first one is reported.
MUTANTS: tuple[str, ...] = (
    "ignore_maximize", "uphill", "no_lr", "buffer_not_saved", "ignore_momentum", "dampen_first",
    "dampening_tau", "ignore_dampening", "ema", "ignore_wd", "maximize_flip",
    "wd_sign", "wd_after_momentum", "nesterov_ignored", "nesterov_old", "cached_lr",
    "cached_momentum", "cached_all", "group0", "global_step", "none_as_zero",
)

_CLASSES: dict[str, type[MutantSGD]] = {}


def mutant(key: str) -> type[MutantSGD]:
    """The mutant class with mistake ``key`` (one class per key, cached)."""
    if key not in _CLASSES:
        if key not in MUTANTS and key != "":
            raise KeyError(f"unknown mistake {key!r}")
        _CLASSES[key] = type(f"Mutant_{key or 'correct'}", (MutantSGD,),
                             {"mistake": key})
    return _CLASSES[key]


def diagnosis(key: str) -> str:
    """The diagnosis text of mutant ``key``."""
    return DIAGNOSES[key]
