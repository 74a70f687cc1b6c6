"""Tests of the lesson 06 checks beyond tests/test_exercises.py (which runs
every catalogued mistake of course/exercises/lesson06.py): each check passes
the reference solution (and course.optim.SGD), and fails the learner-style
wrong implementations that are not catalogue mistakes with their own message.
Every wrong class below is written the way a learner would."""

from __future__ import annotations

import pytest
import torch

import course.optim
import course.sgd
from course.checks import (
    check_decay_groups,
    check_get_momentum_buffer,
    check_sgd_class,
    check_sgd_init,
    check_sgd_production,
    check_sgd_state,
    check_sgd_step,
)
from course.exercises import lesson06 as spec
from tests.check_contract import fails, not_implemented


# --------------------------------------------------------------------------
# Reference solutions (as in the solution notebook)
# --------------------------------------------------------------------------

def decay_groups(model, weight_decay):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def get_momentum_buffer(optimizer, param):
    return optimizer.state.get(param, {}).get("momentum_buffer")


class SGD(torch.optim.Optimizer):
    """The solution notebook's class."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0,
                 weight_decay=0, nesterov=False, *, maximize=False,
                 foreach=None, differentiable=False, fused=None):
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        if fused and differentiable:
            raise RuntimeError("`fused` does not support `differentiable`")
        if fused and foreach:
            raise RuntimeError(
                "`fused` and `foreach` cannot be `True` together.")
        if fused:                       # the notebook's given lines
            self._step_supports_amp_scaling = True
            self._need_device_dtype_check_for_fused = True

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in [("nesterov", False), ("maximize", False),
                               ("foreach", None), ("differentiable", False),
                               ("fused", False)]:
                group.setdefault(key, value)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self.step_group(group)
        return loss

    def step_group(self, group):
        """One group's update (the part the mutants below change)."""
        for p in group["params"]:
            if p.grad is not None:
                self.update(p, group)
        self.foreach_nesterov_quirk(group)

    def foreach_nesterov_quirk(self, group):
        """The notebook's given helper (on a CPU): torch's foreach path with
        nesterov adds the buffer into p.grad when nothing copied it."""
        if group["foreach"] and group["nesterov"] and group["momentum"] != 0 \
                and not group["maximize"] and group["weight_decay"] == 0:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.add_(self.state[p]["momentum_buffer"],
                                alpha=group["momentum"])

    # (the notebook's solution inlines this loop body, hands fused groups to
    # the notebook's given helper and has optional differentiable branches:
    # test_solution_notebook_class_passes checks that class itself; wrong
    # classes below override `update` to change one thing)
    def update(self, p, group):
        lr = float(group["lr"])
        momentum, dampening = group["momentum"], group["dampening"]
        weight_decay = group["weight_decay"]
        g = -p.grad if group["maximize"] else p.grad
        if weight_decay != 0:
            g = g.add(p, alpha=weight_decay)
        if momentum != 0:
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.clone()
            else:
                buf.mul_(momentum).add_(g, alpha=1 - dampening)
            g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.add_(g, alpha=-lr)


