# One command per job, the same for people and CI.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# What running needs (server, CLI, SDK, agent), without the test and lint tools.
RUNTIME := $(VENV)/.installed-runtime

.PHONY: up down test lint format bench clean venv agent

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $(RUNTIME)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP) $(RUNTIME)

venv: $(STAMP)

## Start a server and one enrolled agent on this machine, send a demo command.
up: $(RUNTIME)
	@$(BIN)/python scripts/devstack.py up

## Stop what `make up` started.
down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python scripts/devstack.py down; else echo "nothing to stop"; fi

## The whole suite, in parallel on every core, with coverage and the 25 slowest tests
## printed at the end
## (SQLite; PostgreSQL instead when FLEETRUN_TEST_DATABASE_URL is set).
## WORKERS=1 runs it in one process; PYTEST_ARGS adds pytest options.
WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --durations=25 \
		--cov --cov-report=term:skip-covered $(PYTEST_ARGS)

## The agent alone, under dist/: the fleetrun-agent wheel, and fleetrun-agent.pyz (one
## file, run by any Python 3.11+) with its dependencies in fleetrun-agent-deps/ beside it.
## AGENT_PIP_ARGS builds those for another Python or machine (docs/operations.md).
agent: $(RUNTIME)
	$(BIN)/python scripts/build_agent.py -- $(AGENT_PIP_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts packaging
	$(BIN)/ruff format --check src tests bench scripts packaging
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench scripts packaging
	$(BIN)/ruff check --fix src tests bench scripts packaging

clean: down
	rm -rf $(VENV) .fleetrun build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
