"""Instructor commands that nbgrader lacks: parallel grading and a class report.

* :func:`grade` autogrades every submission -- one assignment or the whole
  course -- on several cores. Each worker process loads nbgrader once and
  grades one (student, assignment) pair at a time through nbgrader's own API,
  longest lessons first; every pair commits its own grades to nbgrader's
  gradebook, which stays the single record, so a crash loses nothing already
  recorded.
* :func:`class_report` reads the gradebook and the autograded notebooks and
  summarises each test cell: pass rate, mean points and the most common
  failure message, plus a PNG histogram of the totals.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
import pathlib
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import nbformat

LOCKED = "database is locked"

#: The nbgrader API of this worker process (see :func:`_start_worker`).
_API: list[Any] = []


def submitted_students(assignment: str, root: pathlib.Path) -> list[str]:
    """Students with a submission of ``assignment`` under ``root/submitted``."""
    base = root / "submitted"
    return sorted(p.name for p in base.iterdir() if (p / assignment).is_dir()) \
        if base.is_dir() else []


def submitted_assignments(root: pathlib.Path) -> list[str]:
    """Every assignment that has at least one submission under ``root/submitted``."""
    base = root / "submitted"
    return sorted({a.name for s in base.iterdir() if s.is_dir() for a in s.iterdir()
                   if a.is_dir()}) if base.is_dir() else []


def _start_worker(root: str) -> None:
    """Load nbgrader and the course's configuration once per worker process."""
    os.chdir(root)
    bin_dir = pathlib.Path(sys.executable).parent        # nbgrader runs alembic by name
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    warnings.filterwarnings("ignore", module="nbgrader")
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.apps.nbgraderapp import NbGraderApp
    app = NbGraderApp()
    app.initialize([])                     # reads nbgrader_config.py in the course folder
    app.log_level = "ERROR"
    _API.append(NbGraderAPI(config=app.config, log_level="ERROR"))


def _autograde(student: str, assignment: str, tries: int = 3) -> tuple[str, str, str]:
    """Autograde one submission in this worker; ``""`` or the reason it failed.

    Retried when sqlite is momentarily locked by another worker.
    """
    result: dict[str, Any] = {}
    for _ in range(tries):
        result = _API[0].autograde(assignment, student, force=True, create=True)
        if result.get("success") or LOCKED not in result.get("error", "") + result.get("log", ""):
            break
    if result.get("success"):
        return student, assignment, ""
    text = (result.get("error") or result.get("log") or "unknown error").strip()
    return student, assignment, (text.splitlines() or ["unknown error"])[-1][:300]


def _cost(assignment: str) -> int:
    """Order work longest first: later lessons run longer notebooks."""
    return -int(assignment[:2]) if assignment[:2].isdigit() else 0


def grade(root: pathlib.Path, assignments: list[str] | None = None, jobs: int | None = None,
          progress: bool = True) -> dict[tuple[str, str], str]:
    """Autograde every submission of ``assignments`` (default: all), ``jobs`` at a time.

    Returns:
        (student, assignment) -> ``""`` when graded, else why nbgrader could not.
    """
    root = pathlib.Path(root).resolve()
    assignments = assignments or submitted_assignments(root)
    pairs = sorted(((s, a) for a in assignments for s in submitted_students(a, root)),
                   key=lambda p: (_cost(p[1]), p))
    if not pairs:
        where = root / "submitted"
        raise FileNotFoundError(f"no submissions of {', '.join(assignments) or 'any assignment'}"
                                f" in {where}")
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(pairs)))
    results: dict[tuple[str, str], str] = {}
    from tqdm import tqdm
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                                initargs=(str(root),)) as pool, \
            tqdm(total=len(pairs), desc="autograde", unit="notebook", disable=not progress,
                 file=sys.stderr) as bar:
        futures = {pool.submit(_autograde, s, a): (s, a) for s, a in pairs}
        for fut in concurrent.futures.as_completed(futures):
            try:
                student, assignment, error = fut.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker: report, never hide
                (student, assignment), error = futures[fut], f"grading process failed: {exc!r}"
            results[(student, assignment)] = error
            if error:
                bar.write(f"{student} {assignment}: not graded ({error})", file=sys.stderr)
            bar.update()
    return dict(sorted(results.items()))


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


def _failures(assignment: str, notebook: str, root: pathlib.Path) -> dict[str, collections.Counter]:
    """grade_id -> Counter of first lines of the error messages, from autograded notebooks."""
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
                    counts[gid][(text.splitlines() or [out.get("ename", "")])[0][:120]] += 1
                    break
    return counts


def class_report(assignment: str, root: pathlib.Path) -> tuple[list[CellSummary], dict[str, float]]:
    """Per-cell summaries and per-student totals from nbgrader's gradebook."""
    from nbgrader.api import Gradebook
    cells: dict[str, list[float]] = collections.defaultdict(list)
    pending: collections.Counter = collections.Counter()
    maxima: dict[str, float] = {}
    totals: dict[str, float] = {}
    messages: dict[str, collections.Counter] = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for sub in gb.assignment_submissions(assignment):
            totals[sub.student_id] = float(sub.score)
            for nb in sub.notebooks:
                for grade in nb.grades:
                    cells[grade.name].append(float(grade.score))
                    maxima[grade.name] = float(grade.max_score)
                    pending[grade.name] += bool(grade.needs_manual_grade)
        for notebook in gb.find_assignment(assignment).notebooks:
            messages.update(_failures(assignment, notebook.name, root))
    summary = [CellSummary(gid, maxima[gid], len(scores),
                           sum(s >= maxima[gid] for s in scores),
                           sum(scores) / len(scores),
                           (messages.get(gid) or collections.Counter({"": 0})).most_common(1)[0][0],
                           pending[gid])
               for gid, scores in cells.items()]
    return summary, totals


def format_report(assignment: str, summary: list[CellSummary], totals: dict[str, float]) -> str:
    """The table printed by ``course report``."""
    width = max([len(c.grade_id) for c in summary] + [9])
    lines = [f"{assignment}: {len(totals)} submissions",
             f"{'test cell':{width}}  {'max':>4}  {'passed':>9}  {'mean':>5}  most common failure"]
    for c in summary:
        rate = f"{c.passed}/{c.submissions}"
        note = f"{c.pending_manual} to grade by hand" if c.pending_manual else c.common_failure
        lines.append(f"{c.grade_id:{width}}  {c.max_score:4g}  {rate:>9}  {c.mean:5.2f}  "
                     f"{note[:90]}")
    if totals:
        values = sorted(totals.values())
        lines.append(f"totals: mean {sum(values) / len(values):.2f}, "
                     f"median {values[len(values) // 2]:g}, min {values[0]:g}, max {values[-1]:g}")
    return "\n".join(lines)


def plot_totals(totals: dict[str, float], max_total: float, path: pathlib.Path) -> pathlib.Path:
    """Save a histogram of the students' totals as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3))
    bins = [x - 0.5 for x in range(int(max_total) + 2)]
    ax.hist(list(totals.values()), bins=bins, color="tab:blue", edgecolor="white")
    ax.set(xlabel="total points", ylabel="students", title=f"{len(totals)} submissions")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
