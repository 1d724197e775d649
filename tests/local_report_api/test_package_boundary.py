"""The local report API is a fake of an external service: it imports nothing from
``ingestion``, and ``ingestion`` imports it only inside its development commands."""

from __future__ import annotations

import subprocess
import sys

from ingestion.warehouse import REPO_ROOT


def _modules_after_import(*modules: str) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print('\\n'.join(sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_local_report_api_imports_nothing_from_ingestion() -> None:
    loaded = _modules_after_import("local_report_api")
    assert "local_report_api.app" in loaded
    assert not {name for name in loaded if name.split(".")[0] == "ingestion"}


def test_ingestion_loads_the_local_report_api_only_when_a_command_needs_it() -> None:
    runtime = [
        "ingestion.cli",
        "ingestion.pipeline",
        "ingestion.client",
        "ingestion.loader",
        "ingestion.local_stack",
    ]
    loaded = _modules_after_import(*runtime)
    assert set(runtime) <= loaded
    assert not {name for name in loaded if name.split(".")[0] == "local_report_api"}
