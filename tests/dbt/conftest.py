"""Fixtures for the dbt integration tests: databases with staging loaded from the real extracts."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.staging import load_fixtures


@pytest.fixture
def use_database(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Point the libpq variables (which dbt reads) at a database for one test."""

    def _use(settings: dict[str, str]) -> None:
        for name, value in settings.items():
            monkeypatch.setenv(name, value)

    return _use


@pytest.fixture(scope="module")
def staged_database(make_database, fixtures_dir: Path) -> Iterator[dict[str, str]]:
    """One database per test module with staging holding all the real extracts."""
    settings = make_database()
    load_fixtures(settings, fixtures_dir)
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    yield settings
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
