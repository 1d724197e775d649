{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key='item_id',
        on_schema_change='append_new_columns',
    )
}}

{#- Attributes of each key's latest order line; any rebuild order gives the same row. -#}

with

order_lines as (

    select * from {{ ref('stg_report_api__user_order_log') }}
    where {{ period_filter('ordered_at', 'day', 'timestamp') }}

),

{{ latest_attributes('item_id', ['item_name']) }}

select * from final
