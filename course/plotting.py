"""Small matplotlib helpers for the pictures of the course.

Each helper draws on ``ax`` if given, otherwise on a new small figure, and
returns the Axes so a notebook can add to it. None of them calls
``plt.show()`` or picks a backend, so they also work headless (in tests and
in nbval runs).

- :func:`plot_loss` and :func:`compare_optimizers` -- loss against step.
- :func:`plot_path_1d` -- iterates on the curve of a 1-D function.
- :func:`plot_paths_2d` -- trajectories on the contour lines of a 2-D function.
- :func:`plot_lr_sweep` -- final loss against learning rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from course._validation import require_callable, require_int

FIGSIZE = (5, 3.5)
GRID_POINTS = 200  # per axis, for contour plots and function curves


def plot_loss(losses: Any, *, labels: str | Sequence[str] | None = None,
              ax: Axes | None = None, log: bool = True,
              title: str | None = None) -> Axes:
    """Plot one or several loss curves against the step number.

    Non-finite values (a divergent run) are left out of the line. The y-axis
    is logarithmic when ``log=True`` and every finite value is positive,
    linear otherwise.

    Args:
        losses: one curve (a sequence of numbers), a list of curves, or a dict
            ``{label: curve}``.
        labels: a label for one curve, or one label per curve of a list
            (default: None).
        ax: the Axes to draw on (default: a new figure).
        log: whether to use a log y-axis (default: True).
        title: the title (default: "Loss").

    Returns:
        The Axes.
    """
    curves = _as_curves(losses, labels)
    ax = _axes(ax)
    for label, values in curves.items():
        ax.plot(np.arange(len(values)), values, label=label)
    return _finish_loss_axes(ax, curves, log, title or "Loss")


def compare_optimizers(histories: Mapping[str, Any], *,
                       ax: Axes | None = None,
                       title: str | None = None) -> Axes:
    """Plot the loss histories of several optimizers on one log-scale Axes.

    The first curve is thick and solid, later ones thinner and dashed or
    dotted, so two identical histories (the goal when comparing with
    ``torch.optim.SGD``) stay visible on top of each other.

    Args:
        histories: ``{name: loss history}``, at least one.
        ax: the Axes to draw on (default: a new figure).
        title: the title (default: "Optimizers compared").

    Returns:
        The Axes.
    """
    if not isinstance(histories, Mapping):
        raise TypeError("histories must be a dict {name: loss history}, got "
                        f"{type(histories).__name__}")
    curves = _as_curves(histories, None)
    ax = _axes(ax)
    styles = ["-", "--", ":", "-."]
    for i, (label, values) in enumerate(curves.items()):
        ax.plot(np.arange(len(values)), values, label=label,
                linestyle=styles[i % len(styles)], linewidth=max(3.0 - i, 1.0))
    return _finish_loss_axes(ax, curves, True, title or "Optimizers compared")


def plot_path_1d(f: Callable[[Any], Any], history: Any, *,
                 ax: Axes | None = None,
                 xlim: tuple[float, float] | None = None,
                 title: str | None = None) -> Axes:
    r"""Draw $f$ and the iterates $(w_t, f(w_t))$ of a 1-D run on it.

    Args:
        f: the objective, called with one float at a time.
        history: the iterates $w_0, w_1, \dots$ (1-D).
        ax: the Axes to draw on (default: a new figure).
        xlim: the range of the curve (default: the finite iterates, padded).
        title: the title (default: "Gradient descent path").

    Returns:
        The Axes, with the lines "f(w)", "iterates", "start" and "end".
    """
    f = require_callable(f, "f")
    history = _float_array(history, "history")
    if history.ndim != 1 or len(history) == 0:
        raise ValueError(f"history must be 1-D and non-empty, got shape "
                         f"{history.shape}")
    lo, hi = xlim if xlim is not None else _padded_range(history)
    grid = np.linspace(lo, hi, GRID_POINTS)
    ax = _axes(ax)
    ax.plot(grid, _values(f, grid), color="0.5", label="f(w)")
    path = _values(f, history)
    ax.plot(history, path, "o-", color="C0", markersize=4, label="iterates")
    ax.plot(history[:1], path[:1], "s", color="C2", markersize=8, label="start")
    ax.plot(history[-1:], path[-1:], "*", color="C3", markersize=12, label="end")
    ax.set(xlabel="w", ylabel="f(w)", title=title or "Gradient descent path")
    ax.legend()
    return ax


def plot_paths_2d(f: Callable[[Any], Any], paths: Any, *,
                  ax: Axes | None = None,
                  xlim: tuple[float, float] = (-2, 2),
                  ylim: tuple[float, float] = (-2, 2), levels: int = 30,
                  log_levels: bool = False, minimum: Any = None,
                  title: str | None = None) -> Axes:
    """Draw the contour lines of a 2-D $f$ and one or many trajectories.

    Args:
        f: the objective. Called once on a grid of shape ``(200, 200, 2)``
            if it accepts such arrays (as :class:`course.functions.Quadratic`
            and :func:`course.functions.rosenbrock` do), otherwise once per
            point of shape ``(2,)``.
        paths: one trajectory of shape ``(T, 2)`` or a dict
            ``{label: trajectory}``.
        ax: the Axes to draw on (default: a new figure).
        xlim: the range of the first coordinate (default: (-2, 2)).
        ylim: the range of the second coordinate (default: (-2, 2)).
        levels: the number of contour levels (default: 30).
        log_levels: space the levels logarithmically, for functions with a
            deep narrow valley like Rosenbrock (default: False).
        minimum: a point to mark with a star (default: None).
        title: the title (default: none).

    Returns:
        The Axes.
    """
    f = require_callable(f, "f")
    levels = require_int(levels, "levels", minimum=2)
    trajectories = _as_paths(paths)
    ax = _axes(ax)
    xx, yy = np.meshgrid(np.linspace(*xlim, GRID_POINTS),
                         np.linspace(*ylim, GRID_POINTS))
    zz = _grid_values(f, xx, yy)
    ax.contour(xx, yy, zz, levels=_levels(zz, levels, log_levels),
               cmap="viridis", linewidths=0.8)
    for label, path in trajectories.items():
        ax.plot(path[:, 0], path[:, 1], "o-", markersize=3, label=label)
    if minimum is not None:
        ax.plot(*_float_array(minimum, "minimum"), "*", color="k", markersize=14,
                label="minimum")
    ax.set(xlim=xlim, ylim=ylim, xlabel="$w_1$", ylabel="$w_2$", title=title or "")
    if any(label is not None for label in trajectories) or minimum is not None:
        ax.legend()
    return ax


def plot_lr_sweep(lrs: Any, final_losses: Any, *,
                  ax: Axes | None = None, logx: bool = True,
                  title: str | None = None, best: bool = True,
                  ) -> Axes:
    """Plot the final loss of a run against its learning rate.

    Diverged runs (``inf``/``nan`` loss) are left out of the line. Both axes
    are logarithmic when possible; with ``best=True`` the learning rate with
    the smallest finite loss is marked with a star.

    Args:
        lrs: the learning rates.
        final_losses: the final loss of each run, same length as ``lrs``.
        ax: the Axes to draw on (default: a new figure).
        logx: whether to use a log x-axis; needs positive ``lrs``
            (default: True).
        title: the title (default: "Learning-rate sweep").
        best: whether to mark the best learning rate (default: True).

    Returns:
        The Axes.
    """
    lrs = _float_array(lrs, "lrs")
    losses = _float_array(final_losses, "final_losses")
    if lrs.ndim != 1 or lrs.shape != losses.shape or len(lrs) == 0:
        raise ValueError(f"lrs and final_losses must be 1-D of the same non-zero "
                         f"length, got shapes {lrs.shape} and {losses.shape}")
    if logx and np.any(lrs <= 0):
        raise ValueError("logx=True needs positive learning rates; pass logx=False")
    ax = _axes(ax)
    losses = np.where(np.isfinite(losses), losses, np.nan)
    ax.plot(lrs, losses, "o-", label="final loss")
    if best and np.any(np.isfinite(losses)):
        _mark_best(ax, lrs, losses)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if _all_positive(losses) else "linear")
    ax.set(xlabel="learning rate", ylabel="final loss",
           title=title or "Learning-rate sweep")
    ax.legend()
    return ax


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _axes(ax: Axes | None) -> Axes:
    """``ax``, or the Axes of a new small figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    return ax


