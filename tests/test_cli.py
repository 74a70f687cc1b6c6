"""`course check` (learners) and `course grade` / `course report` (instructors)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import nbformat
import pytest

from course.__main__ import main
from tests.conftest import ROOT

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
import make_submissions as ms  # noqa: E402

LESSON = "01-gradient-descent"
SOLUTION = ROOT / "solutions" / LESSON / f"{LESSON}.ipynb"
RELEASE = ROOT / "notebooks" / LESSON / f"{LESSON}.ipynb"
AUTO = sum(ms.points(LESSON)[0].values())
FULL = f"total: {AUTO:g} / {AUTO:g}"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def learner_copy(tmp_path) -> pathlib.Path:
    """A learner's finished notebook: the solution, hidden tests and all."""
    path = tmp_path / LESSON / f"{LESSON}.ipynb"
    path.parent.mkdir()
    shutil.copy(SOLUTION, path)
    return path


def test_check_correct_notebook_passes(capsys, learner_copy):
    code, out, _ = run(capsys, "check", str(learner_copy))
    assert code == 0, out
    assert FULL in out
    assert out.count("passed") >= 4 and "FAILED" not in out


def test_check_unsolved_notebook_fails_with_messages(capsys):
    code, out, _ = run(capsys, "check", str(RELEASE))
    assert code == 1
    assert f"total: 0 / {AUTO:g}" in out
    assert "`gd_step` is not implemented yet" in out


def test_check_scores_a_test_cell_that_writes_to_stderr_as_nbgrader_does(capsys, learner_copy):
    """nbgrader gives 0 points to a test cell with stderr output: so does
    course check (here the learner's gd_step warns on every call)."""
    nb = nbformat.read(learner_copy, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "gd_step":
            cell.source = ("import sys\n" + cell.source.replace(
                "return w - lr * grad", "print('careful', file=sys.stderr)\n    return w - lr * grad"))
    nbformat.write(nb, learner_copy)
    code, out, _ = run(capsys, "check", str(learner_copy))
    assert code == 1
    row = next(ln for ln in out.splitlines() if ln.startswith("test_gd_step"))
    assert "FAILED" in row and "0 / 2" in row and "wrote to stderr" in row and "careful" in row
    assert f"total: {AUTO - 2:g} / {AUTO:g}" in out


def test_points_are_nbgraders():
    """course check's points are nbgrader's determine_grade, with the
    course's rule that a test cell's execute_result earns nothing."""
    from nbgrader.utils import determine_grade

    from course.grading.learner_check import points
    meta = {"nbgrader": {"grade": True, "grade_id": "t", "points": 2, "solution": False}}
    cases = [
        [],
        [nbformat.v4.new_output("stream", name="stdout", text="ok\n")],
        [nbformat.v4.new_output("stream", name="stderr", text="warning\n")],
        [nbformat.v4.new_output("error", ename="AssertionError", evalue="x", traceback=[])],
    ]
    for outputs in cases:
        cell = nbformat.v4.new_code_cell("pass", metadata=meta, outputs=outputs, execution_count=1)
        assert points(cell) == determine_grade(cell)[0]
    claim = nbformat.v4.new_code_cell("1.0", metadata=meta, execution_count=1, outputs=[
        nbformat.v4.new_output("execute_result", data={"text/plain": "0.5"}, execution_count=1)])
    assert determine_grade(claim)[0] == 0.5 and points(claim) == 2.0


def test_check_restores_edited_tests_and_reports_deleted_ones(capsys, learner_copy):
    nb = nbformat.read(learner_copy, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "gd_step":
            cell.source = cell.source.replace("return w - lr * grad", "return w + lr * grad")
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_gd_step":
            cell.source = "pass  # the learner silenced the test"
    nb.cells = [c for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") != "test_derivative"]
    nbformat.write(nb, learner_copy)
    code, out, _ = run(capsys, "check", str(learner_copy))
    assert code == 1
    assert "moved w uphill" in out                 # the restored test ran and diagnosed
    assert "test cell deleted" in out
    assert f"total: {AUTO - 3:g} / {AUTO:g}" in out


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such file"),
    (lambda p: (p.with_suffix(".txt").write_text("hi"), p.with_suffix(".txt"))[1],
     "is not a notebook"),
    (lambda p: (p.write_text("{not json"), p)[1], "is not valid notebook JSON"),
    (lambda p: (nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), p),
                p)[1], "no graded exercises of SGD from Scratch"),
    (lambda p: p.parent, "is a folder"),
])
def test_check_bad_input_gets_a_clear_message(capsys, tmp_path, make, message):
    target = make(tmp_path / "x.ipynb")
    code, out, err = run(capsys, "check", str(target))
    assert code == 2
    assert message in err and "Traceback" not in err


