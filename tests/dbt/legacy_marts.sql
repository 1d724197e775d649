-- The course's hand-made mart tables, filled by plain SQL, as a legacy deployment holds them.
create schema if not exists mart;

create table mart.d_calendar (
    date_id int primary key,
    fact_date date,
    day_num int,
    month_num int,
    month_name varchar(8),
    year_num int
);

create table mart.d_city (
    id serial primary key,
    city_id int unique,
    city_name varchar(50)
);

create table mart.d_customer (
    id serial primary key,
    customer_id int unique,
    first_name varchar(15),
    last_name varchar(15),
    city_id int
);

create table mart.d_item (
    id serial primary key,
    item_id int unique,
    item_name varchar(50)
);

create table mart.f_sales (
    id serial primary key,
    date_id int not null references mart.d_calendar (date_id),
    item_id int not null references mart.d_item (item_id),
    customer_id int not null references mart.d_customer (customer_id),
    city_id int not null references mart.d_city (city_id),
    quantity bigint,
    payment_amount numeric(10, 2)
);

insert into mart.d_calendar (date_id, fact_date, day_num, month_num, month_name, year_num)
select
    to_char(d, 'YYYYMMDD')::int, d::date, extract(day from d), extract(month from d),
    to_char(d, 'Mon'), extract(year from d)
from generate_series(date '2024-08-01', date '2024-09-30', interval '1 day') as d;

insert into mart.d_city (city_id, city_name) values (0, 'Москва'), (1, 'Ростов'), (7, 'Тверь');
insert into mart.d_item (item_id, item_name) values (1, 'Молоко 3%'), (4, 'Сахар песок'), (99, 'Снято с продажи');
insert into mart.d_customer (customer_id, first_name, last_name, city_id)
values (2015, 'Ольга', 'Великая', 0), (900001, 'Архив', 'Клиент', 7);

insert into mart.f_sales (date_id, item_id, customer_id, city_id, quantity, payment_amount) values
    (20240901, 1, 2015, 0, 2, 240.00),
    (20240901, 99, 900001, 7, 1, 15.50),
    (20240902, 4, 900001, 7, 3, 150.00),
    (20240902, 1, 2015, 0, 1, 120.00),
    (20240902, 99, 2015, 1, 5, 77.50);
