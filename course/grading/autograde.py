"""``course grade``: the instructor's parallel autograde (nbgrader lacks one).

* :func:`grade` autogrades every submission -- one assignment or the whole
  course -- on several cores. Each worker process loads nbgrader once and
  grades one (student, assignment) pair at a time through nbgrader's own API,
  longest lessons first; every pair commits its own grades to nbgrader's
  gradebook, which stays the single record, so a crash loses nothing already
  recorded.
* A submission nbgrader refuses to grade because it was tampered with
  (grade ids swapped, locked cells changed, nbgrader metadata corrupted or of
  another schema version, not a notebook at all) would otherwise be missing
  from the grades or keep stale ones: :func:`grade` records it in the
  gradebook through nbgrader's API with 0 points on every cell, flagged, with
  the reason as the cells' comment, so ``nbgrader export`` lists it with 0, and
  reports the reason. Before grading, symlinks and special files are removed from
  every submission (:func:`course.grading.untrusted.remove_non_regular`), never followed.
* Incremental: a submission graded before and unchanged since (same files, same
  bytes: :func:`submission_digest`, recorded in ``logs/course-grade-state.json``)
  is skipped unless ``force``; new and changed submissions are graded.
* A written answer the grader already scored by hand and that the submission
  did not change stays graded: nbgrader's ``SaveAutoGrades`` flags every cell with
  a manual score as "needs grading" again on each autograde
  (:func:`_keep_manual_grades`).

Everything printed that comes from a submission (student ids, messages,
errors) goes through :func:`course.grading.untrusted.printable`.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import json
import multiprocessing
import os
import pathlib
import re
import shutil
import sys
import warnings
from dataclasses import dataclass
from typing import Any


from course.grading.untrusted import printable

LOCKED = "database is locked"
#: Errors with which nbgrader refuses a notebook whose nbgrader metadata or locked
#: cells were tampered with (or that is no notebook): the submission gets 0.
REFUSALS = (
    "Inconsistent checksums for cell",            # grade ids swapped, locked cell changed
    "Notebook failed to validate",                # nbgrader metadata corrupted
    "Duplicate grade id",
    "does not have a grade_id",
    "grade_id is empty",
    "does not have points",
    "ValidationError",
    "version of the nbgrader metadata format",    # schema version edited
    "NotJSONError", "Notebook does not appear to be JSON",
    "JSONDecodeError", "UnicodeDecodeError",
)
_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")
_CHANGED = re.compile(r"Attribute '([^']*)' for cell (\S+) has changed")

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


STATE = pathlib.Path("logs") / "course-grade-state.json"


def submission_digest(folder: pathlib.Path) -> str:
    """SHA-256 over the relative paths and bytes of every regular file of a submission."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _read_state(root: pathlib.Path) -> dict[str, dict]:
    try:
        state = json.loads((root / STATE).read_text())
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _written_answers(folder: pathlib.Path) -> dict[tuple[str, str], str]:
    """(notebook, grade id) -> SHA-256 of the source of each manually graded answer
    (a markdown grade cell) in the notebooks of ``folder``."""
    import nbformat
    from nbgrader.utils import is_grade
    answers = {}
    for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 - an unreadable copy keeps nothing
            continue
        for cell in nb.cells:
            if cell.cell_type == "markdown" and is_grade(cell):
                key = (path.stem, str(cell.metadata["nbgrader"].get("grade_id", "")))
                answers[key] = hashlib.sha256(cell.source.encode()).hexdigest()
    return answers


def _keep_manual_grades(student: str, assignment: str,
                        before: dict[tuple[str, str], str]) -> int:
    """After an autograde: a written answer scored by hand whose source is the one
    that was graded (same as in the previous autograded copy) does not need grading
    again. Returns how many were kept."""
    after = _written_answers(pathlib.Path("autograded") / student / assignment)
    kept = 0
    with _API[0].gradebook as gb:
        submission = gb.find_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                key = (notebook.name, grade.name)
                if (grade.needs_manual_grade and grade.manual_score is not None
                        and grade.auto_score is None and key in before
                        and before[key] == after.get(key)):
                    grade.needs_manual_grade = False
                    kept += 1
        gb.db.commit()
    return kept


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


def refusal_reason(text: str) -> str | None:
    """Why nbgrader refused a notebook as tampered with, from its log; ``None`` when the
    failure is of another kind (a crash, a locked database...)."""
    if not any(marker in text for marker in REFUSALS):
        return None
    errors = [m.group(1).rsplit(".", 1)[-1] + ": " + m.group(2).strip()
              for m in map(_EXCEPTION_LINE.match, text.splitlines()) if m
              and "NbGraderException" not in m.group(1)]
    changed = sorted({f"{cell} {attr} changed" for attr, cell in _CHANGED.findall(text)})
    reason = "; ".join(([errors[-1]] if errors else []) + changed[:5])
    if not reason:
        reason = next(line.strip() for line in text.splitlines()
                      if any(marker in line for marker in REFUSALS))
    return printable(reason, 300)


