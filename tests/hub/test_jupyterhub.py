"""A class on a real JupyterHub: release to feedback through nbgrader's exchange.

On the hub that deploy/jupyterhub/setup.sh sets up (see conftest.py), with one
instructor and six learners who are real system users, every step runs AS
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

Three learners attack the exchange and the grading (the red team's holes):

* LATE submits a blank after the due date, then tries to change, replace or
  re-date her sealed submission (all refused) and forges a back-dated one in
  ``inbound/``: the exchange's clock dates it, and it is late by nbgrader's rules.
* LINKS submits symlinks to the solution notebook, the gradebook and
  /etc/passwd (and a fifo), by ``submit`` and by a hand-made folder in
  ``inbound/``, plus a symlink named like a submission: none is followed,
  none reaches ``submitted/`` or her feedback.
* TOKEN's notebook, autograded in the environment of the instructor's hub
  terminal, looks for the hub's tokens and calls the hub's and the
  instructor's server's APIs: it must find no token and reach neither, and the
  course's nbgrader_config.py stays as it was (this holds once the grading
  kernel's sandbox clears its environment and has no network).

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
import datetime
import hashlib
import html
import json
import os
import pathlib
import pwd
import re
import shutil
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import nbformat
import nbformat.v4
import pytest
import requests

from tests.hub.conftest import (COURSE_ID, CPU_LIMIT, CULL_EVERY, CULL_TIMEOUT, MEM_LIMIT, ROOT,
                                page_config)

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import make_submissions as ms  # noqa: E402

L01 = ms.L01
NB = f"{L01}.ipynb"
#: The learners' roles: who submits what (the third never submits).
CORRECT, PARTIAL, ABSENT, LATE, LINKS, TOKEN = range(6)
#: nbgrader's timestamp format (in the names of submissions and timestamp.txt).
TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f %Z"

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


# ----------------------------------------------------------------- the exchange, seen as root

def _inbound(hub) -> pathlib.Path:
    return hub.exchange / COURSE_ID / "inbound"


def _folders_of(hub, learner: str) -> list[pathlib.Path]:
    return sorted(p for p in _inbound(hub).iterdir() if p.name.startswith(f"{learner}+{L01}+"))


def _seal(hub, name: str) -> dict:
    return json.loads((hub.exchange / COURSE_ID / "sealed" / f"{name}.json").read_text())


def _wait_sealed(hub, folder: pathlib.Path, timeout: float = 30) -> dict:
    """The seal record of ``folder``, once the sealer's sweep has sealed it."""
    instructor = pwd.getpwnam(hub.instructor).pw_uid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if folder.lstat().st_uid == instructor:
                return _seal(hub, folder.name)
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{folder.name} not sealed in {timeout} s:\n{hub.log.read_text()[-3000:]}")


