# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run` installs the package and what serving needs; `make test` (lint, bench) adds the dev extras
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint bench clean

$(RUN_STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(RUN_STAMP)  ## create .venv, install what serving needs, migrate, serve on $(HOST):$(PORT)
	$(BIN)/aicredits serve --host $(HOST) --port $(PORT)

# the suite runs in parallel (pytest-xdist), one worker per core plus one: many tests wait on
# processes, timers and the network, and the extra worker runs meanwhile (`make test WORKERS=0` runs
# it in this process); a test file stays on one worker (--dist loadfile), so a module's fixtures (a
# shared gateway process, a fake upstream) start once; files go out in collection order, the
# longest first (tests/conftest.py LONG_FILES)
WORKERS ?= $(shell $(PY) -c 'import os; print(len(os.sched_getaffinity(0)) + 1)')

# PYTHONDONTWRITEBYTECODE is emptied for the run: where a machine sets it, pytest would rewrite and compile
# every test module again in each worker (5 s of CPU per worker instead of 0.5 s), and each gateway
# subprocess would compile the package again
test: $(STAMP)  ## the whole suite (SQLite always; PostgreSQL and Redis when reachable, required when CI=true)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff (src, tests, bench) and mypy (src; configured in pyproject.toml)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(STAMP)  ## the overhead benchmark (not part of the tests); see docs/performance.md
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
