{#- Nothing is dropped silently: every raw row is either staged or quarantined.
    Fails (one row) when rows(raw) <> rows(stg_customers) + rows(quarantine). -#}

with

raw_rows as (

    select count(*) as n from {{ source('raw', 'customers') }}

),

staged_rows as (

    select count(*) as n from {{ ref('stg_customers') }}

),

quarantined_rows as (

    select count(*) as n from {{ ref('stg_customers__quarantine') }}

),

compared as (

    select
        raw_rows.n as raw_count,
        staged_rows.n + quarantined_rows.n as accounted_count
    from raw_rows
    cross join staged_rows
    cross join quarantined_rows

)

select * from compared
where raw_count <> accounted_count
