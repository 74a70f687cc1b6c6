"""A class on a real JupyterHub: release to feedback through nbgrader's exchange.

On the hub that deploy/jupyterhub/setup.sh sets up (see conftest.py), with one
instructor and three learners who are real system users, every step runs AS
that user with nbgrader's own commands (``runuser -u USER -- <prefix>/bin/nbgrader``,
the venv's nbgrader with the hub's exchange):

* instructor: ``generate_assignment`` and ``release_assignment`` of lesson 01,
  ``db student import`` of the class list;
* each learner: ``fetch_assignment``; one solves every exercise (the solution
  code put into the fetched notebook), one solves half, one never submits;
  the two ``submit``;
* instructor: ``collect``, ``autograde`` (the course's grading safeguards apply
  through its nbgrader_config.py: sandbox kernel, re-verification),
  ``generate_feedback``, ``release_feedback``, ``export``;
* learners: ``fetch_feedback``.

Then through the hub itself: every user logs in with their PAM password, a
learner's and the instructor's servers are spawned through the REST API, the
learner's server lists the assignment (nbgrader's assignment_list extension)
and has no formgrader, the instructor's has it, with the submissions.

Grades are asserted exactly (``tests/fixtures/make_submissions.EXPECTED``),
the non-submitter is recorded with no submission and 0, feedback shows no
line of a hidden test, and learners cannot read each other's submissions
nor the instructor's solutions.
"""

from __future__ import annotations

import csv
import html
import json
import pathlib
import pwd
import re
import shutil
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest
import requests

from tests.hub.conftest import COURSE_ID, ROOT, page_config

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import make_submissions as ms  # noqa: E402

L01 = ms.L01
NB = f"{L01}.ipynb"
#: The learners' roles: who submits what (the third never submits).
CORRECT, PARTIAL, ABSENT = 0, 1, 2

pytestmark = pytest.mark.xdist_group("hub")


def _parallel(fn, items):
    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(fn, items))


def _solve(path: pathlib.Path, kind: str) -> None:
    """Put the solution code into the fetched notebook, then apply ``kind``
    (make_submissions: "correct" also answers the written question, "partial"
    puts two stubs back)."""
    nb = nbformat.read(path, as_version=4)
    blocks = ms.solution_blocks(ms.read(ROOT / "solutions" / L01 / NB))
    solved = 0
    for gid, cell in ms.cells_by_id(nb).items():
        if cell.cell_type == "code" and cell.metadata["nbgrader"].get("solution"):
            cell.source = ms.put_body(cell.source, blocks[gid])
            solved += 1
    assert solved >= 4, f"the fetched notebook has {solved} exercises"
    ms.KINDS[L01][kind](nb, L01, ROOT)
    owner = path.stat()
    nbformat.write(nb, path)
    shutil.chown(path, owner.st_uid, owner.st_gid)


@pytest.fixture(scope="module")
def cycle(hub):
    """The whole cycle, release to feedback: timings (s) per step and the
    instructor's logs."""
    instr, learners = hub.instructor, hub.learners
    course, nbg = hub.course, hub.nbgrader
    seconds: dict[str, float] = {}

    def step(name, fn, *args, **kw):
        start = time.monotonic()
        out = fn(*args, **kw)
        seconds[name] = round(time.monotonic() - start, 1)
        return out

    quiet = "--log-level=WARN"
    step("generate_assignment", hub.ok, instr, nbg, "generate_assignment", L01, quiet, cwd=course)
    step("release_assignment", hub.ok, instr, nbg, "release_assignment", L01, quiet, cwd=course)
    roster = course / "students.csv"
    roster.write_text("id,first_name,last_name\n" +
                      "".join(f"{u},Learner,{i + 1}\n" for i, u in enumerate(learners)))
    shutil.chown(roster, instr, instr)
    hub.ok(instr, nbg, "db", "student", "import", "students.csv", quiet, cwd=course)

    step("fetch", _parallel, lambda u: hub.ok(u, nbg, "fetch_assignment", L01, quiet), learners)
    _solve(hub.home(learners[CORRECT]) / L01 / NB, "correct")
    _solve(hub.home(learners[PARTIAL]) / L01 / NB, "partial")
    submitters = [learners[CORRECT], learners[PARTIAL]]
    step("submit", _parallel, lambda u: hub.ok(u, nbg, "submit", L01, quiet), submitters)

    logs = {command: step(command, hub.ok, instr, nbg, command, L01, quiet, cwd=course)
            for command in ("collect", "autograde", "generate_feedback", "release_feedback")}
    hub.ok(instr, nbg, "export", "--to", "grades.csv", quiet, cwd=course)
    step("fetch_feedback", _parallel,
         lambda u: hub.ok(u, nbg, "fetch_feedback", L01, quiet), submitters)
    print("hub cycle, seconds per step:", seconds)
    return {"seconds": seconds, "logs": logs}


