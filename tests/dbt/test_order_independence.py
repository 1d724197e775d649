"""Order independence, property-tested on the real loader, PostgreSQL and dbt.

Hypothesis generates histories: increments of random days (new lines, and corrections
that re-date, re-price, change the status, reassign the customer or item of lines seen
before, or drop them), small reports, NOT FOUND days and week rebuilds, in random order
and with repeats. Each step is what the pipeline does (``python -m ingestion run`` and
the DAG): load, then rebuild what :func:`ingestion.pipeline.rebuild_plan` says the load
changed. After the history, every mart must equal what the spec says for the *final*
staging, computed here independently in Python (``support.mart_expectations``; that
oracle equals a fresh ``dbt build`` of the real extracts in ``test_marts.py``):

- ``f_sales`` holds every staging line once, on its current day, signed;
- each dimension row is its key's latest line, and no key without a line remains;
- every week retention was built for equals the spec's numbers for that week (also
  when it ended up empty), and no other week has rows.

Week rebuilds are generated for any week, complete or not (a rebuild on request): once
built, a week is rebuilt whenever a load changes one of its days, even if it came out
empty. Each step costs one dbt build (a few seconds), hence the small example count.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ingestion import dbt
from ingestion.loader import load_increment, load_report, record_not_found
from ingestion.migrate import migrate
from ingestion.pipeline import rebuild_plan
from ingestion.warehouse import connection
from support.mart_expectations import expected_marts
from support.mart_tables import actual_marts, query

pytestmark = pytest.mark.slow

FIRST_DAY = date(2024, 9, 23)  # a Monday: three ISO weeks, 2024-W39..W41
DAYS = [FIRST_DAY + timedelta(days=offset) for offset in range(21)]
UNIQ_IDS = [f"line-{n}" for n in range(6)]
CUSTOMERS = {1: ("Анна", "Иванова"), 2: ("Борис", "Петров"), 3: ("Вера", "Сидорова")}
ITEMS = {1: "Молоко 3%", 2: "Хлеб"}
CITIES = {1: "Москва", 2: "Ростов"}
ORDER_HEADER = (
    "id,uniq_id,date_time,city_id,city_name,customer_id,first_name,last_name,"
    "item_id,item_name,quantity,payment_amount,status"
)


@dataclass(frozen=True)
class Line:
    uniq_id: str
    hour: int
    customer_id: int
    name_variant: int  # the same customer may come with another spelling
    item_id: int
    city_id: int
    quantity: int
    amount: Decimal
    status: str


lines = st.builds(
    Line,
    uniq_id=st.sampled_from(UNIQ_IDS),
    hour=st.integers(0, 23),
    customer_id=st.sampled_from(sorted(CUSTOMERS)),
    name_variant=st.integers(0, 1),
    item_id=st.sampled_from(sorted(ITEMS)),
    city_id=st.sampled_from(sorted(CITIES)),
    quantity=st.integers(1, 3),
    amount=st.decimals(min_value=1, max_value=500, places=2),
    status=st.sampled_from(["shipped", "shipped", "refunded"]),
)
# unique uniq_ids within one file; an empty file is a day whose lines all went away
day_lines = st.lists(lines, max_size=4, unique_by=lambda line: line.uniq_id)
steps = st.one_of(
    st.tuples(st.just("increment"), st.sampled_from(DAYS), day_lines),
    st.tuples(st.just("report"), st.sampled_from(DAYS[:-2]), st.integers(1, 2), day_lines),
    st.tuples(st.just("not_found"), st.sampled_from(DAYS)),
    st.tuples(st.just("rebuild_week"), st.sampled_from(DAYS[::7])),
)


def write_orders(folder: Path, rows: list[tuple[date, Line]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "user_order_log.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(ORDER_HEADER + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        for number, (day, line) in enumerate(rows, start=1):
            first, last = CUSTOMERS[line.customer_id]
            moment = datetime.combine(day, datetime.min.time()) + timedelta(hours=line.hour)
            writer.writerow(
                [
                    number,
                    line.uniq_id,
                    moment.strftime("%Y-%m-%dT%H:%M:%S"),
                    line.city_id,
                    CITIES[line.city_id],
                    line.customer_id,
                    first + ("" if line.name_variant == 0 else "-2"),
                    last,
                    line.item_id,
                    ITEMS[line.item_id],
                    line.quantity,
                    line.amount,
                    line.status,
                ]
            )
    return path


# Every day counts as accounted for (a source that starts after them), so each week a
# load touches is rebuilt: what is checked here is order independence (the rule of
# complete weeks has its own tests, tests/ingestion/test_rebuild_plan.py and tests/e2e).
EVERY_WEEK = {"source_start": date.max}


class History:
    """One database, the steps applied so far, and the weeks retention was built for."""

    def __init__(self, settings: dict[str, str], scratch: Path) -> None:
        self.settings = settings
        self.scratch = scratch
        self.batches = 0
        self.built_weeks: set[date] = set()

    @classmethod
    def new(cls, make_database, use_database, scratch: Path) -> History:
        """A history on a fresh, migrated database that dbt (the libpq variables) points at."""
        settings_ = make_database()
        use_database(settings_)
        with connection(settings_) as conn:
            migrate(conn)
        return cls(settings_, scratch)

    def apply(self, step: tuple) -> None:
        kind = step[0]
        with connection(self.settings) as conn:
            if kind == "increment":
                _, day, new_lines = step
                summary = load_increment(
                    conn, day, self._files([(day, line) for line in new_lines]), self._batch()
                )
                plan = rebuild_plan(conn, day, day, summary.rebuild_days, **EVERY_WEEK)
            elif kind == "report":
                _, start, length, new_lines = step
                end = start + timedelta(days=length)
                rows = [
                    (start + timedelta(days=i % (length + 1)), line)
                    for i, line in enumerate(new_lines)
                ]
                summary = load_report(conn, start, end, self._files(rows), self._batch())
                plan = rebuild_plan(conn, start, end, summary.rebuild_days, **EVERY_WEEK)
            elif kind == "not_found":
                _, day = step
                record_not_found(conn, day, self._batch())
                plan = rebuild_plan(conn, day, day, **EVERY_WEEK)
            else:
                _, monday = step  # on request: complete or not, empty or not
                dbt.build_periods([], [monday])
                self.built_weeks.add(monday)
                return
        dbt.build_periods(plan.days, plan.week_starts)
        self.built_weeks.update(plan.week_starts)

    def _batch(self) -> str:
        self.batches += 1
        return f"batch-{self.batches}"

    def _files(self, rows: list[tuple[date, Line]]) -> dict[str, Path | None]:
        # only the order lines feed the marts; the other files are absent (404)
        return {"user_order_log": write_orders(self.scratch / self._batch(), rows)}


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,  # the same histories on every run: CI and a laptop agree
    # no shrinking: each step is a dbt build, and the failing history is printed as is
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(steps, min_size=3, max_size=6))
def test_marts_equal_the_spec_on_the_final_staging_whatever_the_order(
    history: list[tuple], make_database, use_database, tmp_path_factory
) -> None:
    run = History.new(make_database, use_database, tmp_path_factory.mktemp("history"))
    settings_ = run.settings
    for step in history:
        run.apply(step)
    if run.batches == 0:
        return
    assert actual_marts(settings_) == expected_marts(settings_, run.built_weeks)


def test_a_correction_across_weeks_is_rebuilt_in_both_weeks(
    make_database, use_database, tmp_path: Path
) -> None:
    """The issue's case: a line of W40 re-dated into W41 leaves W40 and counts in W41."""
    run = History.new(make_database, use_database, tmp_path)
    settings_ = run.settings
    moved = Line("line-0", 10, 1, 0, 1, 1, 1, Decimal("100.00"), "shipped")
    stays = Line("line-1", 11, 2, 0, 2, 2, 2, Decimal("50.00"), "shipped")
    run.apply(("increment", date(2024, 10, 2), [moved, stays]))
    run.apply(("increment", date(2024, 10, 6), []))  # Sunday: W40 built
    assert run.built_weeks == {date(2024, 9, 30)}
    run.apply(("increment", date(2024, 10, 13), [moved]))  # Sunday of W41, line re-dated
    assert run.built_weeks == {date(2024, 9, 30), date(2024, 10, 7)}
    marts = actual_marts(settings_)
    assert marts == expected_marts(settings_, run.built_weeks)
    weeks = {row[1]: row for row in marts["f_customer_retention"] if row[2] == 1}
    assert set(weeks) == {"2024-W41"}  # item 1 left W40 entirely
    # an older day reloaded later does not move the line back (the newer batch wins)
    run.apply(("increment", date(2024, 10, 2), [moved, stays]))
    assert actual_marts(settings_) == marts


