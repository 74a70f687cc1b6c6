"""nbgrader's exchange for the hub: private, sealed submissions, collected safely.

nbgrader's default exchange trusts the learner's side: ``submit`` runs as the
learner and leaves her the owner of her folder in ``inbound/`` (mode 0777,
files 0644), with the submission time in its name and in ``timestamp.txt``,
both hers to write; ``collect`` then copies whatever is there, symlinks
followed, with the instructor's rights. Here:

* :class:`PrivateSubmit` (the learner's ``submit``) copies only regular files
  and folders (a symlink or fifo in her folder is left out, with a warning),
  closes the folder to other learners (mode 0770, the instructor's group), and
  asks the hub's sealer (``sgd_sealer.py``, run as root) to seal it at once:
  the folder becomes a copy owned by the instructor that she can neither read
  nor change, stamped with the exchange's clock. If the sealer does not
  answer, its next sweep (every few seconds) seals the folder.
* :class:`SealedCollect` (the instructor's ``collect``) takes only sealed
  submissions: the seal record (``<course>/sealed/<name>.json``, written by
  root) gives the student and the receive time, which decides which
  submission is the latest and goes to ``timestamp.txt`` (and so to nbgrader's
  lateness); a submission whose files differ from the record in any way
  (changed, added, removed, not owned by the instructor) is refused with an
  error, and the copy takes regular files only: symlinks, fifos, sockets and
  devices are removed, never followed.

setup.sh puts this folder on ``sys.path`` and selects both classes in the hub's
``nbgrader_config.py`` (``c.ExchangeFactory.submit`` / ``.collect``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
import stat
from collections import defaultdict

from nbgrader.exchange.default import ExchangeCollect, ExchangeSubmit
from nbgrader.utils import ignore_patterns, parse_utc
from traitlets import Bool, Unicode

from course.grading.untrusted import copy_regular, printable

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _safe_copy(exchange, src: str, dest: str) -> list[tuple[str, str]]:
    """nbgrader's ``do_copy`` (size limit, ignore patterns) without following links."""
    size = exchange.get_size(src)
    if size > 1000 * exchange.coursedir.max_dir_size:
        raise RuntimeError(f"Directory size is too big. Size is {size}, maximum size is "
                           f"{1000 * exchange.coursedir.max_dir_size}")
    return copy_regular(src, dest, ignore=ignore_patterns(
        exclude=exchange.coursedir.ignore, include=exchange.coursedir.include,
        max_file_size=exchange.coursedir.max_file_size, log=exchange.log))


class PrivateSubmit(ExchangeSubmit):
    """``nbgrader submit``: regular files only, folder mode 0770, then sealed by the hub."""

    sealer_socket = Unicode(
        "", help="The Unix socket of the hub's sealer (sgd_sealer.py); empty: do not ask"
    ).tag(config=True)

    def do_copy(self, src, dest, log=None):
        for path, kind in _safe_copy(self, src, dest):
            self.log.warning("Not submitted: %s is a %s", printable(path), kind)

    def copy_files(self) -> None:
        super().copy_files()
        dest = os.path.join(self.inbound_path, self.assignment_filename)
        if os.path.isdir(dest) and os.stat(dest).st_uid == os.getuid():
            os.chmod(dest, 0o770)
        self.seal()

    def seal(self) -> None:
        """Ask the sealer to seal now; say when the exchange received the submission."""
        if not self.sealer_socket:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(60)
                s.connect(self.sealer_socket)
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            seals = {r["name"]: r for r in json.loads(reply)}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.log.warning("The exchange's sealer did not answer (%s): your submission will be "
                             "sealed, and its time taken, when it runs again.", exc)
            return
        mine = seals.get(self.assignment_filename)
        if mine is None:
            self.log.warning("The exchange has not sealed this submission yet: it will, and its "
                             "time is the time it is sealed.")
            return
        self.log.info("Received and sealed by the exchange at %s (your submission time); "
                      "it can no longer be changed.", mine["received"])
        for path, kind in mine.get("removed", []):
            self.log.warning("Left out by the exchange: %s (%s)", printable(path), printable(kind))


