"""Experiments of lesson 09 (learning-rate schedules), small enough to run in seconds.

- :func:`lr_finder` -- a learning-rate range test: the lr grows geometrically
  every step of one short run; stops when the smoothed loss diverges.
- :func:`noise_floor` -- the loss SGD settles at on linear regression, for a
  learning rate and a batch size.
- :func:`scaling_experiment` -- the linear scaling rule (batch x k, lr x k) on
  linear regression, curves per example seen.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from course.data import make_regression


def lr_finder(model: nn.Module, loss_fn: Callable[..., torch.Tensor], X: torch.Tensor,
              y: torch.Tensor, optimizer: torch.optim.Optimizer, *, start_lr: float = 1e-4,
              end_lr: float = 10.0, steps: int = 100, batch_size: int = 64,
              beta: float = 0.98, factor: float = 4.0,
              seed: int = 0) -> tuple[list[float], list[float]]:
    """Run one short training run whose lr grows from ``start_lr`` to ``end_lr``
    geometrically (``steps`` steps, fresh random batches of ``batch_size``).

    Stops after the first step whose bias-corrected moving average of the loss
    (``beta``) exceeds ``factor`` times its minimum so far or is not finite.

    Returns:
        (lrs, losses): the lr of each step taken and the loss of its batch
        (before the update).
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    gen = torch.Generator().manual_seed(seed)
    ratio = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs, losses = [], []
    avg, best = 0.0, math.inf
    for i in range(steps):
        lr = start_lr * ratio ** i
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(X), (batch_size,), generator=gen)
        optimizer.zero_grad()
        loss = loss_fn(model(X[idx]), y[idx])
        loss.backward()
        optimizer.step()
        value = loss.item()
        lrs.append(lr)
        losses.append(value)
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        if not math.isfinite(smooth) or smooth > factor * best:
            break
        best = min(best, smooth)
    return lrs, losses


def _problem(n: int, d: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X, y, _, _ = make_regression(n, d, noise=noise, seed=seed)
    return X.double().numpy(), y.double().numpy()


def _full_loss(w: np.ndarray, b: float, X: np.ndarray, y: np.ndarray) -> float:
    return float(((X @ w + b - y) ** 2).mean())


def min_loss(n: int = 1024, d: int = 5, noise: float = 0.5, seed: int = 0) -> float:
    """The smallest full-data MSE (least squares with a bias)."""
    X, y = _problem(n, d, noise, seed)
    Xb = np.hstack([X, np.ones((n, 1))])
    coef = np.linalg.lstsq(Xb, y, rcond=None)[0]
    return float(((Xb @ coef - y) ** 2).mean())


def sgd_run(lr: float, batch_size: int, examples: int, *, n: int = 1024, d: int = 5,
            noise: float = 0.5, warmup_examples: int = 0, seed: int = 0,
            record_every: int = 256) -> tuple[list[int], list[float]]:
    """Mini-batch SGD (batches drawn with replacement) on a linear regression
    from w = 0 until ``examples`` examples have been seen; the lr ramps up
    linearly over the first ``warmup_examples`` examples.

    Returns:
        (seen, losses): examples seen and the full-data MSE, every
        ``record_every`` examples (and at the start); a diverged run records inf.
    """
    X, y = _problem(n, d, noise, seed)
    rng = np.random.default_rng(seed + 1)
    w, b = np.zeros(d), 0.0
    seen, losses, count = [0], [_full_loss(w, b, X, y)], 0
    while count + batch_size <= examples:
        idx = rng.integers(0, n, batch_size)
        xb = X[idx]
        err = xb @ w + b - y[idx]
        gw, gb = 2 * xb.T @ err / batch_size, 2 * float(err.mean())
        step_lr = lr * min(1.0, (count + batch_size) / warmup_examples) if warmup_examples else lr
        w, b = w - step_lr * gw, b - step_lr * gb
        count += batch_size
        if count % record_every == 0:
            loss = _full_loss(w, b, X, y)
            seen.append(count)
            losses.append(loss if loss < 1e12 else math.inf)
            if losses[-1] == math.inf:
                break
    return seen, losses


def curvature(n: int = 1024, d: int = 5, noise: float = 0.5, seed: int = 0) -> float:
    """The largest eigenvalue of the Hessian of the full-data MSE (w and b)."""
    X, _ = _problem(n, d, noise, seed)
    Xb = np.hstack([X, np.ones((n, 1))])
    return float(np.linalg.eigvalsh(2 * Xb.T @ Xb / n).max())


def noise_floor(lr: float, batch_size: int, *, examples: int = 65536, tail: int = 16,
                **kwargs: Any) -> float:
    """The mean full-data MSE over the last ``tail`` records of :func:`sgd_run`."""
    _, losses = sgd_run(lr, batch_size, examples, **kwargs)
    return sum(losses[-tail:]) / tail


def scaling_experiment(ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64), *,
                       base_lr: float = 0.03, base_batch: int = 4, examples: int = 32768,
                       warmup_examples: int = 2048, tolerance: float = 2.0) -> dict[str, Any]:
    """Runs of :func:`sgd_run` with batch ``base_batch * k`` and lr ``base_lr * k``
    for each k, all with the same warm-up in examples and the same examples.

    Returns:
        a dict: ``curves`` {k: (seen, losses)}, ``excess`` {k: mean of the last
        8 records (2048 examples) minus the least-squares loss}, and
        ``breaks_at``: the first k whose excess exceeds ``tolerance`` times the
        k = 1 run's (as a string; "never up to <last k>" if none).
    """
    curves, excess, best = {}, {}, min_loss()
    for k in ks:
        seen, losses = sgd_run(base_lr * k, base_batch * k, examples,
                               warmup_examples=warmup_examples)
        curves[k] = (seen, losses)
        excess[k] = sum(losses[-8:]) / len(losses[-8:]) - best
    breaks = next((str(k) for k in ks if not excess[k] <= tolerance * excess[ks[0]]),
                  f"never up to {ks[-1]}")
    return {"curves": curves, "excess": excess, "breaks_at": breaks}
