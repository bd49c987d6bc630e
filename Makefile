# The two commands of the README:
#   make demo   set everything up, start local Kafka and Redis, score real data
#   make test   set everything up and run the whole test suite (as CI does)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?=

.PHONY: demo test setup lint system-deps

demo: setup
	$(BIN)/scorer demo $(if $(DATA),--data $(DATA))

test: setup lint
	$(if $(DATA),SCORER_DATA=$(DATA)) $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

setup: system-deps $(VENV)/.installed

system-deps:
	@scripts/system-deps.sh

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@
