"""nbgrader configuration and preprocessors that make grading trustworthy.

``nbgrader_config.py`` calls :func:`configure`, which

* runs submissions in the ``sgd-sandbox`` kernel (:mod:`course.grading.kernel`)
  when it is installed and bubblewrap works;
* inserts :class:`ReVerify` after nbgrader's ``Execute``: every probed test
  cell is re-verified outside the kernel (:mod:`course.grading`); a cell that
  passed in the kernel but fails re-verification gets an error output, so
  ``SaveAutoGrades`` scores it 0;
* re-inserts deleted test cells, limits each cell's run time and each
  notebook's (:class:`CourseExecute`), and grades a notebook whose kernel
  had to be stopped up to that cell;
* strips any traceback that could quote a test from feedback;
* removes anything a browser could run from what a submission wrote, before
  it is stored, shown in formgrader or sent back as feedback (:mod:`course.grading.render`).
"""

from __future__ import annotations

import math
import os
import pathlib
import shutil
import tempfile
import time
import unicodedata
import warnings
from typing import Any

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbformat.notebooknode import NotebookNode
from nbgrader.plugins import CsvExportPlugin
from nbgrader.preprocessors import OverwriteCells
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearHiddenTests,
                                    ClearSolutions, Execute, GetGrades, IgnorePattern,
                                    LimitOutput, NbGraderPreprocessor, SaveAutoGrades)
from traitlets import Bool, Float

from nbgrader.utils import is_grade

from course.grading.render import configure_rendering
from course.grading.kernel import KERNEL_NAME
from course.grading.untrusted import printable, remove_non_regular
from course.grading.probes import has_probes
from course.grading.reverify import verify
from course.grading.source import banned_constructs, learner_source

CELL_TIMEOUT = 60
NOTEBOOK_TIMEOUT = 600


def _test_cells(nb: NotebookNode) -> dict[str, NotebookNode]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
            if c.cell_type == "code" and is_grade(c)}


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
        if not self.enabled or not has_probes(assignment):
            return nb, resources
        root = pathlib.Path.cwd()        # nbgrader runs from the course folder
        student = resources["nbgrader"].get("student")
        suspicious = banned_constructs("\n".join(learner_source(nb)))
        if suspicious:       # advisory: for the instructor's eyes, not part of the verdict
            self.log.warning("%s uses %s", printable(student), ", ".join(suspicious))
        for gid, (ok, message) in verify(nb, assignment, root, timeout=self.timeout).items():
            cell = cells.get(gid)
            if cell is None or ok:
                continue
            if any(o.output_type == "error" for o in cell.get("outputs", [])):
                # The test already failed in the kernel and scores 0; its message says
                # more than "different results" would (which is false for a learner
                # whose code is simply wrong): nothing to add, nothing to warn about.
                self.log.info("%s %s: failed in the notebook and in re-verification",
                              printable(student), gid)
                continue
            # Passed in the kernel, failed outside it: first, so nbgrader scores it 0.
            cell.outputs.insert(0, _error("ReVerificationFailed", message))
            self.log.warning("%s %s: %s", printable(student), gid, printable(message))
        return nb, resources


def same_text(a: str, b: str) -> bool:
    """Whether two cell sources differ at most in what editors, operating systems and
    LMS downloads change without anyone meaning to: line endings, trailing spaces,
    trailing blank lines, Unicode normalisation."""
    def norm(text: str) -> list[str]:
        lines = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
        return [line.rstrip() for line in lines.rstrip().split("\n")]
    return norm(a) == norm(b)


