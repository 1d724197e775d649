{#
    Rows where `column_name` is outside min_value..max_value (bounds inclusive, either
    one optional; nulls are left to not_null). The staging models use it to check the
    same bounds as the loader (ingestion/loader.py, SPECS): a row the loader would refuse
    fails here, before any mart is built from it, e.g. an amount too large for the legacy
    numeric(10,2) mart.f_sales.payment_amount.
#}
{% test value_between(model, column_name, min_value=none, max_value=none) %}

select *
from {{ model }}
where
    false
    {%- if min_value is not none %}
        or {{ column_name }} < {{ min_value }}
    {%- endif %}
    {%- if max_value is not none %}
        or {{ column_name }} > {{ max_value }}
    {%- endif %}

{% endtest %}
