{#-
    The order lines of the days being built (`day` variable; every line when unset): the
    input of f_sales and of the dimensions' period keys (macro latest_attributes).
    Ephemeral, and each model reads it once, so PostgreSQL inlines the CTE dbt makes of
    it. One select, no CTEs of its own (as the staging view): a subquery with a WITH
    clause is not merged into the outer query, and the plans would gain a Subquery Scan
    over the staging index scan; a flat one leaves every model's plan as it was.
-#}

select
    uniq_id,
    date_id,
    city_id,
    customer_id,
    item_id,
    quantity,
    payment_amount,
    status

from {{ ref('stg_report_api__user_order_log') }}
where {{ period_filter('ordered_at', 'day') }}
