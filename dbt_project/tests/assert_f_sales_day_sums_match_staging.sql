-- Per day, the signed sum of f_sales (refunds negative) equals the signed sum of the
-- de-duplicated staging order lines, for every day staging holds (or the `day` built).
-- Returns the days that differ.

with

staging_lines as (

    select distinct on (uniq_id)
        uniq_id,
        date_id,
        case when status = 'refunded' then -payment_amount else payment_amount end as signed_amount
    from {{ ref('stg_report_api__user_order_log') }}
    where {{ period_filter('ordered_at', 'day') }}
    order by uniq_id asc, loaded_at desc

),

staging_days as (

    select
        date_id,
        sum(signed_amount) as staging_amount,
        count(*) as staging_lines
    from staging_lines
    group by date_id

),

sales_days as (

    select
        date_id,
        sum(payment_amount) as sales_amount,
        count(*) as sales_lines
    from {{ ref('f_sales') }}
    where {{ period_filter('date_id', 'day', 'date_id') }}
    group by date_id

),

final as (

    select
        staging_days.date_id,
        staging_days.staging_amount,
        sales_days.sales_amount,
        staging_days.staging_lines,
        sales_days.sales_lines
    from staging_days
    left join sales_days
        on staging_days.date_id = sales_days.date_id
    where
        sales_days.sales_amount is distinct from staging_days.staging_amount
        or sales_days.sales_lines is distinct from staging_days.staging_lines

)

select * from final
