with

source as (

    select * from {{ source('report_api', 'user_activity_log') }}

),

renamed as (

    select
        uniq_id::text as uniq_id,
        date_time::timestamp as acted_at,
        date_time::date as activity_date,
        action_id::int as action_id,
        customer_id::int as customer_id,
        quantity::bigint as quantity,
        batch_id::text as batch_id,
        loaded_at::timestamptz as loaded_at

    from source

)

select * from renamed
