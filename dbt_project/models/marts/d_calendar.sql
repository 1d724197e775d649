{{ config(materialized='table', indexes=[{'columns': ['date_id'], 'unique': true}]) }}

with

days as (

    select calendar_day::date as date_actual
    from generate_series(
        date '{{ var("calendar_start") }}',
        date '{{ var("calendar_end") }}',
        interval '1 day'
    ) as calendar_day

),

final as (

    select
        to_char(date_actual, 'YYYYMMDD')::int as date_id,
        date_actual,
        extract(isodow from date_actual)::int as day_of_week,
        trim(to_char(date_actual, 'Day')) as day_name,
        extract(day from date_actual)::int as day_of_month,
        extract(doy from date_actual)::int as day_of_year,
        extract(week from date_actual)::int as week_of_year,
        extract(isoyear from date_actual)::int as iso_year,
        to_char(date_actual, 'IYYY-"W"IW') as week_of_year_iso,
        date_trunc('week', date_actual)::date as first_day_of_week,
        (date_trunc('week', date_actual) + interval '6 days')::date as last_day_of_week,
        extract(month from date_actual)::int as month_actual,
        trim(to_char(date_actual, 'Month')) as month_full_name,
        date_trunc('month', date_actual)::date as first_day_of_month,
        (date_trunc('month', date_actual) + interval '1 month - 1 day')::date as last_day_of_month,
        extract(quarter from date_actual)::int as quarter_actual,
        extract(year from date_actual)::int as year_actual,
        extract(isodow from date_actual) in (6, 7) as is_weekend,
        -- the course's legacy d_calendar columns, kept so old queries still run
        date_actual as fact_date,
        extract(day from date_actual)::int as day_num,
        extract(month from date_actual)::int as month_num,
        -- as the legacy deployment filled it: the English abbreviation ('Sep'), which
        -- its varchar(8) column could hold ('September' could not); 'Mon' ignores lc_time
        to_char(date_actual, 'Mon')::varchar(8) as month_name,
        extract(year from date_actual)::int as year_num

    from days

)

select * from final
