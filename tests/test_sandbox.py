"""The sandboxes of grading.

* The grading kernel's launcher (course/grading/kernel.py): its scratch folders do
  not pile up in /tmp (what a submission can do in the kernel is tested on
  the fixture class in test_autograde).
* The re-verification (course/grading/): children forked from a zygote
  have no capabilities (even when grading runs as root), cannot reach the
  zygote or plant modules for the next child, start clean, are killed at
  their deadline; a dead zygote is replaced.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest

from course.grading import encoding, jail, kernel, zygote


def test_scratch_of_ended_kernels_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    gone = tmp_path / f"{kernel.SCRATCH_PREFIX}{ended}-abc"
    alive = tmp_path / f"{kernel.SCRATCH_PREFIX}{os.getpid()}-def"
    other = tmp_path / f"{kernel.SCRATCH_PREFIX}notapid"
    for folder in (gone, alive, other):
        (folder / "work").mkdir(parents=True)
    assert kernel.sweep_scratch() == [gone]
    assert not gone.exists() and alive.exists() and other.exists()


def test_a_new_kernel_names_its_scratch_after_its_pid(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cwd = tmp_path / "submission"
    cwd.mkdir()
    conn = tmp_path / "kernel.json"
    conn.write_text(json.dumps({"transport": "ipc", "ip": str(tmp_path / "k"), "shell_port": 1,
                                "iopub_port": 2, "stdin_port": 3, "control_port": 4,
                                "hb_port": 5, "key": "x", "signature_scheme": "hmac-sha256"}))
    cmd = kernel.kernel_command(["-f", str(conn)], cwd)
    assert "ipykernel_launcher" in cmd
    (scratch,) = pathlib.Path(tmp_path).glob(f"{kernel.SCRATCH_PREFIX}*")
    assert scratch.name.startswith(f"{kernel.SCRATCH_PREFIX}{os.getpid()}-")


# ------------------------------------------- the re-verification's sandbox

LESSON = "01-gradient-descent"
SANDBOXED = jail.available()
needs_sandbox = pytest.mark.skipif(
    not SANDBOXED and os.environ.get("CI", "").lower() != "true",
    reason="bubblewrap missing: apt-get install bubblewrap (CI installs it)")


def _outcome(code: str, timeout: float = 30) -> float | str:
    """Run ``code`` as a submission's definitions in a re-verification child;
    it sets OUTCOME, which comes back through the lesson-01 probe of
    `derivative` (or the probe's error message)."""
    source = code + "\ndef derivative(w):\n    return OUTCOME + 0 * w\n"
    result = zygote.run_child(LESSON, [source], ["test_derivative"], timeout)["test_derivative"]
    if "ok" not in result:
        return str(result["error"])
    value = result["ok"]
    while isinstance(value, list):
        value = value[0]
    return float(encoding.decode_numeric(value).reshape(-1)[0])


@needs_sandbox
def test_graded_code_has_no_capabilities_even_as_root():
    """Without --cap-drop ALL, root in bubblewrap could remount / read-write."""
    code = ("OUTCOME = 0.0\nfor line in open('/proc/self/status'):\n"
            "    if line.startswith('CapEff:'):\n        OUTCOME = float(int(line.split()[1], 16))\n")
    assert _outcome(code) == 0.0
    proc = subprocess.run(jail.command(["sh", "-c", "mount -o remount,rw / 2>&1"]),
                          capture_output=True, text=True)
    assert proc.returncode != 0 and ("denied" in proc.stdout.lower()
                                     or "superuser" in proc.stdout.lower())


@needs_sandbox
def test_a_child_cannot_reach_the_process_it_was_forked_from():
    code = ("import os\ntry:\n    open(f'/proc/{os.getppid()}/mem', 'rb').close(); OUTCOME = 1.0\n"
            "except OSError:\n    OUTCOME = 2.0\n")
    assert _outcome(code) == 2.0


def test_a_child_cannot_plant_modules_for_the_next_one():
    plant = ("import os\nOUTCOME = 1.0\n"
             "for d in ('..', '.', os.environ.get('TMPDIR', '.')):\n"
             "    try:\n        open(os.path.join(d, 'planted_mod.py'), 'w').write('X = 5.0')\n"
             "    except OSError:\n        pass\n")
    assert _outcome(plant) == 1.0
    assert _outcome("try:\n    from planted_mod import X as OUTCOME\n"
                    "except ImportError:\n    OUTCOME = 3.0\n") == 3.0


def test_each_child_starts_clean():
    """What one child does to torch (seed, patched functions) is gone in the next."""
    assert _outcome("import torch\ntorch.manual_seed(123)\ntorch.ones = None\nOUTCOME = 1.0") == 1.0
    assert _outcome("import torch\nOUTCOME = 2.0 if torch.ones is not None and "
                    "torch.initial_seed() != 123 else -1.0") == 2.0


def test_a_child_past_its_deadline_is_killed_and_the_next_one_runs():
    stubborn = ("import time\nOUTCOME = 1.0\nwhile True:\n    try:\n        time.sleep(0.05)\n"
                "    except BaseException:\n        pass\n")
    assert "timed out after 3 s" in str(_outcome(stubborn, timeout=3))
    assert _outcome("OUTCOME = 4.0") == 4.0


def test_a_dead_zygote_is_replaced():
    assert _outcome("OUTCOME = 5.0") == 5.0
    for z in zygote._ZYGOTES:
        z.proc.kill()
        z.proc.wait()
    assert _outcome("OUTCOME = 6.0") == 6.0


def test_sweeping_races_with_another_kernel(tmp_path, monkeypatch):
    """Two kernels starting at once both sweep: a folder removed by the other
    one between the listing and the check is skipped, not an error."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    vanishing = tmp_path / f"{kernel.SCRATCH_PREFIX}999999999-gone"
    real_glob = pathlib.Path.glob

    def glob_then_vanish(self, pattern):
        found = list(real_glob(self, pattern))
        return found + [vanishing]                 # listed, but already removed
    monkeypatch.setattr(pathlib.Path, "glob", glob_then_vanish)
    assert kernel.sweep_scratch() == []


# ------------------------------------------------- the grading kernel's sandbox

def _kernel_installed() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager
    return kernel.KERNEL_NAME in KernelSpecManager().find_kernel_specs()


needs_kernel = pytest.mark.skipif(
    not (jail.available() and _kernel_installed()) and os.environ.get("CI", "").lower() != "true",
    reason="bubblewrap missing or sgd-sandbox kernel not installed "
           "(apt-get install bubblewrap; python -m course.grading.kernel --install)")


def _course(tmp_path: pathlib.Path) -> pathlib.Path:
    """A course folder with two autograded submissions, alice's and bob's."""
    root = tmp_path / "course"
    (root / "nbgrader_config.py").parent.mkdir()
    (root / "nbgrader_config.py").write_text("")
    for student in ("alice", "bob"):
        folder = root / "autograded" / student / "01-x"
        folder.mkdir(parents=True)
        (folder / "01-x.ipynb").write_text("{}")
        (folder / "data.txt").write_text(f"{student}'s data")
    (root / "solutions").mkdir()
    (root / "solutions" / "key.txt").write_text("answers")
    alice = root / "autograded" / "alice" / "01-x"
    (alice / "link").symlink_to(root / "solutions" / "key.txt")
    os.mkfifo(alice / "fifo")
    return root


class _Kernel:
    """A sandboxed kernel over ipc, as CourseExecute starts it."""

    def __init__(self, cwd: pathlib.Path):
        from jupyter_client.manager import KernelManager
        self.folder = tempfile.mkdtemp(prefix="sgd-ipc-")
        self.km = KernelManager(kernel_name=kernel.KERNEL_NAME, transport="ipc",
                                ip=os.path.join(self.folder, "k"))
        self.km.start_kernel(cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60) -> str:
        out = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
        self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        return "".join(out)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@needs_kernel
def test_the_kernel_sees_only_its_own_copy_and_no_token(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("FAKE_TOKEN", "tok-91c2")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-91c2")
    root = _course(tmp_path)
    bob = _Kernel(root / "autograded" / "bob" / "01-x")
    alice = _Kernel(root / "autograded" / "alice" / "01-x")
    try:
        bob_paths = [f"{bob.km.ip}-{p}" for p in bob.km.ports] + [
            bob.km.connection_file, bob.folder, str(root / "autograded" / "bob"),
            str(root / "solutions")]
        code = f"""
import json, os, sys, zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"")
for p in {bob_paths!r}:
    sub.connect("ipc://" + p)