def record_refused(student: str, assignment: str, reason: str, root: pathlib.Path,
                   db_url: str | None = None, course_id: str = "") -> float:
    """Record a refused submission in nbgrader's gradebook: every cell 0 points
    (auto score 0, no manual score, nothing left to grade by hand), every notebook
    flagged, the reason as the comment of each answer cell, the submission time from
    its ``timestamp.txt``. Its autograded copy, if any is left, is removed so that no
    stale feedback is generated. Returns the submission's score (0)."""
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc
    root = pathlib.Path(root)
    folder = root / "submitted" / student / assignment
    timestamp = None
    try:
        timestamp = parse_utc((folder / "timestamp.txt").read_text().strip())
    except (OSError, ValueError):
        pass
    note = f"Not graded: nbgrader refused this notebook ({reason}). Score: 0."
    with Gradebook(db_url or f"sqlite:///{root / 'gradebook.db'}", course_id) as gb:
        gb.update_or_create_student(student)
        kw = {"timestamp": timestamp} if timestamp else {}
        submission = gb.update_or_create_submission(assignment, student, **kw)
        for notebook in submission.notebooks:
            notebook.flagged = True
            for grade in notebook.grades:
                grade.auto_score, grade.manual_score, grade.extra_credit = 0.0, None, None
                grade.needs_manual_grade = False
            for comment in notebook.comments:
                comment.auto_comment, comment.manual_comment = note, None
        gb.db.commit()
        score = float(gb.find_submission(assignment, student).score)
    autograded = root / "autograded" / student / assignment
    if autograded.is_dir() and not autograded.is_symlink():
        shutil.rmtree(autograded)
    return score


def _autograde(student: str, assignment: str, tries: int = 3) -> tuple[str, str, str, str]:
    """Autograde one submission in this worker: ``(student, assignment, error,
    refused)``, ``error`` the reason it was not processed, ``refused`` the reason
    nbgrader refused it as tampered with (then recorded with 0), both ``""`` if graded.

    Retried when sqlite is momentarily locked by another worker.
    """
    result: dict[str, Any] = {}
    before = _written_answers(pathlib.Path("autograded") / student / assignment)
    for _ in range(tries):
        result = _API[0].autograde(assignment, student, force=True, create=True)
        if result.get("success") or LOCKED not in result.get("error", "") + result.get("log", ""):
            break
    if result.get("success"):
        if before:
            for attempt in range(tries):
                try:
                    _keep_manual_grades(student, assignment, before)
                    break
                except Exception as exc:  # noqa: BLE001 - sqlite locked by another worker
                    if LOCKED not in str(exc) or attempt == tries - 1:
                        raise
        return student, assignment, "", ""
    text = f"{result.get('log') or ''}\n{result.get('error') or ''}"
    reason = refusal_reason(text)
    if reason:
        coursedir = _API[0].coursedir
        record_refused(student, assignment, reason, pathlib.Path.cwd(), coursedir.db_url,
                       coursedir.course_id)
        return student, assignment, "", reason
    details = write_failure_log(pathlib.Path.cwd(), student, assignment, text)
    return student, assignment, f"{failure_reason(text)}; full log: {details}", ""


#: nbgrader's closing words after a failure, which say nothing about it.
_GENERIC = ("Please see the", "There was an error processing assignment")


