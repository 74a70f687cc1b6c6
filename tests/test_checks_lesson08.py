"""Tests of the lesson 08 checks beyond tests/test_exercises.py (which runs
every catalogued mistake of course/exercises/lesson08.py): learner-style wrong
implementations that are not catalogued mistakes (variants, contract breaches,
partial mistakes), what must pass, and how failures are reported."""

from __future__ import annotations

import pytest
import torch

from course.checks import (
    check_foreach_sgd_class,
    check_foreach_sgd_update,
    check_group_by_device_and_dtype,
    check_step_op_counts,
)
from course.optim import SGD
from course.sgd import _single_tensor_sgd
from tests.check_contract import fails


# --------------------------------------------------------------------------
# Reference solutions (as in the solution notebook)
# --------------------------------------------------------------------------

def step_op_counts(n_tensors, *, momentum=0.0, weight_decay=0.0, nesterov=False,
                   maximize=False):
    per_line = 1
    per_line += 1 if maximize else 0
    per_line += 1 if weight_decay != 0 else 0
    per_line += 2 if momentum != 0 else 0
    per_line += 1 if nesterov else 0
    return n_tensors * per_line, per_line


def group_by_device_and_dtype(tensors):
    groups = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return groups


def foreach_sgd_update(params, grads, bufs, *, lr, momentum=0.0, dampening=0.0,
                       weight_decay=0.0, nesterov=False, maximize=False):
    if maximize:
        grads = torch._foreach_neg(grads)
    if weight_decay != 0:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if momentum != 0:
        if all(b is not None for b in bufs):
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads, alpha=1 - dampening)
        else:
            for i, g in enumerate(grads):
                if bufs[i] is None:
                    bufs[i] = g.detach().clone()
                else:
                    bufs[i].mul_(momentum).add_(g, alpha=1 - dampening)
        if nesterov:
            grads = torch._foreach_add(grads, bufs, alpha=momentum)
        else:
            grads = bufs
    torch._foreach_add_(params, grads, alpha=-lr)


def make_class(update=None, group_fn=group_by_device_and_dtype):
    """ForeachSGD as in the notebook, with a replaceable foreach update."""
    update = update or foreach_sgd_update

    class ForeachSGD(SGD):
        @torch.no_grad()
        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                momentum = group["momentum"]
                for idx in group_fn(params).values():
                    ps = [params[i] for i in idx]
                    bufs = [self.state[p].get("momentum_buffer") if momentum != 0
                            else None for p in ps]
                    update(ps, [p.grad for p in ps], bufs, lr=group["lr"],
                           momentum=momentum, dampening=group["dampening"],
                           weight_decay=group["weight_decay"],
                           nesterov=group["nesterov"], maximize=group["maximize"])
                    if momentum != 0:
                        for p, buf in zip(ps, bufs):
                            self.state[p]["momentum_buffer"] = buf
            return loss

    return ForeachSGD


ForeachSGD = make_class()


# --------------------------------------------------------------------------
# The solutions above pass; None is explained
# --------------------------------------------------------------------------

@pytest.mark.parametrize("check, reference, name", [
    (check_step_op_counts, step_op_counts, "step_op_counts"),
    (check_group_by_device_and_dtype, group_by_device_and_dtype, "group_by_device_and_dtype"),
    (check_foreach_sgd_update, foreach_sgd_update, "foreach_sgd_update"),
    (check_foreach_sgd_class, ForeachSGD, "ForeachSGD"),
])
def test_reference_passes_with_one_line(check, reference, name, capsys):
    check(reference)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(f"\u2713 {name}: "), out


def test_returning_none_is_explained():
    fails(check_step_op_counts, lambda *a, **k: None, "returned None.*forget `return")
    fails(check_group_by_device_and_dtype, lambda t: None, "returned None.*forget `return")


# --------------------------------------------------------------------------
# step_op_counts
# --------------------------------------------------------------------------

