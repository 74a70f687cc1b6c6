r"""Exercise specs of 07-training: a training loop around an optimizer.

- ``train_step`` -- ``zero_grad -> forward -> backward -> step``, returning the
  loss *before* the update as a float; the parameters equal torch's bit for bit.
- ``accuracy`` -- the fraction of rows whose arg-max logit is the label.
- ``evaluate`` -- ``(loss, accuracy)`` in eval mode, without an autograd graph,
  leaving the model in the mode it was in.
- ``train_epoch`` -- one shuffled pass of ``train_step`` over mini-batches
  drawn with the given generator; the list of batch losses.
- ``lr_sweep`` -- one run per learning rate, each from a fresh model, keeping
  the final loss (also of diverged runs).

The loops are sequential protocols: each exercise runs through a registered
flow (``call=``) that builds the model, optimizer and data of a case from a
plain recipe, calls the learner's code (the global random state forked), and
records what it did; the observation is plain values (returned numbers,
parameters, gradients, modes, the log of forward passes and of the spies).

Hidden cases are drawn from each verification's seed: data, layer sizes,
initial weights, stale gradients, learning rates and momenta (Nesterov), a
recording optimizer, batch sizes (a short last batch, the whole set, more than
the whole set), epochs, dropout rates and masks, logits and labels (all right,
all wrong, some right), and the learning rates of ``lr_sweep`` (which of them
diverge or end in nan, histories as lists, tuples or arrays).
"""

from __future__ import annotations

import builtins
import copy
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch._dynamo  # loaded now (the first optimizer loads it lazily)
from torch import nn

from course.data import iterate_minibatches, make_classification
from course.exercises.spec import Case, Exercise, Mistake, Question, Run
from course.exercises.values import (
    FLOAT_TYPES,
    INT_TYPES,
    TENSOR_TYPES,
    fmt,
    generator,
    real,
    snap,
    sub_seed,
    type_name,
)
from course.training import make_mlp

#: Observations use the builtins as they were before the learner's code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001

#: The course's answer keys, disabled while a submission is graded (torch's SGD
#: and course.optim.SGD are not: the notebook trains with the latter).
FORBIDDEN = ["course.training.train_step", "course.training.accuracy",
             "course.training.evaluate", "course.training.train_epoch",
             "course.training.lr_sweep", "course.training.fit"]

# torch's own functions, bound before any learner code could patch them
_FORK_RNG = torch.random.fork_rng
_MANUAL_SEED = torch.manual_seed
_GRAD_ENABLED = torch.is_grad_enabled
_SET_GRAD_ENABLED = torch.set_grad_enabled
_DEEPCOPY = copy.deepcopy
_SGD = torch.optim.SGD
_CE = nn.CrossEntropyLoss
_MSE = nn.MSELoss
_TENSOR = torch.Tensor


class _Trace:
    """What a flow saw: the learner's objects (for the rules) and snapshots
    (for the observation)."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def _n(rng: np.random.Generator, low: int, high: int) -> int:
    """An int in [low, high]."""
    return int(rng.integers(low, high + 1))


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _net(seed: int, sizes: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """An MLP (tanh, optional dropout) with weights drawn from a generator."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(itertools.pairwise(sizes)):
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


def _dropout_mlp(seed: int) -> nn.Sequential:
    """The visible cases' classifier 4-8-3 with dropout after its hidden layer."""
    mlp = make_mlp(4, 8, 3, seed=seed)
    return nn.Sequential(mlp[0], mlp[1], nn.Dropout(0.5), mlp[2])


class _Recorded(nn.Module):
    """A model that records, for every forward pass, whether autograd was
    recording and whether it was in training mode."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.calls: list[list[bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append([_GRAD_ENABLED(), self.training])   # raw: exact types only count
        return self.net(x)


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


def _clone(model: nn.Module, opt: Any = None) -> Any:
    """Deep copies of a model (and its optimizer), gradients included."""
    model2, opt2 = _DEEPCOPY((model, opt))
    for p, q in zip(model.parameters(), model2.parameters()):
        q.grad = None if p.grad is None else p.grad.clone()
    return model2 if opt is None else (model2, opt2)


def _params(model: nn.Module) -> list[Any]:
    return [snap(p) for p in model.parameters()]


def _grads(model: nn.Module) -> list[Any]:
    return [snap(p.grad) for p in model.parameters()]


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        type(x) in TENSOR_TYPES and type(y) in TENSOR_TYPES and x.shape == y.shape
        and bool(torch.equal(x, y)) for x, y in zip(a, b))


def _near(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and bool(torch.allclose(x, y, rtol=1e-5, atol=1e-7))
        for x, y in zip(a, b))


def _max_diff(a: list[Any], b: list[Any]) -> float:
    return max((float((x - y).abs().max()) for x, y in zip(a, b) if x.shape == y.shape),
               default=math.inf)


def _is_real(x: Any) -> bool:
    """A real number that is not a tensor, not a bool (numpy floats are ok)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _number(x: Any) -> Any:
    """A returned float as a float; an int as ``["int", value]`` (never equal to
    a float, but telling a count from an integer division); else a type name."""
    if type(x) in FLOAT_TYPES:
        return float(x)
    if type(x) in INT_TYPES:
        return ["int", float(x)]
    return type_name(x)


def _float_problem(value: Any, name: str, what: str, example: str = "return loss.item()",
                   ints: bool = False) -> str | None:
    """Why ``value`` is not the Python float ``name`` should return as ``what``."""
    if value is None:
        return f"`{name}` returned None as {what}.\n  Diagnosis: did you forget `return`?"
    if isinstance(value, _TENSOR):
        extra = (" It still carries an autograd graph (requires_grad=True), which "
                 "keeps every intermediate result of the forward pass in memory."
                 if value.requires_grad else "")
        return (f"`{name}` returned a tensor ({fmt(value)}) as {what}, expected a "
                f"Python float.{extra}\n  Diagnosis: convert with `.item()`, e.g. "
                f"`{example}`.")
    if not _is_real(value) or type(value) not in FLOAT_TYPES + (INT_TYPES if ints else ()):
        return (f"`{name}` returned {type(value).__name__} as {what}, expected a "
                "Python float.")
    return None


def _diagnosed(message: str, hint: str | None) -> str:
    return message + (f"\n  Diagnosis: {hint}" if hint else "")


# --------------------------------------------------------------------------
# Exercise 7.1: train_step
# --------------------------------------------------------------------------

def train_step(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any, y: Any) -> float:
    """One optimisation step (torch's optimizer does the update); the loss before it."""
    optimizer.zero_grad()
    loss = loss_fn(model(X), y)
    loss.backward()
    optimizer.step()
    return loss.item()