def _float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 numpy array, with a clear error if it is not numeric."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers, got {type(value).__name__}"
                        ) from None


def _as_curves(losses: Any, labels: str | Sequence[str] | None,
               ) -> dict[str | None, np.ndarray]:
    """Normalise one curve, a list of curves or a dict into ``{label: curve}``."""
    if isinstance(losses, (Mapping, list, tuple)) and len(losses) == 0:
        raise ValueError("no loss curves to plot: losses is empty")
    if isinstance(losses, Mapping):
        named = [(str(k), v) for k, v in losses.items()]
    elif isinstance(losses, (list, tuple)) and np.ndim(losses[0]) > 0:
        names = _label_list(labels, len(losses))
        named = list(zip(names, losses))
    else:
        named = [(_label_list(labels, 1)[0], losses)]
    return {label: _curve(values, label) for label, values in named}


def _label_list(labels: str | Sequence[str] | None, n: int) -> list[str | None]:
    """``n`` labels from ``None``, one string or a sequence of strings."""
    if labels is None:
        return [None] * n
    names = [labels] if isinstance(labels, str) else list(labels)
    if len(names) != n:
        raise ValueError(f"got {len(names)} labels for {n} curves")
    return names


def _curve(values: Any, label: str | None) -> np.ndarray:
    """One loss curve as a 1-D float array with non-finite values set to nan."""
    curve = _float_array(values, f"losses[{label!r}]" if label else "losses")
    if curve.ndim != 1 or len(curve) == 0:
        raise ValueError(f"a loss curve must be 1-D and non-empty, got shape "
                         f"{curve.shape}")
    return np.where(np.isfinite(curve), curve, np.nan)


