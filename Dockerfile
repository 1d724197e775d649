# Airflow 3 image with the project: the ingestion package, the DAG, the dbt project and
# the manifest Cosmos renders the DAG from (built here, so the scheduler never runs dbt
# to parse). Used by every Airflow service in docker-compose.yaml, and by its report-api
# service, which mounts the development-only local_report_api: the image does not ship it.
FROM apache/airflow:3.3.2-python3.11

ENV DO_NOT_TRACK=1 \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False \
    AIRFLOW__COSMOS__ENABLE_CACHE_DBT_YAML_SELECTORS=False \
    DBT_PROJECT_DIR=/opt/airflow/dbt_project \
    RETENTION_REPORT_DIR=/opt/airflow/reports \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first (a layer that changes only with the pins): the runtime requirements
# only (requirements-dev.txt, tests and linters, stays out of the image). constraints.txt
# is the full lock of the tested virtualenv, so the image runs the versions CI ran.
COPY --chown=airflow:root requirements.txt constraints.txt /opt/airflow/project/
RUN pip install --no-cache-dir \
      -r /opt/airflow/project/requirements.txt \
      -c /opt/airflow/project/constraints.txt

# The packages (ingestion with its SQL migrations, retention_report with its page
# template), then the DAGs and the dbt project.
COPY --chown=airflow:root pyproject.toml /opt/airflow/project/
COPY --chown=airflow:root ingestion /opt/airflow/project/ingestion
COPY --chown=airflow:root retention_report /opt/airflow/project/retention_report
COPY --chown=airflow:root sales_mart_plugin /opt/airflow/project/sales_mart_plugin
RUN pip install --no-cache-dir --no-deps /opt/airflow/project
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root dbt_project /opt/airflow/dbt_project

# The manifest (`make manifest` does the same): dbt parse opens no connection, so the
# libpq variables are placeholders here; the real ones come from the `warehouse`
# connection through Cosmos at run time.
RUN cd /opt/airflow/dbt_project \
    && PGHOST=localhost PGUSER=airflow PGDATABASE=airflow \
       dbt parse --profiles-dir . --quiet \
    && test -s target/manifest.json
