r"""Exercise specs of 09-learning-rate-schedules.

- ``WarmupCosine`` -- an ``LRScheduler``: linear warm-up, then cosine decay, equal
  bit for bit to ``SequentialLR([LinearLR, CosineAnnealingLR], milestones=[warmup])``
  over a whole run, also when its state is saved and loaded mid-run.
- ``one_cycle_lr_and_momentum`` -- the (lr, momentum) of ``OneCycleLR`` at a step.
- ``suggest_lr`` -- the learning-rate finder's pick from a loss curve.
- ``scaled_config`` -- the linear scaling rule: lr, batch, warm-up and step count
  for a batch ``k`` times larger.

Hidden cases are drawn from each verification's seed: learning rates, warm-up
lengths, horizons, start factors, floors and save points; one-cycle steps and
settings; loss curves (noise, divergence, nan); scaling factors.
"""

from __future__ import annotations

import builtins
import math
from typing import Any, Iterator

import numpy as np
import torch
from torch.optim import lr_scheduler as _lrs

from course.exercises.spec import Case, Exercise, Mistake, Question, Run
from course.exercises.values import FLOAT_TYPES, INT_TYPES, type_name

_TORCH_SGD = torch.optim.SGD

#: Observations use the builtins as they were before the learner's code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001

#: The course's answer keys, disabled while a submission is graded.
FORBIDDEN = ["torch.optim.lr_scheduler.SequentialLR", "torch.optim.lr_scheduler.LinearLR",
             "torch.optim.lr_scheduler.CosineAnnealingLR", "torch.optim.lr_scheduler.OneCycleLR"]

_SEQ, _LIN, _COS, _ONE = (_lrs.SequentialLR, _lrs.LinearLR, _lrs.CosineAnnealingLR,
                          _lrs.OneCycleLR)
_LRS = _lrs.LRScheduler


def _num(x: Any) -> Any:
    """A float (or int) as a float, else its type's name."""
    if type(x) in FLOAT_TYPES or type(x) in INT_TYPES:
        return float(x)
    return type_name(x)


# --------------------------------------------------------------------------
# Exercise 1: WarmupCosine
# --------------------------------------------------------------------------

def warmup_cosine_torch(optimizer: Any, warmup_steps: int, total_steps: int,
                        start_factor: float = 0.1, eta_min: float = 0.0) -> Any:
    """torch's composition, the reference of ``WarmupCosine``."""
    return _SEQ(optimizer, [
        _LIN(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup_steps),
        _COS(optimizer, T_max=total_steps - warmup_steps, eta_min=eta_min)],
        milestones=[warmup_steps])


def _run_schedule(cls: Any, case: Case) -> list[Any]:
    """Train a 3-parameter vector with SGD (momentum 0.9) for ``total`` steps,
    the schedule stepped once per step; at step ``cut`` save optimizer and
    scheduler, build fresh ones and load the states. Record the lr of the param
    group before every step, then the final parameters. (torch's for-loop SGD:
    bit-identical to the learner's lesson-06 class, and no module is imported
    here while a submission is graded, when the course's sources are locked.)"""
    SGD = _TORCH_SGD
    base, warmup, total, sf, eta_min, cut = case.args
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = SGD([w], lr=base, momentum=0.9)
    sched = cls(opt, warmup, total, sf, eta_min)
    lrs: list[Any] = []
    for t in range(total):
        if t == cut:
            osd, ssd = opt.state_dict(), sched.state_dict()
            w = torch.nn.Parameter(w.detach().clone())
            opt = SGD([w], lr=base, momentum=0.9)
            sched = cls(opt, warmup, total, sf, eta_min)
            opt.load_state_dict(osd)
            sched.load_state_dict(ssd)
        lrs.append(_num(opt.param_groups[0]["lr"]))
        w.grad = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) * (1 + 0.1 * t)
        opt.step()
        sched.step()
    lrs.append(_num(opt.param_groups[0]["lr"]))
    return [lrs, w.detach().clone()]


