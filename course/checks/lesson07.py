r"""Checks for lesson 07-training.

The exercises build a training loop around an optimizer:

- :func:`check_train_step` -- ``zero_grad -> forward -> backward -> step``,
  returning the loss *before* the update as a float; the parameters must
  equal ``torch.optim.SGD``'s bit for bit.
- :func:`check_accuracy` -- the fraction of rows whose arg-max logit is the
  label.
- :func:`check_evaluate` -- ``(loss, accuracy)`` in eval mode, without an
  autograd graph, leaving the model in the mode it was in.
- :func:`check_train_epoch` -- one shuffled pass of ``train_step`` over
  mini-batches drawn with the given generator; the list of batch losses.
- :func:`check_lr_sweep` -- one run per learning rate, each from a fresh
  model, keeping the final loss (also of diverged runs).

Every check runs the learner's code on small seeded problems and compares
with the reference implementations in :mod:`course.training`, exactly
(``torch.equal``) where the computation is deterministic. The global random
state is saved and restored around each check.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from course.checks._common import (
    CheckFailure,
    call,
    close,
    fmt,
    learner_code,
    mismatch,
    passed,
    require_function,
)
from course.data import make_classification
from course.training import (
    accuracy as ref_accuracy,
    evaluate as ref_evaluate,
    lr_sweep as ref_lr_sweep,
    make_mlp,
    train_epoch as ref_train_epoch,
    train_step as ref_train_step,
)

__all__ = [
    "check_train_step",
    "check_accuracy",
    "check_evaluate",
    "check_train_epoch",
    "check_lr_sweep",
]


def _keeps_global_rng(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """Run ``check`` inside ``torch.random.fork_rng``: the learner's global
    random state is the same afterwards, whatever their code draws."""
    @functools.wraps(check)
    def wrapper(obj: Any) -> None:
        with torch.random.fork_rng(devices=[]):
            check(obj)
    return wrapper


def _clone(model: nn.Module, opt: torch.optim.Optimizer | None = None) -> Any:
    """Deep copies of a model (and its optimizer), gradients included
    (``copy.deepcopy`` drops ``p.grad`` of leaf parameters)."""
    model2, opt2 = copy.deepcopy((model, opt))
    for p, q in zip(model.parameters(), model2.parameters()):
        q.grad = None if p.grad is None else p.grad.clone()
    return model2 if opt is None else (model2, opt2)


def _params(model: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[Tensor], b: list[Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _near(a: list[Tensor], b: list[Tensor]) -> bool:
    return len(a) == len(b) and all(
        torch.allclose(x, y, rtol=1e-5, atol=1e-7) for x, y in zip(a, b))


def _max_diff(a: list[Tensor], b: list[Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _is_real(x: Any) -> bool:
    """A real number that is not a tensor, not a bool (numpy floats are ok)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _require_float(value: Any, name: str, case: str, what: str,
                   example: str = "return loss.item()") -> float:
    """The learner's return value as a float, or a clear message."""
    if value is None:
        raise CheckFailure(
            f"{case}: `{name}` returned None as {what}.\n  Diagnosis: did you forget "
            "`return`?")
    if isinstance(value, Tensor):
        extra = (" It still carries an autograd graph (requires_grad=True), which "
                 "keeps every intermediate result of the forward pass in memory."
                 if value.requires_grad else "")
        raise CheckFailure(
            f"{case}: `{name}` returned a tensor ({fmt(value)}) as {what}, expected a "
            f"Python float.{extra}\n  Diagnosis: convert with `.item()`, e.g. "
            f"`{example}`.")
    if not _is_real(value):
        raise CheckFailure(
            f"{case}: `{name}` returned {type(value).__name__} as {what}, expected a "
            "Python float.")
    return float(value)


# --------------------------------------------------------------------------
# Exercise 7.1: train_step
# --------------------------------------------------------------------------

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


