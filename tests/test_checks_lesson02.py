"""The checks of lesson 02-autograd beyond tests/test_exercises.py: learner-style
wrong implementations that are not catalogued mistakes, and behaviour."""

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
from tests.check_contract import fails

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


CHECKS = {
    "autograd_derivative": (check_autograd_derivative, autograd_derivative),
    "finite_difference": (check_finite_difference, finite_difference),
    "gd_step_autograd": (check_gd_step_autograd, gd_step_autograd),
    "fit_linear_regression": (check_fit_linear_regression, fit_linear_regression),
}


# --------------------------------------------------------------------------
# Every check: no return, global state, grad mode
# --------------------------------------------------------------------------


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
    pytest.param(lambda w, out: w.grad.numpy(),
                 r"expected a Python float, got ndarray.*\.item\(\)", id="numpy_array"),
])
def test_derivative_wrong_return_value(result, pattern):
    fails(check_autograd_derivative, returning(result), pattern)


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


def test_derivative_wrong_value_generic():
    fails(check_autograd_derivative, lambda f, w: 1.0,
          r"case 'f\(w\) = \(w - 3\)\*\*2, w = 5\.0': expected 4, got 1\.")


# --------------------------------------------------------------------------
# Exercise 2.2: finite_difference
# --------------------------------------------------------------------------


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


def fit_variant(*, shape=None, as_tensors=False):
    """The right fit, but with w of another shape or the loss tensors kept."""
    def fit(X, y, lr, n_steps):
        w = torch.zeros(shape or (X.shape[1],), requires_grad=True)
        b = torch.zeros((), requires_grad=True)
        losses = []
        for _ in range(n_steps):
            w.grad = b.grad = None
            loss = ((X @ w + b - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w -= lr * w.grad
                b -= lr * b.grad
            losses.append(loss if as_tensors else loss.item())
        return w, b, losses
    return fit


def test_fit_column_vector_w():
    fails(check_fit_linear_regression, fit_variant(shape=(2, 1)),
          r"w should have shape \(2,\), got \(2, 1\).*BROADCASTS.*\(n, n\)")


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
