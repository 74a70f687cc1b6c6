"""SGD from Scratch: the helper package of the course.

One module per concept:

- :mod:`course.functions`  objectives and their gradients
- :mod:`course.gd`         reference gradient descent
- :mod:`course.data`       deterministic data sets and mini-batches
- :mod:`course.sgd`        ``sgd_update``: torch's update rule for one tensor
- :mod:`course.optim`      ``SGD``: a torch-exact ``torch.optim.Optimizer``
- :mod:`course.plotting`   headless matplotlib helpers
- :mod:`course.checks`     the learner-facing exercise checks
"""

__version__ = "0.1.0"
