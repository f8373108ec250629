# reward-poller: `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint check-pg clean install bench faults

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: the real worker against local stand-ins, on a throw-away SQLite ledger.
demo: $(STAMP)
	$(BIN)/reward-poller demo

## Lint, types, layering, then every test (PostgreSQL included).
test: $(STAMP) lint check-pg
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check poller tests migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

## The benchmark suite: prints a table and writes BENCHMARKS.md (~8 min on 2 cores).
bench: $(STAMP) check-pg
	$(BIN)/python -m bench

## The long fault-injection run: the crash, concurrency and outside-fault suites
## with FAULT_TRIALS random-kill trials per ledger and a longer property search (~15 min).
## `make test` runs the same suites in their quick variant.
FAULT_TRIALS ?= 200
faults: $(STAMP) check-pg
	REWARD_POLLER_FAULT_TRIALS=$(FAULT_TRIALS) REWARD_POLLER_FAULT_EXAMPLES=2000 \
		$(BIN)/python -m pytest tests/faults -q

## Make sure the local PostgreSQL answers (starting the packaged cluster if it is down).
check-pg:
	@scripts/ensure-postgres

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
