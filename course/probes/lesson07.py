"""Re-verification probes for 07-training.

Every input is drawn from the verification's seed: data, layer sizes,
initial weights, stale gradients, learning rates and momenta, batch sizes
(one leaving a short last batch, the whole set, more than the whole set),
epochs, dropout rates and masks, the learning rates of ``lr_sweep`` and
which of them diverge or end in nan.

The training loop is probed through what it does to a model and an
optimizer built here: the parameters, gradients and returned losses of
several ``train_step`` calls (a stale gradient in ``.grad`` first, a
recording optimizer that logs what the gradients were when ``step`` ran);
``evaluate`` on a model with dropout and a layer that records the mode and
``torch.is_grad_enabled()`` of every forward pass;
``train_epoch`` with dropout (global RNG seeded inside ``fork_rng``), a
model left in eval mode, and the generator's state afterwards;
``accuracy`` on random logits and ``lr_sweep`` with spies. Tolerances allow
float32 rounding differences. The course's training functions are disabled
while the learner's code runs; torch's SGD and ``course.optim.SGD`` are not
(the notebook trains with the latter, and the probes use the former).
"""

from __future__ import annotations

import builtins
import math
from typing import Any

import numpy as np
import torch
import torch._dynamo  # noqa: F401 - loaded now (the first optimizer loads it lazily)
from torch import nn

from course.exercises.values import probe_rng, sub_seed, uniform
from course.exercises.values import generator, real, snap, type_name
from course.grading.probes import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = ["course.training.train_step", "course.training.accuracy",
             "course.training.evaluate", "course.training.train_epoch",
             "course.training.lr_sweep", "course.training.fit"]


_rng, _sub_seed, _u = probe_rng, sub_seed, uniform


def _n(rng: np.random.Generator, low: int, high: int) -> int:
    """An int in [low, high]."""
    return int(rng.integers(low, high + 1))


def _net(seed: int, sizes: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """An MLP with weights drawn from a generator (not the global RNG)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(sizes) - 2:
            layers.append(nn.Tanh())
            if dropout:
                layers.append(nn.Dropout(dropout))
    net = nn.Sequential(*layers)
    gen = generator(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return net


def _params(net: nn.Module) -> list[Any]:
    return [snap(p) for p in net.parameters()]


def _grads(net: nn.Module) -> list[Any]:
    return [snap(p.grad) for p in net.parameters()]


class _Recording(torch.optim.Optimizer):
    """Plain SGD that logs the gradients it sees at every step()."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, {"lr": lr})
        self.log: list[Any] = []

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        grads = [None if p.grad is None else p.grad.clone()
                 for g in self.param_groups for p in g["params"]]
        self.log.append(["step", grads])
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-g["lr"])
        return None


