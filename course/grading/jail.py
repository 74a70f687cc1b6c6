"""One allow-list sandbox (bubblewrap) for all graded code.

Both places that run a submission's code use it: the grading kernel
(:mod:`course.grading.kernel`) and the re-verification zygote (:mod:`course.grading`).

    from course.grading import jail
    if jail.available():
        cmd = jail.command([sys.executable, "-m", "mod"], rw=[scratch], cwd=scratch,
                           env={"MPLCONFIGDIR": str(scratch)})
        jail.prepare(scratch)            # make the rw folders usable by the sandbox user
        subprocess.Popen(cmd, ...)       # or os.execv(cmd[0], cmd)

``command(argv, *, rw=(), ro=(), env=None, cwd=None, network=False, limits=None)``
returns a plain argument list (no file descriptors to pass on): ``prlimit``
(resource limits) → ``bwrap`` → (as root) ``setpriv`` → ``argv``. Inside:

* **Files, by allow-list.** A fresh root with only ``/usr`` and the host's
  ``/bin``, ``/sbin``, ``/lib*`` links (or folders), a minimal ``/etc``
  (``ld.so.cache``, ``localtime``, ``fonts``, and a generated ``passwd`` and
  ``group`` naming the sandbox user: no ``shadow``, no ``ssh``), the Python
  install (``sys.base_prefix``), the virtualenv (``sys.prefix``) and the
  ``course`` package folder (never the repo's ``solutions/``, ``tests/`` or
  ``.git``), all read-only; ``ro`` read-only and ``rw`` read-write, each at
  its own path; a private ``/tmp``, ``/dev/shm`` and empty ``$HOME``
  (size-limited tmpfs); a new ``/proc`` and a minimal ``/dev``.
* **Namespaces.** Own pid, ipc (SysV shared memory is private and dies with
  the sandbox), uts, cgroup and (with ``network=False``, the default) network
  namespace: no interface but an unconfigured loopback, so nothing outside
  is reachable, loopback servers of the host included.
* **Environment.** Cleared: only PATH, HOME, LANG/LC_ALL, TMPDIR and what
  ``env`` gives (a value of ``None`` removes a default).
* **Privileges.** ``--cap-drop ALL``, ``--new-session`` (no controlling
  terminal: nothing reaches the grader's terminal), ``--die-with-parent``.
  Never root: run as root, bubblewrap sets up the mounts as root and
  ``setpriv`` then drops to the unprivileged sandbox user (``sgd-grader``,
  created with ``useradd`` when missing, else ``nobody``) with no
  capabilities left, before any graded code runs. Run as another user, the
  code runs as that user inside an unprivileged user namespace.
* **Resource limits** (:class:`Limits`, from ``COURSE_JAIL_*`` variables):
  memory (RLIMIT_DATA, and RLIMIT_AS with room for the libraries' address
  space), processes and threads (RLIMIT_NPROC: counted per uid, so as root
  per sandbox user, otherwise on top of what the user already runs), file
  size (RLIMIT_FSIZE), open files, no core dumps.

:func:`prepare` gives the ``rw`` folders to the sandbox user (when root).
:func:`available` says whether bubblewrap works here; where it does not the
callers keep running unsandboxed with a warning (README, "What protection
holds where").
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile
from typing import Iterable, Mapping

SANDBOX_USER = "sgd-grader"
#: Where $HOME is inside (an empty, private tmpfs).
HOME = "/home/sandbox"
GiB, MiB = 1 << 30, 1 << 20


def _size(text: str) -> int:
    """'4G', '512M', '1024' -> bytes."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = {"K": 1 << 10, "M": MiB, "G": GiB}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * factor)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox (each a process's own limit; RLIMIT_NPROC
    counts every process and thread of the sandbox's uid).

    ``memory`` caps RLIMIT_DATA (every private writable mapping: the heap,
    numpy and torch buffers, touched or not), ``address_space`` RLIMIT_AS
    (which also counts shared mappings, libraries and reserved thread
    arenas). Measured: lesson 07, the heaviest, peaks at 0.46 GiB resident,
    0.5 GiB of data and 1.1 GiB of address space (run as a script); an idle
    sandboxed kernel maps 0.8 GiB.
    """

    memory: int = 4 * GiB
    address_space: int = 8 * GiB
    processes: int = 256
    file_size: int = 256 * MiB
    open_files: int = 1024
    tmp_size: int = 512 * MiB          # /tmp, /dev/shm and $HOME (tmpfs, in RAM)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Limits":
        """Defaults, overridden by COURSE_JAIL_MEMORY=6G, COURSE_JAIL_ADDRESS_SPACE,
        COURSE_JAIL_PROCESSES, COURSE_JAIL_FILE_SIZE, COURSE_JAIL_OPEN_FILES,
        COURSE_JAIL_TMP_SIZE."""
        values = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(f"COURSE_JAIL_{field.name.upper()}")
            if raw:
                values[field.name] = (int(raw) if field.name in ("processes", "open_files")
                                      else _size(raw))
        return cls(**values)


# ----------------------------------------------------------------- the sandbox user

@functools.lru_cache(maxsize=None)
def sandbox_ids() -> tuple[int, int, str]:
    """(uid, gid, name) graded code runs as: the grader itself unless root;
    as root the dedicated ``sgd-grader`` (created if missing), else nobody."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name
    for attempt in range(2):
        try:
            entry = pwd.getpwnam(SANDBOX_USER)
            return entry.pw_uid, entry.pw_gid, SANDBOX_USER
        except KeyError:
            pass
        if attempt == 0 and shutil.which("useradd"):
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                            SANDBOX_USER], capture_output=True)
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid, "nobody"
    except KeyError:
        return 65534, 65534, "nobody"


