{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='customer_id',
        on_schema_change='append_new_columns',
    )
}}

{#-
    A customer's attributes come from their latest order line. Rows already in the
    table compete with the day's lines on (last_ordered_at, last_order_uniq_id), so
    rebuilding days in any order leaves the same row per customer.
-#}

with

order_lines as (

    select * from {{ ref('stg_report_api__user_order_log') }}
    where {{ period_filter('ordered_at', 'day', 'timestamp') }}

),

candidates as (

    select
        customer_id,
        first_name,
        last_name,
        city_id,
        ordered_at as last_ordered_at,
        uniq_id as last_order_uniq_id

    from order_lines

    {% if is_incremental() %}

        union all

        select
            existing.customer_id,
            existing.first_name,
            existing.last_name,
            existing.city_id,
            existing.last_ordered_at,
            existing.last_order_uniq_id

        from {{ this }} as existing
        inner join (select distinct customer_id from order_lines) as touched
            on existing.customer_id = touched.customer_id

    {% endif %}

),

ranked as (

    select
        *,
        row_number() over (
            partition by customer_id
            order by last_ordered_at desc nulls last, last_order_uniq_id desc nulls last
        ) as recency_rank

    from candidates

),

final as (

    select
        customer_id,
        first_name,
        last_name,
        city_id,
        last_ordered_at,
        last_order_uniq_id

    from ranked
    where recency_rank = 1

)

select * from final
