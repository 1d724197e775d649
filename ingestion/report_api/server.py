"""A local stand-in for the report API: a real HTTP server implementing SPEC section 2.

The pipeline is developed and tested against this server when no real API is configured.
It speaks the same contract (headers, status codes, JSON shapes, RUNNING polls, NOT FOUND
days, missing files) and serves deterministic synthetic CSV files (see ``synthetic``), so
what works here works against the real source. File URLs mimic pre-signed S3 URLs: plain
GETs that need no API key.

It can also misbehave on purpose (``fail_first``) so that retries are tested against a
real fault instead of a mock.
"""

from __future__ import annotations

import csv
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ingestion.report_api import synthetic

if TYPE_CHECKING:
    from ingestion.config import ApiSettings

logger = logging.getLogger(__name__)

_FILE_NAMES = synthetic.FILE_NAMES


@dataclass(frozen=True)
class LocalApiConfig:
    """Behaviour and data of the local report API.

    Defaults reproduce the real source's calendar:

    - the report covers 2024-09-02 .. 2024-09-29, four full ISO weeks (W36-W39);
    - increments exist for every later day up to ``increments_until`` (2024-12-31),
      except the NOT FOUND day 2024-10-09 (``not_found_days``);
    - the increment of 2024-10-02 lacks ``customer_research_inc.csv`` (404), as the real
      increment of that day does (``missing_files``);
    - files of days before ``status_since`` (2024-10-02, the real cut-over) are in the
      old format without the ``status`` column;
    - ``get_report`` answers RUNNING ``running_polls`` times (2) before SUCCESS;
    - ``corrections`` maps an increment day to a number of lines of the day eight days
      earlier that it sends again, re-dated and reassigned (none by default);
    - ``fail_first`` maps a path (``/get_report``) to a number of initial requests that
      are answered with ``fail_status`` (503) and ``Retry-After: fail_retry_after_s``.
    """

    seed: int = 42
    report_start: date = date(2024, 9, 2)
    report_end: date = date(2024, 9, 29)
    increments_until: date = date(2024, 12, 31)
    orders_per_day: int = 1000
    customers: int = 10_000
    status_since: date = date(2024, 10, 2)
    running_polls: int = 2
    not_found_days: frozenset[date] = frozenset({date(2024, 10, 9)})
    missing_files: frozenset[tuple[date, str]] = frozenset(
        {(date(2024, 10, 2), "customer_research_inc")}
    )
    api_key: str = field(default="local-dev-key", repr=False)
    nickname: str = "local-dev"
    cohort: str = "local"
    fail_first: Mapping[str, int] = field(default_factory=dict)
    fail_status: int = 503
    fail_retry_after_s: int = 0
    extracts_dir: Path | None = None
    # day -> how many earlier order lines that day's increment corrects (re-dates and
    # reassigns); none by default, see synthetic.SyntheticShape.corrections
    corrections: Mapping[date, int] = field(default_factory=dict)

    @classmethod
    def from_extracts(cls, extracts_dir: Path, **overrides: Any) -> LocalApiConfig:
        """Serve recorded extracts instead of synthetic data.

        ``extracts_dir`` holds ``report/<name>.csv`` and ``increments/<YYYY-MM-DD>/<name>_inc.csv``
        (the layout of ``shared/fixtures/course_api``). The report window is read from the
        report's dated files (orders, then activity, then research), unless
        ``report_start`` and ``report_end`` are given; a day without a folder is NOT FOUND,
        an absent file is a 404. Files are served as they are, header-only and 0-byte
        files included (the source's way of saying "no rows for the period").
        """
        days = _report_file_days(extracts_dir / "report")
        if days:
            window = {"report_start": min(days), "report_end": max(days)}
        elif "report_start" in overrides and "report_end" in overrides:
            window = {}
        else:
            raise ValueError(
                f"{extracts_dir / 'report'}: no dated rows to take the report's days from;"
                " pass report_start and report_end"
            )
        increments_dir = extracts_dir / "increments"
        increments = sorted(
            date.fromisoformat(folder.name)
            for folder in (increments_dir.iterdir() if increments_dir.is_dir() else ())
            if folder.is_dir()
        )
        report_end = overrides.get("report_end", window.get("report_end"))
        settings: dict[str, Any] = {
            **window,
            "increments_until": max(increments, default=report_end),
            "not_found_days": frozenset(),
            "missing_files": frozenset(),
            "extracts_dir": extracts_dir,
        }
        return cls(**{**settings, **overrides})

    def __post_init__(self) -> None:
        if self.report_end < self.report_start:
            raise ValueError("report_end is before report_start")
        if self.orders_per_day < 1:
            raise ValueError("orders_per_day must be at least 1")

    @property
    def shape(self) -> synthetic.SyntheticShape:
        return synthetic.SyntheticShape(
            seed=self.seed,
            orders_per_day=self.orders_per_day,
            customers=self.customers,
            status_since=self.status_since,
            corrections=tuple(sorted(self.corrections.items())),
        )

    @property
    def report_id(self) -> str:
        """Stable across restarts: a report id saved by a run stays valid for the next."""
        return synthetic.stable_hex(self.seed, "report", self.report_start, self.report_end)

    @property
    def report_days(self) -> list[date]:
        span = (self.report_end - self.report_start).days
        return [self.report_start + timedelta(days=offset) for offset in range(span + 1)]

    def increment_id(self, day: date) -> str:
        return synthetic.stable_hex(self.seed, "increment", self.report_id, day)