def test_dimensions_follow_a_correction_that_reassigns_a_line(
    make_database, use_database, tmp_path: Path
) -> None:
    """The issue's case: day 1 names customer 1 "Анна", day 2 "Анна-2"; day 2 is reloaded
    with its line reassigned to customer 2 (another item and city too): customer 1 is
    "Анна" again, exactly as a fresh build from the same staging gives."""
    run = History.new(make_database, use_database, tmp_path)
    settings_ = run.settings
    first = Line("line-0", 9, 1, 0, 1, 1, 1, Decimal("10.00"), "shipped")
    second = Line("line-1", 9, 1, 1, 1, 1, 1, Decimal("20.00"), "shipped")
    run.apply(("increment", date(2024, 10, 1), [first]))
    run.apply(("increment", date(2024, 10, 2), [second]))
    assert query(settings_, "select first_name from mart.d_customer where customer_id = 1") == [
        ("Анна-2",)
    ]
    reassigned = Line("line-1", 9, 2, 0, 2, 2, 1, Decimal("20.00"), "shipped")
    run.apply(("increment", date(2024, 10, 2), [reassigned]))
    marts = actual_marts(settings_)
    assert marts == expected_marts(settings_, run.built_weeks)
    assert marts["d_customer"] == [(1, "Анна", "Иванова", 1), (2, "Борис", "Петров", 2)]
    assert marts["d_item"] == [(1, "Молоко 3%"), (2, "Хлеб")]
    assert marts["d_city"] == [(1, "Москва"), (2, "Ростов")]