_FORGOT_ZERO_GRAD = (
    "the gradients accumulated: backward() ADDS to p.grad, and p.grad still held "
    "the previous batch's gradient, so your step used the sum of both. Call "
    "`optimizer.zero_grad()` first, before the forward pass and backward().")
_ZERO_AFTER_BACKWARD = (
    "the parameters did not move and their .grad is empty: you called "
    "`optimizer.zero_grad()` after `loss.backward()`, which wipes the gradient "
    "before step() can use it. The order is zero_grad -> forward -> backward -> step.")
_NO_STEP = (
    "the parameters did not move although p.grad holds this batch's gradient: "
    "`optimizer.step()` must come AFTER `loss.backward()` (did you call step "
    "before backward, or forget it?).")
_STALE_STEP = (
    "your update used the PREVIOUS gradient that was still in p.grad: you called "
    "`optimizer.step()` before `loss.backward()`. The order is zero_grad -> "
    "forward -> backward -> step.")
_LOSS_AFTER = (
    "you returned the loss AFTER the update (recomputed after step()). Return the "
    "loss of the forward pass, computed before step(): that is the number a "
    "training loop reports, and the number the lesson's snippet prints.")
_GRAD_WIPED = (
    "don't clear or change p.grad after `optimizer.step()`: call "
    "`optimizer.zero_grad()` once, first, before the forward pass.")


