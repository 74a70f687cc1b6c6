"""Tests of the lesson 03 checks: the reference passes, every classic mistake
gets its own diagnosis, and no check touches the global random state."""

from __future__ import annotations

import math
import re

import pytest
import torch

from course import stochastic as ref
from course.checks import (check_lr_schedule, check_minibatch_gradient,
                           check_minibatch_indices, check_sgd_epoch)
from tests.check_contract import CheckContract, fails

# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


@pytest.fixture(autouse=True)
def global_rng_untouched():
    """Every test leaves the global RNG as it found it (checks restore it)."""
    state = torch.random.get_rng_state()
    yield
    assert torch.equal(state, torch.random.get_rng_state())


ALL = [
    (check_minibatch_indices, ref.minibatch_indices, "minibatch_indices"),
    (check_minibatch_gradient, ref.minibatch_gradient, "minibatch_gradient"),
    (check_sgd_epoch, ref.sgd_epoch, "sgd_epoch"),
    (check_lr_schedule, ref.lr_schedule, "lr_schedule"),
]


class TestContract(CheckContract):
    ALL = ALL
    PASS_LINES = {
        "minibatch_indices": r"✓ minibatch_indices: 6 cases give the batches of "
                             r"torch\.randperm",
        "minibatch_gradient": r"✓ minibatch_gradient: 5 cases match \(2/\|B\|\) "
                              r"X_B\^T r_B",
        "sgd_epoch": r"✓ sgd_epoch: 5 cases and two epochs in a row match one SGD step",
        "lr_schedule": r"✓ lr_schedule: 7 cases match lr0 / \(1 \+ decay \* step\)",
    }


# --------------------------------------------------------------------------- #
# minibatch_indices
# --------------------------------------------------------------------------- #


def test_indices_global_rng():
    def global_rng(n, batch_size, generator):
        return list(torch.randperm(n).split(batch_size))
    fails(check_minibatch_indices, global_rng,
          r"global random state changed.*Diagnosis: you shuffled with the global "
          r"random number generator.*generator=generator")


def test_indices_manual_seed_inside_is_global_rng():
    def seeded(n, batch_size, generator):
        torch.manual_seed(0)
        return list(torch.randperm(n).split(batch_size))
    fails(check_minibatch_indices, seeded, r"global random number generator")


def test_indices_not_shuffled():
    def in_order(n, batch_size, generator):
        return list(torch.arange(n).split(batch_size))
    fails(check_minibatch_indices, in_order, r"nothing was shuffled.*torch\.randperm")


def test_indices_dropped_last_partial_batch():
    def drop_last(n, batch_size, generator):
        perm = torch.randperm(n, generator=generator)
        return [perm[i:i + batch_size] for i in range(0, n - n % batch_size, batch_size)]
    fails(check_minibatch_indices, drop_last,
          r"hold 8 of the 10 examples: you dropped the last, smaller batch of 2")


def test_indices_new_permutation_per_batch_overlaps():
    def per_batch(n, batch_size, generator):
        return [torch.randperm(n, generator=generator)[:batch_size]
                for _ in range(math.ceil(n / batch_size))]
    fails(check_minibatch_indices, per_batch,
          r"appear more than once and \d+ never \(batches overlap\).*ONE permutation")


def test_indices_with_replacement_overlaps():
    def randint(n, batch_size, generator):
        return list(torch.randint(n, (n,), generator=generator).split(batch_size))
    fails(check_minibatch_indices, randint, r"more than once.*torch\.randint")


def test_indices_missing_examples():
    def skip_one(n, batch_size, generator):
        perm = torch.randperm(n, generator=generator)
        return list(perm[1:].split(batch_size)) if n > 1 else [perm]
    fails(check_minibatch_indices, skip_one, r"1 of the 10 examples are in no batch")


def test_indices_out_of_range():
    def one_based(n, batch_size, generator):
        return list((torch.randperm(n, generator=generator) + 1).split(batch_size))
    fails(check_minibatch_indices, one_based, r"outside 0 \.\. 9")


