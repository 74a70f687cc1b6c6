"""A Jupyter kernel that runs a submission inside the course's sandbox.

nbgrader's autograder executes each submission in a kernel started in the
submission's own folder (``autograded/<student>/<assignment>``). This
launcher starts the ordinary IPython kernel in the allow-list sandbox of
:mod:`course.grading.jail`:

* the kernel works on a private copy of its folder (regular files and
  folders only: no symlink, fifo or device of the submission is copied), the
  only writable place besides its private /tmp and $HOME; it sees no other
  course folder, no other submission, not the grader's home nor the Jupyter
  runtime folder (other kernels' connection files and sockets);
* no network at all, when the client uses Jupyter's ``ipc`` transport (the
  course's nbgrader configuration does): the launcher gives the kernel a
  private socket folder, bound into this sandbox only, and rewrites the
  connection file for the kernel so that its sockets are created there; the
  paths the client expects (``<ip>-<port>``) become symlinks to those
  sockets. No other kernel can reach them (with ``tcp`` the kernel has to
  keep the host's loopback network: a warning says so);
* a clean environment (no token of the grader's), never root, resource
  limits (:class:`course.grading.jail.Limits`);
* the kernel's own stdout and stderr go to
  ``<course>/.grading-logs/<student>-<assignment>.log``, never the grader's
  terminal.

Where bubblewrap is missing it starts the plain kernel and says so on stderr
(README, "What protection holds where").

    python -m course.grading.kernel --install     # register the "sgd-sandbox" kernel
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import sys
import tempfile

from course.grading import jail

KERNEL_NAME = "sgd-sandbox"
SCRATCH_PREFIX = "sgd-sandbox-"
LOG_FOLDER = ".grading-logs"
#: Variables of the grader's environment the kernel may see (besides the jail's own).
PASSED_ENV = ("NBGRADER_EXECUTION", "NBGRADER_VALIDATING")


def course_root(start: pathlib.Path) -> pathlib.Path | None:
    """The nearest folder above ``start`` holding ``nbgrader_config.py``."""
    for folder in (start, *start.parents):
        if (folder / "nbgrader_config.py").is_file():
            return folder
    return None


def sweep_scratch() -> list[pathlib.Path]:
    """Remove the scratch folders of earlier sandboxed kernels that have ended.

    A kernel's launcher execs the sandbox and cannot clean up after it, so
    each new kernel removes the folders (named after their kernel's pid) of
    this user's kernels that are gone.
    """
    removed = []
    for folder in pathlib.Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-")[0]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
            continue                            # its kernel is still running
        except ProcessLookupError:
            pass                                # ended: remove its folder
        except OSError:
            continue       # someone else's live process, or another kernel swept it first
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def private_copy(src: pathlib.Path, dest: pathlib.Path, budget: list[int] | None = None) -> None:
    """Copy the regular files and folders of ``src`` into the new folder ``dest``.

    Symlinks, fifos, sockets and devices are left out, and nothing is
    followed: what the kernel finds in its folder is plain data. At most
    2000 entries and 1 GiB are copied (``budget``).
    """
    budget = budget if budget is not None else [2000, 1 << 30]
    dest.mkdir(mode=0o755)
    with os.scandir(src) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if budget[0] <= 0:
                return
            budget[0] -= 1
            if entry.is_dir(follow_symlinks=False):
                private_copy(pathlib.Path(entry.path), dest / entry.name, budget)
            elif entry.is_file(follow_symlinks=False):
                try:
                    fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:
                    continue
                with open(fd, "rb") as fin:
                    info = os.fstat(fin.fileno())
                    if not stat.S_ISREG(info.st_mode) or info.st_size > budget[1]:
                        continue
                    budget[1] -= info.st_size
                    with open(dest / entry.name, "xb") as fout:
                        shutil.copyfileobj(fin, fout)


def _seed_font_cache(folder: pathlib.Path) -> None:
    """Copy matplotlib's font list into the kernel's config dir (saves a rebuild)."""
    try:        # matplotlib.get_cachedir(), without importing matplotlib (0.5 s)
        cache = pathlib.Path(os.environ.get("MPLCONFIGDIR") or pathlib.Path(
            os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "matplotlib")
        for cached in cache.glob("fontlist-*.json"):
            shutil.copy(cached, folder / cached.name)
    except Exception:  # noqa: BLE001 - only an optimisation
        pass


def _connection(argv: list[str], ipc: pathlib.Path) -> tuple[list[str], bool]:
    """The kernel's arguments with its own connection file, and whether the
    kernel needs the network (tcp transport).

    With ``ipc``: the kernel's copy of the connection file puts its sockets
    in ``ipc`` (bound into this sandbox only); the paths the client connects
    to become symlinks to them.
    """
    if "-f" not in argv:
        return argv, False
    i = argv.index("-f") + 1
    info = json.loads(pathlib.Path(argv[i]).read_text())
    mine = ipc / "kernel.json"
    network = info.get("transport", "tcp") != "ipc"
    if not network:
        ports = [info[k] for k in ("shell_port", "iopub_port", "stdin_port", "control_port",
                                   "hb_port")]
        client = info["ip"]
        for port in ports:
            link = pathlib.Path(f"{client}-{port}")
            if link.is_symlink() or link.is_socket():
                link.unlink()
            link.symlink_to(ipc / f"k-{port}")
        info = dict(info, ip=str(ipc / "k"))
    fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w") as fh:
        json.dump(info, fh)
    return argv[:i] + [str(mine)] + argv[i + 1:], network


def kernel_command(argv: list[str], cwd: pathlib.Path) -> list[str]:
    """The sandboxed ipykernel command line for a kernel started in ``cwd``
    (the plain kernel where the sandbox is unavailable)."""
    kernel = [sys.executable, "-m", "ipykernel_launcher", *argv]
    if not jail.available():
        print("course.grading.kernel: bubblewrap unavailable, kernel NOT sandboxed", file=sys.stderr)
        return kernel
    try:
        sweep_scratch()
    except Exception:  # noqa: BLE001 - housekeeping must never stop a kernel from starting
        pass
    # exec keeps the pid: the folder's name says which kernel it belongs to
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    work, ipc, mpl = scratch / "work", scratch / "ipc", scratch / "mpl"
    private_copy(cwd, work)
    ipc.mkdir(mode=0o700)
    mpl.mkdir(mode=0o700)
    _seed_font_cache(mpl)
    argv, network = _connection(argv, ipc)
    if network:
        print("course.grading.kernel: tcp transport, the kernel keeps the host's network; "
              "use c.KernelManager.transport = 'ipc'", file=sys.stderr)
    jail.prepare(work, ipc, mpl)
    env = {"JPY_PARENT_PID": "1", "MPLCONFIGDIR": str(mpl), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    env.update({k: os.environ[k] for k in PASSED_ENV if k in os.environ})
    # The copy is mounted where the submission was: the notebook sees its usual path.
    return jail.command([sys.executable, "-m", "ipykernel_launcher", *argv],
                        rw=[(work, cwd), ipc, mpl], env=env, cwd=cwd, network=network)


def log_path(cwd: pathlib.Path) -> pathlib.Path | None:
    """``<course>/.grading-logs/<student>-<assignment>.log`` for a kernel
    started in ``<course>/autograded/<student>/<assignment>``, else None."""
    root = course_root(cwd)
    if root is None:
        return None
    parts = cwd.relative_to(root).parts
    if len(parts) != 3 or parts[0] != "autograded":
        return None
    return root / LOG_FOLDER / f"{parts[1]}-{parts[2]}.log"


def redirect_output(cwd: pathlib.Path) -> None:
    """Send this process's (and so the kernel's) stdout and stderr to its log."""
    path = log_path(cwd)
    if path is None:
        return
    try:
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def install(prefix: str = sys.prefix) -> pathlib.Path:
    """Write the kernelspec into ``<prefix>/share/jupyter/kernels/sgd-sandbox``."""
    folder = pathlib.Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "course.grading.kernel", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=ERROR"],
            "display_name": "Python 3 (grading sandbox)", "language": "python",
            # interrupts go over the control channel: a SIGINT to the process
            # group would stop bubblewrap, and the kernel with it
            "interrupt_mode": "message",
            "metadata": {"debugger": False}}
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


def main() -> None:
    """Install the kernelspec, or exec the sandboxed kernel."""
    if sys.argv[1:] == ["--install"]:
        print(f"installed kernel {KERNEL_NAME!r} in {install()}")
        return
    cwd = pathlib.Path.cwd().resolve()
    redirect_output(cwd)
    cmd = kernel_command(sys.argv[1:], cwd)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
