"""``python -m ingestion status`` on a warehouse with nothing in it yet (real PostgreSQL;
the full picture after a real ``run`` is in tests/e2e/test_pipeline_cli.py)."""

from __future__ import annotations

from ingestion.cli import main
from support.mart_tables import query


def test_status_explains_an_empty_warehouse_step_by_step(warehouse, capsys) -> None:
    assert main(["status"]) == 0
    assert capsys.readouterr().out.startswith("Never migrated (no staging.load_audit)")
    # status only reads: the warehouse is still empty
    assert query(warehouse, "select to_regclass('staging.load_audit')") == [(None,)]

    assert main(["migrate"]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    assert capsys.readouterr().out == "Nothing loaded yet (staging.load_audit is empty).\n"
