"""The instructor cycle of README "For instructors": LMS collection (nbgrader zip_collect)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
import make_lms_zips as lms  # noqa: E402

LESSON = "01-gradient-descent"
NBGRADER = pathlib.Path(sys.executable).parent / "nbgrader"


@pytest.fixture
def course(tmp_path) -> pathlib.Path:
    """A course folder: the lesson's source and release, and the repository's nbgrader config."""
    for part in ("solutions", "notebooks"):
        shutil.copytree(ROOT / part / LESSON, tmp_path / part / LESSON)
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    (tmp_path / "downloaded" / LESSON / "archive").mkdir(parents=True)
    return tmp_path


def nbgrader(course: pathlib.Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([str(NBGRADER), *argv], cwd=course, env=env, capture_output=True,
                          text=True, timeout=120)


def submissions(course: pathlib.Path) -> dict[str, bytes]:
    found = sorted((course / "submitted").glob(f"*/{LESSON}/*.ipynb"))
    return {p.relative_to(course / "submitted").as_posix(): p.read_bytes() for p in found}


def notebooks(ids: list[str]) -> dict[str, bytes]:
    release = (ROOT / "notebooks" / LESSON / f"{LESSON}.ipynb").read_bytes()
    # Each student's notebook is told apart by a trailing marker in its JSON.
    return {i: release + f"\n{i}".encode() for i in ids}


def test_canvas_download_is_collected(course):
    nbs = notebooks(["101", "202", "303"])
    lms.canvas(course / "downloaded" / LESSON / "archive" / "submissions.zip", nbs, LESSON)
    result = nbgrader(course, "zip_collect", LESSON)
    assert result.returncode == 0, result.stderr
    assert "3 files collected" in result.stderr
    # Late (_LATE_) and resubmitted (-1) files too, under the release's notebook name.
    assert submissions(course) == {f"{i}/{LESSON}/{LESSON}.ipynb": nbs[i] for i in nbs}
    assert not (course / "submitted" / "tmp").exists()


def test_moodle_download_is_collected(course):
    nbs = notebooks(["4711", "4712"])
    lms.moodle(course / "downloaded" / LESSON / "archive" / "moodle.zip", nbs, LESSON)
    result = nbgrader(course, "zip_collect", LESSON)
    assert result.returncode == 0, result.stderr
    assert submissions(course) == {f"{i}/{LESSON}/{LESSON}.ipynb": nbs[i] for i in nbs}


def test_collecting_nothing_fails_loudly(course):
    archive = course / "downloaded" / LESSON / "archive" / "other.zip"
    import zipfile
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("some_notebook.ipynb", b"{}")
    result = nbgrader(course, "zip_collect", LESSON)
    assert result.returncode == 1
    assert "No submission collected for 01-gradient-descent" in result.stderr
    assert submissions(course) == {}


def test_empty_download_folder_fails_loudly(course):
    result = nbgrader(course, "zip_collect", LESSON)
    assert result.returncode == 1
    assert "No submission collected" in result.stderr


# --- The whole cycle, as README "For instructors" runs it --------------------------------

import re  # noqa: E402

import nbformat  # noqa: E402

import make_submissions as ms  # noqa: E402

WRITTEN = "written_lr_regimes"
#: Canvas user id -> (submission kind of tests/fixtures/make_submissions.py, manual points).
CLASS = {"101": ("correct", 2.0), "202": ("partial", 1.0), "303": ("blank", None)}


def readme_commands() -> list[str]:
    """The lines of README's instructor code block (commands and comments), in order."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## For instructors"):]
    block = section[section.index("```bash\n") + 8:]
    block = block[:block.index("```")]
    lines, previous = [], ""
    for line in block.splitlines():
        if line.startswith(" ") and previous:      # a comment continued on the next line
            continue
        lines.append(line.strip())
        previous = line
    return [line for line in lines if line and not line.startswith("export PATH")]


def run_line(course: pathlib.Path, line: str) -> subprocess.CompletedProcess:
    command = line.split("#")[0].split()
    assert command[0] in ("nbgrader", "course"), line
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               PATH=f"{NBGRADER.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
    return result


def set_manual_grades(course: pathlib.Path, scores: dict[str, float]) -> None:
    """What formgrader does when a grader scores a written answer."""
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student, score in scores.items():
            grade = gb.find_grade(WRITTEN, LESSON, LESSON, student)
            grade.manual_score = score
            grade.needs_manual_grade = False
        gb.db.commit()


def gradebook_state(course: pathlib.Path) -> dict[str, tuple[float, list[str]]]:
    """student -> (score, cells needing manual grading)."""
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        out = {}
        for student in CLASS:
            sub = gb.find_submission(LESSON, student)
            pending = sorted(g.name for nb in sub.notebooks for g in nb.grades
                             if g.needs_manual_grade)
            out[student] = (float(sub.score), pending)
        return out


