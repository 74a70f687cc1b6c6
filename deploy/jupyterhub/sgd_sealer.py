"""The exchange's sealer: makes each submission immutable to its author and stamps it.

nbgrader's ``submit`` runs as the learner, so everything it writes in the
exchange's ``inbound/`` -- the notebooks, ``timestamp.txt``, even the time in
the folder's name -- is the learner's to choose and, since she owns the
folder, to change after submitting. This program, run as root by the hub (a
managed JupyterHub service, restarted if it dies; see jupyterhub_config.py),
takes every learner-owned submission folder out of her hands:

1. It moves the folder out of ``inbound/`` (one ``rename``) into a root-only
   work folder, and takes the receive time from its own clock.
2. A child process running as the learner (her uid and group, no other
   groups) reads the folder -- without following any symlink, opening only
   regular files, never a fifo or device -- and streams a tar of it. So the
   sealer never reads anything with more rights than hers.
3. The sealer writes a new copy of that tar, regular files and folders only,
   checked names, size limits; ``timestamp.txt`` is replaced by the receive
   time. The copy is owned by the instructor (the owner of ``inbound/``) and
   its group, mode 0750/0640: the learner can neither write nor read it.
4. It moves the copy back into ``inbound/`` under the same name (``inbound/``
   gets the sticky bit, so she cannot rename or delete it either) and writes
   the seal record ``<course>/sealed/<name>.json`` (root-owned folder, mode
   0750, group of the instructor): student, uid, receive time, the time she
   claimed, the SHA-256 of every file, and what was left out (symlinks...).
   Her original is deleted; files she still holds open are no longer part of
   the submission.

A folder whose name claims another student than its owner is set aside in
``sealed/.rejected/``. The sealer sweeps ``inbound/`` every few seconds, and
at once when asked over its Unix socket (``<prefix>/run/sgd-sealer.sock``,
which ``PrivateSubmit`` in sgd_exchange.py calls right after copying): the
socket carries no request data, the caller's uid comes from the kernel
(SO_PEERCRED) and the answer lists only that user's seals.

``sgd_exchange.SealedCollect`` (the instructor's ``collect``) takes only
sealed submissions, dates them by the seal record, and refuses one whose
files no longer match it.

Usage: ``sgd_sealer.py [--settings PATH] [--once]`` (as root);
``--pack`` is the child of step 2.
"""

from __future__ import annotations

import argparse
import datetime
import grp
import hashlib
import io
import json
import os
import pwd
import secrets
import select
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import time

#: A submission's limits (nbgrader's own default max_dir_size is 100 MB).
MAX_BYTES = 100 * 1000 * 1000
MAX_FILES = 2000
SWEEP_SECONDS = 2.0
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"          # nbgrader's timestamp_format

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def log(*parts: object) -> None:
    text = " ".join(str(p) for p in parts)
    # names come from learners: never let a control character reach the log
    text = text.encode("unicode_escape").decode("ascii")
    print(f"[sgd-sealer {datetime.datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


# ------------------------------------------------------------------ the child (as the learner)

def pack(dir_fd: int, out) -> int:
    """Stream a tar of the folder open on ``dir_fd``: folders and regular files only.
    Prints what it left out (JSON) on stderr. Runs as the learner."""
    skipped: list[list[str]] = []
    total = files = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def walk(fd: int, rel: str) -> None:
            nonlocal total, files
            with os.scandir(fd) as entries:
                names = sorted(e.name for e in entries)
            for name in names:
                path = f"{rel}/{name}" if rel else name
                try:
                    mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                except OSError:
                    continue
                if stat.S_ISDIR(mode):
                    try:
                        sub = os.open(name, _DIR, dir_fd=fd)
                    except OSError as exc:
                        skipped.append([path, f"unreadable folder ({exc.strerror})"])
                        continue
                    info = tarfile.TarInfo(path)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    try:
                        walk(sub, path)
                    finally:
                        os.close(sub)
                    continue
                if not stat.S_ISREG(mode):
                    skipped.append([path, _kind(mode)])
                    continue
                try:
                    fin = os.open(name, _FILE, dir_fd=fd)
                except OSError as exc:
                    skipped.append([path, f"unreadable ({exc.strerror})"])
                    continue
                try:
                    if not stat.S_ISREG(os.fstat(fin).st_mode):
                        skipped.append([path, _kind(os.fstat(fin).st_mode)])
                        continue
                    data = b""
                    while chunk := os.read(fin, 1 << 20):
                        data += chunk
                        if total + len(data) > MAX_BYTES:
                            raise SystemExit(f"submission larger than {MAX_BYTES} bytes")
                finally:
                    os.close(fin)
                files += 1
                total += len(data)
                if files > MAX_FILES:
                    raise SystemExit(f"submission has more than {MAX_FILES} files")
                info = tarfile.TarInfo(path)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        walk(dir_fd, "")
    sys.stderr.write(json.dumps(skipped[:100]))
    return 0


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "folder")):
        if test(mode):
            return name
    return "not a regular file"