class CourseOverwriteCells(OverwriteCells):
    """nbgrader's OverwriteCells, whose "checksum has changed" warning means tampering.

    nbgrader warns whenever a locked cell's checksum differs, also when its source
    differs only in line endings or trailing whitespace (a notebook saved on Windows,
    by another editor, or re-encoded by an LMS): that is logged at INFO and the
    release's source restored, as nbgrader does. A real change of a locked cell keeps
    nbgrader's warning (and its refusal, which ``course grade`` records with 0).
    """

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple:
        self._submitted = cell
        return super().preprocess_cell(cell, resources, index)

    def report_change(self, name: str, attr: str, old: Any, new: Any) -> None:
        if attr == "checksum":
            source = self.gradebook.find_source_cell(name, self.notebook_id, self.assignment_id)
            if same_text(self._submitted.source, source.source):
                self.log.info("Locked cell %s differs from the release in whitespace or line "
                              "endings only: the release's source restored", printable(name))
                return
        super().report_change(name, attr, old, new)


class ShortTracebacks(NbGraderPreprocessor):
    """Reduce test-cell tracebacks to 'Name: message' so feedback never quotes
    the source line of a hidden test."""

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            for out in cell.get("outputs", []):
                if out.output_type == "error":
                    out.traceback = [f"{out.ename}: {out.evalue}"]
        return cell, resources


class CourseExecute(Execute):
    """nbgrader's Execute, with a time budget per notebook and a kernel that
    is stopped, not waited for, when a cell cannot be interrupted.

    * Each cell's time limit is ``timeout`` or what is left of
      ``notebook_timeout``, whichever is shorter; once the budget is used up
      the remaining cells are not run.
    * A cell that cannot be interrupted at its time limit (SIGINT ignored),
      or whose kernel floods the client with output (a thread printing
      forever) makes nbclient give up on the whole notebook ("Timeout waiting
      for IOPub output"), and nbgrader then grades nothing. Here the kernel is
      stopped instead, and the notebook graded up to that cell.
    * Cells that were not run get an error output, so their tests score 0
      (an empty test cell would otherwise count as passed).
    * With the ``ipc`` transport each kernel's sockets get a short private
      folder of their own (Jupyter's default path, in the runtime folder, can
      be longer than a socket path may be).
    """

    notebook_timeout = Float(
        NOTEBOOK_TIMEOUT, help="Seconds for a whole notebook (kernel start included); "
        "0 for no limit.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any] = None,
                   km: Any = None) -> tuple[NotebookNode, dict]:
        self._started = time.monotonic()
        self._stopped = ""
        self._ipc_folder = None
        try:
            return super().preprocess(nb, resources, km)
        finally:
            if self._ipc_folder:
                shutil.rmtree(self._ipc_folder, ignore_errors=True)

    def create_kernel_manager(self) -> Any:
        km = super().create_kernel_manager()
        if km.transport == "ipc":
            self._ipc_folder = tempfile.mkdtemp(prefix="sgd-ipc-")
            km.ip = os.path.join(self._ipc_folder, "k")
        return km

    def _left(self) -> float:
        if not self.notebook_timeout:
            return math.inf
        return self.notebook_timeout - (time.monotonic() - self._started)

    def _get_timeout(self, cell: NotebookNode | None) -> int | None:
        timeout = super()._get_timeout(cell)
        left = self._left()
        if left == math.inf:
            return timeout
        return max(1, math.ceil(min(timeout or math.inf, left)))

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple:
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        if not self._stopped and self._left() <= 0:
            self._stopped = (f"not run: the notebook used up its time budget "
                             f"({self.notebook_timeout:g} s)")
            self.log.error("Notebook time budget (%g s) used up at cell %d: "
                           "the remaining cells are not run", self.notebook_timeout, index)
        if self._stopped:
            cell.outputs = [_error("NotRun", self._stopped)]
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except CellTimeoutError:
            self.log.error("Cell %d could not be interrupted or kept flooding its output: "
                           "kernel stopped, the remaining cells are not run", index)
            self._stop_kernel()
            self._stopped = "not run: the kernel was stopped at an earlier cell"
            cell.outputs.append(_error(
                "KernelStopped", "this cell could not be interrupted at its time limit "
                "(or flooded its output): the kernel was stopped"))
            return cell, self.resources

    def _stop_kernel(self) -> None:
        try:
            run_sync(self.km.shutdown_kernel)(now=True)
        except Exception as exc:  # noqa: BLE001 - it is being stopped anyway
            self.log.warning("stopping the kernel: %s", exc)


