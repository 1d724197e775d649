{#
    dbt-postgres lists a schema's relations, then their view dependencies (pg_depend) in a
    second query. A relation created in between by a concurrent dbt invocation (another
    build's `__dbt_backup` of a view) enters dbt's relation cache as a dummy of type
    "external", and the materialization's clean-up before the model's pre-hook then sent
    `drop external if exists ...`, a syntax error (seen with two builds of the same day
    at once, tests/dbt/test_build_lock.py). Such a relation is dropped here as whatever
    kind it is by then, or not at all if it is gone; every other drop is dbt's own.
#}
{% macro postgres__get_drop_sql(relation) -%}
    {%- if relation.type == 'external' -%}
    do $drop$
    declare
        kind "char";
    begin
        select cls.relkind into kind
        from pg_class as cls
        join pg_namespace as nsp on nsp.oid = cls.relnamespace
        where nsp.nspname = {{ dbt.string_literal(relation.schema) }}
            and cls.relname = {{ dbt.string_literal(relation.identifier) }};
        if kind = 'v' then
            execute format('drop view if exists %I.%I cascade', {{ dbt.string_literal(relation.schema) }}, {{ dbt.string_literal(relation.identifier) }});
        elsif kind = 'm' then
            execute format('drop materialized view if exists %I.%I cascade', {{ dbt.string_literal(relation.schema) }}, {{ dbt.string_literal(relation.identifier) }});
        elsif kind in ('r', 'p') then
            execute format('drop table if exists %I.%I cascade', {{ dbt.string_literal(relation.schema) }}, {{ dbt.string_literal(relation.identifier) }});
        end if;
    end
    $drop$
    {%- else -%}
    {{ dbt.default__get_drop_sql(relation) }}
    {%- endif -%}
{%- endmacro %}
