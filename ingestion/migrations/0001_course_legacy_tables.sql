-- The course's original staging tables, exactly as a legacy deployment created them.
--
-- `if not exists` is deliberate: a fresh database gets the legacy shapes here, and a
-- deployment that already ran the course's DDL (with data, and no schema_migrations)
-- keeps its tables untouched. Both then go through the SAME upgrade migrations below,
-- so the upgrade path is exercised by every fresh install and every test run.

create schema if not exists staging;

create table if not exists staging.user_order_log (
    id serial primary key,
    uniq_id varchar(100) not null,
    date_time timestamp not null,
    city_id int not null,
    city_name varchar(100),
    customer_id int not null,
    first_name varchar(100),
    last_name varchar(100),
    item_id int not null,
    item_name varchar(100),
    quantity bigint,
    payment_amount numeric(10, 2)
);

create table if not exists staging.user_activity_log (
    id serial primary key,
    uniq_id varchar(100) not null,
    date_time timestamp,
    action_id bigint,
    customer_id bigint,
    quantity bigint
);

create table if not exists staging.customer_research (
    id serial primary key,
    date_id timestamp,
    category_id int,
    geo_id int,
    sales_qty int,
    sales_amt numeric(10, 2)
);