def _digests(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _secret_path(hub, learner: str) -> pathlib.Path:
    """The submission secret of her nbgrader submit (her cache), so feedback finds her."""
    cache = hub.home(learner) / ".local/share/jupyter/nbgrader_cache" / COURSE_ID
    (path,) = cache.glob(f"{learner}+{L01}+*/submission_secret.txt")
    return path


def _late_learner(hub) -> dict:
    """After the due date: a blank submitted, then every way to change it tried, then a
    back-dated forgery made by hand in inbound/."""
    late, nbg = hub.learners[LATE], hub.nbgrader
    submit_log = hub.ok(late, nbg, "submit", L01, "--log-level=INFO")
    (first,) = _folders_of(hub, late)
    seal = _wait_sealed(hub, first)
    before = _digests(first)
    finished = hub.home(late) / "finished.ipynb"
    shutil.copy(hub.home(late) / L01 / NB, finished)
    shutil.chown(finished, late, late)
    _solve(finished, "correct")
    old = "2020-01-01 00:00:00.000000 UTC"
    attempts = {
        "append to the notebook": ["sh", "-c", f'echo x >> "{first / NB}"'],
        "replace the notebook": ["cp", str(finished), str(first / NB)],
        "re-date timestamp.txt": ["sh", "-c", f'echo "{old}" > "{first / "timestamp.txt"}"'],
        "add a file": ["touch", str(first / "extra.txt")],
        "delete the submission": ["rm", "-rf", str(first)],
        "rename the submission": ["mv", str(first), f"{first}x"],
        "make it writable": ["chmod", "-R", "a+rwx", str(first)],
        "take it over": ["chown", "-R", late, str(first)],
    }
    refused = {what: hub.run(late, *cmd).returncode != 0 for what, cmd in attempts.items()}
    # a forgery: her finished notebook under a back-dated name and timestamp.txt
    stage, forged = _inbound(hub) / f"stage-{late}", _inbound(hub) / f"{late}+{L01}+{old}+forged"
    hub.ok(late, "mkdir", str(stage))
    hub.ok(late, "cp", str(finished), str(stage / NB))
    hub.ok(late, "cp", str(_secret_path(hub, late)), str(stage / "submission_secret.txt"))
    hub.ok(late, "sh", "-c", f'echo "{old}" > "{stage / "timestamp.txt"}"')
    hub.ok(late, "mv", str(stage), str(forged))
    return {"submit_log": submit_log, "first": first, "seal": seal, "before": before,
            "refused": refused, "forged": forged, "forged_seal": _wait_sealed(hub, forged)}


def _links_learner(hub) -> dict:
    """Symlinks to the solution notebook, the gradebook and /etc/passwd, and a fifo: in
    her folder when she submits, added to her sealed submission, in a folder she makes in
    inbound/ by hand, and a symlink named like a submission pointing at the course."""
    links, nbg = hub.learners[LINKS], hub.nbgrader
    work = hub.home(links) / L01
    targets = {"solution.ipynb": hub.course / "solutions" / L01 / NB,
               "gradebook.db": hub.gradebook_path, "passwd": pathlib.Path("/etc/passwd")}
    for name, target in targets.items():
        hub.ok(links, "ln", "-s", str(target), str(work / name))
    hub.ok(links, "mkfifo", str(work / "pipe"))
    submit_log = hub.ok(links, nbg, "submit", L01, "--log-level=INFO")
    (first,) = _folders_of(hub, links)
    first_seal = _wait_sealed(hub, first)
    add_link = hub.run(links, "ln", "-s", str(targets["solution.ipynb"]), str(first / "sol.ipynb"))
    stage = _inbound(hub) / f"stage-{links}"
    hub.ok(links, "mkdir", str(stage))
    hub.ok(links, "cp", str(work / NB), str(stage / NB))
    hub.ok(links, "cp", str(_secret_path(hub, links)), str(stage / "submission_secret.txt"))
    for name, target in {**targets, "extra.ipynb": targets["solution.ipynb"]}.items():
        hub.ok(links, "ln", "-s", str(target), str(stage / name))
    hub.ok(links, "mkfifo", str(stage / "pipe"))
    now = datetime.datetime.now(datetime.timezone.utc).strftime(TIMESTAMP)
    handmade = _inbound(hub) / f"{links}+{L01}+{now}+handmade"
    hub.ok(links, "mv", str(stage), str(handmade))
    link = _inbound(hub) / f"{links}+{L01}+{now}+link"
    hub.ok(links, "ln", "-s", str(hub.course), str(link))
    seal = _wait_sealed(hub, handmade)
    deadline = time.monotonic() + 30
    while os.path.lexists(link) and time.monotonic() < deadline:
        time.sleep(0.2)
    return {"submit_log": submit_log, "first_seal": first_seal, "add_link": add_link,
            "handmade": handmade, "seal": seal, "link": link}


@pytest.fixture(scope="module")
def cycle(hub, idle_server):
    """The whole cycle, release to feedback: timings (s) per step and the
    instructor's logs. (A learner's server, spawned first, idles meanwhile: the culler's.)"""
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
    submit_logs = dict(zip(submitters, step(
        "submit", _parallel, lambda u: hub.ok(u, nbg, "submit", L01, "--log-level=INFO"), submitters)))
    # the due date: now, after those two submissions, before the others
    due = datetime.datetime.now(datetime.timezone.utc)
    hub.ok(instr, nbg, "db", "assignment", "add", L01, f"--duedate={due.strftime(TIMESTAMP)}",
           quiet, cwd=course)
    time.sleep(0.1)
    attacks = {"late": step("late", _late_learner, hub), "links": step("links", _links_learner, hub)}

    logs = {command: step(command, hub.ok, instr, nbg, command, L01, quiet, cwd=course)
            for command in ("collect", "autograde", "generate_feedback", "release_feedback")}
    hub.ok(instr, nbg, "export", "--to", "grades.csv", quiet, cwd=course)
    step("fetch_feedback", _parallel, lambda u: hub.ok(u, nbg, "fetch_feedback", L01, quiet),
         submitters + [learners[LATE], learners[LINKS]])
    print("hub cycle, seconds per step:", seconds)
    return {"seconds": seconds, "logs": logs, "submit_logs": submit_logs, "due": due, **attacks}


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
    auto, manual = ms.points(L01)
    assert sum(expected[correct].values()) == sum(auto.values())
    for student, cells in expected.items():
        assert float(rows[student]["score"]) == sum(cells.values()), rows[student]
        assert float(rows[student]["max_score"]) == sum(auto.values()) + manual, rows[student]
        assert rows[student]["timestamp"], f"{student} has no submission time"
    # the hub's gradebook_db_url reached the instructor's nbgrader: no gradebook.db of its own
    assert hub.gradebook_path.is_file() and not (hub.course / "gradebook.db").exists()
    with Gradebook(hub.gradebook) as gb:
        for student, cells in expected.items():
            nb = gb.find_submission_notebook(L01, L01, student)
            auto = {g.cell.name: g.auto_score for g in nb.grades if g.cell.name.startswith("test_")}
            assert auto == cells, f"{student}: {auto} != {cells}"


def test_instructor_grades_with_the_course_safeguards(hub, cycle):
    """autograde, run by the instructor in the course folder, used the course's
    nbgrader_config.py: the stored notebooks are sanitized (course.grading.render),
    nothing about the correct submission is reported, the partial one gets exactly its
    points (test_grades_are_exact, which re-verification decides), and the sgd-sandbox
    kernel is installed for that user."""
    log = cycle["logs"]["autograde"]
    for learner in (CORRECT, PARTIAL):
        assert f"sanitized {hub.learners[learner]}:" in log, log[-3000:]
    assert f"{hub.learners[CORRECT]} test_" not in log, log[-3000:]
    assert "uses importlib" not in log, log[-3000:]      # the set-up cell is course code
    specs = json.loads(hub.ok(hub.instructor, str(pathlib.Path(sys.executable).parent / "jupyter"),
                              "kernelspec", "list", "--json"))
    assert "sgd-sandbox" in specs["kernelspecs"], specs


def test_non_submitter_is_recorded_as_missing(hub, cycle):
    from nbgrader.api import Gradebook, MissingEntry
    absent = hub.learners[ABSENT]
    row = _export(hub)[absent]
    assert row["timestamp"] == "" and float(row["score"]) == 0.0, row
    with Gradebook(hub.gradebook) as gb:
        assert {s.id for s in gb.students} == set(hub.learners)
        with pytest.raises(MissingEntry):
            gb.find_submission(L01, absent)
        submitted = {s.student.id for s in gb.assignment_submissions(L01)}
        assert absent not in submitted
        assert {hub.learners[i] for i in (CORRECT, PARTIAL, LATE, LINKS)} <= submitted
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
    auto, manual = ms.points(L01)
    total = sum(auto.values()) + manual
    for who, kind in ((CORRECT, "correct"), (PARTIAL, "partial")):
        score = sum(ms.EXPECTED[L01][kind].values())
        learner = hub.learners[who]
        files = sorted((hub.home(learner) / L01 / "feedback").glob(f"*/{L01}.html"))
        assert len(files) == 1, f"{learner} fetched {files}"
        assert files[0].stat().st_uid == hub.home(learner).stat().st_uid
        text = html.unescape(re.sub(r"<[^>]+>", "", files[0].read_text()))
        assert re.search(rf"Score:\s*{score:g}(\.0)?\s*/\s*{total:g}(\.0)?", text), text[:2000]
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
    correct, partial, absent = hub.learners[:3]
    inbound = hub.exchange / COURSE_ID / "inbound"
    mine = sorted(p for p in inbound.iterdir() if p.name.startswith(f"{correct}+{L01}+"))
    assert len(mine) == 1, sorted(inbound.iterdir())
    submission = mine[0] / NB
    assert submission.is_file()
    # the exchange: nobody but the instructor lists the inbound or reads a submission in
    # it, even knowing its name, its author included once it is sealed (nbgrader's default
    # would leave it world-readable and hers: deploy/jupyterhub/sgd_exchange.py, sgd_sealer.py)
    instructor = pwd.getpwnam(hub.instructor)
    for folder in (mine[0], *mine[0].rglob("*")):
        st = folder.lstat()
        assert (st.st_uid, st.st_gid) == (instructor.pw_uid, instructor.pw_gid), folder
        assert stat.S_IMODE(st.st_mode) in (0o750, 0o640), (folder, oct(st.st_mode))
    assert inbound.stat().st_mode & stat.S_ISVTX          # nobody renames others' entries
    for other in (partial, absent, correct):
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
        _refused(hub, learner, "cat", str(hub.gradebook_path))
        # the instructors' nbgrader config (the gradebook's URL) and the hub's settings
        _refused(hub, learner, "cat", str(hub.prefix / "etc/jupyter-instructor/nbgrader_config.py"))
        _refused(hub, learner, "cat", str(hub.prefix / "etc/settings.json"))
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
        self.s.verify = str(hub.cert)
        self.s.trust_env = False      # REQUESTS_CA_BUNDLE would replace the hub's certificate
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
    assert assignment["num_submissions"] >= 4, assignment
    disabled = page_config(instructor.get("/lab").text).get("disabledExtensions", {})
    assert not any("nbgrader" in name for name in disabled), disabled
    # formgrader's panel frames its pages inside JupyterLab: the hub's default policy
    # ("frame-ancestors 'none'", nbgrader#1870) would leave it blank
    for path in ("/formgrader/manage_assignments", "/lab"):
        policy = instructor.get(path).headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'self'" in policy and "'none'" not in policy.split(
            "frame-ancestors")[1].split(";")[0], (path, policy)



