"""Probes: how each lesson's exercises are re-verified outside the kernel.

``lessonNN.py`` defines ``PROBES`` (test-cell grade_id -> :class:`course.grading.probes.Probe`)
and ``FORBIDDEN`` (dotted names disabled while the learner's code runs: the
answer keys an exercise must not delegate to). See :mod:`course.grading`.

A probe runs in the same interpreter as the learner's code, after it, so it
builds its own inputs (seeded ``torch.Generator``/``numpy`` generators, never
the global RNG), never relies on what that code could have patched for its
decisions (no ``torch.equal``/``allclose``: it returns values and the trusted
parent compares them), converts learner results with the helpers of
:mod:`course.exercises.values` (exact types only; a wrong type becomes a string
that matches nothing), and binds a snapshot of the builtins at import
(``__builtins__ = dict(vars(builtins))``), so that a patched ``type`` or
``isinstance`` cannot lie to it.
"""
