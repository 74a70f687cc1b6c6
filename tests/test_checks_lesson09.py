"""Tests of the lesson 09 checks beyond tests/test_exercises.py (which runs
every catalogued mistake of course/exercises/lesson09.py): learner-style wrong
implementations that are not catalogued mistakes, right variants that must
pass, and how failures are reported."""

from __future__ import annotations

import math

import numpy as np

from course.checks import (
    check_one_cycle_lr_and_momentum,
    check_scaled_config,
    check_suggest_lr,
    check_WarmupCosine,
)
from course.exercises.lesson09 import WarmupCosine, one_cycle_lr_and_momentum, suggest_lr
from tests.check_contract import fails


class _Base(WarmupCosine):
    """The reference's __init__, for learner-style variants of get_lr."""


# -------------------------------------------------------------------- WarmupCosine

def test_warmup_cosine_with_settings_computed_in_init_passes(capsys):
    class Precomputed(WarmupCosine):
        def __init__(self, optimizer, warmup_steps, total_steps, start_factor=0.1,
                     eta_min=0.0, last_epoch=-1):
            self.T = total_steps - warmup_steps
            super().__init__(optimizer, warmup_steps, total_steps, start_factor, eta_min,
                             last_epoch)
    check_WarmupCosine(Precomputed)
    assert capsys.readouterr().out.startswith("\u2713 WarmupCosine: ")


def test_warmup_cosine_ignoring_eta_min_fails_where_eta_min_is_set():
    class NoFloor(_Base):
        def get_lr(self):
            saved, self.eta_min = self.eta_min, 0.0
            try:
                return super().get_lr()
            finally:
                self.eta_min = saved
    fails(check_WarmupCosine, NoFloor, r"eta_min=0\.001.*first different lr at step")


def test_warmup_cosine_counting_outside_the_scheduler_fails_after_loading():
    calls = {"t": -1}

    class OwnCounter(_Base):
        def get_lr(self):
            calls["t"] += 1
            saved, self.last_epoch = self.last_epoch, calls["t"]
            try:
                return super().get_lr()
            finally:
                self.last_epoch = saved
    fails(check_WarmupCosine, OwnCounter, r"first different lr at step")


def test_warmup_cosine_linear_decay_instead_of_cosine_fails():
    class LinearDecay(_Base):
        def get_lr(self):
            t, w = self.last_epoch, self.warmup_steps
            if t < w:
                return super().get_lr()
            frac = (t - w) / (self.total_steps - w)
            return [b - (b - self.eta_min) * frac for b in self.base_lrs]
    fails(check_WarmupCosine, LinearDecay, r"cosine phase")


# ------------------------------------------------------- one_cycle_lr_and_momentum

def test_one_cycle_as_a_list_or_numpy_floats_passes():
    check_one_cycle_lr_and_momentum(lambda *a, **k: list(one_cycle_lr_and_momentum(*a, **k)))
    check_one_cycle_lr_and_momentum(
        lambda *a, **k: tuple(np.float64(x) for x in one_cycle_lr_and_momentum(*a, **k)))


def test_one_cycle_pair_swapped_fails():
    fails(check_one_cycle_lr_and_momentum,
          lambda *a, **k: one_cycle_lr_and_momentum(*a, **k)[::-1], "expected")


def test_one_cycle_linear_anneal_fails():
    def linear(step, total_steps, max_lr, pct_start=0.3, div_factor=25.0,
               final_div_factor=1e4, base_momentum=0.85, max_momentum=0.95):
        lo = max_lr / div_factor
        end1 = float(pct_start * total_steps) - 1
        if step <= end1:
            p = step / end1
            return lo + (max_lr - lo) * p, max_momentum + (base_momentum - max_momentum) * p
        p = (step - end1) / (total_steps - 1 - end1)
        return (max_lr + (lo / final_div_factor - max_lr) * p,
                base_momentum + (max_momentum - base_momentum) * p)
    fails(check_one_cycle_lr_and_momentum, linear, "expected")


def test_one_cycle_returning_a_dict_is_named():
    fails(check_one_cycle_lr_and_momentum, lambda *a, **k: {"lr": 0.1, "momentum": 0.9},
          r"pair \(lr, momentum\)")


# ------------------------------------------------------------------ suggest_lr

def test_suggest_lr_with_numpy_passes():
    def vectorised(lrs, losses, beta=0.98, factor=4.0):
        losses = np.asarray(losses, dtype=float)
        avg, best, best_i = 0.0, math.inf, 0
        for i in range(len(losses)):
            avg = beta * avg + (1 - beta) * losses[i]
            s = avg / (1 - beta ** (i + 1))
            if not np.isfinite(s) or s > factor * best:
                break
            if s < best:
                best, best_i = s, i
        return float(lrs[best_i] / 10)
    check_suggest_lr(vectorised)


def test_suggest_lr_skipping_instead_of_stopping_fails():
    def skipping(lrs, losses, beta=0.98, factor=4.0):
        avg, best, best_i = 0.0, math.inf, 0
        for i, loss in enumerate(losses):
            avg = beta * avg + (1 - beta) * loss
            s = avg / (1 - beta ** (i + 1))
            if not math.isfinite(s) or s > factor * best:
                continue
            if s < best:
                best, best_i = s, i
        return lrs[best_i] / 10
    fails(check_suggest_lr, skipping, "spike")


def test_suggest_lr_steepest_descent_pick_fails():
    def steepest(lrs, losses, beta=0.98, factor=4.0):
        slopes = np.diff(np.asarray(losses[:len(losses) // 2]))
        return lrs[int(np.argmin(slopes))]
    fails(check_suggest_lr, steepest, "expected")


def test_suggest_lr_reference_is_the_notebook_rule():
    assert suggest_lr([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == 0.3


# ---------------------------------------------------------------- scaled_config

def test_scaled_config_with_integer_ceil_passes():
    check_scaled_config(lambda lr, b, w, k, n: (lr * k, b * k, -(-w * b // (b * k)),
                                                n // (b * k)))


def test_scaled_config_float_counts_are_named():
    fails(check_scaled_config, lambda lr, b, w, k, n: (lr * k, b * k, w / k, n / (b * k)),
          "return ints")


def test_scaled_config_batch_not_scaled_fails():
    fails(check_scaled_config, lambda lr, b, w, k, n: (lr * k, b, math.ceil(w / k),
                                                       n // (b * k)), "expected")
