"""Collecting LMS downloads with ``nbgrader zip_collect`` (Canvas and Moodle).

nbgrader's :class:`~nbgrader.plugins.zipcollect.FileNameCollectorPlugin`
ships with no pattern (so ``zip_collect`` collects nothing) and matches its
``named_regexp`` with :func:`re.match` against the file's *absolute* path, so
a natural ``^lastfirst_...`` pattern never matches and a loose one takes
``submitted/tmp/...`` for a student id. :class:`LmsCollector` matches the
parts of the path an LMS writes, one format at a time:

* Canvas ("Download Submissions"): one flat zip of files named
  ``<lastfirst>_<userid>_<submissionid>_<original filename>``; a late
  submission has ``_LATE_`` after the name
  (``<lastfirst>_LATE_<userid>_<submissionid>_<file>``), and a resubmitted file
  may get ``-1``, ``-2``... before its extension. Student id: the Canvas user id.
* Moodle ("Download all submissions"): one folder per student,
  ``<Full Name>_<participant id>_assignsubmission_file_/<file>``. Student id:
  the participant id.

:func:`install` also makes ``zip_collect`` fail (exit 1, with the reason) when
it collects no submission, instead of logging a warning and exiting 0.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

from nbgrader.plugins import FileNameCollectorPlugin
from traitlets import List, Unicode

CANVAS = (r"(?P<last_first>[^/_]+)_(?:(?P<late>LATE)_)?(?P<student_id>\d+)_(?P<submission_id>\d+)_"
          r"(?P<file_id>[^/]+?)(?:-\d+)?(?P<ext>\.ipynb)")
MOODLE = (r"(?P<full_name>[^/]+)_(?P<student_id>\d+)_assignsubmission_(?:file|onlinetext)_/"
          r"(?P<file_id>[^/]+?)(?P<ext>\.ipynb)")


class LmsCollector(FileNameCollectorPlugin):
    """Student id and notebook name from a Canvas or a Moodle download."""

    formats = List(Unicode(), default_value=["canvas", "moodle"],
                   help="LMS download formats tried, in order: canvas, moodle.").tag(config=True)

    def collect(self, submitted_file: str) -> Optional[dict]:
        if os.path.splitext(submitted_file)[1] not in self.valid_ext:
            return None
        if self.named_regexp:          # an instructor's own pattern wins
            return super().collect(submitted_file)
        path = submitted_file.replace(os.sep, "/")
        for name in self.formats:
            regexp = {"canvas": CANVAS, "moodle": MOODLE}[name]
            # Anchored at a path separator: only the parts the LMS wrote are matched.
            match = re.search(r"(?:^|/)" + regexp + r"$", path)
            if match:
                info = match.groupdict()
                info["file_id"] += info.pop("ext")
                self.log.debug("%s: %s submission of student %s", submitted_file, name,
                               info["student_id"])
                return info
        self.log.warning("Not a %s submission file name: %s", " or ".join(self.formats),
                         submitted_file)
        return None


def _fail_when_empty(process: Any) -> Any:
    def process_extracted_files(self: Any) -> None:
        collected: dict = {}
        collect_files = self._collect_files

        def counting(src_files: list) -> dict:
            data = collect_files(src_files)
            collected.update(data)
            return data

        self._collect_files = counting
        try:
            process(self)
        finally:
            del self._collect_files
        if not collected:
            self.fail(
                "No submission collected for %s from %s: no file in the downloaded archive "
                "matched the %s download format (see README, 'For instructors').",
                self.coursedir.assignment_id,
                self._format_collect_path(self.archive_directory),
                self.collector_plugin.__name__)
    process_extracted_files.__wrapped__ = process
    return process_extracted_files


def install(c: Any) -> None:
    """Collect Canvas and Moodle downloads; a collection of nothing is an error."""
    from nbgrader.apps.zipcollectapp import ZipCollectApp
    c.ZipCollectApp.collector_plugin = LmsCollector
    if not hasattr(ZipCollectApp.process_extracted_files, "__wrapped__"):
        ZipCollectApp.process_extracted_files = _fail_when_empty(
            ZipCollectApp.process_extracted_files)
