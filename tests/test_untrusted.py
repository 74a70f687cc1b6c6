"""Learner data on the instructor's side: course.grading.untrusted, and refused notebooks in `course grade`."""

from __future__ import annotations

import csv
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import unicodedata

import nbformat
import pytest

from course.grading.autograde import refusal_reason
from course.grading.class_report import CellSummary, format_report
from course.grading.untrusted import copy_regular, printable, remove_non_regular
from tests.conftest import ROOT

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
import make_submissions as ms  # noqa: E402

LESSON = "01-gradient-descent"
SOLUTION = ROOT / "solutions" / LESSON / f"{LESSON}.ipynb"


# ----------------------------------------------------------------- printable

def _terminal_active(text: str) -> list[str]:
    """Characters a terminal would act on (or that reorder or hide text)."""
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]


@pytest.mark.parametrize("char, shown", [
    ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\x00", "\\x00"), ("\x07", "\\x07"),
    ("\x08", "\\x08"), ("\x1b", "\\x1b"), ("\x7f", "\\x7f"),                  # C0, DEL
    ("\x85", "\\x85"), ("\x9b", "\\x9b"), ("\x9d", "\\x9d"),                  # C1 (NEL, CSI, OSC)
    ("\u202e", "\\u202e"), ("\u202a", "\\u202a"), ("\u2066", "\\u2066"),      # bidi
    ("\u2069", "\\u2069"), ("\u200f", "\\u200f"), ("\u061c", "\\u061c"),
    ("\u200b", "\\u200b"), ("\ufeff", "\\ufeff"), ("\u00ad", "\\xad"),      # invisible
    ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),                             # separators
    ("\U000e0041", "\\U000e0041"),                                           # tag character
    ("\\", "\\\\"),
])
def test_printable_escapes_every_control_class(char, shown):
    assert printable(f"a{char}b") == f"a{shown}b"


def test_printable_escapes_all_of_c0_c1_and_del_and_keeps_text():
    every = "".join(map(chr, [*range(0x20), 0x7f, *range(0x80, 0xa0)]))
    out = printable(every)
    assert not _terminal_active(out) and out.isascii() and out.isprintable()
    assert printable("héllo wörld ∇f(x) = 2·x — ok 🙂") == "héllo wörld ∇f(x) = 2·x — ok 🙂"


def test_printable_defuses_terminal_attacks():
    clipboard = "\x1b]52;c;ZWNobyBwd25lZA==\x07"                 # OSC 52: write the clipboard
    fake_log = "ok\r[ERROR] alice test_gd_step: 0 points\nbob: 8/8"
    colours = "\x1b[31mred\x1b[0m \x9b31mC1 red"
    bidi = "grade \u202e01/8\u202c"
    for attack in (clipboard, fake_log, colours, bidi):
        out = printable(attack)
        assert not _terminal_active(out) and "\n" not in out and "\r" not in out, out
    assert printable(fake_log) == "ok\\r[ERROR] alice test_gd_step: 0 points\\nbob: 8/8"
    # a literal backslash sequence cannot pass for an escaped control character
    assert printable("\\x1b") != printable("\x1b")


def test_printable_limit_never_cuts_an_escape():
    assert printable("abcdef", 4) == "a..."
    assert printable("abc", 3) == "abc"
    for limit in range(0, 12):
        out = printable("\x1b\x1b\x1babcdef", limit)
        assert len(out) <= limit
        body = out[:-3] if out.endswith("...") else out.rstrip(".")
        assert re.fullmatch(r"(\\x1b)*[a-f]*", body), (limit, out)     # whole escapes only
        assert printable("\x1b\x1b\x1babcdef").startswith(body)
    assert printable(None) == "" and printable(3.5) == "3.5"
    with pytest.raises(ValueError):
        printable("x", -1)


def test_course_report_prints_submission_text_escaped():
    summary = [CellSummary("test_gd_step", 2, 3, 1, 0.67, "\x1b]52;c;cGF5bG9hZA==\x07boom\nFAKE"),
               CellSummary("test_\u202eevil", 2, 3, 3, 2.0, "")]
    out = format_report(LESSON, summary, {"a": 1.0, "b": 2.0})
    assert not _terminal_active(out.replace("\n", "")), out
    assert "\\x1b]52;c;cGF5bG9hZA==\\x07boom\\nFAKE" in out and "test_\\u202eevil" in out
    assert len(out.splitlines()) == 5


def test_refusal_reason_is_the_error_not_the_summary():
    log = ("[WARNING] Attribute 'checksum' for cell test_gd_step has changed! (should be: a, got: b)\n"
           "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
           "    RuntimeError: Inconsistent checksums for cell test_gd_step\n"
           "nbgrader.converters.base.NbGraderException: Please see the the above traceback\n")
    assert refusal_reason(log) == ("RuntimeError: Inconsistent checksums for cell test_gd_step; "
                                   "test_gd_step checksum changed")
    assert refusal_reason("sqlite3.OperationalError: database is locked") is None
    assert "\x1b" not in refusal_reason("ValidationError: Duplicate grade id: \x1b[2Jx")


# ----------------------------------------------------------------- files

