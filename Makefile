# The two commands of the README: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install tools run test lint format asyncapi docs bench soak chaos clean

PIP_LOG := $(VENV)/pip.log
TSC := tests/typescript/node_modules/.bin/tsc

# The venv, then what the tests drive beyond Python: Debian's chromium (apt-get when this
# user may, else one line saying what to run) and npm's typescript (when npm is there).
install: $(INSTALLED) tools

# pip's output (setuptools' editable-install warnings included) goes to a log, shown only
# when pip fails: the first screen of `make run` is the URL, not build chatter.
$(INSTALLED): pyproject.toml requirements.lock
	@echo "Installing the project into $(VENV) (pip's log: $(PIP_LOG))"
	@$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/python -m pip install --upgrade pip && \
	   $(BIN)/python -m pip install -c requirements.lock -e '.[dev]'; } >$(PIP_LOG) 2>&1 || \
	 { tail -n 30 $(PIP_LOG); echo "pip failed; its whole log: $(PIP_LOG)"; exit 1; }
	@touch $@

tools: $(INSTALLED)
	@bash deploy/local/chromium.sh
	@if command -v npm >/dev/null && [ ! -x $(TSC) ]; then \
	   echo "Installing npm's typescript into tests/typescript/node_modules"; \
	   (cd tests/typescript && npm install --no-package-lock --no-audit --no-fund --silent) \
	     >$(VENV)/npm.log 2>&1 || echo "npm install failed; see $(VENV)/npm.log"; \
	 fi

# The browser is for the tests only: running needs the venv alone.
run: $(INSTALLED)
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

# The prod overlay's images pinned to their registry digests (deploy/README.md): needs
# crane or docker buildx, and the registry. Commit the result.
.PHONY: pin-images
pin-images: $(INSTALLED)
	$(BIN)/python deploy/pin_images.py

# The benchmark (bench/README.md): a table on stdout, JSON in bench/results/.
# Flags through BENCH_ARGS, e.g. make bench BENCH_ARGS="--quick --workloads W1,W3".
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# Resilience runs (docs/resilience.md): a report on stdout, exit 1 on a leak or an inexact
# history. make soak SOAK_ARGS="--seconds 600"; make chaos CHAOS_ARGS="--seed 7".
soak: install
	$(BIN)/python -m resilience.soak $(SOAK_ARGS)

chaos: install
	$(BIN)/python -m resilience.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache
