# The two commands of the README: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint format asyncapi docs bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: install
	@bash deploy/local/run.sh

test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

asyncapi: install
	$(BIN)/python -m publisher.asyncapi

# docs/configuration.md from both commands' --help; a test fails while it is stale.
docs: install
	$(BIN)/python -m tests.configuration_docs

# The benchmark (bench/README.md): a table on stdout, JSON in bench/results/.
# Flags through BENCH_ARGS, e.g. make bench BENCH_ARGS="--quick --workloads W1,W3".
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache
