{#-
    One select, no CTEs: PostgreSQL plans a view whose query has a WITH clause as a
    separate subquery, so an outer `order by ... limit 1` (the dimensions' latest line
    per key, macro latest_attributes) could not use staging's (key, date_time, uniq_id)
    indexes and would read and sort every line of the key. A flat view is merged into
    the outer query and the probe is one backward index scan.
-#}

select
    uniq_id::text as uniq_id,
    date_time::timestamp as ordered_at,
    date_time::date as order_date,
    to_char(date_time, 'YYYYMMDD')::int as date_id,
    city_id::int as city_id,
    city_name::text as city_name,
    customer_id::int as customer_id,
    first_name::text as first_name,
    last_name::text as last_name,
    item_id::int as item_id,
    item_name::text as item_name,
    quantity::bigint as quantity,
    payment_amount::numeric(14, 2) as payment_amount,
    coalesce(status, 'shipped')::text as status,
    batch_id::text as batch_id,
    loaded_at::timestamptz as loaded_at

from {{ source('report_api', 'user_order_log') }}
