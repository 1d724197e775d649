{{
    config(
        materialized='incremental',
        incremental_strategy='period_delete+insert',
        period_grain='day',
        period_column='last_ordered_at',
        period_column_kind='timestamp',
        unique_key='customer_id',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['customer_id'], 'unique': true},
            {'columns': ['last_ordered_at']},
        ],
    )
}}

{#- Each key's latest order line over all of staging; any rebuild order gives the same row. -#}

with

{{ latest_attributes('customer_id', ['first_name', 'last_name', 'city_id']) }}

select * from final
