"""The grading child's own protections, set before the learner's code runs:
answer keys disabled and neutralized, and an audit hook that refuses the
answer keys' source files, new processes, ctypes, tracing and the
interpreter's frames and object lists (the kernel adds course.grading.seccomp)."""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import os
import pathlib
import sys
import threading
import types
from typing import Any

from course.grading.source import REPO

#: The builtins as they were before any learner code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001


_STAT = os.stat


#: Audit events the learner's code may not raise: processes, ctypes, the
#: garbage collector's object lists, and what could make a file name checked
#: by the audit hook name another file by the time it is opened (links, chdir).
_DENIED_EVENTS = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "os.kill", "os.killpg", "os.symlink", "os.link", "os.chdir",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile"})


#: Attributes whose reading raises ``object.__getattr__``: those that lead to
#: a frame (and from there up the harness's stack) are refused.
_FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})


def _protected_files() -> set[tuple[int, int]]:
    """(device, inode) of every file of the course package and of torch's SGD
    source (and their bytecode): the answer keys' source code; and of their
    folders, which could otherwise be opened for a relative ``dir_fd`` open."""
    import torch.optim
    files = []
    for dirpath, _dirs, names in os.walk(REPO / "course"):
        files += [dirpath] + [os.path.join(dirpath, n) for n in names]
    optim = pathlib.Path(torch.optim.__file__).parent
    files += [str(optim), str(optim / "__pycache__")]     # no os.open(name, dir_fd=...)
    for stem in ("sgd", "_functional"):
        files.append(str(optim / f"{stem}.py"))
        files += [str(f) for f in (optim / "__pycache__").glob(f"{stem}.*")]
    ids = set()
    for f in files:
        try:
            st = _STAT(f)
        except OSError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return ids


def lock_down() -> None:
    """From now on (for good: audit hooks cannot be removed), refuse to open
    the answer keys' source files, to start processes, to use ctypes, to list
    the interpreter's objects or reach its frames, to make links and to change
    directory. (New processes and programs are also refused by the kernel:
    :mod:`course.grading.seccomp`.)"""
    protected = _protected_files()
    stat, denied, frames = _STAT, _DENIED_EVENTS, _FRAME_ATTRIBUTES
    harness = frozenset(str(f) for folder in ("grading", "probes", "exercises")
                        for f in (REPO / "course" / folder).glob("*.py"))
    # Paths whose file name cannot change between this check and the open:
    # str, bytes, os.DirEntry and pathlib paths with pathlib's own methods
    # (not a learner's path-like object that names another file the second time).
    plain, paths = (str, bytes, os.DirEntry), (pathlib.PosixPath, pathlib.PurePosixPath)
    fspath, to_str = pathlib.PurePath.__fspath__, pathlib.PurePath.__str__
    attr = type.__getattribute__
    getframe, local, callers = sys._getframe, threading.local(), _frame_callers()

    def caller_of_getframe() -> tuple[str, str]:
        """(file, function) of the code that called sys._getframe (our own call
        of it here is let through by the hook: ``local.busy``)."""
        local.busy = True
        try:
            code = getframe(2).f_code               # 0 here, 1 the hook, 2 the caller
            return code.co_filename, code.co_name
        finally:
            local.busy = False

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "sys._getframe":
            if getattr(local, "busy", False):
                return
            # A frame leads to every frame below it (f_back) and their variables:
            # only library code that hands no frame on gets one (_frame_callers).
            file, function = caller_of_getframe()
            allowed = callers.get(file, ())
            if allowed == () or (allowed is not None and function not in allowed):
                raise PermissionError("graded code may not inspect the interpreter's frames")
            if args and getattr(getattr(args[0], "f_code", None), "co_filename", "") in harness:
                raise PermissionError("graded code may not reach the grading harness's frames")
        elif event == "open":
            path = args[0] if args else None
            if path is None or type(path) is int:
                return
            kind = type(path)
            if kind not in plain and not (kind in paths and attr(kind, "__fspath__") is fspath
                                          and attr(kind, "__str__") is to_str):
                raise PermissionError("graded code may only open files by str, bytes or "
                                      "pathlib paths")
            try:
                st = stat(path)
            except (OSError, TypeError, ValueError):
                return
            if (st.st_dev, st.st_ino) in protected:
                raise PermissionError("graded code may not read the course's or torch's "
                                      "optimizer source files")
        elif event in denied or event.startswith("ctypes."):
            raise PermissionError(f"graded code may not use {event}")
        elif event == "object.__getattr__" and len(args) > 1 and args[1] in frames:
            raise PermissionError("graded code may not reach the interpreter's frames")

    sys.addaudithook(hook)


