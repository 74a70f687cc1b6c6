"""Tests of the lesson 03 checks beyond tests/test_exercises.py: learner-style
wrong implementations that are not catalogued mistakes (variants, contract
breaches, partial mistakes), wrong types, and what must pass."""

from __future__ import annotations

import math
import re

import pytest
import torch

from course import stochastic as ref
from course.checks import (check_lr_schedule, check_minibatch_gradient,
                           check_minibatch_indices, check_sgd_epoch)
from tests.check_contract import fails

# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


@pytest.fixture(autouse=True)
def global_rng_untouched():
    """Every test leaves the global RNG as it found it (checks restore it)."""
    state = torch.random.get_rng_state()
    yield
    assert torch.equal(state, torch.random.get_rng_state())


# --------------------------------------------------------------------------- #
# minibatch_indices
# --------------------------------------------------------------------------- #


def test_indices_manual_seed_inside_is_global_rng():
    def seeded(n, batch_size, generator):
        torch.manual_seed(0)
        return list(torch.randperm(n).split(batch_size))
    fails(check_minibatch_indices, seeded, r"global random number generator")


def test_indices_own_generator_with_same_seed_as_case():
    def own(n, batch_size, generator):
        g = torch.Generator().manual_seed(0)
        return list(torch.randperm(n, generator=g).split(batch_size))
    fails(check_minibatch_indices, own,
          r"generator passed in was not used \(its state did not move\)")


@pytest.mark.parametrize("result, pattern", [
    (None, r"returned None: did you forget `return batches`"),
    (torch.arange(3), r"returned one tensor; return a list of index tensors"),
    ((i for i in range(2)), r"got generator: wrap it in list"),
    ([[0, 1]], r"batch 0 is a list; every batch must be a 1-D tensor"),
    ([torch.zeros(2)], r"dtype torch\.float32 .* must be 1-D int64"),
])
def test_indices_wrong_types(result, pattern):
    fails(check_minibatch_indices, lambda n, b, g: result, pattern)


# --------------------------------------------------------------------------- #
# minibatch_gradient
# --------------------------------------------------------------------------- #


def _residual(w, b, X, y, idx):
    return X[idx] @ w + b - y[idx]


def test_gradient_only_b_wrong():
    def bad_b(w, b, X, y, idx):
        gw, gb = ref.minibatch_gradient(w, b, X, y, idx)
        return gw, gb + 1
    fails(check_minibatch_gradient, bad_b, r"expected .* got .*Diagnosis: grad_b is off")


def test_gradient_modifies_inputs():
    def in_place(w, b, X, y, idx):
        gw, gb = ref.minibatch_gradient(w, b, X, y, idx)
        w.zero_()
        return gw, gb
    fails(check_minibatch_gradient, in_place, r"changed its inputs in place")


@pytest.mark.parametrize("result, pattern", [
    (None, r"returned None: did you forget `return grad_w, grad_b`"),
    (torch.zeros(3), r"must return a pair `grad_w, grad_b`, got Tensor"),
    ((torch.zeros(3),), r"got tuple of length 1"),
    ((torch.zeros(4), torch.zeros(())), r"first element .* shape \(3,\) like w, "
                                        r"got shape \(4,\)"),
    ((torch.zeros(3), torch.zeros(1)), r"scalar \(shape \(\)\) like b, got shape \(1,\)"),
    ((torch.zeros(3), "0"), r"must be a scalar tensor, got str"),
])
def test_gradient_wrong_types(result, pattern):
    fails(check_minibatch_gradient, lambda *args: result, pattern)


def test_gradient_accepts_float_bias_and_autograd():
    def with_autograd(w, b, X, y, idx):
        w = w.clone().requires_grad_()
        b = b.clone().requires_grad_()
        loss = ((X[idx] @ w + b - y[idx]) ** 2).mean()
        loss.backward()
        return w.grad, float(b.grad)
    check_minibatch_gradient(with_autograd)


# --------------------------------------------------------------------------- #
# sgd_epoch
# --------------------------------------------------------------------------- #


def _steps(w, b, X, y, lr, batches):
    """The right SGD steps, w, b -= lr * minibatch gradient, one per batch."""
    for idx in batches:
        gw, gb = ref.minibatch_gradient(w, b, X, y, idx)
        w, b = w - lr * gw, b - lr * gb
    return w, b


def test_sgd_global_rng_shuffle():
    def global_rng(w, b, X, y, lr, batch_size, generator):
        return _steps(w, b, X, y, lr, torch.randperm(len(y)).split(batch_size))
    fails(check_sgd_epoch, global_rng, r"global random state changed.*global random")


def test_sgd_in_place_on_inputs():
    def in_place(w, b, X, y, lr, batch_size, generator):
        for idx in ref.minibatch_indices(len(y), batch_size, generator):
            gw, gb = ref.minibatch_gradient(w, b, X, y, idx)
            w -= lr * gw
            b -= lr * gb
        return w, b
    fails(check_sgd_epoch, in_place, r"changed the tensors passed in .* w = w - lr")