# Report files with a date, and the field holding it.
_DATED_REPORT_FILES = (("user_order_log", 2), ("user_activity_log", 2), ("customer_research", 0))


def _report_file_days(report_dir: Path) -> set[date]:
    """The days of the first dated report file that has rows (empty set when none has)."""
    for name, field_index in _DATED_REPORT_FILES:
        path = report_dir / f"{name}.csv"
        if not path.is_file():
            continue
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = csv.reader(handle)
            next(rows, None)  # header (absent in a 0-byte file)
            days = {date.fromisoformat(row[field_index][:10]) for row in rows if row}
        if days:
            return days
    return set()


def _read_chunks(path: Path, size: int = 1 << 16) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def _api_datetime(day: date) -> str:
    """The API's JSON date format: ``2024-01-13 00:00:00``."""
    return f"{day.isoformat()} 00:00:00"


class _ApiState:
    """Mutable server state shared by the handler threads, guarded by one lock."""

    def __init__(self, config: LocalApiConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._polls: dict[str, int] = {}
        self._task_counter = 0
        self._failures_left = dict(config.fail_first)
        # Increment ids are opaque; map them back to their day once.
        self.increment_days: dict[str, date] = {}
        day = config.report_end + timedelta(days=1)
        while day <= config.increments_until:
            recorded = (
                config.extracts_dir is None
                or (config.extracts_dir / "increments" / day.isoformat()).is_dir()
            )
            if day not in config.not_found_days and recorded:
                self.increment_days[config.increment_id(day)] = day
            day += timedelta(days=1)

    def new_task(self) -> str:
        with self._lock:
            self._task_counter += 1
            task_id = synthetic.stable_hex(self.config.seed, "task", self._task_counter)
            self._polls[task_id] = 0
            return task_id

    def poll(self, task_id: str) -> int | None:
        """Count one poll of a task; None for an unknown task."""
        with self._lock:
            if task_id not in self._polls:
                return None
            self._polls[task_id] += 1
            return self._polls[task_id]

    def take_failure(self, path: str) -> bool:
        """Whether this request to ``path`` is one of the configured failures."""
        with self._lock:
            left = self._failures_left.get(path, 0)
            if left <= 0:
                return False
            self._failures_left[path] = left - 1
            return True


class _Handler(BaseHTTPRequestHandler):
    server: _ReportApiHttpServer
    protocol_version = "HTTP/1.1"
    _started = 0.0
    # Idle keep-alive connections must not pin handler threads forever.
    timeout = 30

    # -- plumbing ---------------------------------------------------------------------

    @property
    def state(self) -> _ApiState:
        return self.server.state

    def log_message(self, format: str, *args: Any) -> None:
        """Route http.server's own messages through logging (never includes headers)."""
        logger.debug("local report API: " + format, *args)

    def _log_request_line(self, status: int, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "local report API %s %s -> %d (%.1f ms)", self.command, self.path, status, elapsed_ms
        )

    def _send_json(self, status: int, body: Mapping[str, Any]) -> int:
        payload = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        return status

    def _send_error(self, status: HTTPStatus, message: str) -> int:
        return self._send_json(status, {"error": status.phrase, "detail": message})

    def _send_stream(self, chunks: Iterator[bytes]) -> int:
        """Chunked transfer: files are streamed as they are generated."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(f"{len(chunk):X}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            logger.warning("local report API: client went away while streaming %s", self.path)
            self.close_connection = True
        return HTTPStatus.OK

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._drain_body()
        self._dispatch()

    def send_response(self, code: int, message: str | None = None) -> None:
        # Logged before the body goes out: once the client has the answer, the server
        # may be stopped at any moment (tests do), and the line must already be there.
        self._log_request_line(code, self._started)
        super().send_response(code, message)

    def _dispatch(self) -> None:
        self._started = time.perf_counter()
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            self._route(url.path, query)
        except Exception:
            logger.exception("local report API: %s %s failed", self.command, url.path)
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def _route(self, path: str, query: dict[str, str]) -> int:
        if self.state.take_failure(path):
            self.send_response(self.state.config.fail_status)
            self.send_header("Retry-After", str(self.state.config.fail_retry_after_s))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return self.state.config.fail_status
        if path.startswith("/files/"):
            if self.command != "GET":
                return self._send_error(HTTPStatus.METHOD_NOT_ALLOWED, "files are GET only")
            return self._serve_file(path.removeprefix("/files/").split("/"))
        routes = {
            ("POST", "/generate_report"): self._generate_report,
            ("GET", "/get_report"): self._get_report,
            ("GET", "/get_increment"): self._get_increment,
        }
        handler = routes.get((self.command, path))
        if handler is None:
            return self._send_error(HTTPStatus.NOT_FOUND, f"no route {self.command} {path}")
        rejection = self._check_headers()
        if rejection is not None:
            return rejection
        return handler(query)

    def _check_headers(self) -> int | None:
        """SPEC: every API call carries the key and the three identification headers."""
        key = self.headers.get("X-API-KEY")
        if not key:
            return self._send_error(HTTPStatus.UNAUTHORIZED, "missing X-API-KEY header")
        if key != self.state.config.api_key:
            return self._send_error(HTTPStatus.FORBIDDEN, "invalid X-API-KEY")
        missing = [name for name in ("X-Nickname", "X-Cohort") if not self.headers.get(name)]
        if self.headers.get("X-Project") != "True":
            missing.append("X-Project: True")
        if missing:
            return self._send_error(
                HTTPStatus.BAD_REQUEST, f"missing headers: {', '.join(missing)}"
            )
        return None

    # -- API calls --------------------------------------------------------------------

    def _base_url(self) -> str:
        """Build file URLs from the Host the client used, so they work behind any name."""
        host = self.headers.get("Host")
        if not host:
            address, port = self.server.server_address[:2]
            host = f"{address}:{port}"
        return f"http://{host}"

    def _generate_report(self, query: dict[str, str]) -> int:
        return self._send_json(HTTPStatus.OK, {"task_id": self.state.new_task()})

    def _get_report(self, query: dict[str, str]) -> int:
        task_id = query.get("task_id", "")
        polls = self.state.poll(task_id)
        if polls is None:
            return self._send_error(HTTPStatus.NOT_FOUND, f"unknown task_id {task_id!r}")
        config = self.state.config
        if polls <= config.running_polls:
            return self._send_json(
                HTTPStatus.OK,
                {
                    "task_id": task_id,
                    "status": "RUNNING",
                    "data": {"report_id": None, "start_day": None, "end_date": None, "s3_path": {}},
                },
            )
        base = f"{self._base_url()}/files/{config.report_id}"
        return self._send_json(
            HTTPStatus.OK,
            {
                "task_id": task_id,
                "status": "SUCCESS",
                "data": {
                    "report_id": config.report_id,
                    "start_day": _api_datetime(config.report_start),
                    "end_date": _api_datetime(config.report_end),
                    "s3_path": {name: f"{base}/{name}.csv" for name in _FILE_NAMES},
                },
            },
        )

    def _get_increment(self, query: dict[str, str]) -> int:
        config = self.state.config
        report_id = query.get("report_id", "")
        raw_date = query.get("date", "")
        try:
            moment = datetime.fromisoformat(raw_date)
        except ValueError:
            moment = None
        if moment is None or moment.time() != datetime.min.time():
            return self._send_error(
                HTTPStatus.BAD_REQUEST, f"date must look like YYYY-MM-DDT00:00:00, got {raw_date!r}"
            )
        if report_id != config.report_id:
            return self._send_error(HTTPStatus.NOT_FOUND, f"unknown report_id {report_id!r}")
        day = moment.date()
        reason = self._no_increment_reason(day)
        if reason is not None:
            return self._send_json(
                HTTPStatus.OK,
                {
                    "report_id": report_id,
                    "date": _api_datetime(day),
                    "status": "NOT FOUND",
                    "data": {"reason": reason},
                },
            )
        increment_id = config.increment_id(day)
        base = f"{self._base_url()}/files/increments/{increment_id}"
        return self._send_json(
            HTTPStatus.OK,
            {
                "report_id": report_id,
                "date": _api_datetime(day),
                "status": "SUCCESS",
                "data": {
                    "increment_id": increment_id,
                    "s3_path": {f"{name}_inc": f"{base}/{name}_inc.csv" for name in _FILE_NAMES},
                },
            },
        )

    def _no_increment_reason(self, day: date) -> str | None:
        config = self.state.config
        if day <= config.report_end:
            return f"{day} is not after the report's end_date {config.report_end}"
        if day > config.increments_until:
            return f"no increment has been built for {day} yet"
        if config.increment_id(day) not in self.state.increment_days:
            return f"the increment for {day} was not produced"
        return None

    # -- files ------------------------------------------------------------------------

    def _serve_file(self, parts: list[str]) -> int:
        config = self.state.config
        if len(parts) == 2 and parts[0] == config.report_id:
            name = parts[1].removesuffix(".csv")
            if name in _FILE_NAMES:
                if config.extracts_dir is not None:
                    return self._send_recorded(config.extracts_dir / "report" / f"{name}.csv")
                return self._send_stream(
                    synthetic.iter_file(config.shape, name, config.report_days)
                )
        if len(parts) == 3 and parts[0] == "increments":
            day = self.state.increment_days.get(parts[1])
            file_name = parts[2].removesuffix(".csv")
            name = file_name.removesuffix("_inc")
            if (
                day is not None
                and file_name.endswith("_inc")
                and name in _FILE_NAMES
                and (day, file_name) not in config.missing_files
            ):
                if config.extracts_dir is not None:
                    folder = config.extracts_dir / "increments" / day.isoformat()
                    return self._send_recorded(folder / f"{file_name}.csv")
                return self._send_stream(
                    synthetic.iter_file(config.shape, name, [day], increment=True)
                )
        return self._send_error(HTTPStatus.NOT_FOUND, f"no such file /files/{'/'.join(parts)}")

    def _send_recorded(self, path: Path) -> int:
        if not path.is_file():
            return self._send_error(HTTPStatus.NOT_FOUND, f"no such file {path.name}")
        return self._send_stream(_read_chunks(path))


class _ReportApiHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _ApiState) -> None:
        super().__init__(address, _Handler)
        self.state = state


class LocalReportApi:
    """The local report API on 127.0.0.1 and a free port, served from a background thread.

    Use it as a context manager::

        with LocalReportApi(LocalApiConfig(seed=7)) as api:
            client = ReportApiClient(api.settings)
    """

    def __init__(self, config: LocalApiConfig | None = None, *, host: str = "127.0.0.1") -> None:
        self.config = config or LocalApiConfig()
        self._host = host
        self._server: _ReportApiHttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local report API is not running")
        address, port = self._server.server_address[:2]
        return f"http://{address}:{port}"

    @property
    def settings(self) -> ApiSettings:
        """Client settings that reach this server with the right key and headers."""
        from ingestion.config import ApiSettings

        return ApiSettings(
            base_url=self.url,
            api_key=self.config.api_key,
            nickname=self.config.nickname,
            cohort=self.config.cohort,
        )

    def start(self) -> LocalReportApi:
        if self._server is not None:
            return self
        self._server = _ReportApiHttpServer((self._host, 0), _ApiState(self.config))
        # A short poll interval makes stop() (and so every test using the server) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-report-api",
            daemon=True,
        )
        self._thread.start()
        logger.info("local report API listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> LocalReportApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"LocalReportApi({where}, seed={self.config.seed})"


def serve_forever(
    config: LocalApiConfig | None = None, *, host: str = "127.0.0.1", port: int = 8000
) -> None:
    """Run the local report API in the foreground until interrupted.

    This is ``python -m ingestion serve``: a long-lived stand-in that other processes
    (Airflow in docker-compose, a second terminal) reach through ``REPORT_API_URL``.
    """
    config = config or LocalApiConfig()
    server = _ReportApiHttpServer((host, port), _ApiState(config))
    logger.info(
        "local report API serving on http://%s:%d (report %s..%s, increments until %s)",
        host,
        server.server_address[1],
        config.report_start,
        config.report_end,
        config.increments_until,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("local report API stopped")
    finally:
        server.server_close()