def _train_step_candidates(before: tuple[nn.Module, torch.optim.Optimizer],
                           loss_fn: Any, X: Tensor, y: Tensor,
                           ) -> list[tuple[str, list[Tensor]]]:
    """Parameters after the classic wrong orders, from the state ``before``."""
    out = []
    model, opt = _clone(*before)
    loss_fn(model(X), y).backward()  # no zero_grad: accumulates
    opt.step()
    out.append((_FORGOT_ZERO_GRAD, _params(model)))
    model, opt = _clone(*before)
    if any(p.grad is not None for p in model.parameters()):
        opt.step()  # step with the stale gradient, then backward
        out.append((_STALE_STEP, _params(model)))
        model, opt = _clone(*before)
        opt.step()  # no zero_grad at all, step before backward
        out.append((_STALE_STEP, _params(model)))
    return out


def _train_step_cases() -> list[tuple[str, nn.Module, torch.optim.Optimizer, Any,
                                      list[tuple[Tensor, Tensor]]]]:
    gen = torch.Generator().manual_seed(7)
    reg = make_mlp(10, 5, 1, seed=3)
    reg_batches = [(torch.randn(8, 10, generator=gen), torch.randn(8, 1, generator=gen))
                   for _ in range(3)]
    X, y = make_classification(n=40, d=4, n_classes=3, seed=2)
    clf = make_mlp(4, 6, 3, seed=5)
    # leftovers of an earlier backward, as after an evaluation with gradients
    nn.functional.cross_entropy(clf(X[30:]), y[30:]).backward()
    return [
        ("case 'regression MLP 10-5-1, MSELoss, SGD(lr=0.01, momentum=0.9), "
         "3 consecutive steps'", reg,
         torch.optim.SGD(reg.parameters(), lr=0.01, momentum=0.9), nn.MSELoss(),
         reg_batches),
        ("case 'classifier 4-6-3, CrossEntropyLoss, SGD(lr=0.5), p.grad already "
         "holds an old gradient'", clf, torch.optim.SGD(clf.parameters(), lr=0.5),
         nn.CrossEntropyLoss(), [(X[:15], y[:15]), (X[15:30], y[15:30])]),
    ]


@_keeps_global_rng
def check_train_step(train_step: Any) -> None:
    """Check ``train_step(model, optimizer, loss_fn, X, y) -> float``.

    Runs consecutive steps on a seeded regression MLP (MSE, momentum) and a
    classifier whose ``p.grad`` already holds an old gradient, and compares
    the parameters with the reference loop bit for bit and the returned loss
    with the loss before the update. Diagnoses a missing ``zero_grad``,
    ``zero_grad`` after ``backward``, ``step`` before ``backward``, returning a
    tensor and returning the loss after the update.
    """
    name = "train_step"
    require_function(train_step, name)
    n_steps = 0
    for case, model, opt, loss_fn, batches in _train_step_cases():
        ref_model, ref_opt = _clone(model, opt)
        for k, (X, y) in enumerate(batches, start=1):
            where = f"{case[:-1]}, step {k}'"
            before = _clone(model, opt)
            params_before = _params(model)
            value = call(train_step, name, where, model, opt, loss_fn, X, y)
            expected_value = ref_train_step(ref_model, ref_opt, loss_fn, X, y)
            expected = _params(ref_model)
            value = _require_float(value, name, where, "the loss")
            got = _params(model)
            if not _same(got, expected):
                _diagnose_train_step(where, before, params_before, got, expected,
                                     model, loss_fn, X, y)
            if value != expected_value and not math.isclose(value, expected_value,
                                                             rel_tol=1e-6):
                with torch.no_grad():
                    after = loss_fn(ref_model(X), y).item()
                hint = _LOSS_AFTER if math.isclose(value, after, rel_tol=1e-6) else None
                raise mismatch(f"{where}, returned loss", expected_value, value, hint)
            n_steps += 1
    passed(f"{name}: {n_steps} steps on 2 models (MSE with momentum, cross-entropy) "
           "match torch bit for bit; the returned float is the loss before each update")


