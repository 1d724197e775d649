"""The local report API: SPEC section 2 on FastAPI, served by uvicorn.

The real source's contract: key and identification headers on every API call, RUNNING
polls, NOT FOUND days, 404 files, CSV streamed in chunks from URLs that need no key (like
pre-signed S3 URLs). Every error, the router's own included, is JSON ``error`` + ``detail``.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http import HTTPStatus
from itertools import count
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from local_report_api.synthetic import FILE_NAMES, SyntheticShape, iter_file, stable_hex

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalApiConfig(SyntheticShape):
    """What the local report API serves (synthetic data of this shape, or recorded extracts:
    :meth:`from_extracts`) and how. The defaults are the real source's calendar: a report of
    ISO weeks 36-39 of 2024, increments up to ``increments_until`` but for the NOT FOUND
    ``not_found_days``, 404 for ``missing_files``, ``running_polls`` RUNNING answers.
    ``fail_first`` maps a path (``/get_report``) to a number of first requests answered with
    ``fail_status`` and ``Retry-After: fail_retry_after_s`` (the fault tests)."""

    report_start: date = date(2024, 9, 2)
    report_end: date = date(2024, 9, 29)
    increments_until: date = date(2024, 12, 31)
    running_polls: int = 1
    not_found_days: frozenset[date] = frozenset({date(2024, 10, 9)})
    missing_files: frozenset = frozenset({(date(2024, 10, 2), "customer_research_inc")})
    api_key: str = field(default="local-dev-key", repr=False)
    nickname: str = "local-dev"
    cohort: str = "local"
    fail_first: Mapping[str, int] = field(default_factory=dict)
    fail_status: int = 503
    fail_retry_after_s: int = 0
    extracts_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.report_end < self.report_start:
            raise ValueError("report_end is before report_start")
        if self.orders_per_day < 1:
            raise ValueError("orders_per_day must be at least 1")

    @classmethod
    def from_extracts(cls, extracts_dir: Path, **overrides: Any) -> LocalApiConfig:
        """Serve ``report/<name>.csv`` and ``increments/<day>/<name>_inc.csv`` as they are
        (0-byte files included): a day without a folder is NOT FOUND, an absent file a 404.
        The report's days are its first dated file's, unless report_start/_end are given."""
        days = _report_file_days(extracts_dir / "report")
        if not days and not {"report_start", "report_end"} <= set(overrides):
            raise ValueError(
                f"{extracts_dir / 'report'}: no dated rows to take the report's days from;"
                " pass report_start and report_end"
            )
        window = {"report_start": min(days), "report_end": max(days)} if days else {}
        folders = (extracts_dir / "increments").glob("*/")  # the days' folders only
        last = max(map(date.fromisoformat, (folder.name for folder in folders)), default=None)
        last = last or overrides.get("report_end", window.get("report_end"))
        nothing_missing = {"not_found_days": frozenset(), "missing_files": frozenset()}
        settings = {**window, **nothing_missing, "increments_until": last}
        return cls(**{**settings, "extracts_dir": extracts_dir, **overrides})

    @property
    def report_id(self) -> str:
        """Stable across restarts: a report id saved by a run stays valid for the next."""
        return stable_hex(self.seed, "report", self.report_start, self.report_end)

    def increment_id(self, day: date) -> str:
        return stable_hex(self.seed, "increment", self.report_id, day)


def _report_file_days(report_dir: Path) -> set[date]:
    """The days of the first dated report file that has rows (empty set when none has)."""
    for name, column in ("user_order_log", 2), ("user_activity_log", 2), ("customer_research", 0):
        if (path := report_dir / f"{name}.csv").is_file():
            with path.open(encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.reader(handle))[1:]  # under the header (absent: a 0-byte file)
            if days := {date.fromisoformat(row[column][:10]) for row in rows if row}:
                return days
    return set()


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"error": HTTPStatus(status).phrase, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers)


def _urls(request: Request, route: str, suffix: str, **ids: str) -> dict[str, str]:
    """Each file's URL, from the Host the client used: it works behind any name."""
    return {
        name + suffix: str(request.url_for(route, **ids, file=f"{name}{suffix}.csv"))
        for name in FILE_NAMES
    }


