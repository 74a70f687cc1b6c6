"""The instructor's grading cycle, end to end, on a class of fixture submissions.

In a fresh course folder (a copy of ``solutions/`` and ``nbgrader_config.py``)
this runs what an instructor runs from the repo root:

1. ``nbgrader generate_assignment`` (which also creates the gradebook);
2. collection: the fixture class in nbgrader's ``submitted/`` layout, plus one
   student's work from an LMS zip through ``nbgrader zip_collect``;
3. ``nbgrader autograde`` with the course's safeguards (sandboxed kernel,
   re-verification outside the kernel, re-inserted test cells, per-cell
   time limit);
4. ``nbgrader generate_feedback`` and ``nbgrader export``.

The class (``tests/fixtures/make_submissions.py``) holds one student per
kind of submission: correct, blank, partial, classic mistakes, an endless
loop, a killed kernel, broken JSON, deleted and edited tests, and cheats.
Every test cell's score is asserted exactly (``make_submissions.EXPECTED``):
full marks only for correct work, 0 for every cheated exercise, and nothing
a broken or cheating submission does may change anyone else's grade.

The course folder lives under /var/tmp, not /tmp: the sandbox replaces /tmp
with an empty file system, which would hide a course kept there for a reason
that has nothing to do with the protection under test.

Runtime: a few minutes (one kernel per submission), so the class is small and
the whole module is one unit for pytest-xdist (``--dist loadfile``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import json
import os
import pathlib
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile

import nbformat
import pytest

from course.grading.nbgrader_plugin import CELL_TIMEOUT, ReVerify, sandbox_kernel_available
from course.grading import jail

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
import make_submissions as ms  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
L01, L05 = ms.L01, ms.L05
FRIEND = ms.FRIEND            # delivered through the LMS zip; copied and targeted by cheats
LOOP = "loop"                 # graded on its own, with a short time limit per cell
#: Submissions that run until a time limit stops them: graded with short limits.
SLOW = (LOOP, "attack-sigint-loop", "attack-print-thread")
#: Graded after the class with nbgrader's own command: the controls (after every
#: attack) and the submissions whose nbgrader log the tests read.
SERIAL = ("blank", "correct", "exit", "badjson", "deleted-test")
LOOP_CELL_TIMEOUT = 6
LOOP_REVERIFY_TIMEOUT = 16
SECRET = "INSTRUCTOR-SECRET-7f3a9c"     # planted in the grading account's files and processes
# LMS file names: <student>_attempt_<timestamp>_<notebook>.ipynb. The timestamp
# is ISO basic (20240502T093000): nbgrader's parse_utc reads the dashed form of
# its docs' example, 2024-05-02-09-30-00, as 09:00:00 (the minutes are lost).
ZIP_REGEXP = (r".*/(?P<student_id>[\w-]+)_attempt_(?P<timestamp>[0-9T]+)_"
              r"(?P<file_id>[\w-]+)\.ipynb")

SANDBOX = jail.available() and sandbox_kernel_available()
NO_SANDBOX_REASON = ("no sandbox (bubblewrap missing or unusable, COURSE_NO_SANDBOX set, or "
                     "the sgd-sandbox kernel not installed): "
                     "without the sandbox nothing stops a submission from reading the "
                     "solutions or writing elsewhere (apt-get install bubblewrap; "
                     "python -m course.grading.kernel --install)")

if not SANDBOX and os.environ.get("CI"):
    pytest.fail(f"CI must grade in the sandbox: {NO_SANDBOX_REASON}", pytrace=False)

# One course, graded once, for the whole module: keep it on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_autograde")

#: The class graded here. Without the sandbox the cheats that only it can stop
#: are left out (their tests skip): they would also wreck FRIEND's grade.
CLASS = {a: [k for k in kinds if SANDBOX or k not in ms.SANDBOX_DEPENDENT]
         for a, kinds in ms.CLASS.items()}


# ----------------------------------------------------------------- helpers

def _env(home: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / ".local/share/jupyter/runtime"),
               PYTHONWARNINGS="ignore")
    env.pop("JUPYTER_CONFIG_DIR", None)
    for module in ms.ATTACK_MODULES:            # secrets an attack looks for (GRADER_ENV)
        env.update(getattr(module, "GRADER_ENV", {}))
    return env


def _digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _solution_lines(assignment: str) -> set[str]:
    """Lines of the solution's answers (SOLUTION blocks) that appear nowhere in
    the student release."""
    solution = (REPO / "solutions" / assignment / f"{assignment}.ipynb").read_text()
    release = (REPO / "notebooks" / assignment / f"{assignment}.ipynb").read_text()
    public = "\n".join("".join(c["source"]) for c in json.loads(release)["cells"])
    lines = set()
    for cell in json.loads(solution)["cells"]:
        src = "".join(cell["source"])
        for block in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", src, re.S):
            lines |= {ln.strip() for ln in block.splitlines()
                      if len(ln.strip()) > 12 and ln.strip() not in public}
    # lines that the course package also holds (e.g. in a check's diagnosis) are public
    package = "\n".join(f.read_text() for f in (REPO / "course").rglob("*.py"))
    lines = {ln for ln in lines if ln not in package}
    assert lines, f"{assignment} has no solution lines to look for"
    return lines


def _html_text(path: pathlib.Path) -> str:
    """The visible text of an HTML file: tags removed (pygments splits code
    into spans), entities decoded."""
    text = re.sub(r"<[^>]+>", "", path.read_text(errors="replace"))
    return html.unescape(text)


@dataclasses.dataclass
class Course:
    root: pathlib.Path
    home: pathlib.Path
    env: dict[str, str]
    logs: dict[str, str]
    seconds: dict[str, float]
    digests: dict[pathlib.Path, str]
    scores: dict[str, dict[str, dict[str, object]]]   # assignment -> student -> info
    collected: dict[str, str] = dataclasses.field(default_factory=dict)  # zip_collect result
    survivors: list[int] = dataclasses.field(default_factory=list)   # daemons after grading

    def nbgrader(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        start = time.monotonic()
        proc = subprocess.run([str(BIN / "nbgrader"), *args, "--log-level=INFO"],
                              cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        key = " ".join(a for a in args if not a.startswith("--"))
        self.seconds[key] = self.seconds.get(key, 0) + time.monotonic() - start
        self.logs[key] = self.logs.get(key, "") + proc.stdout + proc.stderr
        return proc

    def course(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """``course ARGS`` in the course folder (its output kept like nbgrader's)."""
        start = time.monotonic()
        proc = subprocess.run([str(BIN / "course"), *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        key = "course " + " ".join(a for a in args if not a.startswith("--"))
        self.seconds[key] = self.seconds.get(key, 0) + time.monotonic() - start
        self.logs[key] = self.logs.get(key, "") + proc.stdout + proc.stderr
        return proc

    def autograded(self, student: str, assignment: str) -> pathlib.Path:
        return self.root / "autograded" / student / assignment / f"{assignment}.ipynb"


def _read_scores(root: pathlib.Path) -> dict[str, dict[str, dict[str, object]]]:
    """Every submission's per-cell grades, through nbgrader's Gradebook API."""
    from nbgrader.api import Gradebook
    out: dict[str, dict[str, dict[str, object]]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            for assignment in ms.CLASS:
                for sub in gb.assignment_submissions(assignment):
                    nb = sub.notebooks[0]
                    out.setdefault(assignment, {})[sub.student.id] = {
                        "auto": {g.cell.name: g.auto_score for g in nb.grades
                                 if g.cell.name.startswith("test_")},
                        "manual": {g.cell.name: g.manual_score for g in nb.grades
                                   if g.manual_score is not None},
                        "extra": {g.cell.name: g.extra_credit for g in nb.grades
                                  if g.extra_credit},
                        "score": sub.score, "max_score": sub.max_score,
                    }
    return out


def _daemons(marker_path: pathlib.Path) -> list[int]:
    """Pids of fixture daemons started for this course."""
    pids = []
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if ms.DAEMON_MARKER.encode() in argv and str(marker_path).encode() in argv:
            pids.append(int(cmdline.parent.name))
    return pids


def _plant_secrets(home: pathlib.Path) -> subprocess.Popen:
    """An SSH key and a Jupyter server token in the grading account's home,
    and a process with a token on its command line (like `jupyter lab
    --IdentityProvider.token=...`). Returns that process."""
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(f"-----BEGIN KEY----- {SECRET} -----END KEY-----\n")
    runtime = home / ".local/share/jupyter/runtime"
    runtime.mkdir(parents=True)
    (runtime / "jpserver-4242.json").write_text(json.dumps(
        {"url": "http://127.0.0.1:8888/", "token": SECRET, "root_dir": "/"}))
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)",
                             f"--IdentityProvider.token={SECRET}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _lms_zip(root: pathlib.Path) -> None:
    """An LMS export of FRIEND's work: an older blank attempt, the newer
    finished one, and a file that is not a submission."""
    archive = root / "downloaded" / L01 / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "lms-export.zip", "w") as zf:
        zf.writestr(f"{FRIEND}_attempt_20240501T100000_{L01}.ipynb",
                    ms.submission_text(L01, "blank", root))
        zf.writestr(f"{FRIEND}_attempt_20240502T093000_{L01}.ipynb",
                    ms.submission_text(L01, FRIEND, root))
        zf.writestr("readme.txt", "exported by the LMS")


def _base_dir() -> pathlib.Path:
    for candidate in (os.environ.get("COURSE_TEST_TMP"), "/var/tmp"):
        if candidate and os.access(candidate, os.W_OK):
            return pathlib.Path(candidate)
    return pathlib.Path(tempfile.gettempdir())


# ----------------------------------------------------------------- the graded class

@pytest.fixture(scope="module")
def course() -> Course:
    """The graded class. COURSE_TEST_KEEP=1 keeps the course folder (its path
    is printed); COURSE_TEST_REUSE=<that folder> reuses it without grading
    again (for working on the assertions)."""
    reuse = os.environ.get("COURSE_TEST_REUSE")
    if reuse:
        base = pathlib.Path(reuse)
        c = Course(base / "course", base / "home", _env(base / "home"),
                   json.loads((base / "logs.json").read_text()), {},
                   {pathlib.Path(p): d for p, d in
                    json.loads((base / "digests.json").read_text()).items()}, {})
        c.scores = _read_scores(c.root)
        extra = json.loads((base / "extra.json").read_text())
        c.collected, c.survivors = extra["collected"], extra["survivors"]
        yield c
        return
    base = pathlib.Path(tempfile.mkdtemp(prefix="sgd-autograde-", dir=_base_dir()))
    root, home = base / "course", base / "home"
    root.mkdir()
    shutil.copytree(REPO / "solutions", root / "solutions",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copy(REPO / "nbgrader_config.py", root)
    secret_process = _plant_secrets(home)
    c = Course(root, home, _env(home), {}, {}, {}, {})
    try:
        for assignment in ms.CLASS:
            proc = c.nbgrader("generate_assignment", assignment, "--force")
            assert proc.returncode == 0, proc.stderr[-3000:]
        assert (root / "gradebook.db").is_file()

        # Collection: nbgrader's folder layout, and FRIEND's work from an LMS zip.
        kinds = {a: [k for k in CLASS[a] if not (a == L01 and k == FRIEND)] for a in CLASS}
        ms.write_all(root / "submitted", root, kinds)
        _lms_zip(root)
        proc = c.nbgrader("zip_collect", L01,
                          f"--FileNameCollectorPlugin.named_regexp={ZIP_REGEXP}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        friend = root / "submitted" / FRIEND / L01
        c.collected = {"notebook": (friend / f"{L01}.ipynb").read_text(),
                       "timestamp": (friend / "timestamp.txt").read_text()}
        c.digests = {p: _digest(p) for p in (root / "submitted").glob("*/*/*.ipynb")}

        # Autograde with the course's configuration: first the class in
        # parallel (course grade), the attacks among them; then, with
        # nbgrader's own command, the controls and the submissions whose log
        # the tests read; last, one by one with a short time limit, those
        # that run into it (the same code path, minutes less).
        slow = [s for s in SLOW if s in CLASS[L01]]
        serial = [s for s in SERIAL if s in CLASS[L01]]
        proc = c.course("grade", *ms.CLASS, "--jobs", "3",
                        *[f"--exclude={s}" for s in serial + slow])
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        c.survivors = _daemons(root)
        for assignment in ms.CLASS:
            early = [s for s in CLASS[assignment] if s not in serial]
            if len(early) < len(CLASS[assignment]):
                c.nbgrader("autograde", assignment, "--force",
                           f"--CourseDirectory.student_id_exclude={','.join(early)}")
        for student in slow:
            c.nbgrader("autograde", L01, "--force", f"--student={student}",
                       f"--Execute.timeout={LOOP_CELL_TIMEOUT}",
                       f"--ReVerify.timeout={LOOP_REVERIFY_TIMEOUT}")
        c.scores = _read_scores(root)
        for assignment in ms.CLASS:
            c.nbgrader("generate_feedback", assignment, "--force")
        proc = c.nbgrader("export", "--to", str(root / "grades.csv"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        (base / "logs.json").write_text(json.dumps(c.logs))
        (base / "digests.json").write_text(json.dumps({str(p): d for p, d in c.digests.items()}))
        (base / "extra.json").write_text(json.dumps({"collected": c.collected,
                                                     "survivors": c.survivors}))
        yield c
    finally:
        print("\nseconds per step:", {k: round(v, 1) for k, v in c.seconds.items()})
        secret_process.kill()
        secret_process.wait()
        for pid in _daemons(root):
            os.kill(pid, signal.SIGKILL)
        if os.environ.get("COURSE_TEST_KEEP"):
            print("course kept in", base)
        else:
            for path in root.rglob("*"):          # nbgrader makes its outputs read-only
                if path.is_dir():
                    path.chmod(0o755)
            shutil.rmtree(base, ignore_errors=True)


def _skip_without_sandbox(kind: str) -> None:
    if kind in ms.SANDBOX_DEPENDENT and not SANDBOX:
        pytest.skip(f"{kind} is only stopped by the sandbox: {NO_SANDBOX_REASON}")


# ----------------------------------------------------------------- configuration

def test_course_config_sets_the_safeguards():
    """nbgrader_config.py (via course.grading.nbgrader_plugin) limits each cell to
    CELL_TIMEOUT s, re-inserts deleted test cells and re-verifies outside the
    kernel, which is the sandboxed one where bubblewrap works."""
    from traitlets.config.loader import PyFileConfigLoader
    sys.path.insert(0, str(REPO))
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    assert cfg.Execute.timeout == CELL_TIMEOUT == 60
    assert cfg.OverwriteCells.add_missing_cells is True
    pre = cfg.Autograde.autograde_preprocessors
    assert ReVerify in pre and pre.index(ReVerify) == 1
    if SANDBOX:
        assert cfg.Execute.kernel_name == "sgd-sandbox"


def test_release_has_no_solutions_or_hidden_tests(course):
    """Hidden cases live in the probes (drawn per verification), never in a
    notebook: no test cell holds hidden tests, so the kernel runs only public
    code (a kernel can print its own input history)."""
    for assignment in ms.CLASS:
        text = (course.root / "notebooks" / assignment / f"{assignment}.ipynb").read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
        assert not any(line in text for line in _solution_lines(assignment))
        assert json.loads(text) == json.loads(
            (REPO / "notebooks" / assignment / f"{assignment}.ipynb").read_text()), \
            "generate_assignment in a copy of the course gives a different release"
    for solution in (REPO / "solutions").glob("*/*.ipynb"):
        assert "BEGIN HIDDEN TESTS" not in solution.read_text(), solution


def test_the_kernel_ran_only_public_test_code(course):
    """Every test cell of every autograded notebook is the release's."""
    for assignment in ms.CLASS:
        public = ms.cells_by_id(ms.read(course.root / "notebooks" / assignment /
                                        f"{assignment}.ipynb"))
        for path in (course.root / "autograded").glob(f"*/{assignment}/{assignment}.ipynb"):
            for gid, cell in ms.cells_by_id(nbformat.read(path, as_version=4)).items():
                if gid.startswith("test_"):     # (a re-inserted cell starts with a note)
                    assert cell.source.endswith(public[gid].source), (path, gid)


def test_zip_collect_takes_the_newest_attempt(course):
    assert course.collected["notebook"] == ms.submission_text(L01, FRIEND, course.root)
    assert course.collected["timestamp"].startswith("2024-05-02 09:30:00")
    assert "2 files collected, 2 files skipped" in course.logs[f"zip_collect {L01}"]


# ----------------------------------------------------------------- scores

GRADED = [(a, k) for a in ms.CLASS for k in ms.CLASS[a] if ms.EXPECTED[a][k] is not None]
# (sandbox-dependent kinds stay in GRADED, to be reported as skipped)


@pytest.mark.parametrize(("assignment", "kind"), GRADED, ids=[f"{a[:2]}-{k}" for a, k in GRADED])
def test_exact_scores(course, assignment, kind):
    """Every test cell gets exactly its documented score (make_submissions.EXPECTED)."""
    _skip_without_sandbox(kind)
    got = course.scores.get(assignment, {}).get(kind)
    assert got is not None, f"{kind} was not graded:\n{_log_about(course, kind)}"
    expected = ms.EXPECTED[assignment][kind]
    assert got["auto"] == {gid: float(p) for gid, p in expected.items()}, _outputs(
        course, kind, assignment)
    assert got["manual"] == {} and got["extra"] == {}, "scores written by the submission"
    assert got["score"] == sum(expected.values())
    auto, manual = ms.points(assignment)
    assert got["max_score"] == sum(auto.values()) + manual


def test_correct_work_gets_full_marks(course):
    for assignment in ms.CLASS:
        got = course.scores[assignment][FRIEND]
        assert all(got["auto"][g] == p for g, p in ms.EXPECTED[assignment][FRIEND].items())
        assert got["score"] == sum(ms.points(assignment)[0].values())


@pytest.mark.parametrize("kind", sorted(ms.UNGRADABLE))
def test_broken_submissions_get_nothing(course, kind):
    """Broken JSON and a killed kernel: no score, an error in the log, and
    the rest of the class graded (every other student has scores)."""
    got = course.scores[L01].get(kind)
    assert got is None or (set(got["auto"].values()) == {None} and got["score"] == 0)
    assert f"for student '{kind}'" in course.logs[f"autograde {L01}"]
    graded = {s for s, g in course.scores[L01].items() if None not in g["auto"].values()}
    assert graded >= set(CLASS[L01]) - ms.UNGRADABLE - {LOOP}


def test_endless_loop_is_cut_by_the_cell_time_limit(course):
    """The kernel is interrupted after the per-cell limit, the rest of the
    notebook still runs, and only the looping exercise loses its points."""
    got = course.scores[L01].get(LOOP)
    log = course.logs[f"autograde {L01}"]
    assert "Interrupting kernel" in log
    assert got is not None and None not in got["auto"].values(), \
        f"the looping submission was not graded:\n{_log_about(course, LOOP)}"
    nb = nbformat.read(course.autograded(LOOP, L01), as_version=4)
    enames = {o.get("ename") for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", [])}
    assert {"CellTimeoutError", "KeyboardInterrupt"} & enames, enames
    assert got["auto"] == {g: float(p) for g, p in ms.EXPECTED[L01][LOOP].items()}


def test_deleted_test_cells_are_reinserted_and_scored(course):
    nb = nbformat.read(course.autograded("deleted-test", L01), as_version=4)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert {"test_gd_step", "test_gradient_descent"} <= set(ids)
    assert "Missing grade cell test_gd_step encountered" in course.logs[f"autograde {L01}"]


def test_edited_test_cells_and_points_are_restored(course):
    """The autograded notebook runs the instructor's test cells (with their
    hidden tests) and points, not the edited ones."""
    source = ms.cells_by_id(ms.read(course.root / "solutions" / L01 / f"{L01}.ipynb"))
    nb = nbformat.read(course.autograded("edited-test", L01), as_version=4)
    tests = {g: c for g, c in ms.cells_by_id(nb).items() if g.startswith("test_")}
    assert set(tests) == set(ms.points(L01)[0])
    for gid, cell in tests.items():
        assert cell.source == source[gid].source
        assert cell.metadata["nbgrader"]["points"] == source[gid].metadata["nbgrader"]["points"]


ATTACK_CHECKS = [(m.__name__, name, check) for m in ms.ATTACK_MODULES
                 for name, check in getattr(m, "CHECKS", {}).items()]


@pytest.mark.parametrize(("module", "name", "check"), ATTACK_CHECKS,
                         ids=[f"{m}-{n}" for m, n, _ in ATTACK_CHECKS])
def test_attack_checks(course, module, name, check):
    """Each attack module's own assertions on the graded course (what an attack
    must not have achieved besides its score: a leak, a file, a process)."""
    check(course)


# ----------------------------------------------------------------- nobody else is touched

def test_submissions_and_gradebook_are_untouched(course):
    """No submission can change another's files (or its own), plant a
    symlink that nbgrader then writes through, or add triggers to the gradebook."""
    changed = [str(p.relative_to(course.root)) for p, d in course.digests.items()
               if p.is_symlink() or _digest(p) != d]
    assert changed == []
    links = [str(p.relative_to(course.root)) for p in course.root.rglob("*") if p.is_symlink()]
    assert links == []
    with sqlite3.connect(course.root / "gradebook.db") as con:
        assert con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall() == []


def test_no_process_outlives_its_kernel(course):
    """cheat-daemon starts a detached process: it must end with its kernel
    (checked when the batch that graded it has finished)."""
    if not SANDBOX:
        pytest.skip(NO_SANDBOX_REASON)
    assert course.survivors == [], "processes started by cheat-daemon outlived their kernel"


# ----------------------------------------------------------------- feedback and export

def _feedback(course: Course) -> list[pathlib.Path]:
    files = sorted((course.root / "feedback").glob("*/*/*.html"))
    for assignment in ms.CLASS:
        assert (course.root / "feedback" / FRIEND / assignment / f"{assignment}.html") in files
    return files


def test_feedback_never_shows_solution_code(course):
    """No feedback HTML shows a line of the solution that its student did not
    write: not printed by a cheat that read the solutions or the gradebook."""
    leaks = {}
    for path in _feedback(course):
        assignment, student = path.parent.name, path.parent.parent.name
        own = (course.root / "submitted" / student / assignment / f"{assignment}.ipynb")
        mine = own.read_text(errors="replace") if own.is_file() else ""
        try:        # the student's own sources, decoded (a line with quotes is escaped in JSON)
            mine += "\n".join("".join(c.get("source", "")) for c in json.loads(mine)["cells"])
        except (ValueError, KeyError, TypeError):
            pass
        text = _html_text(path)
        leaked = sorted(ln for ln in _solution_lines(assignment) if ln in text and ln not in mine)
        if leaked:
            leaks[str(path.relative_to(course.root))] = leaked[:2]
    assert leaks == {}


def test_feedback_never_shows_secrets_of_the_grading_account(course):
    """cheat-read-home prints what it finds in $HOME, the Jupyter runtime
    folder and other processes' command lines: none of it may reach a student."""
    if not SANDBOX:
        pytest.skip(NO_SANDBOX_REASON)
    leaks = [str(p.relative_to(course.root)) for p in _feedback(course)
             if SECRET in _html_text(p)]
    assert leaks == []


def test_solution_code_detector_sees_it_in_the_solution(course):
    """The check above would notice: the solution rendered as HTML contains it."""
    from nbconvert import HTMLExporter
    path = course.root / "solutions" / L01 / f"{L01}.ipynb"
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(path, as_version=4))
    out = course.root / "solution.html"
    out.write_text(body)
    text = _html_text(out)
    assert all(line in text for line in _solution_lines(L01))


def test_export_csv_matches_the_gradebook(course):
    with open(course.root / "grades.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = {(r["assignment"], r["student_id"]): (float(r["score"]), float(r["max_score"]))
           for r in rows}
    for assignment, students in course.scores.items():
        for student, info in students.items():
            assert got[assignment, student] == (info["score"], info["max_score"])
    for assignment in ms.CLASS:
        auto, manual = ms.points(assignment)
        assert got[assignment, FRIEND] == (sum(auto.values()), sum(auto.values()) + manual)
    assert got[L01, "badjson"][0] == 0.0


# ----------------------------------------------------------------- diagnostics

def _log_about(course: Course, student: str) -> str:
    lines = [ln for text in course.logs.values() for ln in text.splitlines()
             if f"/{student}/" in ln or f"'{student}'" in ln or f"] {student} " in ln]
    return "\n".join(lines[-40:])


def _outputs(course: Course, student: str, assignment: str) -> str:
    """Outputs of the exercise and test cells, to see what a cheat achieved."""
    path = course.autograded(student, assignment)
    if not path.exists():
        return _log_about(course, student)
    out = []
    for cell in nbformat.read(path, as_version=4).cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.cell_type != "code" or not gid:
            continue
        for o in cell.get("outputs", []):
            text = o.get("text") or o.get("evalue") or str(o.get("data", {}).get("text/plain", ""))
            out.append(f"  {gid} [{o.output_type}] {str(text)[:300]!r}")
    return f"{student}:\n" + "\n".join(out) + "\n" + _log_about(course, student)


# ----------------------------------------------------------------- calibration

PLAIN_CONFIG = '''c = get_config()
c.CourseDirectory.course_id = "sgd-from-scratch"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.Execute.timeout = 60
c.OverwriteCells.add_missing_cells = True
'''


@pytest.mark.skipif(not os.environ.get("COURSE_TEST_PLAIN"),
                    reason="calibration of the fixtures, a few minutes: COURSE_TEST_PLAIN=1")
def test_cheats_fool_plain_nbgrader():
    """Plain nbgrader (no re-verification, no sandbox) awards the cheats what
    make_submissions.PLAIN says: each cheat is a real attempt that beats the
    in-kernel tests, so the course's safeguards are what stops it."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="sgd-plain-", dir=_base_dir()))
    try:
        root, home = base / "course", base / "home"
        root.mkdir()
        home.mkdir()
        shutil.copytree(REPO / "solutions", root / "solutions")
        (root / "nbgrader_config.py").write_text(PLAIN_CONFIG)
        c = Course(root, home, _env(home), {}, {}, {}, {})
        kinds = {a: [k for k in ms.CLASS[a] if k in ms.PLAIN[a]] + [FRIEND] for a in ms.PLAIN}
        for assignment in kinds:
            assert c.nbgrader("generate_assignment", assignment, "--force").returncode == 0
        ms.write_all(root / "submitted", root, kinds)
        for assignment in kinds:
            c.nbgrader("autograde", assignment, "--force")
        got = {a: {k: v["score"] for k, v in s.items()} for a, s in _read_scores(root).items()}
        want = {a: {k: v for k, v in s.items() if k in ms.CLASS[a]} for a, s in ms.PLAIN.items()}
        wrong = {(a, k): got.get(a, {}).get(k) for a in want for k in want[a]
                 if got.get(a, {}).get(k) != want[a][k]}
        assert wrong == {}, "\n".join(f"{a} {k}: {v}" for (a, k), v in wrong.items())
    finally:
        for pid in _daemons(base / "course"):
            os.kill(pid, signal.SIGKILL)
        for path in base.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
