r"""Mini-batch stochastic gradient descent on linear regression (lesson 3).

The model is $\hat y = x^\top w + b$ and the loss on a set of examples $I$ is
the mean squared error

$$L_I(w, b) = \frac{1}{|I|} \sum_{i \in I} (x_i^\top w + b - y_i)^2 ,$$

whose gradient is the average of the per-example gradients
$\nabla \ell_i = 2 r_i\,(x_i, 1)$ with the residual $r_i = x_i^\top w + b - y_i$.
Everything random draws from a ``torch.Generator`` passed in by the caller;
the global random state is never touched.

- :func:`mse`, :func:`mse_gradient`, :func:`per_example_gradients` -- the
  loss and its gradients, in closed form.
- :func:`minibatch_indices`, :func:`minibatch_gradient`, :func:`sgd_epoch`,
  :func:`lr_schedule` -- the reference answers of the lesson's exercises.
- :func:`minibatch_variance`, :func:`noise_floor` -- what theory predicts for
  the noise of a mini-batch gradient and the plateau of constant-lr SGD.
"""

from __future__ import annotations

from typing import Any

import torch

from course._validation import require_int, require_real

Tensor = torch.Tensor


def mse(w: Tensor, b: Any, X: Tensor, y: Tensor) -> float:
    r"""$L(w, b) = \frac{1}{n} \sum_i (x_i^\top w + b - y_i)^2$ as a Python float.

    >>> mse(torch.zeros(1), 0.0, torch.ones(2, 1), torch.tensor([1.0, 3.0]))
    5.0
    """
    return float(((X @ w + b - y) ** 2).mean())


def mse_gradient(w: Tensor, b: Any, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    r"""The full-batch gradient of :func:`mse`.

    $$\nabla_w L = \frac{2}{n} X^\top r, \qquad \nabla_b L = \frac{2}{n}
    \sum_i r_i, \qquad r = X w + b - y.$$

    Returns:
        ``(grad_w, grad_b)`` of shapes ``(d,)`` and ``()``.
    """
    r = X @ w + b - y
    return 2 * X.T @ r / len(y), 2 * r.mean()


def per_example_gradients(w: Tensor, b: Any, X: Tensor, y: Tensor) -> Tensor:
    r"""The gradients $\nabla \ell_i = 2 r_i (x_i, 1)$ of every example, one per row.

    Their mean is :func:`mse_gradient` (``w`` part first, ``b`` last).

    Returns:
        A tensor of shape ``(n, d + 1)``.
    """
    r = X @ w + b - y
    return 2 * r[:, None] * torch.cat([X, torch.ones_like(X[:, :1])], dim=1)


def minibatch_indices(n: int, batch_size: int,
                      generator: torch.Generator) -> list[Tensor]:
    """One epoch of shuffled mini-batches of the indices ``0 .. n - 1``.

    One permutation ``torch.randperm(n, generator=generator)`` is cut into
    consecutive slices of ``batch_size``; the last one is smaller when
    ``batch_size`` does not divide ``n``. Every index appears exactly once.

    Args:
        n: the number of examples, at least 1.
        batch_size: examples per batch, at least 1.
        generator: the seeded generator that shuffles (advanced by one draw).

    Returns:
        A list of int64 tensors.

    >>> g = torch.Generator().manual_seed(0)
    >>> [len(i) for i in minibatch_indices(10, 4, g)]
    [4, 4, 2]
    """
    n = require_int(n, "n", minimum=1)
    batch_size = require_int(batch_size, "batch_size", minimum=1)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got "
                        f"{type(generator).__name__}")
    return list(torch.randperm(n, generator=generator).split(batch_size))


def minibatch_gradient(w: Tensor, b: Any, X: Tensor, y: Tensor,
                       idx: Tensor) -> tuple[Tensor, Tensor]:
    r"""The gradient of the MSE on the examples ``idx`` only.

    $$g_B = \frac{1}{|B|} \sum_{i \in B} \nabla \ell_i
    = \Big(\frac{2}{|B|} X_B^\top r_B,\; \frac{2}{|B|} \sum_{i \in B} r_i\Big).$$

    Returns:
        ``(grad_w, grad_b)`` of shapes ``(d,)`` and ``()``.
    """
    return mse_gradient(w, b, X[idx], y[idx])


