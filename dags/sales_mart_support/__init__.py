"""What only the Airflow side of ``sales_mart`` needs, beside the DAG files: the connections
through the providers' hooks, the Cosmos task groups, fail-fast, and the failure alerts.
Airflow puts the DAG folder on ``sys.path``; ``dags/.airflowignore`` keeps the DAG
processor from parsing this package."""
