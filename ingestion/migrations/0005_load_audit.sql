-- One row per file per load, so a user (and the tests) can see what each batch did:
-- how many rows the file had, how many repeats were dropped, how many rows landed, how
-- many existing rows the load replaced, and which files the API did not have (404).
-- Written in the same transaction as the load itself, so it never disagrees with staging.

create table staging.load_audit (
    audit_id bigint generated always as identity primary key,
    batch_id text not null,
    table_name text not null,
    start_day date not null,
    end_day date not null,
    file_name text,
    outcome text not null,
    rows_read bigint,
    duplicates_dropped bigint,
    rows_loaded bigint,
    rows_replaced bigint,
    loaded_at timestamptz not null default now(),
    constraint load_audit_outcome_check check (outcome in ('loaded', 'missing'))
);

create index load_audit_batch_id_idx on staging.load_audit (batch_id);
create index load_audit_days_idx on staging.load_audit (start_day, end_day);
