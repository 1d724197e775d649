"""The benchmark harness (``make bench``) runs end to end on tiny sizes, on real PostgreSQL
and dbt, and produces its ratios (``airflow_run``, a minute of Airflow, is left to
``make bench`` itself). No timing or wording is asserted: the figures
are ``make bench``'s, in docs/benchmarks.md."""

from __future__ import annotations

import math
import re

import pytest

from benchmarks.__main__ import KEPT, main

slow = pytest.mark.slow  # about a minute of dbt builds (airflow_run: `make bench` only)


@pytest.mark.parametrize("only", ["loader,dag_parse", pytest.param("marts,scale", marks=slow)])
def test_benchmarks_produce_their_ratios(only, pg_server, monkeypatch, tmp_path):
    for name, value in pg_server.items():
        monkeypatch.setenv(name, value)
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# old page\n\n{KEPT}\n\n- a hand-written note\n", encoding="utf-8")

    assert main(["--tiny", "--only", only, "--output", str(page)]) == 0

    text = page.read_text(encoding="utf-8")
    assert text.endswith(f"{KEPT}\n\n- a hand-written note\n")  # kept as it was
    assert "# old page" not in text
    for name in only.split(","):
        section = text.split(f"\n## `{name}`: ")[1].split("\n## ")[0]
        rows = re.findall(r"^\| (.+?) \| ([\d,.]+|inf) \| (\S+) \|", section, re.MULTILINE)
        ratios = [float(value.replace(",", "")) for _, value, unit in rows if unit == "x"]
        assert ratios, f"{name} produced no ratio:\n{section}"
        assert all(math.isfinite(value) and value > 0 for value in ratios), rows
