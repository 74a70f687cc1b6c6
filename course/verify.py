"""Re-verify a learner's exercises outside their kernel, so that no code in the
notebook can decide its own grade.

Threat model: a submission may patch anything in its kernel (torch, numpy,
``course``, builtins, IPython) before any test cell runs. So the grade does
not rest on the in-kernel test cells alone. For every test cell that has a
*probe* (``course/probes/lessonNN.py``) we

1. start a fresh interpreter: a child forked from a *zygote* process that
   has torch and the probes imported and runs inside a bubblewrap sandbox
   when available (read-only file system, no network, solutions and
   gradebook hidden); each child starts from the zygote's clean state;
2. in it, import the probes first, then disable the answer keys the lesson
   forbids (``torch.optim.SGD``, ``course.sgd.sgd_update``, ...), then run
   the learner's definitions (their exercise cells, plus imports and
   definitions from the other cells);
3. call each probe, which runs the learner's functions on fixed inputs and
   returns plain values; these are encoded as raw bytes (tensors, arrays) or
   JSON scalars, never as learner-defined objects;
4. back in the trusted parent, compare them with the values the *solution*
   notebook's definitions produce in the same harness: byte for byte, or
   within a tolerance where the probe allows it.

A learner's code runs only in the child, and the comparison happens only in
the parent, so monkeypatching, always-equal objects or patched tracebacks
cannot change the verdict; delegating to torch's optimizer or to the course's
answer key fails because those are disabled in the child.

Inside the child the harness and the probes do not trust anything the
learner's code can reach: they use a snapshot of the builtins taken before it
runs (a patched ``type`` or ``isinstance`` cannot lie to them) and torch's C
methods (a patched ``Tensor.numpy`` cannot corrupt an encoding), and an audit
hook (:func:`_lock_down`) stops the learner's code from reading the course's
or torch's SGD source files (to re-run a fresh copy of an answer key), from
starting processes, and from ctypes and the garbage collector's object lists.
"""

from __future__ import annotations

import ast
import atexit
import base64
import concurrent.futures
import builtins
import dataclasses
import functools
import importlib
import importlib.util
import io
import json
import os
import pathlib
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tokenize
import types
from typing import Any, Callable

import numpy as np

from course import exercises
from course.exercises import observations

#: In the child, the learner's code may patch builtins (``type``, ``isinstance``)
#: or library functions; the harness keeps its own copies, taken at import,
#: before any learner code runs.
__builtins__ = dict(vars(builtins))  # noqa: A001
_B64ENCODE = base64.b64encode
_JSON_DUMPS = json.dumps
_STAT = os.stat
_ASCONTIGUOUS = np.ascontiguousarray
_NP_GENERIC = np.generic

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Probe:
    """How to re-verify one test cell.

    Attributes:
        run: called with the learner's namespace and the verification's
            seed, from which it draws its inputs (a fresh seed per
            verification: values recorded for another seed are wrong);
            returns a list of values (tensors, arrays, numbers, strings,
            None, nested lists).
        rtol: 0 means bit-for-bit equality; otherwise arrays are compared
            with ``np.allclose(rtol=rtol, atol=atol)``.
        atol: absolute tolerance used with ``rtol``.
    """

    run: Callable[[dict[str, Any], int], list[Any]]
    rtol: float = 0.0
    atol: float = 0.0


# --------------------------------------------------------------- source

def lesson_module(assignment: str) -> str:
    """``"04-momentum"`` -> ``"course.probes.lesson04"`` (lessons without specs)."""
    return f"course.probes.lesson{assignment[:2]}"


def _observe(exercise: Any, ns: dict[str, Any], seed: int) -> list[Any]:
    """A probe derived from an exercise spec: observe the learner's definition
    on the visible cases and the hidden ones drawn for ``seed``."""
    return observations(exercise, ns[exercise.name], seed)


def lesson_probes(assignment: str) -> tuple[dict[str, Probe], list[str]]:
    """The probes of an assignment (grade_id -> Probe, derived from its
    exercise specs) and the answer keys disabled while it is graded."""
    specs = exercises.lesson(assignment)
    if specs is not None:
        return ({ex.grade_id: Probe(functools.partial(_observe, ex), ex.rtol, ex.atol)
                 for ex in specs.EXERCISES}, list(specs.FORBIDDEN))
    module = importlib.import_module(lesson_module(assignment))
    return module.PROBES, list(getattr(module, "FORBIDDEN", ()))


