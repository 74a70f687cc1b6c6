"""The ``course`` command line (also ``python -m course``).

    course check 01                  # your lesson-01 notebook (in my-work/), or a path

runs the notebook in a fresh kernel and prints a per-exercise table. The exit
code is 0 only when every test passes. The learner's workspace (``my-work/``,
:mod:`course.workspace`):

    course workspace                 # copy new lessons of the release (make lab runs it)
    course fresh 03                  # a fresh copy of lesson 03 next to yours

Instructors use nbgrader's own commands (see README, "For instructors"), plus
what nbgrader lacks, run from the course folder:

    course grade 01-gradient-descent --jobs 2    # autograde every submission in parallel
    course grade                                 # ... of every assignment (the whole course)
    course report 01-gradient-descent            # per-test-cell summary + totals histogram
    course grade --scheduler tcp://HOST:8786     # ... on the workers of a Dask cluster
    course gradebook migrate --to postgresql+psycopg://USER@HOST/DB   # a shared gradebook

A submission nbgrader refuses as tampered with (swapped grade ids, changed locked
cells, corrupted metadata) is recorded by ``course grade`` with 0 points and the
reason (printed, and appended to ``logs/course-grade.log``). Whatever comes from a
submission is printed through ``course.grading.untrusted.printable`` (no control characters).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from course.grading.learner_check import CheckError, check_notebook, format_table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description="SGD from Scratch tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="execute a lesson notebook and score its exercises")
    check.add_argument("path", help="a lesson (01 or 01-gradient-descent: your notebook of it "
                       "in my-work/) or a notebook's path")
    check.add_argument("--timeout", type=int, default=60, help="seconds per cell (default: 60)")
    workspace = sub.add_parser("workspace", help="copy the release's new lessons into your "
                               "workspace (never over your work)")
    fresh = sub.add_parser("fresh", help="put a fresh copy of a lesson next to yours")
    fresh.add_argument("lesson", help="e.g. 03 or 03-stochastic-gradient-descent")
    for p in (check, workspace, fresh):
        p.add_argument("--work", default=None, help="your workspace (default: my-work/ of the course)")
    for p in (workspace, fresh):
        p.add_argument("--release", default=None, help="the release (default: notebooks/)")
    grade = sub.add_parser("grade", help="autograde every submission in parallel")
    grade.add_argument("assignment", nargs="*",
                       help="assignments to grade (default: every one with submissions)")
    grade.add_argument("--jobs", type=int, default=None,
                       help="notebooks graded at once (default: cores)")
    grade.add_argument("--exclude", action="append", default=[], metavar="STUDENT",
                       help="a student not to grade now (repeatable)")
    grade.add_argument("--force", action="store_true",
                       help="regrade every submission (default: new and changed ones only)")
    where = grade.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="grade on the workers of this Dask scheduler (one task per notebook)")
    where.add_argument("--workers", type=int, default=None,
                       help="grade on a local Dask cluster of N worker processes")
    report = sub.add_parser("report", help="summarise an autograded assignment")
    report.add_argument("assignment")
    report.add_argument("--png", default=None, help="histogram path (default: reports/<id>-totals.png)")
    gradebook = sub.add_parser("gradebook", help="the gradebook's database")
    gradebook.add_argument("action", choices=["migrate"],
                           help="migrate: copy the gradebook into a new (PostgreSQL) database")
    gradebook.add_argument("--to", required=True, metavar="URL",
                           help="e.g. postgresql+psycopg://USER@HOST:5432/DB (password: PGPASSFILE)")
    gradebook.add_argument("--from", dest="source", default=None, metavar="URL",
                           help="the gradebook to copy (default: $COURSE_DB_URL or gradebook.db)")
    for p in (grade, report, gradebook):
        p.add_argument("--root", default=".", help="the nbgrader course folder (default: .)")
    for p in (grade, report):
        p.add_argument("--db-url", default=None, metavar="URL",
                       help="the gradebook (default: $COURSE_DB_URL, else gradebook.db; a "
                       "password goes in PGPASSFILE, not here)")
    return parser


def _report(args: argparse.Namespace) -> int:
    from course.grading.class_report import class_report, format_report, plot_totals
    root = pathlib.Path(args.root)
    if _use_gradebook(args, "report") is None:
        return 2
    try:
        summary, totals = class_report(args.assignment, root)
    except KeyError as exc:
        print(f"course report: {exc.args[0]}", file=sys.stderr)
        return 2
    if not totals:
        print(f"course report: no graded submissions of {args.assignment!r}", file=sys.stderr)
        return 2
    print(format_report(args.assignment, summary, totals))
    from course.grading.class_report import refused_submissions
    from course.grading.untrusted import printable
    for student, note in refused_submissions(args.assignment, root):
        print(f"refused by nbgrader, 0 points: {printable(student, 80)}: {printable(note, 300)}")
    png = pathlib.Path(args.png or root / "reports" / f"{args.assignment}-totals.png")
    print(f"histogram: {plot_totals(totals, sum(c.max_score for c in summary), png)}")
    return 0


def _use_gradebook(args: argparse.Namespace, command: str) -> str | None:
    """The gradebook ``course grade``/``course report`` use (``--db-url`` is exported as
    $COURSE_DB_URL for nbgrader_config.py), checked; None after printing why not."""
    import os
    from course.grading.gradebook import DB_URL_ENV, GradebookError, check, db_url
    if args.db_url:
        os.environ[DB_URL_ENV] = args.db_url
    try:
        return check(db_url(args.root), exists=command == "report")
    except GradebookError as exc:
        print(f"course {command}: {exc}", file=sys.stderr)
        return None


def _gradebook(args: argparse.Namespace) -> int:
    from course.grading.gradebook import GradebookError, db_url, migrate, shown
    source = args.source or db_url(args.root)
    try:
        copied = migrate(source, args.to)
    except GradebookError as exc:
        print(f"course gradebook: {exc}", file=sys.stderr)
        return 2
    rows = ", ".join(f"{table} {n}" for table, n in copied.items() if n)
    print(f"copied {shown(source)} into {shown(args.to)} and checked it: {rows}")
    print(f"grade into it: export COURSE_DB_URL={shown(args.to)}")
    return 0


def _grade(args: argparse.Namespace) -> int:
    from course.grading.autograde import grade
    root = pathlib.Path(args.root)
    if not (root / "nbgrader_config.py").is_file():
        print(f"course grade: no nbgrader_config.py in {root.resolve()} (run it from the "
              "course folder or pass --root)", file=sys.stderr)
        return 2
    for option in ("jobs", "workers"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            print(f"course grade: --{option} must be at least 1", file=sys.stderr)
            return 2
    url = _use_gradebook(args, "grade")
    if url is None:
        return 2
    executor = None
    if args.scheduler or args.workers:
        from course.grading.cluster import executor
        executor = executor(url, args.scheduler, args.workers)
    elif not url.startswith("sqlite") and (root / "submitted").is_dir():
        # local processes into a shared gradebook: no two create the same student
        from course.grading.cluster import create_students
        create_students(url, root, [p.name for p in (root / "submitted").iterdir()
                                    if p.is_dir() and p.name not in args.exclude])
    from course.grading.cluster import ClusterError
    try:
        results = grade(root, args.assignment, args.jobs, exclude=args.exclude, force=args.force,
                        executor=executor)
    except (FileNotFoundError, ClusterError) as exc:
        print(f"course grade: {exc}", file=sys.stderr)
        return 2
    from course.grading.untrusted import printable
    failed = [f"{printable(s, 80)} ({printable(a, 80)})" for (s, a), o in results.items() if o.error]
    refused = [(s, a, o.refused) for (s, a), o in results.items() if o.refused]
    skipped = sum(o.skipped for o in results.values())
    print(f"graded {len(results) - len(failed) - skipped} of {len(results)} submissions"
          + (f"; unchanged since last graded, not regraded: {skipped} (--force regrades)"
             if skipped else "")
          + (f"; refused by nbgrader and recorded with 0 points: {len(refused)}" if refused else "")
          + (f"; not processed: {', '.join(failed)}" if failed else ""))
    for student, assignment, reason in refused:
        print(f"  refused: {printable(student, 80)} ({printable(assignment, 80)}): {reason}")
    if refused or failed:
        print(f"details: {(root / 'logs' / 'course-grade.log').resolve()}")
    if failed:
        print(f"nbgrader's whole log of each: {(root / 'logs' / 'course-grade-failures').resolve()}")
    return 1 if failed else 0


def _workspace(args: argparse.Namespace) -> int:
    from course import workspace
    work = pathlib.Path(args.work) if args.work else workspace.WORKSPACE
    release = pathlib.Path(args.release) if args.release else workspace.RELEASE
    try:
        if args.command == "fresh":
            path = workspace.fresh(args.lesson, release, work)
            print(f"a fresh copy of the lesson, next to yours: {path}")
            return 0
        done = workspace.sync(release, work)
    except workspace.WorkspaceError as exc:
        print(f"course {args.command}: {exc}", file=sys.stderr)
        return 2
    for line in done:
        print(f"{work.name}/: {line}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``course`` console script."""
    args = _parser().parse_args(argv)
    if args.command in ("workspace", "fresh"):
        return _workspace(args)
    if args.command == "check":
        from course import workspace
        try:
            path = workspace.find_notebook(args.path, work=args.work or workspace.WORKSPACE)
            lesson, rows, problem = check_notebook(path, timeout=args.timeout)
        except (CheckError, workspace.WorkspaceError) as exc:
            print(f"course check: {exc}", file=sys.stderr)
            return 2
        print(format_table(lesson, rows, problem))
        return 0 if rows and all(r.passed for r in rows) and problem is None else 1
    if args.command == "grade":
        return _grade(args)
    if args.command == "report":
        return _report(args)
    if args.command == "gradebook":
        return _gradebook(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
