"""The grading kernel's launcher (course/sandbox.py): its scratch folders do
not pile up in /tmp (the kernel's own behaviour is tested in test_autograde)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

from course import sandbox


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