# ----------------------------------------------------------------- grades

def _export(hub) -> dict[str, dict[str, str]]:
    with (hub.course / "grades.csv").open() as f:
        return {row["student_id"]: row for row in csv.DictReader(f) if row["assignment"] == L01}


def test_grades_are_exact(hub, cycle):
    """The correct submission gets every autograded point, the partial one exactly
    the points of the exercises it solved, cell by cell (the written answer,
    2 points, is graded by hand and not yet)."""
    from nbgrader.api import Gradebook
    rows = _export(hub)
    correct, partial = hub.learners[CORRECT], hub.learners[PARTIAL]
    expected = {correct: ms.EXPECTED[L01]["correct"], partial: ms.EXPECTED[L01]["partial"]}
    assert sum(expected[correct].values()) == 8 and sum(expected[partial].values()) == 3
    for student, cells in expected.items():
        assert float(rows[student]["score"]) == sum(cells.values()), rows[student]
        assert float(rows[student]["max_score"]) == 10.0, rows[student]
        assert rows[student]["timestamp"], f"{student} has no submission time"
    with Gradebook(f"sqlite:///{hub.course / 'gradebook.db'}") as gb:
        for student, cells in expected.items():
            nb = gb.find_submission_notebook(L01, L01, student)
            auto = {g.cell.name: g.auto_score for g in nb.grades if g.cell.name.startswith("test_")}
            assert auto == cells, f"{student}: {auto} != {cells}"


def test_instructor_grades_with_the_course_safeguards(hub, cycle):
    """autograde, run by the instructor in the course folder, used the course's
    nbgrader_config.py: the re-verification outside the kernel reports the partial
    submission's unsolved exercises, and the sgd-sandbox kernel is installed for
    that user."""
    partial = hub.learners[PARTIAL]
    log = cycle["logs"]["autograde"]
    for exercise in ("test_gradient_descent", "test_steps_to_tolerance"):
        assert f"{partial} {exercise}:" in log, log[-3000:]
    assert f"{hub.learners[CORRECT]} test_" not in log, log[-3000:]
    specs = json.loads(hub.ok(hub.instructor, str(pathlib.Path(sys.executable).parent / "jupyter"),
                              "kernelspec", "list", "--json"))
    assert "sgd-sandbox" in specs["kernelspecs"], specs


def test_non_submitter_is_recorded_as_missing(hub, cycle):
    from nbgrader.api import Gradebook, MissingEntry
    absent = hub.learners[ABSENT]
    row = _export(hub)[absent]
    assert row["timestamp"] == "" and float(row["score"]) == 0.0, row
    with Gradebook(f"sqlite:///{hub.course / 'gradebook.db'}") as gb:
        assert {s.id for s in gb.students} == set(hub.learners)
        with pytest.raises(MissingEntry):
            gb.find_submission(L01, absent)
        assert {s.student.id for s in gb.assignment_submissions(L01)} == set(hub.learners[:2])
    assert not (hub.course / "submitted" / absent).exists()


# ----------------------------------------------------------------- feedback

