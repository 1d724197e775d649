-- Item prices per day. The source's price_log file has no date of its own: the loader
-- stamps each row with the increment's day (the report's end_date for the full report),
-- so a day's prices can be replaced like any other day's rows.
--
-- Plain `create table` (no `if not exists`): this table is new in this project, and an
-- unexpected table of that name should stop the migration rather than be silently kept.

create table staging.price_log (
    price_date date not null,
    item_name text not null,
    price numeric(14, 2),
    batch_id text,
    loaded_at timestamptz default now(),
    constraint price_log_pkey primary key (price_date, item_name)
);
