"""The local report API serving the real recorded extracts (``shared/fixtures/course_api``).

This is how the pipeline is tested end to end on the real files: the same HTTP contract,
the real bytes.
"""

from __future__ import annotations

from datetime import date

import pytest

from ingestion.client import NotFound, ReportApiClient
from local_report_api import LocalApiConfig, LocalReportApi
from retail_dev.cli import local_api_settings


@pytest.fixture(scope="module")
def recorded_api(fixtures_dir):
    with LocalReportApi(LocalApiConfig.from_extracts(fixtures_dir, running_polls=1)) as api:
        yield api


def test_report_window_is_read_from_the_extracts(recorded_api):
    config = recorded_api.config
    assert (config.report_start, config.report_end) == (date(2024, 9, 8), date(2024, 9, 30))
    assert config.increments_until == date(2024, 10, 2)


def test_report_files_are_the_recorded_bytes(recorded_api, fixtures_dir, tmp_path):
    client = ReportApiClient(local_api_settings(recorded_api))
    report = client.wait_for_report(client.generate_report(), initial_delay_s=0.01)
    paths = client.fetch_files(report.files, tmp_path)
    for name in ("user_order_log", "user_activity_log", "customer_research", "price_log"):
        assert paths[name].read_bytes() == (fixtures_dir / "report" / f"{name}.csv").read_bytes()


def test_increments_missing_files_and_missing_days(recorded_api, fixtures_dir, tmp_path):
    client = ReportApiClient(local_api_settings(recorded_api))
    report = client.wait_for_report(client.generate_report(), initial_delay_s=0.01)

    increment = client.get_increment(report.report_id, date(2024, 10, 2))
    assert not isinstance(increment, NotFound)
    paths = client.fetch_files(increment.files, tmp_path, day=date(2024, 10, 2))
    assert paths["customer_research"] is None  # absent in the recording: HTTP 404
    recorded = fixtures_dir / "increments" / "2024-10-02" / "user_order_log_inc.csv"
    assert paths["user_order_log"].read_bytes() == recorded.read_bytes()

    assert isinstance(client.get_increment(report.report_id, date(2024, 10, 3)), NotFound)
    assert isinstance(client.get_increment(report.report_id, date(2024, 9, 30)), NotFound)
