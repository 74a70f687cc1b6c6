"""Time ``step()`` of course.optim.SGD against torch.optim.SGD, as ratios.

Both optimizers step identical models with identical fixed gradients in the
same process; timings are interleaved (course, torch, torch, course, ...,
rotating who goes first) and the median of many repetitions is compared, so
machine noise affects both sides alike (course.timing). Target: every
ratio <= 1.05.

Usage: python benchmarks/sgd_step.py [--repeats N] [--threads T]
"""

from __future__ import annotations

import argparse

import torch

from course.optim import SGD
from course.timing import compare_step_times, params_with_grads

LARGE = "few large (4 x Linear(1024, 1024))"

MODELS = {
    "many small (50 x Linear(64, 64))": lambda: [torch.nn.Linear(64, 64) for _ in range(50)],
    LARGE: lambda: [torch.nn.Linear(1024, 1024) for _ in range(4)],
}
OPTIONS = {
    "plain": dict(lr=0.01),
    "momentum": dict(lr=0.01, momentum=0.9),
    "nesterov+wd": dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4),
}


def measure(make, options: dict, foreach: bool | None, repeats: int) -> tuple[float, float]:
    """Median seconds per step for (course, torch), interleaved (course.timing)."""
    t = compare_step_times(
        {"course": lambda ps: SGD(ps, foreach=foreach, **options),
         "torch": lambda ps: torch.optim.SGD(ps, foreach=foreach, **options)},
        lambda: params_with_grads(make), repeats,
        inner=20 if make is MODELS[LARGE] else 50, warmup=5, baseline="torch")
    return t.medians["course"], t.medians["torch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'model':36} {'options':12} {'path':8} {'course':>10} {'torch':>10} {'ratio':>6}")
    worst = 0.0
    for mname, make in MODELS.items():
        for oname, options in OPTIONS.items():
            for foreach in (None, True):
                ours, theirs = measure(make, options, foreach, args.repeats)
                ratio = ours / theirs
                worst = max(worst, ratio)
                path = "foreach" if foreach else "for-loop"
                print(f"{mname:36} {oname:12} {path:8} {ours * 1e6:8.1f}us {theirs * 1e6:8.1f}us "
                      f"{ratio:6.3f}")
    print(f"worst ratio: {worst:.3f} (target <= 1.05): {'OK' if worst <= 1.05 else 'OVER'}")


if __name__ == "__main__":
    main()
