"""Versioned SQL migrations (``migrations/NNNN_name.sql``), applied in order, once per
deployment, and recorded in ``staging.schema_migrations``. 0001 creates the course's
legacy tables only if missing, so a fresh database and a legacy deployment take the same
path. An advisory lock serialises concurrent runs; each migration commits with its
record, so a failure leaves the previous version. A migration that changes a column a
user's view reads runs again with those views recreated in its transaction. Applying
takes a superuser; checking that nothing is pending only reads ``schema_migrations``."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import errors, sql
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from psycopg2.extensions import connection as Connection

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<slug>[a-z0-9_]+)\.sql$")

# Arbitrary but fixed: the advisory lock key every migrate() run agrees on.
MIGRATION_LOCK_KEY = 7_301_554_210_001

# Checksums of earlier versions of a migration that deployments applied, which stay
# valid: 0003 kept the lowest `id` of repeated legacy rows, its revision keeps the highest
# and sets the other versions aside. A deployment that applied the earlier one has no
# legacy row left to redo it on.
EARLIER_VERSIONS = {
    "0003": {"5cc862ed2fef2484ec2965f134bfff51984d7b55fd318693c26b9621a6357754"},
}

# Every view that reads a staging or mart table, directly or through other views, with
# the statements that recreate it as it is; the views it reads come first.
DEPENDENT_VIEWS_SQL = """
with recursive dependent (oid, depth) as (
    select rewrite.ev_class, 1
    from pg_depend as dep
    inner join pg_rewrite as rewrite on dep.objid = rewrite.oid
    inner join pg_class as source on dep.refobjid = source.oid
    inner join pg_namespace as namespace on source.relnamespace = namespace.oid
    where
        dep.classid = 'pg_rewrite'::regclass and rewrite.ev_class <> dep.refobjid
        and namespace.nspname in ('staging', 'mart') and source.relkind in ('r', 'p')
    union all
    select rewrite.ev_class, dependent.depth + 1
    from dependent
    inner join pg_depend as dep on dep.refobjid = dependent.oid
    inner join pg_rewrite as rewrite on dep.objid = rewrite.oid
    where dep.classid = 'pg_rewrite'::regclass and rewrite.ev_class <> dependent.oid
)
select
    (select nspname from pg_namespace where oid = v.relnamespace),
    v.relname,
    format('create view %s%s as %s', v.oid::regclass,
        ' with (' || array_to_string(v.reloptions, ', ') || ')', pg_get_viewdef(v.oid))
    || format(' alter view %s owner to %I;', v.oid::regclass, pg_get_userbyid(v.relowner))
    || format(' comment on view %s is %L;', v.oid::regclass, obj_description(v.oid, 'pg_class'))
    || coalesce((
        select string_agg(format(' grant %s on %s to %s%s;', acl.privilege_type, v.oid::regclass,
            coalesce(quote_ident(pg_get_userbyid(nullif(acl.grantee, 0))), 'public'),
            case when acl.is_grantable then ' with grant option' end), '')
        from aclexplode(v.relacl) as acl
        where acl.grantee <> v.relowner
    ), '')
from dependent
inner join pg_class as v on dependent.oid = v.oid
where v.relkind = 'v'
group by v.oid
order by max(dependent.depth)
"""

BOOTSTRAP_SQL = """
create schema if not exists staging;
create table if not exists staging.schema_migrations (
    version text primary key,
    name text not null,
    checksum text not null,
    applied_at timestamptz not null default now()
);
"""


class MigrationError(RuntimeError):
    """A migration failed; the message names it and the database error."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: ``version`` orders it, ``name`` (file stem) is what gets reported."""

    version: str
    name: str
    sql: str
    checksum: str


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order; a stray name or a shared version is an error."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        if not (match := MIGRATION_FILE.match(path.name)):
            raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        if migrations and migrations[-1].version == match["version"]:
            raise MigrationError(f"{path} shares version {match['version']} with another file")
        text = path.read_bytes()
        digest = hashlib.sha256(text).hexdigest()
        migrations.append(Migration(match["version"], path.stem, text.decode(), digest))
    return migrations


