r"""Training a model with an optimizer: the loop of lesson 7, in reference form.

One step of training on a mini-batch $B$ with loss $L_B(\theta)$ is

$$\ell = L_B(\theta_t) \quad\text{(forward)}, \qquad
g = \nabla_\theta L_B(\theta_t) \quad\text{(backward)}, \qquad
\theta_{t+1} = \mathrm{update}(\theta_t, g) \quad\text{(optimizer.step)},$$

and the number a training loop reports for that step is $\ell$, the loss
*before* the update. An epoch is one such step per mini-batch of a shuffled
pass over the training set; evaluation computes the loss (and accuracy) on
held-out data with dropout and friends switched off and without building an
autograd graph.

- :func:`train_step`, :func:`accuracy`, :func:`evaluate`, :func:`train_epoch`,
  :func:`lr_sweep` -- the reference answers of the lesson's exercises.
- :func:`make_mlp` -- a small multi-layer perceptron whose initial weights
  depend only on a seed.
- :func:`fit` and :class:`History` -- the whole loop (epochs, validation,
  an optional learning-rate scheduler and progress bar) with its records.
- :func:`progress` -- a text progress bar (tqdm) that also works headless.

Everything random draws from a seed or a ``torch.Generator`` given by the
caller; the global random state is never touched.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from course._validation import require_callable, require_int

__all__ = [
    "History",
    "accuracy",
    "evaluate",
    "fit",
    "lr_sweep",
    "make_mlp",
    "progress",
    "train_epoch",
    "train_step",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


def make_mlp(*sizes: int, seed: int = 0) -> nn.Sequential:
    r"""A multi-layer perceptron ``Linear -> ReLU -> ... -> Linear``, seeded.

    ``make_mlp(64, 32, 10)`` is ``nn.Sequential(nn.Linear(64, 32), nn.ReLU(),
    nn.Linear(32, 10))``. Its weights are torch's default initialisation
    (uniform in $\pm 1/\sqrt{\text{fan\_in}}$) drawn right after
    ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``, so the same
    seed always gives the same model and the global random state is left
    exactly as it was.

    Args:
        *sizes: the layer widths, input first; at least two.
        seed: the seed of the initial weights (default: 0).

    Returns:
        The model, in training mode.

    >>> make_mlp(4, 3, 2)
    Sequential(
      (0): Linear(in_features=4, out_features=3, bias=True)
      (1): ReLU()
      (2): Linear(in_features=3, out_features=2, bias=True)
    )
    """
    if len(sizes) < 2:
        raise ValueError(f"make_mlp needs at least two sizes (input, output), got {sizes}")
    for i, size in enumerate(sizes):
        require_int(size, f"sizes[{i}]", minimum=1)
    seed = require_int(seed, "seed")
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
               X: Tensor, y: Tensor) -> float:
    r"""One optimisation step on the batch ``(X, y)``; returns the loss *before* it.

    In this order: ``optimizer.zero_grad()`` (forget the previous gradients,
    which ``backward`` would otherwise add to), $\ell = $ ``loss_fn(model(X), y)``,
    ``backward()`` (fills ``p.grad`` with $\nabla_\theta \ell$), and
    ``optimizer.step()`` (updates the parameters from ``p.grad``).

    Args:
        model: the model, called as ``model(X)``.
        optimizer: an optimizer over the model's parameters.
        loss_fn: the loss, called as ``loss_fn(prediction, y)``.
        X: the inputs of the batch.
        y: the targets of the batch.

    Returns:
        $\ell = L_B(\theta_t)$, the batch loss before the update, as a float.
    """
    _check_training_args(model, optimizer, loss_fn)
    optimizer.zero_grad()
    loss = loss_fn(model(X), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def accuracy(logits: Tensor, y: Tensor) -> float:
    r"""The fraction of rows whose largest logit is the true class.

    $$\mathrm{acc} = \frac{1}{n} \sum_{i=1}^n
      \mathbb{1}\bigl[\arg\max_k z_{ik} = y_i\bigr] \in [0, 1].$$

    Args:
        logits: scores of shape ``(n, n_classes)``, one row per example.
        y: integer labels of shape ``(n,)``.

    Returns:
        The accuracy as a Python float (a fraction, not a percentage).

    >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]),
    ...          torch.tensor([0, 1, 1]))
    0.6666666666666666
    """
    if not isinstance(logits, Tensor) or not isinstance(y, Tensor):
        raise TypeError("accuracy expects two tensors, logits and y")
    if logits.ndim != 2 or y.shape != logits.shape[:1]:
        raise ValueError(f"logits must have shape (n, n_classes) and y shape (n,), "
                         f"got {tuple(logits.shape)} and {tuple(y.shape)}")
    if len(y) == 0:
        raise ValueError("accuracy of zero examples is undefined")
    return (logits.argmax(dim=1) == y).sum().item() / len(y)


def evaluate(model: nn.Module, loss_fn: LossFn, X: Tensor, y: Tensor,
             ) -> tuple[float, float]:
    r"""Loss and accuracy of ``model`` on ``(X, y)``, without training it.

    The forward pass runs in evaluation mode (``model.eval()``: dropout off,
    batch norm uses its running statistics) and under ``torch.no_grad()`` (no
    autograd graph is built). Afterwards the model is put back in the mode
    it was in, ``model.train(was_training)``.

    Args:
        model: a classifier returning logits of shape ``(n, n_classes)``.
        loss_fn: the loss, called as ``loss_fn(logits, y)``.
        X: the inputs.
        y: integer labels of shape ``(n,)``.

    Returns:
        ``(loss, accuracy)``, two floats.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    require_callable(loss_fn, "loss_fn")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(X)
            return loss_fn(logits, y).item(), accuracy(logits, y)
    finally:
        model.train(was_training)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                X: Tensor, y: Tensor, *, batch_size: int,
                generator: torch.Generator) -> list[float]:
    """One epoch: :func:`train_step` on each mini-batch of a shuffled pass.

    Puts the model in training mode first (``model.train()``), then visits the
    batches of :func:`course.data.iterate_minibatches` with ``shuffle=True``
    and the given ``generator`` (so the order of the examples is
    ``torch.randperm(len(X), generator=generator)``).

    Args:
        model: the model.
        optimizer: an optimizer over the model's parameters.
        loss_fn: the loss.
        X: all training inputs.
        y: all training targets.
        batch_size: examples per batch; the last batch may be smaller.
        generator: a seeded ``torch.Generator``, advanced by one permutation.

    Returns:
        The loss of every batch before its update, as a list of floats
        (``ceil(len(X) / batch_size)`` of them).
    """
    from course.data import iterate_minibatches

    _check_training_args(model, optimizer, loss_fn)
    model.train()
    return [train_step(model, optimizer, loss_fn, X_batch, y_batch)
            for X_batch, y_batch in iterate_minibatches(
                X, y, batch_size, shuffle=True, generator=generator)]


