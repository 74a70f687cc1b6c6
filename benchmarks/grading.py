"""How long grading takes: one student's whole course, and a class serial vs parallel.

Builds a throw-away course folder from solutions/, releases every lesson with
nbgrader, then

1. autogrades one student who submitted all eight lessons (with every
   safeguard on: sandboxed kernel and re-verification outside the kernel);
2. autogrades a class of N students for one lesson, first one at a time
   (``course grade --jobs 1``), then on every core (``--jobs`` = cores).

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

from course.report import grade_class

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


def whole_course(root: pathlib.Path) -> dict[str, float]:
    """Seconds per lesson to autograde one student who submitted everything."""
    times = {}
    for lesson in LESSONS:
        submit(root, "one-student", lesson, solved=True)
        start = time.perf_counter()
        nbgrader("autograde", lesson, "--student", "one-student", "--force", cwd=root)
        times[lesson] = time.perf_counter() - start
    return times


def class_times(root: pathlib.Path, lesson: str, n: int) -> tuple[float, float, int]:
    """(serial seconds, parallel seconds, jobs) to grade n students of one lesson."""
    for i in range(n):
        submit(root, f"student{i:02d}", lesson, solved=i % 2 == 0)
    shutil.rmtree(root / "submitted" / "one-student", ignore_errors=True)
    jobs = os.cpu_count() or 1
    timings = []
    for j in (1, jobs):
        start = time.perf_counter()
        grade_class(lesson, root, jobs=j, progress=False)
        timings.append(time.perf_counter() - start)
    return timings[0], timings[1], jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--lesson", default=LESSONS[0])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = course_folder(pathlib.Path(tmp))
        per_lesson = whole_course(root)
        for lesson, seconds in per_lesson.items():
            print(f"  {lesson:32} {seconds:6.1f} s")
        total = sum(per_lesson.values())
        print(f"one student, whole course: {total:.1f} s (target < 60 s): "
              f"{'OK' if total < 60 else 'OVER'}")
        serial, parallel, jobs = class_times(root, args.lesson, args.students)
        print(f"class of {args.students} on {args.lesson}: serial {serial:.1f} s, "
              f"{jobs} jobs {parallel:.1f} s, speed-up {serial / parallel:.2f}x")


if __name__ == "__main__":
    main()
