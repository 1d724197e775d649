{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='item_id',
        on_schema_change='append_new_columns',
    )
}}

with

order_lines as (

    select * from {{ ref('stg_report_api__user_order_log') }}
    where {{ period_filter('ordered_at', 'day', 'timestamp') }}

),

ranked as (

    select
        item_id,
        item_name,
        row_number() over (
            partition by item_id
            order by ordered_at desc, uniq_id desc
        ) as recency_rank

    from order_lines

),

final as (

    select
        item_id,
        item_name

    from ranked
    where recency_rank = 1

)

select * from final
