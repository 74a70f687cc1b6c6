"""Handling data that comes from learners: text for a terminal, files for grading.

Everything in a submission is chosen by its author: file names, notebook
contents, error messages its code raises, even its student id (a folder name).
Two helpers keep that data from acting on the instructor's side:

* :func:`printable` renders text for a terminal or a log line: every control
  character (C0 including newline and tab, DEL, C1, ESC sequences such as a
  clipboard write ``ESC ] 52``, Unicode line separators, and format characters
  such as the bidi overrides U+202A-U+202E and U+2066-U+2069) is shown as an
  escape (``\\n``, ``\\x1b``, ``\\u202e``) instead of reaching the terminal, and
  a backslash is doubled, so no escape can be faked either.
* :func:`remove_non_regular` deletes, without following them, symbolic links,
  fifos, sockets and device files from a submission folder before it is graded
  (a symlink to the solution notebook or the gradebook would otherwise be read
  with the grader's rights); :func:`copy_regular` copies only regular files and
  folders, never following a link.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Callable, Iterable

__all__ = ["printable", "remove_non_regular", "copy_regular"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
#: Unicode categories shown escaped: controls (C0, DEL, C1), format characters
#: (bidi embeddings/overrides/isolates, zero-width joiners, soft hyphen...),
#: surrogates, and the line and paragraph separators.
_ESCAPED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if unicodedata.category(char) in _ESCAPED_CATEGORIES:
        code = ord(char)
        if code <= 0xFF:
            return f"\\x{code:02x}"
        if code <= 0xFFFF:
            return f"\\u{code:04x}"
        return f"\\U{code:08x}"
    return char


def printable(text: object, limit: int | None = None) -> str:
    """``text`` as one line that is safe to print on a terminal.

    Every control or format character is replaced by a visible escape
    (``"\\n"`` -> ``\\n``, ESC -> ``\\x1b``, U+202E -> ``\\u202e``) and a
    backslash by two, so the result holds no character a terminal acts on,
    fits on one line, and reads back unambiguously. With ``limit``, the
    result is at most ``limit`` characters, ending in ``...`` when cut (an
    escape is never cut in half). ``None`` prints as ``""``; other objects
    through ``str()``.
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    if limit is not None and limit < 0:
        raise ValueError("limit must be at least 0")
    pieces: list[str] = []
    length = 0
    for char in text:
        piece = _escape(char)
        if limit is not None and length + len(piece) > limit:
            marker = "..."[:limit]
            while pieces and length + len(marker) > limit:
                length -= len(pieces.pop())
            return "".join(pieces) + marker
        pieces.append(piece)
        length += len(piece)
    return "".join(pieces)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "folder"),
                       (stat.S_ISREG, "file")):
        if test(mode):
            return name
    return "unknown file type"


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def remove_non_regular(folder: str | os.PathLike) -> list[str]:
    """Delete every entry under ``folder`` that is neither a regular file nor a
    folder (symlinks, fifos, sockets, devices), without following any link.

    Returns the paths removed (sorted). A ``folder`` that is itself a symlink
    (or not a folder) is removed and returned alone: it is never followed.
    Works on open folder descriptors, so a link swapped in for a folder during
    the walk is not followed either.
    """
    folder = os.fspath(folder)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        if stat.S_ISREG(st.st_mode):
            return []
        os.unlink(folder)
        return [folder]
    removed: list[str] = []

    def walk(fd: int, path: str) -> None:
        with os.scandir(fd) as entries:
            names = sorted(e.name for e in entries)
        for name in names:
            try:
                mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISREG(mode):
                continue
            if stat.S_ISDIR(mode):
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:         # unreadable, or replaced by a link since
                    mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
                    if stat.S_ISDIR(mode):
                        continue        # a folder we cannot open is not followed either
                else:
                    try:
                        walk(sub, os.path.join(path, name))
                    finally:
                        os.close(sub)
                    continue
            os.unlink(name, dir_fd=fd)
            removed.append(os.path.join(path, name))

    fd = os.open(folder, _DIR_FLAGS)
    try:
        walk(fd, folder)
    finally:
        os.close(fd)
    return sorted(removed)


def copy_regular(src: str | os.PathLike, dest: str | os.PathLike,
                 ignore: Callable[[str, list[str]], Iterable[str]] | None = None,
                 ) -> list[tuple[str, str]]:
    """Copy the regular files and folders of ``src`` to a new folder ``dest``.

    Symlinks, fifos, sockets and devices are skipped, never followed or opened
    (a fifo would block, a device could act); files are opened with
    ``O_NOFOLLOW`` and checked to be regular on the open descriptor. ``ignore``
    is ``shutil.copytree``'s: ``ignore(folder, names)`` returns names to leave
    out. Modes are not copied (new files get the umask's). Returns
    ``(relative path, kind)`` of every entry skipped, ``src`` itself included
    (as ``"."``) when it is not a real folder.
    """
    src, dest = os.fspath(src), os.fspath(dest)
    skipped: list[tuple[str, str]] = []
    try:
        top = os.open(src, _DIR_FLAGS)
    except OSError:
        skipped.append((".", _kind(os.lstat(src).st_mode)))
        return skipped

    def copy(fd: int, rel: str, target: str) -> None:
        os.mkdir(target)
        with os.scandir(fd) as entries:
            names = sorted(e.name for e in entries)
        dropped = set(ignore(os.path.join(src, rel), names)) if ignore else set()
        for name in names:
            if name in dropped:
                continue
            relpath = os.path.join(rel, name) if rel else name
            try:
                mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(mode):
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    skipped.append((relpath, "symlink"))
                    continue
                try:
                    copy(sub, relpath, os.path.join(target, name))
                finally:
                    os.close(sub)
            elif stat.S_ISREG(mode):
                try:
                    fin = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                                  | getattr(os, "O_CLOEXEC", 0), dir_fd=fd)
                except OSError:
                    skipped.append((relpath, "symlink"))
                    continue
                try:
                    if not stat.S_ISREG(os.fstat(fin).st_mode):
                        skipped.append((relpath, _kind(os.fstat(fin).st_mode)))
                        continue
                    with open(fin, "rb", closefd=False) as reader, \
                            open(os.path.join(target, name), "xb") as writer:
                        while chunk := reader.read(1 << 20):
                            writer.write(chunk)
                finally:
                    os.close(fin)
            else:
                skipped.append((relpath, _kind(mode)))

    try:
        copy(top, "", dest)
    finally:
        os.close(top)
    return skipped