class StubSGD(torch.optim.Optimizer):
    """The released notebook's class before the learner writes anything."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0,
                 weight_decay=0, nesterov=False, *, maximize=False,
                 foreach=None, differentiable=False, fused=None):
        raise NotImplementedError()

    @torch.no_grad()
    def step(self, closure=None):
        raise NotImplementedError()


SGD_CHECKS = [check_sgd_init, check_sgd_step, check_sgd_state, check_sgd_class,
              check_sgd_production]


# --------------------------------------------------------------------------
# Contract shared by all checks
# --------------------------------------------------------------------------

@pytest.mark.parametrize("check, reference, prefix", [
    (check_decay_groups, decay_groups, "decay_groups: "),
    (check_get_momentum_buffer, get_momentum_buffer, "get_momentum_buffer: "),
    (check_sgd_init, SGD, "SGD.__init__: "),
    (check_sgd_step, SGD, "SGD.step: "),
    (check_sgd_state, SGD, "SGD state: "),
    (check_sgd_class, SGD, "SGD: "),
    (check_sgd_production, SGD, "SGD production parity: "),
])
def test_reference_passes_with_one_line(check, reference, prefix, capsys):
    check(reference)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("\u2713 " + prefix)


@pytest.mark.parametrize("check", SGD_CHECKS)
def test_course_optim_sgd_passes(check, capsys):
    check(course.optim.SGD)
    assert capsys.readouterr().out.startswith("\u2713 ")


def _solution_notebook_sgd():
    """The SGD class of the solution notebook, with the notebook's given
    helpers, built as the grader's re-verification builds a learner's code."""
    import sys
    import types

    import nbformat

    from course.grading.source import learner_source
    from tests.conftest import ROOT

    path = ROOT / "solutions" / "06-optimizer-class" / "06-optimizer-class.ipynb"
    module = types.ModuleType("solution06_notebook")
    sys.modules[module.__name__] = module
    for chunk in learner_source(nbformat.read(path, as_version=4)):
        exec(compile(chunk, str(path), "exec"), module.__dict__)  # noqa: S102
    return module.SGD


@pytest.mark.parametrize("check, prefix", [
    (check_sgd_init, "SGD.__init__: "), (check_sgd_step, "SGD.step: "),
    (check_sgd_state, "SGD state: "), (check_sgd_class, "SGD: "),
    (check_sgd_production, "SGD production parity: ")])
def test_solution_notebook_class_passes(check, prefix, capsys):
    check(_solution_notebook_sgd())
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("\u2713 " + prefix)


def test_checks_leave_global_rng_alone():
    state = torch.random.get_rng_state()
    check_sgd_class(SGD)
    check_decay_groups(decay_groups)
    check_get_momentum_buffer(get_momentum_buffer)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("check, name", [
    (check_decay_groups, "decay_groups"),
    (check_get_momentum_buffer, "get_momentum_buffer"),
])
def test_function_checks_stub_and_non_callable(check, name):
    fails(check, not_implemented, f"`{name}` is not implemented yet")
    fails(check, 42, f"expects your function `{name}` itself")


@pytest.mark.parametrize("check", SGD_CHECKS)
def test_sgd_checks_stub_instance_and_non_class(check):
    fails(check, StubSGD, "`SGD` is not implemented yet: replace "
          r"`raise NotImplementedError\(\)`")
    fails(check, SGD([torch.zeros(2, requires_grad=True)]), "got an optimizer instance")
    fails(check, lambda params, lr=0.1: None, "expects your class `SGD`")
    # (a value such as 3: the generic contract, tests/test_exercises.py)


def test_other_exception_names_case_and_exception():
    class Crashes(SGD):
        def update(self, p, group):
            raise ZeroDivisionError("oops")

    fails(check_sgd_step, Crashes,
          r"case 'plain SGD, lr=0.1': step 1: SGD.step\(\) raised ZeroDivisionError: oops")

    def broken(model, wd):
        return [1 / 0]
    fails(check_decay_groups, broken, "case '.*': `decay_groups` raised ZeroDivisionError")


# --------------------------------------------------------------------------
# decay_groups
# --------------------------------------------------------------------------

# The catalogued mistakes (course/exercises/lesson06.py) are tested by
# tests/test_exercises.py; below, learner-style variants that are not them.

def test_decay_groups_mistakes():
    fails(check_decay_groups, lambda m, wd: None, "returned None.*forget `return")

    def names(model, wd):
        return [{"params": [n for n, p in model.named_parameters() if p.ndim >= 2],
                 "weight_decay": wd}, {"params": [], "weight_decay": 0.0}]
    fails(check_decay_groups, names, "holds names like")

    def missing(model, wd):
        groups = decay_groups(model, wd)
        groups[1]["params"] = groups[1]["params"][1:]
        return groups
    fails(check_decay_groups, missing, "is missing from your groups")

    def twice(model, wd):
        groups = decay_groups(model, wd)
        groups[1]["params"] = groups[1]["params"] + groups[0]["params"][:1]
        return groups
    fails(check_decay_groups, twice, "in your groups twice")

    def reordered(model, wd):
        groups = decay_groups(model, wd)
        groups[1]["params"] = groups[1]["params"][::-1]
        return groups
    fails(check_decay_groups, reordered, "keep the order of model.parameters")

    def extra_lr(model, wd):
        groups = decay_groups(model, wd)
        groups[0]["lr"] = 0.1
        return groups
    fails(check_decay_groups, extra_lr, "extra keys \\['lr'\\]")

    def wrong_wd(model, wd):
        groups = decay_groups(model, wd)
        groups[0]["weight_decay"] = 0.01
        return groups
    fails(check_decay_groups, wrong_wd, "first group has weight_decay 0.01, expected 0.0005")


# --------------------------------------------------------------------------
# get_momentum_buffer
# --------------------------------------------------------------------------

def test_get_momentum_buffer_mistakes():
    fails(check_get_momentum_buffer, lambda opt, p: opt.state[p]["momentum_buffer"],
          "raised KeyError.*Return None")


# --------------------------------------------------------------------------
# SGD: structure and delegation
# --------------------------------------------------------------------------

def test_not_a_subclass_of_optimizer():
    class Plain:
        def __init__(self, params, lr=1e-3, momentum=0, dampening=0,
                     weight_decay=0, nesterov=False, *, maximize=False,
                     foreach=None, differentiable=False, fused=None):
            self.param_groups = [dict(params=list(params), lr=lr)]

        def step(self, closure=None):
            pass

    for check in SGD_CHECKS:
        fails(check, Plain, "must subclass torch.optim.Optimizer.*isinstance")


def test_delegation_is_rejected():
    class Subclass(torch.optim.SGD):
        pass

    class Wrapper(torch.optim.Optimizer):
        def __init__(self, params, lr=1e-3, momentum=0, dampening=0,
                     weight_decay=0, nesterov=False, *, maximize=False,
                     foreach=None, differentiable=False, fused=None):
            params = list(params)
            self._inner = torch.optim.SGD(params, lr, momentum, dampening,
                                          weight_decay, nesterov, maximize=maximize)
            super().__init__(params, self._inner.defaults)
            self.param_groups = self._inner.param_groups
            self.state = self._inner.state

        def step(self, closure=None):
            return self._inner.step(closure)

    class Functional(SGD):
        def step_group(self, group):
            from torch.optim._functional import sgd
            step_with(self, group, sgd)

    for check in SGD_CHECKS:
        fails(check, Subclass, "subclasses torch.optim.SGD")
    fails(check_sgd_init, Wrapper, "creates a torch.optim.SGD")
    fails(check_sgd_class, Wrapper, "creates a torch.optim.SGD")
    fails(check_sgd_step, Functional, "calls torch.optim.sgd.sgd.*write the update yourself")
    fails(check_sgd_class, Functional, "calls torch.optim.sgd")


def step_with(opt, group, update):
    """Step ``group`` with ``update(params, grads, bufs, **hyper)``, a
    multi-tensor function that fills and updates ``bufs`` in place."""
    params = [p for p in group["params"] if p.grad is not None]
    momentum = group["momentum"]
    bufs = [opt.state[p].get("momentum_buffer") if momentum != 0 else None for p in params]
    update(params, [p.grad for p in params], bufs,
           **{k: group[k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov",
                                    "maximize")})
    if momentum != 0:
        for p, b in zip(params, bufs):
            opt.state[p]["momentum_buffer"] = b


def fused_sgd(params, grads, bufs, **hyper):
    """Stands in for the notebook's given fused helper (same name; the
    for-loop's numbers, so that only the call gives it away)."""
    course.sgd.sgd_update_foreach(params, [g.clone() for g in grads], bufs, **hyper)


