# make test   - set up .venv on a fresh machine (CPU torch first), lint, and run the test suite
# make test-fast - the same without the slow end-to-end tests (training, Ray studies)
# make lint   - ruff over the package, scripts and tests (settings in pyproject.toml)
# make summary - notebook 03 on results/ (its figures into summary/figures/), then summary/summary.pdf
#                (2 pages) from the results folders: heartlab report
# make quickstart - set up .venv and run the main job end to end: a short hypertuning study on the
#                   beat files in data/, or on generated SYNTHETIC demo beats when data/ has none
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The CPU build of torch is installed before anything else so that no dependency pulls a CUDA build.
# With internet and no local wheel: make TORCH_INSTALL="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH_INSTALL ?= torch==2.13.0

.PHONY: setup lint test test-fast quickstart summary clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_INSTALL)
	$(PY) -m pip install --quiet -e '.[dev,optuna]'
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: lint
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

quickstart: setup
	$(VENV)/bin/heartlab quickstart

summary: setup
	$(VENV)/bin/jupyter execute --inplace notebooks/03_hypertune_results.ipynb
	$(VENV)/bin/heartlab report

clean:
	rm -rf $(VENV) .pytest_cache