def _forgot_zero_grad(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any, y: Any) -> float:
    loss = loss_fn(model(X), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def _zero_grad_after_backward(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any,
                              y: Any) -> float:
    loss = loss_fn(model(X), y)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()


def _step_before_backward(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any,
                          y: Any) -> float:
    optimizer.zero_grad()
    loss = loss_fn(model(X), y)
    optimizer.step()
    loss.backward()
    return loss.item()


def _stale_step(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any, y: Any) -> float:
    optimizer.step()                     # with the gradient still in p.grad
    optimizer.zero_grad()
    loss = loss_fn(model(X), y)
    loss.backward()
    return loss.item()


def _loss_after_update(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any,
                       y: Any) -> float:
    optimizer.zero_grad()
    loss_fn(model(X), y).backward()
    optimizer.step()
    with torch.no_grad():
        return loss_fn(model(X), y).item()


def _regression_visible() -> tuple[Any, ...]:
    gen = generator(7)
    model = make_mlp(10, 5, 1, seed=3)
    batches = [(torch.randn(8, 10, generator=gen), torch.randn(8, 1, generator=gen))
               for _ in range(3)]
    return model, _SGD(model.parameters(), lr=0.01, momentum=0.9), _MSE(), batches


def _classifier_visible() -> tuple[Any, ...]:
    X, y = make_classification(n=40, d=4, n_classes=3, seed=2)
    model = make_mlp(4, 6, 3, seed=5)
    # leftovers of an earlier backward, as after an evaluation with gradients
    nn.functional.cross_entropy(model(X[30:]), y[30:]).backward()
    return (model, _SGD(model.parameters(), lr=0.5), _CE(),
            [(X[:15], y[:15]), (X[15:30], y[15:30])])


def _nesterov_hidden(seed: int, n: int, d: int, h: int, c: int, net_seed: int, lr: float,
                     momentum: float) -> tuple[Any, ...]:
    """Cross-entropy, Nesterov momentum, a stale gradient from elsewhere, 4 steps."""
    gen = generator(seed)
    x = torch.randn(n, d, generator=gen)
    y = torch.randint(0, c, (n,), generator=gen)
    net = _net(net_seed, (d, h, c))
    opt = _SGD(net.parameters(), lr=lr, momentum=momentum, nesterov=True)
    for p in net.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    return net, opt, _CE(), [(x[k:], y[k:]) for k in range(4)]


def _recording_hidden(seed: int, d: int, h: int, m: int, net_seed: int,
                      lr: float) -> tuple[Any, ...]:
    """MSE on one batch, 3 steps of an optimizer that logs the gradients it sees."""
    gen = generator(seed)
    net = _net(net_seed, (d, h, 1))
    rec = _Recording(net.parameters(), lr=lr)
    xr, yr = torch.randn(m, d, generator=gen), torch.randn(m, 1, generator=gen)
    return net, rec, _MSE(), [(xr, yr)] * 3


def _train_step_flow(fn: Any, case: Case) -> _Trace:
    """Build the case's model, optimizer and batches; call ``fn`` on the first
    ``steps`` batches in turn, recording the state before the last call."""
    build, kwargs, steps = case.data
    with _FORK_RNG(devices=[]):
        model, opt, loss_fn, batches = build(**kwargs)
        t = _Trace(values=[], params=[], grads=[], model=model, opt=opt, loss_fn=loss_fn,
                   batch=None, before=None, params_before=None, log=None)
        for k, (X, y) in enumerate(batches[:steps]):
            if k == steps - 1:
                t.batch, t.params_before = (X, y), _params(model)
                try:
                    t.before = _clone(model, opt)
                except Exception:  # noqa: BLE001 - only the diagnoses need it
                    t.before = None
            t.values.append(fn(model, opt, loss_fn, X, y))
            t.params.append(_params(model))
            t.grads.append(_grads(model))
        if type(opt) is _Recording:
            t.log = opt.log
    return t


def _train_step_observe(run: Run) -> list[Any]:
    t = run.result
    out: list[Any] = []
    for value, params, grads in zip(t.values, t.params, t.grads):
        out += [real(value), params, grads]
    if t.log is not None:
        out.append(t.log)                    # one step per call, with this batch's grads
    return out


def _train_step_contract(got: Run, expected: Run) -> str | None:
    """The old check's order: the returned float, the parameters (bit for bit),
    the returned loss."""
    t, e = got.result, expected.result
    value = t.values[-1]
    problem = _float_problem(value, "train_step", "the loss")
    if problem:
        return problem
    mine, want = t.params[-1], e.params[-1]
    if not _same(mine, want):
        return _train_step_params(t, mine, want)
    value, loss = float(value), e.values[-1]
    if value != loss and not math.isclose(value, loss, rel_tol=1e-6):
        X, y = e.batch
        with torch.no_grad():
            after = e.loss_fn(e.model(X), y).item()
        hint = _LOSS_AFTER if math.isclose(value, after, rel_tol=1e-6) else None
        return _diagnosed(f"returned loss: expected {fmt(loss)}, got {fmt(value)}.", hint)
    return None


def _train_step_params(t: _Trace, mine: list[Any], want: list[Any]) -> str:
    """The most specific message for parameters that differ from torch's."""
    if _same(mine, t.params_before):
        grads = [p.grad for p in t.model.parameters()]
        empty = all(g is None or not bool(g.any()) for g in grads)
        return ("the parameters did not change.\n  Diagnosis: "
                + (_ZERO_AFTER_BACKWARD if empty else _NO_STEP))
    if t.before is not None:
        for hint, wrong in ((_FORGOT_ZERO_GRAD, _forgot_zero_grad), (_STALE_STEP, _stale_step)):
            model, opt = _clone(*t.before)
            try:
                with _FORK_RNG(devices=[]):
                    wrong(model, opt, t.loss_fn, *t.batch)
            except Exception:  # noqa: BLE001, S112 - this mistake does not apply here
                continue
            if _same(mine, _params(model)):
                return ("the parameters after your step differ from the reference "
                        f"step.\n  Diagnosis: {hint}")
    if _near(mine, want):
        return ("the parameters agree with the reference to rounding "
                f"(max |diff| = {_max_diff(mine, want):.3g}) but not bit for bit.\n"
                "  Diagnosis: compute the loss exactly as `loss_fn(model(X), y)` and let "
                "`optimizer.step()` do the update (no manual updates, one step per call).")
    return ("the parameters after your step differ from the reference "
            f"(max |diff| = {_max_diff(mine, want):.3g}). Expected, in this order: "
            "optimizer.zero_grad(); loss = loss_fn(model(X), y); loss.backward(); "
            "optimizer.step(); return loss.item().")


def _train_step_grads(got: Run, expected: Run) -> str | None:
    """Parameters and loss right, but p.grad changed after the step."""
    t, e = got.result, expected.result
    if _same(t.params[-1], e.params[-1]) and not all(
            (a is None and b is None) or (a is not None and b is not None and _same([a], [b]))
            for a, b in zip(t.grads[-1], e.grads[-1])):
        return ("the parameters and the returned loss match, but afterwards p.grad "
                "does not hold this batch's gradient (the one step() used).\n"
                f"  Diagnosis: {_GRAD_WIPED}")
    return None


def _train_step_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for _ in range(2):
        yield Case("a random classifier, Nesterov momentum, a stale gradient", data=(
            _nesterov_hidden, {
                "seed": sub_seed(rng), "n": _n(rng, 8, 16), "d": _n(rng, 3, 8), "h": _n(rng, 3, 8),
                "c": _n(rng, 2, 5), "net_seed": sub_seed(rng), "lr": _u(rng, 0.05, 0.3),
                "momentum": _u(rng, 0.3, 0.9)}, 4))
    yield Case("a random regression, an optimizer that logs its steps", data=(
        _recording_hidden, {"seed": sub_seed(rng), "d": _n(rng, 2, 5), "h": _n(rng, 2, 6),
                            "m": _n(rng, 3, 8), "net_seed": sub_seed(rng),
                            "lr": _u(rng, 0.01, 0.2)}, 3))


_REGRESSION = ("regression MLP 10-5-1, MSELoss, SGD(lr=0.01, momentum=0.9), "
               "3 consecutive steps")
_CLASSIFIER = ("classifier 4-6-3, CrossEntropyLoss, SGD(lr=0.5), p.grad already "
               "holds an old gradient")

TRAIN_STEP = Exercise(
    grade_id="test_train_step",
    name="train_step",
    reference=train_step,
    # one case per step: the case of step k runs steps 1..k (the earlier ones passed)
    cases=[Case(f"{_REGRESSION}, step {k}", data=(_regression_visible, {}, k))
           for k in (1, 2, 3)]
    + [Case(f"{_CLASSIFIER}, step {k}", data=(_classifier_visible, {}, k)) for k in (1, 2)],
    call=_train_step_flow,
    observe=_train_step_observe,
    show=lambda run: run.result.values[-1],
    passed="train_step: 5 steps on 2 models (MSE with momentum, cross-entropy) match "
           "torch bit for bit; the returned float is the loss before each update",
    hidden=_train_step_hidden,
    rtol=1e-6, atol=1e-7,
    rules=[_train_step_contract],
    after=[_train_step_grads],
    mistakes=[
        Mistake("grads_not_zeroed", _FORGOT_ZERO_GRAD, _forgot_zero_grad),
        Mistake("zero_grad_after_backward", _ZERO_AFTER_BACKWARD, _zero_grad_after_backward),
        Mistake("step_before_backward", _NO_STEP, _step_before_backward),
        Mistake("loss_after_update", _LOSS_AFTER, _loss_after_update),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 7.2: accuracy
# --------------------------------------------------------------------------

def accuracy(logits: Any, y: Any) -> float:
    """The fraction of rows whose arg-max is the label."""
    return (logits.argmax(dim=1) == y).sum().item() / len(y)


_WRONG_DIM = (
    "you took the arg-max over the wrong dimension. logits has one ROW per "
    "example and one column per class, so the predicted class of each example is "
    "`logits.argmax(dim=1)` (dim=0 picks, for each class, the example with the "
    "largest score).")


def _accuracy_observe(run: Run) -> list[Any]:
    return [_number(run.result), snap(run.args[0]), snap(run.args[1])]


def _accuracy_contract(got: Run, expected: Run) -> str | None:
    problem = _float_problem(got.result, "accuracy", "the accuracy",
                             "return (...).float().mean().item()", ints=True)
    if problem:
        return problem
    (logits, y), (logits_in, y_in) = got.case.args, got.args
    if not (type(logits_in) in TENSOR_TYPES and type(y_in) in TENSOR_TYPES
            and logits_in.shape == logits.shape and y_in.shape == y.shape
            and torch.equal(logits_in, logits) and torch.equal(y_in, y)):
        return ("your `accuracy` changed its inputs in place. Compute the "
                "predictions without modifying logits or y (no in-place `_` ops).")
    return None


def _accuracy_int(got: Run, expected: Run) -> str | None:
    """The right value, returned as an int."""
    if type(got.result) in INT_TYPES and float(got.result) == expected.result:
        return (f"`accuracy` returned {type(got.result).__name__} as the accuracy, "
                "expected a Python float.")
    return None


def _accuracy_cases() -> list[Case]:
    gen = generator(11)
    big = torch.randn(50, 10, generator=gen)
    big_y = torch.randint(0, 10, (50,), generator=gen)
    return [
        Case("5 examples, 3 classes", (
            torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-1.0, 0.0, 3.0],
                          [1.0, 2.0, 0.0], [0.5, -0.5, 1.5]]), torch.tensor([0, 1, 2, 2, 0]))),
        Case("3 examples, 3 classes (square logits)", (
            torch.tensor([[0.0, 5.0, 1.0], [4.0, 1.0, 2.0], [3.0, 2.0, 0.5]]),
            torch.tensor([1, 0, 0]))),
        Case("50 examples, 10 classes", (big, big_y)),
        Case("all 5 correct", (torch.eye(5) * 3.0, torch.arange(5))),
        Case("none correct", (torch.eye(4), torch.tensor([1, 2, 3, 0]))),
    ]