def test_given_fused_path_for_plain_groups_is_rejected():
    class HandsOverToGiven(SGD):
        def step_group(self, group):
            step_with(self, group, fused_sgd)

    fails(check_sgd_step, HandsOverToGiven, r"ran the given `fused_sgd` for a group "
          r"that does not ask for fused=True.*foreach=True included.*write the "
          r"for-loop update yourself")
    fails(check_sgd_class, HandsOverToGiven, r"ran the given `fused_sgd`")


# --------------------------------------------------------------------------
# foreach=True: the learner's loop, plus torch's in-place p.grad with nesterov
# --------------------------------------------------------------------------

def test_foreach_quirk_forgotten():
    class NoQuirk(SGD):
        def foreach_nesterov_quirk(self, group):
            pass

    check_sgd_step(NoQuirk)          # only the production part asks for foreach
    check_sgd_state(NoQuirk)
    check_sgd_class(NoQuirk)
    fails(check_sgd_production, NoQuirk,
          r"case 'MLP float32, foreach=True, momentum=0.9, nesterov=True; 2.bias grad "
          r"None at step 3': your parameters match torch.optim.SGD's, but p.grad of "
          r"tensor 0 \(shape \(5, 10\)\) differs after step 1: expected .*, got .*\."
          r"\n  Diagnosis: with foreach=True and nesterov=True .* torch adds the momentum "
          r"buffer into p.grad in place.*Call the given `foreach_nesterov_quirk\(self, "
          r"group\)` once after your loop")


def test_foreach_quirk_everywhere():
    class QuirkAlways(SGD):      # also with weight decay: p.grad was copied there
        def foreach_nesterov_quirk(self, group):
            if group["foreach"] and group["nesterov"]:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.add_(self.state[p]["momentum_buffer"],
                                    alpha=group["momentum"])

    fails(check_sgd_production, QuirkAlways,
          r"case 'MLP float64, foreach=True, momentum=0.9, nesterov=True, "
          r"weight_decay=0.05': your parameters match .* but p.grad of tensor 0 .*"
          r"Diagnosis: your step changed p.grad")


def test_foreach_quirk_twice():
    class QuirkTwice(SGD):
        def foreach_nesterov_quirk(self, group):
            SGD.foreach_nesterov_quirk(self, group)
            SGD.foreach_nesterov_quirk(self, group)

    fails(check_sgd_production, QuirkTwice,
          r"p.grad of tensor 0 .* differs after step 1.*Diagnosis: torch's p.grad "
          r"after this step is g \+ μ·b .*neither that nor the untouched gradient")


