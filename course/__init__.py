"""SGD from Scratch: the helper package of the course.

One module per concept:

- :mod:`course.functions`       objectives and their gradients
- :mod:`course.gd`              reference gradient descent
- :mod:`course.gradcheck`       finite-difference gradient checks (lesson 2)
- :mod:`course.data`            deterministic data sets and mini-batches
- :mod:`course.stochastic`      mini-batch gradients, noise and schedules (lesson 3)
- :mod:`course.momentum`        heavy ball in torch's and the velocity convention (lesson 4)
- :mod:`course.floating_point`  ulps and fused multiply-add (lesson 5)
- :mod:`course.sgd`             ``sgd_update``: torch's update rule for one tensor
- :mod:`course.optim`           ``SGD``: a torch-exact ``torch.optim.Optimizer``
- :mod:`course.training`        training loops and evaluation (lesson 7)
- :mod:`course.timing`          interleaved step timings (lesson 8, benchmarks)
- :mod:`course.plotting`        headless matplotlib helpers
- :mod:`course.notebook`        one-line notebook set-up (seeds, threads, style)
- :mod:`course.exercises`       one spec per graded exercise (cases, reference, mistakes)
- :mod:`course.checks`          the learner-facing exercise checks, derived from the specs
- :mod:`course.grading`         ``course check`` for learners; autograde, re-verification,
                                sandbox and report for instructors (one concern per file)
"""

__version__ = "0.1.0"