# ----------------------------------------------------------------- sealed submissions

def test_submissions_are_sealed_with_the_exchange_time(hub, cycle):
    """Right after submit, the exchange's sealer owns each submission: the learner is
    told the receive time, the seal record holds it and the files' digests, and the
    time is the one nbgrader grades with."""
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc
    for who in (CORRECT, PARTIAL):
        learner = hub.learners[who]
        assert "sealed by the exchange at" in cycle["submit_logs"][learner], cycle["submit_logs"][learner]
        (folder,) = _folders_of(hub, learner)
        seal = _seal(hub, folder.name)
        assert seal["student"] == learner and seal["uid"] == pwd.getpwnam(learner).pw_uid
        assert seal["files"] == _digests(folder)
        assert (folder / "timestamp.txt").read_text() == seal["received"]
        submitted = hub.course / "submitted" / learner / L01 / "timestamp.txt"
        assert submitted.read_text() == seal["received"]
        with Gradebook(hub.gradebook) as gb:
            sub = gb.find_submission(L01, learner)
            assert sub.timestamp == parse_utc(seal["received"]).replace(tzinfo=None)
            assert sub.total_seconds_late == 0            # before the due date
    sealed = hub.exchange / COURSE_ID / "sealed"
    assert sealed.stat().st_uid == 0 and stat.S_IMODE(sealed.stat().st_mode) == 0o750
    for learner in hub.learners:
        _refused(hub, learner, "ls", str(sealed))


