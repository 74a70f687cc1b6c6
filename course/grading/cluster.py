"""``course grade --scheduler tcp://HOST:PORT`` / ``--workers N``: autograde on Dask.

:func:`course.grading.autograde.grade` plans the work (which submissions, what is
unchanged, links removed) and records the outcomes; :func:`executor` hands it a
``concurrent.futures.Executor`` that sends each (student, assignment) pair to a
Dask worker as one task instead of a local process:

* the task carries the submission's files as bytes (plus the previous autograded
  copy, so hand-graded written answers are kept), the assignment's
  ``solutions/`` folder and ``nbgrader_config.py`` (scattered once per assignment)
  and the gradebook URL, never a password (the worker reads it from
  ``PGPASSFILE``/``PGPASSWORD``); workers need no shared file system;
* on the worker, :func:`grade_remote` writes them into a course folder of its own
  (under ``$COURSE_WORKER_DIR``, default /var/tmp: the sandbox hides /tmp) and runs
  the very function a local ``course grade`` process runs
  (:func:`course.grading.autograde._autograde`): nbgrader's autograde in the
  sandboxed kernel, re-verification outside it, refusals recorded with 0, each
  notebook's grades committed to the shared gradebook;
* the autograded files come back as bytes and replace the instructor's
  ``autograded/<student>/<assignment>/``.

A worker that dies mid-task loses nothing: the scheduler gives the task to another
worker (and ``retries`` reruns a task that raised). Grading a pair again is
idempotent: nbgrader's autograde updates the submission's one row and its grades
in place, and every student is created in the gradebook before any task runs, so
two tasks never race to create the same one.

Workers are ordinary ``dask worker`` processes started in the course's environment
(this package, nbgrader, bubblewrap, the ``sgd-sandbox`` kernel), one thread each
(a task changes the process's working directory; tasks of one process run one at
a time regardless).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import hashlib
import os
import pathlib
import shutil
import sys
import threading
import uuid
from typing import Any, Callable

from course.grading import autograde
from course.grading.gradebook import DB_URL_ENV

#: Tasks rerun after raising (a worker that dies is handled by the scheduler).
RETRIES = 2
WORKER_DIR_ENV = "COURSE_WORKER_DIR"
_LOCK = threading.Lock()
_LOADED: list[tuple[str, str]] = []       # (worker folder, db URL) whose API is loaded


class ClusterError(Exception):
    """The Dask scheduler cannot be reached or the cluster cannot be started."""


def _files(folder: pathlib.Path, prefix: str) -> dict[str, bytes]:
    """Relative path (under ``prefix``) -> bytes of every regular file of ``folder``."""
    if not folder.is_dir() or folder.is_symlink():
        return {}
    return {f"{prefix}/{p.relative_to(folder).as_posix()}": p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _write(root: pathlib.Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = (root / name).resolve()
        if root not in path.parents:
            raise ValueError(f"refusing to write outside {root}: {name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _worker_root() -> pathlib.Path:
    base = pathlib.Path(os.environ.get(WORKER_DIR_ENV) or "/var/tmp")
    root = base / f"course-grade-worker-{os.getpid()}"
    if not root.is_dir():
        root.mkdir(parents=True)
        atexit.register(shutil.rmtree, root, True)
    return root.resolve()


def grade_remote(fn: Callable[[str, str], tuple], student: str, assignment: str,
                 course: dict[str, bytes], submission: dict[str, bytes],
                 db_url: str) -> tuple[tuple, dict[str, bytes]]:
    """On a Dask worker: grade one pair with ``fn`` in this process's course folder.
    Returns ``fn``'s result and the autograded files (relative to the folder)."""
    with _LOCK:
        root = _worker_root()
        digest = hashlib.sha256(repr(sorted(course.items())).encode()).hexdigest()
        stamp = root / ".course-digest" / assignment
        if not stamp.is_file() or stamp.read_text() != digest:
            shutil.rmtree(root / "solutions" / assignment, ignore_errors=True)
            _write(root, course)
            stamp.parent.mkdir(exist_ok=True)
            stamp.write_text(digest)
        for part in ("submitted", "autograded"):
            shutil.rmtree(root / part / student, ignore_errors=True)
        _write(root, submission)
        if (str(root), db_url) not in _LOADED:     # nbgrader's API reads the config once
            os.environ[DB_URL_ENV] = db_url
            autograde._API.clear()
            autograde._start_worker(str(root))
            _LOADED[:] = [(str(root), db_url)]
        os.chdir(root)
        result = fn(student, assignment)
        out = _files(root / "autograded" / student / assignment,
                     f"autograded/{student}/{assignment}")
        for part in ("submitted", "autograded"):
            shutil.rmtree(root / part / student, ignore_errors=True)
        return result, out


