{#
    The CTEs of a dimension whose attributes come from the latest order line of each key
    (d_city, d_customer, d_item). They read a CTE named `order_lines` (the staging order
    lines of the build's period) and end in a CTE named `final`.

    On an incremental build the stored row of every key the period touches competes with
    the period's lines on (last_ordered_at, last_order_uniq_id), so rebuilding days in any
    order leaves the same row per key; rows kept from a legacy deployment have nulls
    there and lose to any order line. When the stored row came from the very line being
    rebuilt, the line wins (`is_stored`): a corrected staging day corrects the dimension.
#}
{% macro latest_attributes(key, attributes) -%}
candidates as (

    select
        {{ key }},
        {%- for attribute in attributes %}
        {{ attribute }},
        {%- endfor %}
        ordered_at as last_ordered_at,
        uniq_id as last_order_uniq_id,
        0 as is_stored

    from order_lines

    {% if is_incremental() %}

        union all

        select
            stored.{{ key }},
            {%- for attribute in attributes %}
            stored.{{ attribute }},
            {%- endfor %}
            stored.last_ordered_at,
            stored.last_order_uniq_id,
            1 as is_stored

        from {{ this }} as stored
        where stored.{{ key }} in (select order_lines.{{ key }} from order_lines)

    {% endif %}

),

ranked as (

    select
        *,
        row_number() over (
            partition by {{ key }}
            order by
                last_ordered_at desc nulls last,
                last_order_uniq_id desc nulls last,
                is_stored asc
        ) as recency_rank

    from candidates

),

final as (

    select
        {{ key }},
        {%- for attribute in attributes %}
        {{ attribute }},
        {%- endfor %}
        last_ordered_at,
        last_order_uniq_id

    from ranked
    where recency_rank = 1

)
{%- endmacro %}