def _diagnose_train_step(where: str, before: Any, params_before: list[Tensor],
                         got: list[Tensor], expected: list[Tensor], model: nn.Module,
                         loss_fn: Any, X: Tensor, y: Tensor) -> None:
    """Raise the most specific message for parameters that differ from torch's."""
    if _same(got, params_before):
        grads = [p.grad for p in model.parameters()]
        empty = all(g is None or not bool(g.any()) for g in grads)
        raise CheckFailure(f"{where}: the parameters did not change.\n  Diagnosis: "
                           + (_ZERO_AFTER_BACKWARD if empty else _NO_STEP))
    for hint, candidate in _train_step_candidates(before, loss_fn, X, y):
        if _same(got, candidate):
            raise CheckFailure(f"{where}: the parameters after your step differ from "
                               f"the reference step.\n  Diagnosis: {hint}")
    if _near(got, expected):
        raise CheckFailure(
            f"{where}: the parameters agree with the reference to rounding "
            f"(max |diff| = {_max_diff(got, expected):.3g}) but not bit for bit.\n"
            "  Diagnosis: compute the loss exactly as `loss_fn(model(X), y)` and let "
            "`optimizer.step()` do the update (no manual updates, one step per call).")
    raise CheckFailure(
        f"{where}: the parameters after your step differ from the reference "
        f"(max |diff| = {_max_diff(got, expected):.3g}). Expected, in this order: "
        "optimizer.zero_grad(); loss = loss_fn(model(X), y); loss.backward(); "
        "optimizer.step(); return loss.item().")


# --------------------------------------------------------------------------
# Exercise 7.2: accuracy
# --------------------------------------------------------------------------

_WRONG_DIM = (
    "you took the arg-max over the wrong dimension. logits has one ROW per "
    "example and one column per class, so the predicted class of each example is "
    "`logits.argmax(dim=1)` (dim=0 picks, for each class, the example with the "
    "largest score).")


def _accuracy_cases() -> list[tuple[str, Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(11)
    big = torch.randn(50, 10, generator=gen)
    big_y = torch.randint(0, 10, (50,), generator=gen)
    return [
        ("case '5 examples, 3 classes'",
         torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-1.0, 0.0, 3.0],
                       [1.0, 2.0, 0.0], [0.5, -0.5, 1.5]]), torch.tensor([0, 1, 2, 2, 0])),
        ("case '3 examples, 3 classes (square logits)'",
         torch.tensor([[0.0, 5.0, 1.0], [4.0, 1.0, 2.0], [3.0, 2.0, 0.5]]),
         torch.tensor([1, 0, 0])),
        ("case '50 examples, 10 classes'", big, big_y),
        ("case 'all 5 correct'", torch.eye(5) * 3.0, torch.arange(5)),
        ("case 'none correct'", torch.eye(4), torch.tensor([1, 2, 3, 0])),
    ]


def _accuracy_candidates(logits: Tensor, y: Tensor, expected: float,
                         ) -> list[tuple[str, float]]:
    n = len(y)
    out = [
        ("you returned a percentage; return a fraction between 0 and 1 "
         "(drop the `* 100`).", 100.0 * expected),
        ("you returned the NUMBER of correct predictions; divide by the number of "
         "examples, len(y).", expected * n),
        ("you used integer division `//`; use `/` to get a fraction.",
         float(math.floor(expected))),
        ("you returned the error rate (the fraction of MISTAKES); accuracy counts "
         "the predictions that equal the label.", 1.0 - expected),
        ("use argmax, not argmin: the predicted class has the LARGEST logit.",
         float((logits.argmin(dim=1) == y).float().mean())),
    ]
    if logits.shape[0] == logits.shape[1]:
        out.insert(0, (_WRONG_DIM, float((logits.argmax(dim=0) == y).float().mean())))
    return out


