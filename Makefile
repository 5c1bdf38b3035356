# make demo   — set everything up and run the main job on the embedded SmolLM2-135M
# make test   — set everything up and run the tests (unit tier + SmolLM2 integration tier)
# make notebook — JupyterLab and a "mechintro" kernel, both inside .venv; make lab starts it
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo figures results test test-unit test-integration lint typecheck clean notebook lab

$(BIN)/mechintro: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	@touch $@

setup: $(BIN)/mechintro

demo: setup
	$(BIN)/python scripts/demo.py

figures: setup
	MPLBACKEND=Agg $(BIN)/python analyses/make_figures.py

# JupyterLab + jupytext + ipywidgets in .venv, and a kernel named "mechintro" installed into .venv
# (--sys-prefix), not into ~/.local: another clone's `make notebook` cannot repoint it. JUPYTER_PATH
# puts this venv's kernels first, ahead of a user-wide "mechintro" an older clone may have left.
# PYTHONWARNINGS: setuptools' editable-install banner, not a problem of this install.
KERNELS := $(CURDIR)/$(VENV)/share/jupyter
notebook: setup
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -e ".[notebook]"
	$(BIN)/python -m ipykernel install --sys-prefix --name mechintro --display-name "Python (mechintro)"
	@echo "start it with: make lab   (= JUPYTER_PATH=$(KERNELS) $(BIN)/jupyter lab notebooks/; open a .py notebook with 'Open With → Notebook')"

lab:
	JUPYTER_PATH=$(KERNELS) $(BIN)/jupyter lab notebooks/

results: setup
	$(BIN)/python scripts/results.py write

# two pytest-xdist workers, a test file per worker at a time (make test TEST_WORKERS=0: one
# process); one line per test file as it finishes, with the share done, then the 20 slowest tests.
# Files in collection order (--no-loadscope-reorder): the few long SmolLM2 files first, not last.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

test-integration: setup
	$(BIN)/python -m pytest -q tests/integration

lint: setup
	$(BIN)/python -m ruff format --check mechintro tests benchmarks analyses notebooks scripts
	$(BIN)/python -m ruff check mechintro tests benchmarks analyses notebooks scripts

# mypy, strict on the kit ([tool.mypy] in pyproject.toml); tests/unit/test_types.py runs the same
typecheck: setup
	$(BIN)/python -m mypy mechintro/engine.py mechintro/edit.py mechintro/interventions.py mechintro/runner.py mechintro/reading.py mechintro/runs.py mechintro/store mechintro/experiments/base.py

clean:
	rm -rf runs build .pytest_cache
