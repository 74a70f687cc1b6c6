r"""Measure where the time of ``optimizer.step()`` goes, as medians and ratios.

Wall-clock timings of a few hundred microseconds are noisy: another process,
a frequency change or the garbage collector can add more than the difference
you want to see. Three habits make comparisons trustworthy, and every
function here follows them:

* **interleave** the candidates (A, B, C, A, B, C, ... rotating who goes
  first), so slow phases of the machine hit all of them alike;
* report the **median** of the repetitions, which ignores the odd slow run;
* report **ratios** against a baseline measured in the same process, which
  carry over from one machine to another far better than microseconds do.

With :math:`t_{k,r}` the mean time per call of candidate :math:`k` in
repetition :math:`r`,

.. math::

    \operatorname{median}_k = \operatorname{median}_r\, t_{k,r}, \qquad
    \operatorname{ratio}_k = \operatorname{median}_k / \operatorname{median}_{\text{baseline}}.

Besides timings, :func:`count_ops` counts the tensor operations a function
dispatches (deterministic, unlike time) and :func:`profile_table` runs
``torch.profiler`` and returns its table.

Example (``benchmarks/sgd_step.py`` style)::

    >>> from course.optim import SGD
    >>> make = lambda: params_with_grads(
    ...     lambda: [torch.nn.Linear(64, 64) for _ in range(50)])
    >>> t = compare_step_times(
    ...     {"course": lambda ps: SGD(ps, lr=0.01, momentum=0.9),
    ...      "torch": lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)},
    ...     make, repeats=5, baseline="torch")
    >>> t.ratios["course"]  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = [
    "Timings",
    "time_call",
    "time_step",
    "compare_times",
    "compare_step_times",
    "params_with_grads",
    "count_ops",
    "profile_table",
    "sweep_step_times",
    "slope",
    "plot_step_times",
    "plot_speedups",
]

#: Operations that only mark profiler ranges (``Optimizer.step`` emits them).
_BOOKKEEPING = ("_record_function_enter", "_record_function_enter_new",
                "_record_function_exit")


@dataclass(frozen=True)
class Timings:
    """Repeated timings of several candidates, one list of samples each.

    Attributes:
        samples: for every candidate, the mean seconds per call measured in
            each repetition (one float per repetition).
        baseline: the candidate that ratios are relative to.
    """

    samples: dict[str, list[float]]
    baseline: str

    @property
    def medians(self) -> dict[str, float]:
        """Median seconds per call of each candidate."""
        return {k: statistics.median(v) for k, v in self.samples.items()}

    @property
    def ratios(self) -> dict[str, float]:
        r"""Median time of each candidate divided by the baseline's median.

        A ratio below 1 means faster than the baseline: :math:`0.5` is twice as fast.
        """
        med = self.medians
        base = med[self.baseline]
        return {k: v / base for k, v in med.items()}

    @property
    def speedups(self) -> dict[str, float]:
        """Baseline median divided by each median (above 1 = faster)."""
        return {k: 1.0 / r for k, r in self.ratios.items()}

    def table(self, title: str = "") -> str:
        """A fixed-width text table: candidate, median in microseconds, ratio."""
        width = max([len(k) for k in self.samples] + [9])
        lines = [title] if title else []
        lines.append(f"{'':{width}}  {'median':>10}  {'ratio':>6}  (vs {self.baseline})")
        for k, med in self.medians.items():
            lines.append(f"{k:{width}}  {med * 1e6:8.1f}us  {self.ratios[k]:6.2f}")
        return "\n".join(lines)


def time_call(fn: Callable[[], Any], n: int = 10) -> float:
    """Mean wall-clock seconds per call of ``fn()`` over ``n`` back-to-back calls.

    The garbage collector is paused while timing (as :mod:`timeit` does), so
    a collection triggered by someone else's garbage is not billed to ``fn``.

    Args:
        fn: a function of no arguments.
        n: number of calls, at least 1.

    Returns:
        Seconds per call (a float).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
    finally:
        if was_enabled:
            gc.enable()
    return elapsed / n


