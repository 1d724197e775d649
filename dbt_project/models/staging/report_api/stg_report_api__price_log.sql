with

source as (

    select * from {{ source('report_api', 'price_log') }}

),

renamed as (

    select
        price_date::date as price_date,
        item_name::text as item_name,
        price::numeric(14, 2) as price,
        batch_id::text as batch_id,
        loaded_at::timestamptz as loaded_at

    from source

)

select * from renamed
