"""The local report API as a FastAPI app: SPEC section 2 over a ``LocalApiConfig``.

Same contract as the real source: headers checked on every API call (401/403 for the
key, 400 for the identification headers), RUNNING polls, NOT FOUND days, missing files
(404), CSV files streamed in chunks. File URLs mimic pre-signed S3 URLs: plain GETs that
need no key. Every error, the framework's own 404/405 included, is JSON
``{"error": <reason phrase>, "detail": <message>}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import date, datetime, timedelta
from http import HTTPStatus
from itertools import count
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from local_report_api import synthetic
from local_report_api.config import LocalApiConfig

logger = logging.getLogger(__name__)

FILE_NAMES = synthetic.FILE_NAMES


def _api_datetime(day: date) -> str:
    """The API's JSON date format: ``2024-01-13 00:00:00``."""
    return f"{day.isoformat()} 00:00:00"


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": HTTPStatus(status).phrase, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers)


def _csv(chunks: Iterator[bytes]) -> StreamingResponse:
    """No Content-Length: uvicorn sends the file with chunked transfer encoding."""
    return StreamingResponse(chunks, media_type="text/csv")


def _read_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def create_app(config: LocalApiConfig | None = None) -> FastAPI:
    """A fresh app (and state: tasks, polls, faults left) over ``config``."""
    config = config or LocalApiConfig()
    # All state is touched from the event loop only (async endpoints): no lock needed.
    polls: dict[str, int] = {}
    task_numbers = count(1)
    failures_left = dict(config.fail_first)
    # Increment ids are opaque; map them back to their day once.
    increment_days = {
        config.increment_id(day): day
        for day in (
            config.report_end + timedelta(days=offset)
            for offset in range(1, (config.increments_until - config.report_end).days + 1)
        )
        if day not in config.not_found_days
        and (
            config.extracts_dir is None
            or (config.extracts_dir / "increments" / day.isoformat()).is_dir()
        )
    }

    app = FastAPI(title="local report API", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def contract_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if detail == HTTPStatus(exc.status_code).phrase:  # the router's own 404 and 405
            detail = f"no route {request.method} {request.url.path}"
        return _error(exc.status_code, detail, exc.headers)

    def _fault(path: str) -> Response | None:
        """The configured misbehaviour for this request, if any (before any routing)."""
        if failures_left.get(path, 0) > 0:
            failures_left[path] -= 1
            return Response(
                status_code=config.fail_status,
                headers={"Retry-After": str(config.fail_retry_after_s)},
            )
        return None

    @app.middleware("http")
    async def log_and_inject_faults(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            response = _fault(request.url.path) or await call_next(request)
        except Exception:
            logger.exception("local report API: %s %s failed", request.method, target)
            response = _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        # Logged before the body goes out: once the client has the answer, the server
        # may be stopped at any moment (tests do), and the line must already be there.
        # Headers (the key) are never logged.
        logger.info(
            "local report API %s %s -> %d (%.1f ms)",
            request.method,
            target,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def check_headers(
        x_api_key: Annotated[str, Header()] = "",
        x_nickname: Annotated[str, Header()] = "",
        x_cohort: Annotated[str, Header()] = "",
        x_project: Annotated[str, Header()] = "",
    ) -> None:
        """SPEC: every API call carries the key and the three identification headers."""
        if not x_api_key:
            raise HTTPException(HTTPStatus.UNAUTHORIZED, "missing X-API-KEY header")
        if x_api_key != config.api_key:
            raise HTTPException(HTTPStatus.FORBIDDEN, "invalid X-API-KEY")
        identification = {"X-Nickname": x_nickname, "X-Cohort": x_cohort}
        missing = [name for name, value in identification.items() if not value]
        if x_project != "True":
            missing.append("X-Project: True")
        if missing:
            raise HTTPException(HTTPStatus.BAD_REQUEST, f"missing headers: {', '.join(missing)}")

    api = [Depends(check_headers)]

    @app.post("/generate_report", dependencies=api)
    async def generate_report() -> dict[str, Any]:
        task_id = synthetic.stable_hex(config.seed, "task", next(task_numbers))
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
        # File URLs from the Host the client used, so they work behind any name.
        s3_path = {
            name: str(
                request.url_for("report_file", report_id=config.report_id, file=f"{name}.csv")
            )
            for name in FILE_NAMES
        }
        data = {
            "report_id": config.report_id,
            "start_day": _api_datetime(config.report_start),
            "end_date": _api_datetime(config.report_end),
            "s3_path": s3_path,
        }
        return {"task_id": task_id, "status": "SUCCESS", "data": data}

    @app.get("/get_increment", dependencies=api)
    async def get_increment(
        request: Request, report_id: str = "", day_text: Annotated[str, Query(alias="date")] = ""
    ) -> dict[str, Any]:
        try:
            moment: datetime | None = datetime.fromisoformat(day_text)
        except ValueError:
            moment = None
        if moment is None or moment.time() != datetime.min.time():
            raise HTTPException(
                HTTPStatus.BAD_REQUEST, f"date must look like YYYY-MM-DDT00:00:00, got {day_text!r}"
            )
        if report_id != config.report_id:
            raise HTTPException(HTTPStatus.NOT_FOUND, f"unknown report_id {report_id!r}")
        day = moment.date()
        answer = {"report_id": report_id, "date": _api_datetime(day)}
        increment_id = config.increment_id(day)
        if day <= config.report_end:
            reason = f"{day} is not after the report's end_date {config.report_end}"
        elif day > config.increments_until:
            reason = f"no increment has been built for {day} yet"
        elif increment_id not in increment_days:
            reason = f"the increment for {day} was not produced"
        else:
            s3_path = {
                f"{name}_inc": str(
                    request.url_for(
                        "increment_file", increment_id=increment_id, file=f"{name}_inc.csv"
                    )
                )
                for name in FILE_NAMES
            }
            data = {"increment_id": increment_id, "s3_path": s3_path}
            return {**answer, "status": "SUCCESS", "data": data}
        return {**answer, "status": "NOT FOUND", "data": {"reason": reason}}

    def _no_such_file(path: str) -> HTTPException:
        return HTTPException(HTTPStatus.NOT_FOUND, f"no such file {path}")

    def _recorded(path: Path) -> StreamingResponse:
        if not path.is_file():
            raise _no_such_file(path.name)
        return _csv(_read_chunks(path))

    @app.get("/files/{report_id}/{file}", name="report_file")
    async def report_file(report_id: str, file: str) -> StreamingResponse:
        name = file.removesuffix(".csv")
        if report_id != config.report_id or name not in FILE_NAMES:
            raise _no_such_file(f"/files/{report_id}/{file}")
        if config.extracts_dir is not None:
            return _recorded(config.extracts_dir / "report" / f"{name}.csv")
        return _csv(synthetic.iter_file(config.shape, name, config.report_days))

    @app.get("/files/increments/{increment_id}/{file}", name="increment_file")
    async def increment_file(increment_id: str, file: str) -> StreamingResponse:
        day = increment_days.get(increment_id)
        file_name = file.removesuffix(".csv")
        name = file_name.removesuffix("_inc")
        if (
            day is None
            or not file_name.endswith("_inc")
            or name not in FILE_NAMES
            or (day, file_name) in config.missing_files
        ):
            raise _no_such_file(f"/files/increments/{increment_id}/{file}")
        if config.extracts_dir is not None:
            folder = config.extracts_dir / "increments" / day.isoformat()
            return _recorded(folder / f"{file_name}.csv")
        return _csv(synthetic.iter_file(config.shape, name, [day], increment=True))

    return app
