"""What the framework could change, held to the old server's contract, over real HTTP.

Every error is the contract's JSON (``error`` + ``detail``), the router's own 404 and 405
included; absent query parameters are the contract's 404/400, never a 422; files are
streamed with chunked transfer encoding; file URLs follow the Host the client used; the
background server stops cleanly.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import requests

from local_report_api import LocalApiConfig, LocalReportApi

KEY = "edge-key-5c0a"
HEADERS = {"X-Nickname": "tester", "X-Cohort": "1", "X-Project": "True", "X-API-KEY": KEY}


@pytest.fixture(scope="module")
def api() -> Iterator[LocalReportApi]:
    with LocalReportApi(LocalApiConfig(api_key=KEY, orders_per_day=50, running_polls=0)) as server:
        yield server


def _report_files(api: LocalReportApi, headers: dict[str, str] = HEADERS) -> dict[str, str]:
    task_id = requests.post(f"{api.url}/generate_report", headers=headers, timeout=5).json()
    body = requests.get(f"{api.url}/get_report", params=task_id, headers=headers, timeout=5).json()
    return body["data"]["s3_path"]


def _assert_contract_error(response: requests.Response, status: int, phrase: str) -> dict:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == phrase
    return body


def test_unknown_route_is_the_contracts_404(api: LocalReportApi) -> None:
    for method, path in [("GET", "/nope"), ("POST", "/get_reports"), ("GET", "/files/a.csv")]:
        response = requests.request(method, f"{api.url}{path}", headers=HEADERS, timeout=5)
        body = _assert_contract_error(response, 404, "Not Found")
        assert body["detail"] in (f"no route {method} {path}", f"no such file {path}")


def test_wrong_method_is_405_in_the_contracts_shape(api: LocalReportApi) -> None:
    wrong = requests.get(f"{api.url}/generate_report", headers=HEADERS, timeout=5)
    body = _assert_contract_error(wrong, 405, "Method Not Allowed")
    assert body["detail"] == "no route GET /generate_report"
    assert wrong.headers["Allow"] == "POST"
    # Files are GET only, as the old server answered.
    file_url = _report_files(api)["price_log"]
    posted = requests.post(file_url, timeout=5)
    _assert_contract_error(posted, 405, "Method Not Allowed")
    assert posted.headers["Allow"] == "GET"


def test_absent_query_parameters_are_the_contracts_errors_not_422(api: LocalReportApi) -> None:
    no_task = requests.get(f"{api.url}/get_report", headers=HEADERS, timeout=5)
    assert _assert_contract_error(no_task, 404, "Not Found")["detail"] == "unknown task_id ''"
    no_date = requests.get(
        f"{api.url}/get_increment",
        params={"report_id": api.config.report_id},
        headers=HEADERS,
        timeout=5,
    )
    assert "date must look like" in _assert_contract_error(no_date, 400, "Bad Request")["detail"]
    no_report = requests.get(
        f"{api.url}/get_increment",
        params={"date": "2024-10-01T00:00:00"},
        headers=HEADERS,
        timeout=5,
    )
    _assert_contract_error(no_report, 404, "Not Found")


def test_a_date_with_a_time_of_day_is_400(api: LocalReportApi) -> None:
    response = requests.get(
        f"{api.url}/get_increment",
        params={"report_id": api.config.report_id, "date": "2024-10-01T12:00:00"},
        headers=HEADERS,
        timeout=5,
    )
    _assert_contract_error(response, 400, "Bad Request")


def _assert_streamed_csv(response: requests.Response) -> None:
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.headers


def test_synthetic_files_are_streamed_chunked(api: LocalReportApi) -> None:
    response = requests.get(_report_files(api)["user_order_log"], timeout=30)
    _assert_streamed_csv(response)
    assert response.text.startswith("id,uniq_id,date_time,")


def test_recorded_files_are_streamed_chunked_as_they_are(fixtures_dir: Path) -> None:
    config = LocalApiConfig.from_extracts(fixtures_dir, running_polls=0)
    with LocalReportApi(config) as server:
        headers = {**HEADERS, "X-API-KEY": config.api_key}
        for name, url in _report_files(server, headers).items():
            response = requests.get(url, timeout=10)
            _assert_streamed_csv(response)
            assert response.content == (fixtures_dir / "report" / f"{name}.csv").read_bytes()


def test_file_urls_follow_the_host_the_client_used(api: LocalReportApi) -> None:
    # What docker-compose does: Airflow reaches the server as report-api:8000.
    files = _report_files(api, {**HEADERS, "Host": "report-api:8000"})
    assert (
        files["price_log"] == f"http://report-api:8000/files/{api.config.report_id}/price_log.csv"
    )
    increment = requests.get(
        f"{api.url}/get_increment",
        params={"report_id": api.config.report_id, "date": f"{date(2024, 10, 1)}T00:00:00"},
        headers={**HEADERS, "Host": "api.example"},
        timeout=5,
    ).json()
    assert increment["data"]["s3_path"]["price_log_inc"].startswith(
        "http://api.example/files/increments/"
    )


def test_stop_closes_the_port_and_the_thread_even_with_a_kept_alive_connection() -> None:
    def serving() -> int:
        return sum(thread.name == "local-report-api" for thread in threading.enumerate())

    before = serving()
    server = LocalReportApi(LocalApiConfig(api_key=KEY))
    with server, requests.Session() as session:
        url = server.url
        assert session.post(f"{url}/generate_report", headers=HEADERS, timeout=5).ok
        assert serving() == before + 1
    assert serving() == before
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    host, port = url.removeprefix("http://").split(":")
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), 1):
        pass
    assert repr(server) == "LocalReportApi(stopped, seed=42)"