def answer_keys(assignment: str) -> list[tuple[str, Any]]:
    """What computes right answers in an assignment's spec module, as
    (label, object): every exercise's reference, every catalogued mistake's
    implementation (a correct rule with one switch), the module's extra
    ``ANSWER_KEYS`` names and the functions of the SGD mistake catalogue.

    The grading child needs none of them (the expected values come from the
    solution notebook in another child), yet learner code could reach them,
    e.g. through ``__globals__`` of a function a case passes to it: the child
    neutralizes them all before the learner's code runs.
    """
    specs = exercises.lesson(assignment)
    if specs is None:
        return []
    keys = []
    for ex in specs.EXERCISES:
        keys.append((f"{ex.grade_id} reference", ex.reference))
        keys += [(f"{ex.grade_id} mistake {m.name}", m.impl) for m in ex.mistakes]
    for name in getattr(specs, "ANSWER_KEYS", ()):
        keys.append((f"{specs.__name__}.{name}", getattr(specs, name)))
    catalogue = sys.modules.get("course.exercises.sgd_mistakes")
    if catalogue is not None:
        keys += [(f"{catalogue.__name__}.{name}", value) for name, value in vars(catalogue).items()
                 if isinstance(value, types.FunctionType)
                 and value.__module__ == catalogue.__name__]
    return [(label, obj) for label, obj in keys
            if isinstance(obj, (types.FunctionType, type))
            and str(getattr(obj, "__module__", "")).startswith("course.")]


def has_probes(assignment: str) -> bool:
    """Whether an assignment's test cells are re-verified."""
    return exercises.lesson(assignment) is not None or \
        importlib.util.find_spec(lesson_module(assignment)) is not None


def learner_source(nb: Any) -> list[str]:
    """The code the child runs: exercise cells whole; from other cells only
    imports, definitions and simple constant assignments; test cells never."""
    chunks = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("grade"):
            continue
        chunks.append(cell.source if meta.get("solution") else _definitions(cell.source))
    return [c for c in chunks if c.strip()]


def _definitions(source: str) -> str:
    """Top-level imports, defs and classes of a non-exercise cell."""
    try:
        tree = ast.parse(_strip_magics(source))
    except SyntaxError:
        return ""
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)
    nodes = [n for n in tree.body if isinstance(n, keep)]
    return ast.unparse(ast.Module(body=nodes, type_ignores=[])) if nodes else ""


def _strip_magics(source: str) -> str:
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln
                     for ln in source.splitlines())


#: Constructs that only a submission trying to reach around the sandbox needs:
#: re-importing or re-running the course's code from its source (to get an
#: answer key back after it was disabled), digging objects out of the
#: interpreter, or killing the process. Comments are not scanned.
BANNED = {
    r"\bimportlib\b": "importlib",
    r"\breload\s*\(": "reload()",
    r"\bgetsource\w*\b|\bimport\s+inspect\b|\bfrom\s+inspect\b|\binspect\s*\.": "inspect",
    r"\bsys\.modules\b": "sys.modules",
    r"__import__": "__import__",
    r"\bsolutions/|\bgradebook\b": "reading course files",
    r"\bos\._exit\b|\bos\.kill\b|\bos\.abort\b": "killing the process",
    r"\bctypes\b": "ctypes",
    r"__file__|site-packages|__path__|__spec__|__loader__": "reading the course's source files",
    r"\brunpy\b|\bpydoc\b|\bbuiltins\b|(?<![.\w])(exec|eval|compile)\s*\(":
        "running code from text",
    r"\bcourse\s*\.\s*(probes|verify)\b|\bfrom\s+course\s+import\s[^\n]*\b(probes|verify)\b":
        "the grading harness",
    r"__(subclasses|globals|code|closure|wrapped|defaults|kwdefaults)__|\b_getframe\b"
    r"|\bf_(back|globals|locals|builtins)\b|\bgc\.get_\w+|\bimport\s+gc\b|\bfrom\s+gc\b":
        "introspection of the interpreter",
}


def _without_comments(source: str) -> str:
    """``source`` with its comments blanked (strings and code kept as they are)."""
    lines = source.splitlines(keepends=True)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                row, col = tok.start
                line = lines[row - 1]
                lines[row - 1] = line[:col] + line[len(line.rstrip("\r\n")):]
    except (tokenize.TokenError, SyntaxError, IndexError):
        return source
    return "".join(lines)


