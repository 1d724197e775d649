-- Move every staging table from the course's surrogate `id` to its natural key.
--
-- The course keyed rows on `id serial`, but `id` is only the row number inside one
-- extract file, and the course's loader appended every row it got: the source's repeats
-- (identical but for `id`) and its corrections (the same key with other values). Loads
-- now replace rows by key, which needs the key to be unique.
--
-- Of the rows of one key, the one loaded last (highest `id`) is kept. Every other row
-- whose values differ from it is set aside in staging.<table>_superseded, with the kept
-- row's id and the reason (created only when there is one; the migration runner logs a
-- WARNING with the count); exact repeats are dropped (a NOTICE counts them). Rows with a
-- NULL key cannot be keyed and stop the migration instead of being dropped.
--
-- Then `id` is dropped with the old primary key and its sequence: it never identified
-- anything outside one file and nothing downstream reads it.

do $$
declare
    staging_table record;
    removed bigint;
    superseded bigint;
begin
    for staging_table in
        select * from (values
            ('user_order_log', 'uniq_id'),
            ('user_activity_log', 'uniq_id'),
            ('customer_research', 'date_id, category_id, geo_id')
        ) as keyed (name, key_columns)
    loop
        execute format(
            'select count(*) from staging.%I where not (row(%s) is not null)',
            staging_table.name, staging_table.key_columns
        ) into removed;
        if removed > 0 then
            raise exception 'staging.% has % rows with NULL % (its key); fix or remove them, then rerun migrate',
                staging_table.name, removed, staging_table.key_columns;
        end if;

        execute format(
            'create temporary table kept_rows as select distinct on (%2$s) id as kept_id, %2$s'
            ' from staging.%1$I order by %2$s, id desc',
            staging_table.name, staging_table.key_columns
        );
        execute format($sql$
            create temporary table superseded_rows as
            select older.*, kept_rows.kept_id as superseded_by_id,
                'a later row of the same key (higher id) replaced it'::text as reason
            from staging.%1$I as older
            inner join kept_rows using (%2$s)
            inner join staging.%1$I as newest on kept_rows.kept_id = newest.id
            where older.id <> newest.id and to_jsonb(older) - 'id' <> to_jsonb(newest) - 'id'
        $sql$, staging_table.name, staging_table.key_columns);
        execute format(
            'delete from staging.%I where id not in (select kept_id from kept_rows)',
            staging_table.name
        );
        get diagnostics removed = row_count;
        select count(*) into superseded from superseded_rows;
        if superseded > 0 then
            execute format(
                'create table staging.%I as select * from superseded_rows', staging_table.name || '_superseded'
            );
            raise warning 'staging.%: % rows replaced by a later row of the same key (highest id kept) differ from it: kept in staging.%_superseded',
                staging_table.name, superseded, staging_table.name;
        end if;
        raise notice 'staging.%: removed % repeated rows (% of them exact repeats)',
            staging_table.name, removed, removed - superseded;
        drop table kept_rows, superseded_rows;
    end loop;
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
