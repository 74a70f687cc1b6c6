"""The ``course`` command line (also ``python -m course``).

    course check notebooks/01-gradient-descent/01-gradient-descent.ipynb

runs the notebook in a fresh kernel and prints a per-exercise table. The exit
code is 0 only when every test passes. Instructors use nbgrader's own commands
(see README, "For instructors").
"""

from __future__ import annotations

import argparse
import sys

from course.grading import CheckError, check_notebook, format_table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description="SGD from Scratch tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="execute a lesson notebook and score its exercises")
    check.add_argument("path", help="a lesson notebook (.ipynb)")
    check.add_argument("--timeout", type=int, default=60, help="seconds per cell (default: 60)")
    return parser


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
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