def _tree(tmp_path: pathlib.Path) -> pathlib.Path:
    sub = tmp_path / "submission"
    (sub / "deep" / "deeper").mkdir(parents=True)
    (sub / "nb.ipynb").write_text("{}")
    (sub / "deep" / "data.csv").write_text("1,2")
    (sub / "deep" / "deeper" / "x.txt").write_text("x")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "gradebook.db").write_text("SQLite format 3")
    os.symlink("/etc/passwd", sub / "passwd")
    os.symlink(secret / "gradebook.db", sub / "deep" / "gradebook.db")
    os.symlink(secret, sub / "linked-folder")
    os.symlink("missing", sub / "dangling")
    os.mkfifo(sub / "deep" / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sub / "deeper-socket"))
    return sub


def test_remove_non_regular_removes_links_fifos_sockets_without_following(tmp_path):
    sub = _tree(tmp_path)
    removed = remove_non_regular(sub)
    assert removed == sorted(str(sub / p) for p in ("dangling", "deep/fifo", "deep/gradebook.db",
                                                    "deeper-socket", "linked-folder", "passwd"))
    left = sorted(str(p.relative_to(sub)) for p in sub.rglob("*"))
    assert left == ["deep", "deep/data.csv", "deep/deeper", "deep/deeper/x.txt", "nb.ipynb"]
    assert (tmp_path / "secret" / "gradebook.db").read_text() == "SQLite format 3"   # untouched
    assert pathlib.Path("/etc/passwd").exists()
    assert remove_non_regular(sub) == []
    # a submission folder that is itself a link is removed, not followed
    link = tmp_path / "link-to-secret"
    os.symlink(tmp_path / "secret", link)
    assert remove_non_regular(link) == [str(link)]
    assert not os.path.lexists(link) and (tmp_path / "secret" / "gradebook.db").exists()


def test_copy_regular_copies_files_only(tmp_path):
    sub = _tree(tmp_path)
    skipped = copy_regular(sub, tmp_path / "copy", ignore=lambda d, names: {"x.txt"} & set(names))
    assert sorted(skipped) == [("dangling", "symlink"), ("deep/fifo", "fifo"),
                               ("deep/gradebook.db", "symlink"), ("deeper-socket", "socket"),
                               ("linked-folder", "symlink"), ("passwd", "symlink")]
    copied = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*"))
    assert copied == ["deep", "deep/data.csv", "deep/deeper", "nb.ipynb"]
    assert not any(p.is_symlink() for p in (tmp_path / "copy").rglob("*"))
    link = tmp_path / "link"
    os.symlink(sub, link)
    assert copy_regular(link, tmp_path / "copy2") == [(".", "symlink")]
    assert not (tmp_path / "copy2").exists()


# ----------------------------------------------------------------- refused notebooks

def test_refused_notebook_is_graded_zero_with_its_reason(tmp_path):
    """A submission whose grade ids are swapped (an answer cell given its test's id and
    back) is refused by nbgrader; `course grade` records it with 0 points in the
    gradebook, `nbgrader export` lists it, and the reason is printed and logged."""
    bin_dir = pathlib.Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    shutil.copytree(ROOT / "solutions" / LESSON, tmp_path / "solutions" / LESSON)
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    subprocess.run([str(bin_dir / "nbgrader"), "generate_assignment", LESSON, "--force",
                    "--log-level=ERROR"], cwd=tmp_path, env=env, check=True)
    nb = nbformat.read(SOLUTION, as_version=4)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    cells["gd_step"].metadata.nbgrader.grade_id = "test_gd_step"
    cells["test_gd_step"].metadata.nbgrader.grade_id = "gd_step"
    folder = tmp_path / "submitted" / "mallory" / LESSON
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{LESSON}.ipynb")
    (folder / "timestamp.txt").write_text("2026-01-02 03:04:05.000000 UTC")
    os.symlink(ROOT / "solutions" / LESSON / f"{LESSON}.ipynb", folder / "solution.ipynb")
    proc = subprocess.run([str(bin_dir / "course"), "grade", LESSON, "--jobs", "1"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "refused by nbgrader and recorded with 0 points: 1" in proc.stdout, proc.stdout
    assert ("refused: mallory (01-gradient-descent): RuntimeError: Inconsistent checksums for "
            "cell") in proc.stdout, proc.stdout
    log = (tmp_path / "logs" / "course-grade.log").read_text()
    assert "mallory 01-gradient-descent: refused by nbgrader, recorded with 0 points" in log
    assert "Inconsistent checksums" in log
    assert "mallory 01-gradient-descent: removed " in log and "solution.ipynb (a link" in log
    assert not os.path.lexists(folder / "solution.ipynb")
    subprocess.run([str(bin_dir / "nbgrader"), "export", "--to", "grades.csv", "--log-level=ERROR"],
                   cwd=tmp_path, env=env, check=True)
    with (tmp_path / "grades.csv").open() as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert float(rows["mallory"]["score"]) == 0.0 and float(rows["mallory"]["max_score"]) == sum(
        ms.points(ms.L01)[0].values()) + ms.points(ms.L01)[1]
    assert rows["mallory"]["timestamp"].startswith("2026-01-02 03:04:05"), rows["mallory"]
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        (notebook,) = gb.find_submission(LESSON, "mallory").notebooks
        assert notebook.flagged and notebook.score == 0 and not notebook.needs_manual_grade
        assert all("Inconsistent checksums" in c.comment for c in notebook.comments)
    assert not (tmp_path / "autograded" / "mallory" / LESSON).exists()
    proc = subprocess.run([str(bin_dir / "course"), "report", LESSON], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "refused by nbgrader, 0 points: mallory: Not graded: nbgrader refused this notebook " \
           "(RuntimeError: Inconsistent checksums" in proc.stdout, proc.stdout + proc.stderr