def _frame_callers() -> dict[str, tuple[str, ...] | None]:
    """The code allowed to call sys._getframe in the grading child, as
    {file: None (any function) or the functions}: library code that reads a
    frame's module name or its own locals and hands no frame on (typing,
    typing_extensions, enum, namedtuple, warnings), and traceback's
    extract_stack and format_stack (names and line numbers, no frames, no
    locals: torch calls them). Never the learner's code, inspect, logging or
    traceback.walk_stack, which hand frames back to their caller."""
    import collections
    import enum
    import traceback
    import typing
    import warnings

    import typing_extensions
    callers: dict[str, tuple[str, ...] | None] = {
        str(m.__file__): None for m in (typing, typing_extensions, enum, collections, warnings)}
    callers[str(traceback.__file__)] = ("extract_stack", "format_stack")
    return callers


class Forbidden(Exception):
    """Raised when graded code calls something the exercise must not use."""


#: Disabled in every lesson: the learner-facing checks (derived from the
#: specs), the specs (their references and flows) and the grading harness can
#: no longer be imported by graded code; the harness keeps what it loaded.
ALWAYS_FORBIDDEN = ("course.checks", "course.exercises", "course.grading")


def disable(dotted_names: tuple[str, ...] | list[str]) -> None:
    """Make each forbidden name unusable in this process.

    A dotted name is a module (``course.checks``: it can no longer be
    imported), or a function or class reached through modules and classes
    (``torch.optim.SGD``, ``course.sgd.sgd_update``,
    ``course.optim.SGD._fused_step``). The name is replaced by a stand-in that
    raises :class:`Forbidden`; so is every other module-level alias of the
    same object (``course.optim`` imports ``sgd`` by name), and the
    object itself is neutralized in place -- a function's code and a class's
    methods refuse to run -- so that no other route (a subclass list, a
    reference kept by another object) leads back to a working answer key.
    """
    replaced: dict[int, tuple[Any, Any]] = {}
    for dotted in dotted_names:
        if is_module(dotted):
            _block_module(dotted)
            continue
        holder, attr = owner_of(dotted)
        original = getattr(holder, attr, None)
        if original is None or getattr(original, "_course_forbidden", False):
            continue
        stand_in = _refuser(dotted, original)
        neutralize(original, dotted)
        try:
            setattr(holder, attr, stand_in)
        except (AttributeError, TypeError):
            pass
        replaced[id(original)] = (original, stand_in)
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            hit = replaced.get(id(value))
            if hit is not None and hit[0] is value:
                namespace[key] = hit[1]


def is_module(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, AttributeError, ValueError):
        return False


def _block_module(name: str) -> None:
    """Make ``import name`` (and of its submodules) fail from now on."""
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        sys.modules[loaded] = None  # type: ignore[assignment]
    sys.modules[name] = None  # type: ignore[assignment]
    parent, _, child = name.rpartition(".")
    if parent and sys.modules.get(parent) is not None:
        try:
            delattr(sys.modules[parent], child)
        except AttributeError:
            pass


def owner_of(dotted: str) -> tuple[Any, str]:
    """The module or class that holds the last part of ``dotted``, and that part."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ImportError(f"cannot resolve {dotted}")


class _Refused(type):
    """Metaclass of the stand-ins for forbidden classes: any attribute of the
    class (``torch.optim.SGD.step``) refuses too."""

    def __getattr__(cls, name: str) -> Any:
        raise Forbidden(f"{cls.__dict__['_course_dotted']} may not be used by this exercise")


def _refuser(dotted: str, original: Any) -> Any:
    """A stand-in for ``original`` that raises :class:`Forbidden` when used."""
    def refuse(*_a: Any, **_k: Any) -> Any:
        raise Forbidden(f"{dotted} may not be used by this exercise")
    if isinstance(original, type):
        return _Refused(original.__name__, (), {
            "__init__": refuse, "__new__": refuse, "__init_subclass__": classmethod(refuse),
            "_course_forbidden": True, "_course_dotted": dotted})
    refuse._course_forbidden = True  # type: ignore[attr-defined]
    return refuse


def _refusing_code(dotted: str) -> types.CodeType:
    """Code for a function that raises whatever it is called with (builtins only)."""
    message = f"{dotted} may not be used by this exercise"
    namespace: dict[str, Any] = {}
    exec(f"def refused(*args, **kwargs):\n    raise RuntimeError({message!r})\n",  # noqa: S102
         namespace)
    return namespace["refused"].__code__


def neutralize(obj: Any, dotted: str) -> None:
    """Make ``obj`` itself refuse to work: a Python function's code, a class's methods."""
    if isinstance(obj, types.FunctionType):
        if not obj.__code__.co_freevars:
            obj.__code__ = _refusing_code(dotted)
            obj.__defaults__ = obj.__kwdefaults__ = None
    elif isinstance(obj, type):
        for name, value in list(vars(obj).items()):
            if isinstance(value, (types.FunctionType, staticmethod, classmethod)):
                try:
                    setattr(obj, name, _refuser(f"{dotted}.{name}", value))
                except (AttributeError, TypeError):
                    pass
        try:
            obj.__init_subclass__ = classmethod(_refuser(dotted, None))  # type: ignore[assignment]
        except (AttributeError, TypeError):
            pass