# The catalogued mistakes (course/exercises/lesson08.py) are tested by
# tests/test_exercises.py; below, learner-style variants that are not them.

def test_step_op_counts_wrong_types():
    fails(check_step_op_counts, lambda n, **k: n, r"must return a pair \(loop_ops, foreach_ops\)")
    fails(check_step_op_counts, lambda n, **k: (float(n), 1.0), "both counts must be ints")


def test_step_op_counts_unknown_mistake_is_generic():
    msg = fails(check_step_op_counts, lambda n, **k: (n + 7, 3),
                r"case 'n_tensors=4': expected \(4, 1\) \(measured on torch.optim.SGD\), "
                r"got \(11, 3\)\.$")
    assert "Diagnosis" not in msg


# --------------------------------------------------------------------------
# group_by_device_and_dtype
# --------------------------------------------------------------------------

def group_by(key_fn, value_fn=lambda i, t: i):
    def wrong(tensors):
        groups = {}
        for i, t in enumerate(tensors):
            groups.setdefault(key_fn(t), []).append(value_fn(i, t))
        return groups
    return wrong


@pytest.mark.parametrize("fn, pattern", [
    (group_by(lambda t: (str(t.device), t.dtype)), "device in your key is a str"),
    (group_by(lambda t: (t.device.type, t.dtype)), "device in your key is a str"),
    (group_by(lambda t: (t.device, str(t.dtype))), "second element of each key must be `t.dtype`"),
    (group_by(lambda t: f"{t.device}-{t.dtype}"), "must be the tuple `\\(t.device, t.dtype\\)`"),
    (group_by(lambda t: (t.device, t.dtype), lambda i, t: float(i)), "must be ints"),
])
def test_group_by_key_and_value_mistakes(fn, pattern):
    fails(check_group_by_device_and_dtype, fn, pattern)


def test_group_by_tuple_values():
    def tuples(tensors):
        return {k: tuple(v) for k, v in group_by_device_and_dtype(tensors).items()}
    fails(check_group_by_device_and_dtype, tuples, "must be a list of indices")


def test_group_by_missing_index():
    def skip_small(tensors):
        groups = {}
        for i, t in enumerate(tensors):
            if t.numel() > 1:
                groups.setdefault((t.device, t.dtype), []).append(i)
        return groups
    fails(check_group_by_device_and_dtype, skip_small,
          "must appear exactly once|expected the groups")


def test_group_by_missing_group():
    def first_dtype_only(tensors):
        groups = group_by_device_and_dtype(tensors)
        return dict(list(groups.items())[:1])
    fails(check_group_by_device_and_dtype, first_dtype_only,
          "expected the groups.*one group per distinct")


def test_group_by_mutating_input():
    def reverse_first(tensors):
        tensors.reverse()
        return group_by_device_and_dtype(tensors)
    fails(check_group_by_device_and_dtype, reverse_first, "changed the list it was given")


def test_group_by_not_a_dict():
    fails(check_group_by_device_and_dtype, lambda t: [list(range(len(t)))],
          "expected a dict")


# --------------------------------------------------------------------------
# foreach_sgd_update
# --------------------------------------------------------------------------

def update(**variants):
    """foreach_sgd_update with switchable variants: gradients changed in place
    by only one of the two lines (``neg_in_place``, ``wd_in_place``: each half
    of the catalogued ``grad_modified_in_place``), and one allowed variant,
    ``nesterov_in_place``."""
    def wrong(params, grads, bufs, *, lr, momentum=0.0, dampening=0.0,
              weight_decay=0.0, nesterov=False, maximize=False):
        if maximize:
            if variants.get("neg_in_place"):
                torch._foreach_neg_(grads)
            else:
                grads = torch._foreach_neg(grads)
        if weight_decay != 0:
            if variants.get("wd_in_place"):
                torch._foreach_add_(grads, params, alpha=weight_decay)
            else:
                grads = torch._foreach_add(grads, params, alpha=weight_decay)
        if momentum != 0:
            if any(b is None for b in bufs):
                for i, g in enumerate(grads):
                    if bufs[i] is None:
                        bufs[i] = g.detach().clone()
                    else:
                        bufs[i].mul_(momentum).add_(g, alpha=1 - dampening)
            else:
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads, alpha=1 - dampening)
            if nesterov:
                if variants.get("nesterov_in_place"):
                    # torch's quirk: without maximize or weight decay this
                    # writes into the caller's grads (p.grad)
                    torch._foreach_add_(grads, bufs, alpha=momentum)
                else:
                    grads = torch._foreach_add(grads, bufs, alpha=momentum)
            else:
                grads = bufs
        torch._foreach_add_(params, grads, alpha=-lr)
    return wrong