def sgd_epoch(w: Tensor, b: Tensor, X: Tensor, y: Tensor, lr: float,
              batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    r"""One epoch of mini-batch SGD: one step $\theta \leftarrow \theta - \eta\, g_B$
    per batch of :func:`minibatch_indices`.

    The tensors passed in are not modified.

    Returns:
        The new ``(w, b)``.
    """
    lr = require_real(lr, "lr", minimum=0.0)
    for idx in minibatch_indices(len(y), batch_size, generator):
        grad_w, grad_b = minibatch_gradient(w, b, X, y, idx)
        w, b = w - lr * grad_w, b - lr * grad_b
    return w, b


def lr_schedule(step: int, lr0: float, decay: float) -> float:
    r"""Inverse-time decay $\eta_t = \eta_0 / (1 + \text{decay} \cdot t)$.

    The schedule starts at $\eta_0$ for $t = 0$ and decays like $1/t$.

    >>> lr_schedule(0, 0.1, 0.5), lr_schedule(2, 0.1, 0.5)
    (0.1, 0.05)
    """
    step = require_int(step, "step")
    lr0 = require_real(lr0, "lr0", minimum=0.0)
    decay = require_real(decay, "decay", minimum=0.0)
    return lr0 / (1 + decay * step)


def minibatch_variance(total_variance: float, n: int, batch_size: int) -> float:
    r"""$\mathbb{E}\lVert g_B - \nabla L \rVert^2$ for a batch drawn without replacement.

    $$\frac{\sigma^2}{B} \cdot \frac{n - B}{n - 1}, \qquad
    \sigma^2 = \frac{1}{n} \sum_i \lVert \nabla \ell_i - \nabla L \rVert^2 .$$

    The second factor (the finite-population correction) is close to 1 for
    $B \ll n$ and 0 for $B = n$, where the "batch" is the whole data set.

    >>> minibatch_variance(2.0, 101, 1), minibatch_variance(2.0, 101, 101)
    (2.0, 0.0)
    """
    total_variance = require_real(total_variance, "total_variance", minimum=0.0)
    n = require_int(n, "n", minimum=2)
    batch_size = require_int(batch_size, "batch_size", minimum=1)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= n = {n}, got {batch_size}")
    return total_variance / batch_size * (n - batch_size) / (n - 1)


def noise_floor(lr: float, batch_size: int, total_variance: float) -> float:
    r"""The plateau of the excess loss of constant-lr SGD, to first order in lr.

    Near the minimiser $\theta^*$ of a quadratic loss with Hessian $H$, with
    batches drawn independently of each other and $B \ll n$ (so the gradient
    noise of a step has covariance $\Sigma / B$), the iterates settle into a
    cloud with covariance $P$ solving $HP + PH = \eta\, \Sigma / B$ (to first
    order in $\eta$), where $\Sigma$ is the covariance of the per-example
    gradients at $\theta^*$. Taking the trace gives the mean excess loss
    $\tfrac12 \operatorname{tr}(HP) = \eta \operatorname{tr}(\Sigma) / (4B)$:
    proportional to $\eta / B$. The dropped terms of order $\eta^2$ raise the
    plateau; shuffled epochs (batches without replacement within an epoch)
    lower it, far below the formula when an epoch is a few small steps.

    Args:
        lr: the constant learning rate $\eta$.
        batch_size: the batch size $B$.
        total_variance: $\operatorname{tr}(\Sigma)$, the mean squared norm of
            the per-example gradients at the minimiser.

    >>> noise_floor(0.1, 5, 2.0)
    0.01
    """
    lr = require_real(lr, "lr", minimum=0.0)
    batch_size = require_int(batch_size, "batch_size", minimum=1)
    total_variance = require_real(total_variance, "total_variance", minimum=0.0)
    return lr * total_variance / (4 * batch_size)
