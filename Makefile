# The two commands a new user runs (see README.md):
#   make demo   run gradprobe's story end to end, figures in gradprobe-demo/
#   make test   lint (ruff) + the whole test suite (pytest)
# Each creates or updates .venv from the project's own files; torch is pinned to
# the CPU wheel by constraints.txt so a fresh install takes seconds.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
LINT_PATHS := src tests $(wildcard benchmarks examples)

.PHONY: venv demo test lint format bench clean

$(STAMP): pyproject.toml constraints.txt setup.py src/gradprobe/probe/_fused.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gradprobe demo --out gradprobe-demo

test: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/lint-imports
	bash .ci/ensure-chromium.sh
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

bench: $(STAMP)
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) gradprobe-demo .pytest_cache
