"""Tests of course.stochastic: closed forms against autograd and numpy, the
noise formulas against simulation, and torch's DataLoader draw order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course import stochastic as sto
from course.data import least_squares, make_loader, make_regression


@pytest.fixture
def problem():
    X, y, _, _ = make_regression(n=50, d=3, noise=0.5, seed=1)
    X, y = X.double(), y.double()
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    b = torch.tensor(0.3, dtype=torch.float64)
    return w, b, X, y


def test_mse_and_gradient_match_autograd(problem):
    w, b, X, y = problem
    w_, b_ = w.clone().requires_grad_(), b.clone().requires_grad_()
    loss = ((X @ w_ + b_ - y) ** 2).mean()
    loss.backward()
    assert sto.mse(w, b, X, y) == pytest.approx(loss.item(), rel=1e-12)
    grad_w, grad_b = sto.mse_gradient(w, b, X, y)
    torch.testing.assert_close(grad_w, w_.grad)
    torch.testing.assert_close(grad_b, b_.grad)
    assert grad_b.shape == ()


def test_per_example_gradients_average_to_full_gradient(problem):
    w, b, X, y = problem
    G = sto.per_example_gradients(w, b, X, y)
    assert G.shape == (50, 4)
    grad_w, grad_b = sto.mse_gradient(w, b, X, y)
    torch.testing.assert_close(G.mean(0), torch.cat([grad_w, grad_b[None]]))


def test_minibatch_indices_partition_and_generator():
    g = torch.Generator().manual_seed(3)
    state = torch.random.get_rng_state()
    batches = sto.minibatch_indices(10, 4, g)
    assert torch.equal(state, torch.random.get_rng_state())
    assert [len(i) for i in batches] == [4, 4, 2]
    assert all(i.dtype == torch.int64 for i in batches)
    assert torch.equal(torch.cat(batches),
                       torch.randperm(10, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(10))
    second = sto.minibatch_indices(10, 4, g)
    assert not torch.equal(torch.cat(second), torch.cat(batches))


@pytest.mark.parametrize("args, error", [
    ((0, 2, torch.Generator()), ValueError),
    ((5, 0, torch.Generator()), ValueError),
    ((5, 2, 0), TypeError),
    ((5.0, 2, torch.Generator()), TypeError),
])
def test_minibatch_indices_bad_input(args, error):
    with pytest.raises(error):
        sto.minibatch_indices(*args)


def test_minibatch_gradient_numpy(problem):
    w, b, X, y = problem
    idx = torch.tensor([4, 9, 1])
    Xn, yn = X.numpy()[[4, 9, 1]], y.numpy()[[4, 9, 1]]
    r = Xn @ w.numpy() + b.item() - yn
    grad_w, grad_b = sto.minibatch_gradient(w, b, X, y, idx)
    np.testing.assert_allclose(grad_w.numpy(), 2 * Xn.T @ r / 3, rtol=1e-12)
    np.testing.assert_allclose(grad_b.item(), 2 * r.mean(), rtol=1e-12)


def test_sgd_epoch_steps_and_does_not_modify_inputs(problem):
    w, b, X, y = problem
    w0, b0 = w.clone(), b.clone()
    g = torch.Generator().manual_seed(0)
    new_w, new_b = sto.sgd_epoch(w, b, X, y, 0.05, 8, g)
    assert torch.equal(w, w0) and torch.equal(b, b0)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0)).numpy()
    wn, bn = w.numpy().copy(), b.item()
    Xn, yn = X.numpy(), y.numpy()
    for start in range(0, 50, 8):
        i = perm[start:start + 8]
        r = Xn[i] @ wn + bn - yn[i]
        wn, bn = wn - 0.05 * 2 * Xn[i].T @ r / len(i), bn - 0.05 * 2 * r.mean()
    np.testing.assert_allclose(new_w.numpy(), wn, rtol=1e-12)
    assert new_b.item() == pytest.approx(bn, rel=1e-12)


def test_sgd_epochs_converge_to_least_squares():
    X, y, _, _ = make_regression(n=200, d=3, noise=0.1, seed=2)
    w_star, b_star = least_squares(X, y)
    w, b = torch.zeros(3), torch.zeros(())
    g = torch.Generator().manual_seed(0)
    for epoch in range(60):
        w, b = sto.sgd_epoch(w, b, X, y, sto.lr_schedule(epoch, 0.05, 0.5), 10, g)
    assert sto.mse(w, b, X, y) - sto.mse(w_star, b_star, X, y) < 1e-4


def test_lr_schedule_values_and_torch_lambda_lr():
    assert sto.lr_schedule(0, 0.1, 0.5) == 0.1
    assert sto.lr_schedule(4, 0.1, 0.5) == pytest.approx(0.1 / 3)
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 / (1 + 0.5 * t))
    for step in range(5):
        assert opt.param_groups[0]["lr"] == pytest.approx(sto.lr_schedule(step, 0.1, 0.5),
                                                          rel=1e-15)
        opt.step()
        sched.step()


@pytest.mark.parametrize("args", [(-1, 0.1, 0.5), (0, -0.1, 0.5), (0, 0.1, -1.0),
                                  (0.5, 0.1, 0.5)])
def test_lr_schedule_bad_input(args):
    with pytest.raises((TypeError, ValueError)):
        sto.lr_schedule(*args)


def test_minibatch_variance_matches_simulation(problem):
    w, b, X, y = problem
    G = sto.per_example_gradients(w, b, X, y)
    full = G.mean(0)
    sigma2 = float(((G - full) ** 2).sum(1).mean())
    g = torch.Generator().manual_seed(0)
    for batch_size in (1, 5, 25, 50):
        sq = [float(((G[torch.randperm(50, generator=g)[:batch_size]].mean(0) - full)
                     ** 2).sum()) for _ in range(4000)]
        predicted = sto.minibatch_variance(sigma2, 50, batch_size)
        assert np.mean(sq) == pytest.approx(predicted, rel=0.08, abs=1e-12)


def test_minibatch_variance_bad_input():
    with pytest.raises(ValueError):
        sto.minibatch_variance(1.0, 10, 11)


def test_noise_floor_matches_simulation():
    X, y, _, _ = make_regression(n=400, d=3, noise=0.5, seed=0)
    X, y = X.double(), y.double()
    w_star, b_star = least_squares(X, y)
    w_star, b_star = w_star.double(), b_star.double()
    loss_star = sto.mse(w_star, b_star, X, y)
    sigma2 = float((sto.per_example_gradients(w_star, b_star, X, y) ** 2).sum(1).mean())
    g = torch.Generator().manual_seed(0)
    lr, batch_size = 0.02, 2
    w, b = w_star.clone(), b_star.clone()
    excess = []
    for _ in range(40):
        w, b = sto.sgd_epoch(w, b, X, y, lr, batch_size, g)
        excess.append(sto.mse(w, b, X, y) - loss_star)
    predicted = sto.noise_floor(lr, batch_size, sigma2)
    assert np.mean(excess[5:]) == pytest.approx(predicted, rel=0.3)


def test_dataloader_draw_order_is_what_lesson_03_teaches():
    """Per epoch make_loader draws a base seed, the order, and a discarded randperm."""
    n, batch_size = 10, 4
    X, y = torch.arange(float(n)), torch.arange(n)
    loader = make_loader(X, y, batch_size, seed=7)
    g = torch.Generator().manual_seed(7)
    for _ in range(3):
        torch.empty((), dtype=torch.int64).random_(generator=g)
        expected = sto.minibatch_indices(n, batch_size, g)
        torch.randperm(n, generator=g)
        got = [yb for _, yb in loader]
        assert all(torch.equal(a, e) for a, e in zip(got, expected))


def test_averaging_batches_independent_and_within_one_epoch():
    """Lesson 03's 1/sqrt(K) demo: K batch gradients of different epochs
    average to variance c^2 / K; K batches of one epoch are one batch of
    size * K without replacement (the finite-population factor in batches)."""
    X, y, _, _ = make_regression(n=200, d=2, noise=0.5, seed=3)
    w, b = torch.zeros(2), torch.zeros(())
    G = sto.per_example_gradients(w, b, X, y).double()
    grad = G.mean(0)
    sigma2 = float(((G - grad) ** 2).sum(1).mean())
    n, size, epochs = 200, 10, 2000
    g = torch.Generator().manual_seed(0)
    E = torch.stack([G[torch.cat(sto.minibatch_indices(n, size, g))].view(20, size, -1).mean(1)
                     for _ in range(epochs)])
    c2 = sto.minibatch_variance(sigma2, n, size)
    for K in (1, 4, 10, 20):
        m = epochs // K
        independent = E[:m * K].reshape(m, K, 20, -1).mean(1)
        one_epoch = E[:, :(20 // K) * K].reshape(epochs, 20 // K, K, -1).mean(2)
        var_ind = float(((independent - grad) ** 2).sum(-1).mean())
        var_one = float(((one_epoch - grad) ** 2).sum(-1).mean())
        assert var_ind == pytest.approx(c2 / K, rel=0.1)
        assert var_one == pytest.approx(c2 / K * (20 - K) / 19, rel=0.1, abs=1e-9)
        assert var_one == pytest.approx(sto.minibatch_variance(sigma2, n, size * K),
                                        rel=0.1, abs=1e-9)


def _plateau(X, y, lr, batch_size, epochs, independent, seed):
    w_star, b_star = least_squares(X, y)
    loss_star = sto.mse(w_star.double(), b_star.double(), X, y)
    g = torch.Generator().manual_seed(seed)
    w, b = torch.zeros(X.shape[1], dtype=X.dtype), torch.zeros((), dtype=X.dtype)
    n, excess = len(y), []
    for _ in range(epochs):
        batches = ([torch.randint(n, (batch_size,), generator=g)
                    for _ in range(n // batch_size)] if independent
                   else sto.minibatch_indices(n, batch_size, g))
        for idx in batches:
            grad_w, grad_b = sto.minibatch_gradient(w, b, X, y, idx)
            w, b = w - lr * grad_w, b - lr * grad_b
        excess.append(sto.mse(w, b, X, y) - loss_star)
    return float(np.mean(excess[epochs // 4:]))


def test_shuffled_epochs_of_few_small_steps_end_below_the_floor():
    """Lesson 03's written question: with eta * steps per epoch small, shuffled
    epochs cancel most of the batch noise; independent batches sit at the floor."""
    X, y, _, _ = make_regression(n=400, d=3, noise=0.5, seed=0)
    X, y = X.double(), y.double()
    w_star, b_star = least_squares(X, y)
    sigma2 = float((sto.per_example_gradients(w_star.double(), b_star.double(), X, y) ** 2)
                   .sum(1).mean())
    lr, batch_size = 0.02, 20                      # 20 steps per epoch: eta * steps = 0.4
    floor = sto.noise_floor(lr, batch_size, sigma2)
    independent = np.mean([_plateau(X, y, lr, batch_size, 80, True, s) for s in range(3)])
    shuffled = np.mean([_plateau(X, y, lr, batch_size, 80, False, s) for s in range(3)])
    assert independent == pytest.approx(floor, rel=0.3)
    assert shuffled < floor / 5