def prepare(*folders: os.PathLike | str) -> None:
    """Give ``folders`` (and everything in them) to the sandbox user, so that
    graded code can write there when grading runs as root. Symlinks are not
    followed."""
    if os.getuid() != 0:
        return
    uid, gid, _ = sandbox_ids()
    for folder in folders:
        folder = pathlib.Path(folder)
        os.chown(folder, uid, gid, follow_symlinks=False)
        for path in folder.rglob("*"):
            os.chown(path, uid, gid, follow_symlinks=False)


def _etc_files() -> pathlib.Path:
    """A folder with the sandbox's passwd and group (written once per grader,
    checked to be the grader's own and writable by nobody else)."""
    uid, gid, name = sandbox_ids()
    passwd = (f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
              f"{name}:x:{uid}:{gid}:graded code:{HOME}:/usr/sbin/nologin\n"
              f"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    group = f"root:x:0:\n{name}:x:{gid}:\nnogroup:x:65534:\n"
    folder = pathlib.Path(tempfile.gettempdir()) / f"sgd-jail-etc-{os.getuid()}-{uid}"
    try:
        folder.mkdir(mode=0o755, exist_ok=True)
        st = folder.lstat()
        ok = (st.st_uid == os.getuid() and not folder.is_symlink() and not st.st_mode & 0o022)
        if ok and (folder / "passwd").is_file() and (folder / "passwd").read_text() == passwd \
                and (folder / "group").read_text() == group:
            return folder
    except OSError:
        ok = False
    if not ok:
        folder = pathlib.Path(tempfile.mkdtemp(prefix="sgd-jail-etc-"))
        folder.chmod(0o755)
    for fname, text in (("passwd", passwd), ("group", group)):
        tmp = folder / f".{fname}.{os.getpid()}"
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, folder / fname)
    return folder


# ----------------------------------------------------------------- the command

def course_package() -> pathlib.Path:
    """The ``course`` package folder (what the editable install maps)."""
    return pathlib.Path(__file__).resolve().parents[1]


def python_paths() -> list[pathlib.Path]:
    """What the interpreter needs read-only: its install, the venv, the course package."""
    paths = [pathlib.Path(sys.base_prefix).resolve(), pathlib.Path(sys.prefix).resolve(),
             course_package()]
    exe = pathlib.Path(sys.executable).resolve()
    if not any(exe.is_relative_to(p) for p in paths):
        paths.append(exe)
    return paths


#: Host paths bound read-only when they exist (besides /usr and the python_paths).
ETC = ("/etc/ld.so.cache", "/etc/localtime", "/etc/fonts", "/etc/nsswitch.conf")


def _ancestors(paths: Iterable[str]) -> list[str]:
    """Every proper ancestor folder of ``paths`` (outside /usr), parents first."""
    seen: dict[str, None] = {}
    for path in paths:
        parts = pathlib.PurePosixPath(path).parents
        for parent in reversed(parts):
            p = str(parent)
            if p not in ("/", "/usr") and not p.startswith("/usr/"):
                seen.setdefault(p)
    return list(seen)