def _sched_observe(run: Run) -> Any:
    return run.result


def _sched_label(base: float, warmup: int, total: int, sf: float, eta_min: float,
                 cut: int) -> str:
    return (f"lr={base}, warmup_steps={warmup}, total_steps={total}, start_factor={sf}, "
            f"eta_min={eta_min}, saved and loaded at step {cut}")


def _sched_show(run: Run) -> str:
    """The learning rates of a run, rounded, the first 12 (the diagnosis gives the
    first different one exactly)."""
    lrs = run.result[0]
    shown = ", ".join(f"{x:.4g}" if type(x) is float else str(x) for x in lrs[:12])
    return f"learning rates [{shown}{', ...' if len(lrs) > 12 else ''}] (rounded)"


def _first_diff(got: Run, expected: Run) -> str | None:
    a, b = got.result[0], expected.result[0]
    for t, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return (f"first different lr at step {t} (last_epoch = {t}): expected {y!r}, "
                    f"got {x!r}")
    return None


def _sched_diagnose(got: Run, expected: Run) -> str | None:
    first = _first_diff(got, expected)
    warmup = got.case.args[1]
    if first is None:
        return ("the learning rates match but the parameters do not: the optimizer "
                "must use the lr of its param group")
    a, b = got.result[0], expected.result[0]
    t = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    if type(a[t]) is float and abs(a[t] - b[t]) <= 1e-12 * abs(b[t]):
        return (first + " (in the last bits): follow torch's arithmetic, the recursive "
                "formulas on group['lr'] (Hint 2), not a closed form.")
    where = "warm-up" if t < warmup else "cosine phase"
    return first + f" (in the {where})."


