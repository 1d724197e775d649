"""The loader's two statements of its value rules agree, property-tested.

A file is checked by PostgreSQL while it is COPYed (the temporary table's column types and
CHECK constraints, ``_column_rules``); the reason an error message gives comes from the
Python rules (``_value_problem``), applied to the value COPY stopped at. So:

- every value PostgreSQL refuses, the Python rules refuse too, with a reason: otherwise
  the load fails with the vague "PostgreSQL refused the file" instead of naming it;
- for the text kinds (keys, the status, timestamps, which stay text in the temporary
  table) both accept exactly the same values.

Numbers are read by PostgreSQL's own input syntax, which is more lenient than the Python
rules' digits: surrounding spaces, leading zeros, ``+``, ``.5`` or an exponent in an
amount load as the number they spell (bounds still apply). That direction is not asserted.

Hypothesis generates values near the valid ones (edited digits, separators, signs,
spaces, other scripts' digits) for every column kind of the order file.
"""

from __future__ import annotations

from datetime import date

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from ingestion.loader import SPECS, Column, _column_rules, _value_problem
from ingestion.warehouse import connect

START, END = date(2024, 10, 1), date(2024, 10, 2)
SPEC = SPECS["user_order_log"]
COLUMNS = {column.name: column for column in (*SPEC.columns, SPEC.optional_column) if column}
TEXT_KINDS = {"key", "status", "timestamp", "text"}

VALID = {
    "id": ["1", "9223372036854775807", "-9223372036854775807"],
    "uniq_id": ["a1", "x"],
    "date_time": ["2024-10-01T00:00:00", "2024-10-02T23:59:59", "2024-10-01T12:30:05"],
    "city_id": ["1", "2147483647"],
    "quantity": ["1", "3"],
    "payment_amount": ["0", "12.5", "-99999999.99", "99999999.99", "150.00"],
    "status": ["shipped", "refunded"],
}
# What an edit may put into a valid value: its own alphabet, and what files get wrong.
EDITS = list("0123456789-:.T ZtE+_,") + ["\t", "٣", "٫", "１", "", "00", "24", "60", "e5"]


@st.composite
def near_valid(draw: st.DrawFn, name: str) -> str:
    value = draw(st.sampled_from(VALID[name]))
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(value)))
        replaced = draw(st.integers(0, 2))
        value = value[:position] + draw(st.sampled_from(EDITS)) + value[position + replaced :]
    return value


@pytest.fixture(scope="module")
def rules_conn(make_database):
    conn = connect(make_database())
    yield conn
    conn.close()


def accepted_by_postgres(conn, column: Column, value: str) -> bool:
    """Whether the temporary table the file is COPYed into takes ``value`` (an empty
    field arrives as NULL, as COPY's ``force_null`` sends it)."""
    type_name, checks = _column_rules(column, START, END)
    definition = sql.SQL("{} {}").format(sql.Identifier(column.name), sql.SQL(type_name))
    for check in checks:
        definition += sql.SQL(" check (({}) is true)").format(check)
    statement = sql.SQL("create temporary table rules ({}) on commit drop").format(definition)
    with conn.cursor() as cur:
        try:
            cur.execute(statement)
            cur.execute("insert into rules values (%s)", (value if value != "" else None,))
            return True
        except (psycopg2.DataError, psycopg2.IntegrityError):
            return False
        finally:
            conn.rollback()


@pytest.mark.parametrize("name", sorted(VALID))
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_postgres_and_python_accept_the_same_values(rules_conn, name: str, data) -> None:
    column = COLUMNS[name]
    value = data.draw(near_valid(name), label="value")
    reason = _value_problem(column, value, START, END)
    postgres_ok = accepted_by_postgres(rules_conn, column, value)
    if not postgres_ok:
        assert reason is not None, f"{name} {value!r}: PostgreSQL refuses it, Python has no reason"
    if column.kind in TEXT_KINDS:
        assert postgres_ok == (reason is None), f"{name} {value!r}: Python says {reason!r}"