def test_check_kernel_crash_and_timeout(capsys, learner_copy):
    nb = nbformat.read(learner_copy, as_version=4)
    idx = next(i for i, c in enumerate(nb.cells)
               if c.metadata.get("nbgrader", {}).get("grade_id") == "test_gd_step")
    loop = nb.cells[:idx] + [nbformat.v4.new_code_cell("while True:\n    pass")] + nb.cells[idx:]
    nbformat.write(nbformat.v4.new_notebook(cells=loop, metadata=nb.metadata), learner_copy)
    code, out, _ = run(capsys, "check", str(learner_copy), "--timeout", "8")
    assert code == 1
    assert "test_derivative" in out and FULL in out   # later cells still ran
    crash = nb.cells[:idx] + [nbformat.v4.new_code_cell("import os\nos._exit(1)")] + nb.cells[idx:]
    nbformat.write(nbformat.v4.new_notebook(cells=crash, metadata=nb.metadata), learner_copy)
    code, out, _ = run(capsys, "check", str(learner_copy))
    assert code == 1
    assert "the kernel died" in out
    assert "not run" in out


def test_console_script_and_module_entry_points():
    for cmd in ([str(pathlib.Path(sys.executable).with_name("course")), "--help"],
                [sys.executable, "-m", "course", "--help"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0 and "check" in proc.stdout and "report" in proc.stdout


def test_grade_and_report_a_small_class(tmp_path, capsys):
    """Two students graded in parallel through nbgrader, then summarised; a
    submission nbgrader cannot grade is named, and nothing else is lost."""
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    env = dict(os.environ, PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([str(pathlib.Path(sys.executable).with_name("nbgrader")), "generate_assignment",
                    LESSON, "--force", "--log-level=ERROR"], cwd=tmp_path, env=env, check=True)
    for student, assignment, source in (("alice", LESSON, SOLUTION), ("bob", LESSON, RELEASE),
                                        ("alice", "99-not-released", SOLUTION)):
        folder = tmp_path / "submitted" / student / assignment
        folder.mkdir(parents=True)
        shutil.copy(source, folder / f"{assignment}.ipynb")
    code, _, err = run(capsys, "grade", "--root", str(tmp_path / "nowhere"))
    assert code == 2 and "no nbgrader_config.py" in err
    code, _, err = run(capsys, "grade", "--root", str(tmp_path), "--jobs", "0")
    assert code == 2 and "--jobs must be at least 1" in err
    # every assignment with submissions (the default), two notebooks at a time
    code, out, err = run(capsys, "grade", "--root", str(tmp_path), "--jobs", "2")
    assert code == 1, out + err
    assert "graded 2 of 3 submissions; not processed: alice (99-not-released)" in out
    # the reason from nbgrader's log, not its "Please see the above traceback"; the whole log kept
    assert ("alice 99-not-released: not graded (No assignment with ID '99-not-released' exists in"
            " the database; full log: logs/course-grade-failures/99-not-released/alice.log)") in err
    assert "above traceback" not in err
    kept = (tmp_path / "logs" / "course-grade-failures" / "99-not-released" / "alice.log").read_text()
    assert "Traceback (most recent call last)" in kept and "MissingEntry" in kept
    code, _, err = run(capsys, "grade", "42-no-such-lesson", "--root", str(tmp_path))
    assert code == 2 and "no submissions of 42-no-such-lesson in" in err
    code, out, _ = run(capsys, "report", LESSON, "--root", str(tmp_path))
    assert code == 0
    assert "2 submissions" in out
    # bob left the stub: not attempted, not "the most common failure"
    assert "test_gd_step                2        1/2   1.00              1\n" in out
    assert "not implemented yet" not in out
    assert (tmp_path / "reports" / f"{LESSON}-totals.png").stat().st_size > 1000
    code, _, err = run(capsys, "report", LESSON, "--root", str(tmp_path / "nowhere"))
    assert code == 2 and "no gradebook.db" in err


def test_report_median_and_unknown_assignment(tmp_path, capsys):
    """The median of an even class is the mean of the middle two; an assignment
    the gradebook does not know is named, with the ones it knows."""
    from course.grading.class_report import CellSummary, format_report
    text = format_report(LESSON, [CellSummary("test_x", 2.0, 4, 2, 1.0, "", 0)],
                         {"a": 2.0, "b": 4.0, "c": 5.0, "d": 8.0})
    assert "median 4.5" in text
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        gb.add_assignment(LESSON)
    code, _, err = run(capsys, "report", "01-gradient-decent", "--root", str(tmp_path))
    assert code == 2 and "no assignment '01-gradient-decent'" in err and LESSON in err


NBGRADER_FAILURE = """\
[INFO] Autograding /course/submitted/bob/09-learning-rate-schedules/09-learning-rate-schedules.ipynb
[ERROR] There was an error processing assignment: /course/submitted/bob/09-learning-rate-schedules
[ERROR] Traceback (most recent call last):
      File "/venv/lib/python3.11/site-packages/nbgrader/converters/base.py", line 388, in convert_notebooks
        self.convert_single_notebook(notebook_filename)
    ModuleNotFoundError: No module named 'torch._dynamo'\x1b[31m
[ERROR] There was an error processing assignment '09-learning-rate-schedules' for student 'bob'
[ERROR] Please see the the above traceback for details on the specific errors on the above failures.
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/nbgrader/converters/base.py", line 468, in convert_notebooks
    raise NbGraderException(msg)
nbgrader.converters.base.NbGraderException: Please see the the above traceback for details on the specific errors on the above failures.
"""


def test_a_grading_failure_is_named_by_its_own_error(tmp_path):
    """`course grade` reports the exception from nbgrader's log (escaped), not nbgrader's
    closing "see the above traceback", and keeps the whole log, escaped, per submission."""
    from course.grading.autograde import failure_reason, write_failure_log
    assert failure_reason(NBGRADER_FAILURE) == "ModuleNotFoundError: No module named 'torch._dynamo'\\x1b[31m"
    assert failure_reason("[ERROR] Timeout waiting for execute reply\n[ERROR] Please see the log") \
        == "Timeout waiting for execute reply"
    assert failure_reason("") == "unknown error"
    path = write_failure_log(tmp_path, "bob", "09-x", NBGRADER_FAILURE)
    assert path == "logs/course-grade-failures/09-x/bob.log"
    kept = (tmp_path / path).read_text()
    assert "\x1b" not in kept and "torch._dynamo'\\x1b[31m" in kept
    assert kept.count("\n") == NBGRADER_FAILURE.count("\n")


def test_report_counts_stubs_as_not_attempted(tmp_path):
    """Stubs and unset predictions are counted apart; the most common failure is
    taken among the learners who attempted the exercise."""
    from course.checks._common import not_answered, not_implemented
    from course.grading.class_report import NOT_TRIED, _failures
    errors = {"s1": ("CheckFailure", str(not_implemented("gd_step"))),
              "s2": ("CheckFailure", str(not_implemented("gd_step"))),
              "s3": ("NotImplementedError", ""),
              "s4": ("CheckFailure", "case 'w=2.0': expected 1, got 2.2"),
              "s5": ("CheckFailure", str(not_answered("predict_lr", "'a', 'b'")))}
    for student, (ename, evalue) in errors.items():
        cell = nbformat.v4.new_code_cell("check_gd_step(gd_step)", outputs=[
            nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])])
        cell.metadata["nbgrader"] = {"grade_id": "test_gd_step", "grade": True}
        path = tmp_path / "autograded" / student / LESSON / f"{LESSON}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    counts = _failures(LESSON, LESSON, tmp_path)["test_gd_step"]
    assert counts[NOT_TRIED] == 4
    assert counts.most_common(2)[1] == ("case 'w=2.0': expected 1, got 2.2", 1)
