"""What a verification runs of a notebook: the learner's definitions, never a
test cell; the solution notebook's; and the advisory scan for constructs only
a submission reaching around the sandbox needs."""

from __future__ import annotations

import ast
import io
import pathlib
import re
import tokenize
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]


def learner_source(nb: Any) -> list[str]:
    """The code the child runs: exercise cells whole; from other cells only
    imports, definitions and simple constant assignments; test cells never, nor the
    release's set-up cell for hosted notebooks when it is unchanged (course code)."""
    from course.hosted import setup_cell
    setup = setup_cell()
    chunks = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("grade") or cell.source == setup:
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


def solution_source(solution: pathlib.Path) -> list[str]:
    """What a verification runs of the solution notebook (see :func:`learner_source`)."""
    import nbformat
    return learner_source(nbformat.read(solution, as_version=4))


def solution_path(assignment: str, root: pathlib.Path = REPO) -> pathlib.Path:
    """The solution notebook the expected values come from: the course folder's
    own, or the package's when the course folder has none."""
    sol = root / "solutions" / assignment / f"{assignment}.ipynb"
    return sol if sol.is_file() else REPO / "solutions" / assignment / f"{assignment}.ipynb"
