{{
    config(
        unique_key='period_start',
        period_grain='week',
        period_column='period_start',
        indexes=[{'columns': ['period_start'], 'unique': true}],
        grants={'+select': ['retail_loader']},
    )
}}

{#-
    The weeks this build of f_customer_retention covered: the requested weeks, also those
    with no orders (from the calendar), or unnarrowed every week the mart holds.
    retail_loader reads it (the rebuild planner rebuilds a built week when a day changes).
-#}

with

retention as (

    select * from {{ ref('f_customer_retention') }}
    where {{ period_filter('period_id', 'week', 'iso_week') }}

),

calendar as (

    select * from {{ ref('d_calendar') }}
    where {{ 'false' if period_bounds('week') is none else period_filter('date_actual', 'week') }}

),

weeks as (

    select period_start from retention
    union
    select first_day_of_week as period_start from calendar

),

final as (

    select
        weeks.period_start,
        to_char(weeks.period_start, 'IYYY-"W"IW') as period_id,
        (weeks.period_start + 6)::date as period_end,
        count(retention.item_id)::int as item_count,
        now() as built_at

    from weeks
    left join retention
        on weeks.period_start = retention.period_start
    group by weeks.period_start

)

select * from final
