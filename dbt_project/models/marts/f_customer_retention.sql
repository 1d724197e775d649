{{
    config(
        unique_key=['period_name', 'period_id', 'item_id'],
        period_grain='week',
        period_column='period_id',
        period_column_kind='iso_week',
        indexes=[
            {'columns': ['period_name', 'period_id', 'item_id'], 'unique': true},
            {'columns': ['period_id']},
        ],
    )
}}

{#-
    New / returning are decided per customer over the whole ISO week across all items
    (exactly one shipped line = new, two or more = returning), then counted under every
    item the customer bought that week. Revenue counts shipped lines only.
-#}

with

sales as (

    select * from {{ ref('f_sales') }}
    where {{ period_filter('date_id', 'week', 'date_id') }}

),

sales_in_weeks as (

    select
        to_char(to_date(date_id::text, 'YYYYMMDD'), 'IYYY-"W"IW') as period_id,
        date_trunc('week', to_date(date_id::text, 'YYYYMMDD'))::date as period_start,
        customer_id,
        item_id,
        status,
        payment_amount

    from sales

),

customer_weeks as (

    select
        period_id,
        customer_id,
        count(*) filter (where status = 'shipped') as shipped_lines

    from sales_in_weeks
    group by period_id, customer_id

),

classified as (

    select
        sales_in_weeks.*,
        case
            when customer_weeks.shipped_lines = 1 then 'new'
            when customer_weeks.shipped_lines >= 2 then 'returning'
        end as customer_kind

    from sales_in_weeks
    inner join customer_weeks
        on
            sales_in_weeks.period_id = customer_weeks.period_id
            and sales_in_weeks.customer_id = customer_weeks.customer_id

),

final as (

    select
        'weekly'::text as period_name,
        period_id,
        period_start,
        (period_start + 6)::date as period_end,
        item_id,
        count(distinct customer_id) filter (
            where status = 'shipped' and customer_kind = 'new'
        )::int as new_customers_count,
        count(distinct customer_id) filter (
            where status = 'shipped' and customer_kind = 'returning'
        )::int as returning_customers_count,
        count(distinct customer_id) filter (
            where status = 'refunded'
        )::int as refunded_customer_count,
        coalesce(sum(payment_amount) filter (
            where status = 'shipped' and customer_kind = 'new'
        ), 0)::numeric(18, 2) as new_customers_revenue,
        coalesce(sum(payment_amount) filter (
            where status = 'shipped' and customer_kind = 'returning'
        ), 0)::numeric(18, 2) as returning_customers_revenue,
        count(*) filter (where status = 'refunded')::int as customers_refunded

    from classified
    group by period_id, period_start, item_id

)

select * from final
