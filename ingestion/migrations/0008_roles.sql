-- Least privilege: three group roles (NOLOGIN) a deployment grants to its login users.
--
--   retail_loader       writes staging (the loader: `python -m ingestion load/run`, the
--                       DAG's load task); owns staging's data tables, because a bulk load
--                       drops and rebuilds their indexes, which only an owner may do.
--                       Reads mart.f_customer_retention_weeks (the rebuild planner).
--   retail_transformer  dbt: reads staging's tables, creates and replaces its views in
--                       staging (the stg_report_api__* models) and its tables and views
--                       in mart. dbt sets this role on connecting (DBT_PGROLE), so what it
--                       creates is owned by the role, whichever login user ran it.
--   retail_analyst      reads mart, nothing else.
--
-- Roles belong to the cluster, migrations to a database: each role is created only if
-- missing (another database's migration may be creating it at the same moment: the
-- loser of that race finds it there). Grants are per database and repeated here.
-- Run migrations as a superuser (or a role that is a member of these three).

do $roles$
declare
    role_name text;
begin
    foreach role_name in array array['retail_loader', 'retail_transformer', 'retail_analyst'] loop
        if not exists (select from pg_roles where rolname = role_name) then
            begin
                execute format('create role %I nologin', role_name);
            exception when duplicate_object or unique_violation then
                null;  -- created concurrently by another database's migration
            end;
        end if;
    end loop;
end
$roles$;

do $connect$
begin
    execute format(
        'grant connect, temporary on database %I to retail_loader, retail_transformer',
        current_database()
    );
    execute format('grant connect on database %I to retail_analyst', current_database());
end
$connect$;

create schema if not exists mart;

-- Every week retention was built for (dbt post-hook record_built_weeks creates it if
-- missing): created here so that the loader's planner may read it.
create table if not exists mart.f_customer_retention_weeks (
    period_start date primary key,
    built_at timestamptz not null default now()
);

-- staging: the loader writes the data tables, dbt reads them and keeps its views there.
grant usage on schema staging to retail_loader, retail_transformer;
grant create on schema staging to retail_transformer;
grant select on staging.schema_migrations to retail_loader, retail_transformer;
do $staging_owner$
declare
    staging_table regclass;
begin
    for staging_table in
        select c.oid::regclass
        from pg_class as c
        where
            c.relnamespace = 'staging'::regnamespace
            and c.relkind in ('r', 'p')
            and c.relname <> 'schema_migrations'
    loop
        execute format('alter table %s owner to retail_loader', staging_table);
        execute format('grant select on %s to retail_transformer', staging_table);
    end loop;
end
$staging_owner$;
-- Tables later migrations add (as the role running migrations, as this one).
alter default privileges in schema staging
grant select, insert, update, delete on tables to retail_loader;
alter default privileges in schema staging
grant select on tables to retail_transformer;
alter default privileges in schema staging
grant usage on sequences to retail_loader;

-- mart: owned by dbt's role; what it creates is readable by analysts.
grant usage, create on schema mart to retail_transformer;
grant usage on schema mart to retail_analyst, retail_loader;
do $mart_owner$
declare
    relation record;
begin
    -- Mart objects and dbt's staging views that exist already (built before this
    -- migration, by whichever user ran dbt) pass to the role, so dbt may replace them.
    for relation in
        select
            c.oid::regclass as name,
            case c.relkind when 'v' then 'view' when 'm' then 'materialized view' else 'table' end as kind
        from pg_class as c
        where
            c.relkind in ('r', 'p', 'v', 'm')
            and (
                c.relnamespace = 'mart'::regnamespace
                or (c.relnamespace = 'staging'::regnamespace and c.relkind = 'v')
            )
    loop
        execute format('alter %s %s owner to retail_transformer', relation.kind, relation.name);
    end loop;
end
$mart_owner$;
grant select on all tables in schema mart to retail_analyst;
grant select on mart.f_customer_retention_weeks to retail_loader;
alter default privileges for role retail_transformer in schema mart
grant select on tables to retail_analyst;