def test_indices_own_generator_with_same_seed_as_case():
    def own(n, batch_size, generator):
        g = torch.Generator().manual_seed(0)
        return list(torch.randperm(n, generator=g).split(batch_size))
    fails(check_minibatch_indices, own,
          r"generator passed in was not used \(its state did not move\)")


def test_indices_ignores_generator():
    def own(n, batch_size, generator):
        g = torch.Generator().manual_seed(42)
        return list(torch.randperm(n, generator=g).split(batch_size))
    fails(check_minibatch_indices, own, r"do not depend on the generator passed in")


def test_indices_copy_of_generator():
    def copy(n, batch_size, generator):
        g = torch.Generator().manual_seed(generator.initial_seed())
        return list(torch.randperm(n, generator=g).split(batch_size))
    fails(check_minibatch_indices, copy, r"drew from a copy or a new generator")


def test_indices_reseeds_generator_every_epoch():
    def reseed(n, batch_size, generator):
        generator.manual_seed(generator.initial_seed())
        return list(torch.randperm(n, generator=generator).split(batch_size))
    fails(check_minibatch_indices, reseed,
          r"two epochs in a row.*epoch 2.*fresh permutation.*don't re-seed")


def test_indices_draws_twice():
    def twice(n, batch_size, generator):
        perm = torch.randperm(n, generator=generator)
        torch.randperm(n, generator=generator)
        return list(perm.split(batch_size))
    fails(check_minibatch_indices, twice, r"drew from the generator more than once")


def test_indices_wrong_order():
    def flipped(n, batch_size, generator):
        return list(torch.randperm(n, generator=generator).flip(0).split(batch_size))
    fails(check_minibatch_indices, flipped,
          r"expected .*Diagnosis: the order differs from torch\.randperm")


