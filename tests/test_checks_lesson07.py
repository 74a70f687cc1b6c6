"""Tests of the lesson 07 checks: each passes the reference solution and
fails every classic mistake with that mistake's own diagnosis."""

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
from tests.check_contract import (
    ReturnValueContract,
    fails,
    run_leaving_global_rng_alone,
)

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


ALL = [
    (check_train_step, train_step, "train_step"),
    (check_accuracy, accuracy, "accuracy"),
    (check_evaluate, evaluate, "evaluate"),
    (check_train_epoch, train_epoch, "train_epoch"),
    (check_lr_sweep, lr_sweep, "lr_sweep"),
]


# --------------------------------------------------------------------------
# Contract shared by all checks
# --------------------------------------------------------------------------

class TestContract(ReturnValueContract):
    ALL = ALL


@pytest.mark.parametrize("check, reference, name", ALL)
def test_course_reference_passes(check, reference, name, capsys):
    import course.training
    check(getattr(course.training, name))
    assert capsys.readouterr().out.startswith(f"\u2713 {name}: ")


def test_checks_do_not_touch_global_rng():
    run_leaving_global_rng_alone(ALL)


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


@pytest.mark.parametrize("order, pattern", [
    pytest.param("loss backward step",
                 "3 consecutive steps, step 2'.*gradients accumulated.*zero_grad",
                 id="forgot_zero_grad"),
    pytest.param("loss backward zero_grad step",
                 r"step 1': the parameters did not change.*zero_grad\(\)` after "
                 r"`loss.backward\(\)`", id="zero_grad_after_backward"),
    pytest.param("zero_grad loss step backward",
                 "did not change.*step\\(\\)` must come AFTER", id="step_before_backward"),
    pytest.param("zero_grad loss backward", "did not change.*forget it",
                 id="forgot_step_entirely"),
])
def test_train_step_wrong_order(order, pattern):
    fails(check_train_step, in_order(order), pattern)


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


def test_train_step_returned_loss_after_update():
    def after(model, optimizer, loss_fn, X, y):
        optimizer.zero_grad()
        loss_fn(model(X), y).backward()
        optimizer.step()
        with torch.no_grad():
            return loss_fn(model(X), y).item()
    fails(check_train_step, after, "returned loss: expected.*loss AFTER the update")


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


def test_accuracy_wrong_dim():
    fails(check_accuracy, lambda logits, y: (logits.argmax(dim=0) == y).float().mean().item(),
          "case '5 examples.*must match the size.*wrong dimension.*argmax\\(dim=1\\)")


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


def test_accuracy_percent():
    fails(check_accuracy, lambda logits, y: 100 * accuracy(logits, y),
          "expected 0.6, got 60.*percentage")


def test_accuracy_count():
    fails(check_accuracy, lambda logits, y: (logits.argmax(1) == y).sum().item(),
          "NUMBER of correct predictions")


def test_accuracy_integer_division():
    fails(check_accuracy, lambda logits, y: (logits.argmax(1) == y).sum().item() // len(y),
          "integer division")


def test_accuracy_error_rate():
    fails(check_accuracy, lambda logits, y: 1 - accuracy(logits, y), "error rate")


def test_accuracy_argmin():
    fails(check_accuracy, lambda logits, y: (logits.argmin(1) == y).float().mean().item(),
          "argmax, not argmin")


def test_accuracy_in_place_softmax():
    def in_place(logits, y):
        logits.exp_()
        return accuracy(logits, y)
    fails(check_accuracy, in_place, "changed its inputs in place")


# --------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------

def test_evaluate_forgot_eval():
    def no_eval(model, loss_fn, X, y):
        with torch.no_grad():
            logits = model(X)
            return loss_fn(logits, y).item(), accuracy(logits, y)
    fails(check_evaluate, no_eval, r"TRAINING mode.*dropout.*model.eval\(\)")


def test_evaluate_forgot_no_grad():
    def no_no_grad(model, loss_fn, X, y):
        was = model.training
        model.eval()
        logits = model(X)
        out = loss_fn(logits, y).item(), accuracy(logits, y)
        model.train(was)
        return out
    fails(check_evaluate, no_no_grad, r"autograd recording.*torch.no_grad\(\)")


