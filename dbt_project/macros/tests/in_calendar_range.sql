{#
    Rows whose date `column_name` falls outside d_calendar, which is generated over
    vars calendar_start..calendar_end: a fact row there would have no calendar day.
    Checked against the vars rather than the table so that the test has one parent
    and a failure stops every mart built from this model.
#}
{% test in_calendar_range(model, column_name) %}

select *
from {{ model }}
where
    {{ column_name }} is null
    or {{ column_name }} < date '{{ var("calendar_start") }}'
    or {{ column_name }} > date '{{ var("calendar_end") }}'

{% endtest %}