@_keeps_global_rng
def check_accuracy(accuracy: Any) -> None:
    """Check ``accuracy(logits, y) -> float``, the fraction of correct rows.

    Diagnoses the arg-max over the wrong dimension, a tensor return value, a
    percentage, a count, integer division, the error rate, argmin, and a
    function that modifies ``logits``.
    """
    name = "accuracy"
    require_function(accuracy, name)
    cases = _accuracy_cases()
    for case, logits, y in cases:
        expected = ref_accuracy(logits, y)
        logits_in, y_in = logits.clone(), y.clone()
        try:
            value = call(accuracy, name, case, logits_in, y_in)
        except CheckFailure as failure:
            if "must match the size of tensor" in str(failure):
                raise CheckFailure(f"{failure}\n  Diagnosis: {_WRONG_DIM}") from None
            raise
        value = _require_float(value, name, case, "the accuracy",
                               "return (...).float().mean().item()")
        if not (torch.equal(logits_in, logits) and torch.equal(y_in, y)):
            raise CheckFailure(
                f"{case}: your `accuracy` changed its inputs in place. Compute the "
                "predictions without modifying logits or y (no in-place `_` ops).")
        if not math.isclose(value, expected, rel_tol=1e-6, abs_tol=1e-9):
            hint = next((h for h, v in _accuracy_candidates(logits, y, expected)
                         if math.isclose(value, v, rel_tol=1e-6, abs_tol=1e-9)), None)
            raise mismatch(case, expected, value, hint)
    passed(f"{name}: {len(cases)} cases give the fraction of rows whose "
           "argmax(dim=1) equals the label, as a float")


# --------------------------------------------------------------------------
# Exercise 7.3: evaluate
# --------------------------------------------------------------------------

