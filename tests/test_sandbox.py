"""The sandboxes of grading.

* The grading kernel's launcher (course/sandbox.py): its scratch folders do
  not pile up in /tmp (what a submission can do in the kernel is tested on
  the fixture class in test_autograde).
* The re-verification (course/verify.py): children forked from a zygote
  have no capabilities (even when grading runs as root), cannot reach the
  zygote or plant modules for the next child, start clean, are killed at
  their deadline; a dead zygote is replaced.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

from course import sandbox, verify


def test_scratch_of_ended_kernels_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    gone = tmp_path / f"{sandbox.SCRATCH_PREFIX}{ended}-abc"
    alive = tmp_path / f"{sandbox.SCRATCH_PREFIX}{os.getpid()}-def"
    other = tmp_path / f"{sandbox.SCRATCH_PREFIX}notapid"
    for folder in (gone, alive, other):
        (folder / "work").mkdir(parents=True)
    assert sandbox.sweep_scratch() == [gone]
    assert not gone.exists() and alive.exists() and other.exists()


def test_a_new_kernel_names_its_scratch_after_its_pid(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cwd = tmp_path / "submission"
    cwd.mkdir()
    cmd = sandbox.kernel_command(["-f", str(tmp_path / "kernel.json")], cwd)
    assert "ipykernel_launcher" in cmd
    (scratch,) = pathlib.Path(tmp_path).glob(f"{sandbox.SCRATCH_PREFIX}*")
    assert scratch.name.startswith(f"{sandbox.SCRATCH_PREFIX}{os.getpid()}-")


# ------------------------------------------- the re-verification's sandbox

LESSON = "01-gradient-descent"
SANDBOXED = bool(verify.sandbox_prefix([]))
needs_sandbox = pytest.mark.skipif(
    not SANDBOXED and os.environ.get("CI", "").lower() != "true",
    reason="bubblewrap missing: apt-get install bubblewrap (CI installs it)")


def _outcome(code: str, timeout: float = 30) -> float | str:
    """Run ``code`` as a submission's definitions in a re-verification child;
    it sets OUTCOME, which comes back through the lesson-01 probe of
    `derivative` (or the probe's error message)."""
    source = code + "\ndef derivative(w):\n    return OUTCOME + 0 * w\n"
    result = verify.run_child(LESSON, [source], ["test_derivative"], timeout)["test_derivative"]
    if "ok" not in result:
        return str(result["error"])
    value = result["ok"]
    while isinstance(value, list):
        value = value[0]
    return float(verify._decode_numeric(value).reshape(-1)[0])


@needs_sandbox
def test_graded_code_has_no_capabilities_even_as_root():
    """Without --cap-drop ALL, root in bubblewrap could remount / read-write."""
    code = ("OUTCOME = 0.0\nfor line in open('/proc/self/status'):\n"
            "    if line.startswith('CapEff:'):\n        OUTCOME = float(int(line.split()[1], 16))\n")
    assert _outcome(code) == 0.0
    proc = subprocess.run(verify.sandbox_prefix([]) + ["sh", "-c", "mount -o remount,rw / 2>&1"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "denied" in proc.stdout.lower()


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
    for pool in verify._ZYGOTES.values():
        for z in pool:
            z.proc.kill()
            z.proc.wait()
    assert _outcome("OUTCOME = 6.0") == 6.0


def test_sweeping_races_with_another_kernel(tmp_path, monkeypatch):
    """Two kernels starting at once both sweep: a folder removed by the other
    one between the listing and the check is skipped, not an error."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    vanishing = tmp_path / f"{sandbox.SCRATCH_PREFIX}999999999-gone"
    real_glob = pathlib.Path.glob

    def glob_then_vanish(self, pattern):
        found = list(real_glob(self, pattern))
        return found + [vanishing]                 # listed, but already removed
    monkeypatch.setattr(pathlib.Path, "glob", glob_then_vanish)
    assert sandbox.sweep_scratch() == []
