"""Re-verification probes for 07-training.

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

from course.probes._common import generator, real, snap, type_name
from course.verify import Probe

#: Probes use the builtins as they were before the learner's code ran (see
#: course.probes): a patched ``type`` or ``isinstance`` cannot lie to them.
__builtins__ = dict(vars(builtins))  # noqa: A001

FORBIDDEN = ["course.training.train_step", "course.training.accuracy",
             "course.training.evaluate", "course.training.train_epoch",
             "course.training.lr_sweep", "course.training.fit"]


def _net(seed: int, sizes: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """An MLP with fixed weights (drawn from a generator, not the global RNG)."""
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
    out: list[Any] = []
    gen = generator(21)
    x = torch.randn(12, 6, generator=gen)
    y = torch.randint(0, 4, (12,), generator=gen)
    net = _net(8, (6, 5, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.5, nesterov=True)
    for p in net.parameters():                    # a stale gradient from elsewhere
        p.grad = torch.ones_like(p)
    for k in range(4):
        loss = f(net, opt, nn.CrossEntropyLoss(), x[k:], y[k:])
        out += [real(loss), _params(net), _grads(net)]
    net = _net(9, (3, 4, 1))
    rec = _Recording(net.parameters(), lr=0.1)
    xr, yr = torch.randn(5, 3, generator=gen), torch.randn(5, 1, generator=gen)
    for _ in range(3):
        loss = f(net, rec, nn.MSELoss(), xr, yr)
        out += [real(loss), _params(net)]
    out.append(rec.log)                           # one step per call, with this batch's grads
    return out


def _accuracy(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["accuracy"]
    gen = generator(5)
    out: list[Any] = []
    for n, c in ((7, 3), (10, 10), (64, 10), (1, 2), (33, 2), (5, 7)):
        z = torch.randn(n, c, generator=gen)
        t = torch.randint(0, c, (n,), generator=gen)
        out += [real(f(z, t)), snap(z), snap(t)]      # logits and labels unchanged
    out.append(real(f(torch.eye(3), torch.arange(3))))
    out.append(real(f(torch.eye(3), torch.tensor([1, 2, 0]))))
    z = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    out.append(real(f(z, torch.tensor([1, 1, 1, 0]))))
    return out


def _evaluate(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["evaluate"]
    out: list[Any] = []
    gen = generator(6)
    x, y = torch.randn(40, 8, generator=gen), torch.randint(0, 4, (40,), generator=gen)
    for training in (True, False):
        net = _net(3, (8, 16, 4), dropout=0.5)
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
    out: list[Any] = []
    gen = generator(7)
    x, y = torch.randn(50, 8, generator=gen), torch.randint(0, 4, (50,), generator=gen)
    for batch_size, epochs, dropout in ((7, 2, 0.3), (50, 1, 0.0), (64, 1, 0.0), (16, 2, 0.0)):
        net = _net(10 + batch_size, (8, 6, 4), dropout=dropout)
        net.eval()                                  # train_epoch must switch to training
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        order = generator(batch_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)                    # the dropout masks
            for _ in range(epochs):
                losses = f(net, opt, nn.CrossEntropyLoss(), x, y, batch_size=batch_size,
                           generator=order)
                out.append([real(v) for v in losses] if type(losses) is list
                           else type_name(losses))
        out += [_params(net), net.training, order.get_state(), snap(x), snap(y)]
    return out


def _lr_sweep(ns: dict[str, Any], seed: int) -> list[Any]:
    f = ns["lr_sweep"]
    out: list[Any] = []
    for kind in (list, tuple, np.array):
        calls: list[Any] = []
        made: list[nn.Module] = []

        def make_model() -> nn.Module:
            calls.append("model")
            made.append(nn.Linear(2, 1))
            return made[-1]

        def train(model: nn.Module, lr: float) -> Any:
            calls.append(["train", lr, model is made[-1]])   # the model just made
            last = math.inf if lr > 1 else (math.nan if lr == 0.125 else lr)
            return kind([5.0, lr * 2, last])

        result = f([0.5, 2.0, 0.25, 0.125], make_model, train)
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