def _hidden_test_lines() -> set[str]:
    """Lines between ### BEGIN/END HIDDEN TESTS that the student release does not show
    (none once a lesson's hidden tests are folded into its probes)."""
    solution = json.loads((ROOT / "solutions" / L01 / NB).read_text())
    release = json.loads((ROOT / "notebooks" / L01 / NB).read_text())
    public = "\n".join("".join(c["source"]) for c in release["cells"])
    lines = set()
    for cell in solution["cells"]:
        src = "".join(cell["source"])
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", src, re.S):
            lines |= {ln.strip() for ln in block.splitlines()
                      if len(ln.strip()) > 12 and ln.strip() not in public}
    return lines


def test_learners_fetch_feedback_without_hidden_tests(hub, cycle):
    hidden = _hidden_test_lines()
    for who, score in ((CORRECT, 8), (PARTIAL, 3)):
        learner = hub.learners[who]
        files = sorted((hub.home(learner) / L01 / "feedback").glob(f"*/{L01}.html"))
        assert len(files) == 1, f"{learner} fetched {files}"
        assert files[0].stat().st_uid == hub.home(learner).stat().st_uid
        text = html.unescape(re.sub(r"<[^>]+>", "", files[0].read_text()))
        assert re.search(rf"Score:\s*{score}(\.0)?\s*/\s*10(\.0)?", text), text[:2000]
        assert "YOUR CODE HERE" not in text or who == PARTIAL
        shown = [line for line in hidden if line in text]
        assert not shown, f"feedback of {learner} shows hidden test lines: {shown}"
    absent = hub.home(hub.learners[ABSENT]) / L01 / "feedback"
    assert not absent.exists()


# ----------------------------------------------------------------- who can read what

def _refused(hub, user: str, *cmd: str) -> None:
    proc = hub.run(user, *cmd)
    assert proc.returncode != 0 and "Permission denied" in proc.stderr, \
        f"{user} could run {' '.join(cmd)}: {proc.stdout[:500]}"


def test_learners_cannot_read_each_other_or_the_solutions(hub, cycle):
    correct, partial, absent = hub.learners
    inbound = hub.exchange / COURSE_ID / "inbound"
    mine = sorted(p for p in inbound.iterdir() if p.name.startswith(f"{correct}+{L01}+"))
    assert len(mine) == 1, sorted(inbound.iterdir())
    submission = mine[0] / NB
    assert submission.is_file()
    # the exchange: nobody but the instructor lists the inbound or reads a submission in
    # it, even knowing its name (nbgrader's default would leave it world-readable:
    # deploy/jupyterhub/sgd_exchange.py)
    assert stat.S_IMODE(mine[0].stat().st_mode) == 0o770
    assert mine[0].stat().st_gid == pwd.getpwnam(hub.instructor).pw_gid
    for other in (partial, absent):
        _refused(hub, other, "ls", str(inbound))
        _refused(hub, other, "cat", str(submission))
    assert "01-gradient-descent" in hub.ok(hub.instructor, "ls", str(inbound))
    # another learner's home, the instructor's course folder and solutions
    _refused(hub, absent, "cat", str(hub.home(correct) / L01 / NB))
    solutions = hub.course / "solutions" / L01 / NB
    assert "BEGIN SOLUTION" in hub.ok(hub.instructor, "cat", str(solutions))
    for learner in hub.learners:
        _refused(hub, learner, "cat", str(solutions))
        _refused(hub, learner, "ls", str(hub.course))
        _refused(hub, learner, "cat", str(hub.course / "gradebook.db"))
        # the checkout the course is installed from is readable (the package), its sources not
        _refused(hub, learner, "cat", str(ROOT / "solutions" / L01 / NB))
    # but the released assignment is there for everyone
    released = hub.exchange / COURSE_ID / "outbound" / L01 / NB
    assert "YOUR CODE HERE" in hub.ok(absent, "cat", str(released))


# ----------------------------------------------------------------- the hub itself

