# Every target creates .venv on first use and reinstalls when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The Compose file schema (compose-spec), read from docker-compose 1.29.2's wheel by the
	# tests; downloaded, not installed.
	$(BIN)/python -m pip download --quiet --no-deps --dest $(VENV)/share/compose-spec 'docker-compose==1.29.2'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flashsale demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -m "not slow"

test-all: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[peers]'
	$(BIN)/flashsale bench --json benchmarks/latest.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
