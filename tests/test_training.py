"""Tests of course.training: the reference training loop of lesson 7."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course.data import Split, iterate_minibatches, make_classification
from course.optim import SGD
from course.training import (
    History,
    accuracy,
    evaluate,
    fit,
    lr_sweep,
    make_mlp,
    progress,
    train_epoch,
    train_step,
)


def _split(n=60, seed=0):
    X, y = make_classification(n=n, d=4, n_classes=3, seed=seed)
    return Split(X[: n * 3 // 4], y[: n * 3 // 4], X[n * 3 // 4:], y[n * 3 // 4:])


# --------------------------------------------------------------------------
# make_mlp
# --------------------------------------------------------------------------

def test_make_mlp_layout_and_seed():
    model = make_mlp(64, 32, 10, seed=3)
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]
    assert model[0].weight.shape == (32, 64) and model[2].weight.shape == (10, 32)
    again = make_mlp(64, 32, 10, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters()))
    other = make_mlp(64, 32, 10, seed=4)
    assert not torch.equal(model[0].weight, other[0].weight)


def test_make_mlp_matches_manual_seed_then_sequential():
    torch.manual_seed(5)
    manual = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1))
    ours = make_mlp(10, 5, 1, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(manual.parameters(), ours.parameters()))


def test_make_mlp_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    make_mlp(3, 4, 2, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_make_mlp_linear_only_and_bad_sizes():
    assert len(make_mlp(4, 2)) == 1
    with pytest.raises(ValueError, match="at least two sizes"):
        make_mlp(4)
    with pytest.raises(TypeError, match="sizes\\[1\\] must be an int"):
        make_mlp(4, 2.5)
    with pytest.raises(ValueError, match="sizes\\[0\\] must be >= 1"):
        make_mlp(0, 2)


# --------------------------------------------------------------------------
# train_step
# --------------------------------------------------------------------------

def test_train_step_returns_loss_before_update_and_matches_manual_loop():
    X, y = torch.randn(8, 10), torch.randn(8, 1)
    a, b = make_mlp(10, 5, 1), make_mlp(10, 5, 1)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.01, momentum=0.9)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.01, momentum=0.9)
    for _ in range(3):
        value = train_step(a, opt_a, nn.MSELoss(), X, y)
        opt_b.zero_grad()
        loss = nn.MSELoss()(b(X), y)
        loss.backward()
        opt_b.step()
        assert type(value) is float and value == loss.item()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_train_step_clears_old_gradients():
    X, y = torch.randn(8, 3), torch.randn(8, 1)
    model = make_mlp(3, 1)
    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0)
    fresh = make_mlp(3, 1)
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), X, y)
    train_step(fresh, torch.optim.SGD(fresh.parameters(), lr=0.1), nn.MSELoss(), X, y)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), fresh.parameters()))


def test_train_step_rejects_bad_arguments():
    model = make_mlp(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    X, y = torch.randn(2, 3), torch.randn(2, 1)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        train_step(lambda x: x, opt, nn.MSELoss(), X, y)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        train_step(model, "sgd", nn.MSELoss(), X, y)
    with pytest.raises(TypeError, match="loss_fn must be a function"):
        train_step(model, opt, 3, X, y)


# --------------------------------------------------------------------------
# accuracy and evaluate
# --------------------------------------------------------------------------

def test_accuracy_values_and_type():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    value = accuracy(logits, torch.tensor([0, 1, 1]))
    assert type(value) is float and value == 2 / 3
    assert accuracy(torch.eye(4), torch.arange(4)) == 1.0


def test_accuracy_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape \\(n, n_classes\\)"):
        accuracy(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="shape \\(n,\\)"):
        accuracy(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="two tensors"):
        accuracy([[1.0]], [0])
    with pytest.raises(ValueError, match="zero examples"):
        accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def test_evaluate_uses_eval_mode_no_grad_and_restores_mode():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))

        def forward(self, x):
            seen.append((torch.is_grad_enabled(), self.training))
            return self.net(x)

    data = _split()
    model = Probe()
    loss, acc = evaluate(model, nn.CrossEntropyLoss(), data.X_val, data.y_val)
    assert seen == [(False, False)] and model.training
    assert type(loss) is float and type(acc) is float and 0 <= acc <= 1
    model.eval()
    evaluate(model, nn.CrossEntropyLoss(), data.X_val, data.y_val)
    assert not model.training
    with torch.no_grad():
        logits = model.net(data.X_val)
    assert loss == nn.CrossEntropyLoss()(logits, data.y_val).item()
    assert acc == accuracy(logits, data.y_val)


def test_evaluate_restores_mode_after_an_error():
    model = make_mlp(4, 3)
    with pytest.raises(RuntimeError):
        evaluate(model, nn.CrossEntropyLoss(), torch.zeros(2, 5), torch.zeros(2).long())
    assert model.training


# --------------------------------------------------------------------------
# train_epoch, fit, lr_sweep
# --------------------------------------------------------------------------

def test_train_epoch_is_one_shuffled_pass_of_train_steps():
    data = _split(n=50)
    a, b = make_mlp(4, 6, 3, seed=1), make_mlp(4, 6, 3, seed=1)
    opt_a = SGD(a.parameters(), lr=0.1, momentum=0.9)
    opt_b = SGD(b.parameters(), lr=0.1, momentum=0.9)
    a.eval()
    losses = train_epoch(a, opt_a, nn.CrossEntropyLoss(), data.X_train, data.y_train,
                         batch_size=8, generator=torch.Generator().manual_seed(2))
    assert a.training and len(losses) == math.ceil(37 / 8)
    manual = [train_step(b, opt_b, nn.CrossEntropyLoss(), xb, yb)
              for xb, yb in iterate_minibatches(data.X_train, data.y_train, 8,
                                                generator=torch.Generator().manual_seed(2))]
    assert losses == manual


def test_fit_is_deterministic_and_identical_to_torch_sgd_with_steplr():
    data = _split(n=80)
    runs = []
    for cls in (SGD, torch.optim.SGD, SGD):
        model = make_mlp(4, 8, 3, seed=0)
        opt = cls(model.parameters(), lr=0.2, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        history = fit(model, opt, nn.CrossEntropyLoss(), data, epochs=5, batch_size=16,
                      seed=3, scheduler=sched)
        runs.append((history, [p.detach().clone() for p in model.parameters()]))
    (h0, p0), (h1, p1), (h2, p2) = runs
    assert isinstance(h0, History)
    assert h0.lr == [0.2, 0.2, 0.1, 0.1, 0.05]
    assert len(h0.batch_loss) == 5 * math.ceil(60 / 16)
    assert len(h0.train_loss) == len(h0.val_loss) == len(h0.val_acc) == 5
    assert h0 == h1 == h2
    assert all(torch.equal(a, b) for a, b in zip(p0, p1))
    assert all(torch.equal(a, b) for a, b in zip(p0, p2))
    assert h0.train_loss[-1] < h0.train_loss[0]


def test_fit_rejects_zero_epochs():
    model = make_mlp(4, 3)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        fit(model, SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), _split(),
            epochs=0)


def test_fit_progress_bar_goes_to_stdout(capsys):
    model = make_mlp(4, 3)
    fit(model, SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), _split(),
        epochs=2, show_progress=True)
    out, err = capsys.readouterr()
    assert "epochs" in out and "2/2" in out and err == ""


def test_progress_wraps_iterables():
    assert list(progress(range(3), disable=True)) == [0, 1, 2]


def test_lr_sweep_fresh_model_per_lr_and_keeps_nan():
    built = []

    def make_model():
        built.append(make_mlp(2, 1, seed=0))
        return built[-1]

    def train(model, lr):
        return [1.0, float("nan")] if lr > 1 else [1.0, lr]

    assert lr_sweep([0.1, 5.0, 0.2], make_model, train)[::2] == [0.1, 0.2]
    assert math.isnan(lr_sweep([5.0], make_model, train)[0])
    assert len(built) == 4 and len({id(m) for m in built}) == 4
    with pytest.raises(TypeError, match="train must be a function"):
        lr_sweep([0.1], make_model, None)
