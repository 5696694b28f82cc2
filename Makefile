# The two commands a newcomer needs: `make run` (the service with demo data, on
# SQLite) and `make test` (lint, types and the whole suite). Both build .venv first.

PYTHON ?= python3
# Another interpreter gets its own virtualenv: `make test PYTHON=python3.13 VENV=.venv-3.13`.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench soak docs browser clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "coursebook needs Python 3.11 or newer: set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/coursebook serve --demo

lint: $(STAMP)
	$(BIN)/ruff check coursebook tests bench
	$(BIN)/ruff format --check coursebook tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# `make bench`: SQLite and PostgreSQL (a local server; see README); `QUICK=1` for a
# one-minute SQLite run (`POSTGRES=1` adds PostgreSQL's); `PROFILE=1` saves R1/R2 profiles.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick) $(if $(PROFILE),--profile) $(if $(POSTGRES),--postgres)

# `make soak`: 2 workers on PostgreSQL and Redis at 64 connections for 60 s, PostgreSQL
# restarted (pg_ctlcluster: the machine's cluster) and Redis stopped meanwhile; writes
# docs/soak.md and fails when a bound is not met.
soak: $(STAMP)
	$(BIN)/python -m bench.soak

# The Chromium tests/test_docs_page.py drives (skipped without one): Debian's package,
# or Playwright's own build where there is no apt-get.
browser: $(STAMP)
	@if command -v apt-get >/dev/null; then apt-get install -y chromium; \
	else $(BIN)/playwright install chromium; fi

# docs/fields.md and docs/data-format.md are generated (a test fails when either is stale).
docs: $(STAMP)
	$(BIN)/python -m coursebook.reference > docs/fields.md
	$(BIN)/python -m coursebook.datadoc > docs/data-format.md

clean:
	rm -rf $(VENV) .venv-* var .pytest_cache .mypy_cache .ruff_cache .hypothesis .schemathesis
