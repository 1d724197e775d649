"""Client of the report API (SPEC section 2): reports, increments and file downloads.

Transient HTTP failures (connection errors, read timeouts, 5xx, 429) are retried by
urllib3's ``Retry`` on the session (backoff, ``Retry-After``); waiting for a report is a
bounded poll with a deadline, and a file that breaks off is downloaded again (tenacity),
into a temporary file renamed only when complete. The API key is sent in a header and
nowhere else; file URLs are pre-signed, so downloads carry no API headers.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)
from urllib3.util.retry import Retry

from ingestion.config import ApiSettings

logger = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = (5.0, 60.0)
# Overrides of the read timeout (seconds per read of an answer or a file chunk).
ENV_READ_TIMEOUT = "REPORT_API_READ_TIMEOUT_S"
_DOWNLOAD_CHUNK_BYTES = 1 << 20


class ReportApiError(Exception):
    """Base of every error raised by the report API client."""


class AuthError(ReportApiError):
    """The API rejected the key (HTTP 401/403)."""


class NotFoundError(ReportApiError):
    """The API does not know the task or report asked for (HTTP 404)."""


class UnexpectedResponseError(ReportApiError):
    """The API answered something outside its contract."""


class DownloadError(ReportApiError):
    """A file could not be downloaded (a 404 means 'no such file' instead)."""


class ReportTimeout(ReportApiError):
    """The report was still RUNNING when the deadline passed."""

    def __init__(self, task_id: str, deadline_s: float) -> None:
        super().__init__(f"report task {task_id} still RUNNING after {deadline_s:g}s")


@dataclass(frozen=True)
class Report:
    """A finished report: the days it covers and its files (logical name -> URL)."""

    task_id: str
    report_id: str
    start_day: date
    end_date: date
    files: dict[str, str]


@dataclass(frozen=True)
class Increment:
    """The increment of one day: its files (``<name>_inc`` -> URL)."""

    report_id: str
    day: date
    increment_id: str
    files: dict[str, str]


@dataclass(frozen=True)
class NotFound:
    """The API has no increment for this day (status NOT FOUND), with its reason."""

    report_id: str
    day: date
    reason: str


def default_retry(total: int = 5, backoff_factor: float = 0.5) -> Retry:
    """The transient-failure policy of every client session (POST too: a repeated
    ``generate_report`` only starts another task). The last response comes back so the
    client raises its own, key-free error."""
    return Retry(total=total, connect=total, read=total, status=total, other=0,
                 backoff_factor=backoff_factor, backoff_max=30,
                 status_forcelist=TRANSIENT_STATUSES, allowed_methods={"GET", "POST"},
                 respect_retry_after_header=True, raise_on_status=False)  # fmt: skip


def logical_name(file_key: str) -> str:
    """``user_order_log_inc`` -> ``user_order_log``: report and increment files alike."""
    return file_key.removesuffix("_inc")


def _parse_api_day(value: Any, field_name: str) -> date:
    """The API writes days as ``2024-01-13 00:00:00``."""
    try:
        return datetime.fromisoformat(str(value)).date()
    except ValueError as exc:
        raise UnexpectedResponseError(f"{field_name} is not a date: {value!r}") from exc


def _file_label(url: str, day: date | None) -> str:
    """Name a file for logs and errors without the URL's query (a pre-signed signature)."""
    name = urlsplit(url).path.rsplit("/", 1)[-1] or "file"
    return f"{name} for {day.isoformat()}" if day is not None else name


def default_timeout() -> tuple[float, float]:
    """(connect, read) timeouts: ``DEFAULT_TIMEOUT``, the read one from
    ``REPORT_API_READ_TIMEOUT_S`` when set."""
    read = os.environ.get(ENV_READ_TIMEOUT, "").strip()
    if not read:
        return DEFAULT_TIMEOUT
    if not read.replace(".", "", 1).isdigit() or not float(read) > 0:
        raise ValueError(f"{ENV_READ_TIMEOUT}={read!r} is not a positive number of seconds")
    return (DEFAULT_TIMEOUT[0], float(read))


