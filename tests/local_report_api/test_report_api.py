"""The local report API against SPEC section 2 and against the real extracts.

Everything goes over real HTTP to a server on 127.0.0.1; the synthetic files are
checked for every quirk of the real source, and compared with the real fixtures.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from local_report_api import LocalApiConfig, LocalReportApi, synthetic

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "course_api"
KEY = "test-key-3f1e9c"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T00:00:00$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
OLD_ORDER_HEADER = synthetic.ORDER_COLUMNS
NEW_ORDER_HEADER = synthetic.ORDER_COLUMNS + ",status"


def _headers(key: str | None = KEY) -> dict[str, str]:
    headers = {"X-Nickname": "tester", "X-Cohort": "1", "X-Project": "True"}
    if key is not None:
        headers["X-API-KEY"] = key
    return headers


@pytest.fixture(scope="module")
def api() -> Iterator[LocalReportApi]:
    with LocalReportApi(LocalApiConfig(api_key=KEY, orders_per_day=800)) as server:
        yield server


def _report(api: LocalReportApi) -> dict:
    task_id = requests.post(f"{api.url}/generate_report", headers=_headers(), timeout=5).json()[
        "task_id"
    ]
    for _ in range(api.config.running_polls + 1):
        body = requests.get(
            f"{api.url}/get_report", params={"task_id": task_id}, headers=_headers(), timeout=5
        ).json()
    return body


def _increment(api: LocalReportApi, day: date, report_id: str | None = None) -> requests.Response:
    return requests.get(
        f"{api.url}/get_increment",
        params={"report_id": report_id or api.config.report_id, "date": f"{day}T00:00:00"},
        headers=_headers(),
        timeout=5,
    )


def _rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8"))))


def _order_file(config: LocalApiConfig, day: date) -> bytes:
    return synthetic.file_bytes(config, "user_order_log", [day])


# -- the HTTP contract ------------------------------------------------------------------


def test_report_answers_running_before_success(api: LocalReportApi) -> None:
    task_id = requests.post(f"{api.url}/generate_report", headers=_headers(), timeout=5).json()[
        "task_id"
    ]
    assert isinstance(task_id, str) and task_id

    answers = [
        requests.get(
            f"{api.url}/get_report", params={"task_id": task_id}, headers=_headers(), timeout=5
        ).json()
        for _ in range(api.config.running_polls + 1)
    ]

    running = {
        "task_id": task_id,
        "status": "RUNNING",
        "data": {"report_id": None, "start_day": None, "end_date": None, "s3_path": {}},
    }
    assert api.config.running_polls >= 1  # the default answers RUNNING first
    assert answers[:-1] == [running] * api.config.running_polls
    done = answers[-1]
    assert done["status"] == "SUCCESS"
    assert done["data"]["report_id"] == api.config.report_id
    assert done["data"]["start_day"] == "2024-09-02 00:00:00"
    assert done["data"]["end_date"] == "2024-09-29 00:00:00"
    assert set(done["data"]["s3_path"]) == {
        "customer_research",
        "user_order_log",
        "user_activity_log",
        "price_log",
    }


def test_unknown_task_is_404_json(api: LocalReportApi) -> None:
    response = requests.get(
        f"{api.url}/get_report", params={"task_id": "nope"}, headers=_headers(), timeout=5
    )
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("", 401), ("wrong-key", 403)])
def test_missing_or_wrong_key_is_rejected(
    api: LocalReportApi, key: str | None, status: int
) -> None:
    for method, path in [("POST", "/generate_report"), ("GET", "/get_report?task_id=x")]:
        response = requests.request(method, f"{api.url}{path}", headers=_headers(key), timeout=5)
        assert response.status_code == status
        assert response.json()["error"]


def test_identification_headers_are_required(api: LocalReportApi) -> None:
    headers = _headers()
    del headers["X-Project"]
    response = requests.post(f"{api.url}/generate_report", headers=headers, timeout=5)
    assert response.status_code == 400
    assert "X-Project" in response.json()["detail"]


def test_increment_success_shape(api: LocalReportApi) -> None:
    body = _increment(api, date(2024, 10, 1)).json()
    assert body["report_id"] == api.config.report_id
    assert body["date"] == "2024-10-01 00:00:00"
    assert body["status"] == "SUCCESS"
    assert HEX32.match(body["data"]["increment_id"])
    assert set(body["data"]["s3_path"]) == {
        "customer_research_inc",
        "user_order_log_inc",
        "user_activity_log_inc",
        "price_log_inc",
    }


@pytest.mark.parametrize(
    "day",
    [
        date(2024, 9, 15),  # inside the report window
        date(2024, 9, 29),  # the report's last day
        date(2024, 10, 9),  # the default NOT FOUND day
        date(2025, 1, 1),  # beyond increments_until
    ],
)
def test_days_without_increment_answer_not_found(api: LocalReportApi, day: date) -> None:
    response = _increment(api, day)
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "report_id": api.config.report_id,
        "date": f"{day} 00:00:00",
        "status": "NOT FOUND",
        "data": {"reason": body["data"]["reason"]},
    }
    assert body["data"]["reason"]


def test_bad_date_and_unknown_report(api: LocalReportApi) -> None:
    bad = requests.get(
        f"{api.url}/get_increment",
        params={"report_id": api.config.report_id, "date": "02.10.2024"},
        headers=_headers(),
        timeout=5,
    )
    assert bad.status_code == 400
    assert "date" in bad.json()["detail"]
    assert _increment(api, date(2024, 10, 1), report_id="unknown").status_code == 404


def test_files_need_no_key_and_missing_file_is_404(api: LocalReportApi) -> None:
    files = _increment(api, date(2024, 10, 2)).json()["data"]["s3_path"]
    orders = requests.get(files["user_order_log_inc"], timeout=10)
    assert orders.status_code == 200
    assert orders.headers["Content-Type"].startswith("text/csv")
    missing = requests.get(files["customer_research_inc"], timeout=5)
    assert missing.status_code == 404
    assert (
        requests.get(f"{api.url}/files/increments/nope/price_log_inc.csv", timeout=5).status_code
        == 404
    )


def test_report_files_cover_the_window_with_running_ids(api: LocalReportApi) -> None:
    files = _report(api)["data"]["s3_path"]
    rows = _rows(requests.get(files["user_order_log"], timeout=30).content)
    days = sorted({row["date_time"] for row in rows})
    assert days[0] == "2024-09-02T00:00:00" and days[-1] == "2024-09-29T00:00:00"
    assert len(days) == 28
    assert [int(row["id"]) for row in rows] == list(range(1, len(rows) + 1))
    # The report is entirely before status_since: the old format.
    assert "status" not in rows[0]


def test_injected_failures_answer_503_with_retry_after() -> None:
    config = LocalApiConfig(api_key=KEY, fail_first={"/generate_report": 2})
    with LocalReportApi(config) as server:
        statuses = [
            requests.post(f"{server.url}/generate_report", headers=_headers(), timeout=5)
            for _ in range(3)
        ]
    assert [response.status_code for response in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "0"


def test_request_log_never_contains_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with LocalReportApi(LocalApiConfig(api_key=KEY)) as server:
        requests.post(f"{server.url}/generate_report", headers=_headers(), timeout=5)
        requests.post(f"{server.url}/generate_report", headers=_headers("bad-key"), timeout=5)
    lines = [record.getMessage() for record in caplog.records if "report_api" in record.name]
    assert any("POST /generate_report -> 200" in line for line in lines)
    assert any("POST /generate_report -> 403" in line for line in lines)
    assert not any(KEY in line or "bad-key" in line for line in lines)


# -- determinism ------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_over_http() -> None:
    def download(seed: int) -> bytes:
        with LocalReportApi(LocalApiConfig(seed=seed, api_key=KEY)) as server:
            body = _increment(server, date(2024, 10, 3)).json()
            return requests.get(body["data"]["s3_path"]["user_order_log_inc"], timeout=10).content

    first, again, other = download(7), download(7), download(8)
    assert first == again
    assert first != other


def test_every_file_is_deterministic_and_seed_dependent() -> None:
    days = [date(2024, 10, 2), date(2024, 10, 3)]
    for name in synthetic.FILE_NAMES:
        one = synthetic.file_bytes(LocalApiConfig(seed=1), name, days)
        assert one == synthetic.file_bytes(LocalApiConfig(seed=1), name, list(reversed(days)))
        if name != "price_log":  # prices are the real, fixed ones
            assert one != synthetic.file_bytes(LocalApiConfig(seed=2), name, days)


# -- quirks of the real source ------------------------------------------------------------


def test_repeated_uniq_id_rows_are_identical_but_for_id() -> None:
    rows = _rows(_order_file(LocalApiConfig(), date(2024, 10, 3)))
    by_line: dict[str, set[tuple[str, ...]]] = {}
    for row in rows:
        by_line.setdefault(row["uniq_id"], set()).add(
            tuple(value for column, value in row.items() if column != "id")
        )
    counts = Counter(row["uniq_id"] for row in rows)
    assert max(counts.values()) >= 2
    assert sum(1 for count in counts.values() if count > 1) > 50
    assert all(len(versions) == 1 for versions in by_line.values())
    assert len(counts) == 1000
    assert all(HEX32.match(uniq_id) for uniq_id in counts)


def test_uniq_id_is_unique_across_days() -> None:
    config = LocalApiConfig()
    per_day = [
        {row["uniq_id"] for row in _rows(_order_file(config, date(2024, 9, 30) + timedelta(d)))}
        for d in range(5)
    ]
    assert len(set().union(*per_day)) == sum(len(ids) for ids in per_day)


def test_old_format_before_status_since_new_format_after() -> None:
    config = LocalApiConfig()
    old = _order_file(config, date(2024, 10, 1)).decode().splitlines()[0]
    new = _order_file(config, date(2024, 10, 2)).decode().splitlines()[0]
    assert old == OLD_ORDER_HEADER
    assert new == NEW_ORDER_HEADER

    shifted = LocalApiConfig(status_since=date(2024, 11, 1))
    assert _order_file(shifted, date(2024, 10, 31)).decode().splitlines()[0] == OLD_ORDER_HEADER
    assert _order_file(shifted, date(2024, 11, 1)).decode().splitlines()[0] == NEW_ORDER_HEADER


def test_refunds_are_3_to_12_percent_with_positive_amounts() -> None:
    config = LocalApiConfig()
    prices = dict(synthetic.ITEMS)
    for offset in range(7):
        rows = _rows(_order_file(config, date(2024, 10, 2) + timedelta(offset)))
        lines = {row["uniq_id"]: row for row in rows}
        statuses = Counter(row["status"] for row in lines.values())
        assert set(statuses) == {"shipped", "refunded"}
        assert 0.03 <= statuses["refunded"] / len(lines) <= 0.12
        for row in lines.values():
            assert int(row["payment_amount"]) > 0
            assert int(row["payment_amount"]) == int(row["quantity"]) * prices[row["item_name"]]


def test_names_are_cyrillic_and_cities_match_the_real_ids() -> None:
    rows = _rows(_order_file(LocalApiConfig(), date(2024, 10, 3)))
    cyrillic = re.compile(r"^[А-Яа-яЁё ]+$")
    assert all(
        cyrillic.match(row["first_name"]) and cyrillic.match(row["last_name"]) for row in rows
    )
    cities = {(row["city_id"], row["city_name"]) for row in rows}
    assert {("0", "Москва"), ("1", "Ростов"), ("2", "Ярославль")} <= cities
    assert {row["item_id"] for row in rows} == {str(item) for item in range(12)}
    assert all(TIMESTAMP.match(row["date_time"]) for row in rows)


def test_weeks_have_new_and_returning_customers() -> None:
    config = LocalApiConfig()
    week = [date(2024, 9, 30) + timedelta(d) for d in range(7)]
    lines = {
        row["uniq_id"]: row
        for day in week
        for row in _rows(_order_file(config, day))
        if row.get("status", "shipped") == "shipped"
    }
    per_customer = Counter(row["customer_id"] for row in lines.values())
    new = sum(1 for count in per_customer.values() if count == 1)
    returning = sum(1 for count in per_customer.values() if count >= 2)
    assert new > 500 and returning > 300
    assert len(per_customer) > 2000


def test_price_log_is_headerless_and_equals_the_real_one() -> None:
    content = synthetic.file_bytes(LocalApiConfig(), "price_log", [date(2024, 10, 3)])
    assert content == (FIXTURES / "increments" / "2024-10-02" / "price_log_inc.csv").read_bytes()
    first_line = content.decode().splitlines()[0]
    assert first_line == "Молоко 1%,100"


def test_200k_orders_per_day_generate() -> None:
    shape = LocalApiConfig(orders_per_day=200_000)
    rows = 0
    uniq_ids: set[bytes] = set()
    for block in synthetic.iter_file(shape, "user_order_log", [date(2024, 10, 3)]):
        for line in block.split(b"\n"):
            if line and not line.startswith(b"id,"):
                rows += 1
                uniq_ids.add(line.split(b",", 2)[1])
    assert len(uniq_ids) == 200_000
    assert rows > 200_000


# -- same format as the real extracts -----------------------------------------------------


def _header(path: Path) -> str:
    with path.open(encoding="utf-8") as handle:
        return handle.readline().rstrip("\n")


@pytest.mark.parametrize(
    ("fixture", "name", "day"),
    [
        ("report/user_order_log.csv", "user_order_log", date(2024, 9, 10)),
        ("increments/2024-10-01/user_order_log_inc.csv", "user_order_log", date(2024, 10, 1)),
        ("increments/2024-10-02/user_order_log_inc.csv", "user_order_log", date(2024, 10, 2)),
        ("report/user_activity_log.csv", "user_activity_log", date(2024, 9, 10)),
        ("increments/2024-10-01/customer_research_inc.csv", "customer_research", date(2024, 10, 1)),
    ],
)
def test_synthetic_files_have_the_real_header_and_formats(
    fixture: str, name: str, day: date
) -> None:
    real_path = FIXTURES / fixture
    synthetic_text = synthetic.file_bytes(LocalApiConfig(), name, [day]).decode("utf-8")
    assert synthetic_text.splitlines()[0] == _header(real_path)

    real_rows = list(csv.DictReader(real_path.open(encoding="utf-8")))
    fake_rows = list(csv.DictReader(io.StringIO(synthetic_text)))
    time_column = "date_id" if name == "customer_research" else "date_time"
    for rows in (real_rows, fake_rows):
        assert all(TIMESTAMP.match(row[time_column]) for row in rows)
        # Every column holds the same kind of value in both: integers stay integers.
        numeric = [
            column
            for column in rows[0]
            if column not in {"uniq_id", "date_time", "date_id", "city_name", "first_name"}
            and column not in {"last_name", "item_name", "status"}
        ]
        assert all(row[column].isdigit() for row in rows for column in numeric)
        if "uniq_id" in rows[0]:
            assert all(HEX32.match(row["uniq_id"]) for row in rows)


def test_the_real_extracts_show_the_quirks_the_synthetic_data_reproduces() -> None:
    report = list(csv.DictReader((FIXTURES / "report/user_order_log.csv").open(encoding="utf-8")))
    counts = Counter(row["uniq_id"] for row in report)
    assert max(counts.values()) > 1
    new_format = list(
        csv.DictReader(
            (FIXTURES / "increments/2024-10-02/user_order_log_inc.csv").open(encoding="utf-8")
        )
    )
    refunded = [row for row in new_format if row["status"] == "refunded"]
    lines = {row["uniq_id"] for row in new_format}
    assert 0.03 <= len({row["uniq_id"] for row in refunded}) / len(lines) <= 0.12
    assert all(int(row["payment_amount"]) > 0 for row in refunded)
    assert not (FIXTURES / "increments/2024-10-02/customer_research_inc.csv").exists()
    prices = dict(synthetic.ITEMS)
    assert all(
        int(row["payment_amount"]) == int(row["quantity"]) * prices[row["item_name"]]
        for row in report
    )