def time_step(opt: torch.optim.Optimizer, n: int = 10) -> float:
    """Mean seconds per ``opt.step()`` over ``n`` consecutive steps.

    The parameters must already hold gradients; they stay fixed, so every step
    does the same work (the first step of a momentum optimizer also creates
    its buffers: warm up before timing, see :func:`compare_step_times`).
    """
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"opt must be a torch.optim.Optimizer, got {type(opt).__name__}")
    return time_call(opt.step, n)


def compare_times(fns: Mapping[str, Callable[[], Any]], *, repeats: int = 5,
                  inner: int = 10, warmup: int = 2,
                  baseline: str | None = None) -> Timings:
    """Time several functions of no arguments, interleaved.

    Each function is first called ``warmup`` times. Then, ``repeats`` times,
    every function is timed for ``inner`` back-to-back calls; the order of the
    functions rotates from one repetition to the next so that none always
    runs first (or last).

    Args:
        fns: ``{name: function}``, at least one entry.
        repeats: repetitions per function (the median is taken over them).
        inner: calls per timing (more calls, less timer noise).
        warmup: untimed calls per function before measuring.
        baseline: the name ratios are relative to (default: the first name).

    Returns:
        A :class:`Timings` with ``repeats`` samples per function.
    """
    names = list(fns)
    if not names:
        raise ValueError("fns is empty: give at least one {name: function}")
    for name in names:
        if not callable(fns[name]):
            raise TypeError(f"fns[{name!r}] must be callable, got {type(fns[name]).__name__}")
    if repeats < 1 or inner < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1, inner >= 1, warmup >= 0; got "
                         f"{repeats}, {inner}, {warmup}")
    baseline = names[0] if baseline is None else baseline
    if baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is not one of {names}")
    for name in names:
        for _ in range(warmup):
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            samples[name].append(time_call(fns[name], inner))
    return Timings(samples=samples, baseline=baseline)


def compare_step_times(
    optimizers: Mapping[str, Callable[[list[Tensor]], torch.optim.Optimizer]],
    params_factory: Callable[[], list[Tensor]],
    repeats: int = 5,
    *,
    inner: int = 10,
    warmup: int = 3,
    baseline: str | None = None,
) -> Timings:
    """Time ``step()`` of several optimizers on identical parameters, interleaved.

    Every optimizer gets its own fresh parameters from ``params_factory()``
    (same values, same fixed gradients), so they all do exactly the same work.
    The warm-up steps create the momentum buffers; the timed steps are then
    the steady state of training.

    Args:
        optimizers: ``{name: factory}`` where ``factory(params)`` builds the
            optimizer, e.g. ``lambda ps: torch.optim.SGD(ps, lr=0.01, foreach=True)``.
        params_factory: returns a new list of parameters that hold gradients,
            e.g. ``lambda: params_with_grads(make_model)``.
        repeats: repetitions per optimizer (median over them).
        inner: steps per timing.
        warmup: untimed steps per optimizer before measuring.
        baseline: name that ratios are relative to (default: the first).

    Returns:
        A :class:`Timings` of seconds per step.
    """
    if not callable(params_factory):
        raise TypeError("params_factory must be a function returning a list of tensors")
    steps = {}
    for name, factory in optimizers.items():
        if not callable(factory):
            raise TypeError(f"optimizers[{name!r}] must be a function params -> optimizer")
        params = list(params_factory())
        if not params or any(p.grad is None for p in params):
            raise ValueError("params_factory() must return parameters that all hold a .grad "
                             "(use params_with_grads)")
        steps[name] = factory(params).step
    return compare_times(steps, repeats=repeats, inner=inner, warmup=warmup,
                         baseline=baseline)


