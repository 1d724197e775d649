{#
    Post-hook of f_customer_retention: remember every ISO week a build covered, also the
    weeks that came out empty (they have no rows, so the mart alone cannot tell "built,
    empty" from "never built"). The rebuild planner (ingestion.pipeline.rebuild_plan)
    rebuilds a built week whenever a load changes one of its days, so a week, once
    published, never keeps stale rows. Runs in the model's transaction.
#}
{% macro record_built_weeks() -%}
    {%- set weeks = adapter.quote(this.schema) ~ '.' ~ adapter.quote('f_customer_retention_weeks') -%}
    create table if not exists {{ weeks }} (
        period_start date primary key,
        built_at timestamptz not null default now()
    );
    {%- set periods = incremental_period('week') %}
    insert into {{ weeks }} (period_start)
    {%- if periods is none %}
    select distinct period_start from {{ this }}
    {%- else %}
    {%- for period in periods %}
    {{ 'union all' if not loop.first }}
    select monday::date
    from generate_series(
        date '{{ period['start'].isoformat() }}',
        date '{{ period['end'].isoformat() }}' - 6,
        interval '7 days'
    ) as monday
    {%- endfor %}
    {%- endif %}
    on conflict (period_start) do update set built_at = now()
{%- endmacro %}