def failure_reason(text: str) -> str:
    """The one line of nbgrader's log that says why a notebook was not graded.

    nbgrader ends a failure with "Please see the the above traceback", which
    ``capture_log`` returns without that traceback; the traceback is in the log.
    The reason is the last exception line there that is not nbgrader's generic
    one (an ``NbGraderException`` shows its message only), else the last
    error line that is not generic, else the last line.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        m = _EXCEPTION_LINE.match(line)
        if m and not any(g in m.group(2) for g in _GENERIC):
            kind = m.group(1).rsplit(".", 1)[-1]
            reason = m.group(2) if kind == "NbGraderException" else f"{kind}: {m.group(2)}"
            return printable(reason, 300)
    for line in reversed(lines):
        if line.startswith("[ERROR]") and not any(g in line for g in _GENERIC):
            return printable(line.removeprefix("[ERROR]").strip(), 300)
    return printable(lines[-1] if lines else "unknown error", 300)


def write_failure_log(root: pathlib.Path, student: str, assignment: str, text: str) -> str:
    """Keep nbgrader's whole log of a failed submission, every line escaped, in
    ``logs/course-grade-failures/<assignment>/<student>.log``; returns that path
    relative to ``root``."""
    path = root / "logs" / "course-grade-failures" / assignment / f"{student}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(printable(line) + "\n" for line in text.strip().splitlines()),
                    encoding="utf-8")
    return str(path.relative_to(root))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _cost(assignment: str) -> int:
    """Order work longest first: later lessons run longer notebooks."""
    return -int(assignment[:2]) if assignment[:2].isdigit() else 0


@dataclass
class Outcome:
    """What :func:`grade` did with one submission."""

    error: str = ""        #: why it was not processed (nothing recorded), or ""
    refused: str = ""      #: why nbgrader refused it as tampered with (recorded: 0), or ""
    skipped: bool = False  #: unchanged since it was last graded: not graded again

    def __bool__(self) -> bool:      # true when not processed, as the bare error string was
        return bool(self.error)


def grade(root: pathlib.Path, assignments: list[str] | None = None, jobs: int | None = None,
          progress: bool = True, log_file: pathlib.Path | None = None,
          exclude: list[str] | None = None, force: bool = False,
          executor: Any = None) -> dict[tuple[str, str], Outcome]:
    """Autograde every submission of ``assignments`` (default: all), ``jobs`` at a
    time, except those of the students in ``exclude``. Without ``force``, a
    submission unchanged since it was last graded (its :func:`submission_digest`)
    is skipped (its outcome has ``skipped``).

    ``executor(root, pairs)``, if given, returns the ``concurrent.futures.Executor``
    that runs :func:`_autograde` instead of local processes (a Dask cluster:
    :mod:`course.grading.cluster`).

    A submission refused as tampered with is recorded with 0 (:func:`record_refused`).
    Refusals and failures are appended, escaped, to ``log_file`` (default:
    ``root/logs/course-grade.log``).

    Returns:
        (student, assignment) -> its :class:`Outcome` (false when processed).
    """
    root = pathlib.Path(root).resolve()
    assignments = assignments or submitted_assignments(root)
    skip = set(exclude or ())
    pairs = sorted(((s, a) for a in assignments for s in submitted_students(a, root)
                    if s not in skip), key=lambda p: (_cost(p[1]), p))
    if not pairs:
        where = root / "submitted"
        raise FileNotFoundError(f"no submissions of {', '.join(assignments) or 'any assignment'}"
                                f" in {where}")
    log_file = pathlib.Path(log_file or root / "logs" / "course-grade.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    from course.grading.untrusted import remove_non_regular
    with log_file.open("a", encoding="utf-8") as log:
        for student, assignment in pairs:       # never follow a learner's link while grading
            for path in remove_non_regular(root / "submitted" / student / assignment):
                line = (f"{printable(student, 80)} {printable(assignment, 80)}: removed "
                        f"{printable(path, 300)} (a link or special file, not followed)")
                print(line, file=sys.stderr)
                log.write(f"{_now()} {line}\n")
    results: dict[tuple[str, str], Outcome] = {}
    (root / STATE).parent.mkdir(parents=True, exist_ok=True)
    state = _read_state(root)
    digests = {p: submission_digest(root / "submitted" / p[0] / p[1]) for p in pairs}
    if not force:
        for student, assignment in list(pairs):
            last = state.get(f"{student}/{assignment}", {})
            graded = (root / "autograded" / student / assignment).is_dir() or last.get("refused")
            if last.get("digest") == digests[(student, assignment)] and graded:
                results[(student, assignment)] = Outcome(skipped=True)
                pairs.remove((student, assignment))
        if not pairs:
            return dict(sorted(results.items()))
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(pairs)))
    from tqdm import tqdm
    context = multiprocessing.get_context("spawn")
    pool = executor(root, pairs) if executor else concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_start_worker, initargs=(str(root),))
    failures = 0
    with pool, \
            tqdm(total=len(pairs), desc="autograde", unit="notebook", disable=not progress,
                 file=sys.stderr) as bar, log_file.open("a", encoding="utf-8") as log:
        futures = {pool.submit(_autograde, s, a): (s, a) for s, a in pairs}
        for fut in concurrent.futures.as_completed(futures):
            try:
                student, assignment, error, refused = fut.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker: report, never hide
                (student, assignment), refused = futures[fut], ""
                error = printable(f"grading process failed: {exc!r}", 300)
            results[(student, assignment)] = Outcome(error, refused)
            if not error:
                state[f"{student}/{assignment}"] = {"digest": digests[(student, assignment)],
                                                    "refused": bool(refused)}
                (root / STATE).write_text(json.dumps(state, indent=1, sort_keys=True))
            who = f"{printable(student, 80)} {printable(assignment, 80)}"
            line = (f"{who}: refused by nbgrader, recorded with 0 points ({refused})" if refused
                    else f"{who}: not graded ({error})" if error else "")
            if line:
                failures += bool(error)
                bar.set_postfix(failed=failures, refresh=False)
                bar.write(line, file=sys.stderr)
                log.write(f"{_now()} {line}\n")
                log.flush()
            bar.update()
    return dict(sorted(results.items()))
