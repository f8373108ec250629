# reward-poller: `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
# pip installs into the virtualenv from outside it when this Python's pip can (22.3 and
# newer: --python), which spares creating a pip inside it (seconds of the first `make demo`);
# else the virtualenv gets its own pip. Bytecode is then compiled on every core at once
# (pip alone compiles on one): an environment with PYTHONDONTWRITEBYTECODE set never writes
# it on import, and each process would compile every module it imports, at every start.
PIP_INSTALL = if [ -x $(BIN)/pip ]; then $(BIN)/python -m pip install $(PIPFLAGS) $(1); \
	else $(PYTHON) -m pip --python $(BIN)/python install $(PIPFLAGS) $(1); fi && \
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib poller > /dev/null
PIPFLAGS = --disable-pip-version-check --no-compile

.PHONY: demo test unit lint check-pg clean install bench faults

$(BIN)/python:
	@echo "==> creating the virtualenv $(VENV)"
	@if $(PYTHON) -m pip install --help 2>/dev/null | grep -q -- '--python '; then \
		$(PYTHON) -m venv --without-pip $(VENV); else $(PYTHON) -m venv $(VENV); fi

# The demo needs only what reward-poller itself needs (no test or lint tools).
$(RUNTIME): pyproject.toml setup.py | $(BIN)/python
	@echo "==> installing reward-poller and its runtime dependencies into $(VENV) (pip)"
	@$(call PIP_INSTALL,-e .)
	@touch $@

# Tests and lint: the dev extras too (pytest, hypothesis, vcrpy, mypy, ruff, import-linter).
$(DEV): pyproject.toml setup.py | $(BIN)/python
	@echo "==> installing reward-poller with the dev extras into $(VENV) (pip)"
	@$(call PIP_INSTALL,-e '.[dev]')
	@touch $@ $(RUNTIME)

install: $(DEV)

## The main job: the real worker against local stand-ins, on a throw-away SQLite ledger.
demo: $(RUNTIME)
	@echo "==> reward-poller demo"
	$(BIN)/reward-poller demo

## Lint, types, layering, then every test (PostgreSQL included).
test: $(DEV) lint check-pg
	$(BIN)/python -m pytest

## The fast tier alone: tests/unit (no network, no process, no database), in seconds.
unit: $(DEV)
	$(BIN)/python -m pytest tests/unit

lint: $(DEV)
	$(BIN)/ruff check poller tests migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

## The benchmark suite: prints a table and writes BENCHMARKS.md (under half an hour on 2 cores).
bench: $(VENV)/.bench-installed check-pg
	$(BIN)/python -m bench

# In a variable: a comma written inside $(call ...) would split its argument in two.
BENCH_EXTRAS := .[dev,bench]
$(VENV)/.bench-installed: $(DEV) pyproject.toml
	@echo "==> installing the bench extras (pgqueuer) into $(VENV) (pip)"
	@$(call PIP_INSTALL,-e '$(BENCH_EXTRAS)')
	@touch $@

## The long fault-injection run: the crash, concurrency and outside-fault suites
## with FAULT_TRIALS random-kill trials per ledger and a longer property search (~15 min).
## `make test` runs the same suites in their quick variant.
FAULT_TRIALS ?= 200
faults: $(DEV) check-pg
	REWARD_POLLER_FAULT_TRIALS=$(FAULT_TRIALS) REWARD_POLLER_FAULT_EXAMPLES=2000 \
		$(BIN)/python -m pytest tests/system/faults -q

## Make sure the local PostgreSQL answers (starting the packaged cluster if it is down).
check-pg:
	@scripts/ensure-postgres

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