class _Probe(nn.Module):
    """A small classifier with dropout that records, for every forward pass,
    whether autograd was recording and whether it was in training mode."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        mlp = make_mlp(4, 8, 3, seed=seed)
        self.net = nn.Sequential(mlp[0], mlp[1], nn.Dropout(0.5), mlp[2])
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append((torch.is_grad_enabled(), self.training))
        return self.net(x)


def _evaluate_cases() -> list[tuple[str, nn.Module, Tensor, Tensor]]:
    X, y = make_classification(n=30, d=4, n_classes=3, seed=4)
    X2, y2 = make_classification(n=17, d=4, n_classes=3, seed=9)
    in_eval = _Probe(seed=2)
    in_eval.eval()
    return [
        ("case 'classifier with dropout, in training mode, 30 examples'",
         _Probe(seed=1), X, y),
        ("case 'classifier with dropout, already in eval mode, 17 examples'",
         in_eval, X2, y2),
    ]


@_keeps_global_rng
def check_evaluate(evaluate: Any) -> None:
    """Check ``evaluate(model, loss_fn, X, y) -> (loss, accuracy)``.

    The model contains dropout and records each forward pass, so the check
    sees whether the forward ran in eval mode and under ``torch.no_grad()``,
    whether the model was put back in the mode it was in, and whether the
    weights or their gradients were touched.
    """
    name = "evaluate"
    require_function(evaluate, name)
    loss_fn = nn.CrossEntropyLoss()
    cases = _evaluate_cases()
    for case, model, X, y in cases:
        was_training = model.training
        expected = ref_evaluate(_clone(model), loss_fn, X, y)
        params_before = _params(model)
        model.calls.clear()
        out = call(evaluate, name, case, model, loss_fn, X, y)
        if out is None:
            raise CheckFailure(f"{case}: `{name}` returned None.\n  Diagnosis: did you "
                               "forget `return loss, acc`?")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise CheckFailure(f"{case}: `{name}` should return a pair (loss, accuracy), "
                               f"got {type(out).__name__}: {fmt(out)}.")
        loss = _require_float(out[0], name, case, "the loss")
        acc = _require_float(out[1], name, case, "the accuracy", "acc = accuracy(logits, y)")
        _diagnose_evaluate_side_effects(case, model, was_training, params_before)
        if not (math.isclose(loss, expected[0], rel_tol=1e-6)
                and math.isclose(acc, expected[1], rel_tol=1e-6)):
            hint = None
            if (math.isclose(loss, expected[1], rel_tol=1e-6)
                    and math.isclose(acc, expected[0], rel_tol=1e-6)):
                hint = "you returned (accuracy, loss); the order is (loss, accuracy)."
            elif math.isclose(acc, 100 * expected[1], rel_tol=1e-6):
                hint = "the accuracy is a percentage; return a fraction in [0, 1]."
            raise mismatch(f"{case}, (loss, accuracy)", expected, (loss, acc), hint)
    passed(f"{name}: {len(cases)} cases return (loss, accuracy) as floats, computed "
           "in eval mode under torch.no_grad(), model mode restored, weights untouched")


def _diagnose_evaluate_side_effects(case: str, model: Any, was_training: bool,
                                    params_before: list[Tensor]) -> None:
    if not model.calls:
        raise CheckFailure(f"{case}: `evaluate` never called the model: compute "
                           "`logits = model(X)`.")
    if any(training for _, training in model.calls):
        raise CheckFailure(
            f"{case}: the forward pass ran in TRAINING mode, so dropout zeroed half "
            "of the hidden units at random and the loss is noisy.\n  Diagnosis: call "
            "`model.eval()` before `model(X)`.")
    if any(grad for grad, _ in model.calls):
        raise CheckFailure(
            f"{case}: the forward pass ran with autograd recording, so it built a "
            "graph (memory and time) that evaluation never uses.\n  Diagnosis: wrap "
            "it in `with torch.no_grad():`.")
    if any(p.grad is not None for p in model.parameters()):
        raise CheckFailure(f"{case}: after `evaluate` the parameters have gradients: "
                           "evaluation must not call backward().")
    if not _same(_params(model), params_before):
        raise CheckFailure(f"{case}: `evaluate` changed the model's weights; it must "
                           "only measure them.")
    if model.training != was_training:
        if was_training:
            raise CheckFailure(
                f"{case}: the model was in training mode and your `evaluate` left it "
                "in eval mode, so the next epoch would train without dropout.\n  "
                "Diagnosis: remember `was_training = model.training` before "
                "`model.eval()` and restore it at the end with "
                "`model.train(was_training)`.")
        raise CheckFailure(
            f"{case}: the model was in eval mode and your `evaluate` switched it to "
            "training mode.\n  Diagnosis: restore the mode it HAD, "
            "`model.train(was_training)`, instead of an unconditional `model.train()`.")


# --------------------------------------------------------------------------
# Exercise 7.4: train_epoch
# --------------------------------------------------------------------------

_HINT_TRAIN_STEP = ("(train_epoch calls your train_step: make sure "
                    "check_train_step(train_step) passes first.)")


def _train_epoch_cases() -> list[tuple[str, int, int, int, int, bool]]:
    # (case, n, batch_size, generator seed, epochs, start in eval mode)
    return [
        ("case '26 examples, batch_size=8, generator seed 5, model in eval mode "
         "at the start'", 26, 8, 5, 1, True),
        ("case '30 examples, batch_size=10, generator seed 11, two epochs with the "
         "same generator'", 30, 10, 11, 2, False),
    ]


def _run_epochs(fn: Callable[..., Any], model: nn.Module, X: Tensor, y: Tensor,
                batch_size: int, gen: torch.Generator, epochs: int,
                ) -> tuple[list[Any], torch.optim.Optimizer]:
    """Run ``fn`` for ``epochs`` epochs under a fixed global seed (dropout)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.manual_seed(1234)
    return [fn(model, opt, nn.CrossEntropyLoss(), X, y, batch_size=batch_size,
               generator=gen) for _ in range(epochs)], opt


def _unshuffled_epoch(model: nn.Module, opt: Any, loss_fn: Any, X: Tensor, y: Tensor,
                      *, batch_size: int, generator: torch.Generator) -> list[float]:
    model.train()
    return [ref_train_step(model, opt, loss_fn, X[i:i + batch_size], y[i:i + batch_size])
            for i in range(0, len(X), batch_size)]


