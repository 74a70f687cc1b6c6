"""One-line set-up for a lesson notebook: seeds, threads and plot style.

Every lesson starts with ``from course.notebook import setup; setup()`` so
that its printed numbers and figures are the same on every run (the stored
outputs are regression-tested with nbval).
"""

from __future__ import annotations

import random

import numpy as np


def setup(seed: int = 0, threads: int = 1) -> None:
    """Seed every RNG, fix torch's thread count, and set a compact plot style.

    Args:
        seed: seed for ``random``, numpy's legacy global RNG and torch.
        threads: torch intra-op threads; 1 makes float sums reproducible
            across machines with different core counts.
    """
    import matplotlib as mpl
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.set_printoptions(precision=4, sci_mode=False)
    np.set_printoptions(precision=4, suppress=True)
    mpl.rcParams.update({"figure.figsize": (5.5, 3.5), "figure.dpi": 80,
                         "axes.grid": True, "grid.alpha": 0.3,
                         "svg.hashsalt": "course"})