class DaskExecutor(concurrent.futures.Executor):
    """Runs ``submit(fn, student, assignment)`` on a Dask cluster through
    :func:`grade_remote`; each returned future completes once the autograded files
    are back in ``root``."""

    def __init__(self, client: Any, root: pathlib.Path, db_url: str, retries: int = RETRIES,
                 cluster: Any = None):
        self.client, self.root, self.db_url, self.retries = client, root, db_url, retries
        self.cluster = cluster
        self._course: dict[str, Any] = {}
        self._futures: list[Any] = []

    def _course_files(self, assignment: str) -> Any:
        if assignment not in self._course:
            files = _files(self.root / "solutions" / assignment, f"solutions/{assignment}")
            files["nbgrader_config.py"] = (self.root / "nbgrader_config.py").read_bytes()
            [self._course[assignment]] = self.client.scatter([files], broadcast=False)
        return self._course[assignment]

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        student, assignment = args
        submission = {
            **_files(self.root / "autograded" / student / assignment,
                     f"autograded/{student}/{assignment}"),
            **_files(self.root / "submitted" / student / assignment,
                     f"submitted/{student}/{assignment}")}
        task = self.client.submit(grade_remote, fn, student, assignment,
                                  self._course_files(assignment), submission, self.db_url,
                                  retries=self.retries, pure=False,
                                  key=f"grade-{uuid.uuid4().hex[:8]}-{assignment}")
        self._futures.append(task)
        done: concurrent.futures.Future = concurrent.futures.Future()

        def back(task: Any) -> None:
            try:
                result, files = task.result()
                target = self.root / "autograded" / student / assignment
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                _write(self.root, files)
                done.set_result(result)
            except BaseException as exc:  # noqa: BLE001 - reported by grade() as not graded
                done.set_exception(exc)

        task.add_done_callback(back)
        return done

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            self.client.cancel(self._futures)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def connect(scheduler: str | None = None, workers: int | None = None,
            timeout: float = 15) -> tuple[Any, Any]:
    """A Dask client on the scheduler at ``scheduler`` or, else, on a local cluster of
    ``workers`` processes (one thread each). Returns ``(client, local cluster or None)``."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:     # pragma: no cover - dask is in the cluster extra
        raise ClusterError(f"{exc}: pip install -e '.[cluster]'") from None
    if scheduler:
        try:
            return Client(scheduler, timeout=timeout), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: "
                               f"{exc or type(exc).__name__}") from None
    cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return Client(cluster), cluster


def executor(db_url: str, scheduler: str | None = None, workers: int | None = None,
             retries: int = RETRIES, connected: tuple[Any, Any] | None = None
             ) -> Callable[[pathlib.Path, list], DaskExecutor]:
    """What :func:`course.grading.autograde.grade` calls as ``executor``: a
    :class:`DaskExecutor` on the cluster (:func:`connect`, or ``connected``: a client
    and the local cluster to close with it), every student created in the gradebook
    before any task runs."""
    from sqlalchemy.engine import make_url
    if make_url(db_url).password:
        print("course grade: the gradebook URL holds a password, which travels with every "
              "task: put it in PGPASSFILE (or PGPASSWORD) on each machine instead",
              file=sys.stderr)

    def start(root: pathlib.Path, pairs: list[tuple[str, str]]) -> DaskExecutor:
        client, cluster = connected or connect(scheduler, workers)
        create_students(db_url, root, [s for s, _ in pairs])
        return DaskExecutor(client, root, db_url, retries, cluster)
    return start


def create_students(db_url: str, root: pathlib.Path, students: list[str]) -> None:
    """Create ``students`` in the gradebook before grading in parallel: nbgrader's
    autograde creates a missing student itself, and two tasks of one new student
    (two lessons) would race to (SQLite serialises them; PostgreSQL refuses one)."""
    from nbgrader.api import Gradebook
    from course.grading.gradebook import _nbgrader_path
    _nbgrader_path()
    with Gradebook(db_url, _course_id(root)) as gb:
        for student in sorted(set(students)):
            gb.update_or_create_student(student)


def _course_id(root: pathlib.Path) -> str:
    """The course id ``nbgrader_config.py`` sets (nbgrader's API uses it too)."""
    from traitlets.config.loader import PyFileConfigLoader
    config = PyFileConfigLoader("nbgrader_config.py", str(root)).load_config()
    return str(config.CourseDirectory.get("course_id", ""))
