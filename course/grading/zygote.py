"""The pristine zygote: a sandboxed process that has torch and the specs
imported and forks one fresh child per verification (it never reads a
verification's data); and the parent's side of a request."""

from __future__ import annotations

import atexit
import builtins
import importlib
import importlib.util
import json
import os
import pathlib
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from course import exercises
from course.grading.child import STEP_SECONDS, child_main
from course.grading.encoding import MAX_OUTPUT, parse_results, torch_originals

#: The builtins as they were before any learner code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001


#: What the zygote imports before it forks: everything a verification needs
#: that takes time to import (torch alone takes about a second).
_PRELOAD = ("torch", "torch.optim", "numpy", "matplotlib.pyplot", "course.exercises",
            "course.grading.seccomp")


#: The zygote's request: lesson ids look like this (nothing else is accepted).
_LESSON = re.compile(r"[0-9]{2}")


def _warm_up(specs: Any, warmed: set[str]) -> None:
    """Run every exercise's reference once on its visible cases, here, before any
    child is forked: torch imports some modules on first use (e.g. when a scheduler
    or an optimizer's state_dict is first used), which a locked-down child may not do
    (it may not read the sources they inspect). Package code only, no request data."""
    if specs is None or specs.__name__ in warmed:
        return
    warmed.add(specs.__name__)
    import warnings
    for ex in specs.EXERCISES:
        if isinstance(ex, exercises.Question):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                exercises.observations(ex, ex.reference, 0)
            except Exception:  # noqa: BLE001, S110 - only the imports matter here
                pass