def _own_generator_epoch(model: nn.Module, opt: Any, loss_fn: Any, X: Tensor, y: Tensor,
                         *, batch_size: int, generator: torch.Generator) -> list[float]:
    return ref_train_epoch(model, opt, loss_fn, X, y, batch_size=batch_size,
                           generator=torch.Generator().manual_seed(0))


@_keeps_global_rng
def check_train_epoch(train_epoch: Any) -> None:
    """Check ``train_epoch(model, optimizer, loss_fn, X, y, *, batch_size, generator)``.

    Compares the list of batch losses and the final parameters with the
    reference (shuffled by the given generator, model in training mode) on a
    classifier with dropout. Diagnoses returning a number instead of the
    list, the wrong number of batches (whole data set, dropped last batch),
    a missing ``model.train()``, no shuffling and ignoring the generator.
    """
    name = "train_epoch"
    require_function(train_epoch, name)
    cases = _train_epoch_cases()
    for case, n, batch_size, seed, epochs, start_eval in cases:
        X, y = make_classification(n=n, d=4, n_classes=3, seed=seed)
        model, ref_model = _Probe(seed=seed), _Probe(seed=seed)
        if start_eval:
            model.eval()
            ref_model.eval()
        ref_out, _ = _run_epochs(ref_train_epoch, ref_model, X, y, batch_size,
                                 torch.Generator().manual_seed(seed), epochs)
        with learner_code(name, case):
            out, _ = _run_epochs(train_epoch, model, X, y, batch_size,
                                 torch.Generator().manual_seed(seed), epochs)
        for epoch, (got, expected) in enumerate(zip(out, ref_out), start=1):
            where = case if epochs == 1 else f"{case}, epoch {epoch}"
            got = _check_loss_list(got, expected, name, where, n, batch_size)
            if any(not training for _, training in model.calls):
                raise CheckFailure(
                    f"{where}: some batches were trained with the model in EVAL mode "
                    "(dropout off), because evaluate()/model.eval() had switched it.\n"
                    "  Diagnosis: call `model.train()` at the start of the epoch.")
            if got != expected:
                raise _epoch_mismatch(where, got, expected, X, y, batch_size, seed,
                                      start_eval, epoch)
        if not _same(_params(model), _params(ref_model)):
            raise CheckFailure(
                f"{case}: the batch losses match but the final parameters differ from "
                f"the reference (max |diff| = "
                f"{_max_diff(_params(model), _params(ref_model)):.3g}). "
                + _HINT_TRAIN_STEP)
    passed(f"{name}: {len(cases)} cases (3 epochs) match the reference batch losses "
           "and final weights exactly: model.train(), shuffled by your generator, "
           "one train_step per mini-batch")


def _check_loss_list(got: Any, expected: list[float], name: str, where: str,
                     n: int, batch_size: int) -> list[float]:
    """The learner's batch losses as a list of floats of the right length."""
    if got is None:
        raise CheckFailure(f"{where}: `{name}` returned None.\n  Diagnosis: did you "
                           "forget `return losses`?")
    if _is_real(got) or (isinstance(got, Tensor) and got.ndim == 0):
        value = float(got)
        hints = [("the mean", sum(expected) / len(expected)), ("the sum", sum(expected)),
                 ("the last batch's loss", expected[-1])]
        what = next((w for w, v in hints if math.isclose(value, v, rel_tol=1e-6)),
                    "a single number")
        raise CheckFailure(
            f"{where}: `{name}` returned {what} ({fmt(value)}); return the LIST of "
            f"the {len(expected)} batch losses, one per train_step, in order.")
    if not isinstance(got, (list, tuple)):
        raise CheckFailure(f"{where}: `{name}` should return a list of floats, got "
                           f"{type(got).__name__}.")
    if len(got) != len(expected):
        if len(got) == 1:
            hint = ("you trained on the whole data set in one batch: loop over "
                    "`iterate_minibatches(X, y, batch_size, generator=generator)`.")
        elif len(got) == n // batch_size:
            hint = ("you dropped the last, smaller batch; keep it (drop_last=False): "
                    "every example is used once per epoch.")
        else:
            hint = "one train_step per mini-batch of batch_size examples."
        raise CheckFailure(
            f"{where}: expected {len(expected)} batch losses (ceil({n} / {batch_size})),"
            f" got {len(got)}.\n  Diagnosis: {hint}")
    for i, v in enumerate(got):
        if not _is_real(v):
            raise CheckFailure(
                f"{where}: batch loss {i} is a {type(v).__name__}, expected a float. "
                + _HINT_TRAIN_STEP)
    return [float(v) for v in got]


