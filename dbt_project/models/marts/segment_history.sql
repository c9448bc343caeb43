{#- Every customer's segment under every model version that scored them: appended by
    each scoring build (incremental), one row per customer and version, so analysts can
    follow a customer across retrains. Re-scoring with the same version replaces that
    version's rows instead of duplicating them. -#}
{{ config(
    materialized='incremental',
    unique_key=['customer_id', 'model_version'],
    incremental_strategy='delete+insert',
) }}

with

segments as (

    select * from {{ ref('customer_segments') }}

),

history as (

    select
        customer_id,
        model_version,
        segment_id,
        segment_name,
        -- One value per build: the statement's start, whatever the number of rows.
        current_timestamp as scored_at
    from segments

)

select * from history
