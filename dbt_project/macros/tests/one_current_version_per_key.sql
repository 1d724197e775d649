{#
    Type 2 history (a dbt snapshot with valid_from / valid_to): every key has exactly one
    open version (valid_to is null) unless all of its versions are closed, and no two
    versions of a key start at the same instant. Returns the offending keys.
#}
{% test one_current_version_per_key(model, key, valid_from='valid_from', valid_to='valid_to') %}

with

versions as (

    select
        {{ key }} as history_key,
        {{ valid_from }} as valid_from,
        {{ valid_to }} as valid_to
    from {{ model }}

),

per_key as (

    select
        history_key,
        count(*) filter (where valid_to is null) as open_versions,
        count(*) - count(distinct valid_from) as repeated_starts
    from versions
    group by history_key

)

select *
from per_key
where open_versions > 1 or repeated_starts > 0

{% endtest %}
