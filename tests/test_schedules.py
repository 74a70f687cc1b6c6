"""Tests of course/schedules.py (lesson 09's experiments)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course.optim import SGD
from course.schedules import (curvature, lr_finder, min_loss, noise_floor, scaling_experiment,
                              sgd_run)
from course.training import make_mlp


def _finder(**kwargs):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(256, 4, generator=gen)
    y = (X[:, 0] > 0).long()
    model = make_mlp(4, 8, 2, seed=0)
    return lr_finder(model, nn.CrossEntropyLoss(), X, y, SGD(model.parameters(), lr=1.0),
                     **kwargs)


def test_lr_finder_grows_geometrically_and_stops_on_divergence():
    lrs, losses = _finder(start_lr=1e-3, end_lr=1e3, steps=60, batch_size=32)
    assert len(lrs) == len(losses) < 60
    assert lrs[0] == pytest.approx(1e-3)
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios))
    assert ratios[0] == pytest.approx(1e6 ** (1 / 59))


def test_lr_finder_is_deterministic_and_runs_all_steps_when_nothing_diverges():
    a = _finder(start_lr=1e-5, end_lr=1e-3, steps=20)
    assert a == _finder(start_lr=1e-5, end_lr=1e-3, steps=20)
    assert len(a[0]) == 20


def test_lr_finder_needs_two_steps():
    with pytest.raises(ValueError):
        _finder(steps=1)


def test_sgd_run_records_and_stops_when_diverged():
    seen, losses = sgd_run(0.01, 4, 2048)
    assert seen[0] == 0 and seen[-1] == 2048 and len(seen) == len(losses) == 9
    assert losses[-1] < losses[0]
    _, diverged = sgd_run(2.0, 4, 65536)
    assert diverged[-1] == math.inf and len(diverged) < 257


def test_noise_floor_scales_with_lr_over_batch():
    best = min_loss()
    a = noise_floor(0.01, 4, examples=16384) - best
    b = noise_floor(0.02, 8, examples=16384) - best
    c = noise_floor(0.02, 4, examples=16384) - best
    assert 0 < a and b == pytest.approx(a, rel=0.25) and c == pytest.approx(2 * a, rel=0.3)


def test_curvature_of_standard_normal_features_is_about_two():
    assert 1.5 < curvature() < 3.0


def test_scaling_experiment_breaks_past_two_over_L():
    out = scaling_experiment(ks=(1, 8, 32), examples=8192)
    assert out["breaks_at"] == "32"
    assert set(out["curves"]) == {1, 8, 32}
    assert out["excess"][32] > 10 * out["excess"][1]
