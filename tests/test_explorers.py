"""course.explorers: exact rates, measured rates, the fallback notice."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from course.explorers import (gd_state, gd_text, heavy_ball_matrix,  # noqa: E402
                              heavy_ball_rate, measured_rate, momentum_state,
                              momentum_text, rate_map)
from course.functions import make_quadratic  # noqa: E402
from course.gd import gradient_descent  # noqa: E402
from course.momentum import polyak_parameters, torch_momentum_step  # noqa: E402

VALLEY = make_quadratic(2, 25.0, rotate=False)
W0 = torch.tensor([-1.8, 0.6], dtype=torch.float64)


def solved_step(p, grad, buf, lr, momentum, dampening=0.0):
    return torch_momentum_step(p, grad, buf, lr=lr, momentum=momentum, dampening=dampening)


def stub(*args, **kwargs):
    raise NotImplementedError


def test_rate_map_is_the_spectral_radius_of_the_iteration_matrices():
    lrs, betas = np.linspace(0.005, 0.2, 9), np.linspace(0.0, 0.98, 7)
    grid = rate_map(lrs, betas, [1.0, 25.0])
    assert grid.shape == (len(betas), len(lrs))
    for i, beta in enumerate(betas):
        for j, lr in enumerate(lrs):
            radius = max(np.abs(np.linalg.eigvals(heavy_ball_matrix(lr, beta, lam))).max()
                         for lam in (1.0, 25.0))
            assert grid[i, j] == pytest.approx(radius, rel=1e-9, abs=1e-12)


def test_matrix_reproduces_the_heavy_ball_step():
    lam, lr, beta = 25.0, 0.04, 0.7
    p0, g0 = torch.tensor([0.6], dtype=torch.float64), None
    p1, buf = solved_step(p0, lam * p0, g0, lr, beta)
    p2, _ = solved_step(p1, lam * p1, buf, lr, beta)
    predicted = heavy_ball_matrix(lr, beta, lam) @ np.array([p1.item(), p0.item()])
    assert predicted[0] == pytest.approx(p2.item(), rel=1e-12)


def test_known_rates():
    lr_p, beta_p = polyak_parameters(25.0, 1.0)
    # Polyak's point: (sqrt(kappa) - 1) / (sqrt(kappa) + 1) = 4/6
    assert heavy_ball_rate(lr_p, beta_p, [1.0, 25.0]) == pytest.approx(2 / 3)
    # beta = 0 is gradient descent: max |1 - lr lambda|
    assert heavy_ball_rate(0.075, 0.0, [1.0, 25.0]) == pytest.approx(0.925)
    # both roots complex: modulus sqrt(beta)
    assert heavy_ball_rate(0.04, 0.7, [1.0, 25.0]) == pytest.approx(math.sqrt(0.7))
    # edge of convergence: lr L = 2 (1 + beta)
    assert heavy_ball_rate(2 * 1.5 / 25, 0.5, [1.0, 25.0]) == pytest.approx(1.0)


def test_measured_rate_of_a_geometric_sequence_and_cut_offs():
    assert measured_rate(0.9 ** (2 * np.arange(200))) == pytest.approx(0.9, rel=1e-12)
    assert math.isnan(measured_rate(np.ones(50)))           # fewer than two windows
    losses = np.concatenate([0.5 ** (2 * np.arange(150)), [np.inf, np.nan]])
    assert measured_rate(losses) == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize("lr, beta", [(0.04, 0.7), (0.075, 0.0), (0.1, 0.5), (0.02, 0.3),
                                      (0.01, 0.9), (0.15, 0.9)])
def test_measured_rate_matches_the_computed_one(lr, beta):
    # 0.02: over a grid of (lr, beta) in [0.004, 0.16] x [0, 0.9] the largest gap was
    # 0.011, where two complex modes of equal modulus beat against each other.
    state = momentum_state(solved_step, VALLEY, W0, lr, beta)
    assert state["notice"] == ""
    assert state["measured"] == pytest.approx(state["computed"], abs=0.02)


def test_momentum_fallback_notice_and_same_run():
    mine = momentum_state(solved_step, VALLEY, W0, 0.04, 0.7)
    fallback = momentum_state(stub, VALLEY, W0, 0.04, 0.7)
    assert "not implemented" in fallback["notice"]
    assert np.array_equal(mine["path"], fallback["path"])
    assert momentum_text(0.04, 0.7, fallback).startswith("Note: your momentum_step")
    assert "computed rate 0.8367" in momentum_text(0.04, 0.7, mine)


@pytest.mark.parametrize("lr, regime", [(0.0, "frozen"), (0.1, "monotone"), (0.9, "oscillating"),
                                        (1.0, "bouncing"), (1.1, "divergent")])
def test_gd_state_regime_and_factor(lr, regime):
    state = gd_state(gradient_descent, lr)
    assert state["regime"] == regime
    assert state["factor"] == pytest.approx(1 - 2 * lr, abs=1e-12)


def test_gd_fallback_notice():
    state = gd_state(stub, 0.3)
    assert "your gradient_descent is not implemented" in state["notice"]
    assert gd_text(0.3, state).splitlines()[1].startswith("lr = 0.300: monotone")
