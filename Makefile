# Every command the README shows is a target here.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
# Cosmos resolves the DAG's dbt selectors from the manifest; its cache of them is an
# Airflow Variable, read on every DAG parse: off, parsing them takes milliseconds.
export AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS := False
# Cosmos and `airflow dags test` look for the `dbt` executable on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv demo status test e2e lint format lock clean bench celery-check report browser reliability

venv: $(VENV)/.installed

# requirements.txt (runtime, what the Airflow image installs) and requirements-dev.txt
# (tests, lint, the embedded PostgreSQL; it includes requirements.txt), both pinned to
# the one lock constraints.txt: only what the files list is installed, at locked versions.
# uv installs them (about 15 s; pip takes about 45 s), compiled to bytecode as pip does
# (every import compiles the sources otherwise, when PYTHONDONTWRITEBYTECODE is set).
UV := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python
$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv -c constraints.txt
	$(UV) -r requirements-dev.txt -c constraints.txt
	$(UV) --no-deps -e .
	touch $@

demo: venv  ## embedded PostgreSQL + local report API, end to end
	$(BIN)/python -m retail_dev demo

status: venv  ## what the warehouse holds: loads per day, mart periods, freshness
	$(BIN)/python -m retail_dev status

# The weekly retention report of the last WEEKS built weeks, from the warehouse the libpq
# variables name (the embedded one of `make demo` when unset) -> reports/ (git-ignored).
WEEKS ?= 8
report: venv  ## retention report (HTML + PNG charts) of the last WEEKS weeks -> reports/, prints the page's path
	$(BIN)/python -m retail_dev report --weeks $(WEEKS)

# Two processes, one test file each at a time (module fixtures stay in one process): the
# tests wait on dbt, Airflow and PostgreSQL in turn, so one process leaves a core idle.
test: venv  ## the test suite without the end-to-end runs (a few minutes)
	$(BIN)/pytest -m "not slow" -n 2 --dist loadfile --durations=10

e2e: venv  ## the end-to-end runs (real Airflow runs, the CLI over whole ranges, the property test)
	$(BIN)/pytest -m slow -n 2 --dist loadfile --durations=15

# The browser tests (tests/e2e/test_browser.py) skip without it, and fail in CI.
browser:  ## Debian's chromium for the browser tests (as root, or with sudo)
	@command -v chromium >/dev/null || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium \
	  || { $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium; }; }
	@chromium --version

lint: venv  ## ruff for Python, sqlfluff (postgres dialect) for the dbt SQL
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint dbt_project

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: venv  ## re-freeze constraints.txt after changing requirements.txt or requirements-dev.txt
	{ echo '# Full lock of the virtualenv: runtime and development (pip install -r requirements.txt'; \
	  echo '# or -r requirements-dev.txt, with -c constraints.txt; pip installs only what is listed).'; \
	  echo '# Regenerate with `make lock` after changing requirements.txt or requirements-dev.txt.'; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dbt_project/target dbt_project/logs

# Slow (a few minutes), not part of `make test`; CI runs it as its own step.
celery-check: venv manifest  ## Airflow on a real CeleryExecutor: two workers, then one killed mid-task
	$(BIN)/python -m deploy.celery_check

reliability: venv manifest  ## rewrite docs/reliability.md from the fault matrix (tests/e2e/test_fault_matrix.py)
	RELIABILITY_DOC=docs/reliability.md $(BIN)/pytest tests/e2e/test_fault_matrix.py -q

bench: venv manifest  ## rerun the benchmarks (ratios against in-run baselines) -> docs/benchmarks.md
	$(BIN)/python -m benchmarks

# --- Airflow, the dbt manifest and the docs site ------------------------------------
DBT_DIR := dbt_project
MANIFEST := $(DBT_DIR)/target/manifest.json
DBT_SOURCES := $(shell find $(DBT_DIR) \( -path '$(DBT_DIR)/target' -o -path '$(DBT_DIR)/logs' \) -prune -o -type f \( -name '*.sql' -o -name '*.yml' -o -name '*.md' \) -print 2>/dev/null)

.PHONY: manifest airflow docs

manifest: $(MANIFEST)  ## dbt parse -> dbt_project/target/manifest.json (Cosmos renders the DAG from it)

# dbt parse renders profiles.yml but opens no connection: placeholders do when PG* is unset.
# A full parse: a partial one keeps the manifest's `selectors` as they were, ignoring a
# changed selectors.yml (dbt 1.11), and Cosmos renders the DAG from them.
$(MANIFEST): $(VENV)/.installed $(DBT_SOURCES)
	cd $(DBT_DIR) && PGHOST=$${PGHOST:-localhost} PGUSER=$${PGUSER:-postgres} PGDATABASE=$${PGDATABASE:-postgres} \
	  $(CURDIR)/$(BIN)/dbt parse --profiles-dir . --quiet --no-partial-parse
	touch $@

# The DAG tests parse dags/, which needs the manifest.
test e2e: manifest

airflow: venv manifest  ## local Airflow (standalone, SQLite in .local/airflow) with the sales_mart and retention_report DAGs
	$(BIN)/python -m retail_dev airflow

docs: venv  ## dbt docs generate + serve on http://localhost:8081 (also in the Airflow UI via Cosmos)
	$(BIN)/python -m retail_dev docs
