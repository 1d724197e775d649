"""A local report API: the real HTTP contract over deterministic synthetic extracts.

Used whenever no real report API is configured (tests, the demo, a fresh clone).
"""

from ingestion.report_api.server import LocalApiConfig, LocalReportApi, serve_forever

__all__ = ["LocalApiConfig", "LocalReportApi", "serve_forever"]
