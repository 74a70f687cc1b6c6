"""Tests for course.momentum: torch's heavy ball (bit-exact with
torch.optim.SGD), the velocity convention, schedules and bad input."""

import doctest
import math

import numpy as np
import pytest
import torch

import course.momentum
from course.functions import make_quadratic, rosenbrock_grad
from course.momentum import (
    lrs_with_one_drop,
    momentum_trajectory,
    polyak_parameters,
    torch_momentum_step,
    torch_sgd_trajectory,
    velocity_momentum_step,
)

F25 = make_quadratic(2, 25.0, rotate=False)
W0 = torch.tensor([-1.8, 0.6], dtype=torch.float64)


def test_docstring_examples():
    """Check that the examples in the docstrings run as shown."""
    assert doctest.testmod(course.momentum).failed == 0


# ------------------------------------------------------------ single steps


def test_first_step_copies_the_gradient_without_dampening():
    """Check b = g (a new tensor) on the first step, even with dampening."""
    p, g = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    new_p, buf = torch_momentum_step(p, g, None, lr=0.1, momentum=0.9, dampening=0.5)
    assert torch.equal(buf, g) and buf is not g
    assert buf.untyped_storage().data_ptr() != g.untyped_storage().data_ptr()
    assert torch.equal(new_p, p.add(g, alpha=-0.1))


def test_step_inputs_are_not_modified():
    """Check that p, grad and buf are left unchanged (out of place)."""
    p, g, b = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0])
    torch_momentum_step(p, g, b, lr=0.1, momentum=0.9, dampening=0.2)
    velocity_momentum_step(p, g, b, lr=0.1, momentum=0.9)
    assert (p.item(), g.item(), b.item()) == (1.0, 2.0, 3.0)


def test_later_step_formula():
    """Check b = beta b + (1 - tau) g and p - lr b on a hand-computed case."""
    p, g, b = (torch.tensor([1.0], dtype=torch.float64),
               torch.tensor([2.0], dtype=torch.float64),
               torch.tensor([1.0], dtype=torch.float64))
    new_p, new_b = torch_momentum_step(p, g, b, lr=0.1, momentum=0.9, dampening=0.5)
    assert new_b.item() == pytest.approx(1.9)
    assert new_p.item() == pytest.approx(0.81)


