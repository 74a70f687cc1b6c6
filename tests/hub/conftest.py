"""A real JupyterHub for the course, set up by deploy/jupyterhub/setup.sh.

The fixture runs the admin's commands of the README ("Running a class") with
temporary prefixes: ``setup.sh install`` (the course's venv, the pinned
configurable-http-proxy, nbgrader's exchange, the hub's configuration),
``setup.sh add-user`` for one instructor and six learners (real system
users, unique names, passwords set with chpasswd), then ``<prefix>/bin/sgd-hub``
on 127.0.0.1, which also starts the exchange's sealer (a managed service, as
root: deploy/jupyterhub/sgd_sealer.py); the fixture waits for its socket. Teardown stops the hub, the proxy and every process of the test
users, removes the users (``userdel -r``) and their groups, and restores the
permissions it changed, also when a test fails.

The hub is configured as for a class (settings.json, see setup.sh): HTTPS with a
self-signed certificate made here for 127.0.0.1 (every request checks it), the
idle culler with a short timeout (CULL_TIMEOUT s), a memory and CPU limit per
user (MEM_LIMIT, CPU_LIMIT: sgd_limits.py), and the gradebook at a URL of its own
(``gradebook_db_url``, an SQLite file outside the instructor's course folder).

It needs root, useradd/userdel/runuser/chpasswd, node and npm. Without them
the tests skip and say why, except under ``CI=true``, where that is a failure.

A clean clone lives in ``mktemp -d`` (mode 0700) and the venv's Python (and its
standard library, ``sys.base_prefix``) may live under /root (0700): users could not run
the course at all. The fixture
grants ``o+x`` (traverse only, no listing) on exactly those folders and
restores their modes afterwards; on a real server, install the course where
every user can read it (see deploy/jupyterhub/README.md).
"""

from __future__ import annotations

import dataclasses
import grp
import json
import os
import pathlib
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest
from tests.conftest import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
SETUP = ROOT / "deploy" / "jupyterhub" / "setup.sh"
VENV_PYTHON = pathlib.Path(sys.executable)
COURSE_ID = "sgd-from-scratch"
#: Folders of the checkout that setup.sh closes to other users (modes restored after).
PROTECTED = ("solutions", "tests", ".git", "gradebook.db")
#: The culler stops a learner's server idle this long (s), looking every CULL_EVERY s.
CULL_TIMEOUT, CULL_EVERY = 60, 10
#: Per-user limits of the test hub: a server and a kernel fit, a 1.5 GB allocation does not.
MEM_LIMIT, CPU_LIMIT = 768 * 2**20, 0.5


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "the JupyterHub test creates system users: run it as root"
    for tool in ("useradd", "userdel", "groupdel", "runuser", "chpasswd", "node", "npm"):
        if shutil.which(tool) is None:
            hint = "apt-get install nodejs npm" if tool in ("node", "npm") else "apt-get install passwd util-linux"
            return f"{tool} not found ({hint})"
    if not (VENV_PYTHON.parent / "jupyterhub-singleuser").exists():
        return "jupyterhub is not installed in the venv: run `make venv`"
    if shutil.which("openssl") is None:
        return "openssl not found (apt-get install openssl): the hub serves HTTPS"
    return None


def _grant_traverse(paths: list[pathlib.Path]) -> dict[pathlib.Path, int]:
    """o+x on every ancestor of ``paths`` that lacks it; returns the old modes."""
    changed: dict[pathlib.Path, int] = {}
    for path in paths:
        for folder in (path, *path.parents):
            mode = folder.stat().st_mode
            if folder not in changed and not mode & stat.S_IXOTH:
                changed[folder] = stat.S_IMODE(mode)
                os.chmod(folder, stat.S_IMODE(mode) | stat.S_IXOTH)
    return changed


def _uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _kill_processes_of(uids: set[int]) -> None:
    """SIGKILL every process owned by ``uids`` (the test's own users), one pid at a time."""
    for _ in range(3):
        pids = []
        for proc in pathlib.Path("/proc").glob("[0-9]*"):
            try:
                if proc.stat().st_uid in uids:
                    pids.append(int(proc.name))
            except OSError:
                continue
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.3)


def _remove_files_of(uids: set[int]) -> None:
    """What the test users left in the temp folders (e.g. grading kernels' scratch)."""
    for folder in {pathlib.Path(tempfile.gettempdir()), pathlib.Path("/tmp"), pathlib.Path("/var/tmp")}:
        for entry in folder.iterdir():
            try:
                if entry.lstat().st_uid not in uids:
                    continue
            except OSError:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@dataclasses.dataclass