class ReportApiClient:
    """Calls the report API with the contract's headers, retries and timeouts."""

    def __init__(
        self, settings: ApiSettings, *, timeout: tuple[float, float] | None = None,
        retry: Retry | None = None,
    ) -> None:  # fmt: skip
        self._settings = settings
        self._timeout = timeout or default_timeout()
        self._session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry or default_retry())
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"ReportApiClient(base_url={self._settings.base_url!r})"

    def __enter__(self) -> ReportApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._session.close()

    def generate_report(self) -> str:
        """Start building a report; returns the task id to poll."""
        body = self._call("POST", "/generate_report")
        task_id = body.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise UnexpectedResponseError(f"generate_report answered no task_id: {body!r}")
        logger.info("report task %s started", task_id)
        return task_id

    def get_report(self, task_id: str) -> Report | None:
        """Poll once: the finished report, or None while it is still RUNNING."""
        body = self._call("GET", "/get_report", params={"task_id": task_id})
        status = body.get("status")
        if status == "RUNNING":
            return None
        if status != "SUCCESS":
            raise UnexpectedResponseError(f"report task {task_id} has status {status!r}")
        data = body.get("data") or {}
        files = data.get("s3_path") or {}
        if not data.get("report_id") or not files:
            raise UnexpectedResponseError(f"report task {task_id} SUCCESS without files: {data!r}")
        days = (_parse_api_day(data.get(key), key) for key in ("start_day", "end_date"))
        return Report(task_id, str(data["report_id"]), *days, dict(files))

    def wait_for_report(
        self, task_id: str, *, deadline_s: float = 300, initial_delay_s: float = 1,
        max_delay_s: float = 30,
    ) -> Report:  # fmt: skip
        """Poll until SUCCESS with exponential backoff; ReportTimeout after ``deadline_s``
        (no sleep overruns it: the call takes at most the deadline plus one request)."""

        def log_running(state: RetryCallState) -> None:
            upcoming = state.upcoming_sleep
            logger.info("report task %s RUNNING; next poll in %.1fs", task_id, upcoming)

        retrying = Retrying(
            retry=retry_if_result(lambda report: report is None),
            wait=wait_exponential(multiplier=initial_delay_s, min=initial_delay_s, max=max_delay_s),
            stop=stop_before_delay(deadline_s),
            before_sleep=log_running,
        )
        try:
            report = retrying(self.get_report, task_id)
        except RetryError:
            raise ReportTimeout(task_id, deadline_s) from None
        logger.info("report %s ready: %s..%s", report.report_id, report.start_day, report.end_date)
        return report

    def get_increment(self, report_id: str, day: date) -> Increment | NotFound:
        """The increment of ``day``, or NotFound when the API has none for that day."""
        params = {"report_id": report_id, "date": f"{day.isoformat()}T00:00:00"}
        body = self._call("GET", "/get_increment", params=params)
        status = body.get("status")
        data = body.get("data") or {}
        if status == "NOT FOUND":
            reason = str(data.get("reason") or "no reason given")
            logger.info("no increment for %s: %s", day, reason)
            return NotFound(report_id=report_id, day=day, reason=reason)
        if status != "SUCCESS":
            raise UnexpectedResponseError(f"increment for {day} has status {status!r}")
        files = data.get("s3_path") or {}
        if not data.get("increment_id") or not files:
            raise UnexpectedResponseError(f"increment for {day} SUCCESS without files: {data!r}")
        return Increment(report_id, day, str(data["increment_id"]), dict(files))

    def fetch_files(
        self, files: Mapping[str, str], dest_dir: Path, *, day: date | None = None
    ) -> dict[str, Path | None]:
        """Download every file of a report or increment into ``dest_dir``.

        Keys of the result are logical names without ``_inc`` (``user_order_log``), values
        the local paths, named as the source names them (``user_order_log_inc.csv``) so
        that errors name the source's file; None: the source has no such file (404).
        """
        return {
            logical_name(key): _download(
                self._session, url, Path(dest_dir) / f"{key}.csv", day=day, timeout=self._timeout
            )  # fmt: skip
            for key, url in files.items()
        }

    def _call(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """One API call with the contract headers; errors become ReportApiError subclasses."""
        url = f"{self._settings.base_url}{path}"
        try:
            response = self._session.request(method, url, params=params, timeout=self._timeout,
                                             headers=self._settings.headers())  # fmt: skip
        except requests.RequestException as exc:
            raise ReportApiError(
                f"{method} {path} failed after retries: {self._redact(str(exc))}"
            ) from None
        status = response.status_code
        if status in (401, 403):
            raise AuthError(
                f"report API rejected the API key for {method} {path} (HTTP {status}); "
                "check REPORT_API_KEY or the password of the report_api connection"
            )
        if status == 404:
            raise NotFoundError(f"{method} {path} {dict(params or {})}: {self._detail(response)}")
        if status >= 400:
            raise ReportApiError(
                f"{method} {path} answered HTTP {status}: {self._detail(response)}"
            )
        try:
            body = response.json()
        except ValueError:
            raise UnexpectedResponseError(f"{method} {path} answered non-JSON") from None
        if not isinstance(body, dict):
            raise UnexpectedResponseError(f"{method} {path} answered {type(body).__name__}")
        return body

    def _detail(self, response: requests.Response) -> str:
        return self._redact(response.text[:300])

    def _redact(self, text: str) -> str:
        """Defence in depth: never let the key through, even if a server echoes it."""
        key = self._settings.api_key
        return text.replace(key, "***") if key else text


def _download(
    session: requests.Session, url: str, dest: Path, *, day: date | None,
    timeout: tuple[float, float],
) -> Path | None:  # fmt: skip
    label = _file_label(url, day)
    retrying = Retrying(
        retry=retry_if_exception_type(
            (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
        ),
        wait=wait_exponential(multiplier=0.5, max=10),
        stop=stop_after_attempt(3),
        before_sleep=before_sleep_log(logger, logging.WARNING),
        reraise=True,
    )
    try:
        return retrying(_download_once, session, url, dest, label, timeout)
    except requests.RequestException as exc:
        raise DownloadError(f"{label}: download failed ({type(exc).__name__})") from None


def _download_once(
    session: requests.Session, url: str, dest: Path, label: str, timeout: tuple[float, float]
) -> Path | None:
    # No API headers: file URLs are pre-signed and must not receive the key.
    with session.get(url, stream=True, timeout=timeout) as response:
        if response.status_code == 404:
            logger.warning("%s: the source has no such file (HTTP 404)", label)
            return None
        if response.status_code >= 400:
            raise DownloadError(f"{label}: HTTP {response.status_code}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(
            dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"
        )
        try:
            with os.fdopen(handle, "wb") as temp_file:
                for chunk in response.iter_content(chunk_size=_DOWNLOAD_CHUNK_BYTES):
                    temp_file.write(chunk)
            os.replace(temp_name, dest)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
    logger.info("%s: downloaded to %s (%d bytes)", label, dest, dest.stat().st_size)
    return dest