def _finish_loss_axes(ax: Axes, curves: dict[str | None, np.ndarray],
                      log: bool, title: str) -> Axes:
    """Scale, label and title a loss plot; add a legend if curves are labelled."""
    values = np.concatenate(list(curves.values()))
    ax.set_yscale("log" if log and _all_positive(values) else "linear")
    ax.set(xlabel="step", ylabel="loss", title=title)
    if any(label is not None for label in curves):
        ax.legend()
    return ax


def _mark_best(ax: Axes, lrs: np.ndarray, losses: np.ndarray) -> None:
    """Star the learning rate with the smallest finite loss."""
    i = int(np.nanargmin(losses))
    ax.plot(lrs[i], losses[i], "*", color="C3", markersize=14,
            label=f"best lr = {lrs[i]:.3g}")


def _all_positive(values: np.ndarray) -> bool:
    """Whether the finite values exist and are all positive (log-scale safe)."""
    finite = values[np.isfinite(values)]
    return finite.size > 0 and bool(np.all(finite > 0))


def _as_paths(paths: Any) -> dict[str | None, np.ndarray]:
    """Normalise one trajectory or a dict of them into ``{label: (T, 2) array}``."""
    named = ([(str(k), v) for k, v in paths.items()] if isinstance(paths, Mapping)
             else [(None, paths)])
    if not named:
        raise ValueError("no paths to plot: paths is empty")
    result = {}
    for label, path in named:
        array = _float_array(path, "paths")
        if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
            raise ValueError(f"each path must have shape (T, 2) with T >= 1, got "
                             f"{array.shape}")
        result[label] = array
    return result


def _padded_range(points: np.ndarray) -> tuple[float, float]:
    """The range of the finite ``points``, padded by 20 % (at least 1)."""
    finite = points[np.isfinite(points)]
    if finite.size == 0:
        raise ValueError("history has no finite iterates; pass xlim explicitly")
    lo, hi = float(finite.min()), float(finite.max())
    pad = max(0.2 * (hi - lo), 1.0)
    return lo - pad, hi + pad


def _values(f: Callable[[Any], Any], points: np.ndarray) -> np.ndarray:
    """``f`` at each 1-D point, as floats (nan where the point is not finite)."""
    with np.errstate(all="ignore"):
        return np.array([float(f(float(w))) if np.isfinite(w) else np.nan
                         for w in points])


def _grid_values(f: Callable[[Any], Any], xx: np.ndarray,
                 yy: np.ndarray) -> np.ndarray:
    """``f`` on a grid: one vectorised call if ``f`` supports it, else a loop."""
    points = np.stack([xx, yy], axis=-1)
    with np.errstate(all="ignore"):
        try:
            zz = _float_array(f(points), "f(points)")
            if zz.shape == xx.shape:
                return zz
        except Exception:  # f only takes one point at a time
            pass
        return np.array([float(f(p)) for p in points.reshape(-1, 2)]
                        ).reshape(xx.shape)


def _levels(zz: np.ndarray, n: int, log: bool) -> np.ndarray | int:
    """``n`` contour levels, log-spaced between the smallest positive and largest
    value of ``zz`` when ``log`` is true."""
    if not log:
        return n
    finite = zz[np.isfinite(zz) & (zz > 0)]
    if finite.size == 0:
        raise ValueError("log_levels=True needs positive values of f")
    return np.geomspace(finite.min(), finite.max(), n)
