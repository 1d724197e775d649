-- Per ISO week, new + returning revenue of f_customer_retention equals the shipped
-- revenue of f_sales (every shipped line belongs to a new or a returning customer).
-- Checks the `week_start` weeks when given (a week just built must match, also when
-- one side is empty), else every week the retention mart holds: weeks are built once
-- complete, so the current week's f_sales days have no retention rows yet.

with

sales_weeks as (

    select
        to_char(to_date(date_id::text, 'YYYYMMDD'), 'IYYY-"W"IW') as period_id,
        sum(payment_amount) filter (where status = 'shipped') as shipped_revenue
    from {{ ref('f_sales') }}
    where {{ period_filter('date_id', 'week', 'date_id') }}
    group by period_id

),

retention_weeks as (

    select
        period_id,
        sum(new_customers_revenue + returning_customers_revenue) as retention_revenue
    from {{ ref('f_customer_retention') }}
    where {{ period_filter('period_id', 'week', 'iso_week') }}
    group by period_id

),

final as (

    select
        coalesce(sales_weeks.period_id, retention_weeks.period_id) as period_id,
        coalesce(sales_weeks.shipped_revenue, 0) as shipped_revenue,
        coalesce(retention_weeks.retention_revenue, 0) as retention_revenue
    from sales_weeks
    full outer join retention_weeks
        on sales_weeks.period_id = retention_weeks.period_id
    where
        coalesce(sales_weeks.shipped_revenue, 0)
        <> coalesce(retention_weeks.retention_revenue, 0)
        {%- set only_held_weeks = period_bounds('week') is none %}
        and {{ 'retention_weeks.period_id is not null' if only_held_weeks else 'true' }}

)

select * from final
