{#
    Period logic shared by the per-day and per-week incremental marts.

    A build narrowed by `--vars '{day: 2024-10-01}'` (grain `day`) or
    `--vars '{week_start: 2024-09-30}'` (grain `week`, a Monday) reads only that
    period's input and replaces only that period's rows; `START..END` narrows to an
    inclusive range of days or weeks, and a comma-separated list to several (the days
    a correction touched). Without the variable the build covers every period present
    in its input. The CLI and the DAG pass the same value in the environment variables
    RETAIL_DAY / RETAIL_WEEK_START instead (read at execution time, when the variable
    is not set): a new value of --vars makes dbt re-parse the whole project, an
    environment variable read only while executing does not (README, "dbt").
#}

{% macro incremental_period(grain) -%}
    {#-
        Returns none (no narrowing) or the list of periods to build for `grain`, each
        {'start': date, 'end': date}, sorted and merged. The variable (`day` for grain
        `day`, `week_start` for grain `week`) holds one date, an inclusive range
        `START..END`, or a comma-separated list of both (a YAML list works too):
        `day: 2024-10-01`, `day: 2024-09-08..2024-10-06`,
        `day: '2024-09-03,2024-10-01..2024-10-02'`, `week_start: 2024-09-30` (Mondays).
        Unset or null means every period; anything else that is not such a list of
        real calendar dates (empty, 'None', 2024-02-30) is an error naming the variable.
    -#}
    {%- if grain == 'day' -%}
        {%- set var_name = 'day' -%}
    {%- elif grain == 'week' -%}
        {%- set var_name = 'week_start' -%}
    {%- else -%}
        {%- do exceptions.raise_compiler_error("incremental_period: unknown grain '" ~ grain ~ "' (day or week)") -%}
    {%- endif -%}
    {%- set raw = var(var_name, '<unset>') -%}
    {%- set label = 'var ' ~ var_name -%}
    {%- if raw == '<unset>' and execute -%}
        {#- The CLI and the DAG pass the period as RETAIL_DAY / RETAIL_WEEK_START: any
            change of --vars makes dbt re-parse the whole project (seconds per build);
            an environment variable read only at execution time does not. A variable
            set, even to null (the unit tests' overrides), wins. -#}
        {%- set env_name = 'RETAIL_' ~ (var_name | upper) -%}
        {%- set raw = env_var(env_name, '<unset>') -%}
        {%- set label = 'env ' ~ env_name -%}
    {%- endif -%}
    {%- set raw = none if raw == '<unset>' else raw -%}
    {%- if raw is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set usage = " (expected YYYY-MM-DD, a range YYYY-MM-DD..YYYY-MM-DD or a comma-separated list of them; leave it unset or null to build every "
        ~ grain ~ ")" -%}
    {%- set parts = [] -%}
    {%- for item in (raw if raw is sequence and raw is not string else [raw]) -%}
        {%- for part in (item | string).split(',') -%}
            {%- do parts.append(part | trim) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if parts | select | list | length == 0 -%}
        {%- do exceptions.raise_compiler_error(label ~ " is empty" ~ usage) -%}
    {%- endif -%}
    {%- set periods = [] -%}
    {%- for part in parts -%}
        {%- set bounds = [] -%}
        {%- for text in part.split('..') -%}
            {%- do bounds.append(calendar_date(text | trim, label, raw, usage)) -%}
        {%- endfor -%}
        {%- if bounds | length > 2 or bounds[0] > bounds[-1] -%}
            {%- do exceptions.raise_compiler_error(label ~ "='" ~ raw ~ "': '" ~ part ~ "' is not an ordered range START..END" ~ usage) -%}
        {%- endif -%}
        {%- if grain == 'week' -%}
            {%- for bound in bounds if bound.isoweekday() != 1 -%}
                {%- do exceptions.raise_compiler_error(
                    label ~ "='" ~ raw ~ "': " ~ bound.isoformat() ~ " is a " ~ bound.strftime('%A')
                    ~ ", not a Monday: f_customer_retention is built per ISO week (Monday to Sunday)"
                ) -%}
            {%- endfor -%}
            {%- do periods.append({'start': bounds[0], 'end': bounds[-1] + modules.datetime.timedelta(days=6)}) -%}
        {%- else -%}
            {%- do periods.append({'start': bounds[0], 'end': bounds[-1]}) -%}
        {%- endif -%}
    {%- endfor -%}
    {#- sorted, and overlapping or adjacent periods merged, so each row is deleted once -#}
    {%- set merged = [] -%}
    {%- for period in periods | sort(attribute='start') -%}
        {%- if merged and period['start'] <= merged[-1]['end'] + modules.datetime.timedelta(days=1) -%}
            {%- if period['end'] > merged[-1]['end'] -%}
                {%- do merged[-1].update({'end': period['end']}) -%}
            {%- endif -%}
        {%- else -%}
            {%- do merged.append({'start': period['start'], 'end': period['end']}) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(merged) }}
{%- endmacro %}


{% macro calendar_date(text, label, raw, usage) -%}
    {#- `text` as a date when it is a real calendar day YYYY-MM-DD (a ' 00:00:00' or
        'T00:00:00' suffix is accepted: YAML and Airflow write dates so), else an error. -#}
    {%- set match = modules.re.match('^([0-9]{4})-([0-9]{2})-([0-9]{2})([ T]00:00:00)?$', text) -%}
    {%- if match -%}
        {%- set year, month, day = match.group(1) | int, match.group(2) | int, match.group(3) | int -%}
        {%- if year >= 1 and 1 <= month <= 12 -%}
            {%- set next_month = modules.datetime.date(year + (month // 12), month % 12 + 1, 1) -%}
            {%- if 1 <= day <= (next_month - modules.datetime.timedelta(days=1)).day -%}
                {{ return(modules.datetime.date(year, month, day)) }}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
    {%- do exceptions.raise_compiler_error(label ~ "='" ~ raw ~ "': '" ~ text ~ "' is not a calendar date" ~ usage) -%}
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
    {#- Predicate narrowing `column` to the requested periods; `true` when not narrowed. -#}
    {%- set periods = incremental_period(grain) -%}
    {%- if periods is none -%}
        true
    {%- else -%}
        ({%- for period in periods -%}
        {%- if not loop.first %} or {% endif -%}
        {%- if kind == 'timestamp' -%}
        {#- half-open range, so an index on the timestamp column is usable -#}
        ({{ column }} >= timestamp '{{ period['start'].isoformat() }}'
        and {{ column }} < timestamp '{{ (period['end'] + modules.datetime.timedelta(days=1)).isoformat() }}')
        {%- else -%}
        ({{ column }} between {{ period_literal(period['start'], kind) }} and {{ period_literal(period['end'], kind) }})
        {%- endif -%}
        {%- endfor -%})
    {%- endif -%}
{%- endmacro %}


{% macro get_incremental_period_delete_insert_sql(arg_dict) -%}
    {#-
        Custom incremental strategy `period_delete+insert` (dbt maps a strategy name to
        the macro get_incremental_<name>_sql, `+` read as `_`): delete the period, then
        insert the new rows. Both statements run in the model's transaction (the incremental
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
