# Every target creates .venv on first use and reinstalls when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# What the demo needs (flashsale alone), and what the tests need on top (every extra and the
# development tools).
BASE := $(VENV)/.installed-base
DEV := $(VENV)/.installed-dev

.PHONY: demo test test-all lint bench clean

# The install also compiles two modules (setup.py): a change to one reinstalls.
SOURCES := pyproject.toml setup.py streams/packed.py streams/packed.pxd flashsale/columns.py \
	flashsale/columns.pxd
$(BASE): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(BASE)

$(DEV): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The Compose file schema (compose-spec), read from docker-compose 1.29.2's wheel by the
	# tests; downloaded, not installed.
	$(BIN)/python -m pip download --quiet --no-deps --dest $(VENV)/share/compose-spec 'docker-compose==1.29.2'
	touch $(BASE) $(DEV)

# The bench's processing peers (its test runs them too): Bytewax beside flashsale (the `peers`
# extra), Quix Streams in a virtualenv of its own (.venv/quix: the `quix` extra's list, not
# flashsale), so its caps on confluent-kafka and pydantic do not move the versions measured.
PEERS := $(VENV)/.peers
QUIX := $(VENV)/quix
extra = $(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['$(1)']))" > $(VENV)/$(1).txt
$(PEERS): $(DEV)
	$(call extra,peers)
	$(BIN)/python -m pip install --quiet -r $(VENV)/peers.txt
	test -x $(QUIX)/bin/python || $(PYTHON) -m venv $(QUIX)
	$(call extra,quix)
	$(QUIX)/bin/python -m pip install --quiet -r $(VENV)/quix.txt
	touch $(PEERS)

demo: $(BASE)
	$(BIN)/flashsale demo

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Unit tests (CPU-bound, about a minute) run beside the integration and end-to-end tests,
# which mostly wait on brokers, workers and browsers and run in three processes (pytest-xdist,
# a test at a time, except that the files sharing a session cluster go to one process; each
# process has its own brokers and ports); the unit output follows.
# Tests marked `solo` measure timing and run last, with the machine to themselves (after a
# `sync`: the Kafka nodes' files written back to disk first, not during the measurement).
test: lint $(PEERS)
	@$(BIN)/python -m pytest -m "not slow" -p no:cacheprovider tests/unit > .unit-tests.log 2>&1 & unit=$$!; \
	$(BIN)/python -m pytest -m "not slow and not solo" -n 3 --dist loadgroup --durations=40 tests/integration tests/faults tests/e2e; rc=$$?; \
	wait $$unit; urc=$$?; echo "--- unit tests"; cat .unit-tests.log; rm -f .unit-tests.log; \
	sync; \
	$(BIN)/python -m pytest -m "solo and not slow" -p no:cacheprovider tests/integration tests/faults tests/e2e; src=$$?; \
	exit $$(( rc || urc || src ))

test-all: lint
	$(BIN)/python -m pytest

bench: $(PEERS)
	$(BIN)/flashsale bench --json benchmarks/latest.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