def _pairs(binds: Iterable) -> list[tuple[str, str]]:
    out = []
    for item in binds:
        src, dest = item if isinstance(item, tuple) else (item, item)
        out.append((str(pathlib.Path(src).resolve()), str(pathlib.PurePosixPath(dest))))
    return out


def command(argv: list[str], *, rw: Iterable = (), ro: Iterable = (),
            env: Mapping[str, str | None] | None = None,
            cwd: os.PathLike | str | None = None, network: bool = False,
            limits: Limits | None = None) -> list[str]:
    """The command line that runs ``argv`` in the sandbox (see the module doc).

    Args:
        argv: the program and its arguments (an absolute path, or a name on
            the sandbox's PATH: the venv's bin, /usr/bin, /bin).
        rw: host folders (or files) bound read-write at their own path, or
            ``(host path, path inside)`` pairs.
        ro: the same, read-only.
        env: variables to set (``None`` removes one of the defaults).
        cwd: the working folder inside (default: $HOME).
        network: keep the host's network (default: none at all).
        limits: resource limits (default: :meth:`Limits.from_env`).
    """
    limits = limits or Limits.from_env()
    root = os.getuid() == 0
    uid, gid, name = sandbox_ids()
    rw, ro = _pairs(rw), _pairs(ro)
    python = [(str(p), str(p)) for p in python_paths()]
    tmp = str(limits.tmp_size)

    args = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session",
            "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "sandbox"]
    if not network:
        args.append("--unshare-net")
    if root:
        # Mounts are set up as root (so the Python install may live in /root),
        # then setpriv drops to the sandbox user: keep only what it needs.
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP"]
    else:
        args += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    args += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "01777", "--size", tmp, "--tmpfs", "/tmp",
             "--perms", "01777", "--size", tmp, "--tmpfs", "/dev/shm"]
    binds = [dest for _, dest in python + ro + rw]
    for folder in _ancestors(binds + [HOME, "/etc/passwd"]):
        args += ["--perms", "0755", "--dir", folder]
    args += ["--perms", "0700" if not root else "0777", "--size", tmp, "--tmpfs", HOME]
    for path in ETC:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    etc = _etc_files()
    args += ["--ro-bind", str(etc / "passwd"), "/etc/passwd",
             "--ro-bind", str(etc / "group"), "/etc/group"]
    for src, dest in python + ro:
        args += ["--ro-bind", src, dest]
    for src, dest in rw:
        args += ["--bind", src, dest]
    base_env = {"PATH": os.pathsep.join([str(pathlib.Path(sys.prefix) / "bin"), "/usr/bin",
                                         "/bin"]),
                "HOME": HOME, "USER": name, "LOGNAME": name, "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp"}
    base_env.update(env or {})
    args.append("--clearenv")
    for key, value in base_env.items():
        if value is not None:
            args += ["--setenv", key, str(value)]
    args += ["--chdir", str(cwd or HOME)]
    if root:
        args += ["--", shutil.which("setpriv") or "/usr/bin/setpriv",
                 f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all"]
    args += ["--", *argv]

    nproc = limits.processes
    if not root:
        nproc += _tasks_of(os.getuid())        # RLIMIT_NPROC counts the user's other tasks too
    prlimit = [shutil.which("prlimit") or "/usr/bin/prlimit",
               f"--data={limits.memory}", f"--as={limits.address_space}",
               f"--nproc={nproc}", f"--fsize={limits.file_size}", "--core=0",
               f"--nofile={limits.open_files}", "--"]
    return prlimit + args


def _tasks_of(uid: int) -> int:
    """How many tasks (threads included) ``uid`` runs now."""
    count = 0
    for status in pathlib.Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 ").split()[0]) == uid:
            count += int(fields.get("Threads", "1"))
    return count


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True if the sandbox works here (bubblewrap, prlimit and, as root,
    setpriv installed; namespaces allowed) and COURSE_NO_SANDBOX is unset."""
    if os.environ.get("COURSE_NO_SANDBOX"):
        return False
    needed = ["bwrap", "prlimit"] + (["setpriv"] if os.getuid() == 0 else [])
    if not all(shutil.which(tool) for tool in needed):
        return False
    try:
        proc = subprocess.run(command(["true"]), capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0
