-- Loads replace a day (or a report's range) by deleting on the date column, and dbt
-- narrows f_sales to one day the same way: index the date columns that are not already
-- the leading column of a key (customer_research and price_log lead with their date).

create index user_order_log_date_time_idx on staging.user_order_log (date_time);
create index user_activity_log_date_time_idx on staging.user_activity_log (date_time);
