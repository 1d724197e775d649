{#
    The periods a build is narrowed to: the variable `day` (grain day) or `week_start`
    (grain week, Mondays), else the environment variable RETAIL_DAY / RETAIL_WEEK_START,
    read only while executing so that a new value keeps dbt's partial parse (the CLI and
    the DAG pass periods that way). A value is a date, a range START..END, or a
    comma-separated list of both; unset or null means every period.
#}

{% macro period_bounds(grain) -%}
    {#- none (every period), or the (first day, last day) of each requested period -#}
    {%- set name = 'day' if grain == 'day' else 'week_start' -%}
    {%- set label, raw = 'var ' ~ name, var(name, '<unset>') -%}
    {%- if raw == '<unset>' and execute -%}
        {%- set label = 'env RETAIL_' ~ name | upper -%}
        {%- set raw = env_var(label[4:], '<unset>') -%}
    {%- endif -%}
    {%- if raw is none or raw == '<unset>' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set text = raw | join(',') if raw is iterable and raw is not string else raw | string -%}
    {%- set fail = label ~ "='" ~ raw ~ "': " -%}
    {%- set usage = ' (YYYY-MM-DD, a range START..END or a comma-separated list; unset or null for every ' ~ grain ~ ')' -%}
    {%- set periods = [] -%}
    {%- for part in text.split(',') if part.strip() -%}
        {%- set bounds = [] -%}
        {%- for bound in part.split('..') | map('trim') -%}
            {%- set ymd = modules.re.fullmatch('([1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([ T]00:00:00)?', bound) -%}
            {#- the day-th day of the month, unless that runs into the next month (02-30) -#}
            {%- set day = ymd and modules.datetime.date(ymd.group(1) | int, ymd.group(2) | int, 1)
                + modules.datetime.timedelta(days=(ymd.group(3) | int) - 1) -%}
            {%- if not ymd or day.month != ymd.group(2) | int -%}
                {%- do exceptions.raise_compiler_error(fail ~ "'" ~ bound ~ "' is not a calendar date" ~ usage) -%}
            {%- elif grain == 'week' and day.isoweekday() != 1 -%}
                {%- do exceptions.raise_compiler_error(fail ~ day ~ ' is a ' ~ day.strftime('%A') ~ ', not a Monday: weeks are ISO weeks') -%}
            {%- endif -%}
            {%- do bounds.append(day) -%}
        {%- endfor -%}
        {%- if bounds | length > 2 or bounds[0] > bounds[-1] -%}
            {%- do exceptions.raise_compiler_error(fail ~ "'" ~ part ~ "' is not an ordered range START..END" ~ usage) -%}
        {%- endif -%}
        {%- do periods.append((bounds[0], bounds[-1] + modules.datetime.timedelta(days=6 if grain == 'week' else 0))) -%}
    {%- endfor -%}
    {%- if not periods -%}
        {%- do exceptions.raise_compiler_error(label ~ ' is empty' ~ usage) -%}
    {%- endif -%}
    {{ return(periods) }}
{%- endmacro %}


{% macro period_filter(column, grain, kind='date') -%}
    {#- `column` (a date or timestamp; kind date_id: YYYYMMDD; kind iso_week: 'IYYY-"W"IW')
        within the requested periods, as ranges an index serves; true when not narrowed -#}
    {%- set periods = period_bounds(grain) -%}
    {%- if periods is none -%}
        true
    {%- else -%}
        ({% for first, last in periods %}{{ ' or ' if not loop.first }}
        {%- if kind == 'date_id' -%}
            ({{ column }} between {{ first.strftime('%Y%m%d') }} and {{ last.strftime('%Y%m%d') }})
        {%- elif kind == 'iso_week' -%}
            ({{ column }} between '{{ first.strftime('%G-W%V') }}' and '{{ last.strftime('%G-W%V') }}')
        {%- else -%}
            ({{ column }} >= '{{ first }}' and {{ column }} < '{{ last + modules.datetime.timedelta(days=1) }}')
        {%- endif -%}
        {%- endfor %})
    {%- endif -%}
{%- endmacro %}


{% macro get_incremental_period_delete_insert_sql(arg_dict) -%}
    {#- Incremental strategy `period_delete+insert`, in the model's transaction: delete the
        requested periods (unnarrowed: the periods of the new rows) and any row whose key
        comes back, then insert the new rows. Unlike dbt's delete+insert, a period whose
        input became empty loses its rows, and a key moved from another period is not
        duplicated. Model config: period_grain (day or week), period_column and
        period_column_kind (as in period_filter). Only the model's columns are inserted,
        so a legacy extra column (f_sales.id serial) takes its default. -#}
    {%- set target, source = arg_dict['target_relation'], arg_dict['temp_relation'] -%}
    {%- set grain, column = config.require('period_grain'), config.require('period_column') -%}
    {%- set key = arg_dict['unique_key'] if arg_dict['unique_key'] is string else arg_dict['unique_key'] | join(', ') -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target }} where
    {%- if period_bounds(grain) is none %} {{ column }} in (select {{ column }} from {{ source }})
    {%- else %} {{ period_filter(column, grain, config.get('period_column_kind', 'date')) }}
    {%- endif %};
    {#- a statement of its own: `or` in one delete would defeat the indexes #}
    delete from {{ target }} where ({{ key }}) in (select {{ key }} from {{ source }});
    insert into {{ target }} ({{ columns }}) select {{ columns }} from {{ source }}
{%- endmacro %}
