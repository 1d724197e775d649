"""Which errors fail a ``sales_mart`` task at once, and which keep their retries."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _permanent_error_types() -> tuple[type[BaseException], ...]:
    """Errors a retry cannot fix: bad input, bad configuration, a missing connection."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from ingestion.client import AuthError
    from ingestion.loader import BadInputError
    from ingestion.pipeline import IncompleteWeekError
    from sales_mart_support.connections import MissingConfiguration

    return (
        BadInputError,  # a file that cannot be loaded as it is
        MissingConfiguration,
        IncompleteWeekError,  # a week's missing days: a later run loads them
        AuthError,  # the report API refused the key (401/403)
        AirflowNotFoundException,  # a connection that is not defined
        ValueError,  # dates and settings that do not parse, missing settings (ConfigurationError)
    )


def _transient_error_types() -> tuple[type[BaseException], ...]:
    """Faults that may pass: network, timeouts, server errors, lock timeouts."""
    import psycopg2
    import requests

    from ingestion.client import DownloadError, ReportTimeout

    return (
        OSError,  # sockets, connection refused/reset, TimeoutError
        requests.RequestException,  # also a ValueError for a few (JSON decoding)
        # Server gone, connection refused, lock and statement timeouts, deadlocks and
        # serialization failures: all subclasses of OperationalError.
        psycopg2.OperationalError,
        DownloadError,
        ReportTimeout,
    )


def is_permanent_error(error: BaseException) -> bool:
    """True for an error no retry can fix; transient faults always keep their retries."""
    if isinstance(error, _transient_error_types()):
        return False
    # Anything else unknown (e.g. the client's ReportApiError for HTTP 5xx) keeps retrying.
    return isinstance(error, _permanent_error_types())


def fail_fast(function: Callable[..., T]) -> Callable[..., T]:
    """Turn errors no retry can fix into ``AirflowFailException`` (no retries).

    Every Python task that reaches out is decorated (under ``@task``). Transient faults
    (network errors, HTTP 5xx, lock timeouts, ``psycopg2.OperationalError``) pass
    unchanged and are retried with backoff; bad input, bad configuration and date errors
    fail the task on its first try, with the original error chained for the log.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if not is_permanent_error(error):
                raise
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(
                f"{type(error).__name__}: {error} (not retried: a retry cannot fix this)"
            ) from error

    return wrapper
