"""Probes: how each lesson's exercises are re-verified outside the kernel.

``lessonNN.py`` defines ``PROBES`` (test-cell grade_id -> :class:`course.verify.Probe`)
and ``FORBIDDEN`` (dotted names disabled while the learner's code runs: the
answer keys an exercise must not delegate to). See :mod:`course.verify`.
"""
