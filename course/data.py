r"""Deterministic data sets and mini-batches for lessons 2, 3 and 7.

Everything random here draws from its own seeded generator
(``torch.Generator().manual_seed(seed)``); the global random state is never
touched, so running a cell twice, or in another order, gives the same data.

- :func:`make_regression` and :func:`least_squares` -- a linear model
  $y = X w + b + \sigma \varepsilon$ and its closed-form fit (lesson 2).
- :func:`make_classification` -- Gaussian blobs.
- :func:`load_digits` -- scikit-learn's bundled 8x8 digits, split and
  standardised (lesson 7; no download).
- :func:`iterate_minibatches` and :func:`make_loader` -- shuffled
  mini-batches, by hand and with a ``DataLoader`` (lesson 3).
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from course._validation import require_int, require_real


class Split(NamedTuple):
    """A train/validation split of a data set (torch tensors)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor


def make_regression(n: int = 100, d: int = 3, *, noise: float = 0.1,
                    seed: int = 0) -> tuple[torch.Tensor, ...]:
    r"""A synthetic linear-regression problem $y = X w + b + \sigma\varepsilon$.

    The inputs $X$, the true weights $w$ and bias $b$ and the noise
    $\varepsilon$ are all standard normal, drawn from ``seed``.

    Args:
        n: the number of examples (default: 100).
        d: the number of features (default: 3).
        noise: the noise level $\sigma \ge 0$ (default: 0.1).
        seed: the seed (default: 0).

    Returns:
        ``(X, y, w_true, b_true)``, float32 tensors of shapes ``(n, d)``,
        ``(n,)``, ``(d,)`` and ``()``.

    >>> X, y, w_true, b_true = make_regression(n=5, d=2)
    >>> tuple(X.shape), tuple(y.shape), tuple(w_true.shape), tuple(b_true.shape)
    ((5, 2), (5,), (2,), ())
    """
    n = require_int(n, "n", minimum=1)
    d = require_int(d, "d", minimum=1)
    noise = require_real(noise, "noise", minimum=0.0)
    gen = _generator(seed)
    X = torch.randn(n, d, generator=gen)
    w_true = torch.randn(d, generator=gen)
    b_true = torch.randn((), generator=gen)
    y = X @ w_true + b_true + noise * torch.randn(n, generator=gen)
    return X, y, w_true, b_true


