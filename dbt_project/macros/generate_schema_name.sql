{#
    Existing consumers query the schemas `staging` and `mart` by name, so a custom
    schema is used exactly as written instead of dbt's default `<target>_<custom>`.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