def test_foreach_quirk_inside_the_loop():
    class QuirkInLoop(SGD):
        def step_group(self, group):
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, group)
                    self.foreach_nesterov_quirk(group)

    fails(check_sgd_production, QuirkInLoop,
          r"case 'MLP float32, foreach=True.*step 1: SGD.step\(\) raised KeyError: "
          r"'momentum_buffer'.*Diagnosis: with foreach=True your own loop steps the "
          r"group.*AFTER the loop")


def test_foreach_group_handed_to_torch_foreach():
    """A class that runs torch's foreach kernels itself (course.sgd's) for
    foreach groups passes: the same bits, the same p.grad."""
    class OwnForeach(SGD):
        def step_group(self, group):
            if group["foreach"]:
                step_with(self, group, course.sgd.sgd_update_foreach)
            else:
                super().step_group(group)

    check_sgd_production(OwnForeach)


# --------------------------------------------------------------------------
# SGD.__init__
# --------------------------------------------------------------------------

def _init_variant(body):
    """An SGD whose __init__ validates with ``body(lr, momentum, dampening,
    weight_decay, nesterov)`` before super().__init__."""
    class Variant(SGD):
        def __init__(self, params, lr=1e-3, momentum=0, dampening=0,
                     weight_decay=0, nesterov=False, *, maximize=False,
                     foreach=None, differentiable=False, fused=None):
            body(lr, momentum, dampening, weight_decay, nesterov)
            defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                            weight_decay=weight_decay, nesterov=nesterov,
                            maximize=maximize, foreach=foreach,
                            differentiable=differentiable, fused=fused)
            torch.optim.Optimizer.__init__(self, params, defaults)
            if fused and differentiable:
                raise RuntimeError("`fused` does not support `differentiable`")
            if fused and foreach:
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    return Variant


def _torch_rules(lr, momentum, dampening, weight_decay, nesterov, *, order=None,
                 error=ValueError, messages=None, extra=None):
    checks = {
        "tensor": (lambda: isinstance(lr, torch.Tensor) and lr.numel() != 1,
                   "Tensor lr must be 1-element"),
        "lr": (lambda: lr < 0.0, f"Invalid learning rate: {lr}"),
        "momentum": (lambda: momentum < 0.0, f"Invalid momentum value: {momentum}"),
        "wd": (lambda: weight_decay < 0.0, f"Invalid weight_decay value: {weight_decay}"),
        "nesterov": (lambda: nesterov and (momentum <= 0 or dampening != 0),
                     "Nesterov momentum requires a momentum and zero dampening"),
    }
    for key in order or ["tensor", "lr", "momentum", "wd", "nesterov"]:
        cond, msg = checks[key]
        if cond():
            raise (error(key) if error is not ValueError else
                   ValueError((messages or {}).get(key, msg)))
    if extra:
        extra()


def test_validation_wrong_message():
    body = lambda lr, m, d, wd, n: _torch_rules(
        lr, m, d, wd, n, messages={"lr": f"learning rate must be >= 0, got {lr}"})
    check_sgd_init(_init_variant(body))      # the core compares exception types only
    fails(check_sgd_production, _init_variant(body),
          r"lr=-0.1.*torch's message exactly: 'Invalid learning rate: -0.1'")


def test_validation_other_order():
    body = lambda lr, m, d, wd, n: _torch_rules(
        lr, m, d, wd, n, order=["tensor", "momentum", "lr", "wd", "nesterov"])
    check_sgd_init(_init_variant(body))
    fails(check_sgd_production, _init_variant(body),
          r"lr=-1, momentum=-1 \(both invalid\).*torch raises "
          r"ValueError\('Invalid learning rate: -1.0'\); your SGD raised "
          r"ValueError\('Invalid momentum value: -1.0'\).*your checks run in a "
          r"different order")


def test_wrong_exception_type_in_the_core():
    body = lambda lr, m, d, wd, n: _torch_rules(lr, m, d, wd, n, error=TypeError)
    fails(check_sgd_init, _init_variant(body),
          r"torch raises ValueError \('Tensor lr must be 1-element'\); your SGD raised "
          r"TypeError.*use the same exception type as torch")


def test_fused_checks_and_amp_flags_are_production_only():
    """The spec's `fused_checks_missing` passes the core checks, fails the optional one."""
    from course.exercises.lesson06 import PRODUCTION_MISTAKES
    NoFusedChecks = next(m.impl for m in PRODUCTION_MISTAKES if m.name == "fused_checks_missing")
    check_sgd_init(NoFusedChecks)
    check_sgd_class(NoFusedChecks)
    fails(check_sgd_production, NoFusedChecks,
          r"SGD\(fused=True, differentiable=True\).*torch raises RuntimeError"
          r".*your SGD accepted the arguments. These two checks come AFTER "
          r"super\(\).__init__")


