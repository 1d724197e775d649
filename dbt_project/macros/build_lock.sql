{#
    Concurrent dbt invocations (a `python -m ingestion run` and an Airflow run, a task
    and its retry, two terminals) must not interleave their model builds: two
    delete+insert of the same day would both insert (duplicates), two table or view
    swaps collide on the `__dbt_backup` name, and a model reading a view another build
    is swapping fails with "relation does not exist" (seen with per-model locks). So one
    model is built at a time in the warehouse: each model holds one session advisory lock
    (the two-int key 7301554, 0, apart from ingestion.locks' one-bigint keys) from its
    pre-hook to its post-hook, both outside the model's transaction: the lock covers the
    transaction and the backup drop after its commit. dbt opens one connection per node
    and closes it when the node ends, failed or not, which releases the lock too (this is
    also why an `on-run-start` lock would not work: that connection is closed before any
    model runs). The cost: a build's two dbt threads build models one at a time (its data
    tests still run in parallel); Cosmos runs one model per task anyway.

    A model that cannot get the lock waits up to PIPELINE_LOCK_TIMEOUT_S seconds
    (default 600), then fails naming itself: "another dbt build of mart.f_sales is
    running; waited 600 s" (SQLSTATE 55P03, a lock timeout: Airflow retries it).
#}


{% macro build_lock_key() -%}
    7301554, 0
{%- endmacro %}


{% macro lock_model_build() -%}
    {%- set timeout_s = env_var('PIPELINE_LOCK_TIMEOUT_S', '600') | trim -%}
    {%- if not (timeout_s | float(0)) > 0 -%}
        {%- do exceptions.raise_compiler_error("PIPELINE_LOCK_TIMEOUT_S='" ~ timeout_s ~ "' is not a positive number of seconds") -%}
    {%- endif -%}
    do $lock$
    declare
        previous text := current_setting('lock_timeout');
    begin
        perform set_config('lock_timeout', '{{ [((timeout_s | float) * 1000) | round | int, 1] | max }}ms', true);
        perform pg_advisory_lock({{ build_lock_key() }});
        perform set_config('lock_timeout', previous, true);
    exception when lock_not_available then
        raise exception 'another dbt build of {{ this.schema }}.{{ this.identifier }} is running; waited {{ timeout_s }} s'
            using errcode = 'lock_not_available';
    end
    $lock$
{%- endmacro %}


{% macro unlock_model_build() -%}
    select pg_advisory_unlock({{ build_lock_key() }})
{%- endmacro %}
