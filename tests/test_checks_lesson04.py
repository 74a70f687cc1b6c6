"""Tests of the lesson 04 checks beyond tests/test_exercises.py: learner-style
wrong implementations that are not catalogued mistakes (variants, contract
breaches, partial mistakes), what must pass, and how failures are reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course.checks import (
    check_effective_lr,
    check_heavy_ball,
    check_momentum_step,
    check_steps_after_lr_change,
)
from tests.check_contract import fails


# --------------------------------------------------------------------------
# Reference solutions (as in the solution notebook)
# --------------------------------------------------------------------------

def momentum_step(p, grad, buf, lr, momentum, dampening=0.0):
    if buf is None:
        new_buf = grad.clone()
    else:
        new_buf = buf.mul(momentum).add(grad, alpha=1 - dampening)
    return p.add(new_buf, alpha=-lr), new_buf


def heavy_ball(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
    w = w0.clone()
    buf = None
    history = [w.clone()]
    for _ in range(n_steps):
        w, buf = momentum_step(w, f_grad(w), buf, lr, momentum, dampening)
        history.append(w.clone())
    return torch.stack(history)


def steps_after_lr_change(buf, grad, lr_old, lr_new, momentum):
    torch_step = lr_new * (momentum * buf + grad)
    velocity_step = momentum * (lr_old * buf) + lr_new * grad
    return torch_step, velocity_step


# --------------------------------------------------------------------------
# momentum_step
# --------------------------------------------------------------------------

def torch_buffer(grad, buf, momentum, dampening):
    """The right new buffer: grad.clone() first, then momentum * buf + (1 - τ) * grad."""
    return grad.clone() if buf is None else momentum * buf + (1 - dampening) * grad


def with_buffer(new_buf):
    """A momentum_step that steps right with the buffer ``new_buf(grad, buf, momentum,
    dampening)``."""
    def step(p, grad, buf, lr, momentum, dampening=0.0):
        b = new_buf(grad, buf, momentum, dampening)
        return p - lr * b, b
    return step


def with_result(result):
    """A momentum_step with the right buffer b that returns ``result(p, grad, buf, lr, b)``."""
    def step(p, grad, buf, lr, momentum, dampening=0.0):
        return result(p, grad, buf, lr, torch_buffer(grad, buf, momentum, dampening))
    return step


def test_momentum_step_exact_ops_are_reported_bit_exact(capsys):
    check_momentum_step(momentum_step)
    assert "bit for bit" in capsys.readouterr().out


def test_momentum_step_natural_math_passes_to_rounding(capsys):
    check_momentum_step(with_buffer(torch_buffer))  # p - lr * b, b without alpha=
    assert "momentum_step: 5 cases" in capsys.readouterr().out


def test_momentum_step_in_place_like_torch_passes():
    def in_place(p, grad, buf, lr, momentum, dampening=0.0):
        if buf is None:
            buf = grad.detach().clone()
        else:
            buf.mul_(momentum).add_(grad, alpha=1 - dampening)
        p.add_(buf, alpha=-lr)
        return p, buf
    check_momentum_step(in_place)


def test_momentum_step_zero_buffer_as_python_zero():
    def zero_start(p, grad, buf, lr, momentum, dampening=0.0):
        buf = 0.0 if buf is None else buf
        buf = momentum * buf + (1 - dampening) * grad
        return p - lr * buf, buf
    fails(check_momentum_step, zero_start, r"starting from a zero buffer gives the same")


@pytest.mark.parametrize("new_buf, pattern", [
    pytest.param(lambda g, buf, m, d: g if buf is None else m * buf + (1 - d) * g,
                 "new_buf aliases grad.*grad.clone()", id="aliases_grad"),
    pytest.param(lambda g, buf, m, d: g.detach() if buf is None else m * buf + (1 - d) * g,
                 "shares memory with grad", id="detach_view_aliases_grad"),
    # dampening=0 turns the gradient off entirely at the later step
    pytest.param(lambda g, buf, m, d: g.clone() if buf is None else m * buf + d * g,
                 "later step, lr=0.05.*new_buf", id="tau_instead_of_one_minus_tau"),
])
def test_momentum_step_wrong_buffer(new_buf, pattern):
    fails(check_momentum_step, with_buffer(new_buf), pattern)


@pytest.mark.parametrize("result, pattern", [
    pytest.param(lambda p, g, buf, lr, b: p - lr * b, "must return a pair new_p, new_buf",
                 id="returns_single_tensor"),
    pytest.param(lambda p, g, buf, lr, b: ((p - lr * b).numpy(), b),
                 "new_p must be a torch.Tensor", id="numpy_output"),
    pytest.param(lambda p, g, buf, lr, b: ((p - lr * b).double(), b),
                 "dtype torch.float64 but p is torch.float32", id="dtype_change"),
])
def test_momentum_step_wrong_result(result, pattern):
    fails(check_momentum_step, with_result(result), pattern)


def test_momentum_step_cs231n_sign():
    def cs231n(p, grad, buf, lr, momentum, dampening=0.0):
        b = -grad.clone() if buf is None else momentum * buf - (1 - dampening) * grad
        return p + lr * b, b
    fails(check_momentum_step, cs231n, "momentum sign is wrong")


def test_momentum_step_modifies_grad():
    def mutates(p, grad, buf, lr, momentum, dampening=0.0):
        if buf is None:
            b = grad.clone()
        else:
            grad.mul_(1 - dampening)
            b = momentum * buf + grad
        return p - lr * b, b
    fails(check_momentum_step, mutates, "changed grad in place")


def test_momentum_step_tau_confusion_with_dampening():
    def tau(p, grad, buf, lr, momentum, dampening=0.0):
        if buf is None:
            return p - lr * grad, grad.clone()
        b = momentum * buf + (dampening if dampening else 1.0) * grad
        return p - lr * b, b
    fails(check_momentum_step, tau, "dampening τ; torch multiplies it by \\(1 − τ\\)")


def test_momentum_step_returns_none_buffer():
    fails(check_momentum_step, lambda p, g, b, lr, m, d=0.0: (p - lr * g, b),
          "returned buffer is None.*grad.clone()")


# --------------------------------------------------------------------------
# heavy_ball
# --------------------------------------------------------------------------

def test_heavy_ball_names_an_unfinished_momentum_step():
    def momentum_step(*args):
        raise NotImplementedError()

    def uses_stub(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        w, buf, hist = w0.clone(), None, [w0.clone()]
        for _ in range(n_steps):
            w, buf = momentum_step(w, f_grad(w), buf, lr, momentum, dampening)
            hist.append(w.clone())
        return torch.stack(hist)
    fails(check_heavy_ball, uses_stub,
          "`heavy_ball` calls `momentum_step`, which is not implemented yet")


def test_heavy_ball_reports_bit_exact(capsys):
    check_heavy_ball(heavy_ball)
    assert "bit for bit" in capsys.readouterr().out


def test_heavy_ball_natural_math_passes():
    def natural(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        w, b, hist = w0.clone(), None, [w0.clone()]
        for _ in range(n_steps):
            g = f_grad(w)
            b = g.clone() if b is None else momentum * b + (1 - dampening) * g
            w = w - lr * b
            hist.append(w)
        return torch.stack(hist)
    check_heavy_ball(natural)


def test_heavy_ball_numpy_history_is_rejected_as_in_grading():
    def as_numpy(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        return heavy_ball(f_grad, w0, lr, momentum, n_steps, dampening).numpy()
    fails(check_heavy_ball, as_numpy,
          r"expected a tensor of shape.*got ndarray.*`torch.stack\(history\)`, not a numpy")


def test_heavy_ball_zero_buffer_reset_every_step():
    def reset(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        w, hist = w0.clone(), [w0.clone()]
        for _ in range(n_steps):
            b = momentum * torch.zeros_like(w) + (1 - dampening) * f_grad(w)
            w = w - lr * b
            hist.append(w.clone())
        return torch.stack(hist)
    fails(check_heavy_ball, reset, "plain gradient descent")


def test_heavy_ball_appends_aliased_tensor():
    def alias(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        w, b, hist = w0.clone(), None, [w0.clone()]
        w = w0.clone()
        hist = [w]
        for _ in range(n_steps):
            g = f_grad(w)
            b = g.clone() if b is None else b.mul_(momentum).add_(g, alpha=1 - dampening)
            w.add_(b, alpha=-lr)
            hist.append(w)
        return torch.stack(hist)
    fails(check_heavy_ball, alias, "every row of your history is the same point.*w.clone()")


def test_heavy_ball_missing_w0():
    def no_w0(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        return heavy_ball(f_grad, w0, lr, momentum, n_steps, dampening)[1:]
    fails(check_heavy_ball, no_w0, r"got \(15, 2\).*starting point is missing")


def test_heavy_ball_missing_last_step():
    def short(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        return heavy_ball(f_grad, w0, lr, momentum, n_steps, dampening)[:-1]
    fails(check_heavy_ball, short, "last step is missing")


def test_heavy_ball_returns_list():
    def as_list(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        return list(heavy_ball(f_grad, w0, lr, momentum, n_steps, dampening))
    fails(check_heavy_ball, as_list, r"returned a list.*torch.stack\(history\)")


def test_heavy_ball_mutates_w0():
    def mutate(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        out = heavy_ball(f_grad, w0, lr, momentum, n_steps, dampening)
        w0.copy_(out[-1])
        return out
    fails(check_heavy_ball, mutate, r"changed the caller's w0 in place.*w0.clone\(\)")


def test_heavy_ball_default_dtype():
    def f32(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        return heavy_ball(f_grad, w0, lr, momentum, n_steps, dampening).float()
    fails(check_heavy_ball, f32, "dtype torch.float32 but w0 is torch.float64")


def test_heavy_ball_generic_mismatch_names_row():
    def wrong(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        out = heavy_ball(f_grad, w0, lr, momentum, n_steps, dampening).clone()
        if n_steps > 3:
            out[3:] += 0.01
        return out
    msg = fails(check_heavy_ball, wrong, r"row 3 \(w_3\): expected")
    assert "Diagnosis" not in msg


# --------------------------------------------------------------------------
# effective_lr
# --------------------------------------------------------------------------

def test_effective_lr_multiplied_and_no_dampening():
    """lr·(1 − β), dampening dropped too: not in the catalogue, but on the first
    case (no dampening) it is lr·(1 − τ)·(1 − β), which is named."""
    fails(check_effective_lr, lambda lr, m, d=0.0: lr * (1 - m),
          r"multiplied by \(1 − β\) instead of dividing")


def test_effective_lr_accepts_numpy_and_tensor_numbers():
    check_effective_lr(lambda lr, m, d=0.0: np.float64(lr * (1 - d) / (1 - m)))
    check_effective_lr(lambda lr, m, d=0.0: torch.tensor(lr * (1 - d) / (1 - m)))


def test_effective_lr_rejects_non_number():
    fails(check_effective_lr, lambda lr, m, d=0.0: "0.1", "expected a number, got str")


# --------------------------------------------------------------------------
# steps_after_lr_change
# --------------------------------------------------------------------------

def test_steps_swapped():
    fails(check_steps_after_lr_change,
          lambda b, g, lr0, lr1, m: steps_after_lr_change(b, g, lr0, lr1, m)[::-1],
          "your two steps are swapped")


def test_steps_negated():
    def neg(b, g, lr0, lr1, m):
        t, v = steps_after_lr_change(b, g, lr0, lr1, m)
        return -t, -v
    fails(check_steps_after_lr_change, neg, "both steps have the wrong sign")


def test_steps_single_value():
    fails(check_steps_after_lr_change,
          lambda b, g, lr0, lr1, m: lr1 * (m * b + g),
          "must return a pair torch_step, velocity_step")


def test_steps_tensor_inputs_need_tensor_outputs():
    def as_list(b, g, lr0, lr1, m):
        t, v = steps_after_lr_change(b, g, lr0, lr1, m)
        if isinstance(b, torch.Tensor):
            return t.tolist(), v.tolist()
        return t, v
    fails(check_steps_after_lr_change, as_list, "torch_step must be a number")