def lr_sweep(lrs: Sequence[float], make_model: Callable[[], nn.Module],
             train: Callable[[nn.Module, float], Sequence[float]]) -> list[float]:
    """The final loss of one training run per learning rate, each from the same start.

    For every ``lr`` in order: a FRESH model from ``make_model()`` (which must
    give the same initial weights on every call, e.g. a seeded
    :func:`make_mlp`), then ``history = train(model, lr)``, and the last value
    of that history. Diverged runs keep their ``nan``/``inf``, so the result
    lines up with ``lrs`` (plots leave them out).

    Args:
        lrs: the learning rates.
        make_model: builds a new model.
        train: trains a model with a learning rate and returns its loss history.

    Returns:
        ``[train(make_model(), lr)[-1] for lr in lrs]`` as floats.
    """
    require_callable(make_model, "make_model")
    require_callable(train, "train")
    finals = []
    for lr in lrs:
        history = train(make_model(), lr)
        finals.append(float(history[-1]))
    return finals


@dataclass
class History:
    """What :func:`fit` records.

    Attributes:
        batch_loss: the loss of every mini-batch before its update.
        train_loss: per epoch, the mean of its batch losses.
        val_loss: per epoch, the validation loss after the epoch.
        val_acc: per epoch, the validation accuracy after the epoch.
        lr: per epoch, the learning rate of the first parameter group used
            during that epoch.
    """

    batch_loss: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
        data: Any, *, epochs: int, batch_size: int = 64, seed: int = 0,
        scheduler: Any = None, show_progress: bool = False) -> History:
    """Train for ``epochs`` epochs with validation after each one.

    Each epoch is :func:`train_epoch` (batches shuffled by a generator seeded
    once with ``seed``), then :func:`evaluate` on the validation set, then
    ``scheduler.step()`` if a scheduler is given (torch's convention: once
    per epoch, after the optimizer steps). A model and optimizer built the
    same way therefore give the same history on every run.

    Args:
        model: the classifier.
        optimizer: an optimizer over its parameters.
        loss_fn: the loss.
        data: a :class:`course.data.Split` (``X_train, y_train, X_val, y_val``).
        epochs: the number of epochs, at least 1.
        batch_size: examples per batch (default: 64).
        seed: the seed of the shuffling generator (default: 0).
        scheduler: a ``torch.optim.lr_scheduler`` over ``optimizer``
            (default: None).
        show_progress: whether to show a progress bar (default: False).

    Returns:
        The :class:`History` of the run.
    """
    epochs = require_int(epochs, "epochs", minimum=1)
    generator = torch.Generator().manual_seed(require_int(seed, "seed"))
    history = History()
    bar = progress(range(epochs), desc="epochs", disable=not show_progress)
    for _ in bar:
        history.lr.append(float(optimizer.param_groups[0]["lr"]))
        losses = train_epoch(model, optimizer, loss_fn, data.X_train, data.y_train,
                             batch_size=batch_size, generator=generator)
        val_loss, val_acc = evaluate(model, loss_fn, data.X_val, data.y_val)
        history.batch_loss += losses
        history.train_loss.append(sum(losses) / len(losses))
        history.val_loss.append(val_loss)
        history.val_acc.append(val_acc)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}",
                        val_acc=f"{val_acc:.3f}", refresh=False)
        if scheduler is not None:
            scheduler.step()
    return history


def progress(iterable: Iterable[Any], *, desc: str | None = None,
             total: int | None = None, disable: bool = False) -> Any:
    """A text progress bar over ``iterable`` (``tqdm``), written to stdout.

    Plain text rather than a Jupyter widget, so it looks the same in
    JupyterLab, a terminal and a stored notebook. Its output contains
    timings: a notebook cell that shows one should start with
    ``# NBVAL_IGNORE_OUTPUT`` and print its results in another cell.

    Args:
        iterable: what to loop over.
        desc: a label shown before the bar (default: None).
        total: the number of items if ``len(iterable)`` does not work
            (default: None).
        disable: whether to show nothing (default: False).

    Returns:
        A ``tqdm`` object: iterate over it; ``bar.set_postfix(loss=...)``
        shows extra values.
    """
    from tqdm.std import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=disable, file=sys.stdout,
                leave=True, dynamic_ncols=False, ncols=90, mininterval=0.2)


def _check_training_args(model: Any, optimizer: Any, loss_fn: Any) -> None:
    """Clear errors for the usual argument mix-ups of the training functions."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")
    require_callable(loss_fn, "loss_fn")