def make_classification(n: int = 200, d: int = 2, n_classes: int = 2, *,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Gaussian blobs: class $k$ is $\mathcal{N}(c_k, I)$ around a centre $c_k$.

    The centres are drawn from $\mathcal{N}(0, 3^2 I)$, and the classes are
    balanced (sizes differ by at most one) and shuffled.

    Args:
        n: the number of examples (default: 200).
        d: the number of features (default: 2).
        n_classes: the number of classes, at least 2 (default: 2).
        seed: the seed (default: 0).

    Returns:
        ``(X, y)``: float32 inputs of shape ``(n, d)`` and int64 labels in
        ``0 .. n_classes - 1`` of shape ``(n,)``.

    >>> X, y = make_classification(n=6, n_classes=3)
    >>> sorted(y.tolist())
    [0, 0, 1, 1, 2, 2]
    """
    n = require_int(n, "n", minimum=1)
    d = require_int(d, "d", minimum=1)
    n_classes = require_int(n_classes, "n_classes", minimum=2)
    gen = _generator(seed)
    centers = 3.0 * torch.randn(n_classes, d, generator=gen)
    y = (torch.arange(n) % n_classes)[torch.randperm(n, generator=gen)]
    X = centers[y] + torch.randn(n, d, generator=gen)
    return X, y


def least_squares(X: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The closed-form least-squares fit $\min_{w, b} \lVert X w + b - y \rVert^2$.

    Solves for $(w, b)$ with ``torch.linalg.lstsq`` on $[X, \mathbf{1}]$ in
    float64, the answer gradient descent should reach in lesson 2.

    Args:
        X: inputs of shape ``(n, d)`` (tensor or array).
        y: targets of shape ``(n,)``.

    Returns:
        ``(w, b)``: float32 tensors of shapes ``(d,)`` and ``()``.

    >>> X, y, w_true, b_true = make_regression(noise=0.0)
    >>> w, b = least_squares(X, y)
    >>> torch.allclose(w, w_true, atol=1e-5), torch.allclose(b, b_true, atol=1e-5)
    (True, True)
    """
    X, y = _check_xy(X, y)
    if X.ndim != 2 or y.ndim != 1:
        raise ValueError(f"X must have shape (n, d) and y shape (n,), got "
                         f"{tuple(X.shape)} and {tuple(y.shape)}")
    ones = torch.ones(len(X), 1, dtype=torch.float64)
    A = torch.cat([X.double(), ones], dim=1)
    solution = torch.linalg.lstsq(A, y.double().unsqueeze(1)).solution[:, 0]
    return solution[:-1].float(), solution[-1].float()


def load_digits(*, val_fraction: float = 0.2, seed: int = 0,
                standardize: bool = True) -> Split:
    r"""scikit-learn's bundled digits (1797 images of 8x8 pixels, 10 classes).

    The data ship inside scikit-learn, so nothing is downloaded. Examples are
    split by a permutation drawn from ``seed``. With ``standardize=True`` each
    pixel becomes $(x - m)/s$ with the *training* mean $m$ and standard
    deviation $s$ (pixels that are constant in training get $s = 1$), so no
    information leaks from the validation set.

    Args:
        val_fraction: the share of examples held out, in $(0, 1)$
            (default: 0.2).
        seed: the seed of the split (default: 0).
        standardize: whether to standardise the pixels (default: True).

    Returns:
        A :class:`Split` of float32 inputs of shape ``(m, 64)`` and int64
        labels of shape ``(m,)``.
    """
    from sklearn.datasets import load_digits as sklearn_digits  # slow import

    val_fraction = require_real(val_fraction, "val_fraction", minimum=0.0,
                                strict=True)
    if val_fraction >= 1:
        raise ValueError(f"val_fraction must be < 1, got {val_fraction}")
    X, y = sklearn_digits(return_X_y=True)
    order = torch.randperm(len(X), generator=_generator(seed)).numpy()
    n_val = min(max(1, round(val_fraction * len(X))), len(X) - 1)
    val, train = order[:n_val], order[n_val:]
    X_train, X_val = X[train], X[val]
    if standardize:
        X_train, X_val = _standardize(X_train, X_val)
    return Split(_floats(X_train), torch.from_numpy(y[train]).long(),
                 _floats(X_val), torch.from_numpy(y[val]).long())


def iterate_minibatches(X: Any, y: Any, batch_size: int, *, shuffle: bool = True,
                        generator: torch.Generator | None = None,
                        drop_last: bool = False,
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield one epoch of mini-batches ``(X_batch, y_batch)``.

    With ``shuffle=True`` the order is ``torch.randperm(n, generator=generator)``,
    so every example appears exactly once per epoch. The arguments are checked
    at once, and the permutation is drawn when the function is called, not
    when the first batch is requested.

    Args:
        X: inputs, one example per row (tensor or array).
        y: targets, same length as ``X``.
        batch_size: examples per batch, at least 1; the last batch is smaller
            when ``batch_size`` does not divide ``n``.
        shuffle: whether to shuffle (default: True).
        generator: a seeded ``torch.Generator``; required when shuffling
            (default: None).
        drop_last: whether to drop a smaller last batch (default: False).

    Returns:
        An iterator over the batches of one epoch.

    >>> X, y = torch.arange(5.0), torch.arange(5)
    >>> [b.tolist() for b, _ in iterate_minibatches(X, y, 2, shuffle=False)]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    """
    X, y = _check_xy(X, y)
    batch_size = require_int(batch_size, "batch_size", minimum=1)
    order = _epoch_order(len(X), shuffle, generator)
    stop = len(X) - len(X) % batch_size if drop_last else len(X)
    return ((X[order[i:i + batch_size]], y[order[i:i + batch_size]])
            for i in range(0, stop, batch_size))


def make_loader(X: Any, y: Any, batch_size: int, *, seed: int = 0,
                shuffle: bool = True) -> DataLoader:
    """A ``DataLoader`` over ``(X, y)`` that shuffles with its own seeded generator.

    Each pass over the loader is one epoch with a new order, and the sequence
    of orders is the same every time the loader is rebuilt with the same
    ``seed``. (It is not the same order as :func:`iterate_minibatches`: the
    loader draws from its generator differently.)

    Args:
        X: inputs, one example per row (tensor or array).
        y: targets, same length as ``X``.
        batch_size: examples per batch, at least 1.
        seed: the seed of the shuffling generator (default: 0).
        shuffle: whether to shuffle (default: True).

    Returns:
        The data loader.
    """
    X, y = _check_xy(X, y)
    batch_size = require_int(batch_size, "batch_size", minimum=1)
    return DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=shuffle,
                      generator=_generator(seed))


def _generator(seed: int) -> torch.Generator:
    """A fresh CPU generator seeded with ``seed`` (the global RNG is untouched)."""
    seed = require_int(seed, "seed")
    return torch.Generator().manual_seed(seed)


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    """``value`` (tensor, array or list) as a tensor, keeping integer labels."""
    if not isinstance(value, torch.Tensor):
        array = np.asarray(value if isinstance(value, (np.ndarray, list, tuple))
                           else None)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a tensor or a numeric array, got "
                            f"{type(value).__name__}")
        value = torch.as_tensor(array)
    if value.ndim == 0:
        raise ValueError(f"{name} must have one row per example, got a number")
    return value


def _check_xy(X: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert ``X`` and ``y`` to tensors and check they have the same length."""
    X, y = _as_tensor(X, "X"), _as_tensor(y, "y")
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got len(X) = "
                         f"{len(X)} and len(y) = {len(y)}")
    return X, y


def _epoch_order(n: int, shuffle: bool, generator: torch.Generator | None,
                 ) -> torch.Tensor:
    """The order of the examples in one epoch."""
    if not shuffle:
        return torch.arange(n)
    if not isinstance(generator, torch.Generator):
        raise ValueError("shuffle=True needs a seeded generator, e.g. "
                         "generator=torch.Generator().manual_seed(0), so that "
                         "every run sees the same batches")
    return torch.randperm(n, generator=generator)


def _standardize(X_train: np.ndarray, X_val: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
    r"""Scale both sets by the training mean and std ($s = 1$ where $s < 10^{-6}$)."""
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)
    return (X_train - mean) / std, (X_val - mean) / std


def _floats(X: np.ndarray) -> torch.Tensor:
    """A float32 tensor copy of ``X``."""
    return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
