"""The built wheel is a complete package: every subpackage (exercises,
checks, grading) is in it, and a check runs from it in a fresh venv."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import sysconfig

from tests.conftest import ROOT


def test_wheel_installs_in_a_fresh_venv_and_runs_a_check(tmp_path: pathlib.Path) -> None:
    src, dist = tmp_path / "src", tmp_path / "dist"       # built from a copy: no build/ here
    shutil.copytree(ROOT / "course", src / "course",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(src)], check=True, cwd=tmp_path)
    (wheel,) = dist.glob("sgd_from_scratch-*.whl")
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    site = fresh / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
        / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(site), str(wheel)], check=True)
    # The dependencies (torch, numpy, ...) from this venv, but not its editable
    # `course`: a path in a .pth file is searched after the venv's own packages,
    # and the editable finder of this venv is not loaded from there.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = ("import course, course.checks, course.exercises, course.grading.reverify\n"
            "assert 'fresh' in course.__file__, course.__file__\n"
            "from course.checks import check_gd_step\n"
            "check_gd_step(lambda w, grad, lr: w - lr * grad)\n")
    out = subprocess.run([str(fresh / "bin" / "python"), "-c", code], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("\u2713 gd_step:"), out.stdout