def test_late_submission_cannot_be_changed_or_back_dated(hub, cycle):
    """The red team's late blank: after submit she can neither change, replace, re-date,
    delete nor rename her submission; a back-dated forgery in inbound/ is dated by the
    exchange's clock, and nbgrader grades her submission late."""
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc
    late, info = hub.learners[LATE], cycle["late"]
    due = cycle["due"].replace(tzinfo=None)          # nbgrader's times are naive UTC
    assert "sealed by the exchange at" in info["submit_log"]
    assert info["refused"] and all(info["refused"].values()), info["refused"]
    assert info["first"].is_dir() and _digests(info["first"]) == info["before"] == info["seal"]["files"]
    assert parse_utc(info["seal"]["received"]) > due
    forged = info["forged_seal"]
    assert forged["claimed_timestamp"].startswith("2020-01-01")
    received = parse_utc(forged["received"])
    assert received > due and (info["forged"] / "timestamp.txt").read_text() == forged["received"]
    assert (hub.course / "submitted" / late / L01 / "timestamp.txt").read_text() == forged["received"]
    with Gradebook(hub.gradebook) as gb:
        sub = gb.find_submission(L01, late)
        assert sub.timestamp == received, (sub.timestamp, received)
        assert sub.total_seconds_late > 0, (sub.timestamp, sub.duedate)
    row = _export(hub)[late]
    assert row["timestamp"] and not row["timestamp"].startswith("2020"), row


def test_symlinks_are_never_followed(hub, cycle):
    """Symlinks (to the solution notebook, the gradebook, /etc/passwd) and fifos: left
    out by submit, refused in a sealed submission, removed by the sealer from a
    hand-made one, a symlink named like a submission rejected; none reaches
    submitted/, autograded/ or her feedback."""
    links, info = hub.learners[LINKS], cycle["links"]
    for name, kind in (("solution.ipynb", "symlink"), ("gradebook.db", "symlink"),
                       ("passwd", "symlink"), ("pipe", "fifo")):
        assert f"Not submitted: {name} is a {kind}" in info["submit_log"], info["submit_log"]
    assert info["add_link"].returncode != 0
    assert sorted(map(tuple, info["seal"]["removed"])) == [
        ("extra.ipynb", "symlink"), ("gradebook.db", "symlink"), ("passwd", "symlink"),
        ("pipe", "fifo"), ("solution.ipynb", "symlink")]
    assert not os.path.lexists(info["link"]), "a symlink named like a submission is still there"
    assert "rejected" in hub.log.read_text()
    for top in ("submitted", "autograded", "feedback"):
        for path in (hub.course / top).rglob("*"):
            assert not path.is_symlink() and (path.is_file() or path.is_dir()), path
    files = sorted(p.name for p in (hub.course / "submitted" / links / L01).iterdir())
    assert files == [NB, "submission_secret.txt", "timestamp.txt"], files
    fetched = [p for p in (hub.home(links) / L01 / "feedback").rglob("*") if not p.is_dir()]
    assert [p.name for p in fetched] == [f"{L01}.html"], fetched
    for path in fetched:
        text = path.read_bytes()
        for secret in (b"BEGIN HIDDEN TESTS", b"SQLite format 3", b"root:x:0:0"):
            assert secret not in text, (path, secret)


def test_collect_refuses_changed_and_unsealed_submissions(hub, cycle):
    """A sealed submission changed afterwards (here by root) is refused by collect, named
    with what changed; a folder the sealer never sealed is skipped, named."""
    instr, nbg = hub.instructor, hub.nbgrader
    (folder,) = _folders_of(hub, hub.learners[PARTIAL])
    notebook = folder / NB
    original = notebook.read_bytes()
    notebook.write_bytes(original + b"\n")
    unsealed = _inbound(hub) / f"{hub.learners[ABSENT]}+{L01}+2020-01-01 00:00:00.000000 UTC+x"
    unsealed.mkdir()
    shutil.copy(hub.exchange / COURSE_ID / "outbound" / L01 / NB, unsealed / NB)
    for path in (unsealed, unsealed / NB):                 # the instructor's: never sealed
        shutil.chown(path, instr, instr)
    try:
        out = hub.ok(instr, nbg, "collect", L01, "--update", cwd=hub.course)
    finally:
        notebook.write_bytes(original)
        shutil.rmtree(unsealed)
    assert f"Not collected: {folder.name} changed after it was sealed ({NB} changed)" in out, out
    assert f"Not collected: {unsealed.name} is not sealed by the exchange" in out, out
    assert not (hub.course / "submitted" / hub.learners[ABSENT]).exists()


