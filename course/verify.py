"""Re-verify a learner's exercises outside their kernel, so that no code in the
notebook can decide its own grade.

Threat model: a submission may patch anything in its kernel (torch, numpy,
``course``, builtins, IPython) before any test cell runs. So the grade does
not rest on the in-kernel test cells alone. For every test cell that has a
*probe* (``course/probes/lessonNN.py``) we

1. start a fresh interpreter (inside a bubblewrap sandbox when available:
   read-only file system, no network, solutions and gradebook hidden);
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
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import functools
import importlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Callable

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Probe:
    """How to re-verify one test cell.

    Attributes:
        run: called with the learner's namespace; returns a list of values
            (tensors, arrays, numbers, strings, None, nested lists).
        rtol: 0 means bit-for-bit equality; otherwise arrays are compared
            with ``np.allclose(rtol=rtol, atol=atol)``.
        atol: absolute tolerance used with ``rtol``.
    """

    run: Callable[[dict[str, Any]], list[Any]]
    rtol: float = 0.0
    atol: float = 0.0


# --------------------------------------------------------------- source

def lesson_module(assignment: str) -> str:
    """``"04-momentum"`` -> ``"course.probes.lesson04"``."""
    return f"course.probes.lesson{assignment[:2]}"


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


#: Constructs that only a submission trying to reach around the sandbox needs.
BANNED = {
    r"\bimportlib\b": "importlib",
    r"\breload\s*\(": "reload()",
    r"\bgetsource\b|\binspect\b": "inspect",
    r"\bsys\.modules\b": "sys.modules",
    r"__import__": "__import__",
    r"\bsolutions/|\bgradebook\b": "reading course files",
    r"\bos\._exit\b|\bos\.kill\b": "killing the process",
    r"\bctypes\b": "ctypes",
    r"__file__|site-packages": "reading the course's source files",
}


def banned_constructs(source: str) -> list[str]:
    """Names of the banned constructs that appear in ``source``."""
    return sorted({name for pattern, name in BANNED.items() if re.search(pattern, source)})


# --------------------------------------------------------------- encoding

def encode(value: Any) -> Any:
    """A JSON-safe, learner-proof rendering of a probe value.

    Only exact built-in types are trusted; a subclass or unknown object is
    recorded by its type name, so an object whose ``__eq__`` always returns
    True can never match a real value.
    """
    import torch
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return {"float": value.hex()}
    if kind in (list, tuple):
        return [encode(v) for v in value]
    if kind in (torch.Tensor, torch.nn.Parameter):
        t = value.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return {"tensor": str(t.dtype), "shape": list(t.shape),
                "bytes": base64.b64encode(raw).decode()}
    if kind is np.ndarray or isinstance(value, np.generic) and kind.__module__ == "numpy":
        a = np.ascontiguousarray(value)
        return {"array": str(a.dtype), "shape": list(a.shape),
                "bytes": base64.b64encode(a.tobytes()).decode()}
    return {"object": f"{kind.__module__}.{kind.__qualname__}"}


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
    """Compare encoded values exactly, or within the probe's tolerance."""
    if probe.rtol == 0 and probe.atol == 0:
        return actual == expected
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and \
            all(same(a, e, probe) for a, e in zip(actual, expected))
    a, e = _decode_numeric(actual), _decode_numeric(expected)
    if a is None or e is None:
        return actual == expected
    return a.shape == e.shape and bool(np.allclose(a, e, rtol=probe.rtol, atol=probe.atol,
                                                   equal_nan=True))


# --------------------------------------------------------------- child side

def _child() -> None:
    """Run in the fresh interpreter: probes first, then learner code, then probes."""
    spec = json.loads(sys.stdin.read())
    module = importlib.import_module(lesson_module(spec["assignment"]))
    probes: dict[str, Probe] = module.PROBES
    out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    _disable(getattr(module, "FORBIDDEN", ()))
    ns: dict[str, Any] = {"__name__": "__main__"}
    for chunk in spec["source"]:
        try:
            exec(compile(chunk, "<submission>", "exec"), ns)  # noqa: S102 - sandboxed child
        except BaseException:  # noqa: BLE001 - a broken cell must not stop grading
            pass
    results = {}
    for gid in spec["grade_ids"]:
        try:
            results[gid] = {"ok": encode(probes[gid].run(ns))}
        except BaseException as exc:  # noqa: BLE001
            results[gid] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    out.write(json.dumps(results))
    out.flush()


class Forbidden(Exception):
    """Raised when graded code calls something the exercise must not use."""


def _disable(dotted_names: tuple[str, ...] | list[str]) -> None:
    """Replace each ``module.attr`` by something that raises :class:`Forbidden`."""
    for dotted in dotted_names:
        mod_name, attr = dotted.rsplit(".", 1)
        module = importlib.import_module(mod_name)

        def refuse(*_a: Any, _name: str = dotted, **_k: Any) -> Any:
            raise Forbidden(f"{_name} may not be used by this exercise")
        if isinstance(getattr(module, attr, None), type):
            refuse = type(attr, (), {"__init__": refuse, "__init_subclass__": classmethod(refuse)})
        setattr(module, attr, refuse)