class SealedCollect(ExchangeCollect):
    """``nbgrader collect`` of sealed submissions only, dated by the exchange."""

    require_seal = Bool(
        True, help="Collect only submissions sealed by the hub's sealer (sgd_sealer.py)"
    ).tag(config=True)

    def _seal_record(self, filename: str) -> dict | None:
        path = os.path.join(self.course_path, "sealed", filename + ".json")
        try:
            with open(path, "rb") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("name") != filename:
            return None
        return record

    def _path_to_record(self, path):
        record = super()._path_to_record(path)
        seal = self._seal_record(record["filename"])
        record["seal"] = seal
        if seal is not None:
            record["timestamp"] = parse_utc(seal["received"])
            record["username"] = seal["student"]
        return record

    def init_src(self):
        super().init_src()               # picks each student's latest record by our timestamps
        if not self.require_seal:
            return
        pattern = os.path.join(self.inbound_path, "{}+{}+*".format(
            self.coursedir.student_id or "*", self.coursedir.assignment_id))
        records = [self._path_to_record(f) for f in glob.glob(pattern)]
        for rec in records:
            if rec["seal"] is None:
                self.log.warning("Not collected: %s is not sealed by the exchange (is the hub's "
                                 "sgd-sealer service running?)", printable(rec["filename"]))
        by_student = defaultdict(list)
        for rec in records:
            if rec["seal"] is not None:
                by_student[rec["username"]].append(rec)
        self.src_records = []
        for recs in by_student.values():
            recs = self._sort_by_timestamp(recs)
            if self.duedate is not None and self.before_duedate:
                on_time = [r for r in recs if r["timestamp"] <= self.duedate]
                recs = on_time or recs
            self.src_records.append(recs[0])

    def verify(self, rec) -> str:
        """Why the sealed folder no longer is what was sealed, or ``""``."""
        seal = rec["seal"]
        src = os.path.join(self.inbound_path, rec["filename"])
        st = os.lstat(src)
        if not stat.S_ISDIR(st.st_mode):
            return "not a folder"
        if st.st_uid != seal.get("owner_uid"):
            return f"owned by uid {st.st_uid}, sealed as uid {seal.get('owner_uid')}'s"
        found: dict[str, str] = {}
        problems: list[str] = []

        def walk(fd: int, rel: str) -> None:
            with os.scandir(fd) as entries:
                names = sorted(e.name for e in entries)
            for name in names:
                path = f"{rel}/{name}" if rel else name
                mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    sub = os.open(name, _DIR, dir_fd=fd)
                    try:
                        walk(sub, path)
                    finally:
                        os.close(sub)
                elif stat.S_ISREG(mode):
                    h = hashlib.sha256()
                    fin = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
                    with open(fin, "rb") as f:
                        while chunk := f.read(1 << 20):
                            h.update(chunk)
                    found[path] = h.hexdigest()
                else:
                    problems.append(f"{path} is not a regular file")

        top = os.open(src, _DIR)
        try:
            walk(top, "")
        finally:
            os.close(top)
        sealed = seal.get("files", {})
        problems += [f"{p} changed" for p in sorted(set(found) & set(sealed)) if found[p] != sealed[p]]
        problems += [f"{p} added" for p in sorted(set(found) - set(sealed))]
        problems += [f"{p} removed" for p in sorted(set(sealed) - set(found))]
        return "; ".join(problems)

    def copy_files(self):
        if not self.require_seal:
            self._copy_unsealed()
            return
        if not self.src_records:
            self.log.warning("No sealed submissions of '%s' for course '%s' to collect",
                             self.coursedir.assignment_id, self.coursedir.course_id)
        for rec in self.src_records:
            student = rec["username"]
            name = printable(rec["filename"])
            problem = self.verify(rec)
            if problem:
                self.log.error("Not collected: %s changed after it was sealed (%s)",
                               name, printable(problem, 500))
                continue
            dest = self.coursedir.format_path(self.coursedir.submitted_directory, student,
                                              self.coursedir.assignment_id)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.lexists(dest):
                existing = self.coursedir.get_existing_timestamp(dest) if os.path.isdir(dest) else None
                newer = existing is None or rec["timestamp"] > existing
                redo = self.before_duedate and existing != rec["timestamp"]
                if not (self.update and newer) and not redo:
                    self.log.info("Submission already collected%s: %s %s",
                                  "" if self.update else " (use --update to update)",
                                  printable(student), self.coursedir.assignment_id)
                    continue
                self.log.info("Updating submission: %s %s", printable(student),
                              self.coursedir.assignment_id)
                if os.path.isdir(dest) and not os.path.islink(dest):
                    shutil.rmtree(dest)
                else:
                    os.unlink(dest)
            else:
                self.log.info("Collecting submission: %s %s (received %s)", printable(student),
                              self.coursedir.assignment_id, rec["seal"]["received"])
            src = os.path.join(self.inbound_path, rec["filename"])
            for path, kind in _safe_copy(self, src, dest):
                self.log.warning("Removed from %s's submission: %s (%s)", printable(student),
                                 printable(path), kind)
            with open(os.path.join(dest, "timestamp.txt"), "w") as f:
                f.write(rec["seal"]["received"])       # the exchange's time, never the learner's

    def _copy_unsealed(self):
        """nbgrader's collect, but without following links (require_seal = False)."""
        original = self.do_copy

        def do_copy(src, dest, log=None):
            for path, kind in _safe_copy(self, src, dest):
                self.log.warning("Removed from %s: %s (%s)", printable(src), printable(path), kind)
        self.do_copy = do_copy
        try:
            super().copy_files()
        finally:
            self.do_copy = original