class Hub:
    prefix: pathlib.Path
    exchange: pathlib.Path
    url: str
    instructor: str
    learners: list[str]
    passwords: dict[str, str]
    log: pathlib.Path
    #: the self-signed certificate the hub serves HTTPS with (requests verify against it)
    cert: pathlib.Path
    #: the hub's gradebook_db_url
    gradebook: str
    settings: dict

    @property
    def gradebook_path(self) -> pathlib.Path:
        return pathlib.Path(self.gradebook.removeprefix("sqlite:///"))

    @property
    def setup_env(self) -> dict[str, str]:
        """The environment for deploy/jupyterhub/setup.sh on this hub."""
        return dict(os.environ, SGDHUB_PREFIX=str(self.prefix))

    @property
    def nbgrader(self) -> str:
        """The hub's nbgrader (the venv's, with the exchange configured)."""
        return str(self.prefix / "bin" / "nbgrader")

    def home(self, user: str) -> pathlib.Path:
        return pathlib.Path(pwd.getpwnam(user).pw_dir)

    @property
    def course(self) -> pathlib.Path:
        return self.home(self.instructor) / COURSE_ID

    def run(self, user: str, *args: str, cwd: pathlib.Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """``runuser -u USER -- args`` in ``cwd`` (default: the user's home), with a clean
        environment (runuser sets HOME, USER, LOGNAME)."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        return subprocess.run([shutil.which("runuser"), "-u", user, "--", *args], cwd=cwd or self.home(user),
                              env=env, capture_output=True, text=True, timeout=timeout)

    def ok(self, user: str, *args: str, cwd: pathlib.Path | None = None) -> str:
        """Run as ``user``; fail the test with the command's output if it fails."""
        proc = self.run(user, *args, cwd=cwd)
        assert proc.returncode == 0, (f"{user}: {' '.join(args)} exited {proc.returncode}\n"
                                      f"{proc.stdout}\n{proc.stderr}")
        return proc.stdout + proc.stderr


def _self_signed(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A certificate and key for 127.0.0.1 (what an admin makes with the README's command)."""
    cert, key = folder / "hub.crt", folder / "hub.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key


def _wait_for_hub(proc: subprocess.Popen, url: str, log: pathlib.Path, cert: pathlib.Path,
                  timeout: float = 60) -> None:
    import requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterHub exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/hub/api", timeout=2, verify=str(cert)).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"JupyterHub not up in {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen, pidfile: pathlib.Path) -> None:
    """Stop the hub (which stops its proxy and the users' servers), then anything left."""
    proxy_pid = None
    if pidfile.exists():
        try:
            proxy_pid = int(pidfile.read_text().strip())
        except ValueError:
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proxy_pid:
        try:
            cmdline = pathlib.Path(f"/proc/{proxy_pid}/cmdline").read_bytes()
            if b"configurable-http-proxy" in cmdline:
                os.kill(proxy_pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def _wait_for_sealer(sock: pathlib.Path, log: pathlib.Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sock.is_socket():
            return
        time.sleep(0.2)
    raise RuntimeError(f"the sealer's socket {sock} is not there after {timeout} s:\n"
                       f"{log.read_text()[-3000:]}")


def _stop_sealer(settings: pathlib.Path) -> None:
    """The sealer the hub started with these settings, if the hub left it running."""
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(settings).encode() in cmdline and any(a.endswith(b"sgd_sealer.py") for a in cmdline):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _remove_cgroups(users: list[str]) -> None:
    """The users' cgroups (sgd_limits.py), once their processes are gone."""
    sys.path.insert(0, str(ROOT / "deploy" / "jupyterhub"))
    from sgd_limits import user_cgroups
    folders = [f for user in users for f in user_cgroups(user).values()]
    for folder in [*folders, *{f.parent for f in folders}]:    # then sgd-hub/, if empty
        try:
            folder.rmdir()
        except OSError:
            pass


@pytest.fixture(scope="module")
def hub():
    reason = _missing_prerequisite()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"JupyterHub test prerequisite missing under CI: {reason}")
        pytest.skip(reason)

    tag = secrets.token_hex(2)
    instructor = f"sgdhub{tag}-instr"
    learners = [f"sgdhub{tag}-l{i}" for i in range(1, 7)]
    groups = [f"sgdhub{tag}-instructors", f"sgdhub{tag}-learners"]
    users = [instructor, *learners]
    base = pathlib.Path(tempfile.mkdtemp(prefix="sgd-hub-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    prefix, exchange = base / "prefix", base / "exchange"
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    cert, key = _self_signed(base)
    gradebook = f"sqlite:///{base / 'gradebook' / 'gradebook.db'}"
    env = dict(os.environ, SGDHUB_PREFIX=str(prefix), SGDHUB_EXCHANGE=str(exchange),
               SGDHUB_BIND_URL=url, SGDHUB_HUB_PORT=str(free_port()),
               SGDHUB_PROXY_API_PORT=str(free_port()),
               SGDHUB_INSTRUCTOR_GROUP=groups[0], SGDHUB_LEARNER_GROUP=groups[1],
               SGDHUB_SSL_CERT=str(cert), SGDHUB_SSL_KEY=str(key),
               SGDHUB_CULL_TIMEOUT=str(CULL_TIMEOUT), SGDHUB_CULL_EVERY=str(CULL_EVERY),
               SGDHUB_MEM_LIMIT=f"{MEM_LIMIT >> 20}M", SGDHUB_CPU_LIMIT=str(CPU_LIMIT),
               SGDHUB_GRADEBOOK_DB_URL=gradebook)
    env.pop("SGDHUB_VENV", None)
    protected_modes = {ROOT / n: stat.S_IMODE((ROOT / n).stat().st_mode)
                       for n in PROTECTED if (ROOT / n).exists()}
    traverse_modes: dict[pathlib.Path, int] = {}
    proc = None
    log = base / "hub.log"
    try:
        # the venv, the Python it runs and that Python's standard library (a venv whose
        # python is a copy, not a link, still reads the stdlib under sys.base_prefix: if
        # users cannot, their Python silently takes another one, e.g. /usr/lib/python3.11)
        traverse_modes = _grant_traverse([ROOT / ".venv", VENV_PYTHON.resolve().parent,
                                          pathlib.Path(sys.base_prefix) / "lib"])
        subprocess.run([str(SETUP), "install"], env=env, check=True, capture_output=True,
                       text=True, timeout=900)
        passwords = {u: secrets.token_urlsafe(12) for u in users}
        subprocess.run([str(SETUP), "add-user", "instructor", instructor], env=env, check=True,
                       capture_output=True, text=True)
        for learner in learners:
            subprocess.run([str(SETUP), "add-user", "learner", learner], env=env, check=True,
                           capture_output=True, text=True)
        subprocess.run(["chpasswd"], input="".join(f"{u}:{p}\n" for u, p in passwords.items()),
                       check=True, capture_output=True, text=True)
        # the folder of the hub's gradebook: the instructor's
        (base / "gradebook").mkdir(mode=0o700)
        shutil.chown(base / "gradebook", instructor, instructor)
        with log.open("w") as out:
            proc = subprocess.Popen([str(prefix / "bin" / "sgd-hub")], stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={k: v for k, v in os.environ.items()
                                         if not k.startswith(("JUPYTER", "SGDHUB"))})
        _wait_for_hub(proc, url, log, cert)
        _wait_for_sealer(prefix / "run" / "sgd-sealer.sock", log)
        settings = json.loads((prefix / "etc" / "settings.json").read_text())
        yield Hub(prefix, exchange, url, instructor, learners, passwords, log, cert, gradebook,
                  settings)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{' '.join(map(str, exc.cmd))} failed:\n{exc.stdout}\n{exc.stderr}") from exc
    finally:
        if proc is not None:
            _stop(proc, prefix / "hub" / "jupyterhub-proxy.pid")
            _stop_sealer(prefix / "etc" / "settings.json")
        uids = {uid for uid in map(_uid, users) if uid is not None}
        _kill_processes_of(uids)
        _remove_files_of(uids)
        _remove_cgroups(users)
        for user in users:
            if _uid(user) is not None:
                subprocess.run(["userdel", "-r", user], capture_output=True)
        for group in groups:
            try:
                grp.getgrnam(group)
            except KeyError:
                continue
            subprocess.run(["groupdel", group], capture_output=True)
        for path, mode in {**protected_modes, **traverse_modes}.items():
            os.chmod(path, mode)
        shutil.rmtree(base, ignore_errors=True)


def page_config(html: str) -> dict:
    """The JSON page config a JupyterLab page embeds."""
    match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                      html, re.S)
    assert match, "no jupyter-config-data in the page"
    return json.loads(match.group(1))