def banned_constructs(source: str) -> list[str]:
    """Names of the suspicious constructs that appear in ``source`` (outside
    comments). Advisory only: the grader logs them for the instructor; no
    verdict depends on them (the sandbox, the audit hook and the seccomp
    filter are what stop such code)."""
    code = _without_comments(source)
    return sorted({name for pattern, name in BANNED.items() if re.search(pattern, code)})


# --------------------------------------------------------------- encoding

def encode(value: Any) -> Any:
    """A JSON-safe, learner-proof rendering of a probe value.

    Only exact built-in types are trusted; a subclass or unknown object is
    recorded by its type name, so an object whose ``__eq__`` always returns
    True can never match a real value.
    """
    tensor_types, tb, uint8 = _torch_originals()
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return {"float": float.hex(value)}
    if kind in (list, tuple):
        return [encode(v) for v in value]
    if kind in tensor_types:
        # torch._C.TensorBase is immutable: its methods are torch's, whatever
        # the learner's code did to torch.Tensor.
        t = tb.contiguous(tb.cpu(tb.detach(value)))
        raw = tb.numpy(tb.view(tb.reshape(t, (-1,)), uint8)).tobytes() if tb.numel(t) else b""
        return {"tensor": str(tb.dtype.__get__(t)), "shape": list(tb.size(t)),
                "bytes": _B64ENCODE(raw).decode()}
    if kind is np.ndarray or isinstance(value, _NP_GENERIC) and kind.__module__ == "numpy":
        a = _ASCONTIGUOUS(value)
        return {"array": str(a.dtype), "shape": list(a.shape),
                "bytes": _B64ENCODE(a.tobytes()).decode()}
    return {"object": f"{kind.__module__}.{kind.__qualname__}"}


_TORCH: list[Any] = []


def _torch_originals() -> tuple[tuple[type, ...], Any, Any]:
    """torch's tensor types, C tensor methods and uint8, captured once (in the
    child: before the learner's code runs)."""
    if not _TORCH:
        import torch
        _TORCH.extend([(torch.Tensor, torch.nn.Parameter), torch._C.TensorBase, torch.uint8])
    return _TORCH[0], _TORCH[1], _TORCH[2]


def _decode_numeric(v: Any) -> np.ndarray | None:
    """Float view of an encoded number/array/tensor, for tolerant comparison."""
    import torch
    if isinstance(v, (bool, int)):
        return np.asarray(float(v))
    if isinstance(v, dict) and "float" in v:
        return np.asarray(float.fromhex(v["float"]))
    if isinstance(v, dict) and ("array" in v or "tensor" in v):
        raw = base64.b64decode(v["bytes"])
        if "array" in v:
            arr = np.frombuffer(raw, dtype=np.dtype(v["array"]))
        else:
            dtype = getattr(torch, v["tensor"].removeprefix("torch."))
            arr = torch.frombuffer(bytearray(raw), dtype=dtype).numpy() if raw \
                else np.zeros(0)
        return arr.reshape(v["shape"]).astype(float) if arr.dtype.kind in "fiub" else None
    return None


def same(actual: Any, expected: Any, probe: Probe) -> bool:
    """Compare encoded values exactly, or within the probe's tolerance.

    ``actual`` comes from the child, where the learner's code ran (and may have
    patched torch or numpy): anything malformed in it is a mismatch, never an
    exception.
    """
    try:
        return _same(actual, expected, probe)
    except Exception:  # noqa: BLE001 - untrusted input
        return False


def _same(actual: Any, expected: Any, probe: Probe) -> bool:
    if probe.rtol == 0 and probe.atol == 0:
        return actual == expected
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and \
            all(_same(a, e, probe) for a, e in zip(actual, expected))
    a, e = _decode_numeric(actual), _decode_numeric(expected)
    if a is None or e is None:
        return actual == expected
    return a.shape == e.shape and bool(np.allclose(a, e, rtol=probe.rtol, atol=probe.atol,
                                                   equal_nan=True))


# --------------------------------------------------------------- child side

#: What the zygote imports before it forks: everything a verification needs
#: that takes time to import (torch alone takes about a second).
_PRELOAD = ("torch", "torch.optim", "numpy", "matplotlib.pyplot", "course.exercises",
            "course.seccomp")

#: Limits of one re-verification child (bytes): its memory (address space:
#: torch alone maps about 0.8 GiB), each file it writes, its result pipe.
CHILD_MEMORY = 4 << 30
CHILD_FILE_SIZE = 64 << 20
_MAX_OUTPUT = 16 << 20
#: The zygote's request: lesson ids look like this (nothing else is accepted).
_LESSON = re.compile(r"[0-9]{2}")


