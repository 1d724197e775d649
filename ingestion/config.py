"""Where the report API is and how to authenticate to it, outside Airflow: ``REPORT_API_*``.

Inside Airflow the ``report_api`` connection is the source of truth
(``dags/sales_mart_support/connections.py``).
"""

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

    @classmethod
    def require_env(cls, environ: Mapping[str, str] = os.environ) -> ApiSettings:
        """Settings from ``REPORT_API_*``, or an error naming every missing variable.

        Synthetic data never reaches a configured warehouse: only ``python -m retail_dev``
        starts the local report API, and only for the embedded warehouse.
        """
        settings = cls.from_env(environ)
        if settings is None:
            raise ConfigurationError(
                f"no report API configured: set {ENV_URL}, {ENV_KEY}, {ENV_NICKNAME} and"
                f" {ENV_COHORT} (the local report API is used only with the embedded"
                " warehouse of `python -m retail_dev`)"
            )
        return settings

    def headers(self) -> dict[str, str]:
        """The headers every API call carries (SPEC section 2)."""
        return {
            "X-Nickname": self.nickname,
            "X-Cohort": self.cohort,
            "X-Project": "True",
            "X-API-KEY": self.api_key,
        }
