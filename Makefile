# telemetry-hub: `make run` tries it out, `make test` checks it.
# Both create or refresh .venv and web/node_modules first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := web/node_modules/.installed-stamp
BENCH_NODE_STAMP := bench/node/node_modules/.installed-stamp
PAGE       := hub/static/index.html
WEB_SOURCES := $(wildcard web/index.html web/vite.config.* web/src/* web/src/*/*)

.PHONY: run cluster test lint pytest bench soak setup clean

run: setup
	$(PY) -m hub.demo

# Three hubs on one PostgreSQL database, Mosquitto with a shared subscription,
# HAProxy in front (docs/cluster.md); needs PostgreSQL and HAProxy installed.
cluster: setup
	$(PY) -m hub.cluster_demo

test: setup lint pytest

setup: $(STAMP) $(NODE_STAMP) $(BENCH_NODE_STAMP) $(PAGE)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "telemetry-hub needs Python >= 3.11 (set PYTHON=python3.11)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the dashboard (Debian: apt install nodejs npm)"; exit 1; }
	npm ci --prefix web --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The Node.js peers and load of the benchmarks (bench/node), also run by the
# suite's smoke test.
$(BENCH_NODE_STAMP): bench/node/package.json bench/node/package-lock.json
	npm ci --prefix bench/node --no-audit --no-fund --loglevel=error
	touch $(BENCH_NODE_STAMP)

$(PAGE): $(NODE_STAMP) $(WEB_SOURCES)
	npm run build --prefix web

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy hub devices

pytest: setup
	$(PY) -m pytest

# The whole suite, about 8 minutes here: a table, and JSON in bench/results/.
bench: setup
	$(PY) -m bench.suite

# An hour at 6,000 readings/s with 20 dashboards: WAL, database, RSS, commits
# and latency over time (docs/performance.md, "Sustained load").
soak: setup
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) web/node_modules bench/node/node_modules .mypy_cache .ruff_cache .pytest_cache