def migrate(conn: Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration and return the names applied (empty when up to date).

    ``conn`` must not be inside a transaction: each migration commits on its own.
    """
    if conn.get_transaction_status() != TRANSACTION_STATUS_IDLE:
        raise MigrationError("migrate() needs a connection with no open transaction")
    migrations = discover(directory)
    conn.autocommit = False
    with conn.cursor() as cur:
        # Session-level lock: held across the per-migration commits below.
        cur.execute("select pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    conn.commit()
    try:
        return _apply_pending(conn, migrations)
    finally:
        if conn.get_transaction_status() != TRANSACTION_STATUS_IDLE:
            conn.rollback()
        with conn.cursor() as cur:
            cur.execute("select pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        conn.commit()


def _apply_pending(conn: Connection, migrations: list[Migration]) -> list[str]:
    with conn.cursor() as cur:
        # Only when missing: creating (even "if not exists") needs CREATE privileges that
        # the loader's role does not have, and `run` checks the migrations as that role.
        cur.execute("select to_regclass('staging.schema_migrations')")
        if cur.fetchone()[0] is None:
            cur.execute(BOOTSTRAP_SQL)
        cur.execute("select version, checksum from staging.schema_migrations")
        applied = dict(cur.fetchall())
    conn.commit()

    names: list[str] = []
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None:
            earlier = EARLIER_VERSIONS.get(migration.version, set())
            if recorded != migration.checksum and recorded not in earlier:
                log.warning("migration %s changed after it was applied; not re-running it"
                            " (add a new migration instead)", migration.name)  # fmt: skip
            continue
        _apply_one(conn, migration)
        names.append(migration.name)
    if names:
        log.info("staging schema migrated: %s", ", ".join(names))
    else:
        log.info("staging schema up to date (%d migrations)", len(migrations))
    return names


def _apply_one(conn: Connection, migration: Migration) -> None:
    """Run one migration and record it, in one transaction; log its notices.

    A migration that fails because views read what it changes ("cannot alter type of a
    column used by a view", "other objects depend on it") runs again with them set aside.
    """
    try:
        try:
            _run(conn, migration, set_aside_views=False)
        except (errors.FeatureNotSupported, errors.DependentObjectsStillExist) as exc:
            conn.rollback()
            log.info("%s: %s; running it again with the views set aside", migration.name, exc)
            _run(conn, migration, set_aside_views=True)
        conn.commit()
    except Exception as exc:
        conn.rollback()
        raise MigrationError(
            f"migration {migration.name} failed and was rolled back: {exc}"
        ) from exc
    log.info("applied migration %s", migration.name)


def _run(conn: Connection, migration: Migration, *, set_aside_views: bool) -> None:
    """The migration and its record, uncommitted; its notices logged once it succeeded."""
    del conn.notices[:]
    views: list[tuple[str, str, str]] = []
    with conn.cursor() as cur:
        if set_aside_views:
            # names schema-qualified, in the views' definitions too
            cur.execute("set local search_path = pg_catalog")
            cur.execute(DEPENDENT_VIEWS_SQL)
            views = cur.fetchall()
            cur.execute("reset search_path")
            if views:
                names = [sql.Identifier(schema, name) for schema, name, _ in views]
                cur.execute(sql.SQL("drop view {}").format(sql.SQL(", ").join(names)))
        cur.execute(migration.sql)
        for schema, name, recreate in views:
            try:
                cur.execute(recreate)
            except psycopg2.Error as exc:
                raise MigrationError(f"view {schema}.{name} could not be recreated: {exc}") from exc
        cur.execute(
            "insert into staging.schema_migrations (version, name, checksum) values (%s, %s, %s)",
            (migration.version, migration.name, migration.checksum),
        )
    for notice in conn.notices:
        severity, _, text = notice.strip().splitlines()[0].partition(":  ")
        # `create ... if not exists` on a legacy deployment is expected, not news.
        level = logging.DEBUG if text.endswith(", skipping") else logging.INFO
        log.log(logging.WARNING if severity == "WARNING" else level, "%s: %s", migration.name, text)
    del conn.notices[:]
    if views:
        recreated = ", ".join(f"{schema}.{name}" for schema, name, _ in views)
        log.info("%s: recreated the views %s", migration.name, recreated)
