"""The allow-list sandbox of all graded code (course/grading/jail.py).

Each test runs a small Python program in the jail, as the grading kernel and
the re-verification do, and checks what it can see, reach and use: the
grader's environment and files, the network (loopback included), root's
privileges, another jail's shared memory, and the memory, process and
file-size limits.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from course.grading import jail

REPO = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not jail.available() and os.environ.get("CI", "").lower() != "true",
    reason="bubblewrap missing: apt-get install bubblewrap (CI installs it)")


def _run(code: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    cmd = jail.command([sys.executable, "-c", textwrap.dedent(code)], **kw)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _json(code: str, **kw) -> object:
    proc = _run(code, **kw)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_environment_is_cleared(monkeypatch):
    monkeypatch.setenv("FAKE_TOKEN", "tok-7f3a")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-7f3a")
    monkeypatch.setenv("JUPYTER_TOKEN", "jup-7f3a")
    env = _json("import json, os; print(json.dumps(dict(os.environ)))", env={"EXTRA": "1"})
    assert not {"FAKE_TOKEN", "JUPYTERHUB_API_TOKEN", "JUPYTER_TOKEN"} & set(env)
    assert "7f3a" not in json.dumps(env)
    assert set(env) <= {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "PWD",
                        "EXTRA"}
    assert env["HOME"] == jail.HOME and env["EXTRA"] == "1"


def test_no_network_not_even_the_hosts_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        got = _json(f"""
            import json, socket
            out = {{}}
            for host in ("127.0.0.1", "localhost", "::1"):
                try:
                    socket.create_connection((host, {port}), timeout=3).close()
                    out[host] = "connected"
                except OSError as exc:
                    out[host] = type(exc).__name__
            print(json.dumps(out))""")
    finally:
        server.close()
    assert "connected" not in got.values(), got


def test_the_grader_s_files_are_not_there(tmp_path):
    other = tempfile.mkdtemp(prefix="sgd-other-", dir=tmp_path)
    pathlib.Path(other, "classmate.ipynb").write_text("{}")
    mine = tmp_path / "mine"
    mine.mkdir()
    home = pathlib.Path.home()
    got = _json(f"""
        import json, os
        paths = ["/etc/shadow", "/etc/ssh", "/root/.ssh", {str(home / ".ssh")!r},
                 {str(home / ".netrc")!r}, {str(home / ".aws")!r},
                 {str(REPO / "solutions")!r}, {str(REPO / "tests")!r}, {str(REPO / ".git")!r},
                 {str(REPO / "nbgrader_config.py")!r}, {other!r}, "/var", "/run", "/srv",
                 "/opt", "/mnt", "/sys"]
        print(json.dumps({{"seen": [p for p in paths if os.path.exists(p)],
                          "etc": sorted(os.listdir("/etc")),
                          "root": sorted(os.listdir("/root")) if os.path.isdir("/root") else [],
                          "repo": sorted(os.listdir({str(REPO)!r})),
                          "mine": os.path.isdir({str(mine)!r})}}))""", rw=[mine])
    assert got["seen"] == []
    assert got["etc"] == ["fonts", "group", "ld.so.cache", "localtime", "nsswitch.conf", "passwd"]
    assert set(got["root"]) <= {".pyenv"}             # the Python install, if it lives there
    assert set(got["repo"]) <= {"course", ".venv"}
    assert got["mine"]


def test_graded_code_never_runs_as_root_and_has_no_capabilities(tmp_path):
    got = _json("""
        import json, os
        status = dict(l.split(":", 1) for l in open("/proc/self/status"))
        print(json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(),
                          "caps": [status[k].strip() for k in ("CapEff", "CapPrm", "CapInh")],
                          "nnp": status["NoNewPrivs"].strip()}))""")
    assert got["caps"] == ["0000000000000000"] * 3 and got["nnp"] == "1"
    if os.getuid() == 0:
        uid = jail.sandbox_ids()[0]
        assert got["uid"] == got["euid"] == uid != 0
        assert got["groups"] == []
        # and the host sees that uid too, not root remapped
        proc = subprocess.Popen(jail.command([sys.executable, "-c", "import time; time.sleep(5)"]))
        try:
            time.sleep(1.5)
            uids = {int(s.read_text().split("Uid:")[1].split()[0])
                    for s in pathlib.Path("/proc").glob("[0-9]*/status")
                    if _is_descendant(int(s.parent.name), proc.pid) and "python" in _comm(s)}
            assert uids == {uid}
        finally:
            proc.kill()
            proc.wait()


def _comm(status: pathlib.Path) -> str:
    try:
        return (status.parent / "comm").read_text()
    except OSError:
        return ""


def _is_descendant(pid: int, ancestor: int) -> bool:
    for _ in range(20):
        if pid == ancestor:
            return True
        try:
            pid = int((pathlib.Path("/proc") / str(pid) / "status").read_text()
                      .split("PPid:")[1].split()[0])
        except (OSError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def test_the_file_system_is_read_only_but_the_rw_folders(tmp_path):
    rw = tmp_path / "rw"
    rw.mkdir()
    jail.prepare(rw)
    got = _json(f"""
        import json, os
        out = {{}}
        for d in ("/usr", {str(REPO / "course")!r}, {sys.prefix!r}, "/etc", "/",
                  {str(rw)!r}, "/tmp", os.environ["HOME"]):
            try:
                open(os.path.join(d, "planted.py"), "w").write("X = 1")
                out[d] = "written"
            except OSError as exc:
                out[d] = type(exc).__name__
        print(json.dumps(out))""", rw=[rw])
    assert [d for d, r in got.items() if r == "written"] == [str(rw), "/tmp", jail.HOME]
    assert (rw / "planted.py").exists() and not (REPO / "course" / "planted.py").exists()


SHM = """
import ctypes, json, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
KEY, IPC_CREAT = 0x5D6A11, 0o1000
if sys.argv[1] == "make":
    shmid = libc.shmget(KEY, 4096, IPC_CREAT | 0o666)
    addr = libc.shmat(shmid, None, 0)
    ctypes.memmove(addr, b"SECRET-SHM", 10)
    print(json.dumps(shmid), flush=True)
    time.sleep(float(sys.argv[2]))
