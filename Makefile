# The README's commands. `make run` serves the console on the embedded default;
# `make test` runs lint, types and every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
L10_HOST ?= 0.0.0.0
L10_PORT ?= 8010

.PHONY: run test lint types pytest bench venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: venv
	L10_DEBUG=$${L10_DEBUG:-1} $(PY) manage.py migrate --no-input
	L10_DEBUG=$${L10_DEBUG:-1} $(PY) manage.py seed_demo --token-file var/demo-tokens.txt
	@echo "Console: http://127.0.0.1:$(L10_PORT)/  (Ctrl-C stops it)"
	L10_DEBUG=$${L10_DEBUG:-1} $(VENV)/bin/uvicorn l10console.asgi:application --host $(L10_HOST) --port $(L10_PORT) --lifespan on

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: venv
	$(VENV)/bin/mypy .

# pytest's exit code 5 means no test ran: that is a failure here, not a pass.
pytest: venv
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test: lint types pytest

bench: venv
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
