-- Corrections: an increment may send an order line (or an activity row) seen before with
-- another date, amount, status, customer or item. Which version is true must not depend
-- on the order in which batches happen to be loaded (a backfill of an old day must not
-- undo a later correction), so every row records the day of the batch that delivered it:
-- the increment's day, or the report's end_date. A load only replaces rows whose
-- source_day is not newer than its own; ties go to the latest load.
--
-- Rows loaded before this migration get the end day of their batch from load_audit
-- (the report's end_date, an increment's day), else their own date (a lower bound: no
-- batch holds rows dated after its own day).

alter table staging.user_order_log add column source_day date;
alter table staging.user_activity_log add column source_day date;

update staging.user_order_log as line
set source_day = coalesce(
    (select max(audit.end_day) from staging.load_audit as audit where audit.batch_id = line.batch_id),
    line.date_time::date
);
update staging.user_activity_log as activity
set source_day = coalesce(
    (select max(audit.end_day) from staging.load_audit as audit where audit.batch_id = activity.batch_id),
    activity.date_time::date
);

-- A row written some other way (by hand, an old tool) counts as the oldest version.
alter table staging.user_order_log
    alter column source_day set default '-infinity',
    alter column source_day set not null;
alter table staging.user_activity_log
    alter column source_day set default '-infinity',
    alter column source_day set not null;

-- The dimensions take each key's latest order line (dbt macro latest_attributes): one
-- backward index probe per customer, item and city a rebuilt day touches, so a day's
-- build does not grow with history.
create index user_order_log_customer_latest_idx
    on staging.user_order_log (customer_id, date_time, uniq_id);
create index user_order_log_item_latest_idx on staging.user_order_log (item_id, date_time, uniq_id);
create index user_order_log_city_latest_idx on staging.user_order_log (city_id, date_time, uniq_id);

-- A day the API has no increment for (NOT FOUND) is recorded too: the run did process
-- it, and the rebuild planner treats every week up to the last processed day as complete.
alter table staging.load_audit drop constraint load_audit_outcome_check;
alter table staging.load_audit add constraint load_audit_outcome_check
    check (outcome in ('loaded', 'missing', 'not_found'));
