# The README's commands. `make run` serves the console on the embedded default;
# `make test` runs lint (ruff and the import contracts), types and every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run prod test lint types pytest pytest-embedded bench soak venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: venv
	L10_DEBUG=$${L10_DEBUG:-1} $(PY) -m l10console.launch $(RUN_ARGS)

# The production topology on one machine (docs/operations.md, "One machine: make prod"):
# migrate, then honcho runs the Procfile: L10_PROD_WEB uvicorn processes (2) on
# L10_PROD_PORT (8011) and the ports after it, a Celery worker per queue and one beat.
# It refuses to start without PostgreSQL, Redis and the secrets, or in debug mode.
PROD_NEEDS := L10_POSTGRES_HOST L10_REDIS_HOST L10_SECRET_KEY L10_AUDIT_KEYS
prod: venv
	@missing=(); for name in $(PROD_NEEDS); do [ -n "$${!name}" ] || missing+=("$$name"); done; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  echo "make prod: set $${missing[*]} first (README, \"Configuration\"; docs/operations.md, \"One machine: make prod\")." >&2; \
	  exit 2; \
	fi; \
	case "$${L10_DEBUG,,}" in 1|true|yes|on) \
	  echo "make prod: L10_DEBUG is on; production runs without it (for plain http, set L10_TLS=0 instead)." >&2; \
	  exit 2;; \
	esac; \
	for name in L10_PROD_WEB L10_PROD_PORT; do \
	  value="$${!name:-}"; if [ -n "$$value" ] && ! [[ "$$value" =~ ^[1-9][0-9]*$$ ]]; then \
	    echo "make prod: $$name must be a whole number, got '$$value'." >&2; exit 2; fi; \
	done
	$(PY) manage.py migrate --no-input
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/honcho --env /dev/null start \
	  --port $${L10_PROD_PORT:-8011} --concurrency web=$${L10_PROD_WEB:-2}

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
#
# The benches at their small size (tests/test_benches.py, about four minutes) spend their
# time waiting on the processes they start, so a whole run starts them beside the rest of
# the suite, with a test database and a Redis database of their own (the suite's Redis
# database less one); their report follows the suite's. PYTEST_ARGS runs what it names, alone.
BENCH_TESTS := tests/test_benches.py
pytest: venv
ifeq ($(strip $(PYTEST_ARGS)),)
	@benches=$$(mktemp); \
	L10_POSTGRES_DB=$${L10_POSTGRES_DB:-agent_platform}_benches L10_TEST_REDIS_DB=$$(( $${L10_TEST_REDIS_DB:-15} - 1 )) \
		$(PY) -m pytest --durations=10 -p no:cacheprovider $(BENCH_TESTS) > $$benches 2>&1 & pid=$$!; \
	$(PY) -m pytest --durations=25 --ignore=$(BENCH_TESTS); rc=$$?; \
	wait $$pid; brc=$$?; echo "== $(BENCH_TESTS), run beside the suite"; cat $$benches; rm -f $$benches; \
	for code in $$rc $$brc; do \
		if [ $$code -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; \
		if [ $$code -ne 0 ]; then exit $$code; fi; \
	done
else
	$(PY) -m pytest --durations=25 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
endif

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

# Production's steady load for SOAK_SECONDS (default 600): 1,000 sockets pinged and fed
# events, 1,000 agents reporting through the ingest API, a Celery worker and beat running
# the alert evaluation and the rollups; fails on a disconnect, a lost event, a failed
# request or task, memory drift or Redis keys that grow (bench/soak.py). Not part of
# `make bench`; tests/test_soak.py runs it small (`bench/soak.py --small`).
soak: venv
	$(PY) bench/soak.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