class Browser:
    """A logged-in hub session (cookies, XSRF token), as a browser would have."""

    def __init__(self, hub, user: str, password: str):
        self.hub, self.user = hub, user
        self.s = requests.Session()
        self.s.get(f"{hub.url}/hub/login", timeout=10)
        self.login = self.s.post(f"{hub.url}/hub/login", timeout=30, allow_redirects=False,
                                 data={"username": user, "password": password,
                                       "_xsrf": self.s.cookies.get("_xsrf", path="/hub/")})
        self.ok = self.login.status_code == 302 and "jupyterhub-hub-login" in self.s.cookies

    def spawn(self) -> None:
        home = self.s.get(f"{self.hub.url}/hub/home", timeout=10).text
        xsrf = re.search(r'xsrf_token: "([^"]+)"', home).group(1)
        r = self.s.post(f"{self.hub.url}/hub/api/users/{self.user}/server",
                        headers={"X-XSRFToken": xsrf}, timeout=150)
        assert r.status_code in (201, 202), (r.status_code, r.text)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            server = self.s.get(f"{self.hub.url}/hub/api/users/{self.user}",
                                timeout=10).json()["servers"].get("")
            if server and server["ready"]:
                return
            time.sleep(0.3)
        raise AssertionError(f"{self.user}'s server not ready:\n{self.hub.log.read_text()[-3000:]}")

    def get(self, path: str, **kw) -> requests.Response:
        return self.s.get(f"{self.hub.url}/user/{self.user}{path}", timeout=60, **kw)


def test_every_user_logs_in_with_the_system_password(hub, cycle):
    for user, password in hub.passwords.items():
        assert Browser(hub, user, password).ok, f"{user} could not log in"
    wrong = Browser(hub, hub.learners[0], "not-" + hub.passwords[hub.learners[0]])
    assert not wrong.ok and wrong.login.status_code == 403


@pytest.fixture(scope="module")
def servers(hub, cycle):
    """A learner's and the instructor's single-user servers, spawned together
    through the hub's REST API (after the cycle, so the assignment is there)."""
    learner = Browser(hub, hub.learners[ABSENT], hub.passwords[hub.learners[ABSENT]])
    instructor = Browser(hub, hub.instructor, hub.passwords[hub.instructor])
    assert learner.ok and instructor.ok, "login failed"
    _parallel(lambda b: b.spawn(), [learner, instructor])
    return learner, instructor


def test_learner_server_lists_the_assignment_and_hides_the_formgrader(servers):
    learner, _ = servers
    r = learner.get("/assignments", params={"course_id": COURSE_ID})
    assert r.status_code == 200 and r.json()["success"], r.text[:1000]
    listed = [a for a in r.json()["value"] if a["assignment_id"] == L01]
    assert listed and all(a["course_id"] == COURSE_ID for a in listed), r.json()
    assert {a["status"] for a in listed} <= {"released", "fetched"}
    assert learner.get("/formgrader").status_code == 404
    assert learner.get("/formgrader/api/assignments").status_code == 404
    disabled = page_config(learner.get("/lab").text)["disabledExtensions"]
    for plugin in ("formgrader", "create-assignment", "course-list"):
        assert f"@jupyter/nbgrader:{plugin}" in disabled, disabled
    # and nobody else's server
    r = learner.s.get(f"{learner.hub.url}/user/{learner.hub.instructor}/api/status", timeout=30)
    assert r.status_code in (403, 404), r.status_code


def test_instructor_server_serves_the_formgrader_on_the_course(servers):
    _, instructor = servers
    r = instructor.get("/formgrader")
    assert r.status_code == 200 and r.url.endswith("/formgrader/manage_assignments"), r.url
    r = instructor.get("/formgrader/api/assignments")
    assert r.status_code == 200, r.text[:1000]
    (assignment,) = [a for a in r.json() if a["name"] == L01]
    assert assignment["num_submissions"] == 2, assignment
    disabled = page_config(instructor.get("/lab").text).get("disabledExtensions", {})
    assert not any("nbgrader" in name for name in disabled), disabled

