{#
    Like dbt's accepted_values, but returns the offending rows themselves (dbt's groups
    them by value), so a failed build names the order lines to fix.
#}
{% test accepted_values_rows(model, column_name, values) %}

select *
from {{ model }}
where
    {{ column_name }} is null
    or {{ column_name }} not in (
        {%- for value in values %}
            '{{ value }}'{{ ',' if not loop.last }}
        {%- endfor %}
    )

{% endtest %}
