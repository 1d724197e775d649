"""The report API's settings outside Airflow: ``REPORT_API_*`` (inside: the ``report_api``
connection, ``dags/sales_mart_support/connections.py``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

ENV_URL = "REPORT_API_URL"
ENV_KEY = "REPORT_API_KEY"
ENV_NICKNAME = "REPORT_API_NICKNAME"
ENV_COHORT = "REPORT_API_COHORT"


class ConfigurationError(ValueError):
    """A setting the command needs is missing; nothing was written."""


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
        """Settings from ``REPORT_API_*``; None when ``REPORT_API_URL`` is not set; a URL
        without the key, nickname or cohort (every call carries them) is an error."""
        names = (ENV_URL, ENV_KEY, ENV_NICKNAME, ENV_COHORT)
        values = {name: environ.get(name, "").strip() for name in names}
        if not values[ENV_URL]:
            return None
        if missing := [name for name, value in values.items() if not value]:
            raise ConfigurationError(f"{ENV_URL} is set but {', '.join(missing)} not: set them")
        return cls(*values.values())

    @classmethod
    def require_env(cls, environ: Mapping[str, str] = os.environ) -> ApiSettings:
        """Settings from ``REPORT_API_*``, or an error naming them: synthetic data never
        reaches a configured warehouse (``retail_dev`` starts the local API only for the
        embedded one)."""
        settings = cls.from_env(environ)
        if settings is None:
            raise ConfigurationError(
                f"no report API configured: set {ENV_URL}, {ENV_KEY}, {ENV_NICKNAME} and"
                f" {ENV_COHORT} (the local report API is used only with the embedded"
                " warehouse of `python -m retail_dev`)"
            )
        return settings

    def env(self) -> dict[str, str]:
        """``REPORT_API_*`` as :meth:`from_env` reads them (the key: pass on, never print)."""
        return {ENV_URL: self.base_url, ENV_KEY: self.api_key, ENV_NICKNAME: self.nickname,
                ENV_COHORT: self.cohort}  # fmt: skip

    def headers(self) -> dict[str, str]:
        """The headers every API call carries (SPEC section 2)."""
        return {"X-Nickname": self.nickname, "X-Cohort": self.cohort, "X-Project": "True",
                "X-API-KEY": self.api_key}  # fmt: skip