def _recorded(path: Path) -> Iterator[bytes]:
    if not path.is_file():
        raise HTTPException(HTTPStatus.NOT_FOUND, f"no such file {path.name}")

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as handle:
            yield from iter(lambda: handle.read(1 << 20), b"")

    return chunks()


def create_app(config: LocalApiConfig | None = None) -> FastAPI:
    """A fresh app (and state: tasks, polls, faults left) over ``config``."""
    config = config or LocalApiConfig()
    # All state is touched from the event loop only (async endpoints): no lock needed.
    polls: dict[str, int] = {}
    task_numbers = count(1)
    failures_left = dict(config.fail_first)
    recorded = config.extracts_dir
    increment_days = {  # increment ids are opaque: map them back to their day once
        config.increment_id(day): day
        for day in _days(config.report_end + timedelta(days=1), config.increments_until)
        if day not in config.not_found_days
        and (recorded is None or (recorded / "increments" / str(day)).is_dir())
    }
    app = FastAPI(title="local report API", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def contract_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if detail == HTTPStatus(exc.status_code).phrase:  # the router's own 404 and 405
            detail = f"no route {request.method} {request.url.path}"
        return _error(exc.status_code, detail, exc.headers)

    @app.middleware("http")
    async def log_and_inject_faults(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started, path = time.perf_counter(), request.url.path
        try:
            if failures_left.get(path, 0) > 0:  # the configured fault, before any routing
                failures_left[path] -= 1
                retry_after = {"Retry-After": str(config.fail_retry_after_s)}
                response = Response(status_code=config.fail_status, headers=retry_after)
            else:
                response = await call_next(request)
        except Exception:
            logger.exception("local report API: %s %s failed", request.method, path)
            response = _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        # Logged before the body goes out: once the client has the answer, the server may
        # be stopped at any moment (tests do). Headers (the key) are never logged.
        target = path + (f"?{request.url.query}" if request.url.query else "")
        status, ms = response.status_code, (time.perf_counter() - started) * 1000
        logger.info("local report API %s %s -> %d (%.1f ms)", request.method, target, status, ms)
        return response

    async def check_headers(request: Request) -> None:
        """SPEC: every API call carries the key and the three identification headers."""
        headers = request.headers
        if not (key := headers.get("X-API-KEY")):
            raise HTTPException(HTTPStatus.UNAUTHORIZED, "missing X-API-KEY header")
        if key != config.api_key:
            raise HTTPException(HTTPStatus.FORBIDDEN, "invalid X-API-KEY")
        missing = [name for name in ("X-Nickname", "X-Cohort") if not headers.get(name)]
        if headers.get("X-Project") != "True":
            missing.append("X-Project: True")
        if missing:
            raise HTTPException(HTTPStatus.BAD_REQUEST, f"missing headers: {', '.join(missing)}")

    api = [Depends(check_headers)]

    @app.post("/generate_report", dependencies=api)
    async def generate_report() -> dict[str, Any]:
        task_id = stable_hex(config.seed, "task", next(task_numbers))
        polls[task_id] = 0
        return {"task_id": task_id}

    @app.get("/get_report", dependencies=api)
    async def get_report(request: Request, task_id: str = "") -> dict[str, Any]:
        if task_id not in polls:
            raise HTTPException(HTTPStatus.NOT_FOUND, f"unknown task_id {task_id!r}")
        polls[task_id] += 1
        if polls[task_id] <= config.running_polls:
            data = {"report_id": None, "start_day": None, "end_date": None, "s3_path": {}}
            return {"task_id": task_id, "status": "RUNNING", "data": data}
        data = {
            "report_id": config.report_id,
            "start_day": f"{config.report_start} 00:00:00",
            "end_date": f"{config.report_end} 00:00:00",
            "s3_path": _urls(request, "report_file", "", report_id=config.report_id),
        }
        return {"task_id": task_id, "status": "SUCCESS", "data": data}

    @app.get("/get_increment", dependencies=api)
    async def get_increment(
        request: Request, report_id: str = "", day_text: Annotated[str, Query(alias="date")] = ""
    ) -> dict[str, Any]:
        try:
            moment = datetime.fromisoformat(day_text)
        except ValueError:
            moment = None
        if moment is None or moment.time() != datetime.min.time():
            raise HTTPException(
                HTTPStatus.BAD_REQUEST, f"date must look like YYYY-MM-DDT00:00:00, got {day_text!r}"
            )
        if report_id != config.report_id:
            raise HTTPException(HTTPStatus.NOT_FOUND, f"unknown report_id {report_id!r}")
        day, increment_id = moment.date(), config.increment_id(moment.date())
        answer = {"report_id": report_id, "date": f"{day} 00:00:00"}
        if day <= config.report_end:
            reason = f"{day} is not after the report's end_date {config.report_end}"
        elif day > config.increments_until:
            reason = f"no increment has been built for {day} yet"
        elif increment_id not in increment_days:
            reason = f"the increment for {day} was not produced"
        else:
            s3_path = _urls(request, "increment_file", "_inc", increment_id=increment_id)
            data = {"increment_id": increment_id, "s3_path": s3_path}
            return {**answer, "status": "SUCCESS", "data": data}
        return {**answer, "status": "NOT FOUND", "data": {"reason": reason}}

    @app.get("/files/{report_id}/{file}", name="report_file")
    async def report_file(request: Request, report_id: str, file: str) -> StreamingResponse:
        name = file.removesuffix(".csv")
        if report_id != config.report_id or name not in FILE_NAMES:
            raise HTTPException(HTTPStatus.NOT_FOUND, f"no such file {request.url.path}")
        if recorded is not None:
            chunks = _recorded(recorded / "report" / f"{name}.csv")
        else:
            chunks = iter_file(config, name, _days(config.report_start, config.report_end))
        return StreamingResponse(chunks, media_type="text/csv")  # no length: sent chunked

    @app.get("/files/increments/{increment_id}/{file}", name="increment_file")
    async def increment_file(request: Request, increment_id: str, file: str) -> StreamingResponse:
        day, name = increment_days.get(increment_id), file.removesuffix(".csv")
        report_name, absent = name.removesuffix("_inc"), (day, name) in config.missing_files
        if day is None or absent or report_name == name or report_name not in FILE_NAMES:
            raise HTTPException(HTTPStatus.NOT_FOUND, f"no such file {request.url.path}")
        if recorded is not None:
            chunks = _recorded(recorded / "increments" / str(day) / f"{name}.csv")
        else:
            chunks = iter_file(config, report_name, [day], increment=True)
        return StreamingResponse(chunks, media_type="text/csv")

    return app


def _server(config: LocalApiConfig, host: str, port: int) -> uvicorn.Server:
    # The app logs every request itself (never its headers); uvicorn's access log and
    # logging set-up stay off so the host's (pytest's, the CLI's) logging is left alone.
    quiet = {"access_log": False, "log_config": None, "lifespan": "off"}
    app = create_app(config)
    return uvicorn.Server(uvicorn.Config(app, host, port, timeout_graceful_shutdown=5, **quiet))


class LocalReportApi:
    """The local report API on 127.0.0.1 and a free port, served from a background thread:
    ``with LocalReportApi(LocalApiConfig(seed=7)) as api: requests.post(f"{api.url}/...")``."""

    def __init__(self, config: LocalApiConfig | None = None, *, host: str = "127.0.0.1") -> None:
        self.config, self._host = config or LocalApiConfig(), host
        self._server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local report API is not running")
        return f"http://{self._host}:{self._server.servers[0].sockets[0].getsockname()[1]}"

    def __enter__(self) -> LocalReportApi:
        server = _server(self.config, self._host, 0)  # port 0: a free port, read back
        self._thread = threading.Thread(target=server.run, name="local-report-api", daemon=True)
        self._thread.start()
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the local report API did not start")
            time.sleep(0.01)
        self._server = server
        logger.info("local report API listening on %s", self.url)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"LocalReportApi({where}, seed={self.config.seed})"


def serve_forever(
    config: LocalApiConfig | None = None, *, host: str = "127.0.0.1", port: int = 8000
) -> None:
    """Run the local report API in the foreground until interrupted (Ctrl-C, SIGTERM):
    ``python -m retail_dev serve``, reached by other processes through ``REPORT_API_URL``."""
    config = config or LocalApiConfig()
    days = f"{config.report_start}..{config.report_end}, increments to {config.increments_until}"
    logger.info("local report API serving on http://%s:%d (report %s)", host, port, days)
    _server(config, host, port).run()
    logger.info("local report API stopped")
