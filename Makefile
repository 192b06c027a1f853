# Two commands: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint docs bench bench-peers bench-automation bench-scaling reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The venv alone: after it, `make run &` starts at once (the README's quick start).
install: $(STAMP)

# The example job types (LPG, CFS) are loaded so examples/*.json run as they are.
run: $(STAMP)
	JOBCHAIN_JOB_MODULES="$${JOBCHAIN_JOB_MODULES:-examples.pricing_jobs}" $(BIN)/jobchain serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app jobs config

# The manual (docs/, mkdocs.yml) into site/; --strict: a broken link or anchor, or a page
# missing from the nav, fails the build (and so `make test`).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# The console's browser tests drive Debian's chromium; installed once, as the machine allows.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: lint docs $(CHROMIUM)
	$(BIN)/pytest

# The pure rules only (tests/domain: no database, no server), in about a second.
test-fast: $(STAMP)
	$(BIN)/pytest tests/domain -q

bench: $(STAMP)
	$(BIN)/python -m bench.core

# Side by side with Celery, RQ and Procrastinate (installed into their own venv by the script).
bench-peers: $(STAMP)
	$(BIN)/python -m bench.peers

# Reconciliation ticks on 2,000 assets and the A/B/C freshness example over a scaled hour,
# on SQLite and on the PostgreSQL server at BENCH_POSTGRES_URL (a throw-away database on it).
BENCH_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
bench-automation: $(STAMP)
	$(BIN)/python -m bench.automation
	$(BIN)/python -m bench.automation --database-url $(BENCH_POSTGRES_URL)

# PostgreSQL with 1, 2 and 4 `jobchain worker` processes sharing 4 threads: throughput, hops,
# the database's commits and CPU (a server at 127.0.0.1:5432; --scale 0.1 for a smoke run).
bench-scaling: $(STAMP)
	$(BIN)/python -m bench.scaling

# The long forms of the reliability battery (minutes); `make test` runs the short forms.
reliability: $(STAMP)
	$(BIN)/python -m tests.reliability

clean:
	rm -rf $(VENV) var site .pytest_cache .mypy_cache .ruff_cache
