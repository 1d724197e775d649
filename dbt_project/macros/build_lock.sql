{#
    Concurrent dbt invocations (a `python -m ingestion run` and an Airflow run, a task
    and its retry, two terminals) must not interleave their model builds: two
    delete+insert of the same day would both insert (duplicates), two table or view
    swaps collide on the `__dbt_backup` name, and a model reading a view another build
    is swapping fails with "relation does not exist" (seen with per-model locks). So one
    model is built at a time in the warehouse: each model (and snapshot) holds one
    session advisory lock (the two-int key 7301554, 0, apart from ingestion.locks'
    one-bigint keys) for its whole materialization: dbt's own table, view, incremental
    and snapshot materializations, wrapped below (`build_locked`) for the postgres
    adapter. The lock is taken before the materialization looks up the model's relation
    and released after the backup drop that follows its commit. A pre-hook would come
    too late: dbt looks the relation up first, so a model another build created or
    swapped meanwhile was created again ("relation already exists"). Under the lock,
    `sync_relation_cache` makes dbt's relation cache (a schema is listed once per
    invocation) agree with the catalog for the model's names. dbt opens one connection
    per node and closes it when the node ends, failed or not, which releases the lock
    too (this is also why an `on-run-start` lock would not work: that connection is
    closed before any model runs). Data tests and unit tests hold the same lock shared:
    they run beside each other but never while a model is built, so a test never reads
    a view or table that another build is swapping ("relation does not exist"). The
    cost: a build's two dbt threads build models one at a time, and its tests wait for
    the model being built (two statements more per node: about 0.3 s on a day's build);
    Cosmos runs one model and then its tests per task anyway.

    A model that cannot get the lock waits up to PIPELINE_LOCK_TIMEOUT_S seconds
    (default 600), then fails naming itself: "another dbt build of mart.f_sales is
    running; waited 600 s" (SQLSTATE 55P03, a lock timeout: Airflow retries it).
#}


{% macro build_lock_key() -%}
    7301554, 0
{%- endmacro %}


{% macro lock_model_build(shared=false) -%}
    {%- set timeout_s = env_var('PIPELINE_LOCK_TIMEOUT_S', '600') | trim -%}
    {%- if not (timeout_s | float(0)) > 0 -%}
        {%- do exceptions.raise_compiler_error("PIPELINE_LOCK_TIMEOUT_S='" ~ timeout_s ~ "' is not a positive number of seconds") -%}
    {%- endif -%}
    do $lock$
    declare
        previous text := current_setting('lock_timeout');
    begin
        perform set_config('lock_timeout', '{{ [((timeout_s | float) * 1000) | round | int, 1] | max }}ms', true);
        perform pg_advisory_lock{{ '_shared' if shared }}({{ build_lock_key() }});
        perform set_config('lock_timeout', previous, true);
    exception when lock_not_available then
        {% if shared -%}
        raise exception 'a dbt build of a model is running; test {{ model.name }} waited {{ timeout_s }} s'
        {%- else -%}
        raise exception 'another dbt build of {{ this.schema }}.{{ this.identifier }} is running; waited {{ timeout_s }} s'
        {%- endif %}
            using errcode = 'lock_not_available';
    end
    $lock$
{%- endmacro %}


{% macro unlock_model_build(shared=false) -%}
    select pg_advisory_unlock{{ '_shared' if shared }}({{ build_lock_key() }})
{%- endmacro %}


{% macro build_locked(materialization, shared=false) %}
    {#- Run one of dbt's materializations holding the model-build lock (see the top):
        shared for a test, which only reads, exclusive otherwise. -#}
    {% call statement('lock_model_build', auto_begin=False) -%}
        commit;
        {{ lock_model_build(shared) }}
    {%- endcall %}
    {% if not shared %}
        {% do sync_relation_cache(this) %}
    {% endif %}
    {% set result = materialization() %}
    {% call statement('unlock_model_build', auto_begin=False) -%}
        commit;
        {{ unlock_model_build(shared) }}
    {%- endcall %}
    {{ return(result) }}
{% endmacro %}


{% macro sync_relation_cache(relation) %}
    {#- Make dbt's relation cache agree with the catalog for the names a materialization
        looks up (the model, its __dbt_tmp and __dbt_backup): dbt lists a schema once per
        invocation, and another build may have created, swapped or dropped them since. -#}
    {%- set names = [
        relation.identifier,
        make_intermediate_relation(relation).identifier,
        make_backup_relation(relation, 'table').identifier,
    ] -%}
    {%- set cached = {} -%}
    {%- for name in names -%}
        {#- lists the schema first if this invocation has not yet -#}
        {%- do cached.update({name: adapter.get_relation(relation.database, relation.schema, name)}) -%}
    {%- endfor -%}
    {#- what is there now, as dbt itself lists a schema (its types, one query) -#}
    {%- set actual = {} -%}
    {%- for row in list_relations_without_caching(relation.without_identifier()) -%}
        {%- if row['name'] in names -%}
            {%- do actual.update({row['name']: row['type']}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for name in names -%}
        {%- set known = cached[name] -%}
        {%- set known_type = known.type if known is not none else none -%}
        {%- if known_type != actual.get(name) -%}
            {%- if known is not none -%}
                {%- do adapter.cache_dropped(known) -%}
            {%- endif -%}
            {%- if name in actual -%}
                {%- do adapter.cache_added(api.Relation.create(
                    database=relation.database, schema=relation.schema, identifier=name,
                    type=actual[name])) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
{% endmacro %}


{% materialization table, adapter='postgres' %}
    {{ return(build_locked(dbt.materialization_table_default)) }}
{% endmaterialization %}


{% materialization view, adapter='postgres' %}
    {{ return(build_locked(dbt.materialization_view_default)) }}
{% endmaterialization %}


{% materialization incremental, adapter='postgres' %}
    {{ return(build_locked(dbt.materialization_incremental_default)) }}
{% endmaterialization %}


{% materialization snapshot, adapter='postgres' %}
    {{ return(build_locked(dbt.materialization_snapshot_default)) }}
{% endmaterialization %}


{#- Data tests and unit tests read what models build: they hold the lock shared, so they
    run beside each other but never while a model is being swapped. -#}
{% materialization test, adapter='postgres' %}
    {{ return(build_locked(dbt.materialization_test_default, shared=true)) }}
{% endmaterialization %}


{% materialization unit, adapter='postgres' %}
    {{ return(build_locked(dbt.materialization_unit_default, shared=true)) }}
{% endmaterialization %}