def test_sgd_ignores_generator():
    def own(w, b, X, y, lr, batch_size, generator):
        return ref.sgd_epoch(w, b, X, y, lr, batch_size, torch.Generator().manual_seed(9))
    fails(check_sgd_epoch, own, r"does not depend on the generator passed in")


def test_sgd_copy_of_generator():
    def copy(w, b, X, y, lr, batch_size, generator):
        g = torch.Generator().manual_seed(generator.initial_seed())
        return ref.sgd_epoch(w, b, X, y, lr, batch_size, g)
    fails(check_sgd_epoch, copy, r"result is right, but the generator passed in did not "
                                 r"advance by exactly one permutation")


def test_sgd_reshuffles_per_step():
    def per_step(w, b, X, y, lr, batch_size, generator):
        batches = (torch.randperm(len(y), generator=generator)[:batch_size]
                   for _ in range(math.ceil(len(y) / batch_size)))
        return _steps(w, b, X, y, lr, batches)
    fails(check_sgd_epoch, per_step, r"expected .*Diagnosis: for each batch idx of "
                                     r"minibatch_indices")


def test_sgd_reseeds_every_epoch():
    def reseed(w, b, X, y, lr, batch_size, generator):
        generator.manual_seed(generator.initial_seed())
        return ref.sgd_epoch(w, b, X, y, lr, batch_size, generator)
    fails(check_sgd_epoch, reseed, r"two epochs .* epoch 2.*new order drawn from the "
                                   r"same generator")


@pytest.mark.parametrize("result, pattern", [
    (None, r"returned None: did you forget `return w, b`"),
    ((torch.zeros(2), torch.zeros(()), []), r"must return a pair `w, b`, got tuple of "
                                            r"length 3"),
])
def test_sgd_wrong_types(result, pattern):
    fails(check_sgd_epoch, lambda *args: result, pattern)


# --------------------------------------------------------------------------- #
# lr_schedule
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("schedule, pattern", [
    (lambda t, lr0, k: lr0 / (1 + t / k), r"decay is a rate that multiplies the step|"
                                          r"don't divide by it"),
    (lambda t, lr0, k: lr0 / (k * t), r"raised ZeroDivisionError.*divides by zero at "
                                      r"step 0"),
    (lambda t, lr0, k: lr0 / (1 + k * t) + 0.01,
     r"expected 0\.1, got 0\.11\.\n  Diagnosis: the schedule is lr0 / \(1 \+ decay"),
    (lambda t, lr0, k: float("inf"), r"must stay finite"),
])
def test_schedule_mistakes(schedule, pattern):
    fails(check_lr_schedule, schedule, pattern)


def test_schedule_time_constant_with_zero_decay_message():
    message = fails(check_lr_schedule, lambda t, lr0, k: lr0 / (1 + t / k),
                    r"decay = 0")
    assert "step=3" in message


@pytest.mark.parametrize("result, pattern", [
    (None, r"returned None"),
    (torch.tensor(0.1), r"returned a tensor; return a plain Python float"),
    ("0.1", r"must return a float, got str"),
    (True, r"must return a float, got bool"),
])
def test_schedule_wrong_types(result, pattern):
    fails(check_lr_schedule, lambda *args: result, pattern)


def test_schedule_float32_is_not_a_float():
    """Grading accepts float and numpy.float64 only: so does the check."""
    import numpy as np
    fails(check_lr_schedule, lambda t, lr0, k: np.float32(lr0 / (1 + k * t)),
          r"must return a float, got float32")


def test_schedule_accepts_numpy_float():
    import numpy as np
    check_lr_schedule(lambda t, lr0, k: np.float64(lr0) / (1 + k * t))


# --------------------------------------------------------------------------- #
# messages show the expected value first, then the learner's
# --------------------------------------------------------------------------- #


def test_messages_put_expected_before_actual():
    def summed(w, b, X, y, idx):
        r = _residual(w, b, X, y, idx)
        return 2 * X[idx].T @ r, 2 * r.sum()
    message = fails(check_minibatch_gradient, summed, r"expected \[.*\], got \[.*\]")
    expected, actual = re.findall(r"\[([^\]]*)\]", message)[:2]
    # the learner's (summed) values are 4x the expected ones
    assert abs(float(actual.split(",")[0]) / float(expected.split(",")[0]) - 4) < 1e-3

    def uphill(w, b, X, y, lr, batch_size, generator):
        return tuple(2 * t - s for t, s in zip((w, b), ref.sgd_epoch(
            w, b, X, y, lr, batch_size, generator)))
    message = fails(check_sgd_epoch, uphill, r"expected \[.*\], got \[.*\]")
    X_w0 = message  # the expected vector is the reference epoch
    assert "Diagnosis" in X_w0

    def flipped(n, batch_size, generator):
        return list(torch.randperm(n, generator=generator).flip(0).split(batch_size))
    first = torch.randperm(10, generator=torch.Generator().manual_seed(0))[:6]
    fails(check_minibatch_indices, flipped,
          rf"expected array of shape \(10,\) \[{' '.join(map(str, first.tolist()))} ")