def test_validation_missing_check():
    body = lambda lr, m, d, wd, n: _torch_rules(
        lr, m, d, wd, n, order=["tensor", "lr", "momentum", "wd"])
    fails(check_sgd_init, _init_variant(body),
          r"nesterov=True \(momentum=0\).*your SGD accepted the arguments")


@pytest.mark.parametrize("extra, case", [
    (lambda lr, m, d, wd, n: d != 0 and m == 0 and (_ for _ in ()).throw(
        ValueError("dampening requires momentum")), r"dampening=0.5 without momentum"),
    (lambda lr, m, d, wd, n: not 0 <= d <= 1 and (_ for _ in ()).throw(
        ValueError(f"Invalid dampening value: {d}")), r"dampening=-0.5"),
])
def test_over_validation(extra, case):
    def body(lr, m, d, wd, n):
        _torch_rules(lr, m, d, wd, n)
        extra(lr, m, d, wd, n)
    fails(check_sgd_init, _init_variant(body),
          case + r".*torch accepts this.*don't add checks that torch doesn't have")


def test_signature_mistakes():
    class Required(SGD):
        def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0,
                     nesterov=False, *, maximize=False, foreach=None,
                     differentiable=False, fused=None):
            super().__init__(params, lr, momentum, dampening, weight_decay, nesterov,
                             maximize=maximize, foreach=foreach,
                             differentiable=differentiable, fused=fused)
    fails(check_sgd_init, Required, r"`lr` has no default; torch's default is 0.001")

    class Positional(SGD):
        def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                     nesterov=False, maximize=False, *, foreach=None,
                     differentiable=False, fused=None):
            super().__init__(params, lr, momentum, dampening, weight_decay, nesterov,
                             maximize=maximize, foreach=foreach,
                             differentiable=differentiable, fused=fused)
    fails(check_sgd_init, Positional, r"`maximize` must be keyword-only")

    class FloatDefault(SGD):
        def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0, weight_decay=0,
                     nesterov=False, *, maximize=False, foreach=None,
                     differentiable=False, fused=None):
            super().__init__(params, lr, momentum, dampening, weight_decay, nesterov,
                             maximize=maximize, foreach=foreach,
                             differentiable=differentiable, fused=fused)
    fails(check_sgd_init, FloatDefault, r"`momentum` has default 0.0 \(float\); "
          r"torch's default is 0 \(int\)")

    class NoFlags(SGD):
        def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                     nesterov=False, *, maximize=False):
            super().__init__(params, lr, momentum, dampening, weight_decay, nesterov,
                             maximize=maximize)
    fails(check_sgd_init, NoFlags, r"no parameter `foreach`")


# --------------------------------------------------------------------------
# SGD.step: trajectory mistakes
# --------------------------------------------------------------------------

def _step_variant(update):
    class Variant(SGD):
        pass
    Variant.update = update
    return Variant


def _parts(group):
    return (float(group["lr"]), group["momentum"], group["dampening"],
            group["weight_decay"], group["nesterov"], group["maximize"])


def _decayed(p, wd, mx):
    """The right gradient of the update: -p.grad if maximize, plus wd * p."""
    g = -p.grad if mx else p.grad
    if wd != 0:
        g = g.add(p, alpha=wd)
    return g


def _momentum(store, key, g, m, d, nest):
    """The right direction when momentum m != 0, its buffer kept in store[key]."""
    buf = store.get(key)
    if buf is None:
        buf = store[key] = g.clone()
    else:
        buf.mul_(m).add_(g, alpha=1 - d)
    return g.add(buf, alpha=m) if nest else buf


class GlobalCounter(SGD):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.t = 0

    @torch.no_grad()
    def step(self, closure=None):
        self.t += 1
        return super().step(closure)

    def update(self, p, group):
        lr, m, d, wd, nest, mx = _parts(group)
        g = _decayed(p, wd, mx)
        if m != 0:
            if self.t == 1:
                buf = self.state[p]["momentum_buffer"] = g.clone()
            else:
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(m).add_(g, alpha=1 - d)
            g = g.add(buf, alpha=m) if nest else buf
        p.add_(g, alpha=-lr)


class GlobalCounterCrash(GlobalCounter):
    def update(self, p, group):
        lr, m, d, wd, nest, mx = _parts(group)
        g = _decayed(p, wd, mx)
        if m != 0:
            if self.t == 1:
                buf = self.state[p]["momentum_buffer"] = g.clone()
            else:
                buf = self.state[p]["momentum_buffer"]
                buf.mul_(m).add_(g, alpha=1 - d)
            g = g.add(buf, alpha=m) if nest else buf
        p.add_(g, alpha=-lr)


