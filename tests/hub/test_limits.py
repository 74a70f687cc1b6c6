"""The hub spawner's limits where no cgroup is writable (deploy/jupyterhub/sgd_limits.py).

The hub test (test_jupyterhub.py) checks the cgroup v1 limits on a real hub where this
machine has them; this checks the fallback, RLIMIT_AS, on a process started the way
LocalProcessSpawner starts a user's server (its preexec_fn: limits, then the user's uid).
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import types

import pytest

from tests.hub.conftest import ROOT

sys.path.insert(0, str(ROOT / "deploy" / "jupyterhub"))
import sgd_limits  # noqa: E402

CHILD = """
import os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
try:
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    raised = "raised"
except (ValueError, OSError):
    raised = "kept"
try:
    x = b"1" * (2 * {limit})
    got = "allocated"
except MemoryError:
    got = "MemoryError"
print(os.getuid(), soft, hard, raised, got)
"""


def test_without_cgroups_memory_is_an_address_space_limit_the_user_cannot_lift(monkeypatch, tmp_path):
    # a Python that nobody can run (the venv's may sit under /root)
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)), None)
    if os.geteuid() != 0 or python is None:
        pytest.skip("starts a process as nobody: run as root, with /usr/bin/python3")
    monkeypatch.setattr(sgd_limits, "CGROUP_ROOT", tmp_path)       # no cgroup here
    assert sgd_limits.limits_mode() == "rlimit"
    limit = 512 * 2**20
    spawner = sgd_limits.LimitedSpawner(user=types.SimpleNamespace(name="nobody"), mem_limit=limit)
    preexec = spawner.make_preexec_fn("nobody")
    proc = subprocess.run([python, "-I", "-c", CHILD.format(limit=limit)],
                          preexec_fn=preexec, cwd="/", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    uid, soft, hard, raised, got = proc.stdout.split()
    assert int(uid) == pwd.getpwnam("nobody").pw_uid
    assert int(soft) == int(hard) == limit
    assert (raised, got) == ("kept", "MemoryError")
