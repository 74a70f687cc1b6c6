"""Tests of the lesson 07 checks beyond tests/test_exercises.py (which runs
every catalogued mistake of course/exercises/lesson07.py): learner-style wrong
implementations that are not catalogued mistakes (variants, contract breaches,
partial mistakes), what must pass, and how failures are reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course.checks import (
    check_accuracy,
    check_evaluate,
    check_lr_sweep,
    check_train_epoch,
    check_train_step,
)
from course.data import iterate_minibatches
from tests.check_contract import fails

# --------------------------------------------------------------------------
# Reference solutions (as in the solution notebook)
# --------------------------------------------------------------------------

def train_step(model, optimizer, loss_fn, X, y):
    optimizer.zero_grad()
    loss = loss_fn(model(X), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def accuracy(logits, y):
    return (logits.argmax(dim=1) == y).float().mean().item()


def evaluate(model, loss_fn, X, y):
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(X)
        loss = loss_fn(logits, y).item()
        acc = accuracy(logits, y)
    model.train(was_training)
    return loss, acc


def train_epoch(model, optimizer, loss_fn, X, y, *, batch_size, generator):
    model.train()
    losses = []
    for X_batch, y_batch in iterate_minibatches(X, y, batch_size, generator=generator):
        losses.append(train_step(model, optimizer, loss_fn, X_batch, y_batch))
    return losses


def lr_sweep(lrs, make_model, train):
    finals = []
    for lr in lrs:
        history = train(make_model(), lr)
        finals.append(float(history[-1]))
    return finals


# --------------------------------------------------------------------------
# What must pass; the global random state
# --------------------------------------------------------------------------

@pytest.mark.parametrize("check, name", [
    (check_train_step, "train_step"),
    (check_accuracy, "accuracy"),
    (check_evaluate, "evaluate"),
    (check_train_epoch, "train_epoch"),
    (check_lr_sweep, "lr_sweep"),
])
def test_course_reference_passes(check, name, capsys):
    import course.training
    check(getattr(course.training, name))
    assert capsys.readouterr().out.startswith(f"\u2713 {name}: ")


def test_learner_code_that_reseeds_does_not_leak():
    state = torch.random.get_rng_state()

    def reseeding(lrs, make_model, train):
        torch.manual_seed(0)
        return lr_sweep(lrs, make_model, train)
    check_lr_sweep(reseeding)
    assert torch.equal(torch.random.get_rng_state(), state)


# --------------------------------------------------------------------------
# train_step
# --------------------------------------------------------------------------

def test_train_step_zero_grad_before_step_but_any_spelling_passes():
    def model_zero_grad(model, optimizer, loss_fn, X, y):
        model.zero_grad()
        loss = loss_fn(model.forward(X), y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())
    check_train_step(model_zero_grad)


def in_order(order):
    """A train_step that does the words of ``order`` in turn: zero_grad,
    loss (= loss_fn(model(X), y)), backward, step; it returns loss.item()."""
    def train_step(model, optimizer, loss_fn, X, y):
        for op in order.split():
            if op == "zero_grad":
                optimizer.zero_grad()
            elif op == "loss":
                loss = loss_fn(model(X), y)
            elif op == "backward":
                loss.backward()
            else:
                assert op == "step", op
                optimizer.step()
        return loss.item()
    return train_step


# The catalogued mistakes (course/exercises/lesson07.py) are tested by
# tests/test_exercises.py; below, learner-style variants that are not them.

def test_train_step_forgot_step_entirely():
    fails(check_train_step, in_order("zero_grad loss backward"), "did not change.*forget it")


def test_train_step_step_before_backward_with_stale_gradient():
    # first case: nothing moves; the stale-gradient case is reached with
    # leftovers in p.grad
    fails(check_train_step, in_order("loss step zero_grad backward"),
          "did not change|PREVIOUS gradient")
    fails(check_train_step, in_order("loss step backward"), "did not change")


def test_train_step_stale_gradient_is_named():
    from course.exercises.lesson07 import _STALE_STEP, TRAIN_STEP, _train_step_contract
    from course.exercises.spec import run_case
    case = TRAIN_STEP.cases[3]  # the classifier whose p.grad holds an old gradient, step 1

    def stale(model, optimizer, loss_fn, X, y):
        optimizer.step()  # step with the old gradient, then the batch's backward
        optimizer.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        return loss.item()
    got = run_case(TRAIN_STEP, stale, case)
    expected = run_case(TRAIN_STEP, TRAIN_STEP.reference, case)
    assert "PREVIOUS gradient" in _train_step_contract(got, expected)
    assert "before `loss.backward()`" in _STALE_STEP


def test_train_step_returned_tensor():
    def tensor(model, optimizer, loss_fn, X, y):
        optimizer.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        return loss
    fails(check_train_step, tensor, r"returned a tensor.*requires_grad.*\.item\(\)")


def test_train_step_manual_update_is_close_not_exact():
    def manual(model, optimizer, loss_fn, X, y):
        optimizer.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        lr = optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        return loss.item()
    fails(check_train_step, manual, "to rounding.*not bit for bit.*no manual updates")


def test_train_step_two_steps_is_generic():
    def twice(model, optimizer, loss_fn, X, y):
        loss = train_step(model, optimizer, loss_fn, X, y)
        train_step(model, optimizer, loss_fn, X, y)
        return loss
    fails(check_train_step, twice, "differ from the reference.*zero_grad\\(\\); loss =")


# --------------------------------------------------------------------------
# accuracy
# --------------------------------------------------------------------------

def test_accuracy_sum_over_len_passes():
    check_accuracy(lambda logits, y: (logits.argmax(1) == y).sum().item() / len(y))


def test_accuracy_wrong_dim_on_square_logits():
    from course.exercises.lesson07 import _WRONG_DIM, ACCURACY
    logits, y = ACCURACY.cases[1].args
    wrong_dim = next(m for m in ACCURACY.mistakes if m.diagnosis == _WRONG_DIM)
    assert wrong_dim.impl(logits, y) == pytest.approx(2 / 3)

    def wrong_dim_square_only(logits, y):
        if logits.shape[0] == logits.shape[1]:
            return (logits.argmax(dim=0) == y).float().mean().item()
        return accuracy(logits, y)
    fails(check_accuracy, wrong_dim_square_only, "square logits.*wrong dimension")


def test_accuracy_returned_tensor():
    fails(check_accuracy, lambda logits, y: (logits.argmax(1) == y).float().mean(),
          r"returned a tensor.*\.item\(\)")


def test_accuracy_in_place_softmax():
    def in_place(logits, y):
        logits.exp_()
        return accuracy(logits, y)
    fails(check_accuracy, in_place, "changed its inputs in place")


# --------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------

def test_evaluate_backward():
    def with_backward(model, loss_fn, X, y):
        was = model.training
        model.eval()
        loss = loss_fn(model.net(X), y)
        loss.backward()
        with torch.no_grad():
            logits = model(X)
        model.train(was)
        return loss.item(), accuracy(logits, y)
    fails(check_evaluate, with_backward, "have gradients.*backward")


def test_evaluate_returned_tensors():
    def tensors(model, loss_fn, X, y):
        was = model.training
        model.eval()
        with torch.no_grad():
            logits = model(X)
            out = loss_fn(logits, y), accuracy(logits, y)
        model.train(was)
        return out
    fails(check_evaluate, tensors, r"returned a tensor.*as the loss.*\.item\(\)")


def test_evaluate_not_a_pair():
    fails(check_evaluate, lambda *a: evaluate(*a)[0], "returned float as the loss|pair")
    fails(check_evaluate, lambda *a: {"loss": 1.0}, "should return a pair")


def test_evaluate_never_calls_model():
    fails(check_evaluate, lambda *a: (1.0, 0.5), "never called the model")


# --------------------------------------------------------------------------
# train_epoch
# --------------------------------------------------------------------------

def test_train_epoch_with_own_loop_over_randperm_passes():
    def randperm(model, optimizer, loss_fn, X, y, *, batch_size, generator):
        model.train()
        order = torch.randperm(len(X), generator=generator)
        return [train_step(model, optimizer, loss_fn, X[order[i:i + batch_size]],
                           y[order[i:i + batch_size]])
                for i in range(0, len(X), batch_size)]
    check_train_epoch(randperm)


def test_train_epoch_no_shuffle():
    def in_order(model, optimizer, loss_fn, X, y, *, batch_size, generator):
        model.train()
        return [train_step(model, optimizer, loss_fn, xb, yb)
                for xb, yb in iterate_minibatches(X, y, batch_size, shuffle=False)]
    fails(check_train_epoch, in_order, "original order.*generator=generator")


def test_train_epoch_global_rng_order_is_generic():
    def global_rng(model, optimizer, loss_fn, X, y, *, batch_size, generator):
        model.train()
        order = torch.randperm(len(X))
        return [train_step(model, optimizer, loss_fn, X[order[i:i + batch_size]],
                           y[order[i:i + batch_size]])
                for i in range(0, len(X), batch_size)]
    fails(check_train_epoch, global_rng, "first batch already differs.*randperm")


def test_train_epoch_returned_mean():
    def mean(*a, **k):
        losses = train_epoch(*a, **k)
        return sum(losses) / len(losses)
    fails(check_train_epoch, mean, "returned the mean.*LIST")


def test_train_epoch_returned_last():
    fails(check_train_epoch, lambda *a, **k: train_epoch(*a, **k)[-1],
          "returned the last batch's loss")


def test_train_epoch_tensor_losses():
    def tensors(*a, **k):
        return [torch.tensor(v) for v in train_epoch(*a, **k)]
    fails(check_train_epoch, tensors, "batch loss 0 is a Tensor.*check_train_step")


def test_train_epoch_wrong_train_step_points_to_it():
    def bad_epoch(model, optimizer, loss_fn, X, y, *, batch_size, generator):
        model.train()
        out = []
        for xb, yb in iterate_minibatches(X, y, batch_size, generator=generator):
            loss = loss_fn(model(xb), yb)
            loss.backward()  # no zero_grad
            optimizer.step()
            out.append(loss.item())
        return out
    fails(check_train_epoch, bad_epoch, "check_train_step")


# --------------------------------------------------------------------------
# lr_sweep
# --------------------------------------------------------------------------

def test_lr_sweep_histories():
    fails(check_lr_sweep, lambda lrs, mm, tr: [tr(mm(), lr) for lr in lrs],
          "whole loss histories")


def test_lr_sweep_dict():
    fails(check_lr_sweep, lambda lrs, mm, tr: {lr: tr(mm(), lr)[-1] for lr in lrs},
          "returned a dict")


def test_lr_sweep_wrong_order():
    fails(check_lr_sweep, lambda lrs, mm, tr: lr_sweep(sorted(lrs), mm, tr),
          "train was called with the learning rates.*in the order given")


def test_lr_sweep_tensor_values():
    fails(check_lr_sweep,
          lambda lrs, mm, tr: [torch.tensor(tr(mm(), lr)[-1]) for lr in lrs],
          "final loss 0 is a Tensor")


def test_lr_sweep_numpy_array_is_not_a_list():
    # grading always required a list (or tuple) of floats; the check now agrees
    fails(check_lr_sweep, lambda lrs, mm, tr: np.array(lr_sweep(lrs, mm, tr)),
          "should return a list of floats, got ndarray")


def test_lr_sweep_never_trains():
    fails(check_lr_sweep, lambda lrs, mm, tr: [0.0 for _ in lrs], "never called train")
