{#
    Period logic shared by the per-day and per-week incremental marts.

    A build narrowed by `--vars '{day: 2024-10-01}'` (grain `day`) or
    `--vars '{week_start: 2024-09-30}'` (grain `week`, a Monday) reads only that
    period's input and replaces only that period's rows; `START..END` narrows to an
    inclusive range of days or weeks. Without the variable the build covers every
    period present in its input.
#}

{% macro incremental_period(grain) -%}
    {#-
        Returns none (no narrowing) or {'start': date, 'end': date} for `grain`.
        A variable holds one date or an inclusive range `START..END` (a backfill in one
        build): `day: 2024-10-01`, `day: 2024-09-08..2024-10-06`,
        `week_start: 2024-09-30`, `week_start: 2024-09-02..2024-09-30` (Mondays).
    -#}
    {%- if grain == 'day' -%}
        {%- set var_name = 'day' -%}
    {%- elif grain == 'week' -%}
        {%- set var_name = 'week_start' -%}
    {%- else -%}
        {%- do exceptions.raise_compiler_error("incremental_period: unknown grain '" ~ grain ~ "' (day or week)") -%}
    {%- endif -%}
    {%- set raw = var(var_name, none) -%}
    {%- if raw is none or (raw | string | trim) in ('', 'None', 'none', 'null') -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set text = raw | string | trim -%}
    {%- set bounds = [] -%}
    {%- for part in text.split('..') -%}
        {%- set part = part | trim -%}
        {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', part[:10]) or part[10:] not in ('', ' 00:00:00', 'T00:00:00') -%}
            {%- do exceptions.raise_compiler_error("var " ~ var_name ~ "='" ~ raw ~ "' is not a date YYYY-MM-DD or a range YYYY-MM-DD..YYYY-MM-DD") -%}
        {%- endif -%}
        {%- do bounds.append(modules.datetime.datetime.strptime(part[:10], '%Y-%m-%d').date()) -%}
    {%- endfor -%}
    {%- if bounds | length > 2 or bounds[0] > bounds[-1] -%}
        {%- do exceptions.raise_compiler_error("var " ~ var_name ~ "='" ~ raw ~ "' is not an ordered range START..END") -%}
    {%- endif -%}
    {%- if grain == 'week' -%}
        {%- for bound in bounds if bound.isoweekday() != 1 -%}
            {%- do exceptions.raise_compiler_error(
                "var week_start='" ~ text ~ "': " ~ bound.isoformat() ~ " is a " ~ bound.strftime('%A')
                ~ ", not a Monday: f_customer_retention is built per ISO week (Monday to Sunday)"
            ) -%}
        {%- endfor -%}
        {{ return({'start': bounds[0], 'end': bounds[-1] + modules.datetime.timedelta(days=6)}) }}
    {%- endif -%}
    {{ return({'start': bounds[0], 'end': bounds[-1]}) }}
{%- endmacro %}


{% macro period_literal(value, kind) -%}
    {#- A date rendered as a SQL literal of the column kind it is compared with. -#}
    {%- if kind == 'date' -%}
        date '{{ value.isoformat() }}'
    {%- elif kind == 'date_id' -%}
        {{ value.strftime('%Y%m%d') }}
    {%- elif kind == 'iso_week' -%}
        '{{ value.strftime('%G-W%V') }}'
    {%- else -%}
        {%- do exceptions.raise_compiler_error("period_literal: unknown kind '" ~ kind ~ "'") -%}
    {%- endif -%}
{%- endmacro %}


{% macro period_filter(column, grain, kind='date') -%}
    {#- Predicate narrowing `column` to the requested period; `true` when not narrowed. -#}
    {%- set period = incremental_period(grain) -%}
    {%- if period is none -%}
        true
    {%- elif kind == 'timestamp' -%}
        {#- half-open range, so an index on the timestamp column is usable -#}
        ({{ column }} >= timestamp '{{ period['start'].isoformat() }}'
        and {{ column }} < timestamp '{{ (period['end'] + modules.datetime.timedelta(days=1)).isoformat() }}')
    {%- else -%}
        {{ column }} between {{ period_literal(period['start'], kind) }} and {{ period_literal(period['end'], kind) }}
    {%- endif -%}
{%- endmacro %}


{% macro get_incremental_period_replace_sql(arg_dict) -%}
    {#-
        Custom incremental strategy `period_replace`: delete the period, then insert
        the new rows. Both statements run in the model's transaction (the incremental
        materialization commits once after `main`), so readers see the old period or
        the new one, never a partial one.

        dbt-postgres `delete+insert` only deletes keys present in the new batch, so a
        period whose input became empty would keep stale rows; here the delete is on
        the requested period itself. Without a narrowing variable, the periods present
        in the new batch are replaced and older periods (e.g. legacy history) are kept.

        Model config: period_grain ('day' | 'week'), period_column (column of the
        target), period_column_kind ('date' | 'timestamp' | 'date_id' | 'iso_week').
        Rows of other periods whose `unique_key` comes back in the batch are deleted too
        (an order line re-dated in staging moves instead of being duplicated).
        The insert lists the model's columns only (on_schema_change must not be
        'ignore'), so extra target columns such as a legacy `id serial` take defaults.
    -#}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set grain = config.require('period_grain') -%}
    {%- set column = adapter.quote(config.require('period_column')) -%}
    {%- set kind = config.get('period_column_kind', 'date') -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set key_columns = [unique_key] if unique_key is string else (unique_key or []) -%}
    {%- set key_csv = key_columns | map('string') | map('trim') | join(', ') -%}
    {%- set dest_cols_csv = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}

    {#- Two deletes, not one with `or`: `period or key in (subquery)` cannot use an index
        and would scan the whole table, making every build's cost grow with history. #}
    delete from {{ target }}
    where
    {%- if incremental_period(grain) is none %}
        {{ column }} in (select distinct {{ column }} from {{ source }})
    {%- else %}
        {{ period_filter(column, grain, kind) }}
    {%- endif %}
    {%- for predicate in arg_dict['incremental_predicates'] or [] %}
        and {{ predicate }}
    {%- endfor %};

    {%- if unique_key %}
    {#- a key that moved from another period (staging re-dated it) must not stay twice #}
    delete from {{ target }}
    where ({{ key_csv }}) in (select {{ key_csv }} from {{ source }})
    {%- for predicate in arg_dict['incremental_predicates'] or [] %}
        and {{ predicate }}
    {%- endfor %};
    {%- endif %}

    insert into {{ target }} ({{ dest_cols_csv }})
    select {{ dest_cols_csv }}
    from {{ source }};
{%- endmacro %}
