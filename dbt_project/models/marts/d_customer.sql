{{
    config(
        unique_key='customer_id',
        period_grain='day',
        period_column='last_ordered_at',
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
