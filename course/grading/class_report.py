"""``course report``: the instructor's class report, from nbgrader's gradebook.

:func:`class_report` reads the gradebook and the autograded notebooks and
summarises each test cell: pass rate, mean points, how many learners did not
attempt it (a stub left raising ``NotImplementedError``, a prediction left unset) and
the most common failure message among those who did, plus a PNG histogram of
the totals (:func:`plot_totals`). Everything printed that comes from a submission
goes through :func:`course.grading.untrusted.printable`.
"""

from __future__ import annotations

import collections
import statistics
import pathlib
import dataclasses
from dataclasses import dataclass

import nbformat

from course.checks._common import NOT_ATTEMPTED
from course.grading.untrusted import printable

#: The key under which :func:`_failures` counts checks that were not attempted.
NOT_TRIED = object()


@dataclass
class CellSummary:
    """One test cell across the class."""

    grade_id: str
    max_score: float
    submissions: int
    passed: int
    mean: float
    common_failure: str
    pending_manual: int = 0
    not_attempted: int = 0   #: stubs left raising NotImplementedError, predictions left unset


def _failures(assignment: str, notebook: str, root: pathlib.Path) -> dict[str, collections.Counter]:
    """grade_id -> Counter of first lines of the error messages, from autograded notebooks;
    a check that says the learner has not tried yet counts under :data:`NOT_TRIED`."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for path in sorted((root / "autograded").glob(f"*/{assignment}/{notebook}.ipynb")):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 - a broken file just has no messages
            continue
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            for out in cell.get("outputs", []):
                if gid and out.get("output_type") == "error":
                    text = (out.get("evalue") or out.get("ename") or "").strip()
                    first = (text.splitlines() or [out.get("ename", "")])[0]
                    untried = (out.get("ename") == "NotImplementedError"
                               or any(marker in first for marker in NOT_ATTEMPTED))
                    counts[gid][NOT_TRIED if untried else first[:120]] += 1
                    break
    return counts


def class_report(assignment: str, root: pathlib.Path) -> tuple[list[CellSummary], dict[str, float]]:
    """Per-cell summaries and per-student totals from nbgrader's gradebook
    (:func:`course.grading.gradebook.db_url`: SQLite or a shared PostgreSQL)."""
    from nbgrader.api import Gradebook
    from course.grading.gradebook import db_url
    cells: dict[str, list[float]] = collections.defaultdict(list)
    pending: collections.Counter = collections.Counter()
    maxima: dict[str, float] = {}
    totals: dict[str, float] = {}
    messages: dict[str, collections.Counter] = {}
    with Gradebook(db_url(root)) as gb:
        known = sorted(a.name for a in gb.assignments)
        if assignment not in known:
            raise KeyError(f"no assignment {assignment!r} in the gradebook "
                           f"(it has: {', '.join(known) or 'none'})")
        for sub in gb.assignment_submissions(assignment):
            totals[sub.student_id] = float(sub.score)
            for nb in sub.notebooks:
                for grade in nb.grades:
                    cells[grade.name].append(float(grade.score))
                    maxima[grade.name] = float(grade.max_score)
                    pending[grade.name] += bool(grade.needs_manual_grade)
        for notebook in gb.find_assignment(assignment).notebooks:
            messages.update(_failures(assignment, notebook.name, root))
    summary = []
    for gid, scores in cells.items():
        failures = collections.Counter(messages.get(gid) or {})
        untried = failures.pop(NOT_TRIED, 0)
        summary.append(CellSummary(gid, maxima[gid], len(scores),
                                   sum(s >= maxima[gid] for s in scores), sum(scores) / len(scores),
                                   (failures.most_common(1) or [("", 0)])[0][0], pending[gid],
                                   untried))
    return summary, totals


def refused_submissions(assignment: str, root: pathlib.Path) -> list[tuple[str, str]]:
    """(student, reason) of the submissions :func:`record_refused` recorded with 0."""
    from nbgrader.api import Gradebook
    from course.grading.gradebook import db_url
    found = []
    with Gradebook(db_url(root)) as gb:
        for sub in gb.assignment_submissions(assignment):
            for nb in sub.notebooks:
                notes = [c.auto_comment for c in nb.comments
                         if (c.auto_comment or "").startswith("Not graded: nbgrader refused")]
                if nb.flagged and notes:
                    found.append((sub.student_id, notes[0]))
                    break
    return sorted(found)


def format_report(assignment: str, summary: list[CellSummary], totals: dict[str, float]) -> str:
    """The table printed by ``course report``."""
    summary = [dataclasses.replace(c, grade_id=printable(c.grade_id, 60),
                                   common_failure=printable(c.common_failure, 90))
               for c in summary]
    width = max([len(c.grade_id) for c in summary] + [9])
    lines = [f"{printable(assignment, 80)}: {len(totals)} submissions",
             f"{'test cell':{width}}  {'max':>4}  {'passed':>9}  {'mean':>5}  {'not attempted':>13}"
             "  most common failure (of those attempted)"]
    for c in summary:
        rate = f"{c.passed}/{c.submissions}"
        note = f"{c.pending_manual} to grade by hand" if c.pending_manual else c.common_failure
        lines.append(f"{c.grade_id:{width}}  {c.max_score:4g}  {rate:>9}  {c.mean:5.2f}  "
                     f"{c.not_attempted:13d}  {note}".rstrip())
    if totals:
        values = sorted(totals.values())
        lines.append(f"totals: mean {sum(values) / len(values):.2f}, "
                     f"median {statistics.median(values):g}, min {values[0]:g}, max {values[-1]:g}")
    return "\n".join(lines)


def plot_totals(totals: dict[str, float], max_total: float, path: pathlib.Path) -> pathlib.Path:
    """Save a histogram of the students' totals as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(5, 3))
    bins = [x - 0.5 for x in range(int(max_total) + 2)]
    ax.hist(list(totals.values()), bins=bins, color="tab:blue", edgecolor="white")
    ax.set(xlabel="total points", ylabel="students", title=f"{len(totals)} submissions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))   # whole students
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
