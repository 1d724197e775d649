"""The weekly retention report: the last N built weeks of ``mart.f_customer_retention``
as charts (PNG) and one self-contained HTML page.

Runtime package; imports neither Airflow nor ``ingestion`` (it is given a connection).
The ``retention_report`` DAG, ``make report`` and ``python -m retail_dev report`` all call
:func:`render_report`.
"""

from retention_report.data import NoWeeksBuilt, RetentionWeeks, read_retention_weeks
from retention_report.render import DEFAULT_WEEKS, render_report

__all__ = [
    "DEFAULT_WEEKS",
    "NoWeeksBuilt",
    "RetentionWeeks",
    "read_retention_weeks",
    "render_report",
]
