"""A Jupyter kernel that runs a submission inside a bubblewrap sandbox.

nbgrader's autograder executes each submission in a kernel started in the
submission's own folder (``autograded/<student>/<assignment>``). This
launcher starts the ordinary IPython kernel under ``bwrap`` so that the
submission's code sees a read-only file system, may write only to its own
folder and a private ``/tmp``, and cannot see the solutions, the gradebook or
any other student's work. Where bubblewrap is missing it starts the plain
kernel and says so on stderr (see README, "What protection holds where").

    python -m course.sandbox --install     # register the "sgd-sandbox" kernel
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tempfile

from jupyter_core.paths import jupyter_runtime_dir

from course.verify import course_secrets, sandbox_prefix

KERNEL_NAME = "sgd-sandbox"


def course_root(start: pathlib.Path) -> pathlib.Path | None:
    """The nearest folder above ``start`` holding ``nbgrader_config.py``."""
    for folder in (start, *start.parents):
        if (folder / "nbgrader_config.py").is_file():
            return folder
    return None


SCRATCH_PREFIX = "sgd-sandbox-"


def sweep_scratch() -> list[pathlib.Path]:
    """Remove the scratch folders of earlier sandboxed kernels that have ended.

    A kernel's launcher execs bubblewrap and cannot clean up after it, so each
    new kernel removes the folders (named after their kernel's pid) of this
    user's kernels that are gone.
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


def kernel_command(argv: list[str], cwd: pathlib.Path) -> list[str]:
    """bwrap + ipykernel command line for a kernel started in ``cwd``.

    The kernel works on a private copy of its folder (so nothing it writes,
    symlinks included, reaches the grader's files), in its own pid namespace
    (no process outlives it or spies on other kernels), with the course's and
    the package's secrets, the Jupyter runtime folder (other kernels'
    connection files, server tokens) and ~/.ssh hidden.
    """
    root = course_root(cwd)
    try:
        sweep_scratch()
    except Exception:  # noqa: BLE001 - housekeeping must never stop a kernel from starting
        pass
    # exec keeps the pid: the folder's name says which kernel it belongs to
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    work = scratch / "work"
    shutil.copytree(cwd, work, symlinks=True)
    runtime = pathlib.Path(jupyter_runtime_dir()).resolve()
    hidden = course_secrets() + (course_secrets(root) if root else []) + [
        runtime, pathlib.Path.home() / ".ssh"]
    prefix = sandbox_prefix(hidden, scratch)
    kernel = [sys.executable, "-m", "ipykernel_launcher", *argv]
    if not prefix:
        print("course.sandbox: bubblewrap unavailable, kernel NOT sandboxed", file=sys.stderr)
        return kernel
    # The kernel talks over loopback TCP: keep the network. Interrupts come as
    # messages (kernelspec). JPY_PARENT_PID=1 tells ipykernel it has a parent
    # (no "To connect another client" banner) without making it watch a pid
    # that its own pid namespace cannot see.
    prefix = [a for a in prefix if a != "--unshare-net"]
    binds = ["--bind", str(work), str(cwd), "--chdir", str(cwd), "--setenv", "JPY_PARENT_PID", "1"]
    if "-f" in argv:
        conn = str(pathlib.Path(argv[argv.index("-f") + 1]).resolve())
        binds += ["--ro-bind", conn, conn]
    for var in ("TMPDIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        binds += ["--setenv", var, str(scratch)]
    return prefix + binds + kernel


def install(prefix: str = sys.prefix) -> pathlib.Path:
    """Write the kernelspec into ``<prefix>/share/jupyter/kernels/sgd-sandbox``."""
    folder = pathlib.Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    # Loopback TCP without CurveZMQ is fine here (messages are signed with the
    # key in the grader's private connection file): keep ipykernel's warning
    # about it out of the instructor's terminal.
    spec = {"argv": [sys.executable, "-m", "course.sandbox", "-f", "{connection_file}",
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
    cmd = kernel_command(sys.argv[1:], pathlib.Path.cwd().resolve())
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
