"""The dbt docs site and the Airflow UI, opened in a real browser (headless Chromium).

Debian's ``chromium`` package (``make browser``; ``.ci/run`` installs it; no browser
download is possible here) renders each page, its JavaScript run, and the test reads the
rendered DOM (``--dump-dom``) and keeps a screenshot under ``test-artifacts/``
(git-ignored; ``TEST_ARTIFACTS_DIR`` moves it). Both servers are the project's own
commands: ``python -m retail_dev docs`` and ``python -m retail_dev airflow``.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest
from PIL import Image

from ingestion import dbt, project
from support.dbt_ls import dbt_ls
from support.staging import load_fixtures

pytestmark = pytest.mark.slow  # a docs site and a local Airflow (make e2e)

REPO_ROOT = project.REPO_ROOT
RETENTION_COLUMNS = (
    "period_name", "period_id", "period_start", "period_end", "item_id",
    "new_customers_count", "returning_customers_count", "refunded_customer_count",
    "new_customers_revenue", "returning_customers_revenue", "customers_refunded",
)  # fmt: skip
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR") or REPO_ROOT / "test-artifacts")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Debian's chromium is not installed: `make browser` installs it"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it (.ci/run): its absence is a failure
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def built_warehouse(make_database, fixtures_dir: Path) -> Iterator[dict[str, str]]:
    """A warehouse with the real extracts loaded and every mart built."""
    settings = make_database()
    load_fixtures(settings, fixtures_dir)
    env = {**os.environ, **settings}
    dbt.build_all(env=env)
    yield settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


@contextmanager
def _serving(command: list[str], env: dict[str, str], ready_url: str, log: Path):
    """Run a server (in its own process group) until ``ready_url`` answers 200."""
    with log.open("w") as output:
        process = subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 240
            while True:
                assert process.poll() is None, log.read_text()[-3000:]
                try:
                    if _get(ready_url)[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(2)
            yield process
        finally:
            with suppress(ProcessLookupError):  # a test may have stopped it already
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _browse(chromium: str, url: str, screenshot: str) -> str:
    """The page's visible text once its scripts ran; a screenshot of it as an artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    common = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--window-size=1400,1000", "--virtual-time-budget=15000",
    ]  # fmt: skip
    shot = ARTIFACTS / screenshot
    subprocess.run(
        [*common, f"--screenshot={shot}", url], capture_output=True, check=True, timeout=120
    )
    with Image.open(shot) as image:
        assert image.size == (1400, 1000)
        # a rendered page, not a blank or error canvas
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50, shot
    dom = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def test_docs_site_shows_the_retention_model_its_columns_and_lineage(
    chromium: str, built_warehouse: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        **built_warehouse,
        "DBT_TARGET_PATH": str(tmp_path / "target"),  # the project's target/ is left alone
        "DO_NOT_TRACK": "1",
    }
    command = [sys.executable, "-m", "retail_dev", "docs", "--port", str(port)]
    with _serving(command, env, f"http://127.0.0.1:{port}/", tmp_path / "docs.log"):
        base = f"http://127.0.0.1:{port}/#!/"
        landing = _browse(chromium, base + "overview", "docs-overview.png")
        assert "How to read retention" in landing  # the __overview__ block, not "Welcome!"

        page = _browse(
            chromium, base + "model/model.retail.f_customer_retention", "docs-retention.png"
        )
        assert "Contract Enforced" in page
        for column in RETENTION_COLUMNS:
            assert column in page, column
        # lineage: what it reads and who reads it (the report's exposure)
        depends = page[page.index("Depends On") :]
        assert "f_sales" in depends
        assert "retention_report" in page[page.index("Referenced By") :]

        graph = _browse(
            chromium,
            base + "model/model.retail.f_customer_retention?g_v=1&g_i=%2Bf_customer_retention%2B",
            "docs-lineage.png",
        )
        assert "Lineage Graph" in graph  # its nodes are drawn on a canvas: see the screenshot


def test_airflow_ui_shows_the_cosmos_groups_and_serves_the_docs(
    chromium: str, built_warehouse: dict[str, str], tmp_path: Path
) -> None:
    # the docs the plugin serves: dbt's target folder, as `python -m retail_dev docs`
    # leaves it (not left behind by another test)
    dbt.run_dbt(["docs", "generate"], env=built_warehouse)
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__API__PORT": str(port),
        # the local UI without a login page (the simple auth manager's all-admins mode)
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW_CONN_WAREHOUSE": json.dumps(
            {
                "conn_type": "postgres",
                "host": built_warehouse["PGHOST"],
                "port": int(built_warehouse["PGPORT"]),
                "login": built_warehouse["PGUSER"],
                "schema": built_warehouse["PGDATABASE"],
            }
        ),
        # nothing is run: the report API is never called
        "AIRFLOW_CONN_REPORT_API": json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9"}),
    }
    api = f"http://127.0.0.1:{port}/api/v2"
    command = [sys.executable, "-m", "retail_dev", "airflow", "--api-port", str(_free_port())]
    with _serving(command, env, f"{api}/dags/sales_mart", tmp_path / "airflow.log") as stack:
        # REST API: one task per model or snapshot of each Cosmos group, as dbt selects them
        tasks = {
            task["task_id"] for task in json.loads(_get(f"{api}/dags/sales_mart/tasks")[1])["tasks"]
        }
        for group, selector in (
            ("build_sales_mart", dbt.SALES_SELECTOR),
            ("build_retention_mart", dbt.RETENTION_SELECTOR),
        ):
            nodes = dbt_ls(
                ["--selector", selector, "--resource-type", "model", "--resource-type", "snapshot"],
                tmp_path / f"ls-{group}",
            )
            expected = {f"{group}.{n.split('.')[-1]}_{n.split('.')[0]}_build" for n in nodes}
            assert {task for task in tasks if task.startswith(f"{group}.")} == expected

        page = _browse(chromium, f"http://127.0.0.1:{port}/dags/sales_mart", "airflow-dag.png")
        assert "sales_mart" in page
        for task in ("load_day", "plan_rebuild", "build_sales_mart", "build_retention_mart"):
            assert task in page, task

        # the docs entry of the Browse menu, named as the dbt docs, and its page
        plugins = json.loads(_get(f"{api}/plugins")[1])["plugins"]
        views = [view for plugin in plugins for view in plugin["external_views"]]
        (docs,) = [view for view in views if view["name"] == "dbt docs (retail)"]
        assert docs["category"] == "Browse"
        status, body = _get(f"http://127.0.0.1:{port}{docs['href']}")
        assert status == 200 and "<title>dbt Docs</title>" in body
        shown = _browse(
            chromium,
            f"http://127.0.0.1:{port}{docs['href']}#!/model/model.retail.f_customer_retention",
            "airflow-dbt-docs.png",
        )
        assert "new_customers_revenue" in shown and "Depends On" in shown

        # One Ctrl-C (SIGINT to the command alone) stops everything it started in 10 s.
        started = psutil.Process(stack.pid).children(recursive=True)
        assert len(started) >= 4  # airflow standalone, its scheduler, api-server, ...
        os.kill(stack.pid, signal.SIGINT)
        _, alive = psutil.wait_procs([psutil.Process(stack.pid), *started], timeout=10)
        assert not alive, [process.cmdline() for process in alive]
