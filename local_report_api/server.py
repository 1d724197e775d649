"""Serving the app with uvicorn: in a background thread (tests, the demo) or in the foreground."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn

from local_report_api.app import create_app
from local_report_api.config import LocalApiConfig

logger = logging.getLogger(__name__)


def _uvicorn_config(config: LocalApiConfig, host: str, port: int) -> uvicorn.Config:
    # The app logs every request itself (never its headers); uvicorn's access log and
    # logging set-up stay off so the host's (pytest's, the CLI's) logging is left alone.
    return uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )


class LocalReportApi:
    """The local report API on 127.0.0.1 and a free port, served from a background thread.

    Use it as a context manager::

        with LocalReportApi(LocalApiConfig(seed=7)) as api:
            requests.post(f"{api.url}/generate_report", headers=...)
    """

    def __init__(self, config: LocalApiConfig | None = None, *, host: str = "127.0.0.1") -> None:
        self.config = config or LocalApiConfig()
        self._host = host
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local report API is not running")
        return f"http://{self._host}:{self._port}"

    def start(self) -> LocalReportApi:
        if self._server is not None:
            return self
        # Bound here rather than by uvicorn, so the free port is known before serving.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, 0))
        self._port = sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(self.config, self._host, self._port))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="local-report-api", daemon=True
        )
        thread.start()
        while not server.started:
            if not thread.is_alive():
                sock.close()
                raise RuntimeError("the local report API did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        logger.info("local report API listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
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
    """Run the local report API in the foreground until interrupted (Ctrl-C, SIGTERM).

    This is ``python -m ingestion serve``: a long-lived stand-in that other processes
    (Airflow in docker-compose, a second terminal) reach through ``REPORT_API_URL``.
    """
    config = config or LocalApiConfig()
    logger.info(
        "local report API serving on http://%s:%d (report %s..%s, increments until %s)",
        host,
        port,
        config.report_start,
        config.report_end,
        config.increments_until,
    )
    uvicorn.Server(_uvicorn_config(config, host, port)).run()
    logger.info("local report API stopped")