# --------------------------------------------------------------- parent side

def sandbox_prefix(hidden: list[pathlib.Path]) -> list[str]:
    """A bubblewrap command prefix (read-only /, private /tmp, no network,
    ``hidden`` paths emptied), or [] where bubblewrap is unavailable."""
    bwrap = shutil.which("bwrap")
    if not bwrap or os.environ.get("COURSE_NO_SANDBOX"):
        return []
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", "--unshare-net", "--unshare-pid", "--die-with-parent",
            "--new-session"]
    for path in hidden:
        if path.is_dir():
            args += ["--tmpfs", str(path)]
        elif path.exists():
            args += ["--ro-bind", "/dev/null", str(path)]
    if subprocess.run(args + ["true"], capture_output=True).returncode != 0:
        return []
    return args


def course_secrets(root: pathlib.Path = REPO) -> list[pathlib.Path]:
    """What graded code must never see or touch under the course root."""
    names = ("solutions", "source", "submitted", "autograded", "feedback", "gradebook.db",
             ".git", "tests")
    return [root / n for n in names]


def run_child(assignment: str, source: list[str], grade_ids: list[str],
              timeout: float = 60.0, root: pathlib.Path | None = None) -> dict[str, dict[str, Any]]:
    """Run the harness in a fresh (sandboxed) interpreter; never raises.

    ``root`` is the course folder being graded; its secrets are hidden too.
    """
    spec = json.dumps({"assignment": assignment, "source": source, "grade_ids": grade_ids})
    env = dict(os.environ, MPLBACKEND="Agg", MPLCONFIGDIR="/tmp/mpl", PYTHONHASHSEED="0",
               OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    hidden = course_secrets() + (course_secrets(root) if root else [])
    prefix = sandbox_prefix(hidden)
    cmd = prefix + [sys.executable, "-m", "course.verify", "--child"]
    try:
        with tempfile.TemporaryDirectory() as scratch:
            proc = subprocess.run(cmd, input=spec, capture_output=True, text=True,
                                  timeout=timeout, env=env, cwd="/tmp" if prefix else scratch)
        return json.loads(proc.stdout)
    except subprocess.TimeoutExpired:
        reason = f"timed out after {timeout:g} s (an infinite loop?)"
    except (json.JSONDecodeError, ValueError):
        reason = "the re-run of your code crashed before reporting (did it exit the process?)"
    return {gid: {"error": reason} for gid in grade_ids}


@functools.lru_cache(maxsize=32)
def expected_results(assignment: str, solution_path: str, mtime: float) -> dict[str, Any]:
    """Probe values of the solution notebook (cached per file version)."""
    import nbformat
    nb = nbformat.read(solution_path, as_version=4)
    probes = importlib.import_module(lesson_module(assignment)).PROBES
    results = run_child(assignment, learner_source(nb), sorted(probes), timeout=300)
    bad = {g: r for g, r in results.items() if "ok" not in r}
    if bad:
        raise RuntimeError(f"the solution of {assignment} fails its own probes: {bad}")
    return results


def verify(nb: Any, assignment: str, root: pathlib.Path = REPO,
           timeout: float = 60.0) -> dict[str, tuple[bool, str]]:
    """Re-verify every probed test cell of an executed or raw notebook.

    Args:
        nb: the learner's notebook (nbformat).
        assignment: its lesson id, e.g. ``"01-gradient-descent"``.
        root: the course folder; the expected values come from its
            ``solutions/`` (or the package's own when it has none).

    Returns:
        grade_id -> (passed, message) for each test cell that has a probe.
    """
    probes: dict[str, Probe] = importlib.import_module(lesson_module(assignment)).PROBES
    sol = root / "solutions" / assignment / f"{assignment}.ipynb"
    if not sol.is_file():
        sol = REPO / "solutions" / assignment / f"{assignment}.ipynb"
    expected = expected_results(assignment, str(sol), sol.stat().st_mtime)
    source = learner_source(nb)
    banned = banned_constructs("\n".join(source))
    if banned:
        msg = f"re-verification refused: the notebook uses {', '.join(banned)}"
        return {gid: (False, msg) for gid in probes}
    actual = run_child(assignment, source, sorted(probes), timeout, root)
    verdicts = {}
    for gid, probe in probes.items():
        got = actual.get(gid, {"error": "no result"})
        if "error" in got:
            verdicts[gid] = (False, f"re-verification outside the notebook failed: {got['error']}")
        elif not same(got["ok"], expected[gid]["ok"], probe):
            verdicts[gid] = (False, "re-verification outside the notebook failed: your "
                                    "definitions give different results in a fresh interpreter")
        else:
            verdicts[gid] = (True, "re-verified outside the notebook")
    return verdicts


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    _child()
