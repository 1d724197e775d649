"""One database per module with the marts built from the recorded extracts."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.recorded_marts import build_recorded_marts


@pytest.fixture(scope="module")
def recorded_marts(make_database, fixtures_dir: Path) -> dict[str, str]:
    settings = make_database()
    build_recorded_marts(settings, fixtures_dir)
    return settings
