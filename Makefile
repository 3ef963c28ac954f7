# `make run` sets up .venv on first use and trains the default model;
# `make test` runs the test suite. Both are safe to repeat.
PYTHON ?= python3
VENV := .venv
# torch is installed on its own first so that pip can reuse a local wheel where
# the machine has one. PyPI's Linux wheels bundle CUDA, so this pin also suits
# GPU machines. Set TORCH_SPEC='torch>=2.4' to take the newest release instead.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup run test sweep
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]"
	touch $@

run: setup
	$(VENV)/bin/python run_exp.py

test: setup
	$(VENV)/bin/python -m pytest

sweep: setup
	$(VENV)/bin/python exp_sweeps.py -- wait=true