def test_readme_instructor_cycle(course):
    (course / "notebooks" / LESSON / f"{LESSON}.ipynb").unlink()   # generate_assignment's job
    auto = {sid: float(sum(ms.EXPECTED[LESSON][kind].values())) for sid, (kind, _) in CLASS.items()}
    expected = {sid: auto[sid] + (manual or 0.0) for sid, (_, manual) in CLASS.items()}
    max_score = sum(ms.points(LESSON)[0].values()) + ms.points(LESSON)[1]
    steps = []
    for line in readme_commands():
        if line.startswith("#") and "downloaded/" in line:
            nbs = {}
            for sid, (kind, manual) in CLASS.items():
                nb = ms.make(ms.L01, kind, course)
                if manual is not None:
                    ms._written(nb, LESSON, course)        # a written answer to grade by hand
                nbs[sid] = nbformat.writes(nb).encode()
            lms.canvas(course / "downloaded" / LESSON / "archive" / "submissions.zip", nbs, LESSON)
            steps.append("zip")
        elif line.startswith("#") and "formgrader" in line:
            # Pending manual grades: export says so, naming students and cells.
            result = run_line(course, "nbgrader export --to pending.csv")
            assert "2 cell(s) still need grading by hand" in result.stderr
            assert f"{LESSON} 101: {WRITTEN}" in result.stderr
            assert f"{LESSON} 202: {WRITTEN}" in result.stderr
            assert "303" not in result.stderr.split("Manual Grading")[1]   # blank: 0, automatically
            set_manual_grades(course, {s: m for s, (_, m) in CLASS.items() if m is not None})
            assert gradebook_state(course) == {s: (expected[s], []) for s in CLASS}
            # Regrading keeps hand grades: unchanged submissions are skipped, and --force
            # regrades without flagging the unchanged written answers again.
            result = run_line(course, "course grade 01-gradient-descent")
            assert "graded 0 of 3 submissions; unchanged since last graded" in result.stdout
            result = run_line(course, "course grade 01-gradient-descent --force")
            assert result.stdout.startswith("graded 3 of 3 submissions\n")
            assert gradebook_state(course) == {s: (expected[s], []) for s in CLASS}
            steps.append("manual")
        elif not line.startswith("#"):
            result = run_line(course, line)
            steps.append(line.split()[1])
            if line.startswith("nbgrader zip_collect"):
                assert "3 files collected" in result.stderr
            if line.startswith("course grade"):
                assert result.stdout.startswith("graded 3 of 3 submissions\n")
            if line.startswith("nbgrader generate_feedback"):
                assert "still need grading by hand" not in result.stderr
                # no "Config option `display_data_priority` not recognized" and the like
                noise = [w for w in result.stderr.splitlines() if "WARNING" in w
                         and "Alternative text is missing" not in w]   # plots have no alt text
                assert noise == [], result.stderr
            if line.startswith("nbgrader export"):
                assert "still need grading by hand" not in result.stderr
            if line.startswith("course report"):      # 303 handed in the blank release
                rows = {r.split()[0]: r.split()[4] for r in result.stdout.splitlines()
                        if r.startswith("test_")}
                assert set(rows) == set(ms.points(LESSON)[0]), result.stdout
                assert all(int(n) >= 1 for n in rows.values()), result.stdout
                assert "not implemented yet" not in result.stdout
    assert steps == ["generate_assignment", "zip", "zip_collect", "grade", "manual",
                     "generate_feedback", "export", "report"]
    import csv
    with (course / "grades.csv").open() as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    assert {s: (float(r["score"]), float(r["max_score"])) for s, r in rows.items()} == \
        {s: (expected[s], max_score) for s in CLASS}
    points = {**ms.points(LESSON)[0], WRITTEN: ms.points(LESSON)[1]}
    for sid, (kind, manual) in CLASS.items():
        html = (course / "feedback" / sid / LESSON / f"{LESSON}.html").read_text()
        assert f"{LESSON} (Score: {expected[sid]:.1f} / {max_score:.1f})" in html, sid
        cells = dict(re.findall(r'<li><a href="#(\w+)">[\w -]+</a> \(Score: ([\d.]+) / [\d.]+\)</li>',
                                html))
        scores = {**ms.EXPECTED[LESSON][kind], WRITTEN: manual or 0.0}
        assert cells == {gid: f"{float(scores[gid]):.1f}" for gid in points}, sid
        assert "still need" not in html and "BEGIN SOLUTION" not in html
        # math as MathML, no MathJax from a CDN: it renders offline, from the file alone
        assert html.count("<math") > 50 and "cdnjs" not in html and "<script src" not in html


# --- A checksum warning means tampering ---------------------------------------------------

def test_checksum_warning_means_a_locked_cell_was_changed(course):
    """nbgrader warns "Attribute 'checksum' ... has changed" for a locked cell whose source
    differs only in line endings or trailing whitespace (a notebook saved on Windows or by
    another editor); the course's OverwriteCells logs that at INFO and keeps the warning
    for a real change. Both get the release's source back."""
    run_line(course, f"nbgrader generate_assignment {LESSON} --force")
    release = nbformat.read(ROOT / "notebooks" / LESSON / f"{LESSON}.ipynb", as_version=4)
    locked = [c for c in release.cells if c.metadata.get("nbgrader", {}).get("locked")
              and c.metadata["nbgrader"].get("grade")]
    for student in ("windows", "tamperer"):
        nb = nbformat.from_dict(release)
        for cell in nb.cells:
            if cell in locked:
                cell.source = cell.source.replace("\n", "\r\n") + "  \r\n\r\n"
            if student == "tamperer" and cell.metadata.get("nbgrader", {}).get("grade_id") \
                    == locked[1].metadata.nbgrader.grade_id:
                cell.source = "pass  # the test removed"
        folder = course / "submitted" / student / LESSON
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{LESSON}.ipynb")
    log = run_line(course, f"nbgrader autograde {LESSON} --force").stderr
    changed = re.findall(r"WARNING\] Attribute '(\w+)' for cell (\w+) has changed", log)
    assert changed == [("checksum", locked[1].metadata.nbgrader.grade_id)], log
    assert log.count("whitespace or line endings only") == 2 * len(locked) - 1, log
    for student in ("windows", "tamperer"):
        graded = nbformat.read(course / "autograded" / student / LESSON / f"{LESSON}.ipynb", 4)
        sources = {c.metadata.nbgrader.grade_id: c.source for c in graded.cells
                   if c.metadata.get("nbgrader", {}).get("locked") and c.metadata.nbgrader.get("grade")}
        assert sources == {c.metadata.nbgrader.grade_id: c.source for c in locked}, student
