{#
    Narrow generic tests to the period being built. dbt renders a test's `where` config
    at parse time, without project macros, so instead a test declares

        config:
          meta:
            period_filter: {column: ordered_at, grain: day, kind: timestamp}

    and this override of dbt's `get_where_subquery` turns it into the same predicate the
    models use (macro `period_filter`), combined with any plain `where`. Without the
    `day` / `week_start` variable the predicate is `true` and the test sees every row.
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- set period = (config.get('meta') or {}).get('period_filter') -%}
    {%- set predicates = [] -%}
    {%- if where -%}
        {%- do predicates.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- if period -%}
        {%- do predicates.append('(' ~ period_filter(period['column'], period['grain'], period.get('kind', 'date')) ~ ')') -%}
    {%- endif -%}
    {%- if predicates -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ predicates | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
