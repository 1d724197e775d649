with

source as (

    select * from {{ source('report_api', 'customer_research') }}

),

renamed as (

    select
        date_id::date as research_date,
        category_id::int as category_id,
        geo_id::int as geo_id,
        sales_qty::bigint as sales_qty,
        sales_amt::numeric(14, 2) as sales_amt,
        batch_id::text as batch_id,
        loaded_at::timestamptz as loaded_at

    from source

)

select * from renamed
