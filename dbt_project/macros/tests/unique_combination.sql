{#
    Composite primary key: no two rows share the combination of `combination_of_columns`,
    and none of them is null. Returns the offending key values.
#}
{% test unique_combination(model, combination_of_columns) %}

{%- set columns_csv = combination_of_columns | join(', ') %}

with

keys as (

    select {{ columns_csv }}
    from {{ model }}

),

duplicated as (

    select
        {{ columns_csv }},
        count(*) as n_rows
    from keys
    group by {{ columns_csv }}
    having count(*) > 1

),

null_parts as (

    select
        {{ columns_csv }},
        1 as n_rows
    from keys
    where
        {%- for column in combination_of_columns %}
            {{ 'or ' if not loop.first }}{{ column }} is null
        {%- endfor %}

),

final as (

    select * from duplicated
    union all
    select * from null_parts

)

select * from final

{% endtest %}