# ----------------------------------------------------------------- the grader's hub token

ATTACK = """
import json as _j, os as _o, urllib.request as _u
try:   # the hub's certificate is self-signed: a refusal must come from the sandbox, not TLS
    import ssl as _s
    _ctx = _s._create_unverified_context()
except Exception:
    _ctx = None
# (JPY_PARENT_PID=1 is the sandbox's own: it tells ipykernel it has a parent)
_env = sorted(k for k in _o.environ if "TOKEN" in k.upper() or k.startswith(("JUPYTERHUB", "JPY"))
              and k != "JPY_PARENT_PID")
_tok = (_o.environ.get("JUPYTERHUB_API_TOKEN") or _o.environ.get("JUPYTER_TOKEN")
        or _o.environ.get("JPY_API_TOKEN") or "none")
_net = {{}}
for _name, _url, _method in {targets!r}:
    _body = (_j.dumps({{"type": "file", "format": "text", "content": "c = get_config()  # owned"}}).encode()
             if _method == "PUT" else None)
    try:
        _req = _u.Request(_url, data=_body, method=_method, headers={{
            "Authorization": "token " + _tok, "Content-Type": "application/json"}})
        with _u.urlopen(_req, timeout=3, context=_ctx) as _r:
            _net[_name] = _r.status
    except _u.HTTPError as _e:
        _net[_name] = _e.code
    except Exception as _e:
        _net[_name] = type(_e).__name__
print("SGD-ATTACK " + _j.dumps({{"env": _env, "net": _net}}))
"""


def _server_environment(hub, user: str) -> dict[str, str]:
    """The environment of ``user``'s single-user server: what a hub terminal inherits."""
    uid = pwd.getpwnam(user).pw_uid
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            if proc.stat().st_uid != uid or b"jupyterhub-singleuser" not in (proc / "cmdline").read_bytes():
                continue
            raw = (proc / "environ").read_bytes()
        except OSError:
            continue
        return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    raise AssertionError(f"no server process of {user}")


@pytest.fixture(scope="module")
def token_attack(hub, servers):
    """TOKEN's notebook tries the tokens and the APIs while the instructor autogrades it
    from a hub terminal (the environment of her server, JUPYTER_TOKEN added)."""
    instr, learner, nbg = hub.instructor, hub.learners[TOKEN], hub.nbgrader
    env = _server_environment(hub, instr)
    token = env["JUPYTERHUB_API_TOKEN"]
    # the token is real: outside the grading kernel it opens the hub's API
    control = requests.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {token}"},
                           verify=str(hub.cert),
                           timeout=10)
    assert control.status_code == 200, control.text
    terminal = {**env, "JUPYTER_TOKEN": token, "TERM": "xterm-256color",
                "PATH": f"{hub.prefix}/bin:{env.get('PATH', '/usr/bin:/bin')}"}
    targets = [("hub", f"{hub.url}/hub/api/user", "GET"),
               ("server", f"{hub.url}/user/{instr}/api/contents/nbgrader_config.py", "PUT")]
    if env.get("JUPYTERHUB_API_URL"):
        targets.append(("hub-internal", env["JUPYTERHUB_API_URL"].rstrip("/") + "/user", "GET"))
    if env.get("JUPYTERHUB_SERVICE_URL"):
        targets.append(("server-direct", env["JUPYTERHUB_SERVICE_URL"].rstrip("/")
                        + "/api/contents/nbgrader_config.py", "PUT"))
    path = hub.home(learner) / L01 / NB
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell(ATTACK.format(targets=targets)))
    nbformat.write(nb, path)
    shutil.chown(path, learner, learner)
    hub.ok(learner, nbg, "submit", L01, "--log-level=WARN")
    config = hub.course / "nbgrader_config.py"
    before = config.read_bytes()
    hub.ok(instr, nbg, "collect", L01, "--log-level=WARN", cwd=hub.course)
    proc = subprocess.run([shutil.which("runuser"), "-u", instr, "--", nbg, "autograde", L01,
                           f"--student={learner}", "--force", "--log-level=WARN"],
                          cwd=hub.course, env=terminal, capture_output=True, text=True, timeout=600)
    graded = hub.course / "autograded" / learner / L01 / NB
    report = None
    if graded.exists():
        for cell in nbformat.read(graded, as_version=4).cells:
            for out in cell.get("outputs", []):
                match = re.search(r"SGD-ATTACK (\{.*\})", out.get("text", ""))
                report = json.loads(match.group(1)) if match else report
    return {"before": before, "after": config.read_bytes(), "report": report, "proc": proc,
            "targets": targets, "control": control.json()}


