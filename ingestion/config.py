"""Where the report API is and how to authenticate to it, read from the environment.

Inside Airflow the ``report_api`` connection is the source of truth; this module covers
the other case (CLI, tests, CI), where ``REPORT_API_*`` variables configure the source
and their absence means "start the local report API instead". It also writes the two
Airflow connections (``warehouse``, ``report_api``) as the JSON or URI strings
``AIRFLOW_CONN_*`` takes, for a local Airflow and the tests: plain strings, no Airflow
import (``dags/sales_mart_support`` reads them back through the providers' hooks).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from ingestion.warehouse import libpq_keywords

ENV_URL = "REPORT_API_URL"
ENV_KEY = "REPORT_API_KEY"
ENV_NICKNAME = "REPORT_API_NICKNAME"
ENV_COHORT = "REPORT_API_COHORT"


class ConfigurationError(ValueError):
    """The environment configures the report API only partially."""


@dataclass(frozen=True)
class ApiSettings:
    """Connection settings of the report API. The key is kept out of ``repr``."""

    base_url: str
    api_key: str = field(repr=False)
    nickname: str
    cohort: str

    def __post_init__(self) -> None:
        # A trailing slash would produce '//generate_report' when paths are appended.
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ApiSettings | None:
        """Settings from ``REPORT_API_*``; None when ``REPORT_API_URL`` is not set.

        A URL without a key (or without nickname/cohort, which every call must carry)
        is a half-done configuration and raises rather than silently using the local API.
        """
        base_url = environ.get(ENV_URL, "").strip()
        if not base_url:
            return None
        values = {
            name: environ.get(name, "").strip() for name in (ENV_KEY, ENV_NICKNAME, ENV_COHORT)
        }
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ConfigurationError(
                f"{ENV_URL} is set but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not; set them or unset {ENV_URL} "
                "to use the local report API"
            )
        return cls(
            base_url=base_url,
            api_key=values[ENV_KEY],
            nickname=values[ENV_NICKNAME],
            cohort=values[ENV_COHORT],
        )

    def headers(self) -> dict[str, str]:
        """The headers every API call carries (SPEC section 2)."""
        return {
            "X-Nickname": self.nickname,
            "X-Cohort": self.cohort,
            "X-Project": "True",
            "X-API-KEY": self.api_key,
        }


def warehouse_connection_json(libpq: Mapping[str, str]) -> str:
    """The ``warehouse`` connection (JSON form) for libpq settings.

    A password is written only when there is one; libpq parameters (``PGSSLMODE``...)
    go to the extra.
    """
    fields: dict[str, Any] = {
        "conn_type": "postgres",
        "host": libpq["PGHOST"],
        "port": int(libpq.get("PGPORT") or 5432),
        "login": libpq.get("PGUSER") or "postgres",
        "schema": libpq.get("PGDATABASE") or "postgres",
    }
    if libpq.get("PGPASSWORD"):
        fields["password"] = libpq["PGPASSWORD"]
    extra = libpq_keywords(libpq)
    if extra:
        fields["extra"] = extra
    return json.dumps(fields)


def warehouse_connection_uri(libpq: Mapping[str, str]) -> str:
    """The ``warehouse`` connection as an Airflow URI (``postgresql://user[:pw]@host:port/db``).

    A unix-socket directory host is percent-encoded, as Airflow's URI form requires;
    libpq parameters become query arguments (Airflow's extra).
    """
    user = quote(libpq.get("PGUSER") or "postgres", safe="")
    if libpq.get("PGPASSWORD"):
        user += ":" + quote(libpq["PGPASSWORD"], safe="")
    host = quote(libpq["PGHOST"], safe="")
    port = int(libpq.get("PGPORT") or 5432)
    database = quote(libpq.get("PGDATABASE") or "postgres", safe="")
    query = urlencode(libpq_keywords(libpq))
    return f"postgresql://{user}@{host}:{port}/{database}" + (f"?{query}" if query else "")


def report_api_connection_json(api: ApiSettings) -> str:
    """The ``report_api`` connection (JSON form): host = base URL, password = key."""
    return json.dumps(
        {
            "conn_type": "http",
            "host": api.base_url,
            "password": api.api_key,
            "extra": {"nickname": api.nickname, "cohort": api.cohort},
        }
    )


def airflow_connection_env(
    libpq: Mapping[str, str], api: ApiSettings, *, warehouse_form: str = "json"
) -> dict[str, str]:
    """``AIRFLOW_CONN_WAREHOUSE`` / ``AIRFLOW_CONN_REPORT_API`` for a local Airflow.

    The JSON form keeps a unix-socket directory as the warehouse host and the report
    API's base URL as the HTTP host, as the connections are documented, without URL
    encoding; ``warehouse_form="uri"`` writes the warehouse as a URI, the other form
    users give. The values hold secrets: pass them in the environment, never print them.
    """
    if warehouse_form not in ("json", "uri"):
        raise ValueError(f"warehouse_form must be 'json' or 'uri', not {warehouse_form!r}")
    warehouse = (
        warehouse_connection_uri(libpq)
        if warehouse_form == "uri"
        else warehouse_connection_json(libpq)
    )
    return {
        "AIRFLOW_CONN_WAREHOUSE": warehouse,
        "AIRFLOW_CONN_REPORT_API": report_api_connection_json(api),
    }
