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

{% if is_incremental() %}

    touched_customers as (

        select distinct customer_id
        from order_lines

    ),

    stored_customers as (

        select
            customer_rows.customer_id,
            customer_rows.first_name,
            customer_rows.last_name,
            customer_rows.city_id,
            customer_rows.last_ordered_at,
            customer_rows.last_order_uniq_id

        from {{ this }} as customer_rows
        inner join touched_customers
            on customer_rows.customer_id = touched_customers.customer_id

    ),

{% endif %}

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

        select * from stored_customers

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
