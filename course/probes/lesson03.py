"""Re-verification probes for 03-stochastic-gradient-descent.

Every probe draws its inputs from the verification's seed (sizes, batch
sizes, data, generator seeds, learning rates, steps), next to fixed edge
cases (a batch larger than the data, batches of one, the full batch, lr = 0,
step 0, decay 0). ``minibatch_indices`` is compared exactly: the batches
(int64, 1-D), the state of the generator afterwards (exactly one
``randperm`` drawn) and the global RNG (untouched). ``minibatch_gradient``
and ``sgd_epoch`` within float64 rounding (learning rates small enough that
every step contracts, so rounding differences stay small), with their
inputs checked unchanged; ``lr_schedule`` within rounding, as floats. The course's mini-batch helpers, loaders and torch's SGD
are disabled while the learner's code runs.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import torch

from course.exercises.values import (COURSE_SGD, TORCH_SGD, generator, global_rng_bytes, pair,
                                   real, snap, type_name)
from course.grading.probes import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = [
    "course.stochastic.minibatch_indices", "course.stochastic.minibatch_gradient",
    "course.stochastic.sgd_epoch", "course.stochastic.lr_schedule",
    "course.stochastic.mse_gradient", "course.stochastic.per_example_gradients",
    "course.data.iterate_minibatches", "course.data.make_loader",
    *TORCH_SGD, *COURSE_SGD,
]


def _batches(out: Any) -> Any:
    """The batches as int64 tensors, or a description of what is wrong."""
    if type(out) not in (list, tuple):
        return type_name(out)
    batches = []
    for idx in out:
        if type(idx) is not torch.Tensor or idx.dtype != torch.int64 or idx.ndim != 1:
            return ["not a 1-D int64 tensor", type_name(idx)]
        batches.append(idx.clone())
    return batches


def _minibatch_indices(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["minibatch_indices"]
    rng = np.random.default_rng(seed)
    rng_before = global_rng_bytes()
    out: list[Any] = []
    cases = [(1000, 64, 2), (10, 4, 3), (3, 8, 1), (12, 12, 1), (7, 1, 1), (50, 7, 2)]
    for _ in range(4):                                 # random sizes and batch sizes
        n = int(rng.integers(1, 200))
        cases.append((n, int(rng.integers(1, n + 6)), int(rng.integers(1, 4))))
    for n, size, epochs in cases:
        gen = generator(int(rng.integers(2 ** 62)))
        for _ in range(epochs):
            out.append(_batches(f(n, size, gen)))
        out.append(gen.get_state())                    # advanced by one randperm per epoch
    out.append(global_rng_bytes() == rng_before)
    return out


def _problem(n: int, d: int, rng: np.random.Generator) -> tuple[Any, ...]:
    x, y = rng.normal(size=(n, d)), rng.normal(size=n)
    w, b = rng.normal(size=d), float(rng.normal())
    return (torch.tensor(w), torch.tensor(b, dtype=torch.float64), torch.tensor(x),
            torch.tensor(y))


def _minibatch_gradient(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["minibatch_gradient"]
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    n1, n2, n3 = (int(v) for v in rng.integers(2, 50, size=3))
    for n, d, size in ((n1, int(rng.integers(1, 7)), int(rng.integers(2, n1 + 1))),
                       (n2, 1, n2),                    # one feature, the whole data set
                       (n3, int(rng.integers(1, 7)), 1),   # a batch of one
                       (int(rng.integers(2, 60)), int(rng.integers(1, 7)), None),
                       (int(rng.integers(2, 60)), int(rng.integers(1, 7)), None)):
        size = int(rng.integers(1, n + 1)) if size is None else size
        w, b, x, y = _problem(n, d, rng)
        idx = torch.tensor(rng.permutation(n)[:size])
        gw, gb = pair(f(w, b, x, y, idx))
        gb = torch.as_tensor(gb) if type(gb) in (float, np.float64) else gb
        out += [snap(gw), list(gw.shape) if type(gw) is torch.Tensor else None,
                snap(gb), list(gb.shape) if type(gb) is torch.Tensor else None,
                snap(w), snap(b), snap(x), snap(y), snap(idx)]   # inputs unchanged
    return out


def _sgd_epoch(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["sgd_epoch"]
    rng = np.random.default_rng(seed)
    rng_before = global_rng_bytes()
    out: list[Any] = []
    cases = [(int(rng.integers(20, 60)), int(rng.integers(1, 5)), None, int(rng.integers(2, 10)),
              2),
             (int(rng.integers(5, 25)), int(rng.integers(1, 4)), None, 1, 1),      # batches of 1
             (int(rng.integers(5, 25)), int(rng.integers(1, 5)), None, None, 3),   # full batch
             (int(rng.integers(2, 12)), int(rng.integers(1, 4)), None, 20, 1),     # size > n
             (int(rng.integers(10, 40)), int(rng.integers(1, 4)), 0.0, 4, 1)]      # lr = 0
    for n, d, lr, size, epochs in cases:
        w0, b0, x, y = _problem(n, d, rng)
        size = n if size is None else size
        if lr is None:       # small enough for every step to contract: rounding stays small
            biggest = float((x ** 2).sum(dim=1).max()) + 1.0
            lr = float(rng.uniform(0.1, 0.9)) / (2 * biggest)
        w, b = w0, b0
        gen = generator(int(rng.integers(2 ** 62)))
        for _ in range(epochs):
            w_in, b_in = w, b
            w, b = pair(f(w_in, b_in, x, y, lr, size, gen))
            out += [snap(w), snap(torch.as_tensor(b) if type(b) is float else b),
                    snap(w_in), snap(b_in)]           # the inputs are not modified
            if type(w) is not torch.Tensor or type(b) is not torch.Tensor:
                break
        out += [gen.get_state(), snap(x), snap(y)]
    out.append(global_rng_bytes() == rng_before)
    return out


def _lr_schedule(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["lr_schedule"]
    rng = np.random.default_rng(seed)
    out: list[Any] = []
    for step in range(12):
        out.append(real(f(step, 0.3, 0.7), (float, np.float64)))
    cases = [(0, 0.125, 3.0), (1000, 1.0, 0.001), (5, 0.08, 0.0), (3, 2.0, 0.5),
             (10**6, 0.5, 1.0), (7, 0.01, 10.0)]
    lr0, decay = float(10 ** rng.uniform(-3.0, 0.5)), float(10 ** rng.uniform(-3.0, 1.0))
    cases += [(step, lr0, decay) for step in range(int(rng.integers(5, 15)))]
    cases += [(int(rng.integers(0, 10 ** int(rng.integers(1, 7)))),
               float(10 ** rng.uniform(-3.0, 0.5)), float(10 ** rng.uniform(-4.0, 1.0)))
              for _ in range(8)]
    cases.append((int(rng.integers(0, 1000)), float(rng.uniform(0.001, 1.0)), 0.0))
    for args in cases:
        out.append(real(f(*args), (float, np.float64)))
    return out


PROBES = {
    "test_minibatch_indices": Probe(_minibatch_indices),
    "test_minibatch_gradient": Probe(_minibatch_gradient, rtol=1e-10, atol=1e-12),
    "test_sgd_epoch": Probe(_sgd_epoch, rtol=1e-9, atol=1e-12),
    "test_lr_schedule": Probe(_lr_schedule, rtol=1e-12, atol=1e-15),
}
