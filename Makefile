# One command per job, the same for people and CI.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up down test lint format bench clean venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

venv: $(STAMP)

## Start a server and one enrolled agent on this machine, send a demo command.
up: $(STAMP)
	@$(BIN)/python scripts/devstack.py up

## Stop what `make up` started.
down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python scripts/devstack.py down; else echo "nothing to stop"; fi

## The whole suite, in parallel on every core, with coverage printed at the end
## (SQLite; PostgreSQL instead when FLEETRUN_TEST_DATABASE_URL is set).
## WORKERS=1 runs it in one process; PYTEST_ARGS adds pytest options.
WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile \
		--cov --cov-report=term:skip-covered $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

clean: down
	rm -rf $(VENV) .fleetrun build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