# ------------------------------------------------------------------ the sealer (root)

class Refused(Exception):
    """A folder that cannot be sealed (too large, unreadable...): set aside."""


def _safe_member(name: str) -> str | None:
    """A tar member's name as a relative path, or None when it is not a plain one."""
    if not name or "\0" in name or name.startswith("/"):
        return None
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return "/".join(parts)


def _members_of(group: str) -> set[int]:
    try:
        g = grp.getgrnam(group)
    except KeyError:
        return set()
    uids = {p.pw_uid for p in pwd.getpwall() if p.pw_gid == g.gr_gid}
    for member in g.gr_mem:
        try:
            uids.add(pwd.getpwnam(member).pw_uid)
        except KeyError:
            pass
    return uids


class Sealer:
    def __init__(self, settings: dict):
        self.exchange = settings["exchange"]
        self.course_id = settings["course_id"]
        self.instructor_group = settings["instructor_group"]
        self.socket_path = settings.get("sealer_socket") or os.path.join(
            settings["prefix"], "run", "sgd-sealer.sock")

    # -- folders
    def _open_course(self):
        """(course fd, inbound fd, inbound stat) or None; both owned by an instructor or root."""
        trusted = _members_of(self.instructor_group) | {0}
        try:
            root = os.open(self.exchange, _DIR)
        except OSError:
            return None
        try:
            course = os.open(self.course_id, _DIR, dir_fd=root)
        except OSError:
            return None
        finally:
            os.close(root)
        try:
            inbound = os.open("inbound", _DIR, dir_fd=course)
        except OSError:
            os.close(course)
            return None
        cst, ist = os.fstat(course), os.fstat(inbound)
        if cst.st_uid not in trusted or ist.st_uid not in trusted:
            log(f"{self.exchange}/{self.course_id}: not owned by an instructor: left alone")
            os.close(course), os.close(inbound)
            return None
        if not ist.st_mode & stat.S_ISVTX:   # learners may not rename or delete others' entries
            os.fchmod(inbound, stat.S_IMODE(ist.st_mode) | stat.S_ISVTX)
        return course, inbound, ist

    @staticmethod
    def _root_dir(parent: int, name: str, gid: int, mode: int) -> int:
        """A root-owned folder ``name`` in ``parent`` (created if missing), open."""
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            pass
        fd = os.open(name, _DIR, dir_fd=parent)
        st = os.fstat(fd)
        if st.st_uid != 0:
            os.close(fd)
            raise RuntimeError(f"{name} is not owned by root: refusing to seal into it")
        os.fchown(fd, 0, gid)
        os.fchmod(fd, mode)
        return fd

    # -- a sweep
    def sweep(self) -> list[dict]:
        """Seal every learner-owned submission folder in inbound/; the new seal records."""
        opened = self._open_course()
        if opened is None:
            return []
        course, inbound, ist = opened
        sealed_fd = work = rejected = -1
        records = []
        try:
            candidates = []
            with os.scandir(inbound) as entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    if st.st_uid in (0, ist.st_uid):
                        continue                     # sealed already, or the instructor's
                    parts = entry.name.rsplit("+", 3)
                    if len(parts) < 3:
                        continue                     # not a submission's name: never collected
                    candidates.append((entry.name, st))
            if not candidates:
                return []
            sealed_fd = self._root_dir(course, "sealed", ist.st_gid, 0o750)
            work = self._root_dir(sealed_fd, ".work", 0, 0o700)
            rejected = self._root_dir(sealed_fd, ".rejected", 0, 0o700)
            for name, st in candidates:
                try:
                    record = self.seal(name, st, inbound, sealed_fd, work, rejected, ist)
                except Exception as exc:  # noqa: BLE001 - one bad folder never stops the others
                    log(f"{name}: not sealed: {exc!r}")
                    continue
                if record:
                    records.append(record)
        finally:
            for fd in (sealed_fd, work, rejected, inbound, course):
                if fd >= 0:
                    os.close(fd)
        return records

    def _reject(self, name: str, inbound: int, rejected: int, why: str) -> None:
        target = f"{name}.{secrets.token_hex(4)}"
        st = os.stat(name, dir_fd=inbound, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            os.rename(name, target, src_dir_fd=inbound, dst_dir_fd=rejected)
        else:
            os.unlink(name, dir_fd=inbound)
        log(f"{name}: rejected ({why})")

    def seal(self, name, st, inbound, sealed_fd, work, rejected, ist) -> dict | None:
        try:
            owner = pwd.getpwuid(st.st_uid)
        except KeyError:
            self._reject(name, inbound, rejected, f"owned by unknown uid {st.st_uid}")
            return None
        claimed_student, assignment = name.rsplit("+", 3)[0], name.rsplit("+", 3)[1]
        if not stat.S_ISDIR(st.st_mode):
            self._reject(name, inbound, rejected, f"a {_kind(st.st_mode)}, not a folder")
            return None
        if claimed_student != owner.pw_name:
            self._reject(name, inbound, rejected,
                         f"claims student {claimed_student!r} but is owned by {owner.pw_name!r}")
            return None
        received = datetime.datetime.now(datetime.timezone.utc)
        token = secrets.token_hex(8)
        orig, new = f"{token}.orig", f"{token}.new"
        # 1. out of her reach by path (what she holds open no longer counts)
        os.rename(name, orig, src_dir_fd=inbound, dst_dir_fd=work)
        try:
            moved = os.stat(orig, dir_fd=work, follow_symlinks=False)
            if not stat.S_ISDIR(moved.st_mode) or moved.st_uid != st.st_uid:
                raise Refused("replaced while sealing")
            # 2. read as her, 3. written anew as the instructor's
            files, removed, claimed = self._copy_as(owner, orig, new, work)
            when = received.strftime(TIMESTAMP_FORMAT)
            self._write(work, f"{new}/timestamp.txt", when.encode())
            files["timestamp.txt"] = hashlib.sha256(when.encode()).hexdigest()
            self._own(work, new, ist.st_uid, ist.st_gid)
            record = {"version": 1, "name": name, "student": owner.pw_name, "uid": owner.pw_uid,
                      "assignment": assignment, "received": when,
                      "received_epoch": received.timestamp(), "claimed_timestamp": claimed,
                      "owner_uid": ist.st_uid, "files": files, "removed": removed}
            data = json.dumps(record, indent=1, sort_keys=True).encode()
            self._write(sealed_fd, f".{token}.json", data, mode=0o640, owner=(0, ist.st_gid))
            os.rename(f".{token}.json", f"{name}.json", src_dir_fd=sealed_fd, dst_dir_fd=sealed_fd)
            # 4. back under its name; a folder she made meanwhile under that name is set aside
            for _ in range(3):
                try:
                    os.rename(new, name, src_dir_fd=work, dst_dir_fd=inbound)
                    break
                except OSError:
                    self._reject(name, inbound, rejected, "made again while being sealed")
            else:
                raise Refused("could not put the sealed copy back")
        except Exception as exc:
            # kept for the admin in sealed/.rejected/ (root only), never lost
            log(f"{name}: not sealed: {exc}")
            if "record" in locals() and not os.path.isdir(self._path(f"inbound/{name}")):
                os.unlink(f"{name}.json", dir_fd=sealed_fd)
            os.rename(orig, f"{name}.{token}", src_dir_fd=work, dst_dir_fd=rejected)
            shutil.rmtree(self._path(f"sealed/.work/{new}"), ignore_errors=True)
            if isinstance(exc, Refused):
                return None
            raise
        shutil.rmtree(self._path(f"sealed/.work/{orig}"), ignore_errors=True)
        log(f"sealed {name} for {owner.pw_name} at {when}"
            + (f"; left out: {removed}" if removed else ""))
        return record

    def _path(self, rel: str) -> str:
        return os.path.join(self.exchange, self.course_id, rel)

    @staticmethod
    def _write(dir_fd: int, rel: str, data: bytes, mode: int = 0o600,
               owner: tuple[int, int] | None = None) -> None:
        fd = os.open(rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=dir_fd)
        try:
            if owner:
                os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            os.write(fd, data)
        finally:
            os.close(fd)

    def _copy_as(self, owner: pwd.struct_passwd, orig: str, new: str, work: int):
        """Read ``orig`` as ``owner`` (a child process), write its regular files to ``new``."""
        src = os.open(orig, _DIR, dir_fd=work)
        try:
            child = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), "--pack", str(src)],
                pass_fds=[src], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd="/",
                user=owner.pw_uid, group=owner.pw_gid, extra_groups=[], umask=0o077,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, start_new_session=True)
        finally:
            os.close(src)
        os.mkdir(new, 0o700, dir_fd=work)
        files: dict[str, str] = {}
        claimed = ""
        total = 0
        try:
            with tarfile.open(fileobj=child.stdout, mode="r|") as tar:
                for member in tar:
                    rel = _safe_member(member.name)
                    if rel is None:
                        raise Refused(f"unsafe name in the stream: {member.name!r}")
                    if member.isdir():
                        self._mkdirs(work, new, rel)
                        continue
                    if not member.isfile():
                        raise Refused(f"{rel}: not a regular file in the stream")
                    total += member.size
                    if total > MAX_BYTES or len(files) >= MAX_FILES:
                        raise Refused("too large")
                    data = tar.extractfile(member).read()
                    if "/" in rel:
                        self._mkdirs(work, new, rel.rsplit("/", 1)[0])
                    if rel == "timestamp.txt":
                        claimed = data[:200].decode("utf-8", "replace")
                        continue                     # replaced by the receive time
                    self._write(work, f"{new}/{rel}", data)
                    files[rel] = hashlib.sha256(data).hexdigest()
            err = child.stderr.read(1 << 20)
            if child.wait(timeout=60) != 0:
                raise Refused(f"could not be read: {err[-300:].decode('utf-8', 'replace')}")
        except tarfile.TarError as exc:
            child.kill()
            raise Refused(f"could not be read ({exc})") from exc
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
        try:
            removed = [list(map(str, item))[:2] for item in json.loads(err or b"[]")][:100]
        except (ValueError, TypeError):
            removed = []
        return files, removed, claimed

    @staticmethod
    def _mkdirs(work: int, new: str, rel: str) -> None:
        path = new
        for part in rel.split("/"):
            path = f"{path}/{part}"
            try:
                os.mkdir(path, 0o700, dir_fd=work)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(path, dir_fd=work, follow_symlinks=False).st_mode):
                    raise Refused(f"{rel}: a file and a folder of one name") from None

    @staticmethod
    def _own(work: int, new: str, uid: int, gid: int) -> None:
        """The copy: the instructor's, group-readable, nobody else's (no links in it)."""
        base = os.open(new, _DIR, dir_fd=work)
        try:
            for _dirpath, _dirnames, filenames, dfd in os.fwalk(dir_fd=base):
                for f in filenames:
                    os.chown(f, uid, gid, dir_fd=dfd, follow_symlinks=False)
                    os.chmod(f, 0o640, dir_fd=dfd)
                os.fchown(dfd, uid, gid)
                os.fchmod(dfd, 0o750)
        finally:
            os.close(base)

    # -- the service
    def serve(self) -> None:
        os.makedirs(os.path.dirname(self.socket_path), mode=0o755, exist_ok=True)
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.socket_path)
        os.chmod(self.socket_path, 0o666)
        server.listen(16)
        log(f"sealing {self.exchange}/{self.course_id}/inbound; socket {self.socket_path}")
        last = 0.0
        while True:
            ready, _, _ = select.select([server], [], [], SWEEP_SECONDS)
            if ready:
                conn, _ = server.accept()
                with conn:
                    uid = struct.unpack("3i", conn.getsockopt(
                        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
                    self._sweep_logged()
                    mine = self._seals_of(uid)
                    conn.settimeout(2)
                    try:
                        conn.sendall((json.dumps(mine) + "\n").encode())
                    except OSError:
                        pass
                last = time.monotonic()
            elif time.monotonic() - last >= SWEEP_SECONDS:
                self._sweep_logged()
                last = time.monotonic()

    def _sweep_logged(self) -> None:
        try:
            self.sweep()
        except Exception as exc:  # noqa: BLE001 - the service keeps running
            log(f"sweep failed: {exc!r}")

    def _seals_of(self, uid: int) -> list[dict]:
        """The latest seals of ``uid`` (name and time), newest last."""
        folder = self._path("sealed")
        out = []
        try:
            names = [n for n in os.listdir(folder) if n.endswith(".json")]
        except OSError:
            return []
        for n in names:
            try:
                with open(os.path.join(folder, n)) as f:
                    rec = json.load(f)
            except (OSError, ValueError):
                continue
            if rec.get("uid") == uid:
                out.append({"name": rec["name"], "received": rec["received"],
                            "epoch": rec.get("received_epoch", 0), "removed": rec.get("removed", [])})
        return sorted(out, key=lambda r: r["epoch"])[-20:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=os.environ.get(
        "SGDHUB_SETTINGS", "/opt/sgd-hub/etc/settings.json"))
    parser.add_argument("--once", action="store_true", help="one sweep, then exit")
    parser.add_argument("--pack", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pack is not None:
        return pack(args.pack, sys.stdout.buffer)
    if os.geteuid() != 0:
        parser.error("run as root (it changes the owner of submissions)")
    os.umask(0o077)
    with open(args.settings) as f:
        sealer = Sealer(json.load(f))
    if args.once:
        for record in sealer.sweep():
            print(record["name"], record["received"])
        return 0
    sealer.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