def _epoch_mismatch(where: str, got: list[float], expected: list[float], X: Tensor,
                    y: Tensor, batch_size: int, seed: int, start_eval: bool,
                    epoch: int) -> CheckFailure:
    first = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
    for hint, wrong in [
        ("the batches came in the original order: shuffle them with the given "
         "generator, `iterate_minibatches(X, y, batch_size, generator=generator)`.",
         _unshuffled_epoch),
        ("you shuffled with a generator of your own (seed 0) instead of the "
         "`generator` argument; pass `generator=generator`, so the caller decides "
         "the order and a second epoch gets a new one.", _own_generator_epoch),
    ]:
        model = _Probe(seed=seed)
        if start_eval:
            model.eval()
        out, _ = _run_epochs(wrong, model, X, y, batch_size,
                             torch.Generator().manual_seed(seed), epoch)
        if [float(v) for v in out[-1]] == got:
            return CheckFailure(f"{where}: the batch losses differ from the reference."
                                f"\n  Diagnosis: {hint}")
    msg = (f"{where}: batch loss {first} is {fmt(got[first])}, expected "
           f"{fmt(expected[first])}.")
    if first == 0:
        msg += ("\n  Diagnosis: the first batch already differs: the order of the "
                "examples must be `torch.randperm(len(X), generator=generator)`, as "
                "in `iterate_minibatches(X, y, batch_size, generator=generator)`.")
    return CheckFailure(msg + " " + _HINT_TRAIN_STEP)


# --------------------------------------------------------------------------
# Exercise 7.5: lr_sweep
# --------------------------------------------------------------------------

class _SweepSpy:
    """``make_model`` and ``train`` for the lr_sweep check: tiny full-batch
    regression with torch.optim.SGD; records every call."""

    def __init__(self, steps: int = 8) -> None:
        gen = torch.Generator().manual_seed(3)
        self.X = torch.randn(12, 3, generator=gen)
        self.y = self.X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1
        self.steps = steps
        self.models: list[nn.Module] = []
        self.trained: list[tuple[int, float, bool]] = []

    def make_model(self) -> nn.Module:
        model = make_mlp(3, 4, 1, seed=0)
        self.models.append(model)
        return model

    def train(self, model: nn.Module, lr: float) -> list[float]:
        fresh = _same(_params(model), _params(make_mlp(3, 4, 1, seed=0)))
        self.trained.append((id(model), lr, fresh))
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        return [ref_train_step(model, opt, nn.MSELoss(), self.X, self.y)
                for _ in range(self.steps)]


def _lr_sweep_cases() -> list[tuple[str, list[float]]]:
    return [
        ("case 'lrs = [0.01, 0.03, 0.1]'", [0.01, 0.03, 0.1]),
        ("case 'lrs = [0.3, 0.001, 3.0, 30.0] (the last runs diverge)'",
         [0.3, 0.001, 3.0, 30.0]),
    ]


