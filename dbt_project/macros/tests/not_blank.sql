{#
    Rows where the text `column_name` is empty or only whitespace (no `\S` character) (nulls are left to
    not_null): the loader refuses a blank key, and so does this test for rows written
    to staging by other means.
#}
{% test not_blank(model, column_name) %}

select *
from {{ model }}
where {{ column_name }} !~ '\S'

{% endtest %}
