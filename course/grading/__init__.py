"""Grading, one concern per file.

For the learner:

- :mod:`~course.grading.learner_check` -- ``course check``: run a notebook and
  score its test cells exactly as nbgrader scores them.

For the instructor (nbgrader's autograde, made so that no submission decides its
own grade):

- :mod:`~course.grading.nbgrader_plugin` -- the course's nbgrader configuration
  (time limits, the sandboxed kernel, re-verification, safe rendering);
- :mod:`~course.grading.kernel` -- the ``sgd-sandbox`` grading kernel;
- :mod:`~course.grading.jail` and :mod:`~course.grading.seccomp` -- the
  allow-list sandbox (bubblewrap) and the system-call filter;
- re-verification outside the kernel: :mod:`~course.grading.reverify` (the
  verdict), :mod:`~course.grading.zygote` (the pristine forking server),
  :mod:`~course.grading.child` (one verification), :mod:`~course.grading.lockdown`
  (the child's protections), :mod:`~course.grading.encoding` (values across the
  process boundary), :mod:`~course.grading.source` (what of a notebook runs),
  :mod:`~course.grading.probes` (probes derived from the exercise specs);
- :mod:`~course.grading.autograde` -- ``course grade``: parallel autograde;
- :mod:`~course.grading.cluster` -- ``course grade --scheduler``: the same on Dask
  workers; :mod:`~course.grading.gradebook` -- SQLite or a shared PostgreSQL
  gradebook, ``course gradebook migrate``;
- :mod:`~course.grading.class_report` -- ``course report``;
- :mod:`~course.grading.untrusted` and :mod:`~course.grading.render` --
  submission data handled and shown as untrusted.
"""
