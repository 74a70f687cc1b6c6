"""Tests for course.gd: the update, the learning-rate regimes on (w - 3)^2,
the n-D quadratic rate, and bad input."""

import doctest
import warnings

import numpy as np
import pytest
import torch

import course.gd
from course.functions import make_quadratic, quadratic, quadratic_grad
from course.gd import gd_step, gradient_descent, loss_history, lr_regime


def errors(lr, n_steps=20, w0=0.0):
    """The errors w_t - 3 of gradient descent on (w - 3)^2."""
    return gradient_descent(quadratic_grad, w0, lr, n_steps) - 3.0


def test_docstring_examples():
    """Check that the examples in the docstrings run as shown."""
    assert doctest.testmod(course.gd).failed == 0


# ------------------------------------------------------------------ gd_step


def test_gd_step_for_float_numpy_and_torch():
    """Check w - lr * grad for each kind of input."""
    assert gd_step(5.0, 4.0, 0.25) == 4.0
    np.testing.assert_array_equal(gd_step(np.array([1.0, 2.0]),
                                          np.array([2.0, -2.0]), 0.5), [0.0, 3.0])
    w = torch.tensor([1.0, 2.0])
    out = gd_step(w, torch.tensor([2.0, -2.0]), 0.5)
    assert isinstance(out, torch.Tensor) and out.tolist() == [0.0, 3.0]
    assert w.tolist() == [1.0, 2.0]  # input unchanged


def test_gd_step_with_zero_lr_does_not_move():
    """Check that lr = 0 returns the same point."""
    assert gd_step(1.5, 100.0, 0) == 1.5


# -------------------------------------------------------- gradient_descent


def test_history_shape_dtype_and_first_row():
    """Check the history has n_steps + 1 float64 rows starting at w0."""
    history = gradient_descent(quadratic_grad, 0, lr=0.1, n_steps=5)
    assert history.shape == (6,) and history.dtype == np.float64
    assert history[0] == 0.0
    history = gradient_descent(lambda w: 2 * w, np.array([1.0, -2.0]), 0.1, 3)
    assert history.shape == (4, 2)
    np.testing.assert_array_equal(history[0], [1.0, -2.0])
    assert gradient_descent(quadratic_grad, 1.0, 0.1, 0).shape == (1,)


def test_history_matches_a_hand_written_loop():
    """Check each row is one gd_step from the previous one."""
    history = gradient_descent(quadratic_grad, 10.0, lr=0.3, n_steps=8)
    w = 10.0
    for row in history[1:]:
        w = w - 0.3 * 2 * (w - 3)
        assert row == w


def test_accepts_tensors_and_lists_as_w0():
    """Check that w0 may be a tensor or a list; the history is numpy."""
    a = gradient_descent(lambda w: 2 * w, torch.tensor([1.0, 2.0]), 0.1, 3)
    b = gradient_descent(lambda w: 2 * w, [1.0, 2.0], 0.1, 3)
    np.testing.assert_array_equal(a, b)


def test_small_lr_converges_monotonically():
    """Check lr = 0.1 on (w - 3)^2: the error shrinks by 0.8 without flips."""
    e = errors(0.1, n_steps=100)
    assert abs(e[-1]) < 1e-8
    assert np.all(e[:-1] < 0) and np.all(np.diff(e) > 0)
    np.testing.assert_allclose(e[1:] / e[:-1], 0.8, rtol=1e-6)


def test_lr_0_9_oscillates_and_converges():
    """Check lr = 0.9: the error flips sign every step while shrinking."""
    e = errors(0.9, n_steps=30)
    assert np.all(np.sign(e[1:]) == -np.sign(e[:-1]))
    assert np.all(np.abs(e[1:]) < np.abs(e[:-1]))
    np.testing.assert_allclose(e[1:] / e[:-1], -0.8, rtol=1e-6)


def test_lr_1_1_diverges():
    """Check lr = 1.1: the error flips sign and grows by 1.2 every step."""
    e = errors(1.1, n_steps=30)
    np.testing.assert_allclose(e[1:] / e[:-1], -1.2, rtol=1e-12)
    assert abs(e[-1]) > 3 * 1.2**29