@_keeps_global_rng
def check_lr_sweep(lr_sweep: Any) -> None:
    """Check ``lr_sweep(lrs, make_model, train) -> list of final losses``.

    Uses spies for ``make_model`` and ``train`` to see that every learning rate
    gets a fresh, untrained model, in order; compares the final losses
    (``nan``/``inf`` of diverged runs included). Diagnoses a model built once,
    dropped diverged runs, the best/mean/first loss instead of the last, and
    whole histories instead of numbers.
    """
    name = "lr_sweep"
    require_function(lr_sweep, name)
    cases = _lr_sweep_cases()
    for case, lrs in cases:
        spy = _SweepSpy()
        expected = ref_lr_sweep(lrs, _SweepSpy().make_model, _SweepSpy().train)
        histories = [_SweepSpy().train(make_mlp(3, 4, 1, seed=0), lr) for lr in lrs]
        out = call(lr_sweep, name, case, list(lrs), spy.make_model, spy.train)
        if out is None:
            raise CheckFailure(f"{case}: `{name}` returned None.\n  Diagnosis: did you "
                               "forget `return`?")
        if not spy.trained:
            raise CheckFailure(f"{case}: `{name}` never called train(model, lr).")
        if any(not fresh for _, _, fresh in spy.trained) or len(
                {i for i, _, _ in spy.trained}) < len(spy.trained):
            raise CheckFailure(
                f"{case}: `train` received a model that had already been trained "
                f"(make_model was called {len(spy.models)} time(s) for {len(lrs)} "
                "learning rates).\n  Diagnosis: build a FRESH model for every lr, "
                "inside the loop (`model = make_model()`); reusing one model makes "
                "each run continue from the previous run's weights, so the runs are "
                "not compared from the same start.")
        if [lr for _, lr, _ in spy.trained] != list(lrs):
            raise CheckFailure(
                f"{case}: train was called with the learning rates "
                f"{[lr for _, lr, _ in spy.trained]}, expected {list(lrs)}: one run "
                "per lr, in the order given.")
        _compare_sweep(case, out, expected, histories, name)
    passed(f"{name}: {len(cases)} sweeps, every lr trained from a fresh model, final "
           "losses match (diverged runs kept as nan/inf)")


def _compare_sweep(case: str, out: Any, expected: list[float],
                   histories: list[list[float]], name: str) -> None:
    if isinstance(out, Tensor) or not hasattr(out, "__len__"):
        raise CheckFailure(f"{case}: `{name}` should return a list of floats, got "
                           f"{type(out).__name__}.")
    if isinstance(out, dict):
        raise CheckFailure(f"{case}: `{name}` returned a dict; return a list of final "
                           "losses in the order of lrs.")
    out = list(out)
    if out and all(isinstance(v, (list, tuple)) or (
            isinstance(v, (np.ndarray, Tensor)) and v.ndim > 0) for v in out):
        raise CheckFailure(f"{case}: `{name}` returned whole loss histories; return one "
                           "number per lr, the LAST loss of each run: history[-1].")
    if len(out) != len(expected):
        finite = [v for v in expected if math.isfinite(v)]
        hint = ("you dropped the diverged runs (nan/inf). Keep them, so the list lines "
                "up with lrs; plot_lr_sweep leaves them out of the line."
                if len(out) == len(finite) else None)
        raise mismatch(f"{case}, number of final losses", len(expected), len(out), hint)
    for i, v in enumerate(out):
        if not _is_real(v):
            raise CheckFailure(f"{case}: final loss {i} is a {type(v).__name__}, "
                               "expected a float (use float(...)).")
    got = np.array([float(v) for v in out])
    if not close(got, expected, rtol=1e-12, atol=0.0):
        hint = None
        for what, fix, values in [
            ("the best (lowest) loss of each run", "", [min(h) for h in histories]),
            ("the mean loss of each run", "", [sum(h) / len(h) for h in histories]),
            ("the FIRST loss of each run (before any training)", "",
             [h[0] for h in histories]),
        ]:
            if close(got, values, rtol=1e-12, atol=0.0):
                hint = (f"you returned {what}; a sweep compares where the runs END: "
                        "return history[-1].")
                break
        raise mismatch(f"{case}, final losses", np.array(expected), got, hint)
