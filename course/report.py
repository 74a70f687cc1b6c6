"""Instructor commands that nbgrader lacks: parallel grading and a class report.

* :func:`grade_class` runs ``nbgrader autograde <assignment> --student <id>``
  for every submission, several at a time (one process per student, so a
  crash loses nothing already recorded: each process commits its own grades
  to nbgrader's gradebook, which stays the single record).
* :func:`class_report` reads the gradebook and the autograded notebooks and
  summarises each test cell: pass rate, mean points and the most common
  failure message, plus a PNG histogram of the totals.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass

import nbformat

LOCKED = "database is locked"


def submitted_students(assignment: str, root: pathlib.Path) -> list[str]:
    """Students with a submission of ``assignment`` under ``root/submitted``."""
    base = root / "submitted"
    return sorted(p.name for p in base.iterdir() if (p / assignment).is_dir()) \
        if base.is_dir() else []


def _autograde(assignment: str, student: str, root: pathlib.Path, tries: int = 3) -> tuple[str, int, str]:
    """One ``nbgrader autograde`` process; retried when sqlite is momentarily locked."""
    nbgrader = pathlib.Path(sys.executable).with_name("nbgrader")
    env = dict(os.environ, PATH=f"{nbgrader.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(nbgrader), "autograde", assignment, "--student", student, "--force",
           "--log-level=WARN"]
    for _ in range(tries):
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        if proc.returncode == 0 or LOCKED not in proc.stderr:
            break
    return student, proc.returncode, proc.stderr[-2000:]


def grade_class(assignment: str, root: pathlib.Path, jobs: int | None = None,
                progress: bool = True) -> dict[str, int]:
    """Autograde every submission of ``assignment``, ``jobs`` students at a time.

    Returns:
        student -> nbgrader's exit code (0: graded; 1: could not be processed).
    """
    students = submitted_students(assignment, root)
    if not students:
        raise SystemExit(f"no submissions of {assignment!r} in {root / 'submitted'}")
    jobs = jobs or os.cpu_count() or 1
    results: dict[str, int] = {}
    from tqdm import tqdm
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool, \
            tqdm(total=len(students), desc=f"autograde {assignment}", unit="student",
                 disable=not progress, file=sys.stderr) as bar:
        futures = [pool.submit(_autograde, assignment, s, root) for s in students]
        for fut in concurrent.futures.as_completed(futures):
            student, code, err = fut.result()
            results[student] = code
            if code:
                bar.write(f"{student}: not graded ({err.strip().splitlines()[-1:] or ['?']})")
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
