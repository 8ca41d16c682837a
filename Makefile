# Every target creates .venv on first use; nothing needs to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo prod test chaos fuzz bench lint fmt clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,bench]" -e examples/tracker
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/tracker/devapp.py

# The production topology on one machine (deploy/prod.py): private PostgreSQL
# and Redis, granian, one relay per core, the scheduler, nginx in front on
# 127.0.0.1:$(PORT) (8000). Installs Debian's nginx, redis and postgresql when
# missing (as root). Ctrl-C stops everything.
PROD_PACKAGES = $(if $(shell command -v nginx),,nginx) \
	$(if $(shell command -v redis-server),,redis-server) \
	$(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql)
prod: $(STAMP)
	@if [ -n "$(strip $(PROD_PACKAGES))" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PROD_PACKAGES) >/dev/null; \
	  else echo "missing: $(PROD_PACKAGES) (sudo apt-get install $(PROD_PACKAGES))" >&2; exit 1; fi; \
	fi
	PORT=$${PORT:-8000} exec $(BIN)/python deploy/prod.py

# One pytest worker per core (pytest-xdist), a test file per worker at a time:
# a file's module fixtures (servers, clusters, a Chromium) start once.
# PYTEST_ARGS="-n 0" runs in one process (docs/testing.md).
test: $(STAMP)
	$(BIN)/python -m pytest -m "not chaos" -n auto --dist loadfile $(PYTEST_ARGS)

# The long failure scenarios (Redis hung or killed for many seconds, PostgreSQL
# restarted and killed under API writes, schedulers killed and stopped); each
# prints its figures.
chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos -s $(PYTEST_ARGS)

# schemathesis against the tracker's OpenAPI document, longer than in `make test`
# (FUZZ_SECONDS a run, ten minutes by default; FUZZ_SEED=<seed> replays a run).
fuzz: $(STAMP)
	FUZZ_SECONDS=$${FUZZ_SECONDS:-600} $(BIN)/python -m pytest -m fuzz examples/tracker/tests/test_fuzz.py $(PYTEST_ARGS)

# Every benchmark, one after the other (about 35 minutes); each prints its table
# and whether its targets are met. A missed target does not stop the others.
# Each one's output is kept in bench/results/NAME.md and its tables are drawn
# next to it as PNG charts (bench/charts.py).
RESULTS := bench/results
bench: $(STAMP)
	mkdir -p $(RESULTS)
	-$(BIN)/python -m bench $(BENCH_ARGS)
	-PYTHONUNBUFFERED=1 $(BIN)/python -m bench json | tee $(RESULTS)/json.md
	-PYTHONUNBUFFERED=1 $(BIN)/python -m bench.tenancy | tee $(RESULTS)/tenancy.md
	-PYTHONUNBUFFERED=1 $(BIN)/python -m bench.tracker | tee $(RESULTS)/tracker.md
	-$(BIN)/python -m bench.tracker_pages
	-PYTHONUNBUFFERED=1 $(BIN)/python -m bench.relay | tee $(RESULTS)/relay.md
	$(BIN)/python -m bench.charts

lint: $(STAMP)
	$(BIN)/ruff check src examples tests bench deploy
	$(BIN)/ruff format --check src examples tests bench deploy
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format src examples tests bench deploy
	$(BIN)/ruff check --fix src examples tests bench deploy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
