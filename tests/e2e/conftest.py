"""JupyterLab servers (started through the Makefile) and headless Chromium for
the browser tests.

Without Chromium the tests skip and say how to install it, except under
``CI=true``, where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest
from tests.conftest import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class Lab:
    """A JupyterLab server started with `make <target>` on a copy of the course."""

    def __init__(self, target: str, root_dir: pathlib.Path, tmp: pathlib.Path,
                 release: pathlib.Path | None = None, cwd: pathlib.Path = ROOT,
                 make_vars: tuple[str, ...] = ()):
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = tmp / "settings"
        docmanager = settings / "@jupyterlab" / "docmanager-extension"
        docmanager.mkdir(parents=True)
        # Tests never save: no autosave, so running cells cannot rewrite a notebook.
        (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
        # Terminals keep a text copy of their screen (xterm's screen-reader mode), so a test
        # can read them.
        terminal = settings / "@jupyterlab" / "terminal-extension"
        terminal.mkdir(parents=True)
        (terminal / "plugin.jupyterlab-settings").write_text(json.dumps({"screenReaderMode": True}))
        env = dict(os.environ, JUPYTER_PORT=str(self.port),
                   JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
                   JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
        env.pop("MPLBACKEND", None)
        args = (f"--no-browser --ServerApp.ip=127.0.0.1 --IdentityProvider.token={self.token} "
                f"--LabApp.expose_app_in_browser=True")
        where = ([f"WORK_DIR={root_dir}", f"RELEASE_DIR={release}"] if target == "lab"
                 else [f"COURSE_DIR={root_dir}"])
        self.log = (tmp / f"{target}.log").open("w")
        self.proc = subprocess.Popen(["make", "-s", target, f"LAB_ARGS={args}", *where, *make_vars],
                                     cwd=cwd,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait()

    def _wait(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: see {self.log.name}")
            try:
                self.api("/api/status")
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"JupyterLab did not start in {timeout} s: see {self.log.name}")

    def api(self, path: str, method: str = "GET") -> object:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        for kernel in self.api("/api/kernels"):
            self.api(f"/api/kernels/{kernel['id']}", method="DELETE")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        message = ("Chromium not found at /usr/bin/chromium: install it with "
                   "`apt-get update && apt-get install -y chromium` (see .ci/run)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("playwright")
    return CHROMIUM


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory) -> pathlib.Path:
    """A throw-away copy of the course, so nothing a test does touches the repo."""
    copy = tmp_path_factory.mktemp("course")
    for name in ("solutions", "notebooks"):
        shutil.copytree(ROOT / name, copy / name)
    shutil.copy(ROOT / "nbgrader_config.py", copy)
    return copy


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def learner_lab(chromium_path, course_copy, tmp_path_factory):
    lab = Lab("lab", course_copy / "my-work", tmp_path_factory.mktemp("learner-lab"),
              release=course_copy / "notebooks")
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def instructor_lab(chromium_path, course_copy, tmp_path_factory):
    lab = Lab("lab-instructor", course_copy, tmp_path_factory.mktemp("instructor-lab"))
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser):
    """A fresh browser tab (own context) per test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def notebook_page(browser):
    """One tab for a module's notebook runs: JupyterLab loads once, and each
    notebook opens in it with the previous tabs closed (helpers.open_notebook)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


# ----------------------------------------------------------------- formgrader, XSS submission

XSS_STUDENTS = ("attack-xss", "legacy-xss")


@pytest.fixture(scope="session")
def xss_course(chromium_path) -> dict:
    """A course (under /var/tmp: the grading sandbox hides /tmp) whose lesson 01
    has two autograded submissions of tests/fixtures/attacks_render.py's
    ``attack-xss``: ``attack-xss`` as the course grades it, and ``legacy-xss``
    whose autograded notebook is then replaced by the raw submission, as
    stored before course.grading.render existed. Returns the folder and, per
    student, the formgrader submission id."""
    import sys
    import tempfile
    fixtures = ROOT / "tests" / "fixtures"
    sys.path.insert(0, str(fixtures))
    import make_submissions as ms  # noqa: E402  (before attacks_render: it merges it)
    base = pathlib.Path(tempfile.mkdtemp(prefix="sgd-xss-", dir="/var/tmp"))
    root = base / "course"
    root.mkdir()
    for name in ("solutions", "notebooks"):
        shutil.copytree(ROOT / name, root / name)
    shutil.copy(ROOT / "nbgrader_config.py", root)
    bin_dir = pathlib.Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               HOME=str(base), PYTHONWARNINGS="ignore")
    a = ms.L01

    def nbgrader(*args: str) -> None:
        proc = subprocess.run([str(bin_dir / "nbgrader"), *args, "--log-level=WARN"], cwd=root,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    try:
        nbgrader("generate_assignment", a, "--force")
        text = ms.submission_text(a, "attack-xss", root)
        for student in XSS_STUDENTS:
            path = root / "submitted" / student / a / f"{a}.ipynb"
            path.parent.mkdir(parents=True)
            path.write_text(text)
        nbgrader("autograde", a)
        legacy = root / "autograded" / "legacy-xss" / a / f"{a}.ipynb"
        legacy.chmod(0o644)
        legacy.write_text(text)
        from nbgrader.api import Gradebook
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            ids = {s.student.id: s.notebooks[0].id for s in gb.assignment_submissions(a)}
        yield {"root": root, "ids": ids, "assignment": a}
    finally:
        for path in base.rglob("*"):          # nbgrader makes its outputs read-only
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def xss_lab(xss_course, tmp_path_factory):
    """`make lab-instructor` on :func:`xss_course`."""
    lab = Lab("lab-instructor", xss_course["root"], tmp_path_factory.mktemp("xss-lab"))
    yield lab
    lab.stop()
