"""Tests for course.functions: values, gradients (autograd and finite
differences), the conditioned quadratic, and bad input."""

import doctest

import numpy as np
import pytest
import torch

import course.functions
from course.functions import (
    Quadratic,
    make_quadratic,
    quadratic,
    quadratic_grad,
    rosenbrock,
    rosenbrock_grad,
)


def autograd(f, x):
    """The gradient of the scalar sum of ``f`` at ``x``, by torch.autograd."""
    x = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    f(x).sum().backward()
    return x.grad.numpy()


def finite_difference(f, x, h=1e-6):
    """Central-difference gradient of a scalar function of a float64 vector."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        grad.flat[i] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


def test_docstring_examples():
    """Check that the examples in the docstrings run as shown."""
    assert doctest.testmod(course.functions).failed == 0


# ---------------------------------------------------------------- quadratic


def test_quadratic_values_for_float_numpy_and_torch():
    """Check that f(w) = (w - 3)^2 keeps the kind of its input."""
    assert quadratic(5.0) == 4.0 and isinstance(quadratic(5.0), float)
    np.testing.assert_array_equal(quadratic(np.array([1.0, 3.0])), [4.0, 0.0])
    out = quadratic(torch.tensor([1.0, 3.0]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.tolist() == [4.0, 0.0]
    assert quadratic(2.0, center=-1.0, scale=0.5) == 4.5
    assert quadratic([1.0, 3.0]).tolist() == [4.0, 0.0]


@pytest.mark.parametrize("center, scale", [(3.0, 1.0), (-1.5, 0.25), (0.0, 4.0)])
def test_quadratic_grad_matches_autograd(center, scale):
    """Check that quadratic_grad equals torch.autograd's derivative."""
    w = np.linspace(-5, 5, 11)
    expected = autograd(lambda t: quadratic(t, center, scale), w)
    np.testing.assert_allclose(quadratic_grad(w, center, scale), expected,
                               rtol=1e-12)


def test_quadratic_grad_matches_finite_differences():
    """Check quadratic_grad against a central difference at several points."""
    for w in (-2.0, 0.5, 3.0, 7.25):
        numeric = (quadratic(w + 1e-6) - quadratic(w - 1e-6)) / 2e-6
        assert quadratic_grad(w) == pytest.approx(numeric, abs=1e-6)


def test_quadratic_grad_of_a_tensor_is_a_tensor():
    """Check that the gradient of a tensor stays a tensor of the same dtype."""
    g = quadratic_grad(torch.tensor([0.0], dtype=torch.float64))
    assert isinstance(g, torch.Tensor) and g.dtype == torch.float64
    assert g.tolist() == [-6.0]


# ---------------------------------------------------------------- Quadratic


@pytest.mark.parametrize("n, kappa, seed", [(2, 10.0, 0), (5, 100.0, 3),
                                            (3, 1.0, 1), (10, 1e4, 7)])
def test_make_quadratic_has_the_requested_condition_number(n, kappa, seed):
    """Check the eigenvalues run from 1 to kappa, log-spaced, and L/mu = kappa."""
    q = make_quadratic(n, kappa, seed=seed)
    eig = np.linalg.eigvalsh(q.A)
    np.testing.assert_allclose(eig, np.geomspace(1, kappa, n), rtol=1e-9)
    assert q.L == pytest.approx(kappa) and q.mu == pytest.approx(1.0)
    assert q.condition_number == pytest.approx(kappa)
    assert eig.max() / eig.min() == pytest.approx(kappa)
    assert q.optimal_lr == pytest.approx(2 / (q.L + q.mu))


def test_make_quadratic_rotation_is_seeded():
    """Check that rotate=True tilts A deterministically by the seed."""
    q = make_quadratic(2, 10.0, seed=0)
    assert abs(q.A[0, 1]) > 1e-3  # rotated: not diagonal
    np.testing.assert_array_equal(q.A, q.A.T)
    np.testing.assert_array_equal(q.A, make_quadratic(2, 10.0, seed=0).A)
    assert not np.allclose(q.A, make_quadratic(2, 10.0, seed=1).A)


def test_make_quadratic_without_rotation_is_diagonal():
    """Check that rotate=False gives diag(1, ..., kappa) and a zero minimiser."""
    q = make_quadratic(3, 100.0, rotate=False)
    np.testing.assert_array_equal(q.A, np.diag([1.0, 10.0, 100.0]))
    np.testing.assert_array_equal(q.minimizer, np.zeros(3))
    assert q.n == 3


def test_quadratic_arrays_are_read_only():
    """Check that the frozen dataclass cannot be changed by accident."""
    q = make_quadratic()
    with pytest.raises(ValueError, match="read-only"):
        q.A[0, 0] = 5.0
    with pytest.raises(AttributeError):
        q.A = np.eye(2)


def test_quadratic_value_and_minimum():
    """Check f(x) = 1/2 (x - x*)^T A (x - x*) with minimum 0 at x*."""
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    q = Quadratic(A=A, minimizer=np.array([1.0, -1.0]))
    x = np.array([0.3, 0.7])
    d = x - q.minimizer
    assert float(q(x)) == pytest.approx(0.5 * d @ A @ d)
    assert float(q(q.minimizer)) == 0.0
    np.testing.assert_array_equal(q.grad(q.minimizer), [0.0, 0.0])


def test_quadratic_grad_matches_autograd_and_finite_differences():
    """Check Quadratic.grad against torch.autograd and a central difference."""
    q = make_quadratic(4, 20.0, seed=2)
    x = np.random.default_rng(0).standard_normal(4)
    np.testing.assert_allclose(q.grad(x), autograd(q, x), rtol=1e-12)
    np.testing.assert_allclose(q.grad(x), finite_difference(q, x), rtol=1e-6)