class _Sched(_LRS):
    """A learner-shaped scheduler whose lr at step t is ``rule(self, t, base, group_lr)``."""

    rule: Any = None

    def __init__(self, optimizer: Any, warmup_steps: int, total_steps: int,
                 start_factor: float = 0.1, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.start_factor, self.eta_min = start_factor, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [type(self).rule(self, self.last_epoch, base, g["lr"])
                for base, g in zip(self.base_lrs, self.optimizer.param_groups)]


def _torch_rule(s: Any, t: int, base: float, lr: float, *, off_by_one: bool = False,
                horizon: str = "right", epoch_from_start: bool = False) -> float:
    """torch's arithmetic (with one optional mistake)."""
    w, sf, eta = s.warmup_steps, s.start_factor, s.eta_min
    end_warm = w + 1 if off_by_one else w
    T = s.total_steps if horizon == "total" else s.total_steps - w
    if t == 0:
        return base * sf
    if t < end_warm:
        return lr * (1.0 + (1.0 - sf) / (w * sf + (t - 1) * (1.0 - sf)))
    k = t if epoch_from_start else t - end_warm
    if t == end_warm:
        return eta + (base - eta) * (1 + math.cos(k * math.pi / T)) / 2
    den = 1 + math.cos(math.pi * (k - 1) / T)
    if den == 0:                          # only past the horizon (the mistakes get there)
        return eta
    return (1 + math.cos(math.pi * k / T)) / den * (lr - eta) + eta


class WarmupCosine(_Sched):
    """Linear warm-up over ``warmup_steps`` steps from ``start_factor * lr`` to ``lr``,
    then cosine decay to ``eta_min`` at ``total_steps`` (torch's arithmetic)."""

    rule = _torch_rule


def _closed_rule(s: Any, t: int, base: float, lr: float) -> float:
    w, sf, eta = s.warmup_steps, s.start_factor, s.eta_min
    if t < w:
        return base * (sf + (1.0 - sf) * t / w)
    return eta + (base - eta) * (1 + math.cos(math.pi * (t - w) / (s.total_steps - w))) / 2


class _ClosedForm(_Sched):
    rule = _closed_rule


class _OffByOne(_Sched):
    rule = staticmethod(lambda s, t, b, lr: _torch_rule(s, t, b, lr, off_by_one=True))


class _Horizon(_Sched):
    rule = staticmethod(lambda s, t, b, lr: _torch_rule(s, t, b, lr, horizon="total"))


class _EpochFromStart(_Sched):
    rule = staticmethod(lambda s, t, b, lr: _torch_rule(s, t, b, lr, epoch_from_start=True))


class _Defaults(WarmupCosine):
    """Writes the lr into optimizer.defaults, never into the param groups."""

    def step(self, epoch: Any = None) -> None:  # type: ignore[override]
        self.last_epoch += 1
        self._step_count = getattr(self, "_step_count", 0) + 1
        self.optimizer.defaults["lr"] = self.get_lr()[0]


_SCHED_CASES = [(0.5, 5, 20, 0.1, 0.0, 8), (0.1, 3, 12, 0.25, 0.001, 2),
                (1.0, 10, 40, 0.01, 0.0, 25), (0.3, 1, 8, 0.5, 0.0, 4)]


def _sched_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for _ in range(4):
        warmup = int(rng.integers(1, 12))
        total = warmup + int(rng.integers(2, 30))
        args = (float(rng.uniform(0.01, 2.0)), warmup, total,
                float(rng.choice([0.01, 0.1, 0.2, 0.5, float(rng.uniform(0.01, 0.9))])),
                float(rng.choice([0.0, float(rng.uniform(0.0, 0.005))])),
                int(rng.integers(1, total)))
        yield Case("a random schedule", args)


WARMUP_COSINE = Exercise(
    grade_id="test_warmup_cosine",
    name="WarmupCosine",
    reference=warmup_cosine_torch,
    cases=[Case(_sched_label(*a), a) for a in _SCHED_CASES],
    observe=_sched_observe,
    call=_run_schedule,
    show=_sched_show,
    passed=("WarmupCosine: 4 whole runs (saved and loaded mid-run) give the learning "
            "rates of torch's SequentialLR(LinearLR, CosineAnnealingLR) bit for bit, "
            "and the same parameters"),
    hidden=_sched_hidden,
    diagnose=_sched_diagnose,
    mistakes=[
        Mistake("warmup_one_step_too_long",
                "off by one in the warm-up: the cosine starts at step warmup_steps "
                "(last_epoch == warmup_steps gives lr = base lr), not one step later.",
                _OffByOne),
        Mistake("cosine_over_whole_run",
                "the cosine runs over the wrong horizon: after the warm-up only "
                "total_steps - warmup_steps steps remain (T_max), not total_steps; with "
                "T_max = total_steps the run ends above eta_min.",
                _Horizon),
        Mistake("cosine_counts_from_start",
                "the cosine's step counts from the start of the run (last_epoch): it "
                "starts at the milestone, k = last_epoch - warmup_steps.",
                _EpochFromStart),
        Mistake("closed_form",
                "close, but not bit for bit: torch's LinearLR and CosineAnnealingLR "
                "update group['lr'] recursively (Hint 2); the closed forms differ "
                "from them in the last bit at some steps.",
                _ClosedForm),
        Mistake("lr_in_defaults",
                "the learning rate never reaches the param groups: optimizer.defaults "
                "only fills groups added later; step() reads group['lr'] (return the lrs "
                "from get_lr and let LRScheduler write them).",
                _Defaults),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 2: one_cycle_lr_and_momentum
# --------------------------------------------------------------------------

def _one_cycle_torch(step: int, total_steps: int, max_lr: float, pct_start: float = 0.3,
                     div_factor: float = 25.0, final_div_factor: float = 1e4,
                     base_momentum: float = 0.85, max_momentum: float = 0.95) -> tuple:
    """Run torch's OneCycleLR ``step`` times and read (lr, momentum)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = _ONE(opt, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start,
                 div_factor=div_factor, final_div_factor=final_div_factor,
                 base_momentum=base_momentum, max_momentum=max_momentum)
    for _ in range(step):
        opt.step()
        sched.step()
    g = opt.param_groups[0]
    return (g["lr"], g["momentum"])


def one_cycle_lr_and_momentum(step: int, total_steps: int, max_lr: float,
                              pct_start: float = 0.3, div_factor: float = 25.0,
                              final_div_factor: float = 1e4, base_momentum: float = 0.85,
                              max_momentum: float = 0.95) -> tuple[float, float]:
    """OneCycleLR's (lr, momentum) at ``step`` (anneal cos, two phases)."""
    initial = max_lr / div_factor
    phases = [(float(pct_start * total_steps) - 1, initial, max_lr, max_momentum, base_momentum),
              (total_steps - 1, max_lr, initial / final_div_factor, base_momentum, max_momentum)]
    start = 0
    for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct = (step - start) / (end - start)
            return (lr1 + (lr0 - lr1) / 2.0 * (math.cos(math.pi * pct) + 1),
                    m1 + (m0 - m1) / 2.0 * (math.cos(math.pi * pct) + 1))
        start = end
    raise AssertionError


def _oc_variant(step: int, total_steps: int, max_lr: float, pct_start: float = 0.3,
                div_factor: float = 25.0, final_div_factor: float = 1e4,
                base_momentum: float = 0.85, max_momentum: float = 0.95, *,
                end1: Any = None, min_div: bool = False, no_cycle: bool = False) -> tuple:
    initial = max_lr / div_factor
    e1 = float(pct_start * total_steps) - 1 if end1 is None else end1(pct_start, total_steps)
    low = max_lr / final_div_factor if min_div else initial / final_div_factor
    phases = [(e1, initial, max_lr, max_momentum, base_momentum),
              (total_steps - 1, max_lr, low, base_momentum, max_momentum)]
    start = 0
    for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
        if step <= end or i == 1:
            pct = (step - start) / (end - start)
            c = math.cos(math.pi * pct) + 1
            m = max_momentum if no_cycle else m1 + (m0 - m1) / 2.0 * c
            return (lr1 + (lr0 - lr1) / 2.0 * c, m)
        start = end
    raise AssertionError


def _oc_observe(run: Run) -> Any:
    out = run.result
    if type(out) in (tuple, list) and len(out) == 2:
        return [_num(out[0]), _num(out[1])]
    return type_name(out)


def _oc_rule(got: Run, expected: Run) -> str | None:
    out = got.result
    if out is None:
        return "returned None: return the pair (lr, momentum)."
    if type(out) not in (tuple, list) or len(out) != 2:
        return f"expected a pair (lr, momentum), got {type(out).__name__}."
    return None


_OC_CASES = [(0, 100, 0.1), (29, 100, 0.1), (30, 100, 0.1), (64, 100, 0.1), (99, 100, 0.1),
             (5, 20, 1.0, 0.25), (12, 50, 0.4, 0.3, 10.0, 100.0, 0.8, 0.9), (7, 7, 0.5)]


def _oc_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for _ in range(6):
        total = int(rng.integers(20, 200))
        args = (int(rng.integers(0, total)), total, float(rng.uniform(0.01, 2.0)),
                float(rng.uniform(0.1, 0.6)), float(rng.uniform(5.0, 50.0)),
                float(10 ** rng.uniform(1, 5)), float(rng.uniform(0.7, 0.85)),
                float(rng.uniform(0.88, 0.99)))
        yield Case("random settings", args)
    total = int(rng.integers(20, 200))
    pct = float(rng.uniform(0.2, 0.5))
    yield Case("the peak", (int(float(pct * total) - 1), total, 0.3, pct))


ONE_CYCLE = Exercise(
    grade_id="test_one_cycle_lr_and_momentum",
    name="one_cycle_lr_and_momentum",
    reference=_one_cycle_torch,
    cases=[Case(f"step={a[0]}, total_steps={a[1]}, max_lr={a[2]}"
                + (f", other settings {a[3:]}" if len(a) > 3 else ""), a) for a in _OC_CASES],
    observe=_oc_observe,
    passed=("one_cycle_lr_and_momentum: 8 steps (start, peak, both phases, last step, "
            "other settings) equal OneCycleLR's lr and momentum bit for bit"),
    hidden=_oc_hidden,
    rules=[_oc_rule],
    mistakes=[
        Mistake("peak_at_pct_times_total",
                "the first phase ends at step pct_start * total_steps - 1 (OneCycleLR "
                "counts steps from 0), not at pct_start * total_steps.",
                lambda *a, **k: _oc_variant(*a, **k, end1=lambda p, t: float(p * t))),
        Mistake("min_lr_from_max_lr",
                "the final lr is initial_lr / final_div_factor, where initial_lr = "
                "max_lr / div_factor, not max_lr / final_div_factor.",
                lambda *a, **k: _oc_variant(*a, **k, min_div=True)),
        Mistake("momentum_not_cycled",
                "the momentum cycles too, inversely to the lr: from max_momentum down "
                "to base_momentum while the lr rises, then back up.",
                lambda *a, **k: _oc_variant(*a, **k, no_cycle=True)),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# predict: momentum at the peak
# --------------------------------------------------------------------------

PEAK_CHOICES = ("base_momentum", "max_momentum", "halfway between")


def _momentum_at_peak() -> str:
    total, pct = 100, 0.3
    lrs = [_one_cycle_torch(s, total, 0.1, pct) for s in range(total)]
    peak = max(range(total), key=lambda s: lrs[s][0])
    m = lrs[peak][1]
    return ("base_momentum" if m == 0.85 else "max_momentum" if m == 0.95
            else "halfway between")


PREDICT_PEAK_MOMENTUM = Question(
    grade_id="test_predict_peak_momentum",
    name="predict_peak_momentum",
    answer=_momentum_at_peak,
    choices=PEAK_CHOICES,
    why=("OneCycleLR moves the momentum opposite to the lr: at the lr peak (step "
         "pct_start·total_steps - 1) it is base_momentum, the low end. A large lr with a "
         "large momentum would move the weights by about lr·g/(1 - momentum) per step "
         "for a steady gradient g: lowering the momentum keeps that in check."),
)


# --------------------------------------------------------------------------
# Exercise 3: suggest_lr
# --------------------------------------------------------------------------

def _sl_variant(lrs: Any, losses: Any, beta: float = 0.98, factor: float = 4.0, *,
                bias: bool = True, divide: bool = True, smooth: bool = True,
                stop: bool = True) -> float:
    """suggest_lr, or with one of its steps left out (the classic mistakes below)."""
    avg, best, best_i = 0.0, math.inf, 0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        s = avg / (1 - beta ** (i + 1)) if bias else avg
        s = s if smooth else loss
        if stop and (not math.isfinite(s) or s > factor * best):
            break
        if s < best:
            best, best_i = s, i
    return lrs[best_i] / 10 if divide else lrs[best_i]


def suggest_lr(lrs: Any, losses: Any, beta: float = 0.98, factor: float = 4.0) -> float:
    """The learning-rate finder's pick (see the notebook): the bias-corrected smoothed
    loss, stopped at a spike; the lr of its minimum, divided by 10."""
    return _sl_variant(lrs, losses, beta, factor)


def _curve(n: int, lo: float, hi: float, rng: np.random.Generator | None, *,
           blow: bool = True, dip: float = 0.0) -> tuple[list[float], list[float]]:
    """A finder's curve: flat, falling, minimum, then blowing up (and nan)."""
    lrs = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
    losses = []
    for i, lr in enumerate(lrs):
        x = math.log10(lr)
        v = 2.3 - 2.0 / (1 + math.exp(-3 * (x + 2))) + (math.exp(4 * (x - 0.3)) if blow else 0)
        if rng is not None:
            v *= float(np.exp(rng.normal(0, 0.08)))
        v += dip if i == n // 5 else 0.0
        losses.append(v if v < 1e6 else math.nan)
    return lrs, losses


def _sl_observe(run: Run) -> Any:
    return _num(run.result)


def _sl_cases() -> list[Case]:
    rng = np.random.default_rng(9)
    return [Case("a smooth curve, 60 steps from 1e-4 to 10", _curve(60, 1e-4, 10.0, None)),
            Case("a noisy curve, 100 steps from 1e-5 to 30", _curve(100, 1e-5, 30.0, rng)),
            Case("a curve ending in nan", _curve(80, 1e-4, 100.0, rng)),
            Case("a curve with a single low outlier", _curve(60, 1e-4, 10.0, None, dip=-1.5)),
            Case("beta=0.9, factor=2", _curve(50, 1e-3, 10.0, rng), {"beta": 0.9, "factor": 2.0}),
            Case("a spike, then lower losses", _spike(1.0), {"beta": 0.9})]


def _spike(low: float) -> tuple[list[float], list[float]]:
    """A curve that falls, spikes past the stop, then falls lower than before."""
    losses = [2.0] * 10 + [1.0] * 10 + [50.0] * 3 + [low * 0.2] * 40
    return [1e-4 * 1.2 ** i for i in range(len(losses))], losses


def _sl_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for _ in range(5):
        n = int(rng.integers(30, 150))
        lo = float(10 ** rng.uniform(-6, -3))
        yield Case("a random curve", _curve(n, lo, float(10 ** rng.uniform(0.5, 2)), rng,
                                            dip=float(rng.choice([0.0, -1.0]))),
                   {"beta": float(rng.uniform(0.8, 0.99)), "factor": float(rng.uniform(2, 6))})
    yield Case("a spike, then lower losses", _spike(float(rng.uniform(0.5, 1.0))),
               {"beta": float(rng.uniform(0.85, 0.95))})


SUGGEST_LR = Exercise(
    grade_id="test_suggest_lr",
    name="suggest_lr",
    reference=suggest_lr,
    cases=_sl_cases(),
    observe=_sl_observe,
    passed=("suggest_lr: 6 loss curves (smooth, noisy, nan, an outlier, other beta and "
            "factor, a spike) give the pick of the finder"),
    hidden=_sl_hidden,
    rtol=1e-12,
    mistakes=[
        Mistake("no_bias_correction",
                "the moving average starts at 0, so its first values are far too low: "
                "divide by 1 - beta**(i + 1) (bias correction).",
                lambda *a, **k: _sl_variant(*a, **k, bias=False)),
        Mistake("not_divided",
                "the minimum of the curve is already at the edge of stability: the "
                "pick is the lr at the minimum divided by 10.",
                lambda *a, **k: _sl_variant(*a, **k, divide=False)),
        Mistake("raw_losses",
                "you took the minimum of the raw losses: one lucky batch decides it; "
                "use the smoothed loss.",
                lambda *a, **k: _sl_variant(*a, **k, smooth=False)),
        Mistake("no_stop",
                "the finder stops at divergence (smoothed loss > factor × best, or "
                "not finite): later values must not count.",
                lambda *a, **k: _sl_variant(*a, **k, stop=False)),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 4: scaled_config
# --------------------------------------------------------------------------

def scaled_config(base_lr: float, base_batch: int, base_warmup_steps: int, k: int,
                  examples: int) -> tuple[float, int, int, int]:
    """(lr, batch, warmup_steps, total_steps) for a batch k times larger."""
    batch = base_batch * k
    return (base_lr * k, batch, math.ceil(base_warmup_steps * base_batch / batch),
            examples // batch)


def _sc_observe(run: Run) -> Any:
    out = run.result
    if type(out) in (tuple, list) and len(out) == 4:
        return [_num(out[0])] + [x if type(x) in INT_TYPES else type_name(x) for x in out[1:]]
    return type_name(out)


def _sc_rule(got: Run, expected: Run) -> str | None:
    out = got.result
    if out is None:
        return "returned None: did you forget `return`? Return the 4-tuple."
    if type(out) not in (tuple, list) or len(out) != 4:
        return "expected a 4-tuple (lr, batch, warmup_steps, total_steps)."
    if any(type(x) not in INT_TYPES for x in out[1:]):
        return "batch, warmup_steps and total_steps are step counts: return ints."
    return None


_SC_CASES = [(0.05, 32, 100, 1, 64000), (0.05, 32, 100, 4, 64000), (0.1, 16, 10, 8, 5000),
             (0.02, 8, 5, 3, 1000)]


def _sc_hidden(rng: np.random.Generator) -> Iterator[Case]:
    for _ in range(5):
        yield Case("random settings", (float(rng.uniform(0.001, 0.5)), int(rng.integers(1, 129)),
                                       int(rng.integers(0, 500)), int(rng.integers(1, 33)),
                                       int(rng.integers(1000, 10**6))))


SCALED_CONFIG = Exercise(
    grade_id="test_scaled_config",
    name="scaled_config",
    reference=scaled_config,
    cases=[Case(f"base_lr={a[0]}, base_batch={a[1]}, base_warmup_steps={a[2]}, k={a[3]}, "
                f"examples={a[4]}", a) for a in _SC_CASES],
    observe=_sc_observe,
    passed="scaled_config: 4 cases follow the linear scaling rule, warm-up kept in examples",
    hidden=_sc_hidden,
    rtol=1e-12,
    rules=[_sc_rule],
    mistakes=[
        Mistake("warmup_in_steps",
                "the warm-up is a number of examples, not of steps: with batches k times "
                "larger it takes k times fewer steps (ceil(base_warmup_steps / k)).",
                lambda lr, b, w, k, n: (lr * k, b * k, w, n // (b * k))),
        Mistake("steps_not_scaled",
                "the same examples in batches k times larger take k times fewer steps: "
                "total_steps = examples // batch.",
                lambda lr, b, w, k, n: (lr * k, b * k, math.ceil(w * b / (b * k)), n // b)),
        Mistake("sqrt_scaling",
                "the linear rule multiplies the lr by k, not by sqrt(k) (that is the "
                "square-root rule, another heuristic).",
                lambda lr, b, w, k, n: (lr * math.sqrt(k), b * k, math.ceil(w * b / (b * k)),
                                        n // (b * k))),
        Mistake("warmup_floor",
                "round the warm-up up (math.ceil): a warm-up of 0 steps is none at all.",
                lambda lr, b, w, k, n: (lr * k, b * k, w * b // (b * k), n // (b * k))),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# predict: where the linear scaling rule breaks
# --------------------------------------------------------------------------

BREAK_CHOICES = ("2", "4", "8", "16", "32", "never up to 64")


def _scaling_break() -> str:
    from course.schedules import scaling_experiment
    table = scaling_experiment()
    return table["breaks_at"]


PREDICT_SCALING_BREAK = Question(
    grade_id="test_predict_scaling_break",
    name="predict_scaling_break",
    answer=_scaling_break,
    choices=BREAK_CHOICES,
    why=("the base run has lr = 0.03 and the largest curvature of the loss is "
         "L ≈ 2.2, so lr·k crosses the stability limit 2/L ≈ 0.91 between k = 16 "
         "(0.48) and k = 32 (0.96): there even the full-batch step overshoots along "
         "the steepest direction, and no warm-up saves it. Below, batches k times "
         "larger cut the variance of the gradient noise by k, which pays for the k "
         "times larger lr: the floor, set by lr/B, stays about put (it creeps up as "
         "lr·k nears 2/L)."),
)

#: The graded cells, in notebook order.
EXERCISES = [WARMUP_COSINE, ONE_CYCLE, PREDICT_PEAK_MOMENTUM, SUGGEST_LR, SCALED_CONFIG,
             PREDICT_SCALING_BREAK]