def upd_modifies_grad(self, p, group):
    lr, m, d, wd, nest, mx = _parts(group)
    g = p.grad
    if mx:
        g.neg_()
    if wd != 0:
        g.add_(p, alpha=wd)
    if m != 0:
        g = _momentum(self.state[p], "momentum_buffer", g, m, d, nest)
    p.add_(g, alpha=-lr)


def upd_aliases_grad(self, p, group):
    lr, m, d, wd, nest, mx = _parts(group)
    g = _decayed(p, wd, mx)
    if m != 0:
        buf = self.state[p].get("momentum_buffer")
        if buf is None:
            buf = self.state[p]["momentum_buffer"] = g  # no copy
        else:
            buf.mul_(m).add_(g, alpha=1 - d)
        g = g.add(buf, alpha=m) if nest else buf
    p.add_(g, alpha=-lr)


def upd_natural_math(self, p, group):
    lr, m, d, wd, nest, mx = _parts(group)
    g = -p.grad if mx else p.grad
    if wd != 0:
        g = g + wd * p
    if m != 0:
        buf = self.state[p].get("momentum_buffer")
        if buf is None:
            buf = g.clone()
        else:
            buf = m * buf + (1 - d) * g
        self.state[p]["momentum_buffer"] = buf
        g = g + m * buf if nest else buf
    p -= lr * g


STEP_MISTAKES = [
    (upd_modifies_grad, r"\.grad was changed by step\(\).*never `p.grad.add_"),
    (upd_aliases_grad, "shares memory with its .grad.*buf = g.clone"),
    (upd_natural_math, r"agree with torch's to within \d+ ulp.*fused multiply-add.*"
                       r"p.add_\(d, alpha=-lr\)"),
]


@pytest.mark.parametrize("update, pattern", STEP_MISTAKES,
                         ids=[u.__name__ for u, _ in STEP_MISTAKES])
def test_step_mistakes(update, pattern):
    cls = _step_variant(update)
    fails(check_sgd_step, cls, pattern)
    fails(check_sgd_class, cls, pattern)


def upd_out_of_place_step(self, p, group):
    """Right formulas and torch's ops, except the last line: `p - lr * d`
    computed out of place (two roundings instead of one fused multiply-add)."""
    lr, m, d, wd, nest, mx = _parts(group)
    g = _decayed(p, wd, mx)
    if m != 0:
        g = _momentum(self.state[p], "momentum_buffer", g, m, d, nest)
    p.copy_(p - lr * g)


def upd_nesterov_old_buffer(self, p, group):
    """Nesterov with the buffer as it was before this step's update."""
    lr, m, d, wd, nest, mx = _parts(group)
    g = _decayed(p, wd, mx)
    if m != 0:
        buf = self.state[p].get("momentum_buffer")
        if buf is None:
            buf = self.state[p]["momentum_buffer"] = g.clone()
            old = buf
        else:
            old = buf.clone()
            buf.mul_(m).add_(g, alpha=1 - d)
        g = g.add(old, alpha=m) if nest else buf
    p.add_(g, alpha=-lr)


ROUNDING = r"Diagnosis: over all steps your parameters agree with torch's to within \d+ ulp"
NESTEROV_OLD = r"Diagnosis: your Nesterov step used the OLD buffer"


@pytest.mark.parametrize("update, diagnosis", [
    (upd_out_of_place_step, ROUNDING),
    (upd_natural_math, ROUNDING),
    (upd_nesterov_old_buffer, NESTEROV_OLD),
], ids=["rounding_out_of_place", "rounding_natural_math", "nesterov_old_buffer"])
def test_one_mistake_one_diagnosis_in_every_check(update, diagnosis, capsys):
    """A class with one mistake in its update gets that mistake's diagnosis from
    every check cell that sees it (the closure case and the state layout of
    check_sgd_state included), and the constructor check passes."""
    cls = _step_variant(update)
    check_sgd_init(cls)
    assert capsys.readouterr().out.startswith("\u2713 ")
    for check in (check_sgd_step, check_sgd_state, check_sgd_class):
        msg = fails(check, cls, diagnosis)
        assert msg.count("Diagnosis:") == 1, msg
        assert "closure computed" not in msg and "store the momentum buffer" not in msg


