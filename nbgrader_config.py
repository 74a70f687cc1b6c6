"""nbgrader configuration for SGD from Scratch (nbgrader reads it from the repo root).

Grading safeguards (sandboxed kernel, re-verification outside the kernel,
re-inserted test cells, per-cell time limit, hidden tests kept out of
feedback) are set by course.grading.nbgrader_plugin.configure: see README,
"For instructors".
"""

import os

from course.grading.gradebook import DB_URL_ENV
from course.grading.nbgrader_plugin import configure

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "sgd-from-scratch"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
# Student notebooks carry no execution timings.
c.ClearOutputPreprocessor.remove_metadata_fields = {
    "collapsed", "scrolled", "execution", "ExecuteTime"}

# A shared gradebook (PostgreSQL) for several graders and grading workers; default:
# gradebook.db here. Password in PGPASSFILE or PGPASSWORD, never in the URL.
if os.environ.get(DB_URL_ENV):
    c.CourseDirectory.db_url = os.environ[DB_URL_ENV]

configure(c)