def _accuracy_hidden(rng: np.random.Generator) -> Iterator[Case]:
    gen = generator(sub_seed(rng))
    sizes = [(1, 2), (_n(rng, 2, 40), 2), (_n(rng, 2, 12), _n(rng, 3, 12)),
             (_n(rng, 40, 80), 10), (_n(rng, 2, 9), _n(rng, 5, 9)), (_n(rng, 5, 15), 10)]
    for n, c in sizes:
        yield Case("random logits", (torch.randn(n, c, generator=gen),
                                     torch.randint(0, c, (n,), generator=gen)))
    k = _n(rng, 2, 7)
    perm = torch.randperm(k, generator=gen)
    yield Case("all correct", (torch.eye(k), torch.arange(k)))
    yield Case("none correct", (torch.eye(k), (torch.arange(k) + 1) % k))
    yield Case("some correct", (torch.eye(k)[perm], torch.arange(k)))


ACCURACY = Exercise(
    grade_id="test_accuracy",
    name="accuracy",
    reference=accuracy,
    cases=_accuracy_cases(),
    observe=_accuracy_observe,
    show=lambda run: float(run.result) if _is_real(run.result) else run.result,
    passed="accuracy: 5 cases give the fraction of rows whose argmax(dim=1) equals "
           "the label, as a float",
    hidden=_accuracy_hidden,
    rtol=1e-6, atol=1e-7,
    rules=[_accuracy_contract],
    after=[_accuracy_int],
    on_error=lambda case, exc: _WRONG_DIM if "must match the size of tensor" in str(exc)
    else None,
    mistakes=[
        Mistake("argmax_wrong_dim", _WRONG_DIM,
                lambda logits, y: (logits.argmax(dim=0) == y).float().mean().item()),
        Mistake("percentage", "you returned a percentage; return a fraction between 0 "
                "and 1 (drop the `* 100`).",
                lambda logits, y: 100 * (logits.argmax(dim=1) == y).float().mean().item()),
        Mistake("count", "you returned the NUMBER of correct predictions; divide by the "
                "number of examples, len(y).",
                lambda logits, y: (logits.argmax(dim=1) == y).sum().item()),
        Mistake("integer_division", "you used integer division `//`; use `/` to get a "
                "fraction.", lambda logits, y: (logits.argmax(dim=1) == y).sum().item() // len(y)),
        Mistake("error_rate", "you returned the error rate (the fraction of MISTAKES); "
                "accuracy counts the predictions that equal the label.",
                lambda logits, y: 1 - (logits.argmax(dim=1) == y).float().mean().item()),
        Mistake("argmin", "use argmax, not argmin: the predicted class has the LARGEST "
                "logit.", lambda logits, y: (logits.argmin(dim=1) == y).float().mean().item()),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 7.3: evaluate
# --------------------------------------------------------------------------

def evaluate(model: nn.Module, loss_fn: Any, X: Any, y: Any) -> tuple[float, float]:
    """(loss, accuracy) in eval mode under no_grad, the model's mode restored."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(X)
        out = loss_fn(logits, y).item(), accuracy(logits, y)
    model.train(was_training)
    return out


_FORGOT_EVAL = "call `model.eval()` before `model(X)`."
_FORGOT_NO_GRAD = "wrap it in `with torch.no_grad():`."
_LEFT_IN_EVAL = ("remember `was_training = model.training` before `model.eval()` and "
                 "restore it at the end with `model.train(was_training)`.")
_ALWAYS_TRAIN = ("restore the mode it HAD, `model.train(was_training)`, instead of an "
                 "unconditional `model.train()`.")
_SWAPPED = "you returned (accuracy, loss); the order is (loss, accuracy)."
_PERCENT = "the accuracy is a percentage; return a fraction in [0, 1]."


def _evaluate_visible(seed: int, n: int, data_seed: int, training: bool) -> tuple[Any, ...]:
    X, y = make_classification(n=n, d=4, n_classes=3, seed=data_seed)
    model = _Recorded(_dropout_mlp(seed))
    model.train(training)
    return model, X, y


def _evaluate_hidden_model(seed: int, n: int, d: int, h: int, c: int, net_seed: int,
                           dropout: float, training: bool) -> tuple[Any, ...]:
    gen = generator(seed)
    X, y = torch.randn(n, d, generator=gen), torch.randint(0, c, (n,), generator=gen)
    model = _Recorded(_net(net_seed, (d, h, c), dropout=dropout))
    model.train(training)
    return model, X, y


def _evaluate_flow(fn: Any, case: Case) -> _Trace:
    build, kwargs = case.data
    with _FORK_RNG(devices=[]):
        model, X, y = build(**kwargs)
        was_training, params_before = model.training, _params(model)
        grad_before = _GRAD_ENABLED()
        try:
            out = fn(model, _CE(), X, y)
        finally:
            grad_after = _GRAD_ENABLED()
            _SET_GRAD_ENABLED(grad_before)
    return _Trace(out=out, model=model, was_training=was_training,
                  params_before=params_before, grad_after=grad_after,
                  calls=[list(c) for c in model.calls],
                  modes=[m.training for m in model.modules()],
                  params=_params(model), grads=_grads(model))


def _pair(out: Any) -> tuple[Any, Any]:
    if type(out) in (tuple, list) and len(out) == 2:
        return out[0], out[1]
    return out, None


def _evaluate_observe(run: Run) -> list[Any]:
    t = run.result
    loss, acc = _pair(t.out)
    return [real(loss), real(acc), t.calls, t.model.training, t.modes, t.params,
            t.grads, t.grad_after]


def _evaluate_show(run: Run) -> Any:
    out = run.result.out
    if isinstance(out, (tuple, list)) and len(out) == 2 and all(_is_real(v) for v in out):
        return (float(out[0]), float(out[1]))
    return out


def _evaluate_contract(got: Run, expected: Run) -> str | None:
    t, name = got.result, "evaluate"
    out = t.out
    if out is None:
        return f"`{name}` returned None.\n  Diagnosis: did you forget `return loss, acc`?"
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return (f"`{name}` should return a pair (loss, accuracy), got "
                f"{type(out).__name__}: {fmt(out)}.")
    problem = (_float_problem(out[0], name, "the loss")
               or _float_problem(out[1], name, "the accuracy", "acc = accuracy(logits, y)"))
    if problem:
        return problem
    if not t.calls:
        return "`evaluate` never called the model: compute `logits = model(X)`."
    if any(training for _, training in t.calls):
        return ("the forward pass ran in TRAINING mode, so dropout zeroed half of the "
                "hidden units at random and the loss is noisy.\n  Diagnosis: "
                + _FORGOT_EVAL)
    if any(grad for grad, _ in t.calls):
        return ("the forward pass ran with autograd recording, so it built a graph "
                "(memory and time) that evaluation never uses.\n  Diagnosis: "
                + _FORGOT_NO_GRAD)
    if any(p.grad is not None for p in t.model.parameters()):
        return ("after `evaluate` the parameters have gradients: evaluation must not "
                "call backward().")
    if not _same(t.params, t.params_before):
        return "`evaluate` changed the model's weights; it must only measure them."
    if t.model.training != t.was_training:
        if t.was_training:
            return ("the model was in training mode and your `evaluate` left it in eval "
                    "mode, so the next epoch would train without dropout.\n  Diagnosis: "
                    + _LEFT_IN_EVAL)
        return ("the model was in eval mode and your `evaluate` switched it to training "
                "mode.\n  Diagnosis: " + _ALWAYS_TRAIN)
    if not t.grad_after:
        return ("after `evaluate` autograd is still switched off for everything that "
                "follows.\n  Diagnosis: use `with torch.no_grad():`, which switches it "
                "back on at the end of the block.")
    return None


def _evaluate_hidden(rng: np.random.Generator) -> Iterator[Case]:
    kwargs = {"seed": sub_seed(rng), "n": _n(rng, 20, 50), "d": _n(rng, 4, 10), "h": _n(rng, 8, 20),
                  "c": _n(rng, 2, 6), "net_seed": sub_seed(rng), "dropout": _u(rng, 0.3, 0.7)}
    for training in (True, False):
        mode = "training" if training else "eval"
        yield Case(f"a random classifier with dropout, in {mode} mode",
                   data=(_evaluate_hidden_model, dict(kwargs, training=training)))


def _no_eval(model: nn.Module, loss_fn: Any, X: Any, y: Any) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(X)
        return loss_fn(logits, y).item(), accuracy(logits, y)


def _no_no_grad(model: nn.Module, loss_fn: Any, X: Any, y: Any) -> tuple[float, float]:
    was = model.training
    model.eval()
    logits = model(X)
    out = loss_fn(logits, y).item(), accuracy(logits, y)
    model.train(was)
    return out


def _stays_eval(model: nn.Module, loss_fn: Any, X: Any, y: Any) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(X)
        return loss_fn(logits, y).item(), accuracy(logits, y)


def _always_train(model: nn.Module, loss_fn: Any, X: Any, y: Any) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(X)
        out = loss_fn(logits, y).item(), accuracy(logits, y)
    model.train()
    return out


def _percent(model: nn.Module, loss_fn: Any, X: Any, y: Any) -> tuple[float, float]:
    loss, acc = evaluate(model, loss_fn, X, y)
    return loss, 100 * acc


EVALUATE = Exercise(
    grade_id="test_evaluate",
    name="evaluate",
    reference=evaluate,
    cases=[
        Case("classifier with dropout, in training mode, 30 examples",
             data=(_evaluate_visible, {"seed": 1, "n": 30, "data_seed": 4, "training": True})),
        Case("classifier with dropout, already in eval mode, 17 examples",
             data=(_evaluate_visible, {"seed": 2, "n": 17, "data_seed": 9, "training": False})),
    ],
    call=_evaluate_flow,
    observe=_evaluate_observe,
    show=_evaluate_show,
    passed="evaluate: 2 cases return (loss, accuracy) as floats, computed in eval mode "
           "under torch.no_grad(), model mode restored, weights untouched",
    hidden=_evaluate_hidden,
    rtol=1e-6, atol=1e-7,
    rules=[_evaluate_contract],
    mistakes=[
        Mistake("forgot_eval", _FORGOT_EVAL, _no_eval),
        Mistake("forgot_no_grad", _FORGOT_NO_GRAD, _no_no_grad),
        Mistake("left_in_eval_mode", _LEFT_IN_EVAL, _stays_eval),
        Mistake("unconditional_train", _ALWAYS_TRAIN, _always_train),
        Mistake("swapped", _SWAPPED, lambda *a: evaluate(*a)[::-1]),
        Mistake("percentage", _PERCENT, _percent),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 7.4: train_epoch
# --------------------------------------------------------------------------

def train_epoch(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any, y: Any, *,
                batch_size: int, generator: Any) -> list[float]:
    """model.train(), then train_step on each mini-batch of a shuffled pass."""
    model.train()
    return [train_step(model, optimizer, loss_fn, xb, yb)
            for xb, yb in iterate_minibatches(X, y, batch_size, generator=generator)]


_HINT_TRAIN_STEP = ("(train_epoch calls your train_step: make sure "
                    "check_train_step(train_step) passes first.)")
_FORGOT_TRAIN = "call `model.train()` at the start of the epoch."
_NO_SHUFFLE = ("the batches came in the original order: shuffle them with the given "
               "generator, `iterate_minibatches(X, y, batch_size, generator=generator)`.")
_OWN_GENERATOR = ("you shuffled with a generator of your own (seed 0) instead of the "
                  "`generator` argument; pass `generator=generator`, so the caller decides "
                  "the order and a second epoch gets a new one.")
_FULL_BATCH = ("you trained on the whole data set in one batch: loop over "
               "`iterate_minibatches(X, y, batch_size, generator=generator)`.")
_DROP_LAST = ("you dropped the last, smaller batch; keep it (drop_last=False): every "
              "example is used once per epoch.")


def _no_model_train(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any, y: Any, *,
                    batch_size: int, generator: Any) -> list[float]:
    return [train_step(model, optimizer, loss_fn, xb, yb)
            for xb, yb in iterate_minibatches(X, y, batch_size, generator=generator)]


def _unshuffled(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any, y: Any, *,
                batch_size: int, generator: Any) -> list[float]:
    model.train()
    return [train_step(model, optimizer, loss_fn, X[i:i + batch_size], y[i:i + batch_size])
            for i in range(0, len(X), batch_size)]


def _own_generator(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any, y: Any, *,
                   batch_size: int, generator: Any) -> list[float]:
    return train_epoch(model, optimizer, loss_fn, X, y, batch_size=batch_size,
                       generator=torch.Generator().manual_seed(0))


def _full_batch(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any, y: Any, *,
                batch_size: int, generator: Any) -> list[float]:
    model.train()
    return [train_step(model, optimizer, loss_fn, X, y)]


def _drop_last(model: nn.Module, optimizer: Any, loss_fn: Any, X: Any, y: Any, *,
               batch_size: int, generator: Any) -> list[float]:
    model.train()
    return [train_step(model, optimizer, loss_fn, xb, yb)
            for xb, yb in iterate_minibatches(X, y, batch_size, generator=generator,
                                              drop_last=True)]


def _epoch_visible(n: int, batch_size: int, seed: int, start_eval: bool) -> tuple[Any, ...]:
    X, y = make_classification(n=n, d=4, n_classes=3, seed=seed)
    model = _Recorded(_dropout_mlp(seed))
    if start_eval:
        model.eval()
    opt = _SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, opt, X, y, batch_size, torch.Generator().manual_seed(seed), 1234


def _epoch_hidden(seed: int, n: int, d: int, h: int, c: int, net_seed: int, dropout: float,
                  batch_size: int, lr: float, momentum: float, order_seed: int,
                  dropout_seed: int) -> tuple[Any, ...]:
    gen = generator(seed)
    X, y = torch.randn(n, d, generator=gen), torch.randint(0, c, (n,), generator=gen)
    model = _Recorded(_net(net_seed, (d, h, c), dropout=dropout))
    model.eval()                                  # train_epoch must switch to training
    opt = _SGD(model.parameters(), lr=lr, momentum=momentum)
    return model, opt, X, y, batch_size, generator(order_seed), dropout_seed


def _train_epoch_flow(fn: Any, case: Case) -> _Trace:
    """Build the case; run ``epochs`` epochs of ``fn`` with one generator, the
    dropout masks drawn from a seeded (forked) global generator."""
    build, kwargs, epochs = case.data
    with _FORK_RNG(devices=[]):
        model, opt, X, y, batch_size, order, dropout_seed = build(**kwargs)
        _MANUAL_SEED(dropout_seed)
        outs = [fn(model, opt, _CE(), X, y, batch_size=batch_size, generator=order)
                for _ in range(epochs)]
    return _Trace(outs=outs, model=model, n=len(X), batch_size=batch_size,
                  calls=[list(c) for c in model.calls], params=_params(model),
                  training=model.training, order=snap(order.get_state()),
                  X=snap(X), y=snap(y))


def _train_epoch_observe(run: Run) -> list[Any]:
    t = run.result
    out: list[Any] = [[real(v) for v in losses] if type(losses) is list else type_name(losses)
                      for losses in t.outs]
    return out + [t.params, t.training, t.order, t.X, t.y]


def _train_epoch_contract(got: Run, expected: Run) -> str | None:
    """The last epoch of the case (the earlier ones passed in earlier cases)."""
    t, e = got.result, expected.result
    want = [float(v) for v in e.outs[-1]]
    problem = _loss_list_problem(t.outs[-1], want, t.n, t.batch_size)
    if problem:
        return problem
    if any(not training for _, training in t.calls):
        return ("some batches were trained with the model in EVAL mode (dropout off), "
                "because evaluate()/model.eval() had switched it.\n  Diagnosis: "
                + _FORGOT_TRAIN)
    mine = [float(v) for v in t.outs[-1]]
    if mine != want:
        return _epoch_mismatch(got.case, mine, want)
    if not _same(t.params, e.params):
        return ("the batch losses match but the final parameters differ from the "
                f"reference (max |diff| = {_max_diff(t.params, e.params):.3g}). "
                + _HINT_TRAIN_STEP)
    return None


def _loss_list_problem(out: Any, want: list[float], n: int, batch_size: int) -> str | None:
    """Why ``out`` is not the list of the epoch's batch losses (floats)."""
    name = "train_epoch"
    if out is None:
        return f"`{name}` returned None.\n  Diagnosis: did you forget `return losses`?"
    if _is_real(out) or (isinstance(out, _TENSOR) and out.ndim == 0):
        value = float(out)
        hints = [("the mean", sum(want) / len(want)), ("the sum", sum(want)),
                 ("the last batch's loss", want[-1])]
        what = next((w for w, v in hints if math.isclose(value, v, rel_tol=1e-6)),
                    "a single number")
        return (f"`{name}` returned {what} ({fmt(value)}); return the LIST of the "
                f"{len(want)} batch losses, one per train_step, in order.")
    if type(out) is not list:
        return f"`{name}` should return a list of floats, got {type(out).__name__}."
    if len(out) != len(want):
        if len(out) == 1:
            hint = _FULL_BATCH
        elif len(out) == n // batch_size:
            hint = _DROP_LAST
        else:
            hint = "one train_step per mini-batch of batch_size examples."
        return (f"expected {len(want)} batch losses (ceil({n} / {batch_size})), got "
                f"{len(out)}.\n  Diagnosis: {hint}")
    for i, v in enumerate(out):
        if type(v) not in FLOAT_TYPES:
            return (f"batch loss {i} is a {type(v).__name__}, expected a float. "
                    + _HINT_TRAIN_STEP)
    return None


def _epoch_mismatch(case: Case, mine: list[float], want: list[float]) -> str:
    first = next(i for i, (a, b) in enumerate(zip(mine, want)) if a != b)
    for hint, wrong in ((_NO_SHUFFLE, _unshuffled), (_OWN_GENERATOR, _own_generator)):
        out = _train_epoch_flow(wrong, case).outs[-1]
        if [float(v) for v in out] == mine:
            return f"the batch losses differ from the reference.\n  Diagnosis: {hint}"
    msg = f"batch loss {first} is {fmt(mine[first])}, expected {fmt(want[first])}."
    if first == 0:
        msg += ("\n  Diagnosis: the first batch already differs: the order of the "
                "examples must be `torch.randperm(len(X), generator=generator)`, as in "
                "`iterate_minibatches(X, y, batch_size, generator=generator)`.")
    return msg + " " + _HINT_TRAIN_STEP


def _train_epoch_hidden(rng: np.random.Generator) -> Iterator[Case]:
    seed = sub_seed(rng)
    n, d, h, c = _n(rng, 30, 60), _n(rng, 4, 10), _n(rng, 4, 8), _n(rng, 2, 5)
    # a batch size that leaves a short last batch (with dropout, two epochs), the
    # whole set, more than the whole set, and one more random one
    small = _n(rng, 3, 12)
    while n % small == 0:
        small += 1
    for batch_size, epochs, dropout, what in (
            (small, 2, _u(rng, 0.2, 0.5), "a short last batch, dropout, two epochs"),
            (n, 1, 0.0, "the whole set in one batch"),
            (n + _n(rng, 1, 20), 1, 0.0, "a batch size larger than the set"),
            (_n(rng, 4, n // 2), _n(rng, 1, 2), 0.0, "a random batch size")):
        yield Case(f"a random classifier, {what}", data=(_epoch_hidden, {
            "seed": seed, "n": n, "d": d, "h": h, "c": c, "net_seed": sub_seed(rng),
            "dropout": dropout, "batch_size": batch_size, "lr": _u(rng, 0.01, 0.1),
            "momentum": _u(rng, 0.5, 0.95), "order_seed": sub_seed(rng),
            "dropout_seed": sub_seed(rng)}, epochs))


_TWO_EPOCHS = "30 examples, batch_size=10, generator seed 11, two epochs with the same generator"

TRAIN_EPOCH = Exercise(
    grade_id="test_train_epoch",
    name="train_epoch",
    reference=train_epoch,
    cases=[Case("26 examples, batch_size=8, generator seed 5, model in eval mode at the start",
                data=(_epoch_visible,
                      {"n": 26, "batch_size": 8, "seed": 5, "start_eval": True}, 1))]
    + [Case(f"{_TWO_EPOCHS}, epoch {k}",
            data=(_epoch_visible, {"n": 30, "batch_size": 10, "seed": 11, "start_eval": False}, k))
       for k in (1, 2)],
    call=_train_epoch_flow,
    observe=_train_epoch_observe,
    show=lambda run: run.result.outs[-1],
    passed="train_epoch: 2 cases (3 epochs) match the reference batch losses and final "
           "weights exactly: model.train(), shuffled by your generator, one train_step "
           "per mini-batch",
    hidden=_train_epoch_hidden,
    rtol=1e-6, atol=1e-7,
    rules=[_train_epoch_contract],
    mistakes=[
        Mistake("forgot_model_train", _FORGOT_TRAIN, _no_model_train),
        Mistake("not_shuffled", _NO_SHUFFLE, _unshuffled),
        Mistake("own_generator", _OWN_GENERATOR, _own_generator),
        Mistake("full_batch", _FULL_BATCH, _full_batch),
        Mistake("dropped_last_batch", _DROP_LAST, _drop_last),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 7.5: lr_sweep
# --------------------------------------------------------------------------

def lr_sweep(lrs: Any, make_model: Callable[[], nn.Module],
             train: Callable[[nn.Module, float], Any]) -> list[float]:
    """The final loss of train(make_model(), lr) for each lr, as floats."""
    return [float(train(make_model(), lr)[-1]) for lr in lrs]


_BUILT_ONCE = ("build a FRESH model for every lr, inside the loop (`model = "
               "make_model()`); reusing one model makes each run continue from the "
               "previous run's weights, so the runs are not compared from the same start.")
_DROPPED = ("you dropped the diverged runs (nan/inf). Keep them, so the list lines up "
            "with lrs; plot_lr_sweep leaves them out of the line.")


def _ends(what: str) -> str:
    return (f"you returned {what}; a sweep compares where the runs END: return "
            "history[-1].")


class _Spies:
    """``make_model`` and ``train`` for one sweep; they record every call.

    ``spy`` is ``("train", steps)``: a tiny full-batch regression trained with
    torch's SGD (diverging for large lrs), or ``("synthetic", kind, first,
    nan_lr)``: a history ``kind([first, 2 lr, last])`` whose last value is nan
    for ``nan_lr``, inf for lr > 1, else lr.
    """

    def __init__(self, spy: tuple[Any, ...]) -> None:
        self.spy = spy
        self.calls: list[Any] = []
        self.made: list[nn.Module] = []
        self.trained: list[nn.Module] = []
        self.lrs: list[Any] = []
        self.reused = False

    def make_model(self) -> nn.Module:
        self.calls.append("model")
        model = make_mlp(3, 4, 1, seed=0) if self.spy[0] == "train" else nn.Linear(2, 1)
        self.made.append(model)
        return model

    def train(self, model: nn.Module, lr: float) -> Any:
        self.calls.append(["train", lr, bool(self.made) and model is self.made[-1]])
        self.reused = self.reused or any(model is m for m in self.trained)
        self.trained.append(model)
        self.lrs.append(lr)
        if self.spy[0] == "synthetic":
            _, kind, first, nan_lr = self.spy
            last = math.nan if lr == nan_lr else (math.inf if lr > 1 else lr)
            values = [first, lr * 2, last]
            return {"list": list, "tuple": tuple, "array": np.array}[kind](values)
        gen = generator(3)
        X = torch.randn(12, 3, generator=gen)
        y = X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1
        opt, losses = _SGD(model.parameters(), lr=lr), []
        for _ in range(self.spy[1]):      # not the reference train_step: it is an answer
            opt.zero_grad()               # key, neutralized while a submission is graded
            loss = _MSE()(model(X), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses


def _lr_sweep_flow(fn: Any, case: Case) -> _Trace:
    spies, lrs = _Spies(case.data), list(case.args[0])
    with _FORK_RNG(devices=[]):
        out = fn(case.args[0], spies.make_model, spies.train)
    return _Trace(out=out, spies=spies, lrs=lrs)


def _lr_sweep_observe(run: Run) -> list[Any]:
    out = run.result.out
    return [run.result.spies.calls,
            [real(v) for v in out] if type(out) in (list, tuple) else type_name(out)]


def _lr_sweep_show(run: Run) -> Any:
    out = run.result.out
    try:
        return np.array([float(v) for v in out])
    except (TypeError, ValueError):
        return out


def _lr_sweep_contract(got: Run, expected: Run) -> str | None:
    t, e, name = got.result, expected.result, "lr_sweep"
    out, spies, lrs = t.out, t.spies, t.lrs
    if out is None:
        return f"`{name}` returned None.\n  Diagnosis: did you forget `return`?"
    if lrs and not spies.trained:
        return f"`{name}` never called train(model, lr)."
    if spies.reused:
        return ("`train` received a model that had already been trained (make_model was "
                f"called {len(spies.made)} time(s) for {len(lrs)} learning rates).\n"
                f"  Diagnosis: {_BUILT_ONCE}")
    if not all(c[2] for c in spies.calls if type(c) is list):
        return ("`train` received a model that `make_model()` did not just build.\n"
                "  Diagnosis: call `train(make_model(), lr)`: a new model per lr, "
                "trained right away.")
    if spies.lrs != lrs:
        return (f"train was called with the learning rates {spies.lrs}, expected {lrs}: "
                "one run per lr, in the order given.")
    if isinstance(out, dict):
        return (f"`{name}` returned a dict; return a list of final losses in the order "
                "of lrs.")
    if type(out) not in (list, tuple):
        return f"`{name}` should return a list of floats, got {type(out).__name__}."
    want = e.out
    if out and all(isinstance(v, (list, tuple)) or (
            isinstance(v, (np.ndarray, _TENSOR)) and v.ndim > 0) for v in out):
        return (f"`{name}` returned whole loss histories; return one number per lr, the "
                "LAST loss of each run: history[-1].")
    if len(out) != len(want):
        finite = [v for v in want if math.isfinite(v)]
        return _diagnosed(f"number of final losses: expected {len(want)}, got {len(out)}.",
                          _DROPPED if len(out) == len(finite) else None)
    for i, v in enumerate(out):
        if type(v) not in FLOAT_TYPES:
            return (f"final loss {i} is a {type(v).__name__}, expected a float (use "
                    "float(...)).")
    return None


def _lr_sweep_hidden(rng: np.random.Generator) -> Iterator[Case]:
    # learning rates in a random order: some diverge (inf), one ends in nan
    lrs = [float(10.0 ** rng.uniform(-3, 0)) for _ in range(_n(rng, 2, 4))]
    lrs += [_u(rng, 1.5, 10.0)]
    lrs = [lrs[int(i)] for i in rng.permutation(len(lrs))]
    nan_lr = lrs[int(rng.integers(len(lrs)))]
    first = _u(rng, 1.0, 10.0)
    for kind in ("list", "tuple", "array"):
        yield Case(f"random lrs, histories as {kind}s", (lrs,),
                   data=("synthetic", kind, first, nan_lr))


def _built_once(lrs: Any, make_model: Any, train: Any) -> list[float]:
    model = make_model()
    return [float(train(model, lr)[-1]) for lr in lrs]


def _dropped_diverged(lrs: Any, make_model: Any, train: Any) -> list[float]:
    return [v for v in lr_sweep(lrs, make_model, train) if math.isfinite(v)]


LR_SWEEP = Exercise(
    grade_id="test_lr_sweep",
    name="lr_sweep",
    reference=lr_sweep,
    cases=[Case("lrs = [0.01, 0.03, 0.1]", ([0.01, 0.03, 0.1],), data=("train", 8)),
           Case("lrs = [0.3, 0.001, 3.0, 30.0] (the last runs diverge)",
                ([0.3, 0.001, 3.0, 30.0],), data=("train", 8)),
           Case("lrs = [] (no runs)", ([],), data=("train", 8))],
    call=_lr_sweep_flow,
    observe=_lr_sweep_observe,
    show=_lr_sweep_show,
    passed="lr_sweep: 3 sweeps (one empty), every lr trained from a fresh model, final "
           "losses match (diverged runs kept as nan/inf)",
    hidden=_lr_sweep_hidden,
    rules=[_lr_sweep_contract],
    mistakes=[
        Mistake("model_built_once", _BUILT_ONCE, _built_once),
        Mistake("dropped_diverged", _DROPPED, _dropped_diverged),
        Mistake("best_loss", _ends("the best (lowest) loss of each run"),
                lambda lrs, mm, tr: [min(tr(mm(), lr)) for lr in lrs]),
        Mistake("mean_loss", _ends("the mean loss of each run"),
                lambda lrs, mm, tr: [float(np.mean(tr(mm(), lr))) for lr in lrs]),
        Mistake("first_loss", _ends("the FIRST loss of each run (before any training)"),
                lambda lrs, mm, tr: [float(tr(mm(), lr)[0]) for lr in lrs]),
    ],
    forbidden=FORBIDDEN,
)



# ----------------------------------------------------------------- predict, then run

#: Module-level functions that compute right answers (besides the questions'
#: answers): neutralized in the grading child (course.grading.probes.answer_keys).
ANSWER_KEYS = ["_snippet_weights", "_untrained_val_loss"]

#: The choices of PREDICT_MOMENTUM_FIRST_STEP.
FIRST_STEP = ("bit-identical", "different")


def _snippet_weights(momentum: float, steps: int) -> list[torch.Tensor]:
    """The snippet's model (seed 0, 16 examples, lr = 0.01) after ``steps``
    full-batch steps of torch.optim.SGD with this momentum."""
    with _FORK_RNG(devices=[]):
        _MANUAL_SEED(0)
        model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1))
        inputs, targets = torch.randn(16, 10), torch.randn(16, 1)
        optimizer = _SGD(model.parameters(), lr=0.01, momentum=momentum)
        for _ in range(steps):
            optimizer.zero_grad()
            _MSE()(model(inputs), targets).backward()
            optimizer.step()
        return [p.detach().clone() for p in model.parameters()]


def _first_step_answer() -> str:
    same = all(torch.equal(a, b) for a, b in zip(_snippet_weights(0.9, 1),
                                                 _snippet_weights(0.0, 1)))
    return FIRST_STEP[0] if same else FIRST_STEP[1]


PREDICT_MOMENTUM_FIRST_STEP = Question(
    grade_id="test_predict_momentum_first_step",
    name="predict_momentum_first_step",
    answer=_first_step_answer,
    choices=FIRST_STEP,
    why=("torch starts the momentum buffer at the gradient, b_1 = g_1 (lesson 4), so the "
         "first step is θ_1 = θ_0 - η g_1 whatever β is: the same operations on the same "
         "numbers, bit for bit. From the second step on, b_2 = β b_1 + g_2 differs."),
)


def _untrained_val_loss() -> float:
    """Cross-entropy of make_mlp(64, 32, 10, seed=0) on the digits' validation set."""
    from course.data import load_digits

    data = load_digits()
    with _FORK_RNG(devices=[]), torch.no_grad():
        model = make_mlp(64, 32, 10, seed=0)
        return float(_CE()(model(data.X_val), data.y_val))


PREDICT_UNTRAINED_LOSS = Question(
    grade_id="test_predict_untrained_loss",
    name="predict_untrained_loss",
    answer=_untrained_val_loss,
    atol=0.25,
    why=("the default initial weights give logits that differ by only a few tenths, so the "
         "softmax gives every class a probability near 1/10 and each example costs about "
         "-log(1/10) = ln 10 ≈ 2.30. Logits unrelated to the labels can only raise the "
         "average (log-sum-exp is at least the mean logit + ln 10): 2.36 here. A loss far "
         "from ln 10 before training points to a bug (labels, loss, or the last layer)."),
)


#: The graded cells, in notebook order.
EXERCISES = [PREDICT_MOMENTUM_FIRST_STEP, TRAIN_STEP, ACCURACY, EVALUATE,
             PREDICT_UNTRAINED_LOSS, TRAIN_EPOCH, LR_SWEEP]
