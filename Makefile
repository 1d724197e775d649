# Every command the README shows is a target here.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
# Cosmos and `airflow dags test` look for the `dbt` executable on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv demo test lint format lock clean bench

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: venv  ## embedded PostgreSQL + local report API, end to end
	$(BIN)/python -m ingestion demo

test: venv  ## the whole test suite
	$(BIN)/pytest

lint: venv  ## ruff for Python, sqlfluff (postgres dialect) for the dbt SQL
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint dbt_project

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: venv  ## re-freeze constraints.txt after changing requirements.txt
	{ echo '# Full lock of the virtualenv (pip install -r requirements.txt -c constraints.txt).'; \
	  echo '# Regenerate with `make lock` after changing requirements.txt.'; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache dbt_project/target dbt_project/logs

bench: venv  ## rerun the benchmarks (ratios against in-run baselines) -> docs/benchmarks.md
	$(BIN)/python -m benchmarks

# --- Airflow, the dbt manifest and the docs site ------------------------------------
DBT_DIR := dbt_project
MANIFEST := $(DBT_DIR)/target/manifest.json
DBT_SOURCES := $(shell find $(DBT_DIR) \( -path '$(DBT_DIR)/target' -o -path '$(DBT_DIR)/logs' \) -prune -o -type f \( -name '*.sql' -o -name '*.yml' -o -name '*.md' \) -print 2>/dev/null)

.PHONY: manifest airflow docs

manifest: $(MANIFEST)  ## dbt parse -> dbt_project/target/manifest.json (Cosmos renders the DAG from it)

# dbt parse renders profiles.yml but opens no connection: placeholders do when PG* is unset.
$(MANIFEST): $(VENV)/.installed $(DBT_SOURCES)
	cd $(DBT_DIR) && PGHOST=$${PGHOST:-localhost} PGUSER=$${PGUSER:-postgres} PGDATABASE=$${PGDATABASE:-postgres} \
	  $(CURDIR)/$(BIN)/dbt parse --profiles-dir . --quiet
	touch $@

# The DAG tests parse dags/, which needs the manifest.
test: manifest

airflow: venv manifest  ## local Airflow (standalone, SQLite in .local/airflow) with the sales_mart DAG
	$(BIN)/python -m ingestion.local_stack airflow

docs: venv  ## dbt docs generate + serve on http://localhost:8081 (also in the Airflow UI via Cosmos)
	$(BIN)/python -m ingestion.local_stack docs