def test_closure_and_layout_cases_diagnose_the_update():
    """check_sgd_state's first two cases see a wrong update before the trace
    flows do: they name the update's mistake, not the closure or the layout."""
    msg = fails(check_sgd_state, _step_variant(upd_out_of_place_step), ROUNDING)
    assert msg.startswith("case 'loss = opt.step(closure), called inside torch.no_grad()'")

    class NoneAsZero(SGD):          # a missing gradient stepped as a zero one
        def step_group(self, group):
            for p in group["params"]:
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                lr, m, d, wd, nest, mx = _parts(group)
                g = -grad if mx else grad
                if wd != 0:
                    g = g.add(p, alpha=wd)
                if m != 0:
                    g = _momentum(self.state[p], "momentum_buffer", g, m, d, nest)
                p.add_(g, alpha=-lr)

    none = r"Diagnosis: parameters whose .grad is None were updated"
    for check in (check_sgd_step, check_sgd_state, check_sgd_class):
        fails(check, NoneAsZero, none)


def test_ulp_message_counts_ulps():
    msg = fails(check_sgd_step, _step_variant(upd_natural_math), "ulp")
    import re
    n = int(re.search(r"to within (\d+) ulp", msg).group(1))
    assert 1 <= n <= 64


def test_global_step_counter_crash():
    # (GlobalCounter itself is the catalogued global_step_counter)
    fails(check_sgd_step, GlobalCounterCrash,
          r"first grad arrives at step 3.*raised KeyError.*Decide 'first step' per parameter")


class CachedLr(SGD):
    def __init__(self, params, lr=1e-3, **kwargs):
        super().__init__(params, lr, **kwargs)
        self.lr = lr

    def update(self, p, group):
        SGD.update(self, p, dict(group, lr=self.lr))


def test_cached_lr_breaks_scheduler_and_state_dict():
    class CachedLrButStep(CachedLr):
        pass
    msg = fails(check_sgd_state, CachedLrButStep, "learning rate given to the constructor")
    assert "state_dict from torch.optim.SGD loaded into your SGD" in msg

    # a class that reads group['lr'] but caches it once at its first step: only a
    # scheduler (or load_state_dict) reveals it
    class LazyCache(SGD):
        def update(self, p, group):
            lr = group.setdefault("_first_lr", group["lr"])
            SGD.update(self, p, dict(group, lr=lr))
    fails(check_sgd_state, LazyCache, "StepLR|state_dict")


class NoneCrash(SGD):
    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                self.update(p, group)


def test_none_grads():
    fails(check_sgd_step, NoneCrash, r"grad is None at step 2.*raised AttributeError.*"
          r"Torch skips such parameters")


def test_no_grad_missing():
    class Recording(SGD):
        def step(self, closure=None):  # no @torch.no_grad()
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self.update(p, group)
    fails(check_sgd_step, Recording, r"leaf Variable.*Decorate step with "
          r"`@torch.no_grad\(\)`.*keep the given decorator `@no_grad_unless_differentiable`")


def test_tensor_lr_not_converted():
    class TensorAlpha(SGD):
        def update(self, p, group):
            _, m, d, wd, nest, mx = _parts(group)
            lr = group["lr"]  # not converted to a float
            g = _decayed(p, wd, mx)
            if m != 0:
                g = _momentum(self.state[p], "momentum_buffer", g, m, d, nest)
            p.add_(g, alpha=-lr)
    fails(check_sgd_step, TensorAlpha, r"torch.tensor\(\[0.05\]\).*float\(group\['lr'\]\)")


def test_grid_generic_message():
    class WrongF64Nesterov(SGD):
        def update(self, p, group):
            if p.dtype == torch.float64 and group["nesterov"] and group["maximize"] \
                    and p.ndim == 2 and p.shape[0] == 1:
                SGD.update(self, p, dict(group, lr=float(group["lr"]) * 1.01))
            else:
                SGD.update(self, p, group)
    check_sgd_step(WrongF64Nesterov)  # the targeted scenarios don't see it
    fails(check_sgd_class, WrongF64Nesterov,
          r"case 'MLP float64, .*nesterov=True, maximize=True.*': your parameters differ "
          r"from torch.optim.SGD's after step 1, tensor 2 \(shape \(1, 5\)\): "
          r"max abs diff .* ulp")


# --------------------------------------------------------------------------
# Closure, state layout, state_dict
# --------------------------------------------------------------------------

def _closure_variant(step):
    class Variant(SGD):
        pass
    Variant.step = step
    return Variant


def _loop(self):
    for group in self.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                self.update(p, group)


@torch.no_grad()
def step_no_enable_grad(self, closure=None):
    loss = closure() if closure is not None else None
    _loop(self)
    return loss


@torch.no_grad()
def step_twice(self, closure=None):
    loss = None
    if closure is not None:
        with torch.enable_grad():
            closure()
            loss = closure()
    _loop(self)
    return loss


@torch.no_grad()
def step_no_return(self, closure=None):
    if closure is not None:
        with torch.enable_grad():
            closure()
    _loop(self)


@torch.no_grad()
def step_item(self, closure=None):
    loss = None
    if closure is not None:
        with torch.enable_grad():
            loss = closure().item()
    _loop(self)
    return loss


