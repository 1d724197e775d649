{# Rows where `column_name` is below zero (nulls are left to not_null). #}
{% test not_negative(model, column_name) %}

select *
from {{ model }}
where {{ column_name }} < 0

{% endtest %}