def _zygote(sock_fd: int) -> None:
    """A sandboxed server that has torch imported and forks one fresh child
    per verification, and is *pristine*: it never reads a verification's
    spec (the learner's source, the seed) nor a child's results.

    Each request on ``sock_fd`` (a Unix socket to the trusted parent) is a
    short JSON header -- the lesson's two digits and the deadline -- with two
    file descriptors attached: the read end of the pipe the parent writes the
    spec into, and the write end of the pipe the child's results go to. The
    zygote imports the lesson's probes (code of the package, no request
    data), forks, closes both descriptors, waits for the child (killing it
    at the deadline) and answers with the child's exit status. So no
    previous verification's data is ever in the memory a child starts from.
    """
    import ctypes
    import socket

    import matplotlib
    # Not dumpable: no child (same user, no capabilities) may open this
    # process's /proc/<pid>/mem, environ, ... to tamper with the next child.
    if ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) != 0:          # PR_SET_DUMPABLE, 0
        raise SystemExit("course.verify: prctl(PR_SET_DUMPABLE) failed")
    # Children must not find modules planted in the shared scratch folder.
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    matplotlib.use("Agg")
    for name in _PRELOAD:
        importlib.import_module(name)
    _torch_originals()
    sock = socket.socket(fileno=sock_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        try:
            header, fds, _flags, _addr = socket.recv_fds(sock, 4096, 2)
        except OSError:
            return
        if not header:
            return                                     # the parent has gone
        try:
            request = json.loads(header)
            lesson, deadline = str(request["lesson"]), float(request["deadline"])
            if not _LESSON.fullmatch(lesson) or len(fds) != 2:
                raise ValueError("bad request")
        except (ValueError, KeyError, TypeError):
            for fd in fds:
                os.close(fd)
            sock.sendall(b'{"error": "bad request"}\n')
            continue
        try:        # the lesson's specs (and what they import) once, before any fork
            if exercises.lesson(lesson) is None:
                importlib.import_module(f"course.probes.lesson{lesson}")
        except Exception:  # noqa: BLE001 - the child reports it
            pass
        spec_fd, out_fd = fds
        folder = tempfile.mkdtemp(prefix="child-")
        pid = os.fork()
        if pid == 0:                                   # the child
            try:
                sock.close()
                os.chdir(folder)
                os.environ["TMPDIR"] = tempfile.tempdir = folder
                _child(spec_fd, out_fd)
            finally:
                os._exit(0)
        os.close(spec_fd)
        os.close(out_fd)
        status, timed_out = _wait(pid, deadline)
        shutil.rmtree(folder, ignore_errors=True)
        sock.sendall(json.dumps({"status": status, "timed_out": timed_out}).encode() + b"\n")


def _wait(pid: int, seconds: float) -> tuple[int, bool]:
    """Wait for a child, killing it at the deadline; (wait status, timed out)."""
    fd = os.pidfd_open(pid)
    try:
        timed_out = not select.select([fd], [], [], max(seconds, 0))[0]
    finally:
        os.close(fd)
    if timed_out:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return os.waitpid(pid, 0)[1], timed_out


def _child(spec_fd: int, out_fd: int) -> None:
    """One verification in a freshly forked child: limits and the seccomp
    filter first, then the spec from its pipe, then :func:`_serve`."""
    import resource

    from course import seccomp
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    resource.setrlimit(resource.RLIMIT_FSIZE, (CHILD_FILE_SIZE, CHILD_FILE_SIZE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    seccomp.install()
    with os.fdopen(spec_fd, "rb") as spec_in:
        spec = json.loads(spec_in.read(_MAX_OUTPUT))
    _serve(spec, os.fdopen(out_fd, "w"))


def _serve(spec: dict[str, Any], out: Any) -> None:
    """One verification: probes first, then the learner's code, then the probes;
    a JSON line per probe to ``out``."""
    probes, forbidden = lesson_probes(spec["assignment"])
    runs = {gid: probe.run for gid, probe in probes.items()}
    _torch_originals()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    _disable(list(ALWAYS_FORBIDDEN) + forbidden)
    for label, key in answer_keys(spec["assignment"]):
        _neutralize(key, label)
    _preimport(spec["source"])
    _lock_down()
    # The learner's code runs in a fresh ``__main__`` module, as in a notebook
    # kernel, so that pickle finds the classes it defines.
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    ns: dict[str, Any] = main.__dict__
    ns["__builtins__"] = builtins    # the real ones, not the harness's snapshot
    errors = []
    step = float(spec.get("step_seconds", STEP_SECONDS))
    seed = int(spec["seed"])

    def time_up(*_args: Any) -> None:
        raise _TimeUp(f"timed out after {step:g} s (an infinite loop?)")
    signal.signal(signal.SIGALRM, time_up)
    for chunk in spec["source"]:
        try:
            signal.setitimer(signal.ITIMER_REAL, step)
            exec(compile(chunk, "<submission>", "exec"), ns)  # noqa: S102 - sandboxed child
        except BaseException as exc:  # noqa: BLE001 - a broken cell must not stop grading
            if not isinstance(exc, ImportError):
                errors.append(_describe(exc))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    # One line per probe, written as soon as it is known: if the learner's
    # code hangs (and even ignores the alarm), the probes done so far count.
    for gid in spec["grade_ids"]:
        result: dict[str, Any] = {"error": f"timed out after {step:g} s (an infinite loop?)"}
        try:
            signal.setitimer(signal.ITIMER_REAL, step)
            try:
                result = {"ok": encode(runs[gid](ns, seed))}
            except BaseException as exc:  # noqa: BLE001
                message = _describe(exc)
                if errors and isinstance(exc, (NameError, KeyError)):   # a definition is missing
                    message += f" (running your code raised {errors[0]})"
                result = {"error": message[:500]}
        except BaseException:  # noqa: BLE001 - the alarm, while describing an error
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        out.write(_JSON_DUMPS({gid: result}) + "\n")
        out.flush()


#: Seconds for each exercise cell and each probe in the child (at most; a
#: quarter of the whole run's time limit when that is shorter), so that one
#: endless loop costs only its own exercise.
STEP_SECONDS = 20.0


class _TimeUp(BaseException):
    """Raised in the child when a cell or a probe runs out of time."""


def _describe(exc: BaseException) -> str:
    """``"TypeName: message"`` for any exception, even one whose str() fails."""
    try:
        return f"{type(exc).__name__}: {str(exc)[:400]}"
    except BaseException:  # noqa: BLE001 - a learner-defined exception
        return type(exc).__name__


def _preimport(source: list[str]) -> None:
    """Import the ``course`` and ``torch`` modules the notebook imports, now,
    while their files can still be read (see :func:`_lock_down`)."""
    names = set()
    for chunk in source:
        try:
            tree = ast.parse(chunk)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
    for name in sorted(names):
        if name.split(".")[0] in ("course", "torch") and _is_module(name):
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 - the learner's own problem
                pass


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


def _lock_down() -> None:
    """From now on (for good: audit hooks cannot be removed), refuse to open
    the answer keys' source files, to start processes, to use ctypes, to list
    the interpreter's objects or reach its frames, to make links and to change
    directory. (New processes and programs are also refused by the kernel:
    :mod:`course.seccomp`.)"""
    protected = _protected_files()
    stat, denied, frames = _STAT, _DENIED_EVENTS, _FRAME_ATTRIBUTES
    harness = frozenset([__file__] + [str(f) for folder in ("probes", "exercises")
                                      for f in (REPO / "course" / folder).glob("*.py")])
    # Paths whose file name cannot change between this check and the open:
    # str, bytes, os.DirEntry and pathlib paths with pathlib's own methods
    # (not a learner's path-like object that names another file the second time).
    plain, paths = (str, bytes, os.DirEntry), (pathlib.PosixPath, pathlib.PurePosixPath)
    fspath, to_str = pathlib.PurePath.__fspath__, pathlib.PurePath.__str__
    attr = type.__getattribute__

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
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
        elif event == "sys._getframe" and args and getattr(  # torch and typing need their own
                getattr(args[0], "f_code", None), "co_filename", "") in harness:
            raise PermissionError("graded code may not reach the grading harness's frames")

    sys.addaudithook(hook)


class Forbidden(Exception):
    """Raised when graded code calls something the exercise must not use."""


#: Disabled in every lesson: the learner-facing checks hold reference
#: implementations (and correct "mutants") of every exercise.
ALWAYS_FORBIDDEN = ("course.checks",)


def _disable(dotted_names: tuple[str, ...] | list[str]) -> None:
    """Make each forbidden name unusable in this process.

    A dotted name is a module (``course.checks``: it can no longer be
    imported), or a function or class reached through modules and classes
    (``torch.optim.SGD``, ``course.sgd.sgd_update``,
    ``course.optim.SGD._fused_step``). The name is replaced by a stand-in that
    raises :class:`Forbidden`; so is every other module-level alias of the
    same object (``course.optim`` imports ``update_many`` by name), and the
    object itself is neutralized in place -- a function's code and a class's
    methods refuse to run -- so that no other route (a subclass list, a
    reference kept by another object) leads back to a working answer key.
    """
    replaced: dict[int, tuple[Any, Any]] = {}
    for dotted in dotted_names:
        if _is_module(dotted):
            _block_module(dotted)
            continue
        owner, attr = _owner(dotted)
        original = getattr(owner, attr, None)
        if original is None or getattr(original, "_course_forbidden", False):
            continue
        stand_in = _refuser(dotted, original)
        _neutralize(original, dotted)
        try:
            setattr(owner, attr, stand_in)
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


def _is_module(dotted: str) -> bool:
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


def _owner(dotted: str) -> tuple[Any, str]:
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


def _neutralize(obj: Any, dotted: str) -> None:
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


# --------------------------------------------------------------- parent side

def _seed_font_cache(scratch: pathlib.Path) -> None:
    """Copy matplotlib's font list into the child's config dir (saves a rebuild per run)."""
    try:
        import matplotlib
        for cached in pathlib.Path(matplotlib.get_cachedir()).glob("fontlist-*.json"):
            shutil.copy(cached, scratch / cached.name)
    except Exception:  # noqa: BLE001 - only an optimisation
        pass


class Zygote:
    """A ``python -m course.verify --zygote SOCK`` (see :func:`_zygote`) in
    the allow-list jail (:mod:`course.jail`: the Python install, the venv
    and the ``course`` package read-only, its scratch folder the one
    writable place, no network, a cleared environment, never root): one
    fresh, forked child per verification, without paying for the imports
    every time. One request at a time; bubblewrap ends it with its parent."""

    def __init__(self) -> None:
        import socket

        from course import jail
        self.scratch = tempfile.mkdtemp(prefix="sgd-verify-")
        _seed_font_cache(pathlib.Path(self.scratch))
        settings = {"MPLBACKEND": "Agg", "MPLCONFIGDIR": self.scratch, "TMPDIR": self.scratch,
                    "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [os.path.abspath(sys.executable), "-m", "course.verify", "--zygote",
                str(theirs.fileno())]
        if jail.available():
            jail.prepare(self.scratch)
            cmd, env = jail.command(argv, rw=[self.scratch],
                                    env=settings), None
        else:
            print("course.verify: bubblewrap unavailable, re-verification NOT sandboxed",
                  file=sys.stderr)
            cmd, env = argv, dict(os.environ, **settings)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env, cwd=self.scratch,
                                     pass_fds=(theirs.fileno(),))
        theirs.close()
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, lesson: str, spec: dict[str, Any], timeout: float) -> tuple[bytes, bool]:
        """Run one verification; (the child's output, whether it ran out of time).

        The spec goes straight to the child through a pipe of its own, and
        its results come straight back through another: the zygote only
        forks. Raises OSError if the zygote died or did not answer in time
        (it is then stopped: a new one replaces it).
        """
        import socket
        spec_r, spec_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            header = json.dumps({"lesson": lesson, "deadline": timeout}).encode()
            socket.send_fds(self.sock, [header], [spec_r, out_w])
        except OSError as exc:
            for fd in (spec_r, spec_w, out_r, out_w):
                os.close(fd)
            self.close()
            raise OSError(f"the verification process ended: {exc}") from exc
        os.close(spec_r)
        os.close(out_w)
        writer = threading.Thread(target=_write_all, args=(spec_w, json.dumps(spec).encode()),
                                  daemon=True)
        writer.start()
        try:
            output = _read_until_eof(out_r, timeout + 30, _MAX_OUTPUT)
            reply = _read_line(self.sock, time.monotonic() + 30)
            status = json.loads(reply)
            return output, bool(status["timed_out"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.close()
            raise OSError(str(exc)) from exc
        finally:
            os.close(out_r)
            writer.join(timeout=5)

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        self.sock.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to a pipe and close it (a child that never reads is no error)."""
    try:
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(data)
    except OSError:
        pass


def _read_until_eof(fd: int, seconds: float, limit: int) -> bytes:
    """Everything until the writer closes its end (at most ``limit`` bytes,
    more is an error), within ``seconds``."""
    deadline, chunks, size = time.monotonic() + seconds, [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise OSError("no answer from the verification process")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise OSError(f"the re-run wrote more than {limit} bytes of results")
        chunks.append(chunk)


def _read_line(sock: Any, deadline: float) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise OSError("no answer from the verification process")
        chunk = sock.recv(4096)
        if not chunk or len(buf) > 4096:
            raise OSError("the verification process ended")
        buf += chunk
    return buf


_ZYGOTES: list[Zygote] = []
_ZYGOTES_LOCK = threading.Lock()


def _zygote_for() -> Zygote:
    """An idle zygote, locked for the caller (new if none)."""
    with _ZYGOTES_LOCK:
        _ZYGOTES[:] = [z for z in _ZYGOTES if z.alive()]
        for z in _ZYGOTES:
            if z.lock.acquire(blocking=False):
                return z
        z = Zygote()
        z.lock.acquire()
        _ZYGOTES.append(z)
        return z


@atexit.register
def _close_zygotes() -> None:
    for z in _ZYGOTES:
        z.close()


#: Deepest nesting accepted in a child's reply (probe values are shallow).
_MAX_DEPTH = 32


def _depth(text: str) -> int:
    """Deepest nesting of JSON brackets in ``text`` (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_results(output: bytes, grade_ids: list[str]) -> dict[str, dict[str, Any]] | str:
    """The child's reply: exactly one line ``{grade_id: result}`` per grade id,
    in order, each result ``{"ok": value}`` or ``{"error": text}``; or, for
    anything else (a duplicate, an extra or unknown line, bad JSON, nesting
    deeper than :data:`_MAX_DEPTH`), a message saying so. A reply that stops
    early (a probe timed out, the process died) is fine: the results so far
    count. Never raises."""
    results: dict[str, dict[str, Any]] = {}
    for line in output.decode(errors="replace").splitlines():
        expected = grade_ids[len(results)] if len(results) < len(grade_ids) else None
        try:
            if _depth(line) > _MAX_DEPTH:
                raise ValueError("nested too deeply")
            item = json.loads(line)
        except (ValueError, RecursionError):
            return "the re-run wrote something that is not a probe result"
        if expected is None or not isinstance(item, dict) or list(item) != [expected]:
            return "the re-run wrote result lines that no probe wrote (forged or duplicated)"
        value = item[expected]
        if not isinstance(value, dict) or len(value) != 1 or not ({"ok", "error"} & set(value)):
            return "the re-run wrote a malformed probe result"
        results[expected] = value
    return results


def run_child(assignment: str, source: list[str], grade_ids: list[str],
              timeout: float = 60.0, root: pathlib.Path | None = None,
              seed: int = 0) -> dict[str, dict[str, Any]]:
    """Run the harness in a fresh (sandboxed, forked) interpreter; never raises.

    ``root`` is the course folder being graded (nothing of it is visible to
    graded code: the jail binds the ``course`` package only).
    """
    spec = {"assignment": assignment, "source": source, "grade_ids": grade_ids, "seed": seed,
            "step_seconds": max(2.0, min(STEP_SECONDS, timeout / 4))}
    crashed = "the re-run of your code crashed before reporting (did it exit the process?)"
    zygote = _zygote_for()
    try:
        output, timed_out = zygote.request(assignment[:2], spec, timeout)
        reason = f"timed out after {timeout:g} s (an infinite loop?)" if timed_out else crashed
    except OSError:
        output, reason = b"", crashed
    finally:
        zygote.lock.release()
    results = parse_results(output, grade_ids)
    if isinstance(results, str):
        return {gid: {"error": results} for gid in grade_ids}
    return {gid: results.get(gid, {"error": reason}) for gid in grade_ids}


#: Messages of the parent's own making, passed on as they are.
_OWN_MESSAGES = re.compile(
    r"timed out after [0-9.]+ s \(an infinite loop\?\)"
    r"|the re-run of your code crashed before reporting \(did it exit the process\?\)"
    r"|the re-run wrote [a-z ()]+|no result")
_BUILTIN_EXCEPTIONS = frozenset(
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException))


def canned(error: str, names: frozenset[str], forbidden: frozenset[str]) -> str:
    """The learner-facing text for a child's error report.

    The child ran the learner's code, so its report may carry anything that
    code could read (a secret in an exception message). Feedback quotes only
    what the grader can vouch for: its own messages, the name of a built-in
    exception, a missing definition among ``names`` (those the solution
    defines), a forbidden name among ``forbidden``.
    """
    error = str(error)
    if _OWN_MESSAGES.fullmatch(error):
        return error
    head, _, rest = error.partition(": ")
    blocked = re.match(r"([\w.]+) may not be used by this exercise", rest)
    if head == "Forbidden" and blocked and any(
            blocked.group(1) == f or blocked.group(1).startswith(f + ".") for f in forbidden):
        return f"{blocked.group(1)} may not be used by this exercise"
    missing = re.match(r"'(\w+)'", rest)
    if head in ("KeyError", "NameError") and missing and missing.group(1) in names:
        return f"your code does not define {missing.group(1)!r} (or defining it failed)"
    if head in _BUILTIN_EXCEPTIONS:
        return f"your code raised {head}"
    return "your code raised an exception"


def defined_names(source: list[str]) -> frozenset[str]:
    """Top-level names that ``source`` defines (functions, classes, assignments)."""
    names: set[str] = set()
    for chunk in source:
        try:
            tree = ast.parse(chunk)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(names)


def draw_seed() -> int:
    """A fresh seed for one verification: the probes draw their inputs from it,
    so values computed, cached or recorded for another verification are wrong."""
    return secrets.randbits(63)


def expected_results(assignment: str, source: list[str], seed: int,
                     root: pathlib.Path | None = None) -> dict[str, Any]:
    """Probe values of the solution's definitions (``source``, see
    :func:`solution_source`) for ``seed``.

    Computed in a fresh interpreter for every verification (never cached: the
    inputs are new each time), and never shown to graded code.
    """
    probes, _ = lesson_probes(assignment)
    results = run_child(assignment, source, sorted(probes), 300, root, seed)
    bad = {g: r for g, r in results.items() if "ok" not in r}
    if bad:
        raise RuntimeError(f"the solution of {assignment} fails its own probes "
                           f"(seed {seed}): {bad}")
    return results


def solution_source(solution: pathlib.Path) -> list[str]:
    """What a verification runs of the solution notebook (see :func:`learner_source`)."""
    import nbformat
    return learner_source(nbformat.read(solution, as_version=4))


def solution_path(assignment: str, root: pathlib.Path = REPO) -> pathlib.Path:
    """The solution notebook the expected values come from: the course folder's
    own, or the package's when the course folder has none."""
    sol = root / "solutions" / assignment / f"{assignment}.ipynb"
    return sol if sol.is_file() else REPO / "solutions" / assignment / f"{assignment}.ipynb"


def verify(nb: Any, assignment: str, root: pathlib.Path = REPO,
           timeout: float = 60.0, seed: int | None = None) -> dict[str, tuple[bool, str]]:
    """Re-verify every probed test cell of an executed or raw notebook.

    Args:
        nb: the learner's notebook (nbformat).
        assignment: its lesson id, e.g. ``"01-gradient-descent"``.
        root: the course folder; the expected values come from its
            ``solutions/`` (or the package's own when it has none).
        seed: the inputs' seed (default: a fresh one, drawn here).

    Returns:
        grade_id -> (passed, message) for each test cell that has a probe.
    """
    probes, answer_keys = lesson_probes(assignment)
    reference = solution_source(solution_path(assignment, root))
    names = defined_names(reference)
    forbidden = frozenset([*ALWAYS_FORBIDDEN, *answer_keys])
    seed = draw_seed() if seed is None else seed
    source = learner_source(nb)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        want = pool.submit(expected_results, assignment, reference, seed, root)
        actual = run_child(assignment, source, sorted(probes), timeout, root, seed)
        expected = want.result()
    verdicts = {}
    for gid, probe in probes.items():
        got = actual.get(gid, {"error": "no result"})
        if "ok" not in got or "error" in got:
            error = canned(got.get("error", "no result"), names, forbidden)
            verdicts[gid] = (False, f"re-verification outside the notebook failed: {error}")
        elif not same(got["ok"], expected[gid]["ok"], probe):
            verdicts[gid] = (False, "re-verification outside the notebook failed: your "
                                    "definitions give different results in a fresh interpreter")
        else:
            verdicts[gid] = (True, "re-verified outside the notebook")
    return verdicts


if __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    _zygote(int(sys.argv[2]))
