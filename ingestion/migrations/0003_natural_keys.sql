-- Move every staging table from the course's surrogate `id` to its natural key.
--
-- The course keyed rows on `id serial`, but `id` is only the row number inside one
-- extract file (every increment restarts at 1) and the source repeats each order line
-- several times, identical but for `id`. So a legacy table can hold the same `uniq_id`
-- more than once. Loads now replace rows by key, which needs the key to be unique.
--
-- De-duplication keeps the row with the lowest `id` (the first one loaded) and raises a
-- NOTICE with how many rows were removed and how many keys had copies that differed in
-- something other than `id` (the migration runner logs both). Rows with a NULL key
-- cannot be keyed and stop the migration with a clear message instead of being dropped.
--
-- Then `id` is DROPPED rather than kept nullable: it never identified anything outside
-- one file, nothing downstream reads it (dbt selects named columns), and keeping it
-- would keep a sequence default alive that new loads would have to feed or ignore.
-- Dropping the column also drops the old primary key and the serial's sequence.

do $$
declare
    removed bigint;
    conflicting bigint;
begin
    if exists (select 1 from staging.user_order_log where uniq_id is null) then
        raise exception 'staging.user_order_log has rows with NULL uniq_id; fix or remove them, then rerun migrate';
    end if;
    select count(*) into conflicting from (
        select uniq_id
        from staging.user_order_log
        group by uniq_id
        having count(distinct (
            date_time, city_id, city_name, customer_id, first_name, last_name,
            item_id, item_name, quantity, payment_amount, status
        )) > 1
    ) as differing;
    delete from staging.user_order_log
    where id in (
        select id from (
            select id, row_number() over (partition by uniq_id order by id) as copy_number
            from staging.user_order_log
        ) as ranked
        where copy_number > 1
    );
    get diagnostics removed = row_count;
    raise notice 'staging.user_order_log: removed % repeated rows (same uniq_id, kept the lowest id); % uniq_id had copies that differed', removed, conflicting;

    if exists (select 1 from staging.user_activity_log where uniq_id is null) then
        raise exception 'staging.user_activity_log has rows with NULL uniq_id; fix or remove them, then rerun migrate';
    end if;
    select count(*) into conflicting from (
        select uniq_id
        from staging.user_activity_log
        group by uniq_id
        having count(distinct (date_time, action_id, customer_id, quantity)) > 1
    ) as differing;
    delete from staging.user_activity_log
    where id in (
        select id from (
            select id, row_number() over (partition by uniq_id order by id) as copy_number
            from staging.user_activity_log
        ) as ranked
        where copy_number > 1
    );
    get diagnostics removed = row_count;
    raise notice 'staging.user_activity_log: removed % repeated rows (same uniq_id, kept the lowest id); % uniq_id had copies that differed', removed, conflicting;

    if exists (
        select 1 from staging.customer_research
        where date_id is null or category_id is null or geo_id is null
    ) then
        raise exception 'staging.customer_research has rows with NULL date_id, category_id or geo_id; fix or remove them, then rerun migrate';
    end if;
    select count(*) into conflicting from (
        select date_id, category_id, geo_id
        from staging.customer_research
        group by date_id, category_id, geo_id
        having count(distinct (sales_qty, sales_amt)) > 1
    ) as differing;
    delete from staging.customer_research
    where id in (
        select id from (
            select
                id,
                row_number() over (
                    partition by date_id, category_id, geo_id order by id
                ) as copy_number
            from staging.customer_research
        ) as ranked
        where copy_number > 1
    );
    get diagnostics removed = row_count;
    raise notice 'staging.customer_research: removed % repeated rows (same date_id, category_id, geo_id; kept the lowest id); % keys had copies that differed', removed, conflicting;
end
$$;

alter table staging.user_order_log drop column id;
alter table staging.user_order_log
    add constraint user_order_log_pkey primary key (uniq_id);

alter table staging.user_activity_log drop column id;
alter table staging.user_activity_log
    add constraint user_activity_log_pkey primary key (uniq_id);

alter table staging.customer_research drop column id;
alter table staging.customer_research
    add constraint customer_research_pkey primary key (date_id, category_id, geo_id);