def params_with_grads(make: Callable[[], torch.nn.Module | Iterable[torch.nn.Module]],
                      *, seed: int = 0, grad_scale: float = 1e-3) -> list[Tensor]:
    r"""Parameters of a freshly built model, each with a fixed random gradient.

    ``make()`` is called with torch's global RNG seeded by ``seed`` (the RNG
    state is restored afterwards), and every parameter gets
    ``p.grad = grad_scale * N(0, 1)`` from a private generator, so two calls
    return equal values in new tensors.

    Args:
        make: returns a module or a list of modules, e.g.
            ``lambda: [torch.nn.Linear(64, 64) for _ in range(50)]``.
        seed: seed for the weights and the gradients.
        grad_scale: standard deviation of the gradients (small, so that many
            steps keep the weights finite).

    Returns:
        The list of parameters (leaf tensors with ``.grad`` set).
    """
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        built = make()
    finally:
        torch.random.set_rng_state(state)
    modules = [built] if isinstance(built, torch.nn.Module) else list(built)
    params = [p for m in modules for p in m.parameters()]
    gen = torch.Generator().manual_seed(seed + 1)
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen, dtype=p.dtype) * grad_scale).to(p.device)
    return params


def count_ops(fn: Callable[[], Any], *, include_views: bool = True) -> Counter[str]:
    """Count the tensor operations (ATen ops) that ``fn()`` dispatches.

    Every call of a tensor function or method, such as ``p.add_(g, alpha=-lr)``
    or ``torch._foreach_mul_(bufs, 0.9)``, is one dispatched operation; each
    costs a fixed overhead on top of the arithmetic. The count is exact and
    deterministic (unlike a time). Operations called *inside* another one
    (the CPU foreach kernels loop over the tensors in C++) are not counted:
    this is the number of times Python handed work to torch.

    Args:
        fn: a function of no arguments, e.g. ``opt.step``.
        include_views: count ``detach``/``view``-like ops too (they move no data).

    Returns:
        A :class:`collections.Counter` ``{op name: calls}``, e.g.
        ``Counter({'add_': 200, 'mul_': 100})``; profiler bookkeeping is left out.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: Counter[str] = Counter()

    class _Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            name = func.overloadpacket.__name__
            if name not in _BOOKKEEPING and (include_views or not _is_view(func)):
                counts[name] += 1
            return func(*args, **(kwargs or {}))

    with _Counter():
        fn()
    return counts


def _is_view(func: Any) -> bool:
    """Whether an ATen op only creates a view/alias (no arithmetic)."""
    return func.overloadpacket.__name__ in ("detach", "alias", "view", "_unsafe_view") or \
        bool(getattr(func, "is_view", False))


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null (the profiler logs C++ lines there)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def profile_table(fn: Callable[[], Any], *, row_limit: int = 10,
                  sort_by: str = "self_cpu_time_total") -> str:
    """Run ``fn()`` once under ``torch.profiler`` and return its summary table.

    The table lists each ATen op with its self time, total time and number
    of calls. ``Optimizer.step#...`` rows are the optimizer's own label; ops
    called inside other ops (a CPU foreach kernel's per-tensor work) appear as
    their own rows too. The profiler's C++ start/stop log lines are silenced.

    Args:
        fn: a function of no arguments, e.g. ``opt.step``.
        row_limit: number of rows to keep.
        sort_by: a ``key_averages().table`` sort key.

    Returns:
        The table as a string (timings vary from run to run).
    """
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
    return prof.key_averages().table(sort_by=sort_by, row_limit=row_limit)


def sweep_step_times(
    optimizers: Mapping[str, Callable[[list[Tensor]], torch.optim.Optimizer]],
    params_for: Callable[[Any], list[Tensor]],
    xs: Sequence[Any],
    *,
    repeats: int = 3,
    target: float = 2e-3,
    max_inner: int = 50,
) -> dict[str, list[float]]:
    """Median seconds per step of several optimizers, for each value of ``x``.

    For every ``x`` the optimizers are compared with :func:`compare_step_times`
    on ``params_for(x)`` (for example ``x`` tensors, or one tensor of ``x``
    numbers). The number of steps per timing adapts to the size: about
    ``target`` seconds per timing, between 1 and ``max_inner`` steps.

    Args:
        optimizers: ``{name: factory}``, as for :func:`compare_step_times`.
        params_for: ``x -> parameters with gradients``.
        xs: the values to sweep.
        repeats: repetitions per optimizer and x (median over them).
        target: seconds aimed at per timing.
        max_inner: most steps per timing.

    Returns:
        ``{name: [median seconds per step for each x]}``.
    """
    out: dict[str, list[float]] = {name: [] for name in optimizers}
    for x in xs:
        probe = next(iter(optimizers.values()))(params_for(x))
        probe.step()
        one = time_call(probe.step, 1)
        inner = max(1, min(max_inner, int(target / max(one, 1e-9))))
        t = compare_step_times(optimizers, lambda x=x: params_for(x), repeats,
                               inner=inner, warmup=1)
        for name, med in t.medians.items():
            out[name].append(med)
    return out


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    r"""The cost of one more ``x``: the median of the slopes between all pairs of points.

    .. math::

        \operatorname{median}_{i < j} \frac{y_j - y_i}{x_j - x_i}

    (the Theil-Sen estimator). Unlike the slope between the first and the last
    point, or a least-squares fit, one disturbed timing cannot move it much.

    Args:
        xs: at least two distinct values, e.g. numbers of tensors.
        ys: the matching measurements, e.g. seconds per step.

    Returns:
        The slope, in units of ``ys`` per unit of ``xs``.
    """
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} xs for {len(ys)} ys")
    pairs = [((ys[j] - ys[i]) / (xs[j] - xs[i]))
             for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[j] != xs[i]]
    if not pairs:
        raise ValueError("need at least two distinct xs")
    return statistics.median(pairs)


def plot_step_times(xs: Sequence[float], times: Mapping[str, Sequence[float]], *,
                    ax: "Axes | None" = None, xlabel: str = "x",
                    title: str | None = None, log: bool = True) -> "Axes":
    """Plot seconds per step (shown in microseconds) against ``xs``, one line each.

    Args:
        xs: the swept values (x-axis).
        times: ``{name: seconds per step for each x}``, e.g. from
            :func:`sweep_step_times`.
        ax: the Axes to draw on (default: a new figure).
        xlabel: label of the x-axis.
        title: the title (default: none).
        log: log-log axes (default: True).

    Returns:
        The Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    for name, values in times.items():
        if len(values) != len(xs):
            raise ValueError(f"times[{name!r}] has {len(values)} values for {len(xs)} xs")
        ax.plot(xs, [v * 1e6 for v in values], "o-", ms=4, label=name)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("time per step (µs)")
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def plot_speedups(results: Mapping[str, Timings], *, ax: "Axes | None" = None,
                  title: str | None = None) -> "Axes":
    """Grouped bars of speed-ups against each result's baseline (1 = baseline).

    Args:
        results: ``{setting: Timings}``, e.g. ``{"100 small tensors": t1,
            "4 large tensors": t2}``; every Timings should compare the same
            candidates.
        ax: the Axes to draw on (default: a new figure).
        title: the title (default: none).

    Returns:
        The Axes (bars labelled with their speed-up, e.g. "2.3×").
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if not results:
        raise ValueError("results is empty")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    names = list(next(iter(results.values())).samples)
    width = 0.8 / len(names)
    x = np.arange(len(results))
    for k, name in enumerate(names):
        values = [t.speedups.get(name, float("nan")) for t in results.values()]
        bars = ax.bar(x + (k - (len(names) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, labels=[f"{v:.1f}×" for v in values], fontsize=7)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(x, list(results))
    baseline = next(iter(results.values())).baseline
    ax.set_ylabel(f"speed-up vs {baseline}")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return ax
