"""The checks of lesson 02-autograd: pass the reference, diagnose the classic mistakes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course.checks import (
    check_autograd_derivative,
    check_finite_difference,
    check_fit_linear_regression,
    check_gd_step_autograd,
)
from tests.check_contract import CheckContract, fails

# --------------------------------------------------------------------------
# Reference solutions (the same as in the solution notebook)
# --------------------------------------------------------------------------


def autograd_derivative(f, w):
    w = torch.tensor(w, requires_grad=True)
    f(w).backward()
    return w.grad.item()


def finite_difference(f, w, eps=1e-6):
    return (f(w + eps) - f(w - eps)) / (2 * eps)


def gd_step_autograd(params, loss_fn, lr):
    for p in params:
        p.grad = None
    loss = loss_fn()
    loss.backward()
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
    return loss.item()


def fit_linear_regression(X, y, lr, n_steps):
    w = torch.zeros(X.shape[1], dtype=X.dtype, requires_grad=True)
    b = torch.zeros((), dtype=X.dtype, requires_grad=True)
    losses = []
    for _ in range(n_steps):
        losses.append(gd_step_autograd(
            [w, b], lambda: ((X @ w + b - y) ** 2).mean(), lr))
    return w, b, losses


ALL = [
    (check_autograd_derivative, autograd_derivative, "autograd_derivative"),
    (check_finite_difference, finite_difference, "finite_difference"),
    (check_gd_step_autograd, gd_step_autograd, "gd_step_autograd"),
    (check_fit_linear_regression, fit_linear_regression, "fit_linear_regression"),
]
CHECKS = {name: (check, reference) for check, reference, name in ALL}


# --------------------------------------------------------------------------
# Contract shared by every check
# --------------------------------------------------------------------------


class TestContract(CheckContract):
    ALL = ALL


def no_return(reference):
    """The reference solution with its result thrown away."""
    def fn(*args, **kwargs):
        reference(*args, **kwargs)
    return fn


@pytest.mark.parametrize("name", CHECKS)
def test_returned_none(name):
    check, reference = CHECKS[name]
    fails(check, no_return(reference), r"returned None.*forget `return`")


@pytest.mark.parametrize("name", CHECKS)
def test_checks_leave_global_state_alone(name):
    """Learner code that draws random numbers or disables grad is undone."""
    check, reference = CHECKS[name]

    def noisy(*args, **kwargs):
        torch.rand(3)
        return reference(*args, **kwargs)

    state = torch.random.get_rng_state()
    check(noisy)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("name", CHECKS)
def test_grad_mode_switched_off(name):
    def switch_off(*args, **kwargs):
        torch.set_grad_enabled(False)
        return None

    fails(CHECKS[name][0], switch_off, r"switched gradient tracking off")
    assert torch.is_grad_enabled()


# --------------------------------------------------------------------------
# Exercise 2.1: autograd_derivative
# --------------------------------------------------------------------------


def returning(result):
    """autograd_derivative done right up to its return value, ``result(w, out)``
    (w the tensor that requires grad, out = f(w) after out.backward())."""
    def wrong(f, w):
        w = torch.tensor(w, requires_grad=True)
        out = f(w)
        out.backward()
        return result(w, out)
    return wrong


@pytest.mark.parametrize("result, pattern", [
    pytest.param(lambda w, out: w.grad, r"got a tensor.*value is right.*\.item\(\)",
                 id="returned_tensor"),
    pytest.param(lambda w, out: out, r"returned f\(w\), a tensor with grad_fn=\w+",
                 id="returned_f_value_tensor"),
    pytest.param(lambda w, out: w, r"returned the input tensor itself.*\.grad",
                 id="returned_input_tensor"),
    pytest.param(lambda w, out: out.item(), r"returned f\(w\), the value of the function",
                 id="returned_f_value_float"),
    pytest.param(lambda w, out: w.grad.numpy(),
                 r"expected a Python float, got ndarray.*\.item\(\)", id="numpy_array"),
])
def test_derivative_wrong_return_value(result, pattern):
    fails(check_autograd_derivative, returning(result), pattern)


def test_derivative_backward_twice():
    def wrong(f, w):
        w = torch.tensor(w, requires_grad=True)
        f(w).backward()
        f(w).backward()
        return w.grad.item()
    fails(check_autograd_derivative, wrong, r"twice f'\(w\).*ADDS.*called 2 time")


def test_derivative_called_f_on_float():
    def wrong(f, w):
        torch.tensor(w, requires_grad=True)
        out = f(w)
        out.backward()
        return 0.0
    fails(check_autograd_derivative, wrong, r"called f with the plain number w = 5\.0")


def test_derivative_no_requires_grad():
    def wrong(f, w):
        w = torch.tensor(w)
        f(w).backward()
        return w.grad.item()
    fails(check_autograd_derivative, wrong, r"does not require grad.*requires_grad=True")


def test_derivative_without_autograd():
    def wrong(f, w):  # right values from a float64 finite difference
        def g(x):
            return f(torch.tensor(x, dtype=torch.float64)).item()
        return (g(w + 1e-6) - g(w - 1e-6)) / 2e-6
    fails(check_autograd_derivative, wrong, r"never called with a tensor that requires grad")


def test_derivative_wrong_value_generic():
    fails(check_autograd_derivative, lambda f, w: 1.0,
          r"case 'f\(w\) = \(w - 3\)\*\*2, w = 5\.0': expected 4, got 1\.")


# --------------------------------------------------------------------------
# Exercise 2.2: finite_difference
# --------------------------------------------------------------------------


def test_fd_forward_difference():
    msg = fails(check_finite_difference,
                lambda f, w, eps=1e-6: (f(w + eps) - f(w)) / eps,
                r"forward difference.*O\(eps\).*central")
    assert "eps = 0.01" in msg


def test_fd_backward_difference():
    fails(check_finite_difference, lambda f, w, eps=1e-6: (f(w) - f(w - eps)) / eps,
          r"backward difference")


def test_fd_forgot_factor_two():
    fails(check_finite_difference,
          lambda f, w, eps=1e-6: (f(w + eps) - f(w - eps)) / eps,
          r"forgot the factor 2")


def test_fd_precedence():
    fails(check_finite_difference,
          lambda f, w, eps=1e-6: (f(w + eps) - f(w - eps)) / 2 * eps,
          r"precedence.*`/ \(2 \* eps\)`")


def test_fd_sign_flipped():
    fails(check_finite_difference,
          lambda f, w, eps=1e-6: (f(w - eps) - f(w + eps)) / (2 * eps),
          r"sign is flipped")


def test_fd_ignored_eps():
    fails(check_finite_difference,
          lambda f, w, eps=1e-6: (f(w + 1e-6) - f(w - 1e-6)) / 2e-6,
          r"did not use the eps that was passed in")


def test_fd_wrong_default_eps():
    def wrong(f, w, eps=0.5):
        return (f(w + eps) - f(w - eps)) / (2 * eps)
    fails(check_finite_difference, wrong, r"default eps.*eps=1e-6")


def test_fd_returned_array():
    fails(check_finite_difference,
          lambda f, w, eps=1e-6: np.array([finite_difference(f, w, eps)]),
          r"expected a float, got ndarray")


def test_fd_accepts_equivalent_forms(capsys):
    check_finite_difference(lambda f, w, eps=1e-6: f(w + eps) / (2 * eps)
                            - f(w - eps) / (2 * eps))
    check_finite_difference(lambda f, w, eps=1e-6: 0.5 * (f(w + eps) - f(w - eps)) / eps)
    assert capsys.readouterr().out.count("\u2713") == 2


# --------------------------------------------------------------------------
# Exercise 2.3: gd_step_autograd
# --------------------------------------------------------------------------


def backward_from_cleared(params, loss_fn):
    """The right start of a step: clear every .grad, compute the loss, backward()."""
    for p in params:
        p.grad = None
    loss = loss_fn()
    loss.backward()
    return loss


def descend(params, lr):
    """The right update: p -= lr * p.grad for every p, under torch.no_grad()."""
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad


def step_no_zero(params, loss_fn, lr):
    loss = loss_fn()
    loss.backward()
    descend(params, lr)
    return loss.item()


def step_zero_at_end(params, loss_fn, lr):
    loss = loss_fn()
    loss.backward()
    descend(params, lr)
    for p in params:
        p.grad = None
    return loss.item()


def test_step_forgot_to_zero():
    fails(check_gd_step_autograd, step_no_zero,
          r"three steps in a row.*step 2.*gradients accumulated across steps.*Zero the gradients")


def test_step_zeroed_at_end_uses_stale_grad():
    fails(check_gd_step_autograd, step_zero_at_end,
          r"stale \.grad.*used the stale gradient.*START of the step")


def test_step_zero_grad_on_none():
    def wrong(params, loss_fn, lr):
        for p in params:
            p.grad.zero_()
        return gd_step_autograd(params, loss_fn, lr)
    fails(check_gd_step_autograd, wrong,
          r"AttributeError.*p\.grad is None before the first backward\(\).*p\.grad = None")


def test_step_update_outside_no_grad():
    def wrong(params, loss_fn, lr):
        loss = backward_from_cleared(params, loss_fn)
        for p in params:
            p -= lr * p.grad
        return loss.item()
    fails(check_gd_step_autograd, wrong,
          r"a leaf Variable that requires grad.*`with torch\.no_grad\(\): p -= lr \* p\.grad`")


def test_step_replaced_tensor_outside_no_grad():
    def wrong(params, loss_fn, lr):
        loss = backward_from_cleared(params, loss_fn)
        for i, p in enumerate(params):
            params[i] = p - lr * p.grad
        return loss.item()
    fails(check_gd_step_autograd, wrong,
          r"params\[0\] is a different object.*OUTSIDE torch\.no_grad\(\).*not a leaf.*"
          r"grad_fn=SubBackward0")


def test_step_replaced_tensor_inside_no_grad():
    def wrong(params, loss_fn, lr):
        loss = backward_from_cleared(params, loss_fn)
        with torch.no_grad():
            for i, p in enumerate(params):
                params[i] = (p - lr * p.grad).requires_grad_()
        return loss.item()
    fails(check_gd_step_autograd, wrong,
          r"params\[0\] is a different object.*never sees the update")


def test_step_rebinds_local_name():
    def wrong(params, loss_fn, lr):
        loss = backward_from_cleared(params, loss_fn)
        for p in params:
            p = p - lr * p.grad  # noqa: PLW2901 - the mistake under test
        return loss.item()
    fails(check_gd_step_autograd, wrong,
          r"did not change: `p = p - lr \* p\.grad` only rebinds the local name")


def test_step_zeroed_between_backward_and_update():
    def wrong(params, loss_fn, lr):
        loss = loss_fn()
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.grad.zero_()
                p -= lr * p.grad
        return loss.item()
    fails(check_gd_step_autograd, wrong, r"zeroed the gradients between backward\(\) and")


def test_step_uphill():
    def wrong(params, loss_fn, lr):
        return gd_step_autograd(params, loss_fn, -lr)
    fails(check_gd_step_autograd, wrong, r"moved the parameters uphill")


def test_step_forgot_backward():
    def wrong(params, loss_fn, lr):
        for p in params:
            p.grad = None
        loss = loss_fn()
        descend(params, lr)
        return loss.item()
    fails(check_gd_step_autograd, wrong, r"TypeError.*p\.grad is None when you use it")


def test_step_loss_inside_no_grad():
    def wrong(params, loss_fn, lr):
        for p in params:
            p.grad = None
        with torch.no_grad():
            loss = loss_fn()
            loss.backward()
            for p in params:
                p -= lr * p.grad
        return loss.item()
    fails(check_gd_step_autograd, wrong, r"does not require grad.*outside torch\.no_grad\(\)")


def test_step_backward_on_function():
    def wrong(params, loss_fn, lr):
        loss_fn.backward()
    fails(check_gd_step_autograd, wrong, r"loss_fn is a function: call it")


def test_step_detached_params():
    def wrong(params, loss_fn, lr):
        loss = gd_step_autograd(params, loss_fn, lr)
        for p in params:
            p.requires_grad_(False)
        return loss
    fails(check_gd_step_autograd, wrong, r"no longer requires grad")


def test_step_returned_tensor():
    def wrong(params, loss_fn, lr):
        loss = backward_from_cleared(params, loss_fn)
        descend(params, lr)
        return loss
    fails(check_gd_step_autograd, wrong, r"got a tensor.*loss\.item\(\)")


def test_step_returned_loss_after_update():
    def wrong(params, loss_fn, lr):
        gd_step_autograd(params, loss_fn, lr)
        with torch.no_grad():
            return loss_fn().item()
    fails(check_gd_step_autograd, wrong, r"returned the loss AFTER the update")


def test_step_accepts_add_alpha_and_zero_(capsys):
    def other(params, loss_fn, lr):
        for p in params:
            if p.grad is not None:
                p.grad.zero_()
        loss = loss_fn()
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-lr)
        return loss.item()
    check_gd_step_autograd(other)
    assert capsys.readouterr().out.startswith("\u2713")


# --------------------------------------------------------------------------
# Exercise 2.4: fit_linear_regression
# --------------------------------------------------------------------------


def fit_variant(*, reduction="mean", zero=True, shape=None, shift=False,
                bias=True, init=0.0, as_tensors=False):
    """A fit with one classic mistake switched on."""
    def fit(X, y, lr, n_steps):
        d = X.shape[1]
        w = torch.full(shape or (d,), init, requires_grad=True)
        b = torch.zeros((), requires_grad=True)
        params = [w, b] if bias else [w]
        losses = []
        for _ in range(n_steps + shift):
            if zero:
                for p in params:
                    p.grad = None
            sq = (X @ w + (b if bias else 0) - y) ** 2
            loss = {"mean": sq.mean(), "sum": sq.sum(), "half": 0.5 * sq.mean()}[reduction]
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
            losses.append(loss if as_tensors else loss.item())
        return w, b, losses[shift:]
    return fit


def test_fit_sum_instead_of_mean():
    fails(check_fit_linear_regression, fit_variant(reduction="sum"),
          r"one step.*SUM of squared errors.*n = 50 times larger")


def test_fit_half_mean():
    fails(check_fit_linear_regression, fit_variant(reduction="half"),
          r"half the mean squared error")


def test_fit_forgot_to_zero():
    fails(check_fit_linear_regression, fit_variant(zero=False),
          r"20 steps.*gradients accumulated across steps")


def test_fit_column_vector_w():
    fails(check_fit_linear_regression, fit_variant(shape=(2, 1)),
          r"w should have shape \(2,\), got \(2, 1\).*BROADCASTS.*\(n, n\)")


def test_fit_losses_after_update():
    fails(check_fit_linear_regression, fit_variant(shift=True),
          r"losses are shifted by one step")


def test_fit_nonzero_init():
    fails(check_fit_linear_regression, fit_variant(init=0.5),
          r"first loss should be mean\(y\*\*2\).*start from zeros")


def test_fit_no_bias():
    fails(check_fit_linear_regression, fit_variant(bias=False), r"b never moved")


def test_fit_losses_hold_tensors():
    fails(check_fit_linear_regression, fit_variant(as_tensors=True),
          r"losses holds tensors.*loss\.item\(\)")


def test_fit_two_return_values():
    def wrong(X, y, lr, n_steps):
        w, b, _ = fit_linear_regression(X, y, lr, n_steps)
        return w, b
    fails(check_fit_linear_regression, wrong,
          r"expected a tuple \(w, b, losses\), got a tuple of 2")


def test_fit_wrong_number_of_losses():
    def wrong(X, y, lr, n_steps):
        w, b, losses = fit_linear_regression(X, y, lr, n_steps)
        return w, b, losses + [0.0]
    fails(check_fit_linear_regression, wrong, r"expected 1 losses.*got 2")


def test_fit_float64_params_for_float32_data():
    def wrong(X, y, lr, n_steps):
        w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
        return w, w.sum(), (X @ w)
    fails(check_fit_linear_regression, wrong, r"same dtype.*dtype=X\.dtype")


def test_fit_modifies_data():
    def wrong(X, y, lr, n_steps):
        y -= y.mean()
        return fit_linear_regression(X, y, lr, n_steps)
    fails(check_fit_linear_regression, wrong, r"changed X or y in place")


def test_fit_closed_form_instead_of_gd():
    def wrong(X, y, lr, n_steps):
        from course.data import least_squares
        w, b = least_squares(X, y)
        return w, b, fit_linear_regression(X, y, lr, n_steps)[2]
    fails(check_fit_linear_regression, wrong, r"one step.*w, b after 1 step: expected")


def test_fit_accepts_mse_loss_and_float64_losses(capsys):
    def other(X, y, lr, n_steps):
        w = torch.zeros(X.shape[1], dtype=X.dtype, requires_grad=True)
        b = torch.zeros((), dtype=X.dtype, requires_grad=True)
        losses = []
        for _ in range(n_steps):
            w.grad = b.grad = None
            loss = torch.nn.functional.mse_loss(X @ w + b, y)
            loss.backward()
            with torch.no_grad():
                w.sub_(lr * w.grad)
                b.sub_(lr * b.grad)
            losses.append(np.float64(loss.item()))
        return w.detach(), b.detach(), losses
    check_fit_linear_regression(other)
    assert capsys.readouterr().out.startswith("\u2713")


def test_fit_check_is_deterministic(capsys):
    for _ in range(2):
        check_fit_linear_regression(fit_linear_regression)
    first, second = capsys.readouterr().out.splitlines()
    assert first == second
    assert math.isfinite(1.0)
