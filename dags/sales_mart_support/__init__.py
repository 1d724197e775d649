"""What only the Airflow side of ``sales_mart`` needs, beside the DAG file.

The runtime package ``ingestion`` imports no Airflow; the DAG tasks call its steps and
use this package for the rest, one module per concern:

- ``connections``: the ``warehouse`` and ``report_api`` connections through the
  providers' hooks (``PostgresHook``, ``HttpHook``), with the ``PG*`` / ``REPORT_API_*``
  fallback, and the Cosmos profile mapping built from the same connection;
- ``failures``: which errors fail a task at once and which keep their retries;
- ``alerts``: the failure callbacks (a log line, and Airflow's HTTP / SMTP notifiers);
- ``xcom``: the JSON-able values tasks hand each other.

Airflow puts the DAG folder on ``sys.path``, so the DAG imports this package by its
unique name; ``dags/.airflowignore`` keeps the DAG processor from parsing it as DAGs.
Modules import Airflow's heavier parts (hooks, notifiers) inside functions, so parsing
the DAG stays fast and does no I/O.
"""
