"""Tests of course.gradcheck: finite differences against autograd and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course.gradcheck import (
    GradCheck,
    autograd_gradient,
    central_difference,
    check_gradient,
    forward_difference,
)


def test_scalar_central_is_the_formula_and_a_float():
    out = central_difference(lambda w: w ** 3, 1.0, eps=1e-2)
    assert type(out) is float
    assert out == (1.01 ** 3 - 0.99 ** 3) / 0.02
    assert out == pytest.approx(3 + 1e-4, rel=1e-12)  # f'(1) + eps**2 f'''(1) / 6


def test_scalar_forward_error_is_first_order():
    out = forward_difference(lambda w: w ** 3, 1.0, eps=1e-2)
    assert out == pytest.approx(3.0301, rel=1e-12)  # 3 + 3 eps + eps**2


def test_central_error_is_second_order():
    errors = [abs(central_difference(math.sin, 0.5, eps) - math.cos(0.5))
              for eps in (1e-1, 1e-2)]
    assert errors[0] / errors[1] == pytest.approx(100, rel=1e-2)


def test_vector_gradient_matches_closed_form():
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    x = np.array([0.5, -1.0])

    def f(t):
        return 0.5 * t @ torch.from_numpy(A) @ t

    np.testing.assert_allclose(central_difference(f, x), A @ x, rtol=1e-8)
    np.testing.assert_allclose(forward_difference(f, x, eps=1e-7), A @ x, rtol=1e-5)
    np.testing.assert_allclose(autograd_gradient(f, x), A @ x, rtol=1e-15)


def test_matrix_argument_keeps_shape_and_input():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    before = x.detach().clone()
    grad = central_difference(lambda t: (t ** 2).sum(), x)
    assert grad.shape == (2, 2) and grad.dtype == np.float64
    np.testing.assert_allclose(grad, 2 * before.numpy(), rtol=1e-8)
    assert torch.equal(x.detach(), before) and x.grad is None


def test_autograd_gradient_scalar_and_unused():
    assert autograd_gradient(lambda w: (w - 3) ** 2, 5.0) == 4.0
    np.testing.assert_array_equal(
        autograd_gradient(lambda t: t[0] * 2.0, [1.0, 7.0]), [2.0, 0.0])


def test_autograd_gradient_rejects_non_tensor_results():
    with pytest.raises(TypeError, match="one-element tensor"):
        autograd_gradient(lambda t: t * 2, [1.0, 2.0])
    with pytest.raises(ValueError, match="grad_fn"):
        autograd_gradient(lambda t: torch.tensor(1.0), [1.0])


def test_check_gradient_accepts_autograd_and_rejects_a_wrong_grad():
    result = check_gradient(lambda t: torch.sin(t).sum() * t[0], [0.3, -1.2])
    assert isinstance(result, GradCheck) and result.ok
    assert result.max_rel_error < 1e-8
    bad = check_gradient(lambda t: (t ** 2).sum(), [1.0, 2.0], grad=[2.0, 5.0])
    assert not bad.ok
    assert bad.max_abs_error == pytest.approx(1.0)
    assert bad.max_rel_error == pytest.approx(0.2)  # 1 / max(5, 4, 1)


def test_check_gradient_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        check_gradient(lambda t: (t ** 2).sum(), [1.0, 2.0], grad=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("eps", [0.0, -1e-3, float("nan"), "1e-3"])
def test_bad_eps(eps):
    with pytest.raises((TypeError, ValueError), match="eps"):
        central_difference(math.sin, 1.0, eps)


def test_bad_inputs():
    with pytest.raises(TypeError, match="f must be a function"):
        central_difference(3.0, 1.0)
    with pytest.raises(TypeError, match="w must be"):
        central_difference(math.sin, "one")
    with pytest.raises(ValueError, match="scalar"):
        central_difference(lambda t: t * 2, [1.0, 2.0])
