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
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server started with `make <target>` on a copy of the course."""

    def __init__(self, target: str, root_dir: pathlib.Path, tmp: pathlib.Path):
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = tmp / "settings"
        docmanager = settings / "@jupyterlab" / "docmanager-extension"
        docmanager.mkdir(parents=True)
        # Tests never save: no autosave, so running cells cannot rewrite a notebook.
        (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
        env = dict(os.environ, JUPYTER_PORT=str(self.port),
                   JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
                   JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
        env.pop("MPLBACKEND", None)
        args = (f"--no-browser --ServerApp.ip=127.0.0.1 --IdentityProvider.token={self.token} "
                f"--LabApp.expose_app_in_browser=True")
        where = "NOTEBOOK_DIR" if target == "lab" else "COURSE_DIR"
        self.log = (tmp / f"{target}.log").open("w")
        self.proc = subprocess.Popen(["make", "-s", target, f"LAB_ARGS={args}", f"{where}={root_dir}"], cwd=ROOT,
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
    lab = Lab("lab", course_copy / "notebooks", tmp_path_factory.mktemp("learner-lab"))
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
