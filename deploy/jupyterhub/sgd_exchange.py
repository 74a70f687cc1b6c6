"""nbgrader's exchange with submissions private to their author and the instructor.

nbgrader's default ``submit`` leaves a submission's folder in the exchange's
``inbound/`` world-readable (mode 0777, files 0644): other learners cannot list
``inbound/`` (mode 2733), but anyone who learns a folder's name can read the
work in it. :class:`PrivateSubmit` closes the folder to everyone but its author
and the group that owns ``inbound/``: ``inbound/`` is setgid and created by the
instructor's ``release_assignment``, so that is the instructor's own group,
which learners are not in, and ``collect`` still reads through it.

setup.sh puts this folder on ``sys.path`` and selects the class in the hub's
``nbgrader_config.py`` (``c.ExchangeFactory.submit``).
"""

from __future__ import annotations

import os

from nbgrader.exchange.default import ExchangeSubmit


class PrivateSubmit(ExchangeSubmit):
    """``nbgrader submit``, then the submission's folder made mode 0770."""

    def copy_files(self) -> None:
        super().copy_files()
        dest = os.path.join(self.inbound_path, self.assignment_filename)
        if os.path.isdir(dest):
            os.chmod(dest, 0o770)