def sandbox_kernel_available() -> bool:
    """True if the sgd-sandbox kernelspec is installed."""
    from jupyter_client.kernelspec import KernelSpecManager
    return KERNEL_NAME in KernelSpecManager().find_kernel_specs()


def _without_links(init_assignment: Any) -> Any:
    """Wrap nbgrader's ``Autograde.init_assignment`` so that links, fifos and
    devices in a submission are removed before nbgrader copies it (it copies
    with the grader's rights and follows links: a link to the gradebook would
    bring the gradebook into the graded folder)."""
    if getattr(init_assignment, "_course_without_links", False):
        return init_assignment

    def init(self: Any, assignment_id: str, student_id: str) -> None:
        source = self._format_source(assignment_id, student_id)
        for path in remove_non_regular(source) if os.path.lexists(source) else []:
            self.log.warning("removed from %s's submission (not a regular file): %s",
                             printable(student_id), printable(path))
        init_assignment(self, assignment_id, student_id)
    init._course_without_links = True  # type: ignore[attr-defined]
    return init


#: Grade ids of the answer cells of predict-then-run questions
#: (:class:`course.exercises.spec.Question`): the learner's variable.
PREDICTION_PREFIX = "predict_"


class CourseClearSolutions(ClearSolutions):
    """nbgrader's ClearSolutions, except that the answer of a predict-then-run
    question becomes ``predict_x = None  # YOUR PREDICTION HERE`` instead of
    ``raise NotImplementedError()``: the variable exists, so its check can say
    "not answered yet" rather than fail on an undefined name."""

    def _replace_solution_region(self, cell: NotebookNode, language: str) -> bool:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if cell.cell_type != "code" or not grade_id.startswith(PREDICTION_PREFIX):
            return super()._replace_solution_region(cell, language)
        stub = self.code_stub
        self.code_stub = {**stub, language: f"{grade_id} = None  # YOUR PREDICTION HERE"}
        try:
            return super()._replace_solution_region(cell, language)
        finally:
            self.code_stub = stub


