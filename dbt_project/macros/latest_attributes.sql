{#
    The CTEs of a dimension whose attributes come from the latest order line of each key
    (d_city, d_customer, d_item), ending in a CTE named `final`.

    A row is always the key's latest line (ordered_at, then uniq_id) over all of
    staging, never a merge of what earlier builds saw: so a build narrowed to some days
    gives exactly the row a fresh build would, in any order of rebuilds, and corrections
    follow. A narrowed build recomputes the keys with a line in the period and the keys
    whose stored row came from a line of the period (that line may have changed key or
    gone); with the `period_delete+insert` strategy on `last_ordered_at`, a key left with no
    line at all is deleted. Each key's latest line is one index probe (the migrations
    index staging on every key with its timestamp), so the cost follows the period, not
    the history. Rows kept from a legacy deployment have null recency: they are replaced
    only when the key gets an order line.
#}
{% macro latest_attributes(key, attributes) -%}
period_keys as (

    select distinct order_lines.{{ key }}
    from {{ ref('int_order_lines_filtered_to_period') }} as order_lines

    {% if is_incremental() %}

        union

        select stored.{{ key }}
        from {{ this }} as stored
        where {{ period_filter('stored.last_ordered_at', 'day') }}

    {% endif %}

),

final as (

    select
        period_keys.{{ key }},
        {%- for attribute in attributes %}
        latest_line.{{ attribute }},
        {%- endfor %}
        latest_line.ordered_at as last_ordered_at,
        latest_line.uniq_id as last_order_uniq_id

    from period_keys
    cross join lateral (
        select order_lines.*
        from {{ ref('stg_report_api__user_order_log') }} as order_lines
        where order_lines.{{ key }} = period_keys.{{ key }}
        order by order_lines.ordered_at desc, order_lines.uniq_id desc
        limit 1
    ) as latest_line

)
{%- endmacro %}