sub.setsockopt(zmq.RCVTIMEO, 2000)
try:
    got = sub.recv_multipart()
except zmq.Again:
    got = None
os.write(1, b"ALICE-KERNEL-STDOUT\\n")
print(json.dumps({{"env": sorted(os.environ), "token": [v for v in os.environ.values()
                                                        if "91c2" in v],
                  "files": sorted(os.listdir(".")), "uid": os.getuid(),
                  "bob": [p for p in {bob_paths!r} if os.path.exists(p)],
                  "snooped": got is not None}}))
"""
        bob.run("import time\nfor i in range(30):\n    print('BOB-SECRET', i); time.sleep(0.1)",
                timeout=30)
        line = [ln for ln in alice.run(code).splitlines() if ln.startswith("{")][0]
        got = json.JSONDecoder().raw_decode(line)[0]   # ipykernel may forward fd 1 too
    finally:
        alice.close()
        bob.close()
    assert got["token"] == [] and "FAKE_TOKEN" not in got["env"]
    assert got["files"] == ["01-x.ipynb", "data.txt"]        # no symlink, no fifo
    assert got["bob"] == [] and not got["snooped"]
    if os.getuid() == 0:
        assert got["uid"] == jail.sandbox_ids()[0] != 0
    log = root / ".grading-logs" / "alice-01-x.log"
    assert "ALICE-KERNEL-STDOUT" in log.read_text()
    assert "ALICE-KERNEL-STDOUT" not in capfd.readouterr().err


def _notebook(*sources: str, graded: tuple[int, ...] = ()) -> Any:
    import nbformat
    nb = nbformat.v4.new_notebook()
    for i, src in enumerate(sources):
        cell = nbformat.v4.new_code_cell(src)
        if i in graded:
            cell.metadata["nbgrader"] = {"grade": True, "grade_id": f"test_{i}", "points": 1,
                                         "solution": False, "locked": True}
        nb.cells.append(cell)
    return nb


def _execute(nb, cwd: pathlib.Path, **traits) -> float:
    from traitlets.config import Config
    from course.grading.nbgrader_plugin import CourseExecute
    config = Config()
    config.KernelManager.transport = "ipc"
    ex = CourseExecute(config=config, kernel_name=kernel.KERNEL_NAME, **traits)
    start = time.monotonic()
    ex.preprocess(nb, {"metadata": {"path": str(cwd)}})
    return time.monotonic() - start


def _enames(cell) -> list[str]:
    return [o.get("ename") for o in cell.outputs if o.output_type == "error"]


@needs_kernel
def test_a_cell_that_ignores_interrupts_stops_its_kernel_and_grading_goes_on(tmp_path):
    root = _course(tmp_path)
    nb = _notebook("x = 1", "assert x == 1",
                   "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n"
                   "    pass",
                   "assert x == 1", "print('after')", graded=(1, 3))
    seconds = _execute(nb, root / "autograded" / "alice" / "01-x", timeout=3)
    assert _enames(nb.cells[1]) == []
    assert _enames(nb.cells[2]) == ["KernelStopped"]
    assert _enames(nb.cells[3]) == ["NotRun"] and _enames(nb.cells[4]) == ["NotRun"]
    assert seconds < 30


@needs_kernel
def test_a_thread_printing_forever_does_not_leave_the_notebook_ungraded(tmp_path):
    root = _course(tmp_path)
    nb = _notebook("x = 1", "assert x == 1",
                   "import threading, sys\ndef spam():\n    while True:\n"
                   "        sys.stdout.write('spam ' * 2000 + '\\n')\n"
                   "threading.Thread(target=spam, daemon=True).start()",
                   "import time\ntime.sleep(1)\nassert x == 1", "print('after')", graded=(1, 3))
    seconds = _execute(nb, root / "autograded" / "alice" / "01-x", timeout=5)
    assert _enames(nb.cells[1]) == []
    stopped = [i for i, c in enumerate(nb.cells) if "KernelStopped" in _enames(c)]
    assert all("NotRun" in _enames(c) for c in nb.cells[stopped[0] + 1:]) if stopped else True
    assert seconds < 60


@needs_kernel
def test_the_notebook_time_budget_cuts_the_rest(tmp_path):
    root = _course(tmp_path)
    nb = _notebook("import time", *["time.sleep(2)"] * 5, "assert True", graded=(6,))
    seconds = _execute(nb, root / "autograded" / "alice" / "01-x", timeout=60,
                       notebook_timeout=8)
    assert seconds < 20
    assert _enames(nb.cells[-1]) == ["NotRun"]
    assert _enames(nb.cells[1]) == []