def test_update_built_from_mistake_switches_is_correct_without_mistakes():
    check_foreach_sgd_update(update())


@pytest.mark.parametrize("variant, pattern", [
    ("wd_in_place", "changed the gradients in place.*no trailing underscore"),
    ("neg_in_place", "changed the gradients in place"),
])
def test_update_grads_changed_in_place_by_one_line(variant, pattern):
    fails(check_foreach_sgd_update, update(**{variant: True}), pattern)


def test_update_dampened_first_step():
    def damp_first(params, grads, bufs, *, lr, momentum=0.0, dampening=0.0,
                   weight_decay=0.0, nesterov=False, maximize=False):
        first = [i for i, b in enumerate(bufs) if b is None]
        foreach_sgd_update(params, grads, bufs, lr=0.0, momentum=momentum,
                           dampening=dampening, weight_decay=weight_decay,
                           nesterov=nesterov, maximize=maximize)
        for i in first if momentum else []:
            bufs[i].mul_(1 - dampening)
        # redo the parameter step with these buffers
        g = torch._foreach_neg(grads) if maximize else grads
        if weight_decay:
            g = torch._foreach_add(g, params, alpha=weight_decay)
        if momentum:
            g = torch._foreach_add(g, bufs, alpha=momentum) if nesterov else bufs
        torch._foreach_add_(params, g, alpha=-lr)
    msg = fails(check_foreach_sgd_update, damp_first,
                r"dampening=0.5, first step'.*applied dampening on the first step.*"
                r"detach\(\).clone\(\)")
    assert "zeros" not in msg.split("Diagnosis")[1]


def test_update_few_ulp_off_gets_generic_fma_hint():
    def scaled_lr(params, grads, bufs, *, lr, **kw):
        foreach_sgd_update(params, grads, bufs, lr=float(lr) * (1 + 2e-7), **kw)
    fails(check_foreach_sgd_update, scaled_lr,
          r"agree with torch's to \d+ ulp but not bit for bit.*fused multiply-add")


def test_update_buffers_with_momentum_zero():
    def fills_anyway(params, grads, bufs, *, lr, momentum=0.0, **kw):
        foreach_sgd_update(params, grads, bufs, lr=lr, momentum=momentum, **kw)
        for i, g in enumerate(grads):
            bufs[i] = g.clone()
    fails(check_foreach_sgd_update, fills_anyway, "momentum = 0 there are no buffers")


