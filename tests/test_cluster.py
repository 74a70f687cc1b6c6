"""A shared PostgreSQL gradebook and grading on a Dask cluster, with real parts.

One class (6 students x lessons 01 and 05: correct, wrong and stub submissions)
is graded twice:

1. locally, ``course grade --jobs 2`` into SQLite (``gradebook.db``), the reference;
2. on a Dask cluster (a scheduler and two worker processes on loopback) into a
   PostgreSQL gradebook (a throw-away server on 127.0.0.1), from a second course
   folder that has no autograded files: the workers get the submissions as bytes
   and send the autograded notebooks back. One worker is killed (SIGKILL) while it
   grades: its task runs again elsewhere.

Both gradebooks must then hold the same rows, scores, comments and flags, every
submission exactly once; ``course report`` prints the same from either; and
``course gradebook migrate`` copies the SQLite gradebook into PostgreSQL without
loss. Without the PostgreSQL server binaries, bubblewrap or dask the module skips
(fails under CI=true). The course folders live under /var/tmp (the sandbox hides /tmp).

Runtime: 24 sandboxed gradings (12 local, 12 on the cluster, plus the killed task's
rerun) on 2 cores: about 6 minutes on this machine while shared with other jobs (load
around 8), most of it nbgrader's grading itself; the module is one unit for xdist.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import nbformat
import pytest

from course.grading import jail
from course.grading.nbgrader_plugin import sandbox_kernel_available

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "fixtures"))
import make_submissions as ms  # noqa: E402
import postgres  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
LESSONS = (ms.L01, ms.L05)
#: student -> kind per lesson ("stub": the release as handed out, nothing solved).
CLASS = {
    "s1": ("correct", "correct"),
    "s2": ("wrong", "wrong-dampening-first"),
    "s3": ("blank", "stub"),
    "s4": ("partial", "wrong-buffer-zeros"),
    "s5": ("correct", "stub"),
    "s6": ("wrong", "correct"),
}


def _missing() -> str | None:
    try:
        import dask.distributed  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[cluster]')"
    if not (jail.available() and sandbox_kernel_available()):
        return "no grading sandbox (bubblewrap and the sgd-sandbox kernel)"
    return postgres.missing()


MISSING = _missing()
if MISSING and os.environ.get("CI"):
    pytest.fail(f"CI must run the cluster tests: {MISSING}", pytrace=False)
pytestmark = [pytest.mark.skipif(bool(MISSING), reason=MISSING or ""),
              pytest.mark.xdist_group("test_cluster")]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONWARNINGS="ignore", **extra)
    env.pop("COURSE_DB_URL", None) if "COURSE_DB_URL" not in extra else None
    return env


def _run(root: pathlib.Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=root, env=_env(**env),
                          capture_output=True, text=True, timeout=600)
    return proc


def _submission(assignment: str, kind: str, root: pathlib.Path) -> nbformat.NotebookNode:
    return ms.release(assignment, root) if kind == "stub" else ms.make(assignment, kind, root)


@pytest.fixture(scope="module")
def pg():
    with postgres.server() as prefix:
        yield prefix


@pytest.fixture(scope="module")
def graded(pg):
    """(local course folder, its SQLite gradebook URL, cluster course folder, its
    PostgreSQL URL, seconds per phase, what the killer saw)."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="sgd-cluster-", dir="/var/tmp"))
    local, remote = base / "local", base / "remote"
    local.mkdir()
    for lesson in LESSONS:
        shutil.copytree(REPO / "solutions" / lesson, local / "solutions" / lesson,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copy(REPO / "nbgrader_config.py", local)
    seconds: dict[str, float] = {}
    try:
        start = time.monotonic()
        for lesson in LESSONS:
            proc = _run(local, "nbgrader", "generate_assignment", lesson, "--force",
                        "--log-level=ERROR")
            assert proc.returncode == 0, proc.stderr[-2000:]
        for student, kinds in CLASS.items():
            for lesson, kind in zip(LESSONS, kinds, strict=True):
                folder = local / "submitted" / student / lesson
                folder.mkdir(parents=True)
                nbformat.write(_submission(lesson, kind, local), folder / f"{lesson}.ipynb")
        shutil.copytree(local, remote)        # before grading: no autograded/, same gradebook
        # The cluster grades into PostgreSQL: the released gradebook, migrated.
        db = postgres.create_database(pg, "cluster")
        proc = _run(remote, "course", "gradebook", "migrate", "--to", db)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (remote / "gradebook.db").unlink()
        seconds["setup"] = time.monotonic() - start

        start = time.monotonic()
        proc = _run(local, "course", "grade", "--jobs", "2")
        seconds["local"] = time.monotonic() - start
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

        start = time.monotonic()
        killed = _grade_on_cluster(remote, db, base / "workers")
        seconds["cluster"] = time.monotonic() - start
        yield local, f"sqlite:///{local / 'gradebook.db'}", remote, db, seconds, killed
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _grade_on_cluster(root: pathlib.Path, db: str, workers: pathlib.Path) -> dict:
    """Grade ``root`` on a scheduler and two worker processes on loopback, killing the
    first worker that has been grading for a few seconds. Returns what was killed."""
    from dask.distributed import Client, LocalCluster

    from course.grading import cluster
    from course.grading.autograde import grade
    os.environ[cluster.WORKER_DIR_ENV] = str(workers)        # inherited by the workers
    lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1")
    client = Client(lc)
    killed: dict = {}

    def killer() -> None:
        seen: dict[str, float] = {}
        while not killed and time.monotonic() - start < 300:
            for address, keys in client.processing().items():
                if keys and address in seen and time.monotonic() - seen[address] > 4:
                    pid = client.run(os.getpid, workers=[address])[address]
                    killed.update(address=address, pid=pid, key=keys[0])
                    os.kill(pid, signal.SIGKILL)
                    return
                if keys:
                    seen.setdefault(address, time.monotonic())
            time.sleep(0.5)

    start = time.monotonic()
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    results = grade(root, list(LESSONS), progress=False,
                    executor=cluster.executor(db, connected=(client, lc)))
    thread.join(5)
    assert not [o for o in results.values() if o.error], results
    killed["results"] = len(results)
    return killed


def test_cluster_grades_equal_local_grades_each_recorded_once(graded):
    from course.grading.gradebook import contents
    local, sqlite, remote, db, seconds, killed = graded
    print(f"seconds: {seconds}")
    assert killed.get("pid"), "no worker was killed while grading"
    assert killed["results"] == len(CLASS) * len(LESSONS)
    mine, theirs = contents(sqlite), contents(db)
    assert mine["rows"]["submitted_assignment"] == len(CLASS) * len(LESSONS)
    assert theirs["rows"] == mine["rows"]             # nothing recorded twice, nothing lost
    assert theirs["scores"] == mine["scores"]
    # the class is a mix: solved, partly solved and stubs on each lesson (written
    # answers are graded by hand later: not in these totals)
    totals = {k: v for k, v in mine["scores"].items() if k.count("/") == 1}
    assert totals["s3/" + ms.L01][0] < totals["s4/" + ms.L01][0] < totals["s1/" + ms.L01][0]
    assert totals["s3/" + ms.L05][0] < totals["s2/" + ms.L05][0] < totals["s6/" + ms.L05][0]
    # the autograded notebooks came back to the instructor's folder
    for student in CLASS:
        for lesson in LESSONS:
            path = remote / "autograded" / student / lesson / f"{lesson}.ipynb"
            assert nbformat.read(path, as_version=4).cells
    assert seconds["cluster"] < 300


def test_report_reads_either_gradebook(graded):
    local, sqlite, remote, db, *_ = graded
    mine = _run(local, "course", "report", ms.L01, "--png", str(local / "a.png"))
    theirs = _run(remote, "course", "report", ms.L01, "--png", str(remote / "a.png"),
                  "--db-url", db)
    assert mine.returncode == theirs.returncode == 0, mine.stderr + theirs.stderr
    # the same lines (the cells in the order each database returns them), but the PNG's
    assert sorted(mine.stdout.splitlines()[:-1]) == sorted(theirs.stdout.splitlines()[:-1])
    assert "6 submissions" in theirs.stdout


def test_migrate_copies_every_score(graded, pg):
    from course.grading.gradebook import contents
    local, sqlite, *_ = graded
    db = postgres.create_database(pg, "migrated")
    proc = _run(local, "course", "gradebook", "migrate", "--to", db)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "submitted_assignment 12" in proc.stdout
    mine, theirs = contents(sqlite), contents(db)
    assert theirs == mine and len(mine["scores"]) > 100
    again = _run(local, "course", "gradebook", "migrate", "--to", db)
    assert again.returncode == 2 and "is not empty" in again.stderr


def test_bad_scheduler_and_database_are_named(pg, tmp_path):
    from course.grading.cluster import ClusterError, connect
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        connect("tcp://127.0.0.1:9", timeout=2)
    shutil.copy(REPO / "nbgrader_config.py", tmp_path)
    proc = _run(tmp_path, "course", "grade", "--db-url", pg + "no_such_db", "--workers", "1")
    assert proc.returncode == 2 and "cannot connect to the gradebook at" in proc.stderr
    assert 'database "no_such_db" does not exist' in proc.stderr
    proc = _run(tmp_path, "course", "grade", "--db-url", "mysql://u@h/db")
    assert proc.returncode == 2 and "unsupported gradebook database 'mysql'" in proc.stderr
