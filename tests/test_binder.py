"""mybinder.org's configuration (binder/, repo2docker conventions), tested without Docker:
it parses, its pins are constraints.txt's, and its postBuild gives the learner lab of
`make lab` (workspace, settings, start page, learner tools only, no solutions)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request

import pytest

from tests.conftest import ROOT, free_port

BINDER = ROOT / "binder"


def test_configuration_parses_and_uses_the_pins():
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert ">=3.11" in requires
    for script in ("postBuild", "start"):
        path = BINDER / script
        assert os.access(path, os.X_OK), f"binder/{script} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)
    post = (BINDER / "postBuild").read_text()
    install = next(ln for ln in post.splitlines() if "pip install" in ln)
    assert "-c constraints.txt" in install and "-e ." in post
    assert "https://download.pytorch.org/whl/cpu" in post      # no CUDA torch on Binder
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        assert not line or line.startswith("pip"), f"unpinned requirement {line!r}"


def _copy(dest: pathlib.Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)


def test_post_build_makes_the_learner_lab(tmp_path):
    repo = tmp_path / "repo"
    _copy(repo)
    env = dict(os.environ, SGD_BINDER_SKIP_INSTALL="1", PYTHON=sys.executable,
               PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}")
    subprocess.run(["binder/postBuild"], cwd=repo, env=env, check=True, timeout=300)
    work = repo / "my-work"
    released = sorted(p.relative_to(repo / "notebooks") for p in (repo / "notebooks").rglob("*")
                      if p.is_file())
    assert released and all((work / p).read_bytes() == (repo / "notebooks" / p).read_bytes()
                            for p in released)
    assert not (repo / "solutions").exists() and not (repo / "tests").exists()
    config = json.loads((repo / "binder" / "jupyter-config" / "jupyter_server_config.json")
                        .read_text())
    assert config["ServerApp"]["root_dir"] == str(work)

    # the server binder/start configures: start page, workspace, learner kernels only
    port, token = free_port(), "binder-test"
    proc = subprocess.Popen(
        ["binder/start", sys.executable, "-m", "jupyter", "lab", "--no-browser",
         f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", "--allow-root"],
        cwd=repo, env=dict(env, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt")),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        req = urllib.request.Request(f"{url}/?token={token}", method="GET")
        opener = urllib.request.build_opener(_NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(req, timeout=10)
        assert re.search(r"/lab/tree/START\.md", redirect.value.headers["Location"])
        with urllib.request.urlopen(f"{url}/api/contents?token={token}", timeout=10) as r:
            names = {item["name"] for item in json.load(r)["content"]}
        assert "START.md" in names and "01-gradient-descent" in names
        assert "solutions" not in names and "Makefile" not in names
        with urllib.request.urlopen(f"{url}/api/kernelspecs?token={token}", timeout=10) as r:
            assert set(json.load(r)["kernelspecs"]) == {"python3"}
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