def test_grading_kernel_gets_no_hub_token_and_no_network(hub, token_attack):
    """Autograde run from the instructor's hub terminal: the submission's code finds
    no token in its environment, reaches neither the hub nor the instructor's server,
    and the course's nbgrader_config.py is unchanged. (Needs the grading kernel's
    sandbox: cleared environment, no network.)"""
    proc, report = token_attack["proc"], token_attack["report"]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert report is not None, "the attack cell did not run (no SGD-ATTACK line)"
    assert token_attack["after"] == token_attack["before"], \
        f"nbgrader_config.py was changed; the kernel saw {report}"
    assert report["env"] == [], f"the grading kernel sees {report['env']}"
    reached = {name: status for name, status in report["net"].items() if isinstance(status, int)}
    assert not reached, f"the grading kernel reached {reached}"
    assert set(report["net"]) == {name for name, _, _ in token_attack["targets"]}


# ----------------------------------------------------------------- a hub for a real class

sys.path.insert(0, str(ROOT / "deploy" / "jupyterhub"))
from sgd_limits import limits_mode, user_cgroups  # noqa: E402

#: the learner whose server is left idle for the culler (she submits by nbgrader's CLI)
IDLE = CORRECT


def _server_pids(user: str) -> list[int]:
    """The user's jupyterhub-singleuser processes."""
    uid, pids = pwd.getpwnam(user).pw_uid, []
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            if proc.stat().st_uid == uid and b"jupyterhub-singleuser" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="module")
def idle_server(hub):
    """IDLE's server, spawned before the cycle and never used: (browser, its pids)."""
    browser = Browser(hub, hub.learners[IDLE], hub.passwords[hub.learners[IDLE]])
    assert browser.ok
    browser.spawn()
    pids = _server_pids(browser.user)
    assert pids, "no server process"
    return browser, pids


def test_idle_server_is_culled(hub, idle_server, cycle):
    """The culler (a service of the hub) stops a learner's server idle for CULL_TIMEOUT s;
    the hub, the learner and her files stay."""
    browser, pids = idle_server
    user = browser.user
    deadline = time.monotonic() + CULL_TIMEOUT + 3 * CULL_EVERY
    model = None
    while time.monotonic() < deadline:
        model = browser.s.get(f"{hub.url}/hub/api/users/{user}", timeout=10).json()
        if not model["servers"]:
            break
        time.sleep(1)
    assert model is not None and not model["servers"], f"{user}'s idle server still runs: {model}"
    log = hub.log.read_text()
    assert re.search(rf"Culling server {re.escape(user)} \(inactive for", log), log[-3000:]
    for pid in pids:
        assert not pathlib.Path(f"/proc/{pid}").exists() or pathlib.Path(
            f"/proc/{pid}/status").read_text().find("State:\tZ") >= 0, f"server {pid} still runs"
    assert (hub.home(user) / L01 / NB).exists()
    assert hub.settings["cull_timeout"] == CULL_TIMEOUT and hub.settings["cull_every"] == CULL_EVERY


def _token(browser) -> dict[str, str]:
    """Headers with a new API token of ``browser``'s user (for her server's API)."""
    home = browser.s.get(f"{browser.hub.url}/hub/home", timeout=10).text
    xsrf = re.search(r'xsrf_token: "([^"]+)"', home).group(1)
    r = browser.s.post(f"{browser.hub.url}/hub/api/users/{browser.user}/tokens", timeout=30,
                       headers={"X-XSRFToken": xsrf}, json={"note": "limit test", "expires_in": 600})
    assert r.status_code == 201, r.text
    return {"Authorization": f"token {r.json()['token']}"}


def _culler_api(hub) -> tuple[str, dict[str, str]]:
    """The hub API URL and token the hub gave its culler service (from its environment)."""
    port = f":{hub.settings['hub_port']}/"
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            if b"jupyterhub_idle_culler" not in (proc / "cmdline").read_bytes():
                continue
            env = dict(item.split("=", 1) for item in (proc / "environ").read_bytes().decode()
                       .split("\0") if "=" in item)
        except OSError:
            continue
        if port in env.get("JUPYTERHUB_API_URL", ""):
            return env["JUPYTERHUB_API_URL"], {"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}"}
    raise AssertionError("no culler service process of this hub")


def test_the_culler_can_only_see_and_stop_learners_servers(hub, servers):
    """The culler's own token: it lists learners only, cannot read or stop the instructor's
    running server, nor read a learner's tokens."""
    api, headers = _culler_api(hub)
    listed = {u["name"] for u in requests.get(f"{api}/users", headers=headers, timeout=10).json()}
    assert listed and listed <= set(hub.learners), listed
    instr = hub.instructor
    assert requests.get(f"{api}/users/{instr}", headers=headers, timeout=10).status_code in (403, 404)
    r = requests.delete(f"{api}/users/{instr}/server", headers=headers, timeout=30)
    assert r.status_code in (403, 404), (r.status_code, r.text)
    r = requests.get(f"{api}/users/{hub.learners[ABSENT]}/tokens", headers=headers, timeout=10)
    assert r.status_code in (403, 404), (r.status_code, r.text)
    assert _server_pids(instr), "the instructor's server is gone"