class HostedSetupCell(NbGraderPreprocessor):
    """Start every released notebook with the set-up cell of :mod:`course.hosted`,
    which installs the course package on Colab and does nothing where it is installed."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        from nbformat.v4 import new_code_cell
        from course.hosted import TAG, setup_cell
        nb.cells = [c for c in nb.cells if TAG not in c.metadata.get("tags", [])]
        nb.cells.insert(0, new_code_cell(setup_cell(), id=TAG, metadata={"tags": [TAG]}))
        return nb, resources


def configure(c: Any) -> None:
    """Apply the course's grading configuration to nbgrader's config object ``c``."""
    # nbgrader 0.9.6 with SQLAlchemy 2 warns on every autograde about its own
    # session handling ("Object of type <SubmittedAssignment> not in session"):
    # harmless, and it buries the messages that matter.
    warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session")
    c.Execute.timeout = CELL_TIMEOUT
    c.CourseExecute.notebook_timeout = NOTEBOOK_TIMEOUT
    # Kernels talk over Unix sockets, each in a folder only its sandbox sees:
    # no network at all in the kernel (course.grading.kernel).
    c.KernelManager.transport = "ipc"
    from nbgrader.converters import Autograde
    c.OverwriteCells.add_missing_cells = True
    c.Autograde.sanitize_preprocessors = [
        CourseOverwriteCells if p is OverwriteCells else p
        for p in Autograde.class_traits()["sanitize_preprocessors"].default()]
    # nbgrader's preprocessors redeclare nbconvert's ``display_data_priority`` without
    # ``config=True``, so every HTML export (feedback) warns "Config option
    # `display_data_priority` not recognized" once per preprocessor: make it configurable
    # again, as nbconvert declares it.
    NbGraderPreprocessor.class_traits()["display_data_priority"].tag(config=True)
    from nbgrader.converters import GenerateAssignment
    c.GenerateAssignment.preprocessors = [
        CourseClearSolutions if p is ClearSolutions else p
        for p in GenerateAssignment.class_traits()["preprocessors"].default()] + [HostedSetupCell]
    Autograde.init_assignment = _without_links(Autograde.init_assignment)
    c.Autograde.autograde_preprocessors = [
        CourseExecute, ReVerify, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    if sandbox_kernel_available():
        c.Execute.kernel_name = KERNEL_NAME
    c.GenerateFeedback.preprocessors = [
        WarnPendingGrades, GetGrades, ClearHiddenTests, ShortTracebacks, CSSHTMLHeaderPreprocessor]
    # nbgrader export warns, listing students and cells, while manual grades are pending.
    c.ExportApp.plugin_class = CourseCsvExportPlugin
    # Nothing a submission wrote may run in a browser (formgrader, feedback): course.grading.render.
    configure_rendering(c)
    # zip_collect: Canvas and Moodle downloads; collecting nothing is an error.
    from course.grading.collect import install as install_collect
    install_collect(c)


# --- Manual grades still pending: feedback and export say so -----------------------------

def pending_manual_grades(gradebook: Any, assignments: list[str] | None = None,
                          students: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    """``(assignment, student, notebook, grade id)`` of every cell that still needs
    grading by hand (formgrader's "needs manual grade"), sorted."""
    pending = []
    for assignment in gradebook.assignments:
        if assignments and assignment.name not in assignments:
            continue
        for submission in assignment.submissions:
            if students and submission.student.id not in students:
                continue
            for notebook in submission.notebooks:
                pending += [(assignment.name, submission.student.id, notebook.name, g.name)
                            for g in notebook.grades if g.needs_manual_grade]
    return sorted(pending)


def describe_pending(pending: list[tuple[str, str, str, str]]) -> list[str]:
    """One line per submission: ``<assignment> <student>: <grade ids>``."""
    by_submission: dict[tuple[str, str], list[str]] = {}
    for assignment, student, _notebook, grade_id in pending:
        by_submission.setdefault((assignment, student), []).append(grade_id)
    return [f"{printable(a, 80)} {printable(s, 80)}: {', '.join(printable(g, 80) for g in ids)}"
            for (a, s), ids in sorted(by_submission.items())]


class WarnPendingGrades(NbGraderPreprocessor):
    """Feedback for a notebook with cells not yet graded by hand: log a warning
    naming them (their score in the feedback is 0 until they are graded)."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict]:
        from nbgrader.api import Gradebook
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            notebook = gb.find_submission_notebook(info["notebook"], info["assignment"],
                                                   info["student"])
            ids = sorted(g.name for g in notebook.grades if g.needs_manual_grade)
        if ids:
            self.log.warning(
                "Feedback for %s %s while %d cell(s) still need grading by hand (formgrader, "
                "'Manual Grading'): %s. Their points count as 0 in this feedback.",
                printable(info["assignment"], 80), printable(info["student"], 80), len(ids),
                ", ".join(printable(i, 80) for i in ids))
        return nb, resources


class CourseCsvExportPlugin(CsvExportPlugin):
    """nbgrader's CSV export, with a warning listing cells still to be graded by hand."""

    def export(self, gradebook: Any) -> None:
        pending = pending_manual_grades(gradebook, [str(a) for a in self.assignment] or None,
                                        [str(s) for s in self.student] or None)
        if pending:
            self.log.warning(
                "Exporting while %d cell(s) still need grading by hand (formgrader, "
                "'Manual Grading'); they count as 0 in the export:\n  %s", len(pending),
                "\n  ".join(describe_pending(pending)))
        super().export(gradebook)
