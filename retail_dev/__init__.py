"""Development only (not in the image): the embedded PostgreSQL, the local stack and the
``python -m retail_dev`` command line, which is ``python -m ingestion`` with local
defaults filled in (the embedded warehouse, the local report API) plus ``demo``,
``serve``, ``report``, ``airflow``, ``docs``, ``env`` and ``stop``."""
