# SGD from Scratch: `make lab` to learn, `make test` to check everything.
# Both create .venv on first use and reuse it while pyproject.toml and
# constraints.txt are unchanged (a second run installs nothing).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# nbgrader runs helper commands (alembic) by name: put the venv first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)
LAB_ARGS ?=
NOTEBOOK_DIR ?= notebooks
COURSE_DIR ?= .
# Jupyter refuses to run as root unless told; only add the flag when we are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PYTEST_ARGS ?=
ASSIGNMENTS := $(notdir $(wildcard solutions/[0-9][0-9]-*))

.PHONY: lab lab-instructor test test-fast venv release bench execute clean hub-deps

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt course/grading/kernel.py jupyter-config/overrides.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	cp jupyter-config/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(BIN)/python -m course.grading.kernel --install
	@touch $(STAMP)

## JupyterLab on notebooks/ as a learner sees it (instructor panels off).
## Jupyter's own settings apply: JUPYTER_PORT=9999 make lab, make lab LAB_ARGS=--no-browser
lab: $(STAMP)
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config/learner \
	  $(BIN)/jupyter lab $(NOTEBOOK_DIR)/START.md --ServerApp.root_dir=$(NOTEBOOK_DIR) $(ROOT_FLAG) $(LAB_ARGS)

## JupyterLab on the repo root (or COURSE_DIR, a copy holding solutions/ and nbgrader_config.py)
## with nbgrader's formgrader and Create Assignment. Started in that folder: formgrader grades
## the course there. Its pages get a Content-Security-Policy (course.grading.render, enabled by
## jupyter-config/instructor) that lets no script from a submission run.
lab-instructor: $(STAMP)
	cd $(COURSE_DIR) && \
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config/instructor$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH)) \
	  $(CURDIR)/$(BIN)/jupyter lab --ServerApp.root_dir=. $(ROOT_FLAG) $(LAB_ARGS)

## The whole test suite, on every core (each test file stays on one worker: nbval needs that).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

FAST_TESTS := $(filter-out tests/test_autograde.py tests/test_notebooks.py tests/test_cli.py \
	tests/test_probes%.py tests/test_reverify.py tests/test_sandbox.py tests/test_jail.py \
	tests/test_render.py tests/test_untrusted.py,$(wildcard tests/test_*.py))

## The inner loop: ruff, the package and check tests (no notebooks, no grading,
## no browser), in well under a minute.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto $(FAST_TESTS) $(PYTEST_ARGS)

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
	  --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=120 $(notdir $(NB))
