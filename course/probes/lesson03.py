"""Re-verification probes for 03-stochastic-gradient-descent.

``minibatch_indices`` is compared exactly: the batches (int64, 1-D), the
state of the generator afterwards (exactly one ``randperm`` drawn) and the
global RNG (untouched). ``minibatch_gradient`` and ``sgd_epoch`` within
float64 rounding, with their inputs checked unchanged; ``lr_schedule`` within
rounding, as floats. The course's mini-batch helpers, loaders and torch's SGD
are disabled while the learner's code runs.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import torch

from course.probes._common import (COURSE_SGD, TORCH_SGD, generator, global_rng_bytes, pair,
                                   real, snap, type_name)
from course.verify import Probe

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
    rng_before = global_rng_bytes()
    out: list[Any] = []
    for n, size, seed, epochs in ((1000, 64, 2024, 2), (10, 4, 0, 3), (3, 8, 1, 1),
                                  (12, 12, 5, 1), (7, 1, 9, 1), (50, 7, 11, 2)):
        gen = generator(seed)
        for _ in range(epochs):
            out.append(_batches(f(n, size, gen)))
        out.append(gen.get_state())                    # advanced by one randperm per epoch
    out.append(global_rng_bytes() == rng_before)
    return out


def _problem(n: int, d: int, seed: int) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.normal(size=n)
    w, b = rng.normal(size=d), float(rng.normal())
    return (torch.tensor(w), torch.tensor(b, dtype=torch.float64), torch.tensor(x),
            torch.tensor(y), rng)


def _minibatch_gradient(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["minibatch_gradient"]
    out: list[Any] = []
    for n, d, size, seed in ((30, 4, 7, 11), (15, 1, 15, 12), (8, 3, 1, 13), (40, 6, 40, 14),
                             (25, 2, 10, 15)):
        w, b, x, y, rng = _problem(n, d, seed)
        idx = torch.tensor(rng.permutation(n)[:size])
        gw, gb = pair(f(w, b, x, y, idx))
        gb = torch.as_tensor(gb) if type(gb) in (float, np.float64) else gb
        out += [snap(gw), list(gw.shape) if type(gw) is torch.Tensor else None,
                snap(gb), list(gb.shape) if type(gb) is torch.Tensor else None,
                snap(w), snap(b), snap(x), snap(y), snap(idx)]   # inputs unchanged
    return out


def _sgd_epoch(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["sgd_epoch"]
    rng_before = global_rng_bytes()
    out: list[Any] = []
    for n, d, lr, size, epochs, seed in ((50, 3, 0.05, 7, 2, 3), (20, 2, 0.1, 1, 1, 4),
                                         (16, 4, 0.02, 16, 3, 5), (9, 2, 0.1, 20, 1, 6),
                                         (30, 3, 0.0, 4, 1, 7)):
        w0, b0, x, y, _ = _problem(n, d, seed)
        w, b = torch.zeros(d, dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        w[0] = w0[0]
        gen = generator(seed)
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
    out: list[Any] = []
    for step in range(12):
        out.append(real(f(step, 0.3, 0.7), (float, np.float64)))
    for args in ((0, 0.125, 3.0), (1000, 1.0, 0.001), (5, 0.08, 0.0), (3, 2.0, 0.5),
                 (10**6, 0.5, 1.0), (7, 0.01, 10.0)):
        out.append(real(f(*args), (float, np.float64)))
    return out


PROBES = {
    "test_minibatch_indices": Probe(_minibatch_indices),
    "test_minibatch_gradient": Probe(_minibatch_gradient, rtol=1e-10, atol=1e-12),
    "test_sgd_epoch": Probe(_sgd_epoch, rtol=1e-9, atol=1e-12),
    "test_lr_schedule": Probe(_lr_schedule, rtol=1e-12, atol=1e-15),
}
