"""A local report API: the real HTTP contract over deterministic synthetic or recorded
extracts, for development and tests (a fresh clone, the demo) when no real report API is
configured. It imports nothing from ``ingestion`` and does not ship in the production image.
"""

from local_report_api.app import LocalApiConfig, LocalReportApi, create_app, serve_forever

__all__ = ["LocalApiConfig", "LocalReportApi", "create_app", "serve_forever"]