@pytest.mark.parametrize("dampening", [0.0, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_steps_equal_torch_optim_sgd_bit_for_bit(dampening, dtype):
    """Check a chain of steps against torch.optim.SGD with torch.equal."""
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(7, generator=gen, dtype=dtype)
    grads = [torch.randn(7, generator=gen, dtype=dtype) for _ in range(6)]
    q = p0.clone().requires_grad_(True)
    opt = torch.optim.SGD([q], lr=0.03, momentum=0.9, dampening=dampening)
    p, buf = p0.clone(), None
    for g in grads:
        q.grad = g.clone()
        opt.step()
        p, buf = torch_momentum_step(p, g, buf, lr=0.03, momentum=0.9,
                                     dampening=dampening)
        assert torch.equal(p, q.detach())
        assert torch.equal(buf, opt.state[q]["momentum_buffer"])


def test_velocity_step_formula():
    """Check v = beta v + lr g (zeros before the first step) and p - v."""
    p, g = torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    p1, v1 = velocity_momentum_step(p, g, None, lr=0.1, momentum=0.9)
    assert v1.item() == pytest.approx(0.2) and p1.item() == pytest.approx(0.8)
    p2, v2 = velocity_momentum_step(p1, g, v1, lr=0.05, momentum=0.9)
    assert v2.item() == pytest.approx(0.9 * 0.2 + 0.05 * 2)
    assert p2.item() == pytest.approx(0.8 - v2.item())


def test_steps_reject_non_tensors():
    """Check the clear error for numbers instead of tensors."""
    with pytest.raises(TypeError, match="p must be a torch.Tensor"):
        torch_momentum_step(1.0, torch.tensor(1.0), None, lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="buf must be a torch.Tensor"):
        torch_momentum_step(torch.tensor(1.0), torch.tensor(1.0), [1.0], lr=0.1,
                            momentum=0.9)


# ------------------------------------------------------------ trajectories


@pytest.mark.parametrize("dampening", [0.0, 0.3])
def test_torch_convention_trajectory_equals_torch_sgd(dampening):
    """Check momentum_trajectory == torch.optim.SGD bit for bit."""
    ours = momentum_trajectory(F25.grad, W0, 0.04, 0.7, 30, dampening=dampening)
    theirs = torch_sgd_trajectory(F25.grad, W0, 0.04, 0.7, 30, dampening=dampening)
    assert ours.shape == (31, 2) and ours.dtype == torch.float64
    assert torch.equal(ours, theirs)


def test_scheduled_trajectory_equals_torch_multisteplr():
    """Check an lrs_with_one_drop run equals torch.optim.SGD + MultiStepLR exactly."""
    lrs = lrs_with_one_drop(0.04, 25, drop_at=10)
    ours = momentum_trajectory(F25.grad, W0.float(), lrs, 0.7, 25)
    p = W0.float().clone().requires_grad_(True)
    opt = torch.optim.SGD([p], lr=0.04, momentum=0.7)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[10], gamma=0.5)
    history = [p.detach().clone()]
    for _ in range(25):
        p.grad = F25.grad(p.detach())
        opt.step()
        sched.step()
        history.append(p.detach().clone())
    assert torch.equal(ours, torch.stack(history))
    assert torch.equal(ours, torch_sgd_trajectory(F25.grad, W0.float(), lrs, 0.7, 25))


def test_conventions_agree_for_constant_lr_and_differ_after_a_change():
    """Check v_t = lr b_t for a constant lr, and the split after a drop."""
    t = momentum_trajectory(F25.grad, W0, 0.04, 0.7, 30)
    v = momentum_trajectory(F25.grad, W0, 0.04, 0.7, 30, convention="velocity")
    torch.testing.assert_close(t, v, rtol=1e-12, atol=1e-12)
    lrs = lrs_with_one_drop(0.04, 30, drop_at=10)
    t = momentum_trajectory(F25.grad, W0, lrs, 0.7, 30)
    v = momentum_trajectory(F25.grad, W0, lrs, 0.7, 30, convention="velocity")
    torch.testing.assert_close(t[:11], v[:11], rtol=1e-12, atol=1e-12)
    assert (t[11] - v[11]).norm() > 1e-2


def test_constant_gradient_settles_at_the_effective_step():
    """Check the step tends to lr (1 - tau) / (1 - beta) for a constant gradient."""
    ones = lambda w: torch.ones_like(w)  # noqa: E731
    h = momentum_trajectory(ones, torch.zeros(1, dtype=torch.float64), 0.1, 0.9,
                            400, dampening=0.5)
    step = (h[-2] - h[-1]).item()
    assert step == pytest.approx(0.1 * 0.5 / 0.1, rel=1e-9)


def test_trajectory_accepts_numpy_start_and_numpy_gradient():
    """Check numpy w0 becomes float64 and a numpy f_grad result is accepted."""
    h = momentum_trajectory(lambda w: 2 * w.numpy(), np.array([1.0]), 0.1, 0.5, 3)
    assert h.dtype == torch.float64 and h.shape == (4, 1)
    assert h[1].item() == pytest.approx(0.8)


def test_trajectory_n_steps_zero_and_rosenbrock_float32():
    """Check the edge case n_steps = 0 and a float32 Rosenbrock run."""
    assert momentum_trajectory(F25.grad, W0, 0.1, 0.9, 0).shape == (1, 2)
    w0 = torch.tensor([-1.2, 1.0])
    h = momentum_trajectory(rosenbrock_grad, w0, 1e-3, 0.9, 20)
    assert h.dtype == torch.float32
    assert torch.equal(h, torch_sgd_trajectory(rosenbrock_grad, w0, 1e-3, 0.9, 20))
    assert torch.equal(w0, torch.tensor([-1.2, 1.0]))  # not modified


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(lr=-0.1), ValueError, "lr must be >= 0"),
    (dict(lr=[0.1, 0.1]), ValueError, "got 2 learning rates for 5 steps"),
    (dict(convention="nesterov"), ValueError, "convention must be"),
    (dict(convention="velocity", dampening=0.5), ValueError, "no dampening"),
    (dict(momentum=-1.0), ValueError, "momentum must be >= 0"),
    (dict(n_steps=2.5), TypeError, "n_steps must be an int"),
    (dict(f_grad=3), TypeError, "f_grad must be a function"),
    (dict(f_grad=lambda w: w[:1]), ValueError, r"f_grad returned shape \(1,\)"),
])
def test_trajectory_bad_input(kwargs, error, pattern):
    """Check clear errors for bad arguments."""
    args = dict(f_grad=F25.grad, w0=W0, lr=0.1, momentum=0.9, n_steps=5)
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        momentum_trajectory(**args)