else:
    print(json.dumps(libc.shmget(KEY, 0, 0)))
"""


def test_sysv_shared_memory_is_private_to_each_jail():
    maker = subprocess.Popen(jail.command([sys.executable, "-c", SHM, "make", "20"]),
                             stdout=subprocess.PIPE, text=True)
    try:
        assert int(maker.stdout.readline()) >= 0           # made and attached
        other = subprocess.run(jail.command([sys.executable, "-c", SHM, "find"]),
                               capture_output=True, text=True, timeout=60)
        assert json.loads(other.stdout) == -1, "another jail found the segment"
    finally:
        maker.kill()
        maker.wait()
    # and nothing is left behind on the host
    listing = pathlib.Path("/proc/sysvipc/shm").read_text()
    assert f"{0x5D6A11:>10}" not in listing and str(0x5D6A11) not in listing


def test_a_memory_bomb_is_stopped():
    got = _json("""
        import json
        blocks = []
        try:
            while True:
                blocks.append(bytearray(64 << 20))
        except MemoryError:
            pass
        print(json.dumps(len(blocks) * 64))""", limits=jail.Limits(memory=512 * jail.MiB))
    assert 256 <= got <= 512


def test_a_memory_bomb_through_numpy_is_stopped():
    proc = _run("""
        import numpy as np
        try:
            a = np.ones((8 << 30) // 8)
            print("allocated")
        except MemoryError:
            print("MemoryError")""", limits=jail.Limits(memory=1 * jail.GiB))
    assert proc.stdout.strip() == "MemoryError", proc.stderr[-2000:]


def test_a_fork_bomb_is_limited():
    got = _json("""
        import json, os, time
        n = 0
        try:
            while n < 10000:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
        except OSError as exc:
            print(json.dumps([n, exc.errno]))
        """, limits=jail.Limits(processes=40), timeout=60)
    n, errno = got
    assert n < 40 and errno == 11              # EAGAIN


def test_a_big_file_is_cut_by_the_size_limit(tmp_path):
    rw = tmp_path / "rw"
    rw.mkdir()
    jail.prepare(rw)
    got = _json(f"""
        import json
        out = {{}}
        for d in ("/tmp", {str(rw)!r}):
            try:
                with open(d + "/big", "wb") as fh:
                    for _ in range(64):
                        fh.write(b"x" * (1 << 20))
                out[d] = "written"
            except OSError as exc:
                out[d] = exc.errno
        print(json.dumps(out))""", rw=[rw], limits=jail.Limits(file_size=8 * jail.MiB))
    assert got == {"/tmp": 27, str(rw): 27}                # EFBIG
    assert (rw / "big").stat().st_size == 8 * jail.MiB


def test_the_jails_tmp_is_bounded():
    got = _json("""
        import json, os
        n = 0
        try:
            for i in range(64):
                with open(f"/tmp/f{i}", "wb") as fh:
                    fh.write(b"x" * (8 << 20))
                n += 1
        except OSError as exc:
            print(json.dumps([n, exc.errno]))""",
                limits=jail.Limits(tmp_size=64 * jail.MiB, file_size=16 * jail.MiB))
    assert got[0] <= 8 and got[1] == 28                    # ENOSPC: 64 MiB at most


def test_limits_come_from_the_environment():
    env = {"COURSE_JAIL_MEMORY": "6G", "COURSE_JAIL_PROCESSES": "99",
           "COURSE_JAIL_FILE_SIZE": "64M"}
    limits = jail.Limits.from_env(env)
    assert (limits.memory, limits.processes, limits.file_size) == (6 << 30, 99, 64 << 20)
    cmd = jail.command(["true"], limits=limits)
    assert f"--data={6 << 30}" in cmd and f"--fsize={64 << 20}" in cmd


def test_a_shared_memory_bomb_is_stopped():
    """Shared mappings escape RLIMIT_DATA; RLIMIT_AS stops them."""
    proc = _run("""
        import mmap
        try:
            m = mmap.mmap(-1, 12 << 30)
            print("mapped")
        except OSError as exc:
            print(exc.errno)""")
    assert proc.stdout.strip() == "12", proc.stdout + proc.stderr[-2000:]   # ENOMEM
