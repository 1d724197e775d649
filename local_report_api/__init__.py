"""A local report API: the real HTTP contract over deterministic synthetic extracts.

A development and test stand-in for the external source (FastAPI served by uvicorn),
used whenever no real report API is configured (tests, the demo, a fresh clone). It
imports nothing from ``ingestion`` and does not ship in the production image.
"""

from local_report_api.app import create_app
from local_report_api.config import LocalApiConfig
from local_report_api.server import LocalReportApi, serve_forever

__all__ = ["LocalApiConfig", "LocalReportApi", "create_app", "serve_forever"]
