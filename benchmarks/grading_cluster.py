"""Grading throughput on Dask: 1 and 2 workers against serial ``nbgrader autograde``.

Builds a throw-away course folder with one released lesson and N students (every
other one solved), then, with every safeguard on (sandboxed kernel, re-verification
outside the kernel), measures in notebooks per minute:

1. nbgrader's own way, one notebook at a time: ``nbgrader autograde LESSON --student S``;
2. ``course grade`` on a local Dask cluster (course.grading.cluster) of 1 worker process,
   then of 2 (each cluster started before the clock starts; its start-up is printed
   apart), submissions and autograded files shipped as bytes as to remote workers;

and prints the ratio of 2 workers to 1 and what a course of 5,000 learners x 9 lessons
would take at the measured rate per worker. The gradebook is the course's SQLite file
(workers on one machine); a shared PostgreSQL server changes the commits, not the grading.
Usage: python benchmarks/grading_cluster.py [--students N] [--lesson ID]
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from grading import ROOT, nbgrader, submit  # noqa: E402

from course.grading import cluster  # noqa: E402
from course.grading.autograde import grade  # noqa: E402

CLASS = 5000 * 9


def course_folder(base: pathlib.Path, lesson: str, students: int) -> pathlib.Path:
    # /var/tmp, not /tmp: the sandbox hides /tmp
    shutil.copytree(ROOT / "solutions" / lesson, base / "solutions" / lesson)
    shutil.copy(ROOT / "nbgrader_config.py", base)
    nbgrader("generate_assignment", lesson, "--force", cwd=base)
    for i in range(students):
        submit(base, f"student{i:02d}", lesson, solved=i % 2 == 0)
    return base


def serial(root: pathlib.Path, lesson: str, students: int) -> float:
    """Seconds for ``nbgrader autograde`` one student at a time."""
    start = time.perf_counter()
    for i in range(students):
        nbgrader("autograde", lesson, "--student", f"student{i:02d}", "--force", cwd=root)
    return time.perf_counter() - start


def on_dask(root: pathlib.Path, lesson: str, workers: int) -> tuple[float, float]:
    """(cluster start-up seconds, grading seconds) on ``workers`` local worker processes."""
    start = time.perf_counter()
    connected = cluster.connect(workers=workers)
    connected[0].wait_for_workers(workers)
    up = time.perf_counter() - start
    start = time.perf_counter()
    url = f"sqlite:///{root / 'gradebook.db'}"
    results = grade(root, [lesson], progress=False, force=True,
                    executor=cluster.executor(url, connected=connected))
    failed = {k: o.error for k, o in results.items() if o.error}
    if failed:
        raise SystemExit(f"grading failed: {failed}")
    return up, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--lesson", default="01-gradient-descent")
    args = parser.parse_args()
    n = args.students
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        root = course_folder(pathlib.Path(tmp), args.lesson, n)
        rates = {"serial nbgrader autograde": n / serial(root, args.lesson, n) * 60}
        for workers in (1, 2):
            up, seconds = on_dask(root, args.lesson, workers)
            print(f"  Dask, {workers} worker(s): cluster up in {up:.1f} s, "
                  f"{n} notebooks in {seconds:.1f} s")
            rates[f"Dask, {workers} worker(s)"] = n / seconds * 60
    print(f"{n} students x {args.lesson}, notebooks per minute:")
    for name, rate in rates.items():
        print(f"  {name:28} {rate:6.2f}")
    one, two = rates["Dask, 1 worker(s)"], rates["Dask, 2 worker(s)"]
    print(f"  ratio 2 workers / 1 worker: {two / one:.2f}x; 1 worker / serial nbgrader: "
          f"{one / rates['serial nbgrader autograde']:.2f}x")
    per_worker = two / 2
    print(f"5,000 learners x 9 lessons = {CLASS} notebooks at {per_worker:.2f} per minute per "
          f"worker (2-worker rate; later lessons run longer than {args.lesson}):")
    for workers in (1, 10, 50, 100):
        print(f"  {workers:3} workers: {CLASS / (per_worker * workers) / 60:8.1f} h")


if __name__ == "__main__":
    main()
