-- The marts of an existing deployment take the shape the dbt models now create: the
-- course's hand-made tables (mart.f_sales filled by plain SQL, d_* with `id serial`) and
-- marts built by earlier versions of the project. Each step is skipped when its table is
-- missing or already upgraded: on a fresh database dbt creates them this way itself.

-- The dimensions: the columns of each key's latest order line (null on legacy rows, which
-- give way to the first line that names them), and text names (a legacy varchar(15)
-- would refuse a longer one).
alter table if exists mart.d_city
    add column if not exists last_ordered_at timestamp,
    add column if not exists last_order_uniq_id text;
alter table if exists mart.d_customer
    add column if not exists last_ordered_at timestamp,
    add column if not exists last_order_uniq_id text;
alter table if exists mart.d_item
    add column if not exists last_ordered_at timestamp,
    add column if not exists last_order_uniq_id text;

-- Revenues wide enough for any week of lines the loader accepts (no table rewrite).
alter table if exists mart.f_customer_retention
    alter column new_customers_revenue type numeric(18, 2),
    alter column returning_customers_revenue type numeric(18, 2);

-- What the rebuild planner and the report read of the built weeks, now a dbt model.
alter table if exists mart.f_customer_retention_weeks
    add column if not exists period_id text,
    add column if not exists period_end date,
    add column if not exists item_count integer;

do $upgrade$
declare
    target record;
begin
    for target in
        select table_name, column_name from information_schema.columns
        where
            table_schema = 'mart' and table_name in ('d_city', 'd_customer', 'd_item')
            and data_type = 'character varying'
    loop
        execute format(
            'alter table mart.%I alter column %I type text', target.table_name, target.column_name
        );
    end loop;

    -- The course's f_sales: every row kept, reading status 'shipped' and uniq_id
    -- 'legacy-<id>' (`id` stays: new rows take its serial default). The foreign keys to
    -- the dimensions go: dbt's relationships tests check them, and dbt replaces
    -- d_calendar on every build.
    if exists (
        select from information_schema.columns
        where table_schema = 'mart' and table_name = 'f_sales' and column_name = 'id'
    ) then
        alter table mart.f_sales add column if not exists status text, add column if not exists uniq_id text;
        update mart.f_sales set status = coalesce(status, 'shipped'), uniq_id = coalesce(uniq_id, 'legacy-' || id)
        where status is null or uniq_id is null;
        for target in
            select conname from pg_constraint where contype = 'f' and conrelid = 'mart.f_sales'::regclass
        loop
            execute format('alter table mart.f_sales drop constraint %I', target.conname);
        end loop;
        create index if not exists f_sales_date_id_idx on mart.f_sales (date_id);
        create unique index if not exists f_sales_uniq_id_idx on mart.f_sales (uniq_id);
    end if;

    -- Unique keys, so that two builds at once fail loudly instead of duplicating rows.
    -- Exact duplicate rows left by such races before are removed first.
    if to_regclass('mart.f_customer_retention') is not null then
        delete from mart.f_customer_retention as duplicate
        using mart.f_customer_retention as original
        where
            duplicate.ctid > original.ctid
            and row(duplicate.*) is not distinct from row(original.*);
        create unique index if not exists f_customer_retention_period_item_key
            on mart.f_customer_retention (period_name, period_id, item_id);
        update mart.f_customer_retention_weeks as weeks
        set
            period_id = to_char(weeks.period_start, 'IYYY-"W"IW'),
            period_end = weeks.period_start + 6,
            item_count = (
                select count(*) from mart.f_customer_retention as retention
                where retention.period_start = weeks.period_start
            )
        where weeks.item_count is null;
    end if;
    -- A customer left with several current versions: all but the latest are closed
    -- when the next one begins, as one snapshot after the other would have done.
    if to_regclass('mart.d_customer_history') is not null then
        update mart.d_customer_history as version
        set valid_to = (
            select min(newer.valid_from) from mart.d_customer_history as newer
            where
                newer.customer_id = version.customer_id and newer.valid_to is null
                and newer.valid_from > version.valid_from
        )
        where
            version.valid_to is null
            and exists (
                select from mart.d_customer_history as newer
                where
                    newer.customer_id = version.customer_id and newer.valid_to is null
                    and newer.valid_from > version.valid_from
            );
        create unique index if not exists d_customer_history_one_current_version
            on mart.d_customer_history (customer_id) where valid_to is null;
    end if;
end
$upgrade$;
