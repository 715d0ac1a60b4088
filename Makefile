# Everything a fresh machine with only python3 needs: `make serve`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: serve test check lint format typecheck pytest bench bench-quick soak fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/middleware-kit serve paste-examples/api-paste.ini

test: check pytest

check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check middleware_kit tests benchmarks
	$(BIN)/ruff format --check middleware_kit tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format middleware_kit tests benchmarks
	$(BIN)/ruff check --fix middleware_kit tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

# The long load runs (60 s at 64 connections), deselected from `make pytest`.
soak: $(STAMP)
	$(BIN)/python -m pytest -m soak -s $(PYTEST_ARGS)

# Coverage-guided fuzzing of the chain in-process for FUZZ_SECONDS (atheris; when it
# cannot be installed, the target's bounded random loop). Not part of `make test`.
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[fuzz]' || echo "atheris did not install: random loop"
	$(BIN)/python -m benchmarks.fuzz_chain --seconds $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
