{{
    config(
        unique_key='city_id',
        period_grain='day',
        period_column='last_ordered_at',
        indexes=[
            {'columns': ['city_id'], 'unique': true},
            {'columns': ['last_ordered_at']},
        ],
    )
}}

{#- Each key's latest order line over all of staging; any rebuild order gives the same row. -#}

with

{{ latest_attributes('city_id', ['city_name']) }}

select * from final
