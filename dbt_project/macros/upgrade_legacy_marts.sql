{#
    Upgrade a deployment that still holds the course's hand-made mart tables
    (mart.f_sales without status/uniq_id, d_* with `id serial` surrogate keys), in place
    and idempotently. Runs as on-run-start before every dbt invocation and on demand:
        dbt run-operation upgrade_legacy_marts

    Approach (verified in tests/dbt/test_legacy_upgrade.py):
    - mart.f_sales keeps every historical row and its `id serial` column: the new
      columns are added, old rows read status = 'shipped' and get the deterministic
      uniq_id 'legacy-' || id. The incremental models use on_schema_change =
      'append_new_columns', under which dbt lists the model's own columns in its insert /
      merge, so a legacy extra column such as `id` takes its default (the serial) and
      queries written against the legacy columns keep working.
    - The legacy foreign keys from f_sales to the dimensions are dropped: dbt rebuilds
      d_calendar by swapping tables (its `drop ... cascade` would silently drop them
      anyway) and they would make a day's refill order-dependent. Referential integrity
      is checked instead by the `relationships` tests on f_sales, which stop the build.
    - d_city, d_customer and d_item gain the columns their order-independent merge
      compares (last_ordered_at, last_order_uniq_id; null on legacy rows, which therefore
      lose to any newer order line; macro latest_attributes).
    - Legacy varchar(n) columns of the dimensions become text (no table rewrite), so a
      longer name in a new extract cannot fail the merge.
    - The index on f_sales.date_id that the day refill relies on is created if missing
      (dbt only creates `indexes` when it creates the table).
#}
{% macro upgrade_legacy_marts() %}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}

    {%- set probe -%}
        select
            to_regclass('mart.f_sales') is not null as has_f_sales,
            exists (
                select 1 from information_schema.columns
                where table_schema = 'mart' and table_name = 'f_sales' and column_name = 'uniq_id'
            ) as has_uniq_id,
            exists (
                select 1 from information_schema.columns
                where table_schema = 'mart' and table_name = 'f_sales' and column_name = 'id'
            ) as has_legacy_id,
            (
                select coalesce(string_agg(dimension.table_name, ' '), '')
                from information_schema.tables as dimension
                where
                    dimension.table_schema = 'mart'
                    and dimension.table_name in ('d_city', 'd_customer', 'd_item')
                    and not exists (
                        select 1 from information_schema.columns
                        where
                            table_schema = 'mart' and table_name = dimension.table_name
                            and column_name = 'last_order_uniq_id'
                    )
            ) as dimensions_without_recency,
            (
                select coalesce(string_agg(table_name || '.' || column_name, ' '), '')
                from information_schema.columns
                where
                    table_schema = 'mart'
                    and table_name in ('d_city', 'd_customer', 'd_item')
                    and data_type = 'character varying'
            ) as short_text_columns,
            exists (
                select 1 from pg_constraint
                where contype = 'f' and conrelid = to_regclass('mart.f_sales')
            ) as has_foreign_keys
    {%- endset -%}
    {%- set state = run_query(probe).rows[0] -%}
    {%- set has_f_sales, has_uniq_id, has_legacy_id, dimensions_without_recency, short_text_columns, has_foreign_keys = state -%}

    {%- if has_f_sales and has_legacy_id and (not has_uniq_id or has_foreign_keys) -%}
        {% do log("upgrade_legacy_marts: upgrading the legacy mart.f_sales in place", info=true) %}
        {%- set upgrade_f_sales -%}
            alter table mart.f_sales
                add column if not exists status text,
                add column if not exists uniq_id text;
            update mart.f_sales set status = 'shipped' where status is null;
            update mart.f_sales set uniq_id = 'legacy-' || id where uniq_id is null;
            do $$
            declare fk record;
            begin
                for fk in
                    select conname from pg_constraint
                    where contype = 'f' and conrelid = 'mart.f_sales'::regclass
                loop
                    execute format('alter table mart.f_sales drop constraint %I', fk.conname);
                end loop;
            end $$;
            create index if not exists f_sales_date_id_idx on mart.f_sales (date_id);
            create unique index if not exists f_sales_uniq_id_idx on mart.f_sales (uniq_id);
        {%- endset -%}
        {% do run_query(upgrade_f_sales) %}
    {%- endif -%}

    {%- for dimension in dimensions_without_recency.split() -%}
        {% do run_query(
            'alter table mart.' ~ dimension
            ~ ' add column if not exists last_ordered_at timestamp,'
            ~ ' add column if not exists last_order_uniq_id text'
        ) %}
    {%- endfor -%}

    {#- legacy varchar(15) names would reject longer ones; varchar -> text needs no rewrite -#}
    {%- for qualified in short_text_columns.split() -%}
        {%- set table, column = qualified.split('.') -%}
        {% do run_query('alter table mart.' ~ table ~ ' alter column ' ~ adapter.quote(column) ~ ' type text') %}
    {%- endfor -%}

    {{ return('') }}
{% endmacro %}
