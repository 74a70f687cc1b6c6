"""The course on hosted notebooks (Colab and the like): a set-up cell and the links.

A learner who opens a lesson on Colab has no ``course`` package. Every notebook of
the release starts with :func:`setup_cell`: when ``course`` cannot be imported it
installs it with pip from the course's repository (:data:`REPOSITORY`, the one place
that names it), else it does nothing, so it is harmless in ``make lab``, on Binder
and in grading. It installs the package without its dependencies when torch is
already there (Colab ships torch, NumPy, Matplotlib, scikit-learn, tqdm, nbformat
and ipywidgets, and replacing Colab's torch would cost minutes and gigabytes; the
lessons' bit-for-bit comparisons are with whatever torch is installed); elsewhere
with them.

:func:`colab_url` is the "Open in Colab" link of a lesson, as README lists them.
"""

from __future__ import annotations

#: Where the course is published (a fork changes this line and runs ``make release``).
REPOSITORY = "https://github.com/sgd-from-scratch/sgd-from-scratch"
BRANCH = "main"
#: Marks the set-up cell, so the release inserts it once and tests find it.
TAG = "hosted-setup"

SETUP = '''\
# Set-up for hosted notebooks (Colab and the like). In `make lab`, on Binder and when
# graded, the course package is already installed and this cell does nothing.
import importlib.util, subprocess, sys
if importlib.util.find_spec("course") is None:
    print("Installing the course package (about a minute) ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    *(["--no-deps"] if importlib.util.find_spec("torch") else []),
                    "git+{repository}@{branch}"], check=True)
    importlib.invalidate_caches()
    import course  # noqa: F401
    print("Done: the course package is installed.")'''


def setup_cell(repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The source of the set-up cell for a course published at ``repository``."""
    return SETUP.format(repository=repository, branch=branch)


def colab_url(lesson: str, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The "Open in Colab" address of ``notebooks/<lesson>/<lesson>.ipynb``."""
    github = repository.removeprefix("https://github.com/")
    return (f"https://colab.research.google.com/github/{github}/blob/{branch}/"
            f"notebooks/{lesson}/{lesson}.ipynb")