def _start_kernel(browser) -> tuple[str, dict[str, str]]:
    """A kernel in ``browser``'s server and the headers (a hub API token of the user) to use it."""
    headers = _token(browser)
    r = browser.s.post(f"{browser.hub.url}/user/{browser.user}/api/kernels", headers=headers,
                       json={"name": "python3"}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"], headers


def _execute(browser, kernel: str, headers: dict[str, str], code: str, timeout: float = 120) -> dict:
    """Run ``code`` in the kernel (over its websocket); what it printed, how it ended."""
    import uuid

    import websocket
    url = (browser.hub.url.replace("https://", "wss://")
           + f"/user/{browser.user}/api/kernels/{kernel}/channels")
    ws = websocket.create_connection(url, header=[f"{k}: {v}" for k, v in headers.items()],
                                     sslopt={"ca_certs": str(browser.hub.cert)}, timeout=timeout)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": browser.user, "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    result = {"stdout": "", "error": None, "states": []}
    try:
        while True:
            msg = json.loads(ws.recv())
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status":
                result["states"].append(content["execution_state"])
                if content["execution_state"] in ("restarting", "dead"):
                    break
                if content["execution_state"] == "idle" and msg["parent_header"].get("msg_id") == msg_id:
                    break
            elif kind == "stream":
                result["stdout"] += content["text"]
            elif kind == "error":
                result["error"] = content["ename"]
    except websocket.WebSocketException as exc:
        result["closed"] = repr(exc)
    finally:
        ws.close()
    return result


@pytest.fixture(scope="module")
def memory_hog(hub, cycle):
    """PARTIAL's kernel allocates past her memory limit while LATE's server serves."""
    hog, bystander = (Browser(hub, hub.learners[i], hub.passwords[hub.learners[i]])
                      for i in (PARTIAL, LATE))
    _parallel(lambda b: b.spawn(), [hog, bystander])
    kernel, headers = _start_kernel(hog)
    pid = int(_execute(hog, kernel, headers, "import os; print(os.getpid())")["stdout"])
    groups = {c: (f / "cgroup.procs").read_text().split() for c, f in user_cgroups(hog.user).items()}
    hogged = _execute(hog, kernel, headers,
                      f"x = b'1' * {MEM_LIMIT * 2}\nprint('allocated', len(x))")
    return {"hog": hog, "bystander": bystander, "pid": pid, "groups": groups, "result": hogged,
            "kernel": kernel, "headers": {hog.user: headers, bystander.user: _token(bystander)}}


def test_memory_limit_stops_the_learner_not_the_others(hub, memory_hog):
    """A learner's kernel allocating twice her memory limit does not get it (cgroup v1:
    the kernel's OOM killer kills it, in her cgroup only; elsewhere RLIMIT_AS: MemoryError);
    her server and another learner's server keep answering."""
    hog, bystander, result = memory_hog["hog"], memory_hog["bystander"], memory_hog["result"]
    assert "allocated" not in result["stdout"], result
    if limits_mode() == "cgroup-v1":
        memory = user_cgroups(hog.user)["memory"]
        assert int((memory / "memory.limit_in_bytes").read_text()) == MEM_LIMIT
        assert str(memory_hog["pid"]) in memory_hog["groups"]["memory"], memory_hog["groups"]
        oom = dict(line.split() for line in (memory / "memory.oom_control").read_text().splitlines())
        assert int(oom["oom_kill"]) >= 1, oom
        deadline = time.monotonic() + 30
        while pathlib.Path(f"/proc/{memory_hog['pid']}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pathlib.Path(f"/proc/{memory_hog['pid']}").exists(), "the kernel still runs"
    else:
        assert result["error"] == "MemoryError", result
    for browser in (hog, bystander):
        r = browser.get("/api/status", headers=memory_hog["headers"][browser.user])
        assert r.status_code == 200, (browser.user, r.status_code, r.text[:300])
    model = bystander.s.get(f"{hub.url}/hub/api/users/{bystander.user}", timeout=10).json()
    assert model["servers"][""]["ready"], model


def test_cpu_limit_is_the_users_cgroup_quota(hub, memory_hog):
    """cgroup v1: the learner's server runs in her cpu cgroup with a quota of CPU_LIMIT CPUs."""
    if limits_mode() != "cgroup-v1":
        pytest.skip("no writable cgroup v1 on this machine: the local spawner limits no CPU")
    cpu = user_cgroups(memory_hog["hog"].user)["cpu"]
    period = int((cpu / "cpu.cfs_period_us").read_text())
    assert int((cpu / "cpu.cfs_quota_us").read_text()) == int(CPU_LIMIT * period)
    assert str(memory_hog["pid"]) in memory_hog["groups"]["cpu"], memory_hog["groups"]


def test_hub_serves_https_with_its_certificate(hub):
    """The proxy serves the certificate of settings.json's ssl_cert, and no plain HTTP."""
    import ssl
    import urllib.parse
    port = urllib.parse.urlsplit(hub.url).port
    served = ssl.get_server_certificate(("127.0.0.1", port))
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(hub.cert.read_text())
    assert hub.settings["ssl_cert"] == str(hub.cert)
    try:
        plain = requests.get(f"http://127.0.0.1:{port}/hub/api", timeout=10).status_code
    except requests.ConnectionError:
        plain = None
    assert plain != 200, "the hub answers plain HTTP"


def test_backup_of_gradebook_and_exchange(hub, cycle):
    """``setup.sh backup DEST``: the gradebook (SQLite's online backup), the exchange as a tar
    with owners and modes, a manifest; restored, both equal the originals."""
    from nbgrader.api import Gradebook
    backups = hub.prefix.parent / "backups"      # removed with the hub
    proc = subprocess.run([str(ROOT / "deploy/jupyterhub/setup.sh"), "backup", str(backups)],
                          env=hub.setup_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (out,) = backups.iterdir()
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert sorted(p.name for p in out.iterdir()) == ["exchange.tar", "gradebook.sqlite", "manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    for name, info in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == info["sha256"], name
    assert manifest["files"]["gradebook.sqlite"]["from"] == hub.gradebook
    with Gradebook(hub.gradebook) as live, Gradebook(f"sqlite:///{out / 'gradebook.sqlite'}") as saved:
        for learner in (hub.learners[CORRECT], hub.learners[PARTIAL]):
            assert saved.find_submission(L01, learner).score == live.find_submission(L01, learner).score
        assert {s.id for s in saved.students} == set(hub.learners)
    restored = hub.prefix.parent / "restored"    # the README's restore command
    restored.mkdir()
    subprocess.run(["tar", "-xpf", str(out / "exchange.tar"), "--numeric-owner", "-C", str(restored)],
                   check=True)
    live_folder = hub.exchange / COURSE_ID / "inbound"
    back_folder = restored / hub.exchange.name / COURSE_ID / "inbound"
    (folder,) = _folders_of(hub, hub.learners[PARTIAL])
    assert _digests(back_folder / folder.name) == _digests(folder)
    sealed = hub.exchange / COURSE_ID / "sealed"
    for live, back in ((live_folder, back_folder), (folder, back_folder / folder.name),
                       (folder / NB, back_folder / folder.name / NB),
                       (sealed, restored / hub.exchange.name / COURSE_ID / "sealed")):
        a, b = live.lstat(), back.lstat()
        assert (a.st_uid, a.st_gid, a.st_mode) == (b.st_uid, b.st_gid, b.st_mode), live


def _postgres_bin() -> pathlib.Path | None:
    found = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def test_backup_of_a_postgresql_gradebook(hub):
    """With gradebook_db_url a postgresql:// URL, the backup is a pg_dump that restores
    (a throw-away PostgreSQL server run by the instructor's user, on a Unix socket)."""
    pg = _postgres_bin()
    if pg is None or shutil.which("pg_dump") is None:
        pytest.skip("PostgreSQL (initdb, pg_dump) not installed: apt-get install postgresql")
    instr, base = hub.instructor, hub.prefix.parent / "pg"
    base.mkdir()
    shutil.chown(base, instr, instr)
    data = base / "data"
    hub.ok(instr, str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "grader")
    hub.ok(instr, str(pg / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"),
           "-o", f"-k {base} -c listen_addresses=''", "start")
    try:
        client = ["-h", str(base), "-U", "grader"]
        psql = [str(pg / "psql"), *client, "-v", "ON_ERROR_STOP=1"]
        hub.ok(instr, str(pg / "createdb"), *client, "sgd")
        hub.ok(instr, *psql, "-d", "sgd", "-c",
               "CREATE TABLE grade (student text, score real); INSERT INTO grade VALUES ('a', 3.5)")
        settings = {**hub.settings, "gradebook_db_url": f"postgresql+psycopg2://grader@/sgd?host={base}"}
        path = base / "settings.json"
        path.write_text(json.dumps(settings))
        backups = base / "backups"
        proc = subprocess.run([sys.executable, "-I", str(ROOT / "deploy/jupyterhub/sgd_backup.py"),
                               "--settings", str(path), str(backups)], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (out,) = backups.iterdir()
        assert sorted(p.name for p in out.iterdir()) == ["exchange.tar", "gradebook.pgdump", "manifest.json"]
        assert json.loads((out / "manifest.json").read_text())["files"]["gradebook.pgdump"]["from"] \
            == settings["gradebook_db_url"]
        dump = base / "gradebook.pgdump"                 # where the server's user reads it
        shutil.copy(out / "gradebook.pgdump", dump)
        shutil.chown(dump, instr, instr)
        hub.ok(instr, str(pg / "createdb"), *client, "restored")
        hub.ok(instr, str(pg / "pg_restore"), *client, "-d", "restored", str(dump))
        rows = hub.ok(instr, *psql, "-d", "restored", "-At", "-c", "SELECT student, score FROM grade")
        assert rows.strip() == "a|3.5", rows
    finally:
        hub.run(instr, str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
