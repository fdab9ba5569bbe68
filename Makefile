# The README's commands. `make run` serves the console on the embedded default;
# `make test` runs lint (ruff and the import contracts), types and every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint types pytest pytest-embedded bench soak venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: venv
	L10_DEBUG=$${L10_DEBUG:-1} $(PY) -m l10console.launch $(RUN_ARGS)

# The import contracts (pyproject.toml, [tool.importlinter]) are part of lint: a broken
# layer fails it as a style error does.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo

types: venv
	$(VENV)/bin/mypy .

# pytest's exit code 5 means no test ran: that is a failure here, not a pass. The slowest
# tests are listed at the end, so the suite's time is watched where it grows.
pytest: venv
	$(PY) -m pytest --durations=25 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The apps `make run` serves, again on the embedded default (SQLite, local memory):
# tests that need PostgreSQL or Redis themselves ran in the first pass.
EMBEDDED_TESTS ?= tests/fleet tests/ingest tests/control tests/dashboard tests/audit tests/events tests/costs
pytest-embedded: venv
	L10_TEST_EMBEDDED=1 $(PY) -m pytest -m "not postgres and not redis and not browser" $(EMBEDDED_TESTS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test: lint types pytest pytest-embedded

# AGENTS sets the dashboard bench's fleet size (L10_BENCH_AGENTS): `make bench AGENTS=50000`.
bench: venv
	$(if $(AGENTS),L10_BENCH_AGENTS=$(AGENTS) )$(PY) bench/run.py

# 1,000 idle sockets for SOAK_SECONDS (default 600), pinged and fed events; fails on a
# disconnect, a lost event or memory drift. Not part of `make test` or `make bench`.
soak: venv
	$(PY) bench/soak_sockets.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
