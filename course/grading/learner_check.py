"""``course check``: score a learner's notebook from the terminal.

The notebook is executed top to bottom with nbclient (a fresh kernel, a time
limit per cell). Its test cells are first reset to the course's released
versions, so an accidentally edited test cannot pass by mistake. Every
autograded test cell becomes one row: passed or failed, its points, and the
check's one-line message.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbgrader.utils import determine_grade, is_grade

REPO = pathlib.Path(__file__).resolve().parents[2]
RELEASED = REPO / "notebooks"


class CheckError(Exception):
    """The notebook could not be checked; the message says why, for the learner."""


@dataclass
class Row:
    """The result of one test cell."""

    grade_id: str
    points: float
    max_points: float
    passed: bool
    message: str


def load_notebook(path: pathlib.Path) -> nbformat.NotebookNode:
    """Read ``path`` as a notebook, with a clear error for every way that fails."""
    if not path.exists():
        raise CheckError(f"{path}: no such file")
    if path.is_dir():
        raise CheckError(f"{path} is a folder: give the .ipynb file inside it")
    if path.suffix != ".ipynb":
        raise CheckError(f"{path} is not a notebook (.ipynb)")
    try:
        return nbformat.read(path, as_version=4)
    except (json.JSONDecodeError, UnicodeDecodeError, nbformat.reader.NotJSONError) as exc:
        raise CheckError(f"{path} is not valid notebook JSON ({exc}); "
                         "restore it from a checkpoint or from notebooks/") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds
        raise CheckError(f"{path} could not be read as a notebook: {exc}") from None


def _tests(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """Autograded code cells by grade_id."""
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
            if c.cell_type == "code" and is_grade(c)}


def released_tests(nb: nbformat.NotebookNode) -> tuple[str, dict[str, nbformat.NotebookNode]]:
    """The lesson this notebook belongs to and its released test cells."""
    ids = set(_tests(nb))
    if ids:
        for path in sorted(RELEASED.glob("*/*.ipynb")):
            ref = _tests(nbformat.read(path, as_version=4))
            if ids & set(ref):
                return path.stem, ref
    raise CheckError("this notebook has no graded exercises of SGD from Scratch: "
                     "check one of the lesson notebooks in notebooks/")


def written_points(lesson: str) -> float:
    """Points of the lesson's manually graded answers (written questions), which
    ``course check`` cannot score: an instructor grades them."""
    path = RELEASED / lesson / f"{lesson}.ipynb"
    if not path.is_file():
        return 0.0
    return float(sum(c.metadata["nbgrader"].get("points", 0)
                     for c in nbformat.read(path, as_version=4).cells
                     if is_grade(c) and c.metadata["nbgrader"].get("solution")))


def restore_tests(nb: nbformat.NotebookNode, ref: dict[str, nbformat.NotebookNode]) -> list[str]:
    """Reset test cells to the released source; return the ids of deleted ones."""
    mine = _tests(nb)
    for gid, cell in mine.items():
        if gid in ref:
            cell.source = ref[gid].source
    return [gid for gid in ref if gid not in mine]


def execute(nb: nbformat.NotebookNode, cwd: pathlib.Path, timeout: int) -> str | None:
    """Run every cell; return None, or why execution stopped early."""
    # The kernel's own log (e.g. "Kernel is running over TCP without encryption", about a
    # kernel that only listens on 127.0.0.1) is not the learner's business: errors only.
    client = NotebookClient(nb, timeout=timeout, allow_errors=True,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            interrupt_on_timeout=True, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    except DeadKernelError:
        return "the kernel died (did the notebook call exit() or run out of memory?)"
    except Exception as exc:  # noqa: BLE001 - reported, never a traceback
        return f"execution stopped: {type(exc).__name__}: {exc}"
    slow = [i for i, c in enumerate(nb.cells, 1) if c.cell_type == "code" and any(
        o.get("ename") in ("KeyboardInterrupt", "CellTimeoutError") for o in c.get("outputs", []))]
    if slow:
        return (f"cell {slow[0]} ran longer than {timeout} s and was interrupted "
                "(an infinite loop?)")
    return None


def _message(cell: nbformat.NotebookNode) -> tuple[bool, str]:
    """(passed, one-line message) of an executed test cell, passed as nbgrader
    decides it (:func:`points`)."""
    outputs = cell.get("outputs", [])
    errors = [o for o in outputs if o.output_type == "error"]
    if errors:
        e = errors[0]
        if e.ename == "KeyboardInterrupt":
            return False, "timed out: an exercise runs too long (an infinite loop?)"
        return False, f"{e.evalue}" if e.ename in ("AssertionError", "CheckFailure") \
            else f"{e.ename}: {e.evalue}"
    if not outputs and cell.get("execution_count") is None:
        return False, "not run (execution stopped before this cell)"
    stderr = "".join(o.get("text", "") for o in outputs
                     if o.output_type == "stream" and o.get("name") == "stderr")
    if stderr.strip():
        first = next(ln for ln in stderr.splitlines() if ln.strip())
        return False, ("the test cell wrote to stderr, which nbgrader scores as a failure: "
                       f"{first.strip()}")
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return True, lines[0] if lines else "passed"


def points(cell: nbformat.NotebookNode) -> float:
    """The points nbgrader's autograder gives an executed test cell under the
    course's configuration: :func:`nbgrader.utils.determine_grade`, after the
    cell's ``execute_result`` outputs are dropped (course.grading.nbgrader_plugin drops
    them: a submission must not claim points by making a value the result)."""
    scored = nbformat.from_dict(dict(cell))
    scored.outputs = [o for o in cell.get("outputs", []) if o.output_type != "execute_result"]
    if not scored.outputs and cell.get("execution_count") is None:
        return 0.0
    return float(determine_grade(scored)[0] or 0.0)


def score(nb: nbformat.NotebookNode, deleted: list[str],
          ref: dict[str, nbformat.NotebookNode]) -> list[Row]:
    """One :class:`Row` per released test cell, in notebook order."""
    mine = _tests(nb)
    rows = []
    for gid, ref_cell in ref.items():
        max_pts = float(ref_cell.metadata["nbgrader"].get("points", 0))
        if gid in deleted:
            rows.append(Row(gid, 0.0, max_pts, False, "test cell deleted: copy it back from notebooks/"))
            continue
        cell = mine[gid]
        cell.metadata["nbgrader"]["points"] = max_pts
        ok, msg = _message(cell)
        got = points(cell)
        rows.append(Row(gid, got, max_pts, ok and got == max_pts, msg))
    return rows


def check_notebook(path: str | pathlib.Path, timeout: int = 60) -> tuple[str, list[Row], str | None]:
    """Execute a learner's notebook and score its test cells.

    Returns:
        (lesson id, rows, None or the reason execution stopped early).
    """
    path = pathlib.Path(path)
    nb = load_notebook(path)
    lesson, ref = released_tests(nb)
    deleted = restore_tests(nb, ref)
    for cell in nb.cells:                      # stale outputs must not count as results
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    problem = execute(nb, path.parent.resolve(), timeout)
    return lesson, score(nb, deleted, ref), problem


def format_table(lesson: str, rows: list[Row], problem: str | None) -> str:
    """The per-exercise table printed by ``course check``."""
    width = max(len(r.grade_id) for r in rows) if rows else 10
    out = [f"{lesson}", f"{'test':{width}}  {'result':6}  {'points':>9}  message"]
    for r in rows:
        first = r.message.splitlines()[0] if r.message else ""
        result = "passed" if r.passed else "FAILED"
        out.append(f"{r.grade_id:{width}}  {result:6}  {r.points:4g} / {r.max_points:<3g}  {first}")
        out += [f"{'':{width + 28}}{ln}" for ln in r.message.splitlines()[1:4]]
    total, best = sum(r.points for r in rows), sum(r.max_points for r in rows)
    if problem:
        out.append(f"note: {problem}")
    written = written_points(lesson)
    out.append(f"total: {total:g} / {best:g}" + (
        f" (autograded; written answers, {written:g} more points, are graded by your "
        "instructor)" if written else ""))
    return "\n".join(out)
