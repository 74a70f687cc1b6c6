"""Per-user memory and CPU limits for the hub's local spawner.

JupyterHub's LocalProcessSpawner ignores ``Spawner.mem_limit`` and ``Spawner.cpu_limit``
(it only passes them to the server as MEM_LIMIT / CPU_LIMIT). ``LimitedSpawner`` applies
them, in the spawned process before it drops root for the user's uid, so that the user
cannot lift them:

* **cgroup v1** (a writable ``memory`` hierarchy, and ``cpu`` for the CPU limit): each
  user's server and everything it starts (kernels, terminals) run in the cgroup
  ``<the hub's own cgroup>/sgd-hub/<user>``: ``memory.limit_in_bytes`` = mem_limit (past it
  the kernel's OOM killer kills the biggest process of that user, no one else's),
  ``cpu.cfs_quota_us`` = cpu_limit x ``cpu.cfs_period_us``.
* **otherwise** (cgroup v2, or no writable cgroups): ``RLIMIT_AS`` = mem_limit on the
  server and each process it starts (inherited): an allocation past it fails
  (MemoryError in Python) instead of the process being killed. It limits address space
  per process, not memory per user, and nothing limits CPU. On a systemd host use
  jupyterhub-systemdspawner instead (deploy/jupyterhub/README.md, "Limits").

``limits_mode()`` says which applies (the hub logs it at start).
"""

from __future__ import annotations

import os
import pathlib
import resource

from jupyterhub.spawner import LocalProcessSpawner

CGROUP_ROOT = pathlib.Path(os.environ.get("SGDHUB_CGROUP_ROOT", "/sys/fs/cgroup"))


def _own_cgroup_v1(controller: str) -> pathlib.Path | None:
    """The writable v1 hierarchy folder of this process's cgroup for ``controller``."""
    try:
        lines = pathlib.Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            for mount in (CGROUP_ROOT / controller, CGROUP_ROOT / controllers):
                folder = mount / path.lstrip("/")
                if (folder / "cgroup.procs").exists() and os.access(folder, os.W_OK):
                    return folder
    return None


def limits_mode() -> str:
    """``"cgroup-v1"`` where this hub can make memory cgroups, else ``"rlimit"``."""
    return "cgroup-v1" if _own_cgroup_v1("memory") is not None else "rlimit"


def user_cgroups(name: str) -> dict[str, pathlib.Path]:
    """The v1 cgroup folders (by controller) of ``name``'s server; none without cgroup v1."""
    groups = {}
    for controller in ("memory", "cpu"):
        own = _own_cgroup_v1(controller)
        if own is not None:
            groups[controller] = own / "sgd-hub" / name
    return groups


class LimitedSpawner(LocalProcessSpawner):
    """LocalProcessSpawner that enforces ``mem_limit`` and ``cpu_limit`` (see the module)."""

    def _prepare_cgroups(self, name: str) -> list[pathlib.Path]:
        """Make (or reuse) the user's cgroups with the limits; return their folders."""
        folders = []
        for controller, folder in user_cgroups(name).items():
            if controller == "memory" and self.mem_limit:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "memory.limit_in_bytes").write_text(str(int(self.mem_limit)))
                swap = folder / "memory.memsw.limit_in_bytes"   # no escape into swap
                if swap.exists():
                    try:
                        swap.write_text(str(int(self.mem_limit)))
                    except OSError:
                        pass
                folders.append(folder)
            elif controller == "cpu" and self.cpu_limit:
                folder.mkdir(parents=True, exist_ok=True)
                period = int((folder / "cpu.cfs_period_us").read_text())
                (folder / "cpu.cfs_quota_us").write_text(str(int(self.cpu_limit * period)))
                folders.append(folder)
        return folders

    def make_preexec_fn(self, name):
        become_user = super().make_preexec_fn(name)
        folders = self._prepare_cgroups(name) if limits_mode() == "cgroup-v1" else []
        rlimit = int(self.mem_limit) if self.mem_limit and not folders else None
        self.log.info("Limits for %s: memory %s, CPU %s, by %s", name, self.mem_limit or "none",
                      self.cpu_limit or "none",
                      ", ".join(map(str, folders)) or ("RLIMIT_AS" if rlimit else "nothing"))

        def preexec():  # in the child, still root: the user cannot undo what happens here
            for folder in folders:
                (folder / "cgroup.procs").write_text(str(os.getpid()))
            if rlimit:
                resource.setrlimit(resource.RLIMIT_AS, (rlimit, rlimit))
            become_user()

        return preexec

    async def stop(self, now=False):
        await super().stop(now=now)
        for folder in user_cgroups(self.user.name).values():
            try:
                folder.rmdir()              # only when empty: a leftover kernel keeps it
            except OSError:
                pass