def _zygote(sock_fd: int) -> None:
    """A sandboxed server that has torch imported and forks one fresh child
    per verification, and is *pristine*: it never reads a verification's
    spec (the learner's source, the seed) nor a child's results.

    Each request on ``sock_fd`` (a Unix socket to the trusted parent) is a
    short JSON header -- the lesson's two digits and the deadline -- with two
    file descriptors attached: the read end of the pipe the parent writes the
    spec into, and the write end of the pipe the child's results go to. The
    zygote imports the lesson's probes (code of the package, no request
    data), forks, closes both descriptors, waits for the child (killing it
    at the deadline) and answers with the child's exit status. So no
    previous verification's data is ever in the memory a child starts from.
    """
    import ctypes
    import socket

    import matplotlib
    # Not dumpable: no child (same user, no capabilities) may open this
    # process's /proc/<pid>/mem, environ, ... to tamper with the next child.
    if ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) != 0:          # PR_SET_DUMPABLE, 0
        raise SystemExit("course.grading.zygote: prctl(PR_SET_DUMPABLE) failed")
    # Children must not find modules planted in the shared scratch folder.
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    matplotlib.use("Agg")
    for name in _PRELOAD:
        importlib.import_module(name)
    torch_originals()
    warmed: set[str] = set()
    sock = socket.socket(fileno=sock_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        try:
            header, fds, _flags, _addr = socket.recv_fds(sock, 4096, 2)
        except OSError:
            return
        if not header:
            return                                     # the parent has gone
        try:
            request = json.loads(header)
            lesson, deadline = str(request["lesson"]), float(request["deadline"])
            if not _LESSON.fullmatch(lesson) or len(fds) != 2:
                raise ValueError("bad request")
        except (ValueError, KeyError, TypeError):
            for fd in fds:
                os.close(fd)
            sock.sendall(b'{"error": "bad request"}\n')
            continue
        try:        # the lesson's specs (and what they import) once, before any fork
            _warm_up(exercises.lesson(lesson), warmed)
        except Exception:  # noqa: BLE001 - the child reports it
            pass
        spec_fd, out_fd = fds
        folder = tempfile.mkdtemp(prefix="child-")
        pid = os.fork()
        if pid == 0:                                   # the child
            try:
                sock.close()
                os.chdir(folder)
                os.environ["TMPDIR"] = tempfile.tempdir = folder
                child_main(spec_fd, out_fd)
            finally:
                os._exit(0)
        os.close(spec_fd)
        os.close(out_fd)
        status, timed_out = _wait(pid, deadline)
        shutil.rmtree(folder, ignore_errors=True)
        sock.sendall(json.dumps({"status": status, "timed_out": timed_out}).encode() + b"\n")


def _wait(pid: int, seconds: float) -> tuple[int, bool]:
    """Wait for a child, killing it at the deadline; (wait status, timed out)."""
    fd = os.pidfd_open(pid)
    try:
        timed_out = not select.select([fd], [], [], max(seconds, 0))[0]
    finally:
        os.close(fd)
    if timed_out:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return os.waitpid(pid, 0)[1], timed_out


def _seed_font_cache(scratch: pathlib.Path) -> None:
    """Copy matplotlib's font list into the child's config dir (saves a rebuild per run)."""
    try:
        import matplotlib
        for cached in pathlib.Path(matplotlib.get_cachedir()).glob("fontlist-*.json"):
            shutil.copy(cached, scratch / cached.name)
    except Exception:  # noqa: BLE001 - only an optimisation
        pass


class Zygote:
    """A ``python -m course.grading.zygote --zygote SOCK`` (see :func:`_zygote`) in
    the allow-list jail (:mod:`course.grading.jail`: the Python install, the venv
    and the ``course`` package read-only, its scratch folder the one
    writable place, no network, a cleared environment, never root): one
    fresh, forked child per verification, without paying for the imports
    every time. One request at a time; bubblewrap ends it with its parent."""

    def __init__(self) -> None:
        import socket

        from course.grading import jail
        self.scratch = tempfile.mkdtemp(prefix="sgd-verify-")
        _seed_font_cache(pathlib.Path(self.scratch))
        settings = {"MPLBACKEND": "Agg", "MPLCONFIGDIR": self.scratch, "TMPDIR": self.scratch,
                    "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [os.path.abspath(sys.executable), "-m", "course.grading.zygote", "--zygote",
                str(theirs.fileno())]
        if jail.available():
            jail.prepare(self.scratch)
            cmd, env = jail.command(argv, rw=[self.scratch],
                                    env=settings), None
        else:
            print("course.grading: bubblewrap unavailable, re-verification NOT sandboxed",
                  file=sys.stderr)
            cmd, env = argv, dict(os.environ, **settings)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env, cwd=self.scratch,
                                     pass_fds=(theirs.fileno(),))
        theirs.close()
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, lesson: str, spec: dict[str, Any], timeout: float) -> tuple[bytes, bool]:
        """Run one verification; (the child's output, whether it ran out of time).

        The spec goes straight to the child through a pipe of its own, and
        its results come straight back through another: the zygote only
        forks. Raises OSError if the zygote died or did not answer in time
        (it is then stopped: a new one replaces it).
        """
        import socket
        spec_r, spec_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            header = json.dumps({"lesson": lesson, "deadline": timeout}).encode()
            socket.send_fds(self.sock, [header], [spec_r, out_w])
        except OSError as exc:
            for fd in (spec_r, spec_w, out_r, out_w):
                os.close(fd)
            self.close()
            raise OSError(f"the verification process ended: {exc}") from exc
        os.close(spec_r)
        os.close(out_w)
        writer = threading.Thread(target=_write_all, args=(spec_w, json.dumps(spec).encode()),
                                  daemon=True)
        writer.start()
        try:
            output = _read_until_eof(out_r, timeout + 30, MAX_OUTPUT)
            reply = _read_line(self.sock, time.monotonic() + 30)
            status = json.loads(reply)
            return output, bool(status["timed_out"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.close()
            raise OSError(str(exc)) from exc
        finally:
            os.close(out_r)
            writer.join(timeout=5)

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        self.sock.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to a pipe and close it (a child that never reads is no error)."""
    try:
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(data)
    except OSError:
        pass


def _read_until_eof(fd: int, seconds: float, limit: int) -> bytes:
    """Everything until the writer closes its end (at most ``limit`` bytes,
    more is an error), within ``seconds``."""
    deadline, chunks, size = time.monotonic() + seconds, [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise OSError("no answer from the verification process")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise OSError(f"the re-run wrote more than {limit} bytes of results")
        chunks.append(chunk)


def _read_line(sock: Any, deadline: float) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise OSError("no answer from the verification process")
        chunk = sock.recv(4096)
        if not chunk or len(buf) > 4096:
            raise OSError("the verification process ended")
        buf += chunk
    return buf


_ZYGOTES: list[Zygote] = []


_ZYGOTES_LOCK = threading.Lock()


def _zygote_for() -> Zygote:
    """An idle zygote, locked for the caller (new if none)."""
    with _ZYGOTES_LOCK:
        _ZYGOTES[:] = [z for z in _ZYGOTES if z.alive()]
        for z in _ZYGOTES:
            if z.lock.acquire(blocking=False):
                return z
        z = Zygote()
        z.lock.acquire()
        _ZYGOTES.append(z)
        return z


@atexit.register
def _close_zygotes() -> None:
    for z in _ZYGOTES:
        z.close()


def run_child(assignment: str, source: list[str], grade_ids: list[str],
              timeout: float = 60.0, root: pathlib.Path | None = None,
              seed: int = 0) -> dict[str, dict[str, Any]]:
    """Run the harness in a fresh (sandboxed, forked) interpreter; never raises.

    ``root`` is the course folder being graded (nothing of it is visible to
    graded code: the jail binds the ``course`` package only).
    """
    spec = {"assignment": assignment, "source": source, "grade_ids": grade_ids, "seed": seed,
            "step_seconds": max(2.0, min(STEP_SECONDS, timeout / 4))}
    crashed = "the re-run of your code crashed before reporting (did it exit the process?)"
    zygote = _zygote_for()
    try:
        output, timed_out = zygote.request(assignment[:2], spec, timeout)
        reason = f"timed out after {timeout:g} s (an infinite loop?)" if timed_out else crashed
    except OSError:
        output, reason = b"", crashed
    finally:
        zygote.lock.release()
    results = parse_results(output, grade_ids)
    if isinstance(results, str):
        return {gid: {"error": results} for gid in grade_ids}
    return {gid: results.get(gid, {"error": reason}) for gid in grade_ids}


if __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    _zygote(int(sys.argv[2]))