def test_quadratic_accepts_grids_of_points():
    """Check that a (..., n) grid gives one value per point."""
    q = make_quadratic(2, 10.0)
    grid = np.random.default_rng(1).standard_normal((4, 5, 2))
    values = q(grid)
    assert values.shape == (4, 5)
    assert values[2, 3] == pytest.approx(float(q(grid[2, 3])))
    assert q.grad(grid).shape == (4, 5, 2)


def test_quadratic_on_tensors_keeps_dtype_and_autograd():
    """Check that tensors are computed in their own dtype, with autograd."""
    q = make_quadratic(2, 10.0)
    x = torch.tensor([1.0, -0.5], requires_grad=True)
    value = q(x)
    assert value.dtype == torch.float32
    value.backward()
    torch.testing.assert_close(x.grad, q.grad(x.detach()))
    assert q(torch.tensor([1, 2])).dtype == torch.get_default_dtype()


# --------------------------------------------------------------- Rosenbrock


def test_rosenbrock_minimum_is_at_a_a_squared():
    """Check f = 0 and grad = 0 at (a, a^2)."""
    for a, b in [(1.0, 100.0), (2.0, 10.0), (-0.5, 1.0)]:
        xy = np.array([a, a**2])
        assert float(rosenbrock(xy, a, b)) == 0.0
        np.testing.assert_array_equal(rosenbrock_grad(xy, a, b), [0.0, 0.0])


def test_rosenbrock_known_value():
    """Check f(0, 0) = a^2 and f(-1, 1) = 4 for the classic a = 1, b = 100."""
    assert float(rosenbrock(np.array([0.0, 0.0]))) == 1.0
    assert float(rosenbrock(np.array([-1.0, 1.0]))) == 4.0


def test_rosenbrock_grad_matches_autograd_and_finite_differences():
    """Check rosenbrock_grad on random points and a grid."""
    points = np.random.default_rng(2).uniform(-2, 2, size=(6, 2))
    np.testing.assert_allclose(rosenbrock_grad(points),
                               autograd(rosenbrock, points), rtol=1e-12)
    for xy in points:
        np.testing.assert_allclose(rosenbrock_grad(xy, 1.0, 5.0),
                                   finite_difference(
                                       lambda p: rosenbrock(p, 1.0, 5.0), xy),
                                   rtol=1e-5, atol=1e-6)


def test_rosenbrock_on_tensors_and_grids():
    """Check shapes on a grid and that tensors stay tensors."""
    grid = np.zeros((3, 4, 2))
    assert rosenbrock(grid).shape == (3, 4)
    assert rosenbrock_grad(grid).shape == (3, 4, 2)
    t = torch.tensor([0.5, 0.5], dtype=torch.float64)
    assert isinstance(rosenbrock(t), torch.Tensor)
    assert isinstance(rosenbrock_grad(t), torch.Tensor)
    assert rosenbrock_grad(t).shape == (2,)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, error, message", [
    (lambda: quadratic("3"), TypeError, r"w must be a number.*got str"),
    (lambda: quadratic(None), TypeError, r"w must be .*got NoneType"),
    (lambda: quadratic_grad(["a"]), TypeError, r"w must be"),
    (lambda: quadratic(1.0, center="0"), TypeError, r"center must be a real"),
    (lambda: quadratic(1.0, scale=0.0), ValueError, r"scale must be > 0"),
    (lambda: quadratic_grad(torch.tensor([True])), TypeError, r"real numbers"),
    (lambda: make_quadratic(condition_number=0.5), ValueError,
     r"condition_number must be >= 1"),
    (lambda: make_quadratic(n=0), ValueError, r"n must be >= 1"),
    (lambda: make_quadratic(n=2.0), TypeError, r"n must be an int"),
    (lambda: make_quadratic(n=1), ValueError, r"1-D quadratic"),
    (lambda: make_quadratic(condition_number=None), TypeError,
     r"condition_number must be a real"),
    (lambda: make_quadratic(rotate="yes"), TypeError, r"rotate must be"),
    (lambda: make_quadratic()(np.zeros(3)), ValueError,
     r"x must have shape \(\.\.\., 2\), got \(3,\)"),
    (lambda: make_quadratic().grad(1.0), ValueError, r"got \(\)"),
    (lambda: make_quadratic()("x"), TypeError, r"x must be"),
    (lambda: Quadratic(A=np.array([[1.0, 2.0], [0.0, 1.0]]),
                       minimizer=np.zeros(2)), ValueError, r"symmetric"),
    (lambda: Quadratic(A=-np.eye(2), minimizer=np.zeros(2)), ValueError,
     r"positive definite"),
    (lambda: Quadratic(A=np.eye(2), minimizer=np.zeros(3)), ValueError,
     r"minimizer must have shape \(2,\), got \(3,\)"),
    (lambda: Quadratic(A=np.ones(3), minimizer=np.zeros(3)), ValueError,
     r"square"),
    (lambda: rosenbrock(np.zeros(3)), ValueError,
     r"xy must have shape \(\.\.\., 2\), got \(3,\)"),
    (lambda: rosenbrock_grad(np.zeros((4, 3))), ValueError, r"got \(4, 3\)"),
    (lambda: rosenbrock(torch.zeros(5)), ValueError, r"got \(5,\)"),
    (lambda: rosenbrock(1.0), ValueError, r"got \(\)"),
    (lambda: rosenbrock("xy"), TypeError, r"xy must be"),
    (lambda: rosenbrock(np.zeros(2), b=-1.0), ValueError, r"b must be >= 0"),
])
def test_bad_input_raises_a_clear_error(call, error, message):
    """Check that each bad input raises the stated error and message."""
    with pytest.raises(error, match=message):
        call()