def test_update_per_tensor_loop_is_not_foreach():
    loop_kw = lambda params, grads, bufs, *, lr, momentum=0.0, dampening=0.0, \
        weight_decay=0.0, nesterov=False, maximize=False: _single_tensor_sgd(  # noqa: E731
            params, grads, bufs, lr=lr, momentum=momentum, dampening=dampening,
            weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
    fails(check_foreach_sgd_update, loop_kw,
          r"op count: 12 tensors.*dispatched \d+ per-tensor ops \(.*that is a for-loop")


def test_update_nesterov_in_place_grads_like_torch_is_allowed():
    check_foreach_sgd_update(update(nesterov_in_place=True))


def test_update_course_reference_passes():
    from course.sgd import sgd_update_foreach
    check_foreach_sgd_update(sgd_update_foreach)


# --------------------------------------------------------------------------
# ForeachSGD
# --------------------------------------------------------------------------

def test_class_not_a_class():
    fails(check_foreach_sgd_class, ForeachSGD([torch.zeros(1, requires_grad=True)]),
          "expects your class `ForeachSGD` itself")
    fails(check_foreach_sgd_class, foreach_sgd_update, "expects your class")


def test_class_must_subclass_optimizer():
    class Plain:
        pass
    fails(check_foreach_sgd_class, Plain, "must subclass `SGD`")


def test_class_stub_not_implemented():
    class Stub(SGD):
        def step(self, closure=None):
            raise NotImplementedError()
    fails(check_foreach_sgd_class, Stub, "`ForeachSGD` is not implemented yet")


def test_class_other_exception_names_case():
    class Broken(SGD):
        def step(self, closure=None):
            raise ValueError("boom")
    fails(check_foreach_sgd_class, Broken, "case 'default': `ForeachSGD` raised ValueError: boom")


def test_class_cached_lr():
    base = make_class()

    class Cached(base):
        def __init__(self, params, **kw):
            super().__init__(params, **kw)
            self._lrs = [g["lr"] for g in self.param_groups]

        @torch.no_grad()
        def step(self, closure=None):
            now = [g["lr"] for g in self.param_groups]
            for g, lr in zip(self.param_groups, self._lrs):
                g["lr"] = lr
            try:
                return super().step(closure)
            finally:
                for g, lr in zip(self.param_groups, now):
                    g["lr"] = lr
    fails(check_foreach_sgd_class, Cached, r"step 4.*until the learning rate changed")


def test_class_uses_defaults_instead_of_group():
    def step(self, closure=None):
        with torch.no_grad():
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                bufs = [self.state[p].get("momentum_buffer") if self.defaults["momentum"]
                        else None for p in params]
                for idx in group_by_device_and_dtype(params).values():
                    b = [bufs[i] for i in idx]
                    foreach_sgd_update(
                        [params[i] for i in idx], [params[i].grad for i in idx], b,
                        lr=self.defaults["lr"], momentum=self.defaults["momentum"],
                        dampening=self.defaults["dampening"],
                        weight_decay=self.defaults["weight_decay"],
                        nesterov=self.defaults["nesterov"],
                        maximize=self.defaults["maximize"])
                    if self.defaults["momentum"]:
                        for i, buf in zip(idx, b):
                            self.state[params[i]]["momentum_buffer"] = buf
    Defaults = type("Defaults", (SGD,), {"step": step})
    fails(check_foreach_sgd_class, Defaults,
          r"step 1, parameter 4.*only the second param group")


def test_class_state_for_momentum_zero():
    base = make_class()

    class Touchy(base):
        def step(self, closure=None):
            for g in self.param_groups:
                for p in g["params"]:
                    self.state[p]
            return super().step(closure)
    fails(check_foreach_sgd_class, Touchy, "momentum = 0 torch keeps opt.state empty")


def test_class_without_no_grad():
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            foreach_sgd_update(params, [p.grad for p in params], [None] * len(params),
                               lr=group["lr"])
    NoGrad = type("NoGrad", (SGD,), {"step": step})
    fails(check_foreach_sgd_class, NoGrad, "leaf Variable.*@torch.no_grad\\(\\)")


def test_class_none_grads_not_skipped():
    def step(self, closure=None):
        with torch.no_grad():
            for group in self.param_groups:
                params = list(group["params"])
                foreach_sgd_update(params, [p.grad for p in params], [None] * len(params),
                                   lr=group["lr"])
    NoSkip = type("NoSkip", (SGD,), {"step": step})
    fails(check_foreach_sgd_class, NoSkip, "NoneType.*skip parameters whose .grad is None")


def test_class_course_foreach_path_passes():
    class ViaCourse(SGD):
        def __init__(self, params, **kw):
            super().__init__(params, foreach=True, **kw)
    check_foreach_sgd_class(ViaCourse)
