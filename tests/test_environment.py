"""The three install paths (make/pip, conda, pyproject) agree on versions."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values()
                                      for r in extra]
    # an extra that includes another (test = [..., "sgd-from-scratch[cluster]"]) pins nothing
    return [req for req in map(Requirement, reqs) if req.name != project["name"]]


def test_environment_yml_parses_and_has_the_same_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "sgd-from-scratch"
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    pinned = {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pip if "==" in p}
    assert pinned == constraints()
    assert "-e .[test]" in pip


def test_every_requirement_is_pinned_within_its_range():
    pins = constraints()
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), \
            f"{req.name}=={pins[name]} is outside pyproject's range {req.specifier}"


def test_torch_is_the_cpu_build_pinned_exactly():
    assert constraints()["torch"] == "2.13.0"
    torch_req = next(r for r in requirements() if r.name == "torch")
    assert not torch_req.specifier.contains(Version("2.14.0")), "a newer torch pulls a CUDA build"


def test_installed_versions_match_the_pins():
    """The running environment (made by `make`) is the pinned one."""
    pins = constraints()
    for name in ("torch", "numpy", "matplotlib", "jupyterlab", "nbgrader", "nbval", "pytest"):
        installed = importlib.metadata.version(name)
        assert re.sub(r"\+.*", "", installed) == pins[name], f"{name} {installed} != {pins[name]}"


def test_cpu_torch_index_is_opt_in():
    """`make lab TORCH=cpu` installs torch from PyTorch's CPU wheel index; the default
    install (the one that works on this machine) does not name any index."""
    import subprocess

    def install_lines(*args):
        out = subprocess.run(["make", "-n", "-B", "venv", "STAMP=.venv/.dry-run", *args],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return [ln for ln in out.splitlines() if "pip install" in ln]
    cpu = install_lines("TORCH=cpu")
    assert cpu and all("--index-url https://download.pytorch.org/whl/cpu" in ln for ln in cpu)
    assert all("index-url" not in ln for ln in install_lines())