class _Logged(nn.Module):
    """Identity layer that records (training, grad enabled) at every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[list[bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append([self.training, torch.is_grad_enabled()])
        return x


def _train_step(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["train_step"]
    rng = _rng(seed, 701)
    out: list[Any] = []
    gen = generator(_sub_seed(rng))
    n, d, h, c = _n(rng, 8, 16), _n(rng, 3, 8), _n(rng, 3, 8), _n(rng, 2, 5)
    x = torch.randn(n, d, generator=gen)
    y = torch.randint(0, c, (n,), generator=gen)
    net = _net(_sub_seed(rng), (d, h, c))
    opt = torch.optim.SGD(net.parameters(), lr=_u(rng, 0.05, 0.3), momentum=_u(rng, 0.3, 0.9),
                          nesterov=True)
    for p in net.parameters():                    # a stale gradient from elsewhere
        p.grad = torch.randn(p.shape, generator=gen)
    for k in range(4):
        loss = f(net, opt, nn.CrossEntropyLoss(), x[k:], y[k:])
        out += [real(loss), _params(net), _grads(net)]
    d, h = _n(rng, 2, 5), _n(rng, 2, 6)
    net = _net(_sub_seed(rng), (d, h, 1))
    rec = _Recording(net.parameters(), lr=_u(rng, 0.01, 0.2))
    m = _n(rng, 3, 8)
    xr, yr = torch.randn(m, d, generator=gen), torch.randn(m, 1, generator=gen)
    for _ in range(3):
        loss = f(net, rec, nn.MSELoss(), xr, yr)
        out += [real(loss), _params(net)]
    out.append(rec.log)                           # one step per call, with this batch's grads
    return out


def _accuracy(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["accuracy"]
    rng = _rng(seed, 702)
    gen = generator(_sub_seed(rng))
    out: list[Any] = []
    sizes = [(1, 2), (_n(rng, 2, 40), 2), (_n(rng, 2, 12), _n(rng, 3, 12)),
             (_n(rng, 40, 80), 10), (_n(rng, 2, 9), _n(rng, 5, 9)), (_n(rng, 5, 15), 10)]
    for n, c in sizes:
        z = torch.randn(n, c, generator=gen)
        t = torch.randint(0, c, (n,), generator=gen)
        out += [real(f(z, t)), snap(z), snap(t)]      # logits and labels unchanged
    k = _n(rng, 2, 7)
    perm = torch.randperm(k, generator=gen)
    out.append(real(f(torch.eye(k), torch.arange(k))))                    # all right
    out.append(real(f(torch.eye(k), (torch.arange(k) + 1) % k)))          # all wrong
    out.append(real(f(torch.eye(k)[perm], torch.arange(k))))              # some right
    return out


def _evaluate(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["evaluate"]
    rng = _rng(seed, 703)
    out: list[Any] = []
    gen = generator(_sub_seed(rng))
    n, d, h, c = _n(rng, 20, 50), _n(rng, 4, 10), _n(rng, 8, 20), _n(rng, 2, 6)
    x, y = torch.randn(n, d, generator=gen), torch.randint(0, c, (n,), generator=gen)
    net_seed, dropout = _sub_seed(rng), _u(rng, 0.3, 0.7)
    for training in (True, False):
        net = _net(net_seed, (d, h, c), dropout=dropout)
        logged = _Logged()
        net.append(logged)
        net.train(training)
        value = f(net, nn.CrossEntropyLoss(), x, y)
        loss, acc = value if type(value) in (tuple, list) and len(value) == 2 else (value, None)
        out += [real(loss), real(acc), logged.log, net.training,
                [m.training for m in net.modules()], _params(net), _grads(net),
                torch.is_grad_enabled()]
    return out


def _train_epoch(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["train_epoch"]
    rng = _rng(seed, 704)
    out: list[Any] = []
    gen = generator(_sub_seed(rng))
    n, d, h, c = _n(rng, 30, 60), _n(rng, 4, 10), _n(rng, 4, 8), _n(rng, 2, 5)
    x, y = torch.randn(n, d, generator=gen), torch.randint(0, c, (n,), generator=gen)
    # a batch size that leaves a short last batch (with dropout, two epochs), the
    # whole set, more than the whole set, and one more random one
    small = _n(rng, 3, 12)
    while n % small == 0:
        small += 1
    for batch_size, epochs, dropout in ((small, 2, _u(rng, 0.2, 0.5)), (n, 1, 0.0),
                                        (n + _n(rng, 1, 20), 1, 0.0),
                                        (_n(rng, 4, n // 2), _n(rng, 1, 2), 0.0)):
        net = _net(_sub_seed(rng), (d, h, c), dropout=dropout)
        net.eval()                                  # train_epoch must switch to training
        opt = torch.optim.SGD(net.parameters(), lr=_u(rng, 0.01, 0.1),
                              momentum=_u(rng, 0.5, 0.95))
        order = generator(_sub_seed(rng))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_sub_seed(rng))       # the dropout masks
            for _ in range(epochs):
                losses = f(net, opt, nn.CrossEntropyLoss(), x, y, batch_size=batch_size,
                           generator=order)
                out.append([real(v) for v in losses] if type(losses) is list
                           else type_name(losses))
        out += [_params(net), net.training, order.get_state(), snap(x), snap(y)]
    return out


def _lr_sweep(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["lr_sweep"]
    rng = _rng(seed, 705)
    out: list[Any] = []
    # learning rates in a random order: some diverge (inf), one ends in nan
    lrs = [float(10.0 ** rng.uniform(-3, 0)) for _ in range(_n(rng, 2, 4))]
    lrs += [_u(rng, 1.5, 10.0)]
    lrs = [lrs[int(i)] for i in rng.permutation(len(lrs))]
    nan_lr = lrs[int(rng.integers(len(lrs)))]
    first = _u(rng, 1.0, 10.0)
    for kind in (list, tuple, np.array):
        calls: list[Any] = []
        made: list[nn.Module] = []

        def make_model() -> nn.Module:
            calls.append("model")
            made.append(nn.Linear(2, 1))
            return made[-1]

        def train(model: nn.Module, lr: float) -> Any:
            calls.append(["train", lr, model is made[-1]])   # the model just made
            last = math.nan if lr == nan_lr else (math.inf if lr > 1 else lr)
            return kind([first, lr * 2, last])

        result = f(list(lrs), make_model, train)
        out += [calls, [real(v) for v in result] if type(result) in (list, tuple)
                else type_name(result)]
    out.append(f([], lambda: nn.Linear(1, 1), lambda m, lr: [lr]))
    return out


PROBES = {
    "test_train_step": Probe(_train_step, rtol=1e-6, atol=1e-7),
    "test_accuracy": Probe(_accuracy, rtol=1e-6, atol=1e-7),
    "test_evaluate": Probe(_evaluate, rtol=1e-6, atol=1e-7),
    "test_train_epoch": Probe(_train_epoch, rtol=1e-6, atol=1e-7),
    "test_lr_sweep": Probe(_lr_sweep),
}
