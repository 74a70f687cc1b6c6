r"""Interactive explorers: sliders that re-run the learner's own functions.

Each explorer draws its default position once as an ordinary output (a PNG
figure and a line of text, so stored outputs stay deterministic), then
returns an ``ipywidgets`` box whose sliders redraw into an ``Output`` widget.

The rate helpers are exact statements about linear iterations:

- gradient descent on $f(w) = \tfrac{L}{2}(w - w^*)^2$ multiplies the error by
  $1 - \eta L$ every step;
- the heavy ball in torch's convention ($\tau = 0$) on a quadratic with
  curvature $\lambda$ runs $e_{t+1} = (1 + \beta - \gamma\lambda)e_t - \beta e_{t-1}$,
  whose iteration matrix $\begin{pmatrix}1 + \beta - \gamma\lambda & -\beta\\ 1 & 0\end{pmatrix}$
  has spectral radius $\rho_\lambda$; the asymptotic rate is the largest
  $\rho_\lambda$ over the curvatures.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from course.gd import lr_regime
from course.momentum import polyak_parameters, torch_momentum_step

__all__ = [
    "heavy_ball_matrix",
    "heavy_ball_rate",
    "rate_map",
    "measured_rate",
    "with_fallback",
    "momentum_explorer",
    "gd_explorer",
]

_WINDOW = 60  # the measured rate compares the sums of two windows of this many losses


def heavy_ball_matrix(lr: float, beta: float, curvature: float) -> np.ndarray:
    r"""The 2x2 matrix $M$ with $(e_{t+1}, e_t) = M (e_t, e_{t-1})$ for the heavy
    ball (torch's convention, no dampening) on curvature $\lambda$."""
    return np.array([[1.0 + beta - lr * curvature, -beta], [1.0, 0.0]])


def heavy_ball_rate(lr: Any, beta: Any, curvatures: Sequence[float]) -> np.ndarray:
    r"""The asymptotic rate $\max_\lambda \rho(M_\lambda)$, vectorised over
    ``lr`` and ``beta`` (broadcast together).

    The roots of $z^2 - (1 + \beta - \gamma\lambda) z + \beta = 0$ are the
    eigenvalues of $M_\lambda$; below 1 means the error shrinks by that factor
    per step (up to a polynomial factor at a double root)."""
    lr, beta = np.broadcast_arrays(np.asarray(lr, float), np.asarray(beta, float))
    rate = np.zeros(lr.shape)
    for lam in curvatures:
        trace = 1.0 + beta - lr * lam
        disc = (trace ** 2 - 4.0 * beta).astype(complex)
        root = np.sqrt(disc)
        rho = np.maximum(np.abs((trace + root) / 2), np.abs((trace - root) / 2))
        rate = np.maximum(rate, rho)
    return rate


def rate_map(lrs: Any, betas: Any, curvatures: Sequence[float]) -> np.ndarray:
    """``heavy_ball_rate`` on the grid: rows are betas, columns are lrs."""
    lr_grid, beta_grid = np.meshgrid(np.asarray(lrs, float), np.asarray(betas, float))
    return heavy_ball_rate(lr_grid, beta_grid, curvatures)


def measured_rate(losses: Any, window: int = _WINDOW) -> float:
    r"""The per-step rate of the error measured from a loss curve.

    The loss of a quadratic is quadratic in the error, so it shrinks by
    $\rho^2$ per step. The sum of the last ``window`` losses over the sum of
    the ``window`` before, to the power $1/(2\,\text{window})$, estimates
    $\rho$; sums over windows average out the oscillation of complex roots.
    Losses that overflowed or underflowed (not finite, above 1e300 or below
    1e-280) are cut off first. Returns nan if fewer than 2 windows remain.
    """
    losses = np.asarray(losses, dtype=float)
    ok = np.isfinite(losses) & (losses < 1e300) & (losses > 1e-280)
    cut = len(losses) if ok.all() else int(np.argmin(ok))
    losses = losses[:cut]
    if len(losses) < 2 * window:
        return math.nan
    last, before = losses[-window:].sum(), losses[-2 * window:-window].sum()
    return float((last / before) ** (1.0 / (2 * window)))


def with_fallback(fn: Callable[..., Any], reference: Callable[..., Any],
                  name: str) -> tuple[Callable[..., Any], str]:
    """``fn`` wrapped so that a ``NotImplementedError`` switches to ``reference``
    (with a notice naming ``name``). Returns (wrapper, first notice or '')."""
    state = {"notice": ""}

    def call(*args: Any, **kwargs: Any) -> Any:
        if not state["notice"]:
            try:
                return fn(*args, **kwargs)
            except NotImplementedError:
                state["notice"] = (f"Note: your {name} is not implemented yet; "
                                   f"the explorer runs the course's reference instead.")
        return reference(*args, **kwargs)

    call.state = state  # type: ignore[attr-defined]
    return call, state["notice"]


# --- Lesson 04: the heavy ball on the valley ------------------------------

def _run_heavy_ball(step: Callable[..., Any], f: Any, w0: torch.Tensor,
                    lr: float, beta: float, n_steps: int) -> np.ndarray:
    p, buf = w0.clone(), None
    history = [p]
    with np.errstate(all="ignore"):
        for _ in range(n_steps):
            p, buf = step(p, f.grad(p), buf, lr, beta)
            history.append(p)
    return torch.stack(history).detach().numpy()


def momentum_state(momentum_step: Callable[..., Any], f: Any, w0: torch.Tensor,
                   lr: float, beta: float, n_steps: int = 300) -> dict[str, Any]:
    """Run the learner's ``momentum_step`` and return path, losses and rates."""
    step, _ = with_fallback(
        momentum_step,
        lambda p, g, b, lr_, m: torch_momentum_step(p, g, b, lr=lr_, momentum=m),
        "momentum_step")
    path = _run_heavy_ball(step, f, w0, lr, beta, n_steps)
    with np.errstate(all="ignore"):
        losses = np.array([float(f(torch.from_numpy(w))) for w in path])
    return {"path": path, "losses": losses, "notice": step.state["notice"],
            "computed": float(heavy_ball_rate(lr, beta, f.eigenvalues)),
            "measured": measured_rate(losses)}


def momentum_text(lr: float, beta: float, state: dict[str, Any]) -> str:
    """The explorer's text line (parsed by the browser tests)."""
    text = (f"γ = {lr:.3f}, β = {beta:.2f}: computed rate {state['computed']:.4f}, "
            f"measured rate {state['measured']:.4f} "
            f"(last {_WINDOW} losses against the {_WINDOW} before)")
    return state["notice"] + "\n" + text if state["notice"] else text


def momentum_figure(f: Any, lr: float, beta: float, state: dict[str, Any],
                    lr_max: float, n_grid: int = 121) -> plt.Figure:
    """Trajectory on the contours, loss curve and the (γ, β) rate map."""
    mu, L = float(f.mu), float(f.L)
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    path = state["path"]
    xs, ys = np.linspace(-2, 2, 161), np.linspace(-1, 1, 81)
    xx, yy = np.meshgrid(xs, ys)
    zz = 0.5 * (mu * xx ** 2 + L * yy ** 2)
    ax1.contour(xx, yy, zz, levels=np.geomspace(0.01, 20, 12), colors="0.7", linewidths=0.7)
    shown = path[np.all(np.abs(path) < 10, axis=1)][:60]
    ax1.plot(shown[:, 0], shown[:, 1], ".-", ms=3, lw=0.8)
    ax1.plot([0], [0], "k*")
    ax1.set(xlim=(-2, 2), ylim=(-1, 1), xlabel="w₁", ylabel="w₂",
            title=f"first 60 steps, γ={lr:.3f}, β={beta:.2f}")
    losses = state["losses"]
    good = np.isfinite(losses) & (losses > 0)
    ax2.semilogy(np.arange(len(losses))[good], losses[good])
    ax2.set(xlabel="step t", ylabel="loss", title=(
        f"computed rate {state['computed']:.3f}, measured {state['measured']:.3f}"))
    lrs = np.linspace(0, lr_max, n_grid)[1:]
    betas = np.linspace(0, 0.99, n_grid)
    rates = rate_map(lrs, betas, [mu, L])
    im = ax3.pcolormesh(lrs, betas, np.minimum(rates, 1.0), cmap="viridis_r",
                        vmin=0.5, vmax=1.0, shading="auto")
    fig.colorbar(im, ax=ax3, label="rate (1 = no convergence)")
    ax3.contour(lrs, betas, rates, levels=[1.0], colors="r", linewidths=1.2)
    root_b = np.sqrt(betas)
    ax3.plot((1 - root_b) ** 2 / mu, betas, "w--", lw=1, label="critical damping")
    ax3.plot((1 + root_b) ** 2 / L, betas, "w--", lw=1)
    lr_p, beta_p = polyak_parameters(L, mu)
    ax3.plot([lr_p], [beta_p], "w*", ms=12, label="Polyak")
    ax3.plot([lr], [beta], "o", mfc="none", mec="k", ms=10, mew=2, label="you")
    ax3.set(xlim=(0, lr_max), ylim=(0, 0.99), xlabel="γ", ylabel="β",
            title="rate; red: edge of convergence")
    ax3.legend(loc="lower right", fontsize=8)
    return fig


def momentum_explorer(momentum_step: Callable[..., Any], f: Any, w0: torch.Tensor,
                      lr: float = 0.04, beta: float = 0.7, n_steps: int = 300) -> Any:
    """Show the default position (figure + text), return the slider box."""
    import ipywidgets as widgets
    from IPython.display import display

    lr_max = 2 * (1 + 0.99) / float(f.L)

    def draw(lr_: float, beta_: float) -> None:
        state = momentum_state(momentum_step, f, w0, lr_, beta_, n_steps)
        fig = momentum_figure(f, lr_, beta_, state, lr_max)
        display(fig)
        plt.close(fig)
        print(momentum_text(lr_, beta_, state))

    draw(lr, beta)
    lr_slider = widgets.FloatSlider(value=lr, min=0.002, max=round(lr_max, 3), step=0.002,
                                    description="γ", readout_format=".3f",
                                    continuous_update=False)
    beta_slider = widgets.FloatSlider(value=beta, min=0.0, max=0.99, step=0.01,
                                      description="β", continuous_update=False)
    out = widgets.Output()

    def redraw(_: Any = None) -> None:
        out.clear_output(wait=True)
        with out:
            draw(lr_slider.value, beta_slider.value)

    lr_slider.observe(redraw, names="value")
    beta_slider.observe(redraw, names="value")
    return widgets.VBox([widgets.HBox([lr_slider, beta_slider]), out])


# --- Lesson 01: the four regimes on (w - 3)^2 ------------------------------

def gd_state(gradient_descent: Callable[..., Any], lr: float,
             n_steps: int = 12) -> dict[str, Any]:
    """Run the learner's ``gradient_descent`` on (w - 3)^2 from w0 = 0."""
    from course.gd import gradient_descent as reference

    run, _ = with_fallback(gradient_descent,
                           lambda g, w0, lr_, n: reference(g, w0, lr_, n),
                           "gradient_descent")
    with np.errstate(all="ignore"):
        history = np.asarray(run(lambda w: 2 * (w - 3), 0.0, lr, n_steps), dtype=float)
        e = history - 3
        factors = e[1:] / e[:-1]
    factor = float(factors[0]) + 0.0 if len(factors) and np.isfinite(factors[0]) else math.nan
    return {"history": history, "losses": e ** 2, "factor": factor,
            "regime": lr_regime(lr, 2.0), "notice": run.state["notice"]}


def gd_text(lr: float, state: dict[str, Any]) -> str:
    """The explorer's text line (parsed by the browser tests)."""
    text = (f"lr = {lr:.3f}: {state['regime']}; measured e_1/e_0 = {state['factor']:+.4f}, "
            f"1 - 2 lr = {1 - 2 * lr:+.4f}")
    return state["notice"] + "\n" + text if state["notice"] else text


def gd_figure(lr: float, state: dict[str, Any]) -> plt.Figure:
    """Iterates on the parabola and the loss curve."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.3), layout="constrained")
    ws = np.linspace(-3, 9, 200)
    ax1.plot(ws, (ws - 3) ** 2, color="0.6")
    h = state["history"][:9]
    h = h[np.abs(h - 3) < 6]
    ax1.plot(h, (h - 3) ** 2, "o-", ms=4, lw=0.8)
    ax1.set(xlim=(-3, 9), ylim=(-1, 37), xlabel="w", ylabel="f(w)",
            title=f"lr = {lr:.3f}: {state['regime']} (first 8 steps)")
    losses = state["losses"]
    good = np.isfinite(losses) & (losses > 0)
    ax2.semilogy(np.arange(len(losses))[good], losses[good], "o-", ms=3)
    ax2.set(xlabel="step t", ylabel="f(w_t)", title="loss (log scale)")
    return fig


def gd_explorer(gradient_descent: Callable[..., Any], lr: float = 0.1) -> Any:
    """Show the default position (figure + text), return the slider box."""
    import ipywidgets as widgets
    from IPython.display import display

    def draw(lr_: float) -> None:
        state = gd_state(gradient_descent, lr_)
        fig = gd_figure(lr_, state)
        display(fig)
        plt.close(fig)
        print(gd_text(lr_, state))

    draw(lr)
    slider = widgets.FloatSlider(value=lr, min=0.0, max=1.2, step=0.01, description="lr",
                                 readout_format=".2f", continuous_update=False)
    out = widgets.Output()

    def redraw(_: Any = None) -> None:
        out.clear_output(wait=True)
        with out:
            draw(slider.value)

    slider.observe(redraw, names="value")
    return widgets.VBox([slider, out])
