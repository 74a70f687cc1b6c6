# SGD from Scratch: `make lab` to learn, `make test` to check everything.
# Both create .venv on first use and reuse it while pyproject.toml and
# constraints.txt are unchanged (a second run installs nothing).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# nbgrader runs helper commands (alembic) by name: put the venv first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)
LAB_ARGS ?=
# The release (generated, committed) and the learner's workspace (git-ignored copy of it,
# where a learner works; make lab creates and updates it without ever overwriting their work).
RELEASE_DIR ?= notebooks
WORK_DIR ?= my-work
COURSE_DIR ?= .
# Jupyter refuses to run as root unless told; only add the flag when we are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PYTEST_ARGS ?=
# TORCH=cpu: take torch from PyTorch's CPU-only wheel index (plain PyPI's torch 2.13.0 for
# Linux is the CUDA build plus about 16 NVIDIA packages, several GB a learner does not need).
TORCH ?=
PIP_TORCH := $(if $(filter cpu,$(TORCH)),--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple,)
ASSIGNMENTS := $(notdir $(wildcard solutions/[0-9][0-9]-*))

.PHONY: lab lab-instructor test test-fast test-python venv release bench execute clean hub-deps

venv: $(STAMP)

# The learner's environment (what make lab needs) ...
$(STAMP): pyproject.toml constraints.txt course/grading/kernel.py jupyter-config/overrides.json
	@echo "Setting up .venv: torch (CPU), JupyterLab, nbgrader and the course package."
	@echo "The first time this downloads or unpacks about 1-2 GB and takes 3-10 minutes;"
	@echo "later runs reuse it and take a second."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt $(PIP_TORCH) -e .
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	cp jupyter-config/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(BIN)/python -m course.grading.kernel --install
	@touch $(STAMP)

# ... and the test tools make test adds to it (pytest, nbval, Playwright, JupyterHub, ruff).
$(TEST_STAMP): $(STAMP)
	@echo "Adding the test tools to .venv (pytest, nbval, Playwright, JupyterHub, ruff, Dask, psycopg)."
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt $(PIP_TORCH) -e '.[test]'
	@touch $(TEST_STAMP)

## JupyterLab on the learner's workspace (my-work/, a git-ignored copy of notebooks/), as a
## learner sees it (instructor panels off), on the start page; started in my-work/ so that
## its terminals open there (jupyter-config/self-study: with .venv/bin on their PATH). New lessons of the release are
## copied in first; a notebook the learner changed is never touched (course/workspace.py).
## Jupyter's own settings apply: JUPYTER_PORT=9999 make lab, make lab LAB_ARGS=--no-browser
lab: $(STAMP)
	@$(BIN)/course workspace --release $(RELEASE_DIR) --work $(WORK_DIR)
	@echo "JupyterLab opens on $(WORK_DIR)/START.md; in its terminal: course check 01"
	cd $(WORK_DIR) && \
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config/self-study:$(CURDIR)/jupyter-config/learner \
	  $(CURDIR)/$(BIN)/jupyter lab --ServerApp.root_dir=. \
	  --LabApp.default_url=/lab/tree/START.md $(ROOT_FLAG) $(LAB_ARGS)

## JupyterLab on the repo root (or COURSE_DIR, a copy holding solutions/ and nbgrader_config.py)
## with nbgrader's formgrader and Create Assignment. Started in that folder: formgrader grades
## the course there. Its pages get a Content-Security-Policy (course.grading.render, enabled by
## jupyter-config/instructor) that lets no script from a submission run.
lab-instructor: $(STAMP)
	cd $(COURSE_DIR) && \
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config/instructor$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH)) \
	  $(CURDIR)/$(BIN)/jupyter lab --ServerApp.root_dir=. $(ROOT_FLAG) $(LAB_ARGS)

## The whole test suite, on every core (each test file stays on one worker: nbval needs that).
test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

FAST_TESTS := $(filter-out tests/test_autograde.py tests/test_notebooks.py tests/test_cli.py \
	tests/test_probes%.py tests/test_reverify.py tests/test_sandbox.py tests/test_jail.py \
	tests/test_render.py tests/test_untrusted.py tests/test_cluster.py,$(wildcard tests/test_*.py))

## The inner loop: ruff, the package and check tests (no notebooks, no grading,
## no browser), in well under a minute.
test-fast: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto $(FAST_TESTS) $(PYTEST_ARGS)

## The package tests on another Python, opt-in: make test-python PY=3.12 (or 3.13) builds
## .venv-3.12 from python3.12 (pyenv's when not on PATH) and runs test-fast there. The stored
## outputs stay produced on the pinned 3.11 stack. Torch 2.13.0 for another Python comes from
## plain PyPI (the CUDA build, about 5 GB, downloaded once; TORCH=cpu takes the CPU wheel).
PY ?= 3.12
test-python:
	$(MAKE) test-fast VENV=.venv-$(PY) \
	  PYTHON="$$(command -v python$(PY) || ls -d $$HOME/.pyenv/versions/$(PY)*/bin/python | tail -n 1)"

## configurable-http-proxy for deploy/jupyterhub, pinned by its package-lock.json (npm ci
## into deploy/jupyterhub/node_modules; the hub test and setup.sh install run it when needed).
hub-deps:
	deploy/jupyterhub/setup.sh proxy-deps

## Regenerate notebooks/ from solutions/ with nbgrader (never edit notebooks/ by hand).
release: $(STAMP)
	@for a in $(ASSIGNMENTS); do \
	  $(BIN)/nbgrader generate_assignment $$a --force --log-level=WARN || exit 1; done
	cp solutions/START.md notebooks/START.md

## Speed of course.optim.SGD against torch.optim.SGD, as ratios.
bench: $(STAMP)
	$(BIN)/python benchmarks/sgd_step.py

clean:
	rm -rf $(VENV) gradebook.db

## Re-execute one solution notebook in place, top to bottom (outputs are regression-tested).
execute: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make execute NB=solutions/NN-name/NN-name.ipynb"; exit 2; }
	cd $(dir $(NB)) && $(CURDIR)/$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.store_widget_state=False \
	  --ExecutePreprocessor.timeout=120 $(notdir $(NB))