def test_lr_at_the_edges():
    """Check lr = 1/L lands in one step and lr = 2/L bounces forever."""
    np.testing.assert_array_equal(errors(0.5, n_steps=3), [-3.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(errors(1.0, n_steps=4), [-3, 3, -3, 3, -3])


def test_divergent_run_overflows_silently():
    """Check a long divergent run fills with inf/nan, keeps its shape, and
    emits no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = gradient_descent(quadratic_grad, 0.0, lr=1.1, n_steps=5000)
        losses = loss_history(quadratic, history)
    assert history.shape == (5001,)
    assert not np.all(np.isfinite(history))
    assert not np.isfinite(losses[-1])


def test_optimal_lr_on_conditioned_quadratic():
    """Check the rate ((kappa - 1)/(kappa + 1))^t at lr = 2/(L + mu)."""
    q = make_quadratic(2, 10.0, seed=0)
    x0 = np.array([1.5, -1.0])
    history = gradient_descent(q.grad, x0, q.optimal_lr, 40)
    rate = (q.condition_number - 1) / (q.condition_number + 1)
    norms = np.linalg.norm(history, axis=1)
    assert np.all(norms <= rate ** np.arange(41) * norms[0] * (1 + 1e-9))
    assert norms[-1] < 1e-3


def test_lr_above_two_over_L_diverges_on_quadratic():
    """Check that the stiff direction blows up for lr slightly above 2/L."""
    q = make_quadratic(2, 10.0, seed=0)
    history = gradient_descent(q.grad, [1.0, 1.0], 2.1 / q.L, 100)
    assert np.linalg.norm(history[-1]) > 10


# ------------------------------------------------------------ loss_history


def test_loss_history_evaluates_every_iterate():
    """Check one loss per row, for scalar and vector iterates."""
    history = gradient_descent(quadratic_grad, 0.0, 0.1, 10)
    np.testing.assert_array_equal(loss_history(quadratic, history),
                                  (history - 3) ** 2)
    q = make_quadratic()
    history = gradient_descent(q.grad, [1.0, 1.0], 0.1, 4)
    losses = loss_history(q, history)
    assert losses.shape == (5,) and losses.dtype == np.float64
    assert losses[1] == pytest.approx(float(q(history[1])))
    assert np.all(np.diff(losses) < 0)


# --------------------------------------------------------------- lr_regime


@pytest.mark.parametrize("lr, regime", [
    (0.0, "frozen"), (0.1, "monotone"), (0.5, "monotone"),
    (0.5000001, "oscillating"), (0.9, "oscillating"), (0.9999999, "oscillating"),
    (1.0, "bouncing"), (1.0000001, "divergent"), (1.1, "divergent"), (5, "divergent"),
])
def test_lr_regime_boundaries_for_L_2(lr, regime):
    """Check the regimes of (w - 3)^2, whose smoothness is L = 2."""
    assert lr_regime(lr, 2.0) == regime


@pytest.mark.parametrize("lr", [0.0, 0.05, 0.3, 0.5, 0.7, 0.95, 1.0, 1.05, 1.5])
def test_lr_regime_matches_what_gradient_descent_does(lr):
    """Check each predicted regime against the errors of a real run."""
    e = errors(lr, n_steps=10, w0=2.0)
    regime = lr_regime(lr, 2.0)
    grows = abs(e[-1]) > abs(e[0])
    same_size = np.all(np.abs(e) == abs(e[0]))
    flips = np.any(e[1:] * e[:-1] < 0)
    assert (regime == "frozen") == (same_size and not flips)
    assert (regime == "bouncing") == (same_size and flips)
    assert (regime == "divergent") == grows
    assert (regime in ("oscillating", "bouncing", "divergent")) == flips


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, error, message", [
    (lambda: gd_step(1.0, 1.0, -0.1), ValueError, r"lr must be >= 0"),
    (lambda: gd_step(1.0, 1.0, "0.1"), TypeError, r"lr must be a real number"),
    (lambda: gd_step(1.0, 1.0, float("nan")), ValueError, r"lr must be finite"),
    (lambda: gd_step("w", 1.0, 0.1), TypeError, r"w must be"),
    (lambda: gd_step(1.0, None, 0.1), TypeError, r"grad must be"),
    (lambda: gradient_descent(3.0, 0.0, 0.1, 5), TypeError,
     r"f_grad must be a function, got float"),
    (lambda: gradient_descent(quadratic_grad, 0.0, -0.1, 5), ValueError,
     r"lr must be >= 0"),
    (lambda: gradient_descent(quadratic_grad, 0.0, 0.1, -1), ValueError,
     r"n_steps must be >= 0, got -1"),
    (lambda: gradient_descent(quadratic_grad, 0.0, 0.1, 2.5), TypeError,
     r"n_steps must be an int"),
    (lambda: gradient_descent(quadratic_grad, float("nan"), 0.1, 5), ValueError,
     r"w0 must be finite"),
    (lambda: gradient_descent(quadratic_grad, "0", 0.1, 5), TypeError,
     r"w0 must be"),
    (lambda: gradient_descent(lambda w: None, 0.0, 0.1, 5), TypeError,
     r"f_grad\(w\) must be .*NoneType"),
    (lambda: gradient_descent(lambda w: np.zeros(3), [0.0, 0.0], 0.1, 5),
     ValueError, r"f_grad returned shape \(3,\) for a point of shape \(2,\)"),
    (lambda: loss_history("f", [1.0]), TypeError, r"f must be a function"),
    (lambda: loss_history(quadratic, 1.0), ValueError, r"one row per step"),
    (lambda: lr_regime(-1.0, 2.0), ValueError, r"lr must be >= 0"),
    (lambda: lr_regime(0.1, 0.0), ValueError, r"L must be > 0"),
])
def test_bad_input_raises_a_clear_error(call, error, message):
    """Check that each bad input raises the stated error and message."""
    with pytest.raises(error, match=message):
        call()
