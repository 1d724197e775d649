"""The report API client over real HTTP against the local report API: no mocks.

Faults are real too: the local server refuses keys, answers RUNNING, lacks files and
fails the first requests to a path with 503 when asked to.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ingestion.client import (
    AuthError,
    DownloadError,
    Increment,
    NotFound,
    NotFoundError,
    Report,
    ReportApiClient,
    ReportApiError,
    ReportTimeout,
    default_retry,
)
from ingestion.config import ApiSettings, ConfigurationError
from local_report_api import LocalApiConfig, LocalReportApi
from retail_dev.cli import local_api_settings

KEY = "secret-key-7b2d41"
LOGICAL_NAMES = {"user_order_log", "user_activity_log", "customer_research", "price_log"}


def _client(settings: ApiSettings, **kwargs: object) -> ReportApiClient:
    """A client with the production retry policy but short sleeps, to keep tests fast."""
    return ReportApiClient(settings, retry=default_retry(total=3, backoff_factor=0.01), **kwargs)


@pytest.fixture(scope="module")
def api() -> Iterator[LocalReportApi]:
    with LocalReportApi(LocalApiConfig(api_key=KEY, orders_per_day=300)) as server:
        yield server


@pytest.fixture
def client(api: LocalReportApi) -> Iterator[ReportApiClient]:
    with _client(local_api_settings(api)) as report_client:
        yield report_client


@pytest.fixture
def report(client: ReportApiClient) -> Report:
    return client.wait_for_report(client.generate_report(), initial_delay_s=0.01)


# -- settings -----------------------------------------------------------------------------


def test_settings_from_env() -> None:
    assert ApiSettings.from_env({}) is None
    settings = ApiSettings.from_env(
        {
            "REPORT_API_URL": "https://api.example/",
            "REPORT_API_KEY": KEY,
            "REPORT_API_NICKNAME": "nick",
            "REPORT_API_COHORT": "7",
        }
    )
    assert settings is not None
    assert settings.base_url == "https://api.example"
    assert settings.headers() == {
        "X-Nickname": "nick",
        "X-Cohort": "7",
        "X-Project": "True",
        "X-API-KEY": KEY,
    }
    assert KEY not in repr(settings)


def test_settings_with_url_but_no_key_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="REPORT_API_KEY"):
        ApiSettings.from_env(
            {
                "REPORT_API_URL": "https://api.example",
                "REPORT_API_NICKNAME": "nick",
                "REPORT_API_COHORT": "7",
            }
        )


# -- reports ------------------------------------------------------------------------------


def test_get_report_is_none_while_running(api: LocalReportApi, client: ReportApiClient) -> None:
    task_id = client.generate_report()
    polls = [client.get_report(task_id) for _ in range(api.config.running_polls + 1)]
    assert polls[:-1] == [None] * api.config.running_polls
    done = polls[-1]
    assert isinstance(done, Report)
    assert done.task_id == task_id
    assert done.report_id == api.config.report_id
    assert (done.start_day, done.end_date) == (date(2024, 9, 2), date(2024, 9, 29))
    assert set(done.files) == LOGICAL_NAMES


def test_wait_for_report_polls_through_running(
    api: LocalReportApi, client: ReportApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingestion.client")
    task_id = client.generate_report()
    report = client.wait_for_report(task_id, initial_delay_s=0.01)
    assert report.task_id == task_id
    running_lines = [r for r in caplog.records if "RUNNING" in r.getMessage()]
    assert len(running_lines) == api.config.running_polls >= 1


def test_wait_for_report_deadline_raises_report_timeout() -> None:
    config = LocalApiConfig(api_key=KEY, running_polls=10_000)
    with LocalReportApi(config) as server, _client(local_api_settings(server)) as report_client:
        task_id = report_client.generate_report()
        started = time.monotonic()
        with pytest.raises(ReportTimeout) as raised:
            report_client.wait_for_report(
                task_id, deadline_s=0.5, initial_delay_s=0.02, max_delay_s=0.1
            )
        elapsed = time.monotonic() - started
    assert task_id in str(raised.value)
    assert isinstance(raised.value, ReportApiError)
    assert 0.3 < elapsed < 2


def test_unknown_task_is_not_found_error(client: ReportApiClient) -> None:
    with pytest.raises(NotFoundError):
        client.get_report("no-such-task")


# -- increments and files -------------------------------------------------------------------


def test_increment_and_not_found_day(client: ReportApiClient, report: Report) -> None:
    increment = client.get_increment(report.report_id, date(2024, 10, 3))
    assert isinstance(increment, Increment)
    assert increment.day == date(2024, 10, 3)
    assert {name.removesuffix("_inc") for name in increment.files} == LOGICAL_NAMES

    missing = client.get_increment(report.report_id, date(2024, 10, 9))
    assert isinstance(missing, NotFound)
    assert missing.day == date(2024, 10, 9)
    assert missing.reason


def test_fetch_files_maps_logical_names_and_404_to_none(
    client: ReportApiClient, report: Report, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    day = date(2024, 10, 2)
    increment = client.get_increment(report.report_id, day)
    assert isinstance(increment, Increment)
    caplog.set_level(logging.INFO, logger="ingestion.client")

    paths = client.fetch_files(increment.files, tmp_path / "inc", day=day)

    assert set(paths) == LOGICAL_NAMES
    assert paths["customer_research"] is None
    orders = paths["user_order_log"]
    assert orders == tmp_path / "inc" / "user_order_log_inc.csv"  # the source's file name
    assert orders.read_text(encoding="utf-8").splitlines()[0].endswith(",status")
    assert not list((tmp_path / "inc").glob(".*part"))
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == [
        "customer_research_inc.csv for 2024-10-02: the source has no such file (HTTP 404)"
    ]


def test_fetch_report_files(client: ReportApiClient, report: Report, tmp_path: Path) -> None:
    paths = client.fetch_files(report.files, tmp_path)
    assert all(path is not None and path.stat().st_size > 0 for path in paths.values())
    price_log = paths["price_log"]
    assert price_log is not None
    assert price_log.read_text(encoding="utf-8").splitlines()[0] == "Молоко 1%,100"


def test_download_of_a_missing_file_returns_none(
    api: LocalReportApi, client: ReportApiClient, tmp_path: Path
) -> None:
    missing = {"x": f"{api.url}/files/nope/user_order_log.csv"}
    assert client.fetch_files(missing, tmp_path) == {"x": None}
    assert not (tmp_path / "x.csv").exists()


def test_download_server_error_after_retries_is_download_error(tmp_path: Path) -> None:
    config = LocalApiConfig(api_key=KEY, fail_first={"/files/anything.csv": 100})
    with (
        LocalReportApi(config) as server,
        _client(local_api_settings(server)) as report_client,
        pytest.raises(DownloadError, match="anything.csv"),
    ):
        report_client.fetch_files({"a": f"{server.url}/files/anything.csv"}, tmp_path)


# -- authentication and secrecy -------------------------------------------------------------


@pytest.mark.parametrize(("key", "status"), [("wrong-key-9", "403"), ("", "401")])
def test_wrong_or_missing_key_is_auth_error_without_the_key(
    api: LocalReportApi, key: str, status: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = ApiSettings(base_url=api.url, api_key=key, nickname="n", cohort="c")
    with _client(settings) as bad_client, pytest.raises(AuthError) as raised:
        bad_client.generate_report()
    assert status in str(raised.value)
    secrets = [secret for secret in (key, KEY) if secret]
    everything = " ".join(
        [str(raised.value), repr(raised.value), repr(bad_client), repr(settings)]
        + [record.getMessage() for record in caplog.records]
    )
    assert not any(secret in everything for secret in secrets)


def test_key_never_appears_in_logs_reprs_or_errors(
    api: LocalReportApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    with _client(local_api_settings(api)) as report_client:
        messages += [
            repr(report_client),
            repr(local_api_settings(api)),
            repr(api),
            repr(api.config),
        ]
        report = report_client.wait_for_report(
            report_client.generate_report(), initial_delay_s=0.01
        )
        messages.append(repr(report))
        increment = report_client.get_increment(report.report_id, date(2024, 10, 2))
        assert isinstance(increment, Increment)
        report_client.fetch_files(increment.files, tmp_path, day=increment.day)
        for failing_call in (
            lambda: report_client.get_report("missing-task"),
            lambda: report_client.get_increment("missing-report", date(2024, 10, 2)),
        ):
            with pytest.raises(ReportApiError) as raised:
                failing_call()
            messages += [str(raised.value), repr(raised.value)]
    messages += [record.getMessage() for record in caplog.records]
    assert any("GET /get_report" in message for message in messages)
    assert not any(KEY in message for message in messages)


# -- transient faults -----------------------------------------------------------------------


def test_transient_503_is_retried_for_get_and_post(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="local_report_api.app")
    config = LocalApiConfig(api_key=KEY, fail_first={"/generate_report": 2, "/get_increment": 2})
    with LocalReportApi(config) as server, _client(local_api_settings(server)) as report_client:
        report = report_client.wait_for_report(
            report_client.generate_report(), initial_delay_s=0.01
        )
        increment = report_client.get_increment(report.report_id, date(2024, 10, 3))
    assert isinstance(increment, Increment)
    served = [record.getMessage() for record in caplog.records]
    assert sum("POST /generate_report -> 503" in line for line in served) == 2
    assert sum("GET /get_increment" in line and "-> 503" in line for line in served) == 2


def test_retry_after_is_respected() -> None:
    config = LocalApiConfig(api_key=KEY, fail_first={"/generate_report": 1}, fail_retry_after_s=1)
    with LocalReportApi(config) as server, _client(local_api_settings(server)) as report_client:
        started = time.monotonic()
        report_client.generate_report()
        assert time.monotonic() - started >= 1


def test_persistent_5xx_gives_up_with_a_clear_error() -> None:
    config = LocalApiConfig(api_key=KEY, fail_first={"/generate_report": 100})
    with (
        LocalReportApi(config) as server,
        _client(local_api_settings(server)) as report_client,
        pytest.raises(ReportApiError, match="503"),
    ):
        report_client.generate_report()


def test_unreachable_api_is_report_api_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ApiSettings(
        base_url=f"http://127.0.0.1:{port}", api_key=KEY, nickname="n", cohort="c"
    )
    with (
        _client(settings, timeout=(0.5, 1)) as report_client,
        pytest.raises(ReportApiError, match="generate_report failed after retries") as raised,
    ):
        report_client.generate_report()
    assert KEY not in str(raised.value)
