# Development tasks. `make` alone lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Extra arguments for pytest, e.g. make test PYTEST_ARGS="-x -k ingest"
PYTEST_ARGS ?=
# The Procfile's commands (gunicorn, celery, alembic) come from the venv.
USE_VENV := export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: help venv run test lint migrate clean bench simulate screenshots

help: ## List the targets
	@echo "Targets:"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create .venv and install the requirements (reruns when they change)

# Wheels only (--only-binary): nothing is compiled, so no compiler or Python
# headers are needed. The one optional speed-up that must be compiled is tried
# only where there is a compiler, and its failure is not an error.
$(STAMP): requirements.txt requirements-dev.txt requirements-speedups.txt
	@if [ ! -x $(PY) ]; then \
	  echo "Creating $(VENV)"; \
	  if ! python3 -m venv $(VENV); then \
	    rm -rf $(VENV); \
	    echo "python3 -m venv failed; if ensurepip is missing: sudo apt-get install python3-venv" >&2; \
	    exit 1; \
	  fi; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r requirements-dev.txt
	@if command -v cc >/dev/null; then \
	  $(PY) -m pip install --quiet --disable-pip-version-check -r requirements-speedups.txt >/dev/null 2>&1 \
	    || echo "gunicorn-h1c did not build: web parses headers in Python (see requirements-speedups.txt)"; \
	fi
	@touch $@

run: venv ## Start web, worker and flower with .env (starts local PostgreSQL/Redis)
	@if [ ! -f .env ]; then cp .env.example .env; echo "Created .env from .env.example"; fi
	$(PY) scripts/ensure_services.py
	$(USE_VENV); honcho run alembic upgrade head
	@# URLs and tokens once web answers, below the start-up lines rather than above them.
	@($(VENV)/bin/honcho run $(PY) scripts/announce.py &)
	$(USE_VENV); exec honcho start web worker flower

test: venv ## Run pytest against DATABASE_URL/REDIS_URL of the environment (not .env)
	$(PY) scripts/ensure_services.py --no-env-file
	$(USE_VENV); $(PY) -m pytest $(PYTEST_ARGS)

screenshots: venv ## Refresh docs/screenshots/ from the dashboard test (a real browser)
	$(PY) scripts/ensure_services.py --no-env-file
	$(USE_VENV); DASHBOARD_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/test_dashboard.py

lint: venv ## Run ruff
	$(VENV)/bin/ruff check .

migrate: venv ## Apply the migrations (the Procfile's release step) with .env
	$(USE_VENV); honcho run alembic upgrade head

simulate: venv ## Run the fleet simulator: make simulate ARGS="live --vehicles 10" (ARGS=--help lists modes)
	$(USE_VENV); honcho run python -m simulator $(or $(ARGS),--help)

bench: venv ## Benchmarks on a scratch database (BENCH_ARGS="--quick" for a smoke run)
	$(PY) bench/run.py $(BENCH_ARGS)

clean: ## Remove .venv
	rm -rf $(VENV)
