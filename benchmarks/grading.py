"""How long grading takes: one student's whole course, and a class serial vs parallel.

Builds a throw-away course folder from solutions/, releases every lesson with
nbgrader, then, with every safeguard on (sandboxed kernel, re-verification
outside the kernel), times ``course grade`` (course.grading.autograde.grade):

1. one student who submitted all eight lessons, on every core: first with a
   cold cache (the solutions' probe values are computed: the first grading
   run after a change to solutions/ or course/), then warm (every later run);
2. the same student one notebook at a time, for the seconds per lesson;
3. a class of N students for one lesson, one notebook at a time
   (``--jobs 1``), then on every core.

Targets (DESIGN.md): one whole course < 60 s on 2 cores; a class graded with
the cores in use. Usage: python benchmarks/grading.py [--students N] [--lesson ID]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from course.grading.autograde import grade

ROOT = pathlib.Path(__file__).resolve().parents[1]
LESSONS = sorted(p.name for p in (ROOT / "solutions").glob("[0-9][0-9]-*") if p.is_dir())
BIN = pathlib.Path(sys.executable).parent


def nbgrader(*args: str, cwd: pathlib.Path) -> None:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([str(BIN / "nbgrader"), *args, "--log-level=ERROR"], cwd=cwd, env=env,
                   check=True, capture_output=True)


def course_folder(tmp: pathlib.Path) -> pathlib.Path:
    shutil.copytree(ROOT / "solutions", tmp / "solutions")
    shutil.copy(ROOT / "nbgrader_config.py", tmp)
    for lesson in LESSONS:
        nbgrader("generate_assignment", lesson, "--force", cwd=tmp)
    return tmp


def submit(root: pathlib.Path, student: str, lesson: str, solved: bool) -> None:
    source = root / ("solutions" if solved else "release") / lesson / f"{lesson}.ipynb"
    if not source.exists():
        source = root / "notebooks" / lesson / f"{lesson}.ipynb"
    folder = root / "submitted" / student / lesson
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, folder / f"{lesson}.ipynb")


def timed(root: pathlib.Path, assignments: list[str], jobs: int) -> float:
    start = time.perf_counter()
    failed = {k: e for k, e in grade(root, assignments, jobs, progress=False).items() if e}
    if failed:
        raise SystemExit(f"grading failed: {failed}")
    return time.perf_counter() - start


def whole_course(root: pathlib.Path, jobs: int) -> tuple[float, float, dict[str, float]]:
    """(first run, second run) on ``jobs`` cores, and seconds per lesson alone."""
    for lesson in LESSONS:
        submit(root, "one-student", lesson, solved=True)
    cold = timed(root, LESSONS, jobs)
    warm = timed(root, LESSONS, jobs)
    return cold, warm, {lesson: timed(root, [lesson], 1) for lesson in LESSONS}


def class_times(root: pathlib.Path, lesson: str, n: int, jobs: int) -> tuple[float, float]:
    """(serial seconds, parallel seconds) to grade n students of one lesson."""
    shutil.rmtree(root / "submitted" / "one-student", ignore_errors=True)
    for i in range(n):
        submit(root, f"student{i:02d}", lesson, solved=i % 2 == 0)
    return timed(root, [lesson], 1), timed(root, [lesson], jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--lesson", default=LESSONS[0])
    args = parser.parse_args()
    jobs = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = course_folder(pathlib.Path(tmp))
        cold, warm, per_lesson = whole_course(root, jobs)
        for lesson, seconds in per_lesson.items():
            print(f"  {lesson:32} {seconds:6.1f} s  (alone, one process)")
        print(f"  sum of the lessons alone: {sum(per_lesson.values()):.1f} s")
        print(f"one student, whole course, {jobs} jobs: first run {cold:.1f} s, "
              f"second {warm:.1f} s (target < 60 s): {'OK' if max(cold, warm) < 60 else 'OVER'}")
        serial, parallel = class_times(root, args.lesson, args.students, jobs)
        print(f"class of {args.students} on {args.lesson}: serial {serial:.1f} s, "
              f"{jobs} jobs {parallel:.1f} s, speed-up {serial / parallel:.2f}x")


if __name__ == "__main__":
    main()