def test_evaluate_left_in_eval_mode():
    def stays_eval(model, loss_fn, X, y):
        model.eval()
        with torch.no_grad():
            logits = model(X)
            return loss_fn(logits, y).item(), accuracy(logits, y)
    fails(check_evaluate, stays_eval,
          r"in training mode.*left it in eval mode.*model.train\(was_training\)")


def test_evaluate_unconditional_train():
    def always_train(model, loss_fn, X, y):
        model.eval()
        with torch.no_grad():
            logits = model(X)
            out = loss_fn(logits, y).item(), accuracy(logits, y)
        model.train()
        return out
    fails(check_evaluate, always_train,
          r"already in eval mode.*switched it to training mode.*was_training")


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


def test_evaluate_swapped():
    fails(check_evaluate, lambda *a: evaluate(*a)[::-1], r"returned \(accuracy, loss\)")


def test_evaluate_percent():
    def percent(*a):
        loss, acc = evaluate(*a)
        return loss, 100 * acc
    fails(check_evaluate, percent, "percentage")


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


def test_train_epoch_forgot_model_train():
    def no_train(model, optimizer, loss_fn, X, y, *, batch_size, generator):
        return [train_step(model, optimizer, loss_fn, xb, yb)
                for xb, yb in iterate_minibatches(X, y, batch_size, generator=generator)]
    fails(check_train_epoch, no_train, r"EVAL mode.*model.train\(\)")


def test_train_epoch_no_shuffle():
    def in_order(model, optimizer, loss_fn, X, y, *, batch_size, generator):
        model.train()
        return [train_step(model, optimizer, loss_fn, xb, yb)
                for xb, yb in iterate_minibatches(X, y, batch_size, shuffle=False)]
    fails(check_train_epoch, in_order, "original order.*generator=generator")


def test_train_epoch_own_generator():
    def own(model, optimizer, loss_fn, X, y, *, batch_size, generator):
        return train_epoch(model, optimizer, loss_fn, X, y, batch_size=batch_size,
                           generator=torch.Generator().manual_seed(0))
    fails(check_train_epoch, own, "generator of your own")


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


def test_train_epoch_full_batch():
    def full(model, optimizer, loss_fn, X, y, *, batch_size, generator):
        model.train()
        return [train_step(model, optimizer, loss_fn, X, y)]
    fails(check_train_epoch, full, r"expected 4 batch losses \(ceil\(26 / 8\)\), got 1.*"
          "whole data set")


def test_train_epoch_drop_last():
    def drop(model, optimizer, loss_fn, X, y, *, batch_size, generator):
        model.train()
        return [train_step(model, optimizer, loss_fn, xb, yb)
                for xb, yb in iterate_minibatches(X, y, batch_size, generator=generator,
                                                  drop_last=True)]
    fails(check_train_epoch, drop, "got 3.*dropped the last")


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

def test_lr_sweep_model_built_once():
    def once(lrs, make_model, train):
        model = make_model()
        return [float(train(model, lr)[-1]) for lr in lrs]
    fails(check_lr_sweep, once, "already been trained.*called 1 time.*FRESH model")


def test_lr_sweep_dropped_diverged():
    import math

    def dropped(lrs, make_model, train):
        return [v for v in lr_sweep(lrs, make_model, train) if math.isfinite(v)]
    fails(check_lr_sweep, dropped, "number of final losses: expected 4, got 2.*dropped "
          "the diverged runs")


def test_lr_sweep_best_loss():
    fails(check_lr_sweep, lambda lrs, mm, tr: [min(tr(mm(), lr)) for lr in lrs],
          "diverge.*best \\(lowest\\) loss.*history\\[-1\\]")


def test_lr_sweep_mean_loss():
    fails(check_lr_sweep,
          lambda lrs, mm, tr: [float(np.mean(tr(mm(), lr))) for lr in lrs],
          "mean loss of each run")


def test_lr_sweep_first_loss():
    fails(check_lr_sweep, lambda lrs, mm, tr: [tr(mm(), lr)[0] for lr in lrs],
          "FIRST loss")


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