@torch.no_grad()
def step_ignores_closure(self, closure=None):
    _loop(self)


@torch.no_grad()
def step_closure_after(self, closure=None):
    _loop(self)
    if closure is not None:
        with torch.enable_grad():
            return closure()


@pytest.mark.parametrize("step, pattern", [
    (step_no_enable_grad, r"closure ran with gradients disabled.*torch.enable_grad"),
    (step_twice, r"called the closure 2 times.*exactly once"),
    (step_no_return, r"must return exactly what the closure returned.*returned None"),
    (step_item, r"must return exactly what the closure returned.*returned a float"),
    (step_ignores_closure, r"ignored the closure"),
    (step_closure_after, r"did not use the gradients the closure computed"),
])
def test_closure_mistakes(step, pattern):
    cls = _closure_variant(step)
    fails(check_sgd_state, cls, pattern)
    fails(check_sgd_class, cls, pattern)


class BuffersAttribute(SGD):
    def update(self, p, group):
        if not hasattr(self, "buffers"):
            self.buffers = {}
        lr, m, d, wd, nest, mx = _parts(group)
        g = _decayed(p, wd, mx)
        if m != 0:
            g = _momentum(self.buffers, p, g, m, d, nest)
        p.add_(g, alpha=-lr)


class OtherKey(SGD):
    def update(self, p, group):
        lr, m, d, wd, nest, mx = _parts(group)
        g = _decayed(p, wd, mx)
        if m != 0:
            g = _momentum(self.state[p], "buf", g, m, d, nest)
        p.add_(g, alpha=-lr)


class StateForMomentum0(SGD):
    def update(self, p, group):
        self.state[p]["steps"] = self.state[p].get("steps", 0) + 1
        SGD.update(self, p, group)


class StoresDirection(SGD):
    def update(self, p, group):
        SGD.update(self, p, group)
        if group["momentum"] != 0:  # overwrite the buffer by a copy (wrong)
            self.state[p]["momentum_buffer"] = self.state[p]["momentum_buffer"] * 1.5


class TouchesStateOfFrozen(SGD):
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]  # creates an entry even for skipped params
                if p.grad is not None:
                    self.update(p, group)
                del state
        return loss


def test_state_layout_mistakes():
    fails(check_sgd_state, BuffersAttribute, r"self.state stayed empty although "
          r"momentum=0.9.*\(self.buffers\).*self.state\[p\]\['momentum_buffer'\]")
    fails(check_sgd_class, BuffersAttribute, r"self.state stayed empty")
    fails(check_sgd_state, OtherKey, r"state\[p\] has the keys \['buf'\].*'momentum_buffer'")
    fails(check_sgd_state, StateForMomentum0, r"state\[p\] has the keys "
          r"\['momentum_buffer', 'steps'\]")
    fails(check_sgd_state, TouchesStateOfFrozen, r"never had a gradient got a state entry")


def test_stored_buffer_differs():
    msg = fails(check_sgd_step, StoresDirection, "differ from torch.optim.SGD's")
    assert "Diagnosis" in msg or "max abs diff" in msg


def test_missing_super_init():
    class NoSuper(SGD):
        def __init__(self, params, lr=1e-3, momentum=0, dampening=0,
                     weight_decay=0, nesterov=False, *, maximize=False,
                     foreach=None, differentiable=False, fused=None):
            self.params = list(params)
    fails(check_sgd_step, NoSuper, r"has no attribute '(param_groups|_optimizer_step_pre_hooks)'.*"
          r"super\(\).__init__\(params, defaults\)")
    fails(check_sgd_init, NoSuper, r"no `defaults` dict")


def test_step_return_without_closure():
    @torch.no_grad()
    def step(self, closure=None):
        loss = 0.0
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        _loop(self)
        return loss
    fails(check_sgd_state, _closure_variant(step), r"without a closure must return None")


def test_broken_state_dict():
    class NoLoad(SGD):
        def load_state_dict(self, state_dict):
            pass  # "nothing to load"
    fails(check_sgd_state, NoLoad, "state_dict from torch.optim.SGD loaded into your SGD")

    class OwnStateDict(SGD):
        def state_dict(self):
            return {"lr": self.param_groups[0]["lr"]}
    fails(check_sgd_state, OwnStateDict, r"dict with the keys 'state' and 'param_groups'")


def test_zero_grad_override():
    class ZeroGradKeeps(SGD):
        def zero_grad(self, set_to_none=True):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.zero_()
    fails(check_sgd_state, ZeroGradKeeps, r"zero_grad\(\) and zero_grad\(set_to_none=False\)")


# --------------------------------------------------------------------------
# The mutants themselves
# --------------------------------------------------------------------------

def test_correct_mutant_is_torch():
    check_sgd_step(spec.CorrectSGD)