def test_indices_wrong_sizes():
    def halves(n, batch_size, generator):
        perm = torch.randperm(n, generator=generator)
        return [perm[: n // 2], perm[n // 2:]]
    fails(check_minibatch_indices, halves, r"batch sizes \[5, 5\], expected \[4, 4, 2\]")


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


def test_gradient_sum_instead_of_mean():
    def summed(w, b, X, y, idx):
        r = _residual(w, b, X, y, idx)
        return 2 * X[idx].T @ r, 2 * r.sum()
    fails(check_minibatch_gradient, summed,
          r"4x too large \(the batch size\): you summed over the batch instead of "
          r"averaging")


def test_gradient_forgot_factor_two():
    def half(w, b, X, y, idx):
        r = _residual(w, b, X, y, idx)
        return X[idx].T @ r / len(idx), r.mean()
    fails(check_minibatch_gradient, half, r"half the right one: you forgot the factor 2")


def test_gradient_sum_and_no_two():
    def both(w, b, X, y, idx):
        r = _residual(w, b, X, y, idx)
        return X[idx].T @ r, r.sum()
    fails(check_minibatch_gradient, both, r"summed instead of averaging AND forgot")


def test_gradient_wrong_sign():
    def uphill(w, b, X, y, idx):
        r = y[idx] - X[idx] @ w - b
        return 2 * X[idx].T @ r / len(idx), 2 * r.mean()
    fails(check_minibatch_gradient, uphill, r"points the wrong way")


def test_gradient_divided_by_n():
    def by_n(w, b, X, y, idx):
        r = _residual(w, b, X, y, idx)
        return 2 * X[idx].T @ r / len(y), 2 * r.sum() / len(y)
    fails(check_minibatch_gradient, by_n, r"divided by n = 12 .* \|B\| = 4")


def test_gradient_ignores_idx():
    def full(w, b, X, y, idx):
        return ref.mse_gradient(w, b, X, y)
    fails(check_minibatch_gradient, full, r"full-batch gradient: you ignored idx")


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


def test_sgd_single_full_batch_step():
    def one_step(w, b, X, y, lr, batch_size, generator):
        ref.minibatch_indices(len(y), batch_size, generator)
        gw, gb = ref.mse_gradient(w, b, X, y)
        return w - lr * gw, b - lr * gb
    fails(check_sgd_epoch, one_step, r"ONE full-batch gradient step .* \(3 steps here\)")


def test_sgd_full_gradient_per_batch():
    def full(w, b, X, y, lr, batch_size, generator):
        for _ in ref.minibatch_indices(len(y), batch_size, generator):
            gw, gb = ref.mse_gradient(w, b, X, y)
            w, b = w - lr * gw, b - lr * gb
        return w, b
    fails(check_sgd_epoch, full, r"each with the FULL gradient")


def test_sgd_global_rng_shuffle():
    def global_rng(w, b, X, y, lr, batch_size, generator):
        return _steps(w, b, X, y, lr, torch.randperm(len(y)).split(batch_size))
    fails(check_sgd_epoch, global_rng, r"global random state changed.*global random")


def test_sgd_not_shuffled():
    def in_order(w, b, X, y, lr, batch_size, generator):
        return _steps(w, b, X, y, lr, torch.arange(len(y)).split(batch_size))
    fails(check_sgd_epoch, in_order, r"in order 0, 1, 2")


def test_sgd_drops_last_batch():
    def drop_last(w, b, X, y, lr, batch_size, generator):
        batches = ref.minibatch_indices(len(y), batch_size, generator)
        if len(y) % batch_size:
            batches = batches[:-1]
        return _steps(w, b, X, y, lr, batches)
    fails(check_sgd_epoch, drop_last, r"skipped the last, smaller batch")


def test_sgd_does_not_carry_parameters():
    def no_carry(w, b, X, y, lr, batch_size, generator):
        for idx in ref.minibatch_indices(len(y), batch_size, generator):
            gw, gb = ref.minibatch_gradient(w, b, X, y, idx)
            new_w, new_b = w - lr * gw, b - lr * gb
        return new_w, new_b
    fails(check_sgd_epoch, no_carry, r"every step started again from the w, b passed in")


def test_sgd_summed_gradients():
    def summed(w, b, X, y, lr, batch_size, generator):
        for idx in ref.minibatch_indices(len(y), batch_size, generator):
            gw, gb = ref.minibatch_gradient(w, b, X, y, idx)
            w, b = w - lr * len(idx) * gw, b - lr * len(idx) * gb
        return w, b
    fails(check_sgd_epoch, summed, r"batch_size times too large")


def test_sgd_uphill():
    def uphill(w, b, X, y, lr, batch_size, generator):
        for idx in ref.minibatch_indices(len(y), batch_size, generator):
            gw, gb = ref.minibatch_gradient(w, b, X, y, idx)
            w, b = w + lr * gw, b + lr * gb
        return w, b
    fails(check_sgd_epoch, uphill, r"went uphill")


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
    (lambda t, lr0, k: lr0 / (1 + k * (t + 1)),
     r"case 'step=0.*expected 0\.1, got 0\.0666667.*off by one: at step 0"),
    (lambda t, lr0, k: lr0 / (1 + k * (t - 1)), r"not 1 \+ decay \* \(step - 1\)"),
    (lambda t, lr0, k: lr0 * math.exp(-k * t), r"exponential decay"),
    (lambda t, lr0, k: lr0 * (1 - k) ** t, r"exponential decay"),
    (lambda t, lr0, k: lr0 / (1 + k) ** t, r"exponential decay"),
    (lambda t, lr0, k: lr0 / math.sqrt(1 + k * t), r"1/sqrt\(t\) schedule"),
    (lambda t, lr0, k: lr0 * (1 - k * t), r"linear decay"),
    (lambda t, lr0, k: lr0 / (1 + k) * t, r"mind the brackets"),
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


def test_schedule_divided_by_decay_with_guard():
    def guarded(t, lr0, k):
        return lr0 if k == 0 else lr0 / (1 + t / k)
    fails(check_lr_schedule, guarded, r"case 'step=10, lr0=0\.2, decay=0\.1'.*decay is a "
                                      r"rate that multiplies the step: 1 \+ decay \* step, "
                                      r"not 1 \+ step / decay")


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
