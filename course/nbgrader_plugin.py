"""nbgrader configuration and preprocessors that make grading trustworthy.

``nbgrader_config.py`` calls :func:`configure`, which

* runs submissions in the ``sgd-sandbox`` kernel (:mod:`course.sandbox`)
  when it is installed and bubblewrap works;
* inserts :class:`ReVerify` after nbgrader's ``Execute``: every probed test
  cell is re-verified outside the kernel (:mod:`course.verify`); a cell that
  passed in the kernel but fails re-verification gets an error output, so
  ``SaveAutoGrades`` scores it 0;
* re-inserts deleted test cells and limits each cell's run time;
* strips hidden tests, and any traceback that could quote them, from feedback;
* removes anything a browser could run from what a submission wrote, before
  it is stored, shown in formgrader or sent back as feedback (:mod:`course.render`).
"""

from __future__ import annotations

import importlib.util
import pathlib
import warnings
from typing import Any

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearHiddenTests,
                                    Execute, GetGrades, IgnorePattern, LimitOutput,
                                    NbGraderPreprocessor, SaveAutoGrades)
from traitlets import Bool, Float

from course.render import configure_rendering
from course.sandbox import KERNEL_NAME
from course.verify import lesson_module, verify

CELL_TIMEOUT = 60


def _test_cells(nb: NotebookNode) -> dict[str, NotebookNode]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")}


def _error(ename: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=message,
                        traceback=[f"{ename}: {message}"])


class ReVerify(NbGraderPreprocessor):
    """Fail every test cell whose exercise does not survive re-verification."""

    enabled = Bool(True, help="Re-verify exercises outside the kernel.").tag(config=True)
    timeout = Float(120.0, help="Seconds for the whole re-verification run.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict]:
        assignment = resources.get("nbgrader", {}).get("assignment", "")
        cells = _test_cells(nb)
        for cell in cells.values():
            # nbgrader scores a test cell by its first error or execute_result; a
            # submission can make a test's docstring an execute_result (e.g. with
            # ast_node_interactivity = "all") and so claim full marks: drop them.
            cell.outputs = [o for o in cell.get("outputs", []) if o.output_type != "execute_result"]
        if not self.enabled or importlib.util.find_spec(lesson_module(assignment)) is None:
            return nb, resources
        root = pathlib.Path.cwd()        # nbgrader runs from the course folder
        for gid, (ok, message) in verify(nb, assignment, root, timeout=self.timeout).items():
            cell = cells.get(gid)
            if cell is None or ok:
                continue
            # First, so nbgrader scores the cell 0; after the check's own message
            # when the test already failed in the kernel (that message says more).
            failed = any(o.output_type == "error" for o in cell.get("outputs", []))
            cell.outputs.insert(len(cell.outputs) if failed else 0,
                                _error("ReVerificationFailed", message))
            self.log.warning("%s %s: %s", resources["nbgrader"].get("student"), gid, message)
        return nb, resources


class ShortTracebacks(NbGraderPreprocessor):
    """Reduce test-cell tracebacks to 'Name: message' so feedback never quotes
    the source line of a hidden test."""

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            for out in cell.get("outputs", []):
                if out.output_type == "error":
                    out.traceback = [f"{out.ename}: {out.evalue}"]
        return cell, resources


def sandbox_kernel_available() -> bool:
    """True if the sgd-sandbox kernelspec is installed."""
    from jupyter_client.kernelspec import KernelSpecManager
    return KERNEL_NAME in KernelSpecManager().find_kernel_specs()


def configure(c: Any) -> None:
    """Apply the course's grading configuration to nbgrader's config object ``c``."""
    # nbgrader 0.9.6 with SQLAlchemy 2 warns on every autograde about its own
    # session handling ("Object of type <SubmittedAssignment> not in session"):
    # harmless, and it buries the messages that matter.
    warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session")
    c.Execute.timeout = CELL_TIMEOUT
    c.OverwriteCells.add_missing_cells = True
    c.Autograde.autograde_preprocessors = [
        Execute, ReVerify, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    if sandbox_kernel_available():
        c.Execute.kernel_name = KERNEL_NAME
    c.GenerateFeedback.preprocessors = [
        GetGrades, ClearHiddenTests, ShortTracebacks, CSSHTMLHeaderPreprocessor]
    # Nothing a submission wrote may run in a browser (formgrader, feedback): course.render.
    configure_rendering(c)