# ------------------------------------------------------------- small tools


def test_lrs_with_one_drop():
    """Check constant and dropped schedules."""
    assert lrs_with_one_drop(0.1, 3) == [0.1, 0.1, 0.1]
    assert lrs_with_one_drop(0.1, 4, drop_at=1, factor=0.1) == [0.1, 0.1 * 0.1, 0.1 * 0.1,
                                                          0.1 * 0.1]
    assert lrs_with_one_drop(0.1, 0) == []
    with pytest.raises(ValueError):
        lrs_with_one_drop(-1.0, 3)


def test_polyak_parameters_rate():
    """Check Polyak's parameters and that heavy ball beats GD's rate on kappa=25."""
    lr, beta = polyak_parameters(25.0, 1.0)
    assert lr == pytest.approx(1 / 9) and beta == pytest.approx(4 / 9)
    h = momentum_trajectory(F25.grad, W0, lr, beta, 60)
    err = h[-1].norm().item() / W0.norm().item()
    assert err < 60 * (2 / 3) ** 59  # t * rate^(t-1) bound of a double root
    gd = momentum_trajectory(F25.grad, W0, F25.optimal_lr, 0.0, 60)
    assert gd[-1].norm().item() > 1e3 * h[-1].norm().item()
    with pytest.raises(ValueError, match="mu must be <= L"):
        polyak_parameters(1.0, 2.0)
    assert math.isclose(polyak_parameters(4.0, 4.0)[1], 0.0)


@pytest.mark.parametrize("dampening", [0.0, 0.5])
def test_zero_first_buffer_equals_torch_only_without_dampening(dampening):
    """Check first_buffer="zeros": the same numbers as torch for tau = 0, and a
    first step scaled by (1 - tau) otherwise."""
    zeros = momentum_trajectory(F25.grad, W0, 0.04, 0.7, 30, dampening=dampening,
                                first_buffer="zeros")
    theirs = torch_sgd_trajectory(F25.grad, W0, 0.04, 0.7, 30, dampening=dampening)
    if dampening == 0:
        assert torch.equal(zeros, theirs)
    else:
        step = W0 - zeros[1]
        torch.testing.assert_close(step, (1 - dampening) * (W0 - theirs[1]))
        assert (zeros[1:] - theirs[1:]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="first_buffer must be"):
        momentum_trajectory(F25.grad, W0, 0.04, 0.7, 3, first_buffer="ones")
    with pytest.raises(ValueError, match="torch convention only"):
        momentum_trajectory(F25.grad, W0, 0.04, 0.7, 3, convention="velocity",
                            first_buffer="zeros")


def test_polyak_double_root_transient():
    """Check the error along each extreme curvature is (1 + (1 - r) t) r^t from rest."""
    lr, beta = polyak_parameters(25.0, 1.0)
    h = momentum_trajectory(F25.grad, W0, lr, beta, 12)
    t = torch.arange(13, dtype=torch.float64)
    for axis, r in ((0, 2 / 3), (1, -2 / 3)):
        expected = W0[axis] * (1 + (1 - r) * t) * r ** t
        torch.testing.assert_close(h[:, axis], expected, rtol=1e-9, atol=1e-12)
