"""The ``course`` command line (also ``python -m course``).

    course check notebooks/01-gradient-descent/01-gradient-descent.ipynb

runs the notebook in a fresh kernel and prints a per-exercise table. The exit
code is 0 only when every test passes.

Instructors use nbgrader's own commands (see README, "For instructors"), plus
two that nbgrader lacks, run from the course folder:

    course grade 01-gradient-descent --jobs 2    # autograde every submission in parallel
    course report 01-gradient-descent            # per-test-cell summary + totals histogram
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from course.grading import CheckError, check_notebook, format_table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description="SGD from Scratch tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="execute a lesson notebook and score its exercises")
    check.add_argument("path", help="a lesson notebook (.ipynb)")
    check.add_argument("--timeout", type=int, default=60, help="seconds per cell (default: 60)")
    grade = sub.add_parser("grade", help="autograde every submission of an assignment in parallel")
    grade.add_argument("assignment")
    grade.add_argument("--jobs", type=int, default=None, help="parallel students (default: cores)")
    report = sub.add_parser("report", help="summarise an autograded assignment")
    report.add_argument("assignment")
    report.add_argument("--png", default=None, help="histogram path (default: reports/<id>-totals.png)")
    for p in (grade, report):
        p.add_argument("--root", default=".", help="the nbgrader course folder (default: .)")
    return parser


def _report(args: argparse.Namespace) -> int:
    from course.report import class_report, format_report, plot_totals
    root = pathlib.Path(args.root)
    if not (root / "gradebook.db").is_file():
        print(f"course report: no gradebook.db in {root.resolve()}", file=sys.stderr)
        return 2
    summary, totals = class_report(args.assignment, root)
    if not totals:
        print(f"course report: no graded submissions of {args.assignment!r}", file=sys.stderr)
        return 2
    print(format_report(args.assignment, summary, totals))
    png = pathlib.Path(args.png or root / "reports" / f"{args.assignment}-totals.png")
    print(f"histogram: {plot_totals(totals, sum(c.max_score for c in summary), png)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``course`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        try:
            lesson, rows, problem = check_notebook(args.path, timeout=args.timeout)
        except CheckError as exc:
            print(f"course check: {exc}", file=sys.stderr)
            return 2
        print(format_table(lesson, rows, problem))
        return 0 if rows and all(r.passed for r in rows) and problem is None else 1
    if args.command == "grade":
        from course.report import grade_class
        results = grade_class(args.assignment, pathlib.Path(args.root), args.jobs)
        failed = [s for s, code in results.items() if code]
        print(f"graded {len(results) - len(failed)} of {len(results)} submissions"
              + (f"; not processed: {', '.join(failed)}" if failed else ""))
        return 1 if failed else 0
    if args.command == "report":
        return _report(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
