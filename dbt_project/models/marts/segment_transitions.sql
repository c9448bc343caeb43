{#- Customers moving between segments from one model version to the next: for each pair
    of consecutive versions in segment_history (version ids sort by creation time), how
    many customers of each old segment landed in each new segment, and their share of the
    old segment. Customers scored by only one of the two versions are left out. -#}

with

history as (

    select * from {{ ref('segment_history') }}

),

versions as (

    select
        model_version as to_version,
        lag(model_version) over (order by model_version) as from_version
    from (select distinct model_version from history) as scored_versions

),

pairs as (

    select
        versions.from_version,
        versions.to_version,
        earlier.segment_id as from_segment_id,
        earlier.segment_name as from_segment_name,
        later.segment_id as to_segment_id,
        later.segment_name as to_segment_name
    from versions
    inner join history as earlier
        on versions.from_version = earlier.model_version
    inner join history as later
        on
            versions.to_version = later.model_version
            and earlier.customer_id = later.customer_id

),

counted as (

    select
        from_version,
        to_version,
        from_segment_id,
        from_segment_name,
        to_segment_id,
        to_segment_name,
        count(*) as customer_count
    from pairs
    group by
        from_version,
        to_version,
        from_segment_id,
        from_segment_name,
        to_segment_id,
        to_segment_name

),

transitions as (

    select
        *,
        customer_count / sum(customer_count) over (
            partition by from_version, to_version, from_segment_id
        ) as share_of_from_segment
    from counted

)

select * from transitions
order by from_version, to_version, from_segment_id, to_segment_id
